//! Properties of the codecs and the assembler over arbitrary inputs: whatever the
//! image and the limit, chunks reassemble byte-identical in any order with any
//! duplicates; no input makes a decoder panic; every truncated payload is an error;
//! the assembler never exceeds its memory bound nor returns an image it was not sent.

use proptest::prelude::*;
use protocol::assembler::{AssemblerLimits, ChunkAssembler};
use protocol::envelope::{decode, encode_event, Limits, Message};
use protocol::event::{ContentType, EventId, EventMeta, ImageInfo, ModelInfo, TopK, EVENT_VERSION};
use protocol::{DeviceId, ReviewReason};

/// A cheap deterministic generator, so large images cost nothing to shrink.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

fn meta(img: &[u8], id_seed: u8) -> EventMeta {
    EventMeta {
        v: EVENT_VERSION,
        event_id: EventId::from_unix_ms(1_795_597_200_000, [id_seed; 10]),
        device_id: DeviceId::new("pi-kitchen").unwrap(),
        captured_at: "2026-11-25T09:00:00.000Z".into(),
        model: ModelInfo {
            name: "dogs".into(),
            version: "3".into(),
            sha256: "ab".repeat(32),
        },
        top_k: vec![TopK {
            index: 4,
            label: "beagle".into(),
            score: 0.41,
        }],
        reasons: vec![ReviewReason::SmallMargin {
            margin: 0.03,
            threshold: 0.1,
        }],
        image: ImageInfo::describe(ContentType::Png, 160, 160, img),
        source: None,
    }
}

