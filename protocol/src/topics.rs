//! The MQTT topic layout and the device ids that appear in it. Every device has five
//! topics under a configurable prefix (default `edge-a2i`):
//!
//! | topic | direction | what |
//! |---|---|---|
//! | `{prefix}/{device}/events` | agent -> relay | event envelopes (whole events and chunks) |
//! | `{prefix}/{device}/receipts` | relay -> agent | receipts: stored or rejected |
//! | `{prefix}/{device}/status` | agent -> anyone | retained status; also the last will |
//! | `{prefix}/{device}/reviews` | relay -> agent | reviewed labels (optional) |
//! | `{prefix}/{device}/commands` | fleet -> agent | commands such as model updates |
//!
//! Relays subscribe to `{prefix}/+/events`, or to the shared form
//! `$share/{group}/{prefix}/+/events` when several relays split the load. The sizes
//! respect AWS IoT Core: topics of at most 256 bytes with at most 7 slashes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "edge-a2i";
/// Longest device id (= AWS IoT thing name).
pub const MAX_DEVICE_ID_LEN: usize = 128;
/// Longest prefix: 256 (IoT Core topic limit) - "/" - 128 (device) - "/receipts".
pub const MAX_PREFIX_LEN: usize = 256 - 1 - MAX_DEVICE_ID_LEN - 9;
/// IoT Core allows 7 slashes in a topic; ours add 2 to the prefix's own.
const MAX_PREFIX_SLASHES: usize = 5;

/// What went wrong with a device id, prefix, group or received topic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    #[error("device id {id:?} is invalid: {problem}")]
    InvalidDeviceId { id: String, problem: &'static str },
    #[error("topic prefix {prefix:?} is invalid: {problem}")]
    InvalidPrefix {
        prefix: String,
        problem: &'static str,
    },
    #[error("shared subscription group {group:?} is invalid: must be 1-128 characters of A-Z a-z 0-9 _ : -")]
    InvalidGroup { group: String },
    #[error("topic {topic:?} is not under the prefix {prefix:?}")]
    NotUnderPrefix { topic: String, prefix: String },
    #[error("topic {topic:?} is not of the form {prefix}/<device>/<kind>")]
    BadShape { topic: String, prefix: String },
    #[error("topic {topic:?} ends in unknown kind {kind:?} (expected events, receipts, status, reviews or commands)")]
    UnknownKind { topic: String, kind: String },
}

