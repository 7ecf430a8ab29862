//! [`SageMakerError`]: what a control-plane call failed with, from the service's
//! error response (`__type` in the JSON body or the `x-amzn-ErrorType` header, and
//! `message`) or from the way there (credentials, connection, a body that does not
//! parse). Callers branch on the kind, never on message text.

use http::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SageMakerError {
    /// `ResourceNotFound`.
    #[error("not found: {message}")]
    NotFound { message: String },
    /// `ResourceInUse`: a resource with that name exists (or is being deleted).
    #[error("resource in use: {message}")]
    InUse { message: String },
    /// `ResourceLimitExceeded`: the account's quota of task UIs or flow definitions.
    #[error("resource limit exceeded: {message}")]
    LimitExceeded { message: String },
    /// `ValidationException`: the request itself is wrong.
    #[error("invalid request: {message}")]
    Validation { message: String },
    /// `AccessDeniedException`, unknown or expired credentials, a bad signature.
    #[error("access denied ({code}): {message}")]
    AccessDenied { code: String, message: String },
    /// `ThrottlingException` or HTTP 429.
    #[error("throttled ({code}): {message}")]
    Throttled { code: String, message: String },
    /// Any other error response (5xx included).
    #[error("HTTP {status} {code}: {message}")]
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: connection refused, DNS, TLS, timeout.
    #[error("cannot reach {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    /// The AWS credential chain gave nothing usable.
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    /// A 2xx answer that is not the JSON the operation returns.
    #[error("unexpected response: {0}")]
    BadResponse(String),
}

impl From<crate::aws_http::HttpError> for SageMakerError {
    fn from(e: crate::aws_http::HttpError) -> Self {
        match e {
            crate::aws_http::HttpError::Transport { endpoint, message } => {
                SageMakerError::Transport { endpoint, message }
            }
            crate::aws_http::HttpError::Credentials(m) => SageMakerError::Credentials(m),
        }
    }
}

impl SageMakerError {
    /// Worth trying again later: throttling, 5xx, no connection.
    pub fn is_transient(&self) -> bool {
        match self {
            SageMakerError::Throttled { .. } | SageMakerError::Transport { .. } => true,
            SageMakerError::Service { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The error an AWS JSON 1.1 error response stands for.
    pub fn from_response(status: StatusCode, error_type_header: Option<&str>, body: &[u8]) -> Self {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let raw_code = error_type_header
            .filter(|h| !h.is_empty())
            .or_else(|| json.get("__type").and_then(|v| v.as_str()))
            .or_else(|| json.get("code").and_then(|v| v.as_str()))
            .unwrap_or("");
        let code = error_code(raw_code).to_owned();
        let message = ["message", "Message", "errorMessage"]
            .iter()
            .find_map(|k| json.get(k).and_then(|v| v.as_str()))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no message").to_owned()
                } else {
                    text.chars().take(300).collect()
                }
            });
        match code.as_str() {
            "ResourceNotFound" | "ResourceNotFoundException" => {
                SageMakerError::NotFound { message }
            }
            "ResourceInUse" | "ResourceInUseException" => SageMakerError::InUse { message },
            "ResourceLimitExceeded" | "ServiceQuotaExceededException" => {
                SageMakerError::LimitExceeded { message }
            }
            "ValidationException" | "ValidationError" | "SerializationException" => {
                SageMakerError::Validation { message }
            }
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidSignatureException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "NotAuthorized" => SageMakerError::AccessDenied { code, message },
            c if c.contains("Throttl")
                || c == "TooManyRequestsException"
                || c == "RequestLimitExceeded"
                || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                SageMakerError::Throttled { code, message }
            }
            _ if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED => {
                SageMakerError::AccessDenied {
                    code: if code.is_empty() {
                        status.as_u16().to_string()
                    } else {
                        code
                    },
                    message,
                }
            }
            _ => SageMakerError::Service {
                status: status.as_u16(),
                code: if code.is_empty() {
                    "UnknownError".to_owned()
                } else {
                    code
                },
                message,
            },
        }
    }
}

