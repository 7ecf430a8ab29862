//! Fault tests: relays SIGKILLed mid-stream, two relays on a shared subscription, S3
//! down for a while, A2I throttling, and a relay away longer than its session. Each
//! ends by counting: exactly one image, one loop and one manifest row per event.

mod relay_common;

use std::time::Duration;

use relay_common::*;
use test_support::{create_bucket, free_port, Mosquitto};

/// The relay's "connected to the broker" log lines, one per start.
fn connects(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("connected to the broker") && !l.contains("reconnected"))
        .map(str::to_owned)
        .collect()
}

async fn wait_receipts(agent: &Agent, n: usize) {
    test_support::wait_until_async(
        Duration::from_secs(90),
        &format!("{n} receipts"),
        || async { agent.receipted() >= n },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_sigkilled_three_times_mid_stream_loses_and_duplicates_nothing() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let RunningRelay {
        process: mut relay,
        config,
        log,
        ..
    } = bench.start_relay("relay-1", None).await;
    let agent = std::sync::Arc::new(Agent::connect(&bench.broker, "agent-sim").await);
    let events = events(200, 2);
    let delivery =
        agent.deliver_in_background(&events, Duration::from_secs(8), Duration::from_secs(180));
    for at in [30, 90, 150] {
        wait_receipts(&agent, at).await;
        relay.kill();
        relay = bench.spawn_relay(&config, &log);
    }
    delivery.await.unwrap();
    let starts = connects(&log);
    assert_eq!(starts.len(), 4);
    assert!(
        starts[1..]
            .iter()
            .all(|l| l.contains("session_present=true")),
        "the session survives a kill: {starts:?}"
    );
    assert_stored_exactly(&bench, &events).await;
    assert_eq!(bench.answer_all("pug").await, 200);
    assert_rows_exactly(&bench, &events, Duration::from_secs(60)).await;
    relay.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_on_a_shared_subscription_split_the_load_and_survive_a_kill() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let (pa, pb) = (free_port(), free_port());
    let ca = bench.relay_config("relay-a", Some("relays"), pa, "");
    let cb = bench.relay_config("relay-b", Some("relays"), pb, "");
    let (la, lb) = (
        bench.dir.path().join("relay-a.log"),
        bench.dir.path().join("relay-b.log"),
    );
    let mut a = bench.spawn_relay(&ca, &la);
    let mut b = bench.spawn_relay(&cb, &lb);
    wait_relay_ready(pa, &mut a, &la).await;
    wait_relay_ready(pb, &mut b, &lb).await;
    let agent = std::sync::Arc::new(Agent::connect(&bench.broker, "agent-sim").await);
    let events = events(200, 3);
    let delivery =
        agent.deliver_in_background(&events, Duration::from_secs(8), Duration::from_secs(180));
    wait_receipts(&agent, 60).await;
    let (in_a, in_b) = (
        metric(pa, "cloud_relay_events_in_total").await.unwrap_or(0),
        metric(pb, "cloud_relay_events_in_total").await.unwrap_or(0),
    );
    assert!(
        in_a > 0 && in_b > 0,
        "both relays took events: {in_a} and {in_b}"
    );
    b.kill();
    wait_receipts(&agent, 120).await;
    b = bench.spawn_relay(&cb, &lb);
    delivery.await.unwrap();
    assert_stored_exactly(&bench, &events).await;
    assert_eq!(bench.answer_all("pug").await, 200);
    assert_rows_exactly(&bench, &events, Duration::from_secs(60)).await;
    a.kill();
    b.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_down_for_a_while_and_a2i_throttling_lose_nothing() {
    let mut bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let RunningRelay {
        process: mut relay,
        port,
        ..
    } = bench.start_relay("relay-1", None).await;
    let agent = std::sync::Arc::new(Agent::connect(&bench.broker, "agent-sim").await);

    // S3 outage. moto forgets everything when it stops: only events sent during and
    // after the outage are counted.
    bench.moto.stop();
    let during = events(40, 4);
    let delivery =
        agent.deliver_in_background(&during, Duration::from_secs(30), Duration::from_secs(120));
    test_support::wait_until_async(Duration::from_secs(30), "the relay retrying S3", || async {
        metric(
            port,
            "cloud_relay_retries_total{operation=\"s3_put_event_index\"}",
        )
        .await
        .unwrap_or(0)
            >= 5
    })
    .await;
    assert_eq!(agent.receipted(), 0, "no receipt while S3 is down");
    bench.moto.start();
    create_bucket(&bench.s3, BUCKET).await;
    delivery.await.unwrap();
    assert_stored_exactly(&bench, &during).await;

    // A2I answers 429, then 503, for a while.
    bench.faults.fail_next(25, 429);
    let throttled = events(30, 5);
    agent
        .deliver(
            &throttled,
            Duration::from_secs(30),
            Duration::from_secs(120),
        )
        .await;
    bench.faults.fail_next(25, 503);
    let unavailable = events(30, 6);
    agent
        .deliver(
            &unavailable,
            Duration::from_secs(30),
            Duration::from_secs(120),
        )
        .await;
    assert!(
        bench
            .faults
            .injected
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 50
    );
    let all: Vec<TestEvent> = during
        .into_iter()
        .chain(throttled)
        .chain(unavailable)
        .collect();
    assert_stored_exactly(&bench, &all).await;
    assert!(
        metric(
            port,
            "cloud_relay_retries_total{operation=\"a2i_start_loop\"}"
        )
        .await
        .unwrap_or(0)
            >= 1
    );
    assert_eq!(bench.answer_all("pug").await, 100);
    assert_rows_exactly(&bench, &all, Duration::from_secs(60)).await;
    relay.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_away_longer_than_its_session_still_ends_with_one_row_per_event() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let port = free_port();
    let config = bench.relay_config("relay-1", None, port, "");
    // A 2-second session: the broker forgets the relay (and what it queued) quickly.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("session_expiry = \"1h\"", "session_expiry = \"2s\"");
    std::fs::write(&config, text).unwrap();
    let log = bench.dir.path().join("relay-1.log");
    let mut relay = bench.spawn_relay(&config, &log);
    wait_relay_ready(port, &mut relay, &log).await;
    let agent = std::sync::Arc::new(Agent::connect(&bench.broker, "agent-sim").await);
    let before = events(20, 9);
    agent
        .deliver(&before, Duration::from_secs(20), Duration::from_secs(60))
        .await;

    relay.kill();
    let away = events(30, 10);
    let delivery =
        agent.deliver_in_background(&away, Duration::from_secs(6), Duration::from_secs(120));
    // Down well past the 2 s expiry: wait for the agent's first resends (6 s).
    test_support::wait_until_async(Duration::from_secs(30), "the agent resending", || async {
        agent.resends.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    relay = bench.spawn_relay(&config, &log);
    delivery.await.unwrap();
    let starts = connects(&log);
    assert_eq!(starts.len(), 2);
    assert!(
        starts[1].contains("session_present=false"),
        "the broker forgot the session: {}",
        starts[1]
    );
    let all: Vec<TestEvent> = before.into_iter().chain(away).collect();
    assert_stored_exactly(&bench, &all).await;
    assert_eq!(bench.answer_all("pug").await, 50);
    assert_rows_exactly(&bench, &all, Duration::from_secs(60)).await;
    relay.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_a2i_quota_error_pauses_intake_until_loops_complete_and_drops_nothing() {
    // At most 20 loops in progress: the 21st StartHumanLoop is a quota error.
    let bench = Bench::start(Mosquitto::builder().start(), 20).await;
    let RunningRelay {
        process: mut relay,
        port,
        ..
    } = bench.start_relay("relay-1", None).await;
    let agent = std::sync::Arc::new(Agent::connect(&bench.broker, "agent-sim").await);
    let events = events(50, 11);
    let delivery =
        agent.deliver_in_background(&events, Duration::from_secs(30), Duration::from_secs(120));
    test_support::wait_until_async(
        Duration::from_secs(30),
        "intake paused by the quota",
        || async { metric(port, "cloud_relay_intake_paused").await == Some(1) },
    )
    .await;
    assert_eq!(bench.loop_count(), 20);
    assert_eq!(
        agent.receipted(),
        20,
        "no receipt for an event whose loop could not start"
    );
    // Reviewers work through the queue; the relay resumes each time room appears.
    while !delivery.is_finished() {
        bench.answer_all("pug").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    delivery.await.unwrap();
    bench.answer_all("pug").await;
    assert_stored_exactly(&bench, &events).await;
    assert_rows_exactly(&bench, &events, Duration::from_secs(60)).await;
    relay.kill();
}