/// A validated device id: the AWS IoT thing name, also the MQTT client id. 1-128
/// characters of `A-Z a-z 0-9 _ : -`, so it can never contain a topic separator
/// (`/`) or wildcard (`+`, `#`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    pub fn new(id: impl Into<String>) -> Result<Self, TopicError> {
        let id = id.into();
        let problem = if id.is_empty() {
            Some("it is empty")
        } else if id.len() > MAX_DEVICE_ID_LEN {
            Some("it is longer than 128 characters")
        } else if !id.bytes().all(is_name_byte) {
            Some("only A-Z a-z 0-9 _ : - are allowed")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(TopicError::InvalidDeviceId {
                id: id.chars().take(160).collect(),
                problem,
            }),
            None => Ok(DeviceId(id)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-')
}

impl TryFrom<String> for DeviceId {
    type Error = TopicError;
    fn try_from(id: String) -> Result<Self, TopicError> {
        DeviceId::new(id)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> String {
        id.0
    }
}

impl FromStr for DeviceId {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        DeviceId::new(s)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The last level of a device topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    Events,
    Receipts,
    Status,
    Reviews,
    Commands,
}

impl TopicKind {
    pub const ALL: [TopicKind; 5] = [
        TopicKind::Events,
        TopicKind::Receipts,
        TopicKind::Status,
        TopicKind::Reviews,
        TopicKind::Commands,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Events => "events",
            TopicKind::Receipts => "receipts",
            TopicKind::Status => "status",
            TopicKind::Reviews => "reviews",
            TopicKind::Commands => "commands",
        }
    }
}

impl fmt::Display for TopicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds and parses topics under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Topics {
    /// A prefix is one or more non-empty levels of `A-Z a-z 0-9 _ : - .` separated by
    /// `/`, at most 118 bytes and 5 slashes, and does not start with `$` (reserved).
    pub fn new(prefix: impl Into<String>) -> Result<Self, TopicError> {
        let prefix = prefix.into();
        let problem = if prefix.is_empty() {
            Some("it is empty")
        } else if prefix.len() > MAX_PREFIX_LEN {
            Some("it is longer than 118 bytes")
        } else if prefix.split('/').any(str::is_empty) {
            Some("it has an empty level (leading, trailing or double '/')")
        } else if !prefix
            .bytes()
            .all(|b| is_name_byte(b) || b == b'.' || b == b'/')
        {
            Some("only A-Z a-z 0-9 _ : - . and / are allowed")
        } else if prefix.matches('/').count() > MAX_PREFIX_SLASHES {
            Some("it has more than 5 slashes (IoT Core allows 7 per topic)")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(TopicError::InvalidPrefix {
                prefix: prefix.chars().take(160).collect(),
                problem,
            }),
            None => Ok(Topics { prefix }),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}/{device}/{kind}`.
    pub fn topic(&self, device: &DeviceId, kind: TopicKind) -> String {
        format!("{}/{}/{}", self.prefix, device, kind)
    }

    pub fn events(&self, device: &DeviceId) -> String {
        self.topic(device, TopicKind::Events)
    }

    pub fn receipts(&self, device: &DeviceId) -> String {
        self.topic(device, TopicKind::Receipts)
    }

    pub fn status(&self, device: &DeviceId) -> String {
        self.topic(device, TopicKind::Status)
    }

    pub fn reviews(&self, device: &DeviceId) -> String {
        self.topic(device, TopicKind::Reviews)
    }

    pub fn commands(&self, device: &DeviceId) -> String {
        self.topic(device, TopicKind::Commands)
    }

    /// `{prefix}/+/{kind}`: that kind of topic for every device.
    pub fn filter(&self, kind: TopicKind) -> String {
        format!("{}/+/{}", self.prefix, kind)
    }

    /// `{prefix}/+/events`: what a lone relay subscribes to.
    pub fn events_filter(&self) -> String {
        self.filter(TopicKind::Events)
    }

    /// `$share/{group}/{prefix}/+/{kind}`: an MQTT 5 shared subscription, so that
    /// each message goes to one of the relays in `group`.
    pub fn shared_filter(&self, group: &str, kind: TopicKind) -> Result<String, TopicError> {
        if group.is_empty() || group.len() > 128 || !group.bytes().all(is_name_byte) {
            return Err(TopicError::InvalidGroup {
                group: group.chars().take(160).collect(),
            });
        }
        Ok(format!("$share/{group}/{}", self.filter(kind)))
    }

    pub fn shared_events_filter(&self, group: &str) -> Result<String, TopicError> {
        self.shared_filter(group, TopicKind::Events)
    }

    /// Splits a received topic back into the device it concerns and its kind.
    pub fn parse(&self, topic: &str) -> Result<(DeviceId, TopicKind), TopicError> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| TopicError::NotUnderPrefix {
                topic: topic.to_owned(),
                prefix: self.prefix.clone(),
            })?;
        let (device, kind) = rest
            .split_once('/')
            .filter(|(_, kind)| !kind.contains('/'))
            .ok_or_else(|| TopicError::BadShape {
                topic: topic.to_owned(),
                prefix: self.prefix.clone(),
            })?;
        let kind = TopicKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| TopicError::UnknownKind {
                topic: topic.to_owned(),
                kind: kind.to_owned(),
            })?;
        Ok((DeviceId::new(device)?, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam() -> DeviceId {
        DeviceId::new("pi-kitchen_01:cam").unwrap()
    }

    #[test]
    fn builds_every_topic_under_the_default_prefix() {
        let t = Topics::default();
        assert_eq!(t.events(&cam()), "edge-a2i/pi-kitchen_01:cam/events");
        assert_eq!(t.receipts(&cam()), "edge-a2i/pi-kitchen_01:cam/receipts");
        assert_eq!(t.status(&cam()), "edge-a2i/pi-kitchen_01:cam/status");
        assert_eq!(t.reviews(&cam()), "edge-a2i/pi-kitchen_01:cam/reviews");
        assert_eq!(t.commands(&cam()), "edge-a2i/pi-kitchen_01:cam/commands");
    }

    #[test]
    fn subscription_filters_cover_all_devices_plain_and_shared() {
        let t = Topics::new("fleet/prod").unwrap();
        assert_eq!(t.events_filter(), "fleet/prod/+/events");
        assert_eq!(t.filter(TopicKind::Status), "fleet/prod/+/status");
        assert_eq!(
            t.shared_events_filter("relays").unwrap(),
            "$share/relays/fleet/prod/+/events"
        );
        assert!(matches!(
            t.shared_events_filter("a/b"),
            Err(TopicError::InvalidGroup { .. })
        ));
        assert!(matches!(
            t.shared_events_filter(""),
            Err(TopicError::InvalidGroup { .. })
        ));
    }

    #[test]
    fn parses_every_topic_it_builds() {
        let t = Topics::new("a/b.c").unwrap();
        for kind in TopicKind::ALL {
            assert_eq!(t.parse(&t.topic(&cam(), kind)), Ok((cam(), kind)));
        }
    }

    #[test]
    fn parsing_names_what_is_wrong_with_a_topic() {
        let t = Topics::default();
        assert!(matches!(
            t.parse("other/cam/events"),
            Err(TopicError::NotUnderPrefix { .. })
        ));
        assert!(matches!(
            t.parse("edge-a2ix/cam/events"),
            Err(TopicError::NotUnderPrefix { .. })
        ));
        assert!(matches!(
            t.parse("edge-a2i/cam"),
            Err(TopicError::BadShape { .. })
        ));
        assert!(matches!(
            t.parse("edge-a2i/cam/events/x"),
            Err(TopicError::BadShape { .. })
        ));
        assert_eq!(
            t.parse("edge-a2i/cam/photos").unwrap_err().to_string(),
            "topic \"edge-a2i/cam/photos\" ends in unknown kind \"photos\" \
             (expected events, receipts, status, reviews or commands)"
        );
        assert!(matches!(
            t.parse("edge-a2i//events"),
            Err(TopicError::InvalidDeviceId { .. })
        ));
        assert!(matches!(
            t.parse("edge-a2i/+/events"),
            Err(TopicError::InvalidDeviceId { .. })
        ));
    }

    #[test]
    fn device_ids_are_thing_names_without_separators_or_wildcards() {
        assert!(DeviceId::new("a").is_ok());
        assert!(DeviceId::new("x".repeat(128)).is_ok());
        for bad in ["", "a/b", "a+b", "a#", "a b", "é", &"x".repeat(129)] {
            assert!(DeviceId::new(bad).is_err(), "{bad:?} accepted");
        }
        let err = DeviceId::new("a/b").unwrap_err().to_string();
        assert_eq!(
            err,
            "device id \"a/b\" is invalid: only A-Z a-z 0-9 _ : - are allowed"
        );
    }

    #[test]
    fn device_ids_are_validated_when_deserialized() {
        let ok: DeviceId = serde_json::from_str("\"cam-1\"").unwrap();
        assert_eq!(ok.as_str(), "cam-1");
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"cam-1\"");
        assert!(serde_json::from_str::<DeviceId>("\"cam/1\"").is_err());
    }

    #[test]
    fn prefixes_are_checked_against_iot_core_limits() {
        assert!(Topics::new("a/b/c/d/e/f").is_ok());
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/+/b",
            "a#",
            "$aws/things",
            "a/b/c/d/e/f/g",
        ] {
            assert!(Topics::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Topics::new("p".repeat(MAX_PREFIX_LEN)).is_ok());
        assert!(Topics::new("p".repeat(MAX_PREFIX_LEN + 1)).is_err());
        let longest = Topics::new("p".repeat(MAX_PREFIX_LEN)).unwrap();
        let device = DeviceId::new("d".repeat(MAX_DEVICE_ID_LEN)).unwrap();
        assert!(longest.receipts(&device).len() <= 256);
        assert!(longest.commands(&device).len() <= 256);
    }
}
