//! An event id belongs to the first event stored under it. Against the real relay
//! (`cloud-relay run`), Mosquitto configured like IoT Core and moto's S3 server: a
//! second event with the same id and other content gets a `rejected` receipt with code
//! `conflict` (naming the id and both sha256s) on every path it can take: answered
//! from the relay's memory of recent receipts, through S3 after a relay restart, as a
//! chunked set, as staged chunks on a shared subscription, under another image key,
//! and against an image stored before the event index existed. A true resend is still
//! `stored`, and S3 keeps the first image.

mod relay_common;

use std::time::Duration;

use protocol::{ContentType, EventId, ImageInfo, Receipt, ReceiptStatus, RejectCode};
use relay_common::*;
use test_support::Mosquitto;

const WAIT: Duration = Duration::from_secs(30);

/// The same event (id, device, date) with other image bytes of the same size.
fn other_content(e: &TestEvent, seed: u64) -> TestEvent {
    let img = image(seed, e.image.len());
    let mut meta = e.meta.clone();
    meta.image = ImageInfo::describe(ContentType::Jpeg, 640, 480, &img);
    assert_ne!(meta.image.sha256, e.meta.image.sha256);
    TestEvent { meta, image: img }
}

/// Publishes `e` and waits for the next receipt about its id and content: a
/// `conflict` rejection naming another image's sha256 answers an earlier publish of a
/// conflicting event under this id (a relay on a shared subscription can complete a
/// set twice, so a second answer can arrive late), not this one.
async fn send(agent: &Agent, e: &TestEvent) -> Receipt {
    let id = e.meta.event_id;
    let sha = e.meta.image.sha256.clone();
    let seen = agent.all_receipts.lock().unwrap().len();
    agent.publish(e).await;
    test_support::wait_for_async(WAIT, "a receipt for the event", || {
        let r = agent.all_receipts.lock().unwrap()[seen..]
            .iter()
            .find(|r| r.event_id == id && answers(r, &sha))
            .cloned();
        async move { r }
    })
    .await
}

/// Whether receipt `r` can answer a publish of the image with this sha256: not a
/// conflict that names another image as the rejected event's ("this event's image
/// has sha256 ...").
fn answers(r: &Receipt, sha256: &str) -> bool {
    match &r.status {
        ReceiptStatus::Rejected {
            code: Some(RejectCode::Conflict),
            reason,
        } => reason
            .split_once("this event's image has sha256 ")
            .is_none_or(|(_, rest)| rest.starts_with(sha256)),
        _ => true,
    }
}

/// Publishes `e` once and waits for a `rejected` receipt about its id. With two relays
/// on a shared subscription a set can be completed by both, so a late second `stored`
/// receipt of the event stored earlier under this id may arrive in between: it is not
/// the answer. A relay that wrongly stores `e`, or a set that never completes (as
/// when two sets of one id shared staged keys: mixed chunks, or one set's cleanup
/// deleting the other's), makes this time out.
async fn send_expecting_rejection(agent: &Agent, e: &TestEvent) -> Receipt {
    let id = e.meta.event_id;
    let seen = agent.all_receipts.lock().unwrap().len();
    agent.publish(e).await;
    test_support::wait_for_async(WAIT, "a rejected receipt for the event", || {
        let r = agent.all_receipts.lock().unwrap()[seen..]
            .iter()
            .find(|r| r.event_id == id && !r.is_stored())
            .cloned();
        async move { r }
    })
    .await
}

fn assert_stored(r: &Receipt, what: &str) {
    assert!(r.is_stored(), "{what}: {r:?}");
}

/// A `conflict` rejection whose reason names the id and both sha256s.
fn assert_conflict(r: &Receipt, first: &TestEvent, second: &TestEvent, what: &str) {
    let ReceiptStatus::Rejected { code, reason } = &r.status else {
        panic!("{what}: expected a conflict rejection, got {r:?}");
    };
    assert_eq!(*code, Some(RejectCode::Conflict), "{what}: {reason}");
    for needle in [
        first.meta.event_id.to_string(),
        first.meta.image.sha256.clone(),
        second.meta.image.sha256.clone(),
    ] {
        assert!(reason.contains(&needle), "{what}: {needle} not in {reason}");
    }
}