/// Shuffles `messages` and repeats some of them.
fn shuffle_with_duplicates(
    mut messages: Vec<Vec<u8>>,
    seed: u64,
    duplicates: usize,
) -> Vec<Vec<u8>> {
    let mut rng = XorShift(seed | 1);
    for _ in 0..duplicates {
        let pick = rng.below(messages.len());
        messages.push(messages[pick].clone());
    }
    for i in (1..messages.len()).rev() {
        messages.swap(i, rng.below(i + 1));
    }
    messages
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_image_with_any_limit_reassembles_byte_identical_from_shuffled_duplicated_chunks(
        len in prop_oneof![0usize..2048, 0usize..=600 * 1024],
        seed in any::<u64>(),
        max_message_bytes in 2048usize..=140_000,
        topic_len in 0usize..=256,
        duplicates in 0usize..8,
    ) {
        let img = image(len, seed);
        let meta = meta(&img, 1);
        let limits = Limits { max_message_bytes, ..Limits::default() };
        let messages = encode_event(&meta, &img, topic_len, &limits).unwrap();
        for m in &messages {
            prop_assert!(m.len() <= limits.payload_budget(topic_len));
        }
        let mut assembler = ChunkAssembler::default();
        let mut completed = Vec::new();
        for (t, m) in shuffle_with_duplicates(messages, seed, duplicates).iter().enumerate() {
            if let Some(done) = assembler.offer_message(decode(m).unwrap(), t as u64).unwrap() {
                completed.push(done);
            }
        }
        // A duplicate arriving after completion opens a new set; it never completes
        // with fewer than all chunks, and nothing else may come out.
        prop_assert!(!completed.is_empty());
        for done in &completed {
            prop_assert_eq!(&done.meta, &meta);
            prop_assert!(done.image == img, "image differs");
        }
        prop_assert_eq!(assembler.counters().rejected.total(), 0);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode(&bytes);
        let mut framed = b"EA2I\x01".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = decode(&framed);
    }

    #[test]
    fn decode_and_assembly_never_panic_on_corrupted_messages(
        len in 0usize..20_000,
        seed in any::<u64>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let img = image(len, seed);
        let limits = Limits { max_message_bytes: 4096, ..Limits::default() };
        let mut assembler = ChunkAssembler::default();
        for mut m in encode_event(&meta(&img, 2), &img, 30, &limits).unwrap() {
            for (at, byte) in &flips {
                let i = at.index(m.len());
                m[i] ^= byte;
            }
            if let Ok(message) = decode(&m) {
                if let Ok(Some(done)) = assembler.offer_message(message, 0) {
                    // Whatever survived corruption, a completed image matches its meta.
                    prop_assert_eq!(protocol::sha256_hex(&done.image), done.meta.image.sha256);
                }
            }
        }
    }

    #[test]
    fn every_truncated_payload_is_an_error(len in 0usize..6000, seed in any::<u64>(), cut in any::<prop::sample::Index>()) {
        let img = image(len, seed);
        let limits = Limits { max_message_bytes: 3000, ..Limits::default() };
        for m in encode_event(&meta(&img, 3), &img, 30, &limits).unwrap() {
            let cut = cut.index(m.len());
            prop_assert!(decode(&m[..cut]).is_err(), "a payload cut to {} of {} bytes decoded", cut, m.len());
        }
    }

    #[test]
    fn interleaved_events_under_tight_limits_stay_bounded_and_come_out_intact(
        lens in proptest::collection::vec(1usize..30_000, 1..6),
        seed in any::<u64>(),
        max_pending_bytes in 20_000u64..120_000,
        max_pending_sets in 1usize..4,
    ) {
        let limits = Limits { max_message_bytes: 4096, ..Limits::default() };
        let images: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| image(l, seed ^ i as u64)).collect();
        let mut messages = Vec::new();
        for (i, img) in images.iter().enumerate() {
            messages.extend(encode_event(&meta(img, i as u8), img, 30, &limits).unwrap());
        }
        let limits = AssemblerLimits { max_pending_bytes, max_pending_sets, timeout_ms: 50 };
        let mut assembler = ChunkAssembler::new(limits);
        for (t, m) in shuffle_with_duplicates(messages, seed, 3).iter().enumerate() {
            let Message::Chunk(chunk) = decode(m).unwrap() else { continue };
            let id = chunk.header.event_id;
            match assembler.offer(chunk, t as u64) {
                Ok(Some(done)) => {
                    let i = images.iter().position(|img| protocol::sha256_hex(img) == done.meta.image.sha256).unwrap();
                    prop_assert_eq!(done.meta.event_id, id);
                    prop_assert!(done.image == images[i]);
                }
                Ok(None) => {}
                Err(e) => prop_assert!(matches!(e, protocol::AssemblyError::TooLarge { .. }), "{}", e),
            }
            prop_assert!(assembler.pending_bytes() <= max_pending_bytes);
            prop_assert!(assembler.pending_sets() <= max_pending_sets);
            assembler.expire(t as u64);
        }
        assembler.expire(u64::MAX);
        prop_assert_eq!((assembler.pending_sets(), assembler.pending_bytes()), (0, 0));
    }

    #[test]
    fn json_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = EventMeta::from_json(&bytes);
        let _ = protocol::Receipt::from_json(&bytes);
        let _ = protocol::Status::from_json(&bytes);
        let _ = protocol::ReviewResult::from_json(&bytes);
        let _ = protocol::a2i::HumanLoopOutput::from_json(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = protocol::manifest::ManifestRow::parse(&text, "label");
        let _ = protocol::timestamp::parse_rfc3339_utc(&text);
    }

    #[test]
    fn timestamps_round_trip_across_four_digit_years(ms in -30_000_000_000_000i64..250_000_000_000_000) {
        let text = protocol::timestamp::format_rfc3339_utc(ms);
        prop_assert_eq!(protocol::timestamp::parse_rfc3339_utc(&text), Ok(ms));
    }

    #[test]
    fn consolidation_picks_a_label_with_the_most_votes(labels in proptest::collection::vec(0u8..4, 1..12)) {
        let answers: Vec<_> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| protocol::a2i::LabelAnswer {
                label: format!("class-{l}"),
                worker_id: None,
                submission_time: Some(protocol::timestamp::format_rfc3339_utc(i as i64 * 1000)),
            })
            .collect();
        let c = protocol::a2i::consolidate(&answers);
        let votes = |label: &str| answers.iter().filter(|a| a.label == label).count() as u32;
        let label = c.label.clone().unwrap();
        prop_assert_eq!(votes(&label), c.votes);
        prop_assert!(answers.iter().all(|a| votes(&a.label) <= c.votes));
        prop_assert_eq!(c.agreement, f64::from(c.votes) / answers.len() as f64);
        let mut reversed = answers.clone();
        reversed.reverse();
        prop_assert_eq!(protocol::a2i::consolidate(&reversed), c);
    }
}
