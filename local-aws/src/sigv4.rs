//! SigV4 verification for the local AWS-compatible JSON APIs (A2I runtime, SageMaker
//! control plane, IoT Jobs control API): a request passes only when its
//! `Authorization: AWS4-HMAC-SHA256 ...` header was made with local mode's key pair
//! ([`crate::credentials`]) within 15 minutes of now, as AWS checks it. The S3 API is
//! verified by `s3s` the same way (see [`crate::object_store`]).
//!
//! Sources (AWS IAM User Guide): "Elements of an AWS API request signature", "Create a
//! signed AWS API request" (canonical request, string to sign, signing key) and
//! "Troubleshoot signature errors". The verifier rebuilds the canonical request from the
//! headers the client lists in `SignedHeaders` (so any client's choice of headers
//! verifies), with the non-S3 rules: the URI path encoded a second time, the query
//! parameters decoded, strictly re-encoded and sorted. The HMAC chain is `aws-sigv4`'s
//! (`generate_signing_key`, `calculate_signature`), the code the AWS SDK for Rust signs
//! with. Any region and service name in the credential scope are accepted: there is one
//! local endpoint per API, and the secret is what proves who signed.
//!
//! Refusals are 403s in the AWS JSON error shape, named as AWS names them:
//! `MissingAuthenticationTokenException` (no signature), `IncompleteSignatureException`
//! (a malformed one), `UnrecognizedClientException` (another access key id: what AWS JSON
//! services answer where query APIs say `InvalidClientTokenId`) and
//! `InvalidSignatureException` (wrong secret, altered request, or outside the clock-skew
//! window; the message carries the canonical request and string to sign, as AWS's does).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::credentials::{constant_time_eq, Credentials};
use crate::review_service::wire::ApiError;

/// How far a request's `X-Amz-Date` may be from the server's clock (AWS: 15 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// RFC 3986 unreserved characters stay; everything else is `%XX` (SigV4's `UriEncode`).
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, keeping `/` (path segments).
const PATH: &AsciiSet = &STRICT.remove(b'/');

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Authentication Token: the request has no AWS4-HMAC-SHA256 Authorization header; sign it (SigV4) with local mode's credentials ({hint})")]
    Missing { hint: String },
    #[error("{0}")]
    Incomplete(String),
    #[error("The security token included in the request is invalid: access key id {key:?} is not local mode's ({hint})")]
    UnknownKey { key: String, hint: String },
    #[error("Signature expired: {date} is now earlier than {earliest} ({now} - 15 min.)")]
    Expired {
        date: String,
        earliest: String,
        now: String,
    },
    #[error("Signature not yet current: {date} is still later than {latest} ({now} + 15 min.)")]
    NotYetCurrent {
        date: String,
        latest: String,
        now: String,
    },
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. The Canonical String for this request should have been\n'{canonical_request}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n")]
    Mismatch {
        canonical_request: String,
        string_to_sign: String,
    },
}

impl AuthError {
    /// The AWS error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing { .. } => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnknownKey { .. } => "UnrecognizedClientException",
            AuthError::Expired { .. }
            | AuthError::NotYetCurrent { .. }
            | AuthError::Mismatch { .. } => "InvalidSignatureException",
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        ApiError::new(StatusCode::FORBIDDEN, self.code(), self.to_string()).into_response()
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn incomplete(m: impl Into<String>) -> AuthError {
    AuthError::Incomplete(m.into())
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, AuthError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            incomplete(format!(
                "Authorization header must start with {ALGORITHM} (SigV4), got {:?}",
                value.split(' ').next().unwrap_or("")
            ))
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').unwrap_or((part.trim(), ""));
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    fn need<'v>(v: Option<&'v str>, what: &str) -> Result<&'v str, AuthError> {
        v.filter(|v| !v.is_empty())
            .ok_or_else(|| incomplete(format!("Authorization header requires '{what}' parameter")))
    }
    let credential = need(credential, "Credential")?;
    let signed = need(signed, "SignedHeaders")?;
    let signature = need(signature, "Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(format!(
            "Credential {credential:?} must be KEY/YYYYMMDD/REGION/SERVICE/aws4_request"
        )));
    };
    if terminator != "aws4_request" || date.len() != 8 {
        return Err(incomplete(format!(
            "Credential {credential:?} must be KEY/YYYYMMDD/REGION/SERVICE/aws4_request"
        )));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// SigV4's canonical URI of a non-S3 service: the path as sent, encoded once more.
fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    utf8_percent_encode(raw_path, PATH).to_string()
}

/// The query's parameters decoded, strictly re-encoded and sorted by name, then value.
fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let enc = |s: &str| {
                let decoded = percent_decode_str(s).collect::<Vec<u8>>();
                percent_encoding::percent_encode(&decoded, STRICT).to_string()
            };
            (enc(k), enc(v))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Header values trimmed, inner runs of spaces made one, several values joined by `,`.
