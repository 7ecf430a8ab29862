use super::*;
use crate::relay::testing::{image, meta, meta_for};
use protocol::{encode_event, Limits};

type I = Intake<u32>;

fn intake(stage: bool) -> I {
    Intake::new(Topics::default(), stage, AssemblerLimits::default())
}

fn topic(n: u64) -> String {
    format!("edge-a2i/pi-{n}/events")
}

/// The messages of event `n` with an image of `size` bytes.
fn messages(n: u64, size: usize) -> Vec<Vec<u8>> {
    let img = image(n, size);
    encode_event(&meta_for(n, &img), &img, topic(n).len(), &Limits::default()).unwrap()
}

fn acks(actions: &[Action<u32>]) -> Vec<u32> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Ack(n) => Some(*n),
            _ => None,
        })
        .collect()
}

fn processed(actions: &[Action<u32>]) -> Vec<EventId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Process { event, .. } => Some(event.meta.event_id),
            _ => None,
        })
        .collect()
}

fn rejected(actions: &[Action<u32>]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Rejected { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

#[test]
fn a_whole_event_is_processed_and_acknowledged_only_when_done() {
    let mut i = intake(false);
    let m = messages(1, 1000);
    assert_eq!(m.len(), 1);
    let out = i.on_message(&topic(1), &m[0], 7, 0);
    assert_eq!(processed(&out), [meta(1, 1000).event_id]);
    assert!(acks(&out).is_empty(), "no ack before the receipt");
    let id = meta(1, 1000).event_id;
    let receipt = Receipt::stored(id, "s3://b/k.jpg");
    let out = i.on_done(DeviceId::new("pi-1").unwrap(), id, Some(receipt));
    assert_eq!(acks(&out), [7]);
    assert_eq!(i.held(), 0);
}

#[test]
fn chunks_in_any_order_complete_once_and_all_are_acknowledged_after_the_receipt() {
    let mut i = intake(false);
    let m = messages(2, 300_000);
    assert!(m.len() >= 3);
    let mut all = vec![];
    for (k, msg) in m.iter().enumerate().rev() {
        all.extend(i.on_message(&topic(2), msg, k as u32, k as u64));
    }
    assert_eq!(processed(&all).len(), 1);
    assert!(acks(&all).is_empty());
    let id = meta(2, 300_000).event_id;
    let out = i.on_done(DeviceId::new("pi-2").unwrap(), id, None);
    let mut released = acks(&out);
    released.sort();
    assert_eq!(released, (0..m.len() as u32).collect::<Vec<_>>());
}

#[test]
fn a_resent_event_while_in_flight_is_held_and_after_done_gets_its_receipt_again() {
    let mut i = intake(false);
    let m = messages(3, 1000);
    let id = meta(3, 1000).event_id;
    i.on_message(&topic(3), &m[0], 1, 0);
    let out = i.on_message(&topic(3), &m[0], 2, 0);
    assert!(processed(&out).is_empty() && acks(&out).is_empty());
    let receipt = Receipt::stored(id, "s3://b/k.jpg");
    let out = i.on_done(DeviceId::new("pi-3").unwrap(), id, Some(receipt.clone()));
    assert_eq!(acks(&out), [1, 2]);
    let out = i.on_message(&topic(3), &m[0], 3, 0);
    assert_eq!(acks(&out), [3]);
    assert!(processed(&out).is_empty());
    assert!(matches!(&out[0], Action::Receipt { receipt: r, .. } if *r == receipt));
}

#[test]
fn malformed_truncated_and_unknown_version_messages_are_rejected_and_acknowledged() {
    let mut i = intake(false);
    let good = messages(4, 1000).remove(0);
    let mut v2 = good.clone();
    v2[4] = 2;
    let cases: [(&[u8], &str); 4] = [
        (b"hello", "truncated"),
        (b"NOPE and some more bytes", "malformed"),
        (&v2, "unsupported_version"),
        (&good[..good.len() - 10], "invalid_chunk_or_size"),
    ];
    for (k, (payload, reason)) in cases.iter().enumerate() {
        let out = i.on_message(&topic(4), payload, k as u32, 0);
        assert_eq!(acks(&out), [k as u32]);
        assert_eq!(rejected(&out), [*reason]);
        assert!(processed(&out).is_empty());
    }
    let out = i.on_message("other/pi-4/events", &good, 9, 0);
    assert_eq!(rejected(&out), ["bad_topic"]);
}

#[test]
fn a_forged_checksum_gets_a_rejected_receipt_and_nothing_is_processed() {
    let mut i = intake(false);
    let img = image(5, 1000);
    let mut m = meta_for(5, &img);
    m.image.sha256 = "00".repeat(32);
    let msg = protocol::Message::Event(protocol::WholeEvent {
        meta: m,
        image: img,
    })
    .encode()
    .unwrap();
    let out = i.on_message(&topic(5), &msg, 1, 0);
    assert_eq!(acks(&out), [1]);
    assert_eq!(rejected(&out), ["checksum_mismatch"]);
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::Receipt { receipt, .. } if !receipt.is_stored())));
}

