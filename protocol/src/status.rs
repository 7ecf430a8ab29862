//! The agent's status, published retained on `{prefix}/{device}/status` so anyone
//! subscribing learns at once which devices are up, which model each runs and how its
//! outbox is doing. The same topic carries the MQTT last will
//! ([`Status::offline_will`]), which the broker publishes when the agent vanishes.
//!
//! ```json
//! {"v":1,"device_id":"pi-kitchen","state":"online",
//!  "model":{"name":"dogs-mobilenetv2","version":"3","sha256":"<64 hex>"},
//!  "backend":"litert",
//!  "outbox":{"to_send":2,"awaiting_receipt":5,"bytes":412345,"dropped":0,"set_aside":1,
//!            "salvaged":0,"lost":0},
//!  "storage":{"state":"ok"},
//!  "counters":{"frames":18234,"selected":412,"suppressed":37,"sent":410,"receipted":405,"errors":1},
//!  "since":"2026-11-25T09:00:00.000Z"}
//! ```
//!
//! Fields added after version 1 was first published (`outbox.set_aside`,
//! `outbox.salvaged`, `outbox.lost`, `storage`, `outcomes`) default when absent, so statuses of
//! older agents still parse.
//!
//! `model`, `backend` and `since` are absent in the last will: it is registered at
//! connect time and published later by the broker, when nobody knows the time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::ModelInfo;
use crate::json::{check_rfc3339, check_sha256, check_v, from_json_versioned, MessageError};
use crate::topics::DeviceId;

/// Format version of `Status`.
pub const STATUS_VERSION: u32 = 1;
const MESSAGE: &str = "status";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Online,
    Offline,
}

/// The agent's outbox: events not yet receipted by the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStats {
    /// Events waiting to be published.
    pub to_send: u64,
    /// Events published and waiting for their receipt.
    pub awaiting_receipt: u64,
    /// Bytes the outbox holds on disk.
    pub bytes: u64,
    /// Events dropped because the outbox was full (oldest first).
    pub dropped: u64,
    /// Events kept aside (rejected for good, or too large for the broker): never
    /// sent again until an operator requeues them.
    #[serde(default)]
    pub set_aside: u64,
    /// Events carried over from a corrupt outbox file into a fresh one.
    #[serde(default)]
    pub salvaged: u64,
    /// Events of a corrupt outbox file that could not be read back (lost).
    #[serde(default)]
    pub lost: u64,
}

/// Whether the agent can write its outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageState {
    #[default]
    Ok,
    /// The file system holding the outbox is full: new frames wait (capture slows
    /// down) until space is freed; nothing selected is dropped meanwhile.
    DiskFull,
    /// Writing the outbox fails for another reason (I/O error); retried likewise.
    Failing,
}

/// The outbox's storage health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    pub state: StorageState,
    /// Since when `state` holds (absent when `ok`), RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The last error, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Totals since the agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCounters {
    /// Frames classified.
    pub frames: u64,
    /// Frames the review policy selected.
    pub selected: u64,
    /// Selected frames not sent (rate limit, duplicates of a recent frame).
    pub suppressed: u64,
    /// Events published (first sends, not resends).
    pub sent: u64,
    /// Events the relay receipted.
    pub receipted: u64,
    pub errors: u64,
}

/// What became of the frames since the agent started, by why: operators see what was
/// refused (could not be classified), what the review policy let pass and what it
/// selected, not only totals. Keys are short, stable words (`not_an_image`,
/// `confident`, `low_confidence`, ...); see the agent's README.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameOutcomes {
    /// Frames that could not be classified (unreadable, not an image, ...), by why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refused: BTreeMap<String, u64>,
    /// Classified frames the policy did not send to review, by why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub passed: BTreeMap<String, u64>,
    /// Frames the policy selected for review, by their first reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selected: BTreeMap<String, u64>,
}

impl FrameOutcomes {
    pub fn is_empty(&self) -> bool {
        self.refused.is_empty() && self.passed.is_empty() && self.selected.is_empty()
    }
}

/// Agent -> anyone, retained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub v: u32,
    pub device_id: DeviceId,
    pub state: AgentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
    /// The inference backend in use (`tflite`, `litert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default)]
    pub outbox: OutboxStats,
    #[serde(default)]
    pub counters: AgentCounters,
    /// The frames' outcomes by why (added after version 1; absent in older statuses).
    #[serde(default, skip_serializing_if = "FrameOutcomes::is_empty")]
    pub outcomes: FrameOutcomes,
    /// Whether the outbox can be written (e.g. `disk_full`, and since when).
    #[serde(default)]
    pub storage: Storage,
    /// Since when the agent has been in `state`, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The last model update since the agent started (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateStatus>,
}

/// Where the last model update got to, as the Jobs execution reports it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// The package's version.
    pub version: String,
    /// `in_progress`, `succeeded`, `failed` or `rejected` (the Jobs execution status,
    /// lower-cased).
    pub outcome: String,
    /// The step reached: download, verify, load, shadow, watch, done.
    pub step: String,
    /// Why it failed or was refused; the shadow and watch figures when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The IoT job that carried it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// RFC 3339 UTC.
    pub at: String,
}

