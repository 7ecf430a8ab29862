//! The reviewer page's HTTP handlers: the embedded assets, the queue, the frames, and
//! answers and skips. Loop details come from the review service; `InputContent` is read
//! tolerantly (only `taskObject` is required) so loops started by other tools show too.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use protocol::a2i::{DEFAULT_ANSWER_FIELD, NONE_OF_THESE};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::answers::Outcome;
use super::PageState;
use crate::review_service::store::LoopError;
use crate::review_service::{HumanAnswer, HumanLoop, HumanLoopStatus, OutputKey, ServiceError};

type St = State<Arc<PageState>>;

/// `GET /`: the page lives at `/review`; a `?token=` goes along.
pub(super) async fn root(uri: Uri) -> Redirect {
    match uri.query() {
        Some(q) => Redirect::to(&format!("/review?{q}")),
        None => Redirect::to("/review"),
    }
}

pub(super) async fn page() -> Html<&'static str> {
    Html(include_str!("assets/index.html"))
}

pub(super) async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/review.css"),
    )
}

pub(super) async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/review.js"),
    )
}

/// An error as the page's script reads it: `{"error": "..."}`.
#[derive(Debug)]
pub(super) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            tracing::error!(error = %self.1, "reviewer page failure");
        }
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn from_service(e: ServiceError) -> ApiError {
    let status = match &e {
        ServiceError::Loop(LoopError::NotFound(_)) => StatusCode::NOT_FOUND,
        ServiceError::Loop(LoopError::WrongState { .. }) => StatusCode::CONFLICT,
        ServiceError::Loop(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, e.to_string())
}

/// Loop `name`'s `InputContent`, read on the blocking pool.
async fn blocking_input(state: &PageState, name: &str) -> Result<String, ApiError> {
    let (service, name) = (state.service.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || service.input_content(&name))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(from_service)
}

/// Reviewer names are worker ids in output.json: short and printable.
fn reviewer(name: Option<&str>) -> Result<String, ApiError> {
    let name = name.map(str::trim).unwrap_or("");
    if name.is_empty() || name.len() > 64 {
        return Err(bad("reviewer must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || " ._@-".contains(c))
    {
        return Err(bad(
            "reviewer may hold letters, digits, spaces and . _ @ - only",
        ));
    }
    Ok(name.to_owned())
}

#[derive(Debug, Serialize)]
pub(super) struct Score {
    label: String,
    score: f64,
}

/// One loop as the page shows it.
#[derive(Debug, Serialize)]
pub(super) struct Task {
    name: String,
    image_url: String,
    suggestion: Option<String>,
    scores: Vec<Score>,
    /// The labels to choose from, in order (keys 1-9, 0); "none of these" is apart.
    choices: Vec<String>,
    none_label: &'static str,
    device_id: Option<String>,
    model_version: Option<String>,
    event_id: Option<String>,
    /// The frame's file name: the device's `source` (folder mode), else the last
    /// segment of its `taskObject` key.
    file: Option<String>,
    created: String,
    flow: String,
    answers: usize,
    needed: usize,
}

/// Most loops one queue request describes (each reads its input from disk); the
/// progress counts cover them all.
const QUEUE_ITEMS: usize = 100;

/// `input` is the loop's `InputContent`.
fn task_of(l: &HumanLoop, input: &str, answers: usize, needed: usize) -> Task {
    let input: Value = serde_json::from_str(input).unwrap_or(Value::Null);
    let text = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_owned);
    let scores: Vec<Score> = input
        .get("scores")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some(Score {
                        label: s.get("label")?.as_str()?.to_owned(),
                        score: s.get("score")?.as_f64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let suggestion = text("initialValue");
    let mut choices: Vec<String> = input
        .get("labels")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if choices.is_empty() {
        // No label list: offer the model's top-k (and its suggestion).
        choices = suggestion.iter().cloned().collect();
        for s in &scores {
            if !choices.contains(&s.label) {
                choices.push(s.label.clone());
            }
        }
    }
    choices.retain(|c| c != NONE_OF_THESE);
    Task {
        image_url: format!("/review/api/loops/{}/image", l.name),
        name: l.name.clone(),
        suggestion,
        scores,
        choices,
        none_label: NONE_OF_THESE,
        device_id: text("device_id"),
        model_version: text("model_version"),
        event_id: text("event_id"),
        file: text("source")
            .or_else(|| text("taskObject").and_then(|u| u.rsplit('/').next().map(str::to_owned))),
        created: crate::review_service::http::iso8601(l.creation_time),
        flow: l.flow_definition_name.clone(),
        answers,
        needed,
    }
}

/// How many reviewers the loop's flow asks for (`HumanLoopConfig.TaskCount`, default 1).
fn needed(state: &PageState, flow: &str) -> usize {
    state
        .service
        .describe_flow_definition(flow)
        .ok()
        .and_then(|f| f.human_loop_config)
        .and_then(|c| c.get("TaskCount").and_then(Value::as_u64))
        .map_or(1, |n| n.clamp(1, 3) as usize)
}

#[derive(Debug, Deserialize)]
pub(super) struct ReviewerQuery {
    reviewer: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct Progress {
    reviewer: String,
    /// Loops completed (all reviewers' answers in, output.json written).
    done: usize,
    /// Loops this reviewer can still answer, skipped ones included.
    left: usize,
    /// Loops this reviewer can answer now (the queue; its first [`QUEUE_ITEMS`] are
    /// listed).
    queued: usize,
    skipped: usize,
    /// Loops this reviewer answered that wait for other reviewers.
    waiting_for_others: usize,
}

async fn queue_for(state: &PageState, who: &str) -> (Vec<Task>, Progress) {
    let loops = state.service.in_progress_loops();
    let done = state
        .service
        .read(|s| s.loops.count(HumanLoopStatus::Completed));
    let book = state.book.lock().await;
    let skipped = state
        .skipped
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(who)
        .cloned()
        .unwrap_or_default();
    let mut needs: HashMap<String, usize> = HashMap::new();
    let (mut todo, mut queued, mut n_skipped, mut waiting) = (Vec::new(), 0, 0, 0);
    for l in loops {
        if book.answered_by(&l.name, who) {
            waiting += 1;
        } else if skipped.contains(&l.name) {
            n_skipped += 1;
        } else {
            queued += 1;
            if todo.len() < QUEUE_ITEMS {
                let need = *needs
                    .entry(l.flow_definition_name.clone())
                    .or_insert_with(|| needed(state, &l.flow_definition_name));
                let answers = book.count(&l.name);
                todo.push((l, answers, need));
            }
        }
    }
    drop(book);
    let service = state.service.clone();
    let items = tokio::task::spawn_blocking(move || {
        todo.into_iter()
            .filter_map(|(l, answers, need)| {
                // A loop deleted meanwhile has no input any more: it left the queue.
                let input = service.input_content(&l.name).ok()?;
                Some(task_of(&l, &input, answers, need))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let progress = Progress {
        reviewer: who.to_owned(),
        done,
        left: queued + n_skipped,
        queued,
        skipped: n_skipped,
        waiting_for_others: waiting,
    };
    (items, progress)
}

pub(super) async fn queue(State(state): St, Query(q): Query<ReviewerQuery>) -> Response {
    let who = match reviewer(q.reviewer.as_deref()) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let (items, progress) = queue_for(&state, &who).await;
    Json(json!({"items": items, "progress": progress})).into_response()
}

pub(super) async fn progress(State(state): St, Query(q): Query<ReviewerQuery>) -> Response {
    match reviewer(q.reviewer.as_deref()) {
        Ok(who) => Json(queue_for(&state, &who).await.1).into_response(),
        Err(e) => e.into_response(),
    }
}

fn sniff_content_type(bytes: &[u8], key: &str) -> &'static str {
    match bytes {
        [0xff, 0xd8, 0xff, ..] => "image/jpeg",
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        _ => crate::object_store::content_type_for(key),
    }
}

pub(super) async fn image(State(state): St, Path(name): Path<String>) -> Response {
    let l = match state.service.describe_human_loop(&name) {
        Ok(l) => l,
        Err(e) => return from_service(e).into_response(),
    };
    let input = match blocking_input(&state, &l.name).await {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let input: Value = serde_json::from_str(&input).unwrap_or(Value::Null);
    let Some(uri) = input.get("taskObject").and_then(Value::as_str) else {
        return bad(format!(
            "human loop {name:?} has no taskObject in its InputContent"
        ))
        .into_response();
    };
    let key = match OutputKey::from_s3_uri(uri) {
        Ok(k) => k,
        Err(e) => return bad(e.to_string()).into_response(),
    };
    let store = state.store.clone();
    let (b, k) = (key.bucket.clone(), key.key.clone());
    match tokio::task::spawn_blocking(move || store.get(&b, &k)).await {
        Ok(Ok((bytes, _))) => {
            let ct = sniff_content_type(&bytes, &key.key);
            (
                [
                    (header::CONTENT_TYPE, ct),
                    (header::CACHE_CONTROL, "private, max-age=3600"),
                ],
                bytes,
            )
                .into_response()
        }
        Ok(Err(e)) => ApiError(StatusCode::NOT_FOUND, format!("frame {uri}: {e}")).into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AnswerBody {
    reviewer: Option<String>,
    label: String,
    /// Seconds between the frame showing and the answer; the acceptance time is
    /// derived from it.
    #[serde(default)]
    time_spent_seconds: Option<f64>,
}

pub(super) async fn answer(
    State(state): St,
    Path(name): Path<String>,
    Json(body): Json<AnswerBody>,
) -> Result<Response, ApiError> {
    let who = reviewer(body.reviewer.as_deref())?;
    let l = state
        .service
        .describe_human_loop(&name)
        .map_err(from_service)?;
    if l.status != HumanLoopStatus::InProgress {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "human loop {name:?} is {}, no longer waiting for answers",
                l.status.as_str()
            ),
        ));
    }
    let need = needed(&state, &l.flow_definition_name);
    let input = blocking_input(&state, &name).await?;
    let task = task_of(&l, &input, 0, need);
    if body.label != NONE_OF_THESE && !task.choices.contains(&body.label) {
        return Err(bad(format!(
            "{:?} is not one of this loop's labels",
            body.label
        )));
    }
    let now_ms = protocol::timestamp::now_ms() as i64;
    let spent = body
        .time_spent_seconds
        .filter(|s| s.is_finite())
        .unwrap_or(0.0)
        .clamp(0.0, 86_400.0);
    let spent = (spent * 1000.0).round() / 1000.0;
    let answer = HumanAnswer::classification(
        DEFAULT_ANSWER_FIELD,
        &body.label,
        &who,
        now_ms - (spent * 1000.0) as i64,
        now_ms,
        Some(json!({"identityData": {
            "identityProviderType": "Local",
            "issuer": "edge-a2i reviewer page",
            "sub": who,
        }})),
    );

    let mut book = state.book.lock().await;
    let outcome = book
        .check(&name, &answer, need)
        .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    unskip(&state, &who, &name);
    match outcome {
        Outcome::Waiting { have, needed } => {
            let mut next = book.clone();
            next.record(&name, answer);
            state.save_book(&next).map_err(|e| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("saving answers to {}: {e}", state.answers_file.display()),
                )
            })?;
            *book = next;
            Ok(
                Json(json!({"status": "recorded", "answers": have, "needed": needed}))
                    .into_response(),
            )
        }
        Outcome::Complete(all) => {
            let result = state.service.complete_loop(&name, all).await;
            let gone = matches!(
                result,
                Ok(_)
                    | Err(ServiceError::Loop(
                        LoopError::NotFound(_) | LoopError::WrongState { .. }
                    ))
            );
            if gone && book.forget(&name) {
                if let Err(e) = state.save_book(&book) {
                    // Stale answers of a finished loop are harmless: they are ignored.
                    tracing::warn!(error = %e, "saving the reviewer answer book");
                }
            }
            let uri = result.map_err(from_service)?;
            tracing::info!(human_loop = %name, output = %uri, "human loop completed from the reviewer page");
            Ok(Json(json!({"status": "completed", "output": uri})).into_response())
        }
    }
}

fn unskip(state: &PageState, who: &str, name: &str) {
    let mut skipped = state.skipped.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = skipped.get_mut(who) {
        s.remove(name);
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ReviewerBody {
    reviewer: Option<String>,
}

pub(super) async fn skip(
    State(state): St,
    Path(name): Path<String>,
    Json(body): Json<ReviewerBody>,
) -> Result<Response, ApiError> {
    let who = reviewer(body.reviewer.as_deref())?;
    state
        .service
        .describe_human_loop(&name)
        .map_err(from_service)?;
    state
        .skipped
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(who)
        .or_default()
        .insert(name);
    Ok(Json(json!({"status": "skipped"})).into_response())
}

pub(super) async fn clear_skips(
    State(state): St,
    Json(body): Json<ReviewerBody>,
) -> Result<Response, ApiError> {
    let who = reviewer(body.reviewer.as_deref())?;
    state
        .skipped
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&who);
    Ok(Json(json!({"status": "cleared"})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviewer_names_are_checked() {
        assert_eq!(reviewer(Some(" ann.lee@lab ")).unwrap(), "ann.lee@lab");
        for bad in [None, Some(""), Some("<script>"), Some(&*"x".repeat(65))] {
            assert!(reviewer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn images_are_typed_by_their_bytes_first() {
        assert_eq!(
            sniff_content_type(&[0xff, 0xd8, 0xff, 0xe0], "a.png"),
            "image/jpeg"
        );
        assert_eq!(sniff_content_type(b"\x89PNG\r\n", "a"), "image/png");
        assert_eq!(sniff_content_type(b"??", "a.jpg"), "image/jpeg");
    }
}
