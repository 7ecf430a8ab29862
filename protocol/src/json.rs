//! Conventions shared by the JSON messages (event meta, receipt, status, review
//! result): the one error type they report, the version check that runs before a
//! message is parsed in full (so a message from a newer sender says "version 2 is not
//! supported" rather than "missing field"), and the field checks several of them need
//! (sha256 hex, s3:// URIs, RFC 3339 timestamps). Unknown fields are tolerated so an
//! older reader accepts additive changes; anything breaking bumps `v`.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// A JSON message that could not be accepted. `message` names the message type
/// ("event meta", "receipt", ...), `field` the field at fault.
#[derive(Debug, Error)]
pub enum MessageError {
    /// Not JSON, a missing field, or a field of the wrong type (serde names which).
    #[error("{message} does not parse: {source}")]
    Json {
        message: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The `v` field names a format version this build does not read.
    #[error(
        "{message} format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        message: &'static str,
        found: u64,
        supported: u32,
    },
    /// The message parsed but a field's value is not allowed.
    #[error("{message}: field `{field}` {problem}")]
    InvalidField {
        message: &'static str,
        field: String,
        problem: String,
    },
}

impl MessageError {
    pub(crate) fn invalid(
        message: &'static str,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        MessageError::InvalidField {
            message,
            field: field.into(),
            problem: problem.into(),
        }
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    v: Option<u64>,
}

/// Checks `v` first, then parses the whole message.
pub(crate) fn from_json_versioned<T: DeserializeOwned>(
    bytes: &[u8],
    message: &'static str,
    supported: u32,
) -> Result<T, MessageError> {
    check_version(bytes, message, supported)?;
    serde_json::from_slice(bytes).map_err(|source| MessageError::Json { message, source })
}

pub(crate) fn check_version(
    bytes: &[u8],
    message: &'static str,
    supported: u32,
) -> Result<(), MessageError> {
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|source| MessageError::Json { message, source })?;
    match probe.v {
        Some(found) if found != u64::from(supported) => Err(MessageError::UnsupportedVersion {
            message,
            found,
            supported,
        }),
        _ => Ok(()),
    }
}

pub(crate) fn check_v(message: &'static str, v: u32, supported: u32) -> Result<(), MessageError> {
    if v == supported {
        Ok(())
    } else {
        Err(MessageError::UnsupportedVersion {
            message,
            found: u64::from(v),
            supported,
        })
    }
}

/// Lowercase hex SHA-256 of `bytes`, the form every `sha256` field carries.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// True for exactly 64 lowercase hex digits. Lowercase only, so that two digests of
/// the same bytes always compare equal as strings.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(crate) fn check_sha256(
    message: &'static str,
    field: &str,
    value: &str,
) -> Result<(), MessageError> {
    if is_sha256_hex(value) {
        Ok(())
    } else {
        Err(MessageError::invalid(
            message,
            field,
            format!("{value:?} is not 64 lowercase hex digits"),
        ))
    }
}

/// Splits `s3://bucket/key` into bucket and key, both non-empty. The one parser of
/// object URIs in the workspace (events, manifests, A2I output, restarts).
pub fn parse_s3_uri(uri: &str) -> Option<(&str, &str)> {
    let (bucket, key) = uri.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

/// Splits `s3://bucket[/prefix]` (an output location, as an A2I flow definition's
/// `S3OutputPath`) into a non-empty bucket and a prefix, possibly empty.
pub fn parse_s3_prefix_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, prefix))
}

/// True for `s3://bucket/key` with a non-empty bucket and key.
pub fn is_s3_uri(s: &str) -> bool {
    parse_s3_uri(s).is_some()
}

pub(crate) fn check_s3_uri(
    message: &'static str,
    field: &str,
    value: &str,
) -> Result<(), MessageError> {
    if is_s3_uri(value) {
        Ok(())
    } else {
        Err(MessageError::invalid(
            message,
            field,
            format!("{value:?} is not an s3://bucket/key URI"),
        ))
    }
}

pub(crate) fn check_rfc3339(
    message: &'static str,
    field: &str,
    value: &str,
) -> Result<(), MessageError> {
    crate::timestamp::parse_rfc3339_utc(value)
        .map(drop)
        .map_err(|e| MessageError::invalid(message, field, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_lowercase_and_recognised() {
        let digest = sha256_hex(b"abc");
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&digest));
        assert!(!is_sha256_hex(&digest.to_uppercase()));
        assert!(!is_sha256_hex(&digest[1..]));
    }

    #[test]
    fn s3_uris_need_a_bucket_and_a_key() {
        assert!(is_s3_uri("s3://bucket/events/a.jpg"));
        assert_eq!(parse_s3_uri("s3://b/k/x.json"), Some(("b", "k/x.json")));
        assert_eq!(parse_s3_uri("s3://b/"), None);
        assert_eq!(parse_s3_uri("http://b/k"), None);
        assert_eq!(parse_s3_prefix_uri("s3://b"), Some(("b", "")));
        assert_eq!(parse_s3_prefix_uri("s3://b/out/"), Some(("b", "out/")));
        assert_eq!(parse_s3_prefix_uri("s3:///out"), None);
        assert!(!is_s3_uri("s3://bucket/"));
        assert!(!is_s3_uri("s3:///key"));
        assert!(!is_s3_uri("https://bucket/key"));
    }

    #[test]
    fn a_newer_version_is_reported_before_missing_fields() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Msg {
            v: u32,
            needed: String,
        }
        let err = from_json_versioned::<Msg>(br#"{"v":2}"#, "test message", 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test message format version 2 is not supported (this build reads version 1)"
        );
        let err = from_json_versioned::<Msg>(br#"{"v":1}"#, "test message", 1).unwrap_err();
        assert!(err.to_string().contains("missing field `needed`"), "{err}");
    }
}
