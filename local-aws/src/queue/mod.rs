//! Local mode's completions queue: the subset of the Amazon SQS API the relay's
//! consumer calls (`GetQueueUrl`, `GetQueueAttributes`, `ReceiveMessage` with long
//! polling, `DeleteMessage`, `ChangeMessageVisibility`, and `SendMessage`), in the AWS
//! JSON 1.0 protocol that `aws-sdk-sqs` speaks (`POST /`, `X-Amz-Target:
//! AmazonSQS.<Operation>`; AWS, Amazon SQS API Reference), signed with local mode's
//! credentials. The review service puts A2I's "SageMaker A2I HumanLoop Status Change"
//! event into it when a loop completes or stops (in EventBridge's place), so the
//! relay in local mode runs the very consumer it runs against AWS, configured by
//! `[results.queue] endpoint_url` alone.
//!
//! One queue, in memory (the pure state is [`state::QueueState`]): events pending when
//! local mode stops are lost, and the relay's reconciliation sweep finds their loops.

pub mod state;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::review_service::wire::ApiError;
use crate::review_service::{HumanLoop, HumanLoopStatus, ReviewService};
use crate::sigv4::Verifier;
use state::QueueState;

const ACCOUNT: &str = "000000000000";
const REGION: &str = "us-east-1";

/// The queue and whoever waits on it; cheap to clone.
#[derive(Clone)]
pub struct LocalQueue {
    name: Arc<str>,
    url: Arc<str>,
    state: Arc<Mutex<QueueState>>,
    arrived: Arc<Notify>,
}

fn now_ms() -> i64 {
    protocol::timestamp::now_ms() as i64
}

impl LocalQueue {
    /// Queue `name` served at `base_url` (`http://host:port`), with a dead-letter
    /// queue after `max_receive_count` receives.
    pub fn new(name: &str, base_url: &str, max_receive_count: u32) -> Self {
        LocalQueue {
            name: name.into(),
            url: format!("{}/{ACCOUNT}/{name}", base_url.trim_end_matches('/')).into(),
            state: Arc::new(Mutex::new(QueueState::new(max_receive_count))),
            arrived: Arc::new(Notify::new()),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a message; returns its id.
    pub fn send(&self, body: String) -> String {
        let id = self.lock().send(body, now_ms());
        self.arrived.notify_waiters();
        id
    }

    /// (visible, in flight).
    pub fn counts(&self) -> (usize, usize) {
        self.lock().counts(now_ms())
    }

    pub fn dead_letters(&self) -> Vec<String> {
        self.lock().dead_letters().to_vec()
    }

    /// Receives up to `max`, waiting up to `wait` for the first (long polling).
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Vec<state::Delivery> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let (got, next) = {
                let mut q = self.lock();
                let got = q.receive(max, visibility.as_millis() as i64, now_ms());
                (got, q.next_visible_at())
            };
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return got;
            }
            let wake = next
                .map(|at| now + Duration::from_millis((at - now_ms()).max(1) as u64))
                .map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// The SQS routes, taking requests signed for `verifier`.
pub fn router(queue: LocalQueue, verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route("/", post(dispatch))
        .route("/{*path}", post(dispatch))
        .layer(axum::middleware::from_fn_with_state(
            verifier,
            crate::sigv4::require_signature,
        ))
        .with_state(queue)
}

/// Serves `queue` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    queue: LocalQueue,
    verifier: Arc<Verifier>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(queue, verifier))
        .with_graceful_shutdown(shutdown)
        .await
}

fn sqs_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    let mut resp = ApiError::new(status, code, message.into()).into_response();
    if code == "QueueDoesNotExist" {
        // aws-sdk-sqs reads the code from `__type`; query-compatible clients from here.
        resp.headers_mut().insert(
            "x-amzn-query-error",
            HeaderValue::from_static("AWS.SimpleQueueService.NonExistentQueue;Sender"),
        );
    }
    resp
}

fn json_ok(body: Value) -> Response {
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    resp
}

fn seconds(body: &Value, field: &str, default: u64, max: u64) -> Duration {
    Duration::from_secs(body[field].as_u64().unwrap_or(default).min(max))
}

