//! The event: what the agent knows about one frame it sends for review (`EventMeta`,
//! JSON), its id (`EventId`, a UUID, v7 when the agent makes it) and the A2I human
//! loop name derived from that id. The image itself never travels inside this JSON:
//! the envelope carries it as raw bytes after the meta.
//!
//! ```json
//! {"v":1,"event_id":"01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f","device_id":"pi-kitchen",
//!  "captured_at":"2026-11-25T09:00:00.000Z",
//!  "model":{"name":"dogs-mobilenetv2","version":"3","sha256":"<64 hex>"},
//!  "top_k":[{"index":4,"label":"beagle","score":0.41},{"index":7,"label":"basset","score":0.38}],
//!  "reasons":[{"kind":"low_confidence","score":0.41,"threshold":0.6}],
//!  "image":{"content_type":"image/jpeg","size":48213,"width":640,"height":480,"sha256":"<64 hex>"},
//!  "source":"frame-000123.jpg"}
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::json::{check_rfc3339, check_sha256, check_v, MessageError};
use crate::topics::DeviceId;
use crate::ReviewReason;

/// Format version of `EventMeta` (the `v` field).
pub const EVENT_VERSION: u32 = 1;
/// Largest image an event may carry. Bounds what a forged `size` can make the relay
/// expect; a camera frame as JPEG or PNG is far below it.
pub const MAX_IMAGE_BYTES: u64 = 32 * 1024 * 1024;
/// Prefix of every human loop name this project starts.
pub const HUMAN_LOOP_PREFIX: &str = "ea2i-";
const MESSAGE: &str = "event meta";

/// The id of one event: a UUID, written in its lowercase hyphenated form. Consumers
/// are idempotent on it (one image object, one human loop, one manifest row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(Uuid);

impl EventId {
    /// A UUIDv7 from a Unix time in milliseconds and 10 random bytes: ids sort by
    /// capture time. The caller supplies both, so this stays free of clock and RNG.
    pub fn from_unix_ms(unix_ms: u64, random: [u8; 10]) -> Self {
        EventId(uuid::Builder::from_unix_timestamp_millis(unix_ms, &random).into_uuid())
    }

    /// Accepts the hyphenated form only (36 characters, either case), not the nil UUID.
    pub fn parse(s: &str) -> Result<Self, EventIdError> {
        let bad = || EventIdError {
            input: s.chars().take(64).collect(),
        };
        if s.len() != 36 {
            return Err(bad());
        }
        match Uuid::try_parse(s) {
            Ok(uuid) if !uuid.is_nil() => Ok(EventId(uuid)),
            _ => Err(bad()),
        }
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

/// An event id that is not a hyphenated, non-nil UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "event id {input:?} is not a hyphenated UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, not nil)"
)]
pub struct EventIdError {
    pub input: String,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for EventId {
    type Err = EventIdError;
    fn from_str(s: &str) -> Result<Self, EventIdError> {
        EventId::parse(s)
    }
}

impl TryFrom<String> for EventId {
    type Error = EventIdError;
    fn try_from(s: String) -> Result<Self, EventIdError> {
        EventId::parse(&s)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> String {
        id.to_string()
    }
}

/// The A2I human loop name for an event: `ea2i-` + the lowercase UUID (41 characters).
/// Deterministic, so starting the loop twice is a ConflictException ("already
/// started"), never a second loop. Satisfies A2I's rule: 1-63 characters of lowercase
/// letters, digits and hyphens, starting with a letter or digit.
pub fn human_loop_name(event_id: &EventId) -> String {
    format!("{HUMAN_LOOP_PREFIX}{event_id}")
}

/// The event id a human loop name was derived from, if it is one of ours.
pub fn event_id_from_human_loop_name(name: &str) -> Option<EventId> {
    let id = EventId::parse(name.strip_prefix(HUMAN_LOOP_PREFIX)?).ok()?;
    (human_loop_name(&id) == name).then_some(id)
}

/// A2I's rule for human loop names: 1-63 characters of `a-z 0-9 -`, starting with a
/// letter or digit.
pub fn is_valid_human_loop_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && !name.starts_with('-')
}

/// Everything the relay, the reviewer and the manifest need to know about one frame.
/// Unknown fields are ignored (additive changes keep `v`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMeta {
    /// Format version, [`EVENT_VERSION`].
    pub v: u32,
    pub event_id: EventId,
    pub device_id: DeviceId,
    /// When the frame was captured, RFC 3339 UTC.
    pub captured_at: String,
    pub model: ModelInfo,
    /// The model's best classes, best first.
    pub top_k: Vec<TopK>,
    /// Why the review policy selected the frame (one or more).
    pub reasons: Vec<ReviewReason>,
    pub image: ImageInfo,
    /// Where the frame came from (a file name in folder mode), for people only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The model that classified the frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    /// SHA-256 of the model file, lowercase hex.
    pub sha256: String,
}

