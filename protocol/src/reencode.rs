//! Re-encoding an already encoded event for the agent's outbox: back from its MQTT
//! payloads (one whole event, or the chunks of one image) to the meta and the image,
//! and out again as payloads that fit a given size limit and name a given device.
//!
//! Why: events are encoded when a frame is selected and stored in the outbox as
//! payloads. Two operator actions change what those payloads must look like before
//! they are sent: the device id is changed (the relay refuses an event whose meta
//! names another device than its topic), or the broker turns out to take smaller
//! messages than the configured `max_message_bytes` (MQTT 5 CONNACK Maximum Packet
//! Size, section 3.2.2.3.6). Re-encoding keeps the event id and the image bytes; only
//! the device and the chunking change. Pure: no I/O, no clock.

use thiserror::Error;

use crate::assembler::{AssemblerLimits, AssemblyError, ChunkAssembler};
use crate::envelope::{decode, encode_event, DecodeError, EncodeError, Limits, Message};
use crate::event::EventMeta;
use crate::topics::DeviceId;

/// Why stored payloads could not be re-encoded; each names the event when known.
#[derive(Debug, Error)]
pub enum ReencodeError {
    #[error("no payloads to re-encode")]
    Empty,
    #[error("stored message {index} does not decode: {source}")]
    Decode {
        index: usize,
        #[source]
        source: DecodeError,
    },
    #[error("stored messages do not reassemble into one image: {0}")]
    Assembly(#[from] AssemblyError),
    #[error("stored messages belong to more than one event, or miss chunks")]
    Incomplete,
    #[error("cannot encode event {event_id} again: {source}")]
    Encode {
        event_id: String,
        #[source]
        source: EncodeError,
    },
}

/// The meta carried by an encoded payload (whole event or chunk), without checking
/// the image; `None` when the payload does not decode.
pub fn payload_meta(payload: &[u8]) -> Option<EventMeta> {
    match decode(payload).ok()? {
        Message::Event(e) => Some(e.meta),
        Message::Chunk(c) => Some(c.header.meta),
    }
}

/// Decodes `payloads` (one whole event, or every chunk of one image in any order),
/// verifies the image against its meta, sets the meta's device to `device`, and
/// encodes it again for a topic of `topic_len` bytes within `limits`.
pub fn reencode_event(
    payloads: &[Vec<u8>],
    device: &DeviceId,
    topic_len: usize,
    limits: &Limits,
) -> Result<Vec<Vec<u8>>, ReencodeError> {
    if payloads.is_empty() {
        return Err(ReencodeError::Empty);
    }
    let total: u64 = payloads.iter().map(|p| p.len() as u64).sum();
    let mut assembler = ChunkAssembler::new(AssemblerLimits {
        max_pending_bytes: total.saturating_mul(2).saturating_add(1 << 20),
        max_pending_sets: 1,
        timeout_ms: u64::MAX,
    });
    let mut complete = None;
    for (index, payload) in payloads.iter().enumerate() {
        let message = decode(payload).map_err(|source| ReencodeError::Decode { index, source })?;
        if let Some(event) = assembler.offer_message(message, 0)? {
            if complete.is_some() || index + 1 != payloads.len() {
                return Err(ReencodeError::Incomplete);
            }
            complete = Some(event);
        }
    }
    let mut event = complete.ok_or(ReencodeError::Incomplete)?;
    event.meta.device_id = device.clone();
    encode_event(&event.meta, &event.image, topic_len, limits).map_err(|source| {
        ReencodeError::Encode {
            event_id: event.meta.event_id.to_string(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::Topics;

    fn limits(max: usize) -> Limits {
        Limits {
            max_message_bytes: max,
            ..Limits::default()
        }
    }

    fn encoded(device: &str, image_len: usize, max: usize) -> (EventMeta, Vec<u8>, Vec<Vec<u8>>) {
        let image: Vec<u8> = (0..image_len).map(|i| (i * 7 % 251) as u8).collect();
        let mut meta = crate::event::tests::meta_for(&image);
        meta.device_id = DeviceId::new(device).unwrap();
        let topic_len = Topics::default().events(&meta.device_id).len();
        let payloads = encode_event(&meta, &image, topic_len, &limits(max)).unwrap();
        (meta, image, payloads)
    }

    fn reassemble(payloads: &[Vec<u8>]) -> (EventMeta, Vec<u8>) {
        let mut a = ChunkAssembler::default();
        let mut out = None;
        for p in payloads {
            out = a.offer_message(decode(p).unwrap(), 0).unwrap().or(out);
        }
        let e = out.expect("complete");
        (e.meta, e.image)
    }

    #[test]
    fn a_chunked_event_is_rechunked_to_a_smaller_limit_with_the_same_id_and_image() {
        let (meta, image, payloads) = encoded("cam-1", 50_000, 131_072);
        assert_eq!(payloads.len(), 1);
        let device = meta.device_id.clone();
        let topic_len = Topics::default().events(&device).len();
        let again = reencode_event(&payloads, &device, topic_len, &limits(8_192)).unwrap();
        assert!(again.len() > 1);
        assert!(again
            .iter()
            .all(|p| p.len() <= limits(8_192).payload_budget(topic_len)));
        let (m, i) = reassemble(&again);
        assert_eq!((m, i), (meta, image));
    }

    #[test]
    fn a_new_device_id_is_stamped_on_every_message() {
        let (meta, image, payloads) = encoded("old-name", 30_000, 8_192);
        let new = DeviceId::new("new-name").unwrap();
        let topic_len = Topics::default().events(&new).len();
        let again = reencode_event(&payloads, &new, topic_len, &limits(8_192)).unwrap();
        for p in &again {
            assert_eq!(payload_meta(p).unwrap().device_id, new);
        }
        let (m, i) = reassemble(&again);
        assert_eq!(m.event_id, meta.event_id);
        assert_eq!(i, image);
    }

    #[test]
    fn damaged_or_partial_payloads_are_refused_with_the_reason() {
        let (meta, _, mut payloads) = encoded("cam-1", 30_000, 8_192);
        let device = meta.device_id.clone();
        let e = reencode_event(&payloads[1..], &device, 40, &limits(8_192)).unwrap_err();
        assert!(matches!(e, ReencodeError::Incomplete), "{e}");
        payloads[0].truncate(5);
        let e = reencode_event(&payloads, &device, 40, &limits(8_192)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("stored message 0 does not decode"),
            "{e}"
        );
        let e = reencode_event(&[], &device, 40, &limits(8_192)).unwrap_err();
        assert!(matches!(e, ReencodeError::Empty));
    }
}