/// `ResourceNotFound` from `com.amazonaws.sagemaker#ResourceNotFound` or
/// `ResourceNotFound:http://internal.amazon.com/coral/...`, as AWS spells them.
fn error_code(raw: &str) -> &str {
    let code = raw.rsplit_once('#').map_or(raw, |(_, c)| c);
    code.split_once(':').map_or(code, |(c, _)| c).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, header: Option<&str>, body: &str) -> SageMakerError {
        SageMakerError::from_response(
            StatusCode::from_u16(status).unwrap(),
            header,
            body.as_bytes(),
        )
    }

    #[test]
    fn error_types_map_to_kinds_with_the_services_message() {
        assert_eq!(
            err(
                400,
                None,
                r#"{"__type":"ResourceNotFound","message":"Could not find flow definition dogs"}"#
            ),
            SageMakerError::NotFound {
                message: "Could not find flow definition dogs".into()
            }
        );
        assert_eq!(
            err(
                400,
                None,
                r#"{"__type":"ResourceInUse","Message":"exists"}"#
            ),
            SageMakerError::InUse {
                message: "exists".into()
            }
        );
        assert!(matches!(
            err(
                400,
                None,
                r#"{"__type":"ResourceLimitExceeded","message":"quota"}"#
            ),
            SageMakerError::LimitExceeded { .. }
        ));
        assert!(matches!(
            err(
                400,
                None,
                r#"{"__type":"ValidationException","message":"bad"}"#
            ),
            SageMakerError::Validation { .. }
        ));
        let denied = err(
            400,
            None,
            r#"{"__type":"AccessDeniedException","Message":"User: x is not authorized to perform: sagemaker:DescribeFlowDefinition"}"#,
        );
        assert!(
            matches!(&denied, SageMakerError::AccessDenied { code, .. } if code == "AccessDeniedException"),
            "{denied:?}"
        );
        assert!(denied
            .to_string()
            .contains("sagemaker:DescribeFlowDefinition"));
        assert!(matches!(
            err(
                400,
                None,
                r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#
            ),
            SageMakerError::AccessDenied { .. }
        ));
    }

    #[test]
    fn namespaced_codes_and_the_header_are_understood() {
        assert!(matches!(
            err(
                400,
                None,
                r#"{"__type":"com.amazonaws.sagemaker#ResourceNotFound","message":"m"}"#
            ),
            SageMakerError::NotFound { .. }
        ));
        // The header wins over the body, and its ":..." tail is dropped.
        assert!(matches!(
            err(
                400,
                Some("ResourceInUse:http://internal.amazon.com/coral/com.amazonaws.sagemaker/"),
                r#"{"__type":"ValidationException"}"#
            ),
            SageMakerError::InUse { .. }
        ));
    }

    #[test]
    fn throttling_and_server_errors_are_transient_the_rest_is_not() {
        let throttled = err(
            400,
            None,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        );
        assert!(matches!(throttled, SageMakerError::Throttled { .. }));
        assert!(throttled.is_transient());
        assert!(err(429, None, "").is_transient());
        let unavailable = err(
            503,
            None,
            r#"{"__type":"ServiceUnavailable","message":"later"}"#,
        );
        assert!(matches!(
            &unavailable,
            SageMakerError::Service { status: 503, .. }
        ));
        assert!(unavailable.is_transient());
        assert!(!err(400, None, r#"{"__type":"ResourceNotFound"}"#).is_transient());
        assert!(!err(400, None, r#"{"__type":"AccessDeniedException"}"#).is_transient());
    }

    #[test]
    fn a_bare_403_is_access_denied_and_a_body_without_json_is_kept_as_the_message() {
        let e = err(403, None, "<html>Forbidden</html>");
        assert_eq!(
            e,
            SageMakerError::AccessDenied {
                code: "403".into(),
                message: "<html>Forbidden</html>".into()
            }
        );
        let e = err(500, None, "");
        assert_eq!(
            e,
            SageMakerError::Service {
                status: 500,
                code: "UnknownError".into(),
                message: "Internal Server Error".into()
            }
        );
    }
}