/// One of the model's best classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    /// Class index in the model's label list.
    pub index: u32,
    pub label: String,
    pub score: f32,
}

/// Image encodings an event may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContentType {
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/png")]
    Png,
}

impl ContentType {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Jpeg => "image/jpeg",
            ContentType::Png => "image/png",
        }
    }

    /// File extension for an object key.
    pub fn extension(self) -> &'static str {
        match self {
            ContentType::Jpeg => "jpg",
            ContentType::Png => "png",
        }
    }
}

/// The image that travels after the meta, described so the relay can verify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub content_type: ContentType,
    /// Size in bytes of the encoded image.
    pub size: u64,
    pub width: u32,
    pub height: u32,
    /// SHA-256 of the encoded image, lowercase hex.
    pub sha256: String,
}

impl ImageInfo {
    /// Describes `bytes`: their size and digest are computed, not trusted.
    pub fn describe(content_type: ContentType, width: u32, height: u32, bytes: &[u8]) -> Self {
        ImageInfo {
            content_type,
            size: bytes.len() as u64,
            width,
            height,
            sha256: crate::json::sha256_hex(bytes),
        }
    }
}

impl EventMeta {
    /// The human loop name for this event.
    pub fn human_loop_name(&self) -> String {
        human_loop_name(&self.event_id)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("EventMeta serializes: plain fields and string keys")
    }

