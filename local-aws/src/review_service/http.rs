//! The HTTP face of the review service: the A2I runtime API (REST-JSON, as in the
//! `sagemaker-a2i-runtime` 2019-11-07 service model) and, on `POST /`, the SageMaker
//! control-plane subset (JSON 1.1, see `control_api`). One axum router, one port.
//!
//! | method + path | operation |
//! |---|---|
//! | `POST /human-loops` | StartHumanLoop |
//! | `GET /human-loops?FlowDefinitionArn=..&CreationTimeAfter=..&CreationTimeBefore=..&SortOrder=..&NextToken=..&MaxResults=..` | ListHumanLoops |
//! | `GET /human-loops/{name}` | DescribeHumanLoop |
//! | `DELETE /human-loops/{name}` | DeleteHumanLoop |
//! | `POST /human-loops/stop` | StopHumanLoop |
//! | `POST /` + `X-Amz-Target: SageMaker.<Op>` | Create/Describe/DeleteHumanTaskUi, Create/Describe/DeleteFlowDefinition |
//! | `GET /human-task-uis/{name}/template` | the task UI's template (what `UiTemplate.Url` points at) |
//!
//! Errors carry their type in the `x-amzn-ErrorType` header and as `__type` in the body,
//! plus `message`: the AWS SDKs' error parsers (smithy-rs `parse_error_metadata`,
//! botocore) read the header first and fall back to the body.
//!
//! SigV4: every route takes only requests signed with local mode's key pair
//! ([`crate::sigv4`]); unsigned or otherwise signed ones get a 403 naming why. Task UI
//! templates are served as inert `text/plain` with a sandboxing CSP: they are written
//! by whoever holds the key, and must never run as a page on this origin.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::control_api;
use super::service::{ReviewService, ServiceError};
use super::store::{HumanLoop, HumanLoopStatus, ListQuery, LoopError, SortOrder, StartRequest};
use super::wire::{blocking, parse_body, request_id, required, ApiError};
use crate::sigv4::Verifier;

/// Request bodies up to this size: `InputContent` may be 3 MiB, escaped in JSON.
const BODY_LIMIT: usize = crate::sigv4::MAX_BODY;

/// The A2I runtime and control-plane routes, taking requests signed for `verifier`.
pub fn router(service: ReviewService, verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route("/", post(control_api::dispatch))
        .route("/human-loops", post(start_human_loop).get(list_human_loops))
        // "stop" is also a valid loop name: GET/DELETE on it describe/delete that loop.
        .route(
            "/human-loops/stop",
            post(stop_human_loop)
                .get(|s: State<ReviewService>| describe_human_loop(s, Ok(Path("stop".to_owned()))))
                .delete(|s: State<ReviewService>| {
                    delete_human_loop(s, Ok(Path("stop".to_owned())))
                }),
        )
        .route(
            "/human-loops/{name}",
            get(describe_human_loop).delete(delete_human_loop),
        )
        .route("/human-task-uis/{name}/template", get(task_ui_template))
        .fallback(unknown_operation)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            verifier,
            crate::sigv4::require_signature,
        ))
        .with_state(service)
}

impl ApiError {
    /// The A2I runtime's error for a service error.
    fn runtime(e: ServiceError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            ServiceError::Loop(LoopError::AlreadyExists(_)) => (S::CONFLICT, "ConflictException"),
            ServiceError::Loop(LoopError::NotFound(_)) => {
                (S::NOT_FOUND, "ResourceNotFoundException")
            }
            ServiceError::Control(super::control_plane::ControlError::ResourceNotFound {
                ..
            }) => (S::NOT_FOUND, "ResourceNotFoundException"),
            ServiceError::Loop(LoopError::QuotaExceeded { .. }) => {
                (S::PAYMENT_REQUIRED, "ServiceQuotaExceededException")
            }
            ServiceError::Loop(_)
            | ServiceError::Control(_)
            | ServiceError::BadFlowDefinitionArn(_)
            | ServiceError::UnknownFlowDefinition(_) => (S::BAD_REQUEST, "ValidationException"),
            ServiceError::Persist(_) | ServiceError::Output(_) | ServiceError::Internal(_) => {
                tracing::error!(error = %e, "review service failure");
                (S::INTERNAL_SERVER_ERROR, "InternalServerException")
            }
        };
        Self::new(status, code, e.to_string())
    }
}

fn ok_json(body: Value) -> Response {
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-amzn-RequestId", request_id());
    resp
}

/// `2024-05-01T12:00:00.123Z`: the ISO 8601 form REST-JSON timestamps use (the
/// protocol crate's one RFC 3339 formatter).
pub fn iso8601(t: OffsetDateTime) -> String {
    protocol::timestamp::format_rfc3339_utc(t.unix_timestamp_nanos().div_euclid(1_000_000) as i64)
}

