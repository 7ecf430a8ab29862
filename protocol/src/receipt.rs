//! The receipt the relay publishes on `{prefix}/{device}/receipts` once it has dealt
//! with an event: `stored` means the image is in S3 and the human loop exists, so the
//! agent may drop the event from its outbox; `rejected` means the relay will never
//! accept it as it is (a forged checksum, an invalid meta, another device's name, an
//! id already stored with other content). A rejection is never a reason to destroy the
//! frame: the agent keeps a rejected event aside, counts it by `code`, and tells the
//! operator (DESIGN.md, "Guarantees"). No receipt means "not yet": the agent resends
//! after its timeout.
//!
//! ```json
//! {"v":1,"event_id":"01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f","status":"stored",
//!  "image_uri":"s3://bucket/events/pi-kitchen/01936f0e-....jpg",
//!  "human_loop_name":"ea2i-01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f"}
//! {"v":1,"event_id":"01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f","status":"rejected",
//!  "code":"invalid","reason":"image sha256 is ..., not the ... its sender declared"}
//! ```

use serde::{Deserialize, Serialize};

use crate::event::{human_loop_name, is_valid_human_loop_name, EventId};
use crate::json::{check_s3_uri, check_v, from_json_versioned, MessageError};

/// Format version of `Receipt`.
pub const RECEIPT_VERSION: u32 = 1;
const MESSAGE: &str = "receipt";

/// Relay -> agent: what became of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub v: u32,
    pub event_id: EventId,
    #[serde(flatten)]
    pub status: ReceiptStatus,
}

/// The outcome, tagged by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// The image is stored and its human loop exists.
    Stored {
        image_uri: String,
        human_loop_name: String,
    },
    /// The relay will not accept this event as it is; `reason` says why, for people,
    /// and `code` for programs (absent in receipts from relays that predate it).
    Rejected {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<RejectCode>,
        reason: String,
    },
}

/// Why the relay rejected an event, as a machine-readable class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The event is malformed or its image fails its own checks (sha256, size, bounds).
    Invalid,
    /// The event names a device other than the one whose topic it came on (e.g. the
    /// agent's `device.id` was changed while events were queued).
    DeviceMismatch,
    /// An event with this id is already stored with different content; the first one
    /// stored wins.
    Conflict,
    /// A code this build does not know (sent by a newer relay).
    #[serde(other)]
    Other,
}

impl RejectCode {
    /// The code as it appears on the wire and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::Invalid => "invalid",
            RejectCode::DeviceMismatch => "device_mismatch",
            RejectCode::Conflict => "conflict",
            RejectCode::Other => "other",
        }
    }
}

impl Receipt {
    /// A `stored` receipt; the human loop name is derived from the event id.
    pub fn stored(event_id: EventId, image_uri: impl Into<String>) -> Self {
        Receipt {
            v: RECEIPT_VERSION,
            event_id,
            status: ReceiptStatus::Stored {
                image_uri: image_uri.into(),
                human_loop_name: human_loop_name(&event_id),
            },
        }
    }

    /// A `rejected` receipt of class `code`; `reason` is for people.
    pub fn rejected(event_id: EventId, code: RejectCode, reason: impl Into<String>) -> Self {
        Receipt {
            v: RECEIPT_VERSION,
            event_id,
            status: ReceiptStatus::Rejected {
                code: Some(code),
                reason: reason.into(),
            },
        }
    }

    pub fn is_stored(&self) -> bool {
        matches!(self.status, ReceiptStatus::Stored { .. })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("Receipt serializes: plain fields and string keys")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, MessageError> {
        let receipt: Receipt = from_json_versioned(bytes, MESSAGE, RECEIPT_VERSION)?;
        receipt.validate()?;
        Ok(receipt)
    }

    /// Version, an s3:// image URI and a valid A2I loop name for `stored`.
    pub fn validate(&self) -> Result<(), MessageError> {
        check_v(MESSAGE, self.v, RECEIPT_VERSION)?;
        if let ReceiptStatus::Stored {
            image_uri,
            human_loop_name,
        } = &self.status
        {
            check_s3_uri(MESSAGE, "image_uri", image_uri)?;
            if !is_valid_human_loop_name(human_loop_name) {
                let problem = format!("{human_loop_name:?} is not a valid A2I human loop name");
                return Err(MessageError::invalid(MESSAGE, "human_loop_name", problem));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f";

    fn id() -> EventId {
        EventId::parse(ID).unwrap()
    }

    #[test]
    fn a_stored_receipt_names_the_image_and_the_derived_loop() {
        let r = Receipt::stored(id(), "s3://bucket/events/a.jpg");
        let json: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(
            json,
            json!({"v": 1, "event_id": ID, "status": "stored", "image_uri": "s3://bucket/events/a.jpg",
                   "human_loop_name": format!("ea2i-{ID}")})
        );
        assert_eq!(Receipt::from_json(&r.to_json()).unwrap(), r);
        assert!(r.is_stored());
    }

    #[test]
    fn a_rejected_receipt_carries_its_reason() {
        let r = Receipt::rejected(id(), RejectCode::Invalid, "image sha256 mismatch");
        let json: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(
            json,
            json!({"v": 1, "event_id": ID, "status": "rejected", "code": "invalid",
                   "reason": "image sha256 mismatch"})
        );
        assert_eq!(Receipt::from_json(&r.to_json()).unwrap(), r);
        assert!(!r.is_stored());
    }

    #[test]
    fn a_rejection_without_a_code_or_with_an_unknown_one_still_parses() {
        let old = json!({"v": 1, "event_id": ID, "status": "rejected", "reason": "x"});
        let r = Receipt::from_json(old.to_string().as_bytes()).unwrap();
        assert_eq!(
            r.status,
            ReceiptStatus::Rejected {
                code: None,
                reason: "x".into()
            }
        );
        let newer = json!({"v": 1, "event_id": ID, "status": "rejected", "code": "quota",
                           "reason": "x"});
        let r = Receipt::from_json(newer.to_string().as_bytes()).unwrap();
        assert!(matches!(
            r.status,
            ReceiptStatus::Rejected {
                code: Some(RejectCode::Other),
                ..
            }
        ));
    }

    #[test]
    fn malformed_receipts_say_what_is_wrong() {
        let parse = |v: serde_json::Value| {
            Receipt::from_json(v.to_string().as_bytes())
                .unwrap_err()
                .to_string()
        };
        let e = parse(json!({"v": 2, "event_id": ID, "status": "stored"}));
        assert_eq!(
            e,
            "receipt format version 2 is not supported (this build reads version 1)"
        );
        let e = parse(json!({"v": 1, "event_id": ID, "status": "lost"}));
        assert!(e.contains("unknown variant `lost`"), "{e}");
        let e = parse(json!({"v": 1, "event_id": ID, "status": "stored", "human_loop_name": "x"}));
        assert!(e.contains("missing field `image_uri`"), "{e}");
        let e = parse(
            json!({"v": 1, "event_id": ID, "status": "stored", "image_uri": "/tmp/a.jpg",
                             "human_loop_name": "x"}),
        );
        assert!(e.starts_with("receipt: field `image_uri`"), "{e}");
        let e = parse(
            json!({"v": 1, "event_id": ID, "status": "stored", "image_uri": "s3://b/k",
                             "human_loop_name": "Not_Valid"}),
        );
        assert!(e.starts_with("receipt: field `human_loop_name`"), "{e}");
        let e = parse(json!({"v": 1, "event_id": "nope", "status": "rejected", "reason": "x"}));
        assert!(e.contains("event id \"nope\""), "{e}");
    }
}