async fn image_keys(bench: &Bench, id: &EventId) -> Vec<String> {
    let id = id.to_string();
    bench
        .keys("events/")
        .await
        .into_iter()
        .filter(|k| k.contains(&id) && k.ends_with(".jpg"))
        .collect()
}

async fn conflicts_counted(port: u16) -> Option<u64> {
    metric(port, "cloud_relay_rejected_total{reason=\"conflict\"}").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_event_under_a_stored_id_is_a_conflict_from_memory_from_s3_and_as_chunks() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let mut relay = bench.start_relay("relay-1", None).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let evs = events(4, 41);
    let (first, chunked) = (&evs[0], &evs[3]);
    assert!(chunked.image.len() > 200_000, "travels as chunks");

    assert_stored(&send(&agent, first).await, "the first event");
    let second = other_content(first, 9_001);
    let r = send(&agent, &second).await;
    assert_conflict(
        &r,
        first,
        &second,
        "other bytes, answered by the same relay",
    );
    assert_stored(&send(&agent, first).await, "a true resend");

    // The same bytes under another capture date: its image would have another key.
    let mut moved = first.clone();
    moved.meta.captured_at = "2026-12-24T09:00:00.000Z".into();
    let r = send(&agent, &moved).await;
    assert_conflict(&r, first, first, "same bytes, another date");

    assert_stored(&send(&agent, chunked).await, "a chunked event");
    let chunked_second = other_content(chunked, 9_002);
    let r = send(&agent, &chunked_second).await;
    assert_conflict(&r, chunked, &chunked_second, "other bytes, as chunks");

    // A fresh relay remembers nothing: S3 decides.
    relay.process.terminate(Duration::from_secs(20));
    let relay = bench.start_relay("relay-2", None).await;
    let r = send(&agent, &second).await;
    assert_conflict(&r, first, &second, "other bytes, after a relay restart");
    assert_stored(&send(&agent, first).await, "a true resend after a restart");
    assert_stored(&send(&agent, chunked).await, "a chunked resend");

    // S3 keeps the first of each, once; one loop each.
    for e in [first, chunked] {
        let keys = image_keys(&bench, &e.meta.event_id).await;
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(bench.get(&keys[0]).await, e.image, "the first image stays");
    }
    assert_eq!(bench.loop_count(), 2);
    assert_eq!(conflicts_counted(relay.port).await, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn staged_chunks_of_a_second_event_under_a_stored_id_are_a_conflict_on_a_shared_subscription()
{
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let a = bench.start_relay("relay-a", Some("relays")).await;
    let b = bench.start_relay("relay-b", Some("relays")).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let evs = events(4, 43);
    let first = &evs[3];
    assert!(first.image.len() > 200_000, "travels as chunks");

    assert_stored(&send(&agent, first).await, "the first event");
    let second = other_content(first, 9_003);
    let r = send_expecting_rejection(&agent, &second).await;
    assert_conflict(&r, first, &second, "other bytes, staged");
    assert_stored(&send(&agent, first).await, "a true resend, staged");

    let keys = image_keys(&bench, &first.meta.event_id).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(bench.get(&keys[0]).await, first.image);
    assert_eq!(bench.loop_count(), 1);
    // Both relays may have judged a resend of it.
    let counted =
        conflicts_counted(a.port).await.unwrap_or(0) + conflicts_counted(b.port).await.unwrap_or(0);
    assert!(counted >= 1, "{counted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_stored_before_the_event_index_existed_still_wins_over_other_content() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let _relay = bench.start_relay("relay-1", None).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let evs = events(1, 47);
    let later = &evs[0];
    // What an older relay left: the image and its metadata, no index entry, no
    // sha256 in the object's metadata.
    let earlier = other_content(later, 9_004);
    let base = format!(
        "events/{}/2026/11/25/{}",
        later.meta.device_id, later.meta.event_id
    );
    for (key, body) in [
        (format!("{base}.jpg"), earlier.image.clone()),
        (format!("{base}.json"), earlier.meta.to_json()),
    ] {
        bench
            .s3
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }

    let r = send(&agent, later).await;
    assert_conflict(&r, &earlier, later, "against an older relay's image");
    assert_eq!(bench.get(&format!("{base}.jpg")).await, earlier.image);
    // A resend gets the same answer.
    let r = send(&agent, later).await;
    assert_conflict(&r, &earlier, later, "a resend of the later one");
    assert_eq!(bench.loop_count(), 0, "no loop for a rejected event");
}
