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

/// The key of event `n` with an image of `size` bytes.
fn key(n: u64, size: usize) -> EventKey {
    EventKey::of(&meta(n, size))
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
    let out = i.on_done(DeviceId::new("pi-1").unwrap(), key(1, 1000), Some(receipt));
    assert_eq!(acks(&out), [7]);
    assert_eq!(i.held(), 0);
}

#[test]
fn a_chunk_is_acknowledged_once_accepted_and_only_the_completing_one_waits_for_the_receipt() {
    let mut i = intake(false);
    let m = messages(2, 300_000);
    assert!(m.len() >= 3);
    let last = m.len() - 1;
    let mut all = vec![];
    // In any order: here the last chunk first, the first chunk last.
    for (k, msg) in m.iter().enumerate().rev() {
        let out = i.on_message(&topic(2), msg, k as u32, k as u64);
        if k > 0 {
            assert_eq!(
                acks(&out),
                [k as u32],
                "chunk {k} acknowledged once accepted"
            );
        }
        all.extend(out);
    }
    assert_eq!(processed(&all).len(), 1);
    assert_eq!(i.held(), 1, "the event in flight holds one message");
    assert!(!acks(&all).contains(&0), "the completing chunk waits");
    let out = i.on_done(DeviceId::new("pi-2").unwrap(), key(2, 300_000), None);
    assert_eq!(acks(&out), [0]);
    assert_eq!(i.held(), 0);
    assert!(last > 0);
}

#[test]
fn an_incomplete_set_holds_no_message_so_it_cannot_block_other_devices() {
    let mut i = intake(false);
    let first = messages(20, 300_000).remove(0);
    let out = i.on_message(&topic(20), &first, 1, 0);
    assert_eq!(acks(&out), [1]);
    assert_eq!(i.pending_sets(), 1);
    assert_eq!(i.held(), 0);
    // Whole events from another device: each waits only for its own receipt.
    for n in 21..31u64 {
        let m = messages(n, 1000);
        let out = i.on_message(&topic(n), &m[0], n as u32, 1);
        assert_eq!(processed(&out), [meta(n, 1000).event_id]);
        let receipt = Receipt::stored(meta(n, 1000).event_id, "s3://b/k.jpg");
        let device = DeviceId::new(format!("pi-{n}")).unwrap();
        let out = i.on_done(device, key(n, 1000), Some(receipt));
        assert_eq!(acks(&out), [n as u32]);
    }
    assert_eq!(i.held(), 0);
    assert_eq!(
        i.pending_sets(),
        1,
        "the set still waits for its other chunks"
    );
}

#[test]
fn a_resent_event_while_in_flight_is_acknowledged_at_once_and_after_done_gets_its_receipt_again() {
    let mut i = intake(false);
    let m = messages(3, 1000);
    let id = meta(3, 1000).event_id;
    i.on_message(&topic(3), &m[0], 1, 0);
    let out = i.on_message(&topic(3), &m[0], 2, 0);
    assert!(processed(&out).is_empty(), "processed once");
    assert_eq!(acks(&out), [2], "the copy in flight answers for it");
    assert_eq!(i.held(), 1);
    let receipt = Receipt::stored(id, "s3://b/k.jpg");
    let out = i.on_done(
        DeviceId::new("pi-3").unwrap(),
        key(3, 1000),
        Some(receipt.clone()),
    );
    assert_eq!(acks(&out), [1]);
    let out = i.on_message(&topic(3), &m[0], 3, 0);
    assert_eq!(acks(&out), [3]);
    assert!(processed(&out).is_empty());
    assert!(matches!(&out[0], Action::Receipt { receipt: r, .. } if *r == receipt));
}

