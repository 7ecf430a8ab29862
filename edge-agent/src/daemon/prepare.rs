//! What to publish for one due outbox event, decided before any byte goes out. Pure:
//! the MQTT driver passes the stored payloads, the device it runs as and the largest
//! message the connection takes; this module says "as stored", "re-encoded" or "set
//! aside", each with its reason.
//!
//! Why it exists: stored payloads were encoded when their frame was selected, and two
//! things can make them unsendable later without anything being wrong with the frame:
//! - the operator changed `device.id`: the meta names the old device, and the relay
//!   refuses an event whose meta names another device than its topic. The event is
//!   re-stamped with the current device (same event id, same image), so a device id
//!   change moves the unsent backlog to the new id instead of losing it;
//! - the broker takes smaller messages than the configured `max_message_bytes` (MQTT 5
//!   CONNACK Maximum Packet Size, spec 3.2.2.3.6: a client must not send larger
//!   packets, and a broker disconnects one that does). The event is re-chunked.
//!
//! Only what cannot be sent at all (payloads that no longer decode or reassemble) is
//! set aside, never dropped: it stays on disk, counted, for an operator to inspect.

use protocol::envelope::Limits;
use protocol::reencode::{payload_meta, reencode_event};
use protocol::DeviceId;

/// Set-aside code: stored payloads that cannot be decoded or re-encoded.
pub const CODE_UNSENDABLE: &str = "unsendable";

/// The decision for one due event.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepared {
    /// Publish the stored payloads unchanged.
    AsStored,
    /// Publish these payloads instead; `why` says what changed, for the log.
    Reencoded { payloads: Vec<Vec<u8>>, why: String },
    /// Never publish; keep the event aside with this code and reason.
    SetAside { code: &'static str, reason: String },
}

/// Decides what to publish for `payloads` (one whole event, or the chunks of one image)
/// on a topic of `topic_len` bytes, from a client running as `device`, when no PUBLISH
/// packet may exceed `limits.max_message_bytes`.
pub fn prepare(
    payloads: &[Vec<u8>],
    device: &DeviceId,
    topic_len: usize,
    limits: &Limits,
) -> Prepared {
    let Some(meta) = payloads.first().and_then(|p| payload_meta(p)) else {
        return Prepared::SetAside {
            code: CODE_UNSENDABLE,
            reason: "its first stored message does not decode".into(),
        };
    };
    let budget = limits.payload_budget(topic_len);
    let largest = payloads.iter().map(Vec::len).max().unwrap_or(0);
    let mut why = Vec::new();
    if &meta.device_id != device {
        why.push(format!(
            "made as device {}, now sent as {device}",
            meta.device_id
        ));
    }
    if largest > budget {
        why.push(format!(
            "a {largest}-byte message does not fit the {} bytes a PUBLISH may carry here \
             ({}-byte packet limit)",
            budget, limits.max_message_bytes
        ));
    }
    if why.is_empty() {
        return Prepared::AsStored;
    }
    match reencode_event(payloads, device, topic_len, limits) {
        Ok(payloads) => Prepared::Reencoded {
            payloads,
            why: why.join("; "),
        },
        Err(e) => Prepared::SetAside {
            code: CODE_UNSENDABLE,
            reason: format!("{}, and it cannot be re-encoded: {e}", why.join("; ")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{encode_event, EventId, EventMeta, ImageInfo, ModelInfo, TopK, Topics};

    fn limits(max: usize) -> Limits {
        Limits {
            max_message_bytes: max,
            ..Limits::default()
        }
    }

    fn device(name: &str) -> DeviceId {
        DeviceId::new(name).unwrap()
    }

    fn event(dev: &str, image_len: usize, max: usize) -> Vec<Vec<u8>> {
        let image: Vec<u8> = (0..image_len).map(|i| (i % 253) as u8).collect();
        let meta = EventMeta {
            v: protocol::event::EVENT_VERSION,
            event_id: EventId::from_unix_ms(1_764_000_000_000, [7; 10]),
            device_id: device(dev),
            captured_at: "2026-11-25T09:00:00.000Z".into(),
            model: ModelInfo {
                name: "m".into(),
                version: "1".into(),
                sha256: "ab".repeat(32),
            },
            top_k: vec![TopK {
                index: 0,
                label: "beagle".into(),
                score: 0.4,
            }],
            reasons: vec![protocol::ReviewReason::LowConfidence {
                score: 0.4,
                threshold: 0.6,
            }],
            image: ImageInfo::describe(protocol::ContentType::Jpeg, 10, 10, &image),
            source: None,
        };
        let topic_len = Topics::default().events(&meta.device_id).len();
        encode_event(&meta, &image, topic_len, &limits(max)).unwrap()
    }

    fn topic_len(dev: &str) -> usize {
        Topics::default().events(&device(dev)).len()
    }

    #[test]
    fn an_event_made_by_this_device_that_fits_goes_out_as_stored() {
        let p = event("cam-1", 50_000, 131_072);
        assert_eq!(
            prepare(&p, &device("cam-1"), topic_len("cam-1"), &limits(131_072)),
            Prepared::AsStored
        );
    }

    #[test]
    fn an_event_made_under_an_earlier_device_id_is_restamped_not_lost() {
        let p = event("old-id", 50_000, 131_072);
        let now = device("new-id");
        let Prepared::Reencoded { payloads, why } =
            prepare(&p, &now, topic_len("new-id"), &limits(131_072))
        else {
            panic!("expected a re-encoded event");
        };
        assert!(
            why.contains("made as device old-id, now sent as new-id"),
            "{why}"
        );
        assert!(payloads
            .iter()
            .all(|m| payload_meta(m).unwrap().device_id == now));
    }

    #[test]
    fn messages_larger_than_the_broker_takes_are_rechunked_to_fit() {
        let p = event("cam-1", 150_000, 200_000);
        assert_eq!(p.len(), 1, "stored as one 150 kB message");
        let l = limits(131_072);
        let Prepared::Reencoded { payloads, why } =
            prepare(&p, &device("cam-1"), topic_len("cam-1"), &l)
        else {
            panic!("expected a re-encoded event");
        };
        assert!(why.contains("131072-byte packet limit"), "{why}");
        assert!(payloads.len() >= 2);
        assert!(payloads
            .iter()
            .all(|m| m.len() <= l.payload_budget(topic_len("cam-1"))));
    }

    #[test]
    fn payloads_that_no_longer_decode_are_set_aside_with_the_reason() {
        let mut p = event("old-id", 50_000, 131_072);
        p[0].truncate(12);
        match prepare(&p, &device("new-id"), topic_len("new-id"), &limits(131_072)) {
            Prepared::SetAside { code, reason } => {
                assert_eq!(code, CODE_UNSENDABLE);
                assert!(reason.contains("does not decode"), "{reason}");
            }
            other => panic!("expected set aside, got {other:?}"),
        }
    }
}