    /// Parses and [validates](Self::validate) a meta; a newer `v` is reported as such.
    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        let meta: EventMeta = crate::json::from_json_versioned(bytes, MESSAGE, EVENT_VERSION)?;
        meta.validate()?;
        Ok(meta)
    }

    /// Checks what the types alone cannot: the version, timestamp, digests, a
    /// non-empty top-k with finite scores, at least one reason, image dimensions and
    /// size within [`MAX_IMAGE_BYTES`].
    pub fn validate(&self) -> Result<(), MessageError> {
        let invalid =
            |field: &str, problem: String| Err(MessageError::invalid(MESSAGE, field, problem));
        check_v(MESSAGE, self.v, EVENT_VERSION)?;
        check_rfc3339(MESSAGE, "captured_at", &self.captured_at)?;
        check_sha256(MESSAGE, "model.sha256", &self.model.sha256)?;
        check_sha256(MESSAGE, "image.sha256", &self.image.sha256)?;
        if self.top_k.is_empty() {
            return invalid(
                "top_k",
                "is empty (the model's best class is needed)".into(),
            );
        }
        if let Some(i) = self.top_k.iter().position(|t| !t.score.is_finite()) {
            return invalid(
                &format!("top_k[{i}].score"),
                "is not a finite number".into(),
            );
        }
        if self.reasons.is_empty() {
            return invalid(
                "reasons",
                "is empty (an event is sent for at least one reason)".into(),
            );
        }
        if self.image.width == 0 || self.image.height == 0 {
            return invalid("image", "has a zero width or height".into());
        }
        if self.image.size > MAX_IMAGE_BYTES {
            return invalid(
                "image.size",
                format!(
                    "{} exceeds the maximum of {MAX_IMAGE_BYTES} bytes",
                    self.image.size
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const EVENT_ID: &str = "01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f";

    /// A valid meta describing `image`; other tests build on it.
    pub(crate) fn meta_for(image: &[u8]) -> EventMeta {
        EventMeta {
            v: EVENT_VERSION,
            event_id: EventId::parse(EVENT_ID).unwrap(),
            device_id: DeviceId::new("pi-kitchen").unwrap(),
            captured_at: "2026-11-25T09:00:00.000Z".into(),
            model: ModelInfo {
                name: "dogs-mobilenetv2".into(),
                version: "3".into(),
                sha256: "ab".repeat(32),
            },
            top_k: vec![
                TopK {
                    index: 4,
                    label: "beagle".into(),
                    score: 0.41,
                },
                TopK {
                    index: 7,
                    label: "basset".into(),
                    score: 0.38,
                },
            ],
            reasons: vec![ReviewReason::LowConfidence {
                score: 0.41,
                threshold: 0.6,
            }],
            image: ImageInfo::describe(ContentType::Jpeg, 640, 480, image),
            source: Some("frame-000123.jpg".into()),
        }
    }

    #[test]
    fn meta_round_trips_through_json_with_the_documented_field_names() {
        let meta = meta_for(b"jpeg bytes");
        let json: serde_json::Value = serde_json::from_slice(&meta.to_json()).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["event_id"], EVENT_ID);
        assert_eq!(json["image"]["content_type"], "image/jpeg");
        assert_eq!(json["image"]["size"], 10);
        assert_eq!(json["reasons"][0]["kind"], "low_confidence");
        assert_eq!(EventMeta::from_json(&meta.to_json()).unwrap(), meta);
    }

    #[test]
    fn meta_without_source_omits_it_and_extra_fields_are_ignored() {
        let mut meta = meta_for(b"x");
        meta.source = None;
        let mut json: serde_json::Value = serde_json::from_slice(&meta.to_json()).unwrap();
        assert!(json.get("source").is_none());
        json["added_later"] = serde_json::json!({"anything": true});
        assert_eq!(
            EventMeta::from_json(json.to_string().as_bytes()).unwrap(),
            meta
        );
    }

    #[test]
    fn parsing_names_the_field_at_fault() {
        let good: serde_json::Value = serde_json::from_slice(&meta_for(b"x").to_json()).unwrap();
        let broken = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut json = good.clone();
            edit(&mut json);
            EventMeta::from_json(json.to_string().as_bytes())
                .unwrap_err()
                .to_string()
        };
        let e = broken(&|j| drop(j.as_object_mut().unwrap().remove("model")));
        assert!(e.contains("missing field `model`"), "{e}");
        let e = broken(&|j| j["v"] = 2.into());
        assert_eq!(
            e,
            "event meta format version 2 is not supported (this build reads version 1)"
        );
        let e = broken(&|j| j["event_id"] = "not-a-uuid".into());
        assert!(
            e.contains("event id \"not-a-uuid\" is not a hyphenated UUID"),
            "{e}"
        );
        let e = broken(&|j| j["device_id"] = "a/b".into());
        assert!(e.contains("device id \"a/b\" is invalid"), "{e}");
        let e = broken(&|j| j["image"]["content_type"] = "image/gif".into());
        assert!(e.contains("unknown variant `image/gif`"), "{e}");
        let e = broken(&|j| j["captured_at"] = "yesterday".into());
        assert!(
            e.starts_with("event meta: field `captured_at` timestamp \"yesterday\""),
            "{e}"
        );
        let e = broken(&|j| j["image"]["sha256"] = "ABC".into());
        assert!(e.starts_with("event meta: field `image.sha256`"), "{e}");
        let e = broken(&|j| j["model"]["sha256"] = "ab".repeat(31).into());
        assert!(e.starts_with("event meta: field `model.sha256`"), "{e}");
        let e = broken(&|j| j["top_k"] = serde_json::json!([]));
        assert!(e.starts_with("event meta: field `top_k` is empty"), "{e}");
        let e = broken(&|j| j["reasons"] = serde_json::json!([]));
        assert!(e.starts_with("event meta: field `reasons` is empty"), "{e}");
        let e = broken(&|j| j["image"]["width"] = 0.into());
        assert!(
            e.starts_with("event meta: field `image` has a zero width"),
            "{e}"
        );
        let e = broken(&|j| j["image"]["size"] = (MAX_IMAGE_BYTES + 1).into());
        assert!(e.starts_with("event meta: field `image.size`"), "{e}");
    }

    #[test]
    fn non_finite_scores_are_rejected_by_validate() {
        let mut meta = meta_for(b"x");
        meta.top_k[1].score = f32::NAN;
        let e = meta.validate().unwrap_err().to_string();
        assert_eq!(
            e,
            "event meta: field `top_k[1].score` is not a finite number"
        );
    }

    #[test]
    fn event_ids_are_hyphenated_non_nil_uuids_written_lowercase() {
        let id = EventId::parse(&EVENT_ID.to_uppercase()).unwrap();
        assert_eq!(id.to_string(), EVENT_ID);
        for bad in [
            "",
            "01936f0e7c4a7b1e9f3a2d4c5b6a7e8f",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert!(EventId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(EventId::parse(&format!("{{{EVENT_ID}}}")).is_err());
    }

    #[test]
    fn v7_ids_come_from_the_time_and_randomness_the_caller_passes() {
        let a = EventId::from_unix_ms(1_795_597_200_000, [7; 10]);
        let b = EventId::from_unix_ms(1_795_597_200_001, [0; 10]);
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert_eq!(a, EventId::from_unix_ms(1_795_597_200_000, [7; 10]));
        assert!(a < b, "v7 ids sort by time");
    }

    #[test]
    fn human_loop_names_are_valid_deterministic_and_reversible() {
        let id = EventId::parse(EVENT_ID).unwrap();
        let name = human_loop_name(&id);
        assert_eq!(name, format!("ea2i-{EVENT_ID}"));
        assert!(is_valid_human_loop_name(&name));
        assert_eq!(event_id_from_human_loop_name(&name), Some(id));
        assert_eq!(event_id_from_human_loop_name(&name.to_uppercase()), None);
        assert_eq!(event_id_from_human_loop_name("someone-elses-loop"), None);
    }

    #[test]
    fn a2i_loop_name_rule() {
        assert!(is_valid_human_loop_name("a"));
        assert!(is_valid_human_loop_name(&"9".repeat(63)));
        for bad in ["", "-a", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_valid_human_loop_name(bad), "{bad:?} accepted");
        }
    }
}