#[test]
fn a_resent_chunk_of_an_event_in_flight_is_acknowledged_at_once() {
    let mut i = intake(false);
    let m = messages(10, 300_000);
    for (k, msg) in m.iter().enumerate() {
        i.on_message(&topic(10), msg, k as u32, 0);
    }
    assert_eq!(i.in_flight(), 1);
    let out = i.on_message(&topic(10), &m[0], 99, 0);
    assert_eq!(acks(&out), [99]);
    assert!(processed(&out).is_empty());
    assert_eq!(i.pending_sets(), 0, "no new set for an event in flight");
    assert_eq!(
        acks(&i.on_done(DeviceId::new("pi-10").unwrap(), key(10, 300_000), None)),
        [m.len() as u32 - 1]
    );
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
fn incomplete_sets_expire_and_are_dropped() {
    let mut i = Intake::new(
        Topics::default(),
        false,
        AssemblerLimits {
            timeout_ms: 1000,
            ..AssemblerLimits::default()
        },
    );
    let m = messages(8, 300_000);
    assert_eq!(acks(&i.on_message(&topic(8), &m[0], 1, 0)), [1]);
    assert_eq!(i.pending_sets(), 1);
    assert!(i.on_tick(500).is_empty());
    let out = i.on_tick(1500);
    assert!(
        matches!(&out[..], [Action::Dropped { event_ids }] if *event_ids == [meta(8, 300_000).event_id])
    );
    assert_eq!(i.pending_sets(), 0);
    assert_eq!(i.held(), 0);
}

#[test]
fn a_flood_of_incomplete_sets_stays_within_bounds_and_holds_no_message() {
    let limits = AssemblerLimits {
        max_pending_bytes: 2 * 1024 * 1024,
        max_pending_sets: 8,
        timeout_ms: 60_000,
    };
    let mut i = Intake::new(Topics::default(), false, limits);
    for n in 100..200u64 {
        let m = messages(n, 300_000);
        assert_eq!(
            acks(&i.on_message(&topic(n), &m[0], n as u32, n)),
            [n as u32]
        );
        assert!(i.pending_sets() <= 8);
        assert!(i.pending_bytes() <= 2 * 1024 * 1024);
    }
    assert_eq!(i.held(), 0);
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
    let set = EventKey::of(&chunk.header.meta);
    assert_eq!(
        acks(&i.on_staged(device.clone(), set.clone(), ack, Staged::Incomplete)),
        [1]
    );
    let img = image(9, 300_000);
    let event = CompleteEvent {
        meta: meta_for(9, &img),
        image: img,
    };
    let out = i.on_staged(device.clone(), set.clone(), 2, Staged::Complete(event));
    assert_eq!(processed(&out), [id]);
    assert!(acks(&out).is_empty());
    // Another relay's chunk completed it too, or a late copy was staged: no hold.
    assert_eq!(
        acks(&i.on_staged(device.clone(), set.clone(), 3, Staged::Incomplete)),
        [3]
    );
    assert_eq!(acks(&i.on_done(device, set, None)), [2]);
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
    i.on_done(
        DeviceId::new("pi-9").unwrap(),
        EventKey::of(&m1),
        Some(receipt),
    );
    let out = i.on_message(&topic(9), &encode(&m2, &other), 2, 0);
    assert_eq!(
        processed(&out),
        [id],
        "the event handler judges other content"
    );
    assert!(!out.iter().any(|a| matches!(a, Action::Receipt { .. })));
    let conflict = Receipt::rejected(id, RejectCode::Conflict, "taken");
    i.on_done(
        DeviceId::new("pi-9").unwrap(),
        EventKey::of(&m2),
        Some(conflict.clone()),
    );
    let out = i.on_message(&topic(9), &encode(&m2, &other), 3, 0);
    assert!(processed(&out).is_empty(), "a resend of the rejected one");
    assert!(matches!(&out[0], Action::Receipt { receipt: r, .. } if *r == conflict));
    let out = i.on_message(&topic(9), &encode(&m1, &first), 4, 0);
    assert_eq!(processed(&out), [id], "the first one again: S3 says stored");
}

/// Two events under one id with other images, `first` and `other`, as whole messages.
fn two_images_under_one_id(size: usize) -> (Vec<u8>, Vec<u8>, EventMeta, EventMeta) {
    let (first, other) = (image(11, size), image(110, size));
    let m1 = meta_for(11, &first);
    let mut m2 = meta_for(11, &other);
    m2.event_id = m1.event_id;
    (first, other, m1, m2)
}

/// Both events under one id finish, the second (holding ack 2) first: each releases
/// its own message, and nothing stays held.
fn conflict_then_stored(i: &mut I, m1: &EventMeta, m2: &EventMeta) {
    let device = m1.device_id.clone();
    let conflict = Receipt::rejected(m2.event_id, RejectCode::Conflict, "taken");
    assert_eq!(
        acks(&i.on_done(device.clone(), EventKey::of(m2), Some(conflict))),
        [2]
    );
    let stored = Receipt::stored(m1.event_id, "s3://b/k.jpg");
    assert_eq!(
        acks(&i.on_done(device, EventKey::of(m1), Some(stored))),
        [1]
    );
    assert_eq!(i.held(), 0);
}

#[test]
fn another_image_under_an_id_in_flight_is_processed_not_dropped_as_a_resend() {
    // The first event is still being stored when the other one arrives: acknowledged
    // as a "resend", the other one got no receipt until its agent resent it.
    let mut i = intake(false);
    let (first, other, m1, m2) = two_images_under_one_id(1000);
    let encode = |m: &EventMeta, img: &[u8]| {
        encode_event(m, img, topic(11).len(), &Limits::default())
            .unwrap()
            .remove(0)
    };
    let out = i.on_message(&topic(11), &encode(&m1, &first), 1, 0);
    assert_eq!(processed(&out), [m1.event_id]);
    let out = i.on_message(&topic(11), &encode(&m2, &other), 2, 0);
    assert_eq!(
        processed(&out),
        [m1.event_id],
        "the event handler judges it"
    );
    assert!(acks(&out).is_empty(), "it waits for its own receipt");
    assert_eq!(i.held(), 2);
    // A true copy of the first is still answered by the one in flight.
    assert_eq!(
        acks(&i.on_message(&topic(11), &encode(&m1, &first), 3, 0)),
        [3]
    );
    conflict_then_stored(&mut i, &m1, &m2);
}

#[test]
fn in_shared_mode_a_chunk_of_another_image_under_an_id_in_flight_is_staged_not_dropped() {
    let mut i = intake(true);
    let (first, other, m1, m2) = two_images_under_one_id(300_000);
    let device = DeviceId::new("pi-11").unwrap();
    let event = CompleteEvent {
        meta: m1.clone(),
        image: first,
    };
    let out = i.on_staged(
        device.clone(),
        EventKey::of(&m1),
        1,
        Staged::Complete(event),
    );
    assert_eq!(processed(&out), [m1.event_id]);
    let m = encode_event(&m2, &other, topic(11).len(), &Limits::default()).unwrap();
    let out = i.on_message(&topic(11), &m[0], 2, 0);
    let Some(Action::Stage { chunk, ack, .. }) = out.into_iter().next() else {
        panic!("a chunk of the other image is staged")
    };
    // Its set completes on this relay while the first is still in flight.
    let event = CompleteEvent {
        meta: m2.clone(),
        image: other,
    };
    let set = EventKey::of(&chunk.header.meta);
    let out = i.on_staged(device.clone(), set.clone(), ack, Staged::Complete(event));
    assert_eq!(
        processed(&out),
        [m2.event_id],
        "the event handler judges it"
    );
    assert_eq!(i.held(), 2);
    assert_eq!(set, EventKey::of(&m2));
    conflict_then_stored(&mut i, &m1, &m2);
}

#[test]
fn the_same_image_under_another_capture_date_while_in_flight_is_another_event() {
    // Its image would have another key: the event handler answers it `conflict`.
    let mut i = intake(false);
    let img = image(12, 1000);
    let m1 = meta_for(12, &img);
    let mut m2 = m1.clone();
    m2.captured_at = "2026-12-24T09:00:00.000Z".into();
    let encode = |m: &EventMeta| {
        encode_event(m, &img, topic(12).len(), &Limits::default())
            .unwrap()
            .remove(0)
    };
    assert_eq!(
        processed(&i.on_message(&topic(12), &encode(&m1), 1, 0)),
        [m1.event_id]
    );
    let out = i.on_message(&topic(12), &encode(&m2), 2, 0);
    assert_eq!(processed(&out), [m1.event_id], "not dropped as a resend");
    assert!(acks(&out).is_empty());
}

/// The broker's side of the receive window (MQTT 5 section 4.9): it sends a message
/// only while fewer than `window` are unacknowledged. The intake's actions are carried
/// out at once, with acks in arrival order ([`AckOrder`]); events whose id is in
/// `stuck` never finish storing. Returns the events processed.
fn deliver_through_window(
    window: usize,
    queue: Vec<(u64, Vec<u8>)>,
    stuck: &[EventId],
) -> Vec<EventId> {
    use crate::relay::ack_order::{AckOrder, Ticket};
    let mut i: Intake<Ticket> = Intake::new(Topics::default(), false, AssemblerLimits::default());
    let mut order: AckOrder<u16> = AckOrder::new(window / 2);
    let mut unacked = std::collections::HashSet::new();
    let mut queue: VecDeque<(u64, Vec<u8>)> = queue.into();
    let mut next_pkid = 1u16;
    let mut processed = vec![];
    while unacked.len() < window {
        let Some((n, payload)) = queue.pop_front() else {
            break;
        };
        while unacked.contains(&next_pkid) {
            next_pkid = next_pkid % 65535 + 1;
        }
        let pkid = next_pkid;
        unacked.insert(pkid);
        let ticket = order.received(pkid, pkid);
        let mut todo: VecDeque<Action<Ticket>> =
            i.on_message(&topic(n), &payload, ticket, 0).into();
        while let Some(action) = todo.pop_front() {
            match action {
                Action::Ack(t) => {
                    for pkid in order.ready(t) {
                        unacked.remove(&pkid);
                    }
                }
                Action::Process { device, event } => {
                    let id = event.meta.event_id;
                    processed.push(id);
                    if !stuck.contains(&id) {
                        let receipt = Receipt::stored(id, "s3://b/k.jpg");
                        todo.extend(i.on_done(device, EventKey::of(&event.meta), Some(receipt)));
                    }
                }
                _ => {}
            }
        }
    }
    processed
}

#[test]
fn one_incomplete_set_never_closes_the_receive_window_for_other_devices() {
    let window = 8;
    let mut queue = vec![(40, messages(40, 300_000).remove(0))];
    for n in 41..41 + 3 * window as u64 {
        queue.push((n, messages(n, 1000).remove(0)));
    }
    let processed = deliver_through_window(window, queue, &[]);
    assert_eq!(processed.len(), 3 * window, "every whole event got through");
}

#[test]
fn one_event_that_cannot_be_stored_never_closes_the_receive_window_for_the_others() {
    let window = 8;
    let queue: Vec<(u64, Vec<u8>)> = (60..60 + 3 * window as u64)
        .map(|n| (n, messages(n, 1000).remove(0)))
        .collect();
    let stuck = [meta(60, 1000).event_id, meta(65, 1000).event_id];
    let processed = deliver_through_window(window, queue, &stuck);
    assert_eq!(processed.len(), 3 * window, "every event got through");
}

#[test]
fn when_no_event_can_be_stored_the_full_window_is_the_back_pressure() {
    let window = 8;
    let queue: Vec<(u64, Vec<u8>)> = (80..80 + 3 * window as u64)
        .map(|n| (n, messages(n, 1000).remove(0)))
        .collect();
    let all: Vec<EventId> = (80..80 + 3 * window as u64)
        .map(|n| meta(n, 1000).event_id)
        .collect();
    let processed = deliver_through_window(window, queue, &all);
    assert_eq!(processed.len(), window, "no more than the window in flight");
}