fn canonical_header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The canonical request of a request ("Create a canonical request for Signature
/// Version 4"), signing the headers the client named.
fn canonical_request(
    parts: &http::request::Parts,
    signed_headers: &[&str],
    payload_hash: &str,
) -> Result<String, AuthError> {
    let mut headers = String::new();
    for name in signed_headers {
        let value = canonical_header_value(&parts.headers, name).ok_or_else(|| {
            incomplete(format!(
                "header {name:?} is listed in SignedHeaders but not sent"
            ))
        })?;
        headers.push_str(&format!("{name}:{value}\n"));
    }
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method,
        canonical_uri(parts.uri.path()),
        canonical_query(parts.uri.query().unwrap_or("")),
        headers,
        signed_headers.join(";"),
        payload_hash
    ))
}

fn amz_date(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(f).expect("formats")
}

/// Verifies SigV4 signatures made with one key pair.
#[derive(Debug, Clone)]
pub struct Verifier {
    credentials: Credentials,
    /// Where clients find the credentials, for error messages (a path, never a secret).
    hint: String,
}

impl Verifier {
    /// `hint` says where clients find the credentials (e.g. the file's path).
    pub fn new(credentials: Credentials, hint: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            credentials,
            hint: hint.into(),
        })
    }

    /// Checks one request (its head and whole body) against the clock `now`.
    pub fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let query = parts.uri.query().unwrap_or("");
        if query
            .split('&')
            .any(|p| p.starts_with("X-Amz-Signature=") || p.starts_with("X-Amz-Credential="))
        {
            return Err(incomplete(
                "query-string (presigned URL) signatures are not accepted by this API; sign the Authorization header",
            ));
        }
        let Some(header) = parts.headers.get(http::header::AUTHORIZATION) else {
            return Err(AuthError::Missing {
                hint: self.hint.clone(),
            });
        };
        let header = header
            .to_str()
            .map_err(|_| incomplete("Authorization header is not ASCII"))?;
        let auth = parse_authorization(header)?;
        if !constant_time_eq(auth.access_key_id, &self.credentials.access_key_id) {
            return Err(AuthError::UnknownKey {
                key: auth.access_key_id.to_owned(),
                hint: self.hint.clone(),
            });
        }
        if !auth.signed_headers.contains(&"host") {
            return Err(incomplete("SignedHeaders must include host"));
        }
        let date_text = parts
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| incomplete("the signed request has no X-Amz-Date header"))?;
        let format =
            time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let signed_at = time::PrimitiveDateTime::parse(date_text, format)
            .map_err(|_| incomplete(format!("X-Amz-Date {date_text:?} is not YYYYMMDDTHHMMSSZ")))?
            .assume_utc();
        if !date_text.starts_with(auth.date) {
            return Err(incomplete(format!(
                "Credential date {} does not match X-Amz-Date {date_text}",
                auth.date
            )));
        }
        let now_t = OffsetDateTime::from(now);
        let skew = time::Duration::try_from(MAX_SKEW).expect("fits");
        if signed_at < now_t - skew {
            return Err(AuthError::Expired {
                date: date_text.to_owned(),
                earliest: amz_date(now_t - skew),
                now: amz_date(now_t),
            });
        }
        if signed_at > now_t + skew {
            return Err(AuthError::NotYetCurrent {
                date: date_text.to_owned(),
                latest: amz_date(now_t + skew),
                now: amz_date(now_t),
            });
        }
        let body_hash = hex::encode(Sha256::digest(body));
        let payload_hash = match parts.headers.get("x-amz-content-sha256") {
            Some(v) => {
                let v = v.to_str().unwrap_or("");
                if v != "UNSIGNED-PAYLOAD" && v != body_hash {
                    return Err(incomplete(
                        "X-Amz-Content-SHA256 does not match the request body",
                    ));
                }
                v.to_owned()
            }
            None => body_hash,
        };
        let canonical_request = canonical_request(parts, &auth.signed_headers, &payload_hash)?;
        let string_to_sign = format!(
            "{ALGORITHM}\n{date_text}\n{}/{}/{}/aws4_request\n{}",
            auth.date,
            auth.region,
            auth.service,
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let key = aws_sigv4::sign::v4::generate_signing_key(
            &self.credentials.secret_access_key,
            SystemTime::from(signed_at),
            auth.region,
            auth.service,
        );
        let expected = aws_sigv4::sign::v4::calculate_signature(key, string_to_sign.as_bytes());
        if constant_time_eq(&expected, auth.signature) {
            Ok(())
        } else {
            Err(AuthError::Mismatch {
                canonical_request,
                string_to_sign,
            })
        }
    }
}

/// Request bodies the middleware reads whole to hash them, at most (A2I's
/// `InputContent` may be 3 MiB, escaped in JSON).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// Middleware: passes a request on only when [`Verifier::verify`] accepts it.
pub async fn require_signature(
    State(verifier): State<Arc<Verifier>>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ValidationException",
                format!("request body: {e} (at most {MAX_BODY} bytes)"),
            )
            .into_response()
        }
    };
    if let Err(e) = verifier.verify(&parts, &bytes, SystemTime::now()) {
        tracing::warn!(code = e.code(), method = %parts.method, path = parts.uri.path(), "refused an unsigned or badly signed request");
        return e.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
#[path = "sigv4_tests.rs"]
mod tests;
