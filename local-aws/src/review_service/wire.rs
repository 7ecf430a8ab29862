//! What the review service's two HTTP faces share (the A2I runtime's REST-JSON in
//! [`super::http`], the SageMaker control plane's JSON 1.1 in [`super::control_api`]):
//! errors in the shape AWS services send them, `x-amzn-RequestId`, and running a
//! disk-writing service call on the blocking pool.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::service::{ReviewService, ServiceError};

/// An error as AWS services send it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"__type": self.code, "message": self.message});
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert("x-amzn-ErrorType", HeaderValue::from_static(self.code));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("x-amzn-RequestId", request_id());
        resp
    }
}

/// A fresh `x-amzn-RequestId` (unique per process run, UUID-shaped).
pub fn request_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:08x}-0000-4000-8000-{n:012x}", std::process::id());
    HeaderValue::from_str(&id).expect("hex is a valid header value")
}

/// Runs a (disk-writing) service call on the blocking pool.
pub async fn blocking<R: Send + 'static>(
    service: ReviewService,
    f: impl FnOnce(&ReviewService) -> Result<R, ServiceError> + Send + 'static,
) -> Result<R, ServiceError> {
    tokio::task::spawn_blocking(move || f(&service))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
}

/// The JSON request body (an empty body reads as `{}`, as the SDKs send for calls
/// without input); a parse error is a `ValidationException` naming the problem.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| ApiError::validation(format!("request body: {e}")))
}

/// A required request member, or a `ValidationException` naming it.
pub fn required<T>(field: &str, v: Option<T>) -> Result<T, ApiError> {
    v.ok_or_else(|| ApiError::validation(format!("{field} is required")))
}