impl Status {
    /// An `online` status with zero counters; the caller fills them in.
    pub fn online(
        device_id: DeviceId,
        model: ModelInfo,
        backend: impl Into<String>,
        since: impl Into<String>,
    ) -> Self {
        Status {
            v: STATUS_VERSION,
            device_id,
            state: AgentState::Online,
            model: Some(model),
            backend: Some(backend.into()),
            outbox: OutboxStats::default(),
            counters: AgentCounters::default(),
            outcomes: FrameOutcomes::default(),
            storage: Storage::default(),
            since: Some(since.into()),
            update: None,
        }
    }

    /// The last will registered at connect: `offline`, nothing else known.
    pub fn offline_will(device_id: DeviceId) -> Self {
        Status {
            v: STATUS_VERSION,
            device_id,
            state: AgentState::Offline,
            model: None,
            backend: None,
            outbox: OutboxStats::default(),
            counters: AgentCounters::default(),
            outcomes: FrameOutcomes::default(),
            storage: Storage::default(),
            since: None,
            update: None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("Status serializes: plain fields and string keys")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        let status: Status = from_json_versioned(bytes, MESSAGE, STATUS_VERSION)?;
        status.validate()?;
        Ok(status)
    }

    pub fn validate(&self) -> Result<(), MessageError> {
        check_v(MESSAGE, self.v, STATUS_VERSION)?;
        if let Some(model) = &self.model {
            check_sha256(MESSAGE, "model.sha256", &model.sha256)?;
        }
        if let Some(since) = &self.since {
            check_rfc3339(MESSAGE, "since", since)?;
        }
        if let Some(since) = &self.storage.since {
            check_rfc3339(MESSAGE, "storage.since", since)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device() -> DeviceId {
        DeviceId::new("pi-kitchen").unwrap()
    }

    fn model() -> ModelInfo {
        ModelInfo {
            name: "dogs-mobilenetv2".into(),
            version: "3".into(),
            sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn an_online_status_reports_model_backend_outbox_and_counters() {
        let mut s = Status::online(device(), model(), "litert", "2026-11-25T09:00:00.000Z");
        s.outbox.awaiting_receipt = 5;
        s.counters.frames = 18234;
        let json: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(json["state"], "online");
        assert_eq!(json["backend"], "litert");
        assert_eq!(json["model"]["version"], "3");
        assert_eq!(
            json["outbox"],
            json!({"to_send": 0, "awaiting_receipt": 5, "bytes": 0, "dropped": 0,
                   "set_aside": 0, "salvaged": 0, "lost": 0})
        );
        assert_eq!(json["storage"], json!({"state": "ok"}));
        assert_eq!(json["counters"]["frames"], 18234);
        assert_eq!(Status::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn the_last_will_says_offline_and_nothing_it_cannot_know() {
        let will = Status::offline_will(device());
        let json: serde_json::Value = serde_json::from_slice(&will.to_json()).unwrap();
        assert_eq!(json["state"], "offline");
        assert_eq!(json["device_id"], "pi-kitchen");
        assert!(json.get("since").is_none() && json.get("model").is_none());
        assert_eq!(Status::from_json(&will.to_json()).unwrap(), will);
        let minimal = br#"{"v":1,"device_id":"pi-kitchen","state":"offline"}"#;
        assert_eq!(Status::from_json(minimal).unwrap(), will);
    }

    #[test]
    fn a_status_of_an_older_agent_without_the_newer_fields_still_parses() {
        let old = br#"{"v":1,"device_id":"pi-kitchen","state":"online",
            "outbox":{"to_send":2,"awaiting_receipt":5,"bytes":412345,"dropped":1},
            "since":"2026-11-25T09:00:00.000Z"}"#;
        let s = Status::from_json(old).unwrap();
        assert_eq!(s.outbox.dropped, 1);
        assert_eq!(
            (s.outbox.set_aside, s.outbox.salvaged, s.outbox.lost),
            (0, 0, 0)
        );
        assert_eq!(s.storage, Storage::default());
    }

    #[test]
    fn a_full_disk_is_reported_with_since_and_detail() {
        let mut s = Status::online(device(), model(), "tflite", "2026-11-25T09:00:00.000Z");
        s.outbox.set_aside = 2;
        s.storage = Storage {
            state: StorageState::DiskFull,
            since: Some("2026-11-25T10:00:00.000Z".into()),
            detail: Some("outbox /var/lib/edge-agent/outbox.sqlite: the disk is full".into()),
        };
        let json: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(json["storage"]["state"], "disk_full");
        assert_eq!(json["outbox"]["set_aside"], 2);
        assert_eq!(Status::from_json(&s.to_json()).unwrap(), s);
        s.storage.since = Some("later".into());
        assert!(Status::from_json(&s.to_json()).is_err());
    }

    #[test]
    fn malformed_statuses_say_what_is_wrong() {
        let e = |s: &str| Status::from_json(s.as_bytes()).unwrap_err().to_string();
        assert!(e(r#"{"v":1,"device_id":"pi","state":"sleeping"}"#)
            .contains("unknown variant `sleeping`"));
        assert!(
            e(r#"{"v":1,"device_id":"pi","state":"online","since":"noon"}"#)
                .starts_with("status: field `since`")
        );
        assert!(e(r#"{"v":3,"device_id":"pi","state":"online"}"#)
            .contains("version 3 is not supported"));
        assert!(e(r#"{"v":1,"state":"online"}"#).contains("missing field `device_id`"));
    }
}
