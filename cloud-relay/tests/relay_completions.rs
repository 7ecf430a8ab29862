//! Completed human loops reach the relay as A2I's EventBridge events through an SQS
//! queue (issue #22): the relays (`cloud-relay run` processes) consume moto's SQS
//! server with the real `aws-sdk-sqs` client; the test plays A2I + EventBridge,
//! putting into the queue, for each loop the review service completes or stops, the
//! event body A2I documents (AWS, "Use Amazon CloudWatch Events in Amazon Augmented
//! AI"). Each test counts rows in S3: every event exactly once. What no event
//! announces, the reconciliation sweep finds, from a checkpoint any relay resumes.

mod relay_common;
mod relay_queue;

use std::time::Duration;

use relay_common::*;
use relay_queue::*;
use test_support::Mosquitto;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completions_arrive_as_events_and_each_becomes_one_row_even_when_delivered_twice() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let q = Queues::create(&bench, "completions", 3).await;
    let relay = q.start_relay(&bench, "relay-1", "30s").await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let evs = events(12, 61);
    agent
        .deliver(&evs, Duration::from_secs(20), Duration::from_secs(60))
        .await;

    // One loop is stopped: its event becomes a not-reviewed record, not a row.
    let stopped = format!("ea2i-{}", evs[0].meta.event_id);
    bench.review.stop_human_loop(&stopped).unwrap();
    let answered = answer_all(&bench, "pug").await;
    assert_eq!(answered.len(), 11);
    // At least once: A2I may send an event twice, and here every one comes twice.
    for _ in 0..2 {
        q.send_events(&bench, &answered).await;
        q.send_events(&bench, std::slice::from_ref(&stopped)).await;
    }

    assert_rows_exactly(&bench, &evs[1..], WAIT).await;
    test_support::wait_until_async(WAIT, "all 24 events deleted", || async {
        metric(relay.port, "cloud_relay_completion_events_deleted_total")
            .await
            .is_some_and(|n| n >= 24)
    })
    .await;
    q.wait_drained(WAIT).await;
    assert_eq!(
        metric(relay.port, "cloud_relay_loops_not_reviewed_total").await,
        Some(1)
    );
    assert_eq!(
        bench.keys("manifest/not-reviewed/").await,
        [format!("manifest/not-reviewed/{stopped}.json")]
    );
    assert_eq!(
        metric(relay.port, "cloud_relay_loop_listings_total").await,
        Some(0),
        "no listing: the sweep is not due"
    );
    let log = std::fs::read_to_string(&relay.log).unwrap();
    assert!(
        log.contains("results: completion events from the queue"),
        "{log}"
    );
    // A row was written once: the duplicate found it there.
    assert_eq!(
        metric(relay.port, "cloud_relay_manifest_rows_written_total").await,
        Some(11)
    );
    assert!(
        metric(relay.port, "cloud_relay_manifest_rows_existing_total")
            .await
            .is_some_and(|n| n >= 11),
        "each duplicate found its row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_while_holding_messages_loses_no_row_and_doubles_none() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let q = Queues::create(&bench, "completions", 5).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let ingest = q.start_relay(&bench, "relay-ingest", "3s").await;
    let evs = events(120, 62);
    agent
        .deliver(&evs, Duration::from_secs(30), Duration::from_secs(120))
        .await;
    let mut ingest = ingest;
    ingest.process.kill();
    let answered = answer_all(&bench, "pug").await;
    q.send_events(&bench, &answered).await;

    // Relay A drains; it is stopped (SIGSTOP) when SQS shows messages in flight, so
    // it holds them for certain when SIGKILL comes.
    let mut a = q.start_relay(&bench, "relay-a", "3s").await;
    let held = loop {
        let (_, in_flight) = q.counts().await;
        if in_flight > 0 {
            a.process.signal(libc::SIGSTOP);
            let (_, in_flight) = q.counts().await;
            if in_flight > 0 {
                break in_flight;
            }
            a.process.signal(libc::SIGCONT);
        }
        assert!(
            a.process.is_running(),
            "relay A ended: {}",
            test_support::log_tail(&a.log, 30)
        );
        assert!(
            bench.keys("manifest/rows/").await.len() < evs.len(),
            "relay A finished before it could be caught holding messages"
        );
    };
    a.process.kill();
    let rows_at_kill = bench.keys("manifest/rows/").await.len();
    assert!(rows_at_kill < evs.len(), "killed before it finished");

    // Relay B gets the rest, and what A held once its visibility timeout ends.
    let b = q.start_relay(&bench, "relay-b", "3s").await;
    assert_rows_exactly(&bench, &evs, WAIT).await;
    q.wait_drained(WAIT).await;
    let received_b = metric(b.port, "cloud_relay_completion_events_received_total")
        .await
        .unwrap();
    assert!(
        received_b >= (evs.len() - rows_at_kill) as u64,
        "B received {received_b}; A held {held}, {rows_at_kill} rows were written"
    );
    assert_eq!(
        metric(b.port, "cloud_relay_completion_events_failed_total").await,
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_ends_in_the_dead_letter_queue_counted_and_logged_once() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let q = Queues::create(&bench, "completions", 3).await;
    let relay = q.start_relay(&bench, "relay-1", "30s").await;
    q.send_body("{\"not\": \"an A2I event\"").await;
    q.send_body(r#"{"source":"aws.s3","detail-type":"Object Created","detail":{}}"#)
        .await;

    test_support::wait_until_async(WAIT, "both in the dead-letter queue", || async {
        q.dead_letters().await == 2
    })
    .await;
    q.wait_drained(WAIT).await;
    assert_eq!(
        metric(
            relay.port,
            "cloud_relay_completion_events_dead_lettered_total"
        )
        .await,
        Some(2)
    );
    assert_eq!(
        metric(relay.port, "cloud_relay_completion_events_poison_total").await,
        Some(6),
        "each received three times, the queue's maxReceiveCount"
    );
    let log = std::fs::read_to_string(&relay.log).unwrap();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("goes to the dead-letter queue"))
        .collect();
    assert_eq!(errors.len(), 2, "{log}");
    assert!(errors[0].contains("message_id="), "{}", errors[0]);
    // The relay still works after them.
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let evs = events(3, 63);
    agent
        .deliver(&evs, Duration::from_secs(20), Duration::from_secs(60))
        .await;
    let answered = answer_all(&bench, "pug").await;
    q.send_events(&bench, &answered).await;
    assert_rows_exactly(&bench, &evs, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_split_the_queue_and_write_each_row_once() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let q = Queues::create(&bench, "completions", 5).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let r1 = q.start_relay(&bench, "relay-1", "30s").await;
    // 80 events: enough for both relays to take some while moto (one Python process,
    // about 8 events a second here) keeps up beside the rest of the suite.
    let evs = events(80, 64);
    agent
        .deliver(&evs, Duration::from_secs(30), Duration::from_secs(120))
        .await;
    let answered = answer_all(&bench, "pug").await;
    let r2 = q.start_relay(&bench, "relay-2", "30s").await;
    q.send_events(&bench, &answered).await;

    assert_rows_exactly(&bench, &evs, 2 * WAIT).await;
    q.wait_drained(2 * WAIT).await;
    let deleted = |port| async move {
        metric(port, "cloud_relay_completion_events_deleted_total")
            .await
            .unwrap()
    };
    let (d1, d2) = (deleted(r1.port).await, deleted(r2.port).await);
    // Standard queues deliver at least once, so a message may be handled twice
    // (moto does it under concurrent receives too); the row is still written once.
    assert!(d1 + d2 >= 80, "every event deleted: {d1} + {d2}");
    assert!(d1 > 0 && d2 > 0, "the work is split: {d1} + {d2}");
    let written = |port| async move {
        metric(port, "cloud_relay_manifest_rows_written_total")
            .await
            .unwrap()
    };
    assert_eq!(written(r1.port).await + written(r2.port).await, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loops_no_event_announced_are_swept_up_from_a_checkpoint_any_relay_resumes() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let q = Queues::create(&bench, "completions", 5).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let mut a = q.start_relay_sweeping(&bench, "relay-a", "30s", "2s").await;
    let first = events(5, 65);
    agent
        .deliver(&first, Duration::from_secs(20), Duration::from_secs(60))
        .await;
    answer_all(&bench, "pug").await;
    // No event is sent: the sweep alone finds them.
    assert_rows_exactly(&bench, &first, WAIT).await;
    test_support::wait_until_async(WAIT, "relay A's checkpoint", || async {
        checkpoint(&bench).await.swept_by == "relay-a"
    })
    .await;
    let by_a = checkpoint(&bench).await;
    assert!(metric(a.port, "cloud_relay_loop_listings_total").await >= Some(1));
    a.process.kill();

    // Relay B takes the sweep over from A's checkpoint.
    let b = q.start_relay_sweeping(&bench, "relay-b", "30s", "2s").await;
    let second = events(3, 66);
    agent
        .deliver(&second, Duration::from_secs(20), Duration::from_secs(60))
        .await;
    answer_all(&bench, "pug").await;
    let all: Vec<TestEvent> = first.iter().chain(&second).cloned().collect();
    assert_rows_exactly(&bench, &all, WAIT).await;
    test_support::wait_until_async(WAIT, "relay B's checkpoint", || async {
        checkpoint(&bench).await.swept_by == "relay-b"
    })
    .await;
    let by_b = checkpoint(&bench).await;
    assert!(by_b.swept_at_ms > by_a.swept_at_ms);
    assert!(by_b.watermark_ms >= by_a.watermark_ms, "{by_a:?} {by_b:?}");
    assert_eq!(
        metric(b.port, "cloud_relay_completion_events_received_total").await,
        Some(0)
    );
    assert!(bench.keys("manifest/sweep/claims/").await.len() >= 2);
}

async fn checkpoint(bench: &Bench) -> cloud_relay::relay::sweep::Checkpoint {
    let bytes = bench.get("manifest/sweep/checkpoint.json").await;
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_local_mode_the_review_service_emits_the_events_the_relay_consumes_with_the_same_code() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let (queue, url) = local_queue(&bench).await;
    let table = format!(
        "\n[results.queue]\nname = \"completions\"\nendpoint_url = \"{url}\"\nvisibility_timeout = \"5s\"\nwait_time = \"2s\"\n"
    );
    let relay = start_relay_with(&bench, "relay-1", &table, "1h").await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let evs = events(10, 67);
    agent
        .deliver(&evs, Duration::from_secs(20), Duration::from_secs(60))
        .await;
    let stopped = format!("ea2i-{}", evs[0].meta.event_id);
    bench.review.stop_human_loop(&stopped).unwrap();
    assert_eq!(answer_all(&bench, "pug").await.len(), 9);

    assert_rows_exactly(&bench, &evs[1..], WAIT).await;
    test_support::wait_until_async(WAIT, "the local queue drained", || async {
        queue.counts() == (0, 0)
    })
    .await;
    assert_eq!(
        bench.keys("manifest/not-reviewed/").await,
        [format!("manifest/not-reviewed/{stopped}.json")]
    );
    assert_eq!(
        metric(relay.port, "cloud_relay_completion_events_deleted_total").await,
        Some(10)
    );
    assert_eq!(
        metric(relay.port, "cloud_relay_loop_listings_total").await,
        Some(0)
    );
    // A poison message ends in local mode's dead-letter queue as it would in SQS.
    queue.send("not an event".into());
    test_support::wait_until_async(WAIT, "dead-lettered", || async {
        queue.dead_letters() == ["not an event"]
    })
    .await;
    assert_eq!(
        metric(
            relay.port,
            "cloud_relay_completion_events_dead_lettered_total"
        )
        .await,
        Some(1)
    );
}