async fn dispatch(
    State(q): State<LocalQueue>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(operation) = target.strip_prefix("AmazonSQS.") else {
        return sqs_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("unknown target {target:?}"),
        );
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if operation != "GetQueueUrl" {
        let url = body["QueueUrl"].as_str().unwrap_or("");
        if url != &*q.url {
            return sqs_error(
                StatusCode::BAD_REQUEST,
                "QueueDoesNotExist",
                format!("no queue {url:?}"),
            );
        }
    }
    match operation {
        "GetQueueUrl" => {
            if body["QueueName"].as_str() == Some(&*q.name) {
                json_ok(json!({"QueueUrl": &*q.url}))
            } else {
                sqs_error(
                    StatusCode::BAD_REQUEST,
                    "QueueDoesNotExist",
                    "The specified queue does not exist.",
                )
            }
        }
        "GetQueueAttributes" => {
            let (visible, in_flight) = q.counts();
            let arn = |name: &str| format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}");
            let max = q.lock().max_receive_count();
            let redrive = json!({"deadLetterTargetArn": arn(&format!("{}-dlq", q.name)), "maxReceiveCount": max});
            json_ok(json!({"Attributes": {
                "QueueArn": arn(&q.name),
                "RedrivePolicy": redrive.to_string(),
                "ApproximateNumberOfMessages": visible.to_string(),
                "ApproximateNumberOfMessagesNotVisible": in_flight.to_string(),
            }}))
        }
        "ReceiveMessage" => {
            let max = body["MaxNumberOfMessages"]
                .as_u64()
                .unwrap_or(1)
                .clamp(1, 10) as usize;
            let wait = seconds(&body, "WaitTimeSeconds", 0, 20);
            let visibility = seconds(&body, "VisibilityTimeout", 30, 12 * 3600);
            let got = q.receive(max, visibility, wait).await;
            let messages: Vec<Value> = got
                .into_iter()
                .map(|d| json!({
                    "MessageId": d.message_id, "ReceiptHandle": d.receipt_handle, "Body": d.body,
                    "Attributes": {"ApproximateReceiveCount": d.receive_count.to_string()},
                }))
                .collect();
            json_ok(json!({"Messages": messages}))
        }
        "DeleteMessage" => {
            // SQS accepts a stale handle of a message received again; so does this.
            q.lock()
                .delete(body["ReceiptHandle"].as_str().unwrap_or(""));
            json_ok(json!({}))
        }
        "ChangeMessageVisibility" => {
            let receipt = body["ReceiptHandle"].as_str().unwrap_or("");
            let after = seconds(&body, "VisibilityTimeout", 0, 12 * 3600);
            if q.lock()
                .change_visibility(receipt, after.as_millis() as i64, now_ms())
            {
                q.arrived.notify_waiters();
                json_ok(json!({}))
            } else {
                sqs_error(
                    StatusCode::BAD_REQUEST,
                    "MessageNotInflight",
                    "The message is not in flight.",
                )
            }
        }
        "SendMessage" => {
            let Some(text) = body["MessageBody"].as_str() else {
                return sqs_error(
                    StatusCode::BAD_REQUEST,
                    "MissingParameter",
                    "MessageBody is required.",
                );
            };
            let id = q.send(text.to_owned());
            json_ok(json!({"MessageId": id}))
        }
        other => sqs_error(
            StatusCode::BAD_REQUEST,
            "UnsupportedOperation",
            format!("local mode's queue does not serve {other}"),
        ),
    }
}

/// A2I's status-change event for `l` (the body EventBridge would put in the queue).
pub fn status_change_event(l: &HumanLoop) -> String {
    use cloud_relay::relay::a2i::{LoopState, LoopSummary};
    let state = match l.status {
        HumanLoopStatus::Completed => LoopState::Completed,
        HumanLoopStatus::InProgress | HumanLoopStatus::Stopping => LoopState::InProgress,
        other => LoopState::Ended {
            status: other.as_str().to_owned(),
            reason: l.failure_reason.clone(),
        },
    };
    let summary = LoopSummary {
        name: l.name.clone(),
        state,
        creation_ms: (l.creation_time.unix_timestamp_nanos() / 1_000_000) as i64,
    };
    cloud_relay::relay::completions::event::event_body(
        &l.flow_definition_arn,
        &summary,
        Some(&l.output_s3_uri),
    )
}

/// Makes `service` put each loop's end into `queue`, as A2I and an EventBridge rule
/// do; `false` if the service has a hook already.
pub fn emit_loop_ends(service: &ReviewService, queue: LocalQueue) -> bool {
    service
        .on_loop_end(Box::new(move |l| {
            queue.send(status_change_event(l));
        }))
        .is_ok()
}

/// Local mode's queue name.
pub const LOCAL_QUEUE: &str = "edge-a2i-completions";

/// For `local-aws run`: serves the completions queue on a free loopback port, fed by
/// `service`, until `shutdown`; returns the relay's `[results.queue]` for it.
pub async fn start_local(
    service: &ReviewService,
    verifier: Arc<Verifier>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(
    cloud_relay::config::QueueConfig,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the completions queue")?;
    let url = format!("http://{}", listener.local_addr()?);
    let max_receive_count = cloud_relay::config::default_max_receive_count();
    let queue = LocalQueue::new(LOCAL_QUEUE, &url, max_receive_count);
    if !emit_loop_ends(service, queue.clone()) {
        anyhow::bail!("the review service sends its loop ends elsewhere already");
    }
    let task = tokio::spawn(async move {
        serve(listener, queue, verifier, shutdown)
            .await
            .context("completions queue")
    });
    let config = cloud_relay::config::QueueConfig {
        name: LOCAL_QUEUE.to_owned(),
        endpoint_url: Some(url),
        events_endpoint_url: None,
        visibility_timeout: cloud_relay::config::default_visibility_timeout(),
        wait_time: cloud_relay::config::default_wait_time(),
        max_receive_count,
    };
    Ok((config, task))
}