/// Query-string timestamps: RFC 3339 (what the SDKs send), a bare date (`2020-02-24`,
/// the API reference's example, read as midnight UTC) or epoch seconds.
pub fn parse_timestamp(field: &str, s: &str) -> Result<OffsetDateTime, ApiError> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, date_format) {
        return Ok(d.midnight().assume_utc());
    }
    if let Ok(secs) = s.parse::<f64>() {
        if let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128) {
            return Ok(t);
        }
    }
    Err(ApiError::validation(format!(
        "{field} {s:?} is not an ISO 8601 timestamp"
    )))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartBody {
    human_loop_name: Option<String>,
    flow_definition_arn: Option<String>,
    human_loop_input: Option<InputBody>,
    data_attributes: Option<DataAttributes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InputBody {
    input_content: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DataAttributes {
    content_classifiers: Vec<String>,
}

async fn start_human_loop(
    State(service): State<ReviewService>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: StartBody = parse_body(&body)?;
    let name = required("HumanLoopName", b.human_loop_name)?;
    let flow_arn = required("FlowDefinitionArn", b.flow_definition_arn)?;
    let input = required("HumanLoopInput", b.human_loop_input)?;
    let input_content = required("HumanLoopInput.InputContent", input.input_content)?;
    if input_content.len() > 3 * 1024 * 1024 {
        return Err(ApiError::validation(
            "HumanLoopInput.InputContent is longer than 3145728",
        ));
    }
    let content_classifiers = b
        .data_attributes
        .map(|d| d.content_classifiers)
        .unwrap_or_default();
    const CLASSIFIERS: [&str; 2] = [
        "FreeOfPersonallyIdentifiableInformation",
        "FreeOfAdultContent",
    ];
    if let Some(bad) = content_classifiers
        .iter()
        .find(|c| !CLASSIFIERS.contains(&c.as_str()))
    {
        return Err(ApiError::validation(format!(
            "unknown ContentClassifier {bad:?}"
        )));
    }
    let req = StartRequest {
        name,
        input_content,
        content_classifiers,
    };
    let arn = blocking(service, move |s| s.start_human_loop(&flow_arn, req))
        .await
        .map_err(ApiError::runtime)?;
    Ok(ok_json(json!({ "HumanLoopArn": arn })))
}

fn path_name(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(name)| name)
        .map_err(|e| ApiError::validation(format!("HumanLoopName: {e}")))
}

fn describe_json(l: &HumanLoop) -> Value {
    let mut v = json!({
        "CreationTime": iso8601(l.creation_time),
        "HumanLoopStatus": l.status.as_str(),
        "HumanLoopName": l.name,
        "HumanLoopArn": l.arn,
        "FlowDefinitionArn": l.flow_definition_arn,
    });
    if l.status == HumanLoopStatus::Completed {
        v["HumanLoopOutput"] = json!({ "OutputS3Uri": l.output_s3_uri });
    }
    if let Some(r) = &l.failure_reason {
        v["FailureReason"] = json!(r);
    }
    if let Some(c) = &l.failure_code {
        v["FailureCode"] = json!(c);
    }
    v
}

async fn describe_human_loop(
    State(service): State<ReviewService>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = path_name(name)?;
    let l = service
        .describe_human_loop(&name)
        .map_err(ApiError::runtime)?;
    Ok(ok_json(describe_json(&l)))
}

async fn delete_human_loop(
    State(service): State<ReviewService>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = path_name(name)?;
    blocking(service, move |s| s.delete_human_loop(&name))
        .await
        .map_err(ApiError::runtime)?;
    Ok(ok_json(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StopBody {
    human_loop_name: Option<String>,
}

async fn stop_human_loop(
    State(service): State<ReviewService>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: StopBody = parse_body(&body)?;
    let name = required("HumanLoopName", b.human_loop_name)?;
    blocking(service, move |s| s.stop_human_loop(&name))
        .await
        .map_err(ApiError::runtime)?;
    Ok(ok_json(json!({})))
}

async fn list_human_loops(
    State(service): State<ReviewService>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::validation(format!("query string: {e}")))?;
    let mut q = ListQuery::default();
    let mut flow_arn = None;
    for (k, v) in pairs {
        match k.as_str() {
            "FlowDefinitionArn" => flow_arn = Some(v),
            "CreationTimeAfter" => q.created_after = Some(parse_timestamp(&k, &v)?),
            "CreationTimeBefore" => q.created_before = Some(parse_timestamp(&k, &v)?),
            "SortOrder" => {
                q.sort_order = match v.as_str() {
                    "Ascending" => SortOrder::Ascending,
                    "Descending" => SortOrder::Descending,
                    _ => {
                        return Err(ApiError::validation(format!(
                            "SortOrder {v:?} is not Ascending or Descending"
                        )))
                    }
                }
            }
            "NextToken" => q.next_token = Some(v),
            "MaxResults" => {
                q.max_results = Some(v.parse().map_err(|_| {
                    ApiError::validation(format!("MaxResults {v:?} is not an integer"))
                })?)
            }
            _ => {} // unknown parameters are ignored, as AWS does
        }
    }
    let flow_arn = required("FlowDefinitionArn", flow_arn)?;
    let (loops, next) = service
        .list_human_loops(&flow_arn, q)
        .map_err(ApiError::runtime)?;
    let summaries: Vec<Value> = loops
        .iter()
        .map(|l| {
            let mut v = json!({
                "HumanLoopName": l.name,
                "HumanLoopStatus": l.status.as_str(),
                "CreationTime": iso8601(l.creation_time),
                "FlowDefinitionArn": l.flow_definition_arn,
            });
            if let Some(r) = &l.failure_reason {
                v["FailureReason"] = json!(r);
            }
            v
        })
        .collect();
    let mut body = json!({ "HumanLoopSummaries": summaries });
    if let Some(t) = next {
        body["NextToken"] = json!(t);
    }
    Ok(ok_json(body))
}

async fn task_ui_template(
    State(service): State<ReviewService>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = path_name(name)?;
    let ui = service
        .describe_human_task_ui(&name)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFound", e.to_string()))?;
    // Inert text: a browser shows the markup, never runs it (and the CSP sandbox would
    // give any rendering a unique opaque origin without scripts besides).
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox",
            ),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"template.html\"",
            ),
        ],
        ui.template,
    )
        .into_response())
}

async fn unknown_operation(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        format!("no operation at {method} {uri}"),
    )
}
