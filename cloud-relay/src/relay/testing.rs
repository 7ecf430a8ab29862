//! Builders for unit tests: valid events and their images.

use protocol::event::EVENT_VERSION;
use protocol::reason::ReviewReason;
use protocol::{ContentType, DeviceId, EventId, EventMeta, ImageInfo, ModelInfo, TopK};

/// A deterministic image of `size` bytes for event `n`.
pub fn image(n: u64, size: usize) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Event `n` from device `pi-{n}`, with an image of `size` bytes.
pub fn meta(n: u64, size: usize) -> EventMeta {
    meta_for(n, &image(n, size))
}

pub fn meta_for(n: u64, image: &[u8]) -> EventMeta {
    EventMeta {
        v: EVENT_VERSION,
        event_id: EventId::from_unix_ms(
            1_795_597_200_000 + n,
            n.to_be_bytes().repeat(2)[..10].try_into().unwrap(),
        ),
        device_id: DeviceId::new(format!("pi-{n}")).unwrap(),
        captured_at: "2026-11-25T09:00:00.000Z".into(),
        model: ModelInfo {
            name: "dogs".into(),
            version: "3".into(),
            sha256: "ab".repeat(32),
        },
        top_k: vec![TopK {
            index: 1,
            label: "pug".into(),
            score: 0.4,
        }],
        reasons: vec![ReviewReason::LowConfidence {
            score: 0.4,
            threshold: 0.6,
        }],
        image: ImageInfo::describe(ContentType::Jpeg, 4, 3, image),
        source: None,
    }
}