#[test]
fn an_event_published_on_another_devices_topic_is_rejected() {
    let mut i = intake(false);
    let msg = messages(6, 1000).remove(0);
    let out = i.on_message(&topic(7), &msg, 1, 0);
    assert_eq!(rejected(&out), ["device_mismatch"]);
    assert_eq!(acks(&out), [1]);
}

#[test]
fn incomplete_sets_expire_and_release_their_messages() {
    let mut i = Intake::new(
        Topics::default(),
        false,
        AssemblerLimits {
            timeout_ms: 1000,
            ..AssemblerLimits::default()
        },
    );
    let m = messages(8, 300_000);
    i.on_message(&topic(8), &m[0], 1, 0);
    assert_eq!(i.pending_sets(), 1);
    assert!(acks(&i.on_tick(500)).is_empty());
    let out = i.on_tick(1500);
    assert_eq!(acks(&out), [1]);
    assert_eq!(i.pending_sets(), 0);
    assert_eq!(i.held(), 0);
}

#[test]
fn a_flood_of_incomplete_sets_stays_within_bounds_and_evicted_sets_are_released() {
    let limits = AssemblerLimits {
        max_pending_bytes: 2 * 1024 * 1024,
        max_pending_sets: 8,
        timeout_ms: 60_000,
    };
    let mut i = Intake::new(Topics::default(), false, limits);
    let mut released = 0;
    for n in 100..200u64 {
        let m = messages(n, 300_000);
        released += acks(&i.on_message(&topic(n), &m[0], n as u32, n)).len();
        assert!(i.pending_sets() <= 8);
        assert!(i.pending_bytes() <= 2 * 1024 * 1024);
    }
    assert_eq!(
        released + i.held(),
        100,
        "every message is either held or released"
    );
}

#[test]
fn in_shared_mode_chunks_are_staged_and_acknowledged_once_staged_unless_they_complete() {
    let mut i = intake(true);
    let m = messages(9, 300_000);
    let out = i.on_message(&topic(9), &m[0], 1, 0);
    let Some(Action::Stage { device, chunk, ack }) = out.into_iter().next() else {
        panic!("stage")
    };
    let id = chunk.header.event_id;
    assert_eq!(
        acks(&i.on_staged(device.clone(), id, ack, Staged::Incomplete)),
        [1]
    );
    let img = image(9, 300_000);
    let event = CompleteEvent {
        meta: meta_for(9, &img),
        image: img,
    };
    let out = i.on_staged(device.clone(), id, 2, Staged::Complete(event));
    assert_eq!(processed(&out), [id]);
    assert!(acks(&out).is_empty());
    assert_eq!(acks(&i.on_done(device, id, None)), [2]);
}

#[test]
fn another_image_under_a_recently_receipted_id_is_processed_not_answered_from_memory() {
    let mut i = intake(false);
    let (first, other) = (image(9, 1000), image(90, 1000));
    let m1 = meta_for(9, &first);
    let mut m2 = meta_for(9, &other);
    m2.event_id = m1.event_id;
    let encode = |m: &EventMeta, img: &[u8]| {
        encode_event(m, img, topic(9).len(), &Limits::default())
            .unwrap()
            .remove(0)
    };
    let id = m1.event_id;
    i.on_message(&topic(9), &encode(&m1, &first), 1, 0);
    let receipt = Receipt::stored(id, "s3://b/k.jpg");
    i.on_done(DeviceId::new("pi-9").unwrap(), id, Some(receipt));
    let out = i.on_message(&topic(9), &encode(&m2, &other), 2, 0);
    assert_eq!(processed(&out), [id], "the pipeline judges other content");
    assert!(!out.iter().any(|a| matches!(a, Action::Receipt { .. })));
    let conflict = Receipt::rejected(id, RejectCode::Conflict, "taken");
    i.on_done(DeviceId::new("pi-9").unwrap(), id, Some(conflict.clone()));
    let out = i.on_message(&topic(9), &encode(&m2, &other), 3, 0);
    assert!(processed(&out).is_empty(), "a resend of the rejected one");
    assert!(matches!(&out[0], Action::Receipt { receipt: r, .. } if *r == conflict));
    let out = i.on_message(&topic(9), &encode(&m1, &first), 4, 0);
    assert_eq!(processed(&out), [id], "the first one again: S3 says stored");
}
