//! Human loops that end without answers, the pure half: the names of restarted loops
//! and the "not reviewed" record (one JSON line per Stopped or Failed loop, at
//! `{manifest}/not-reviewed/{loop}.json`, see [`super::keys`]). The drivers are in
//! [`super::collector`] (recording) and [`super::restart`] (export, restart).
//!
//! A restart starts a new loop for the same stored image under a derived name,
//! `ea2i-<event id>-r<n>` (n = 1, 2, ...), instead of deleting the old loop and
//! reusing its name: the A2I docs say a deleted loop goes through `Deleting` and do
//! not say when, or whether, its name may be used again (AWS, "Delete a Human Loop";
//! DeleteHumanLoop API reference), and the old loop stays as the record of what
//! happened. The derived name still maps back to the event id, so its result becomes
//! the event's one manifest row (`rows/{event_id}.json`, put only if absent), and
//! restarting loop `r<n>` always means starting `r<n+1>`: restarting twice is a
//! ConflictException the second time, never a second new loop.

use protocol::event::{event_id_from_human_loop_name, human_loop_name};
use protocol::{DeviceId, EventId};
use serde::{Deserialize, Serialize};

/// Between the event's loop name and the restart number.
const RESTART_MARK: &str = "-r";

/// The name of attempt `attempt` of an event's loop: 0 is the loop the relay starts,
/// 1.. are restarts. At most 41 + 2 + 10 = 53 characters (A2I allows 63).
pub fn loop_name(event_id: &EventId, attempt: u32) -> String {
    match attempt {
        0 => human_loop_name(event_id),
        n => format!("{}{RESTART_MARK}{n}", human_loop_name(event_id)),
    }
}

/// The event id and attempt number of one of the relay's loop names.
pub fn parse_loop_name(name: &str) -> Option<(EventId, u32)> {
    if let Some(id) = event_id_from_human_loop_name(name) {
        return Some((id, 0));
    }
    let (base, n) = name.rsplit_once(RESTART_MARK)?;
    let id = event_id_from_human_loop_name(base)?;
    let n: u32 = n.parse().ok().filter(|n| *n > 0)?;
    (loop_name(&id, n) == name).then_some((id, n))
}

/// A human loop that ended without answers, as the relay records and exports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotReviewed {
    /// The image the loop showed (`s3://`), as in a manifest row; absent for events
    /// stored before the event index existed.
    #[serde(rename = "source-ref")]
    pub source_ref: Option<String>,
    pub event_id: EventId,
    pub device_id: Option<DeviceId>,
    pub human_loop_name: String,
    /// A2I's status: `Stopped` or `Failed`.
    pub status: String,
    /// A2I's FailureReason, if it gave one.
    pub failure_reason: Option<String>,
    /// When the loop was created (RFC 3339 UTC, from A2I).
    pub loop_created_at: String,
    /// When a relay noticed it had ended (RFC 3339 UTC).
    pub noticed_at: String,
}

impl NotReviewed {
    /// One JSON line, newline included.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("plain fields serialize") + "\n"
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> EventId {
        EventId::parse("01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f").unwrap()
    }

    #[test]
    fn restarted_loop_names_map_back_to_their_event_and_attempt() {
        let id = id();
        assert_eq!(loop_name(&id, 0), format!("ea2i-{id}"));
        assert_eq!(loop_name(&id, 2), format!("ea2i-{id}-r2"));
        for n in [0, 1, 9, 10, u32::MAX] {
            let name = loop_name(&id, n);
            assert!(protocol::event::is_valid_human_loop_name(&name), "{name}");
            assert_eq!(parse_loop_name(&name), Some((id, n)));
        }
    }

    #[test]
    fn names_that_are_not_the_relays_are_not_taken_for_restarts() {
        let id = id();
        for name in [
            format!("ea2i-{id}-r0"),
            format!("ea2i-{id}-r01"),
            format!("ea2i-{id}-r"),
            format!("ea2i-{id}-rx"),
            format!("other-{id}-r1"),
            "ea2i-r1".into(),
        ] {
            assert_eq!(parse_loop_name(&name), None, "{name}");
        }
    }

    #[test]
    fn a_record_is_one_json_line_with_a_source_ref_like_a_manifest_row() {
        let r = NotReviewed {
            source_ref: Some("s3://b/events/pi-1/2026/11/25/x.jpg".into()),
            event_id: id(),
            device_id: Some(DeviceId::new("pi-1").unwrap()),
            human_loop_name: loop_name(&id(), 0),
            status: "Stopped".into(),
            failure_reason: None,
            loop_created_at: "2026-11-25T09:00:00.000Z".into(),
            noticed_at: "2026-11-25T09:05:00.000Z".into(),
        };
        let line = r.to_line();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.starts_with("{\"source-ref\":\"s3://b/"), "{line}");
        assert_eq!(NotReviewed::parse(line.as_bytes()).unwrap(), r);
    }
}
