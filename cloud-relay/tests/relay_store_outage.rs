//! The object store down while events arrive: what an operator sees in the relay's
//! log at its default level, and that the relay picks up where it was without its
//! broker connection going down. Mosquitto configured like IoT Core, moto's S3 (stopped
//! and started again), the relay as a process logging as it would in production.

mod relay_common;

use std::path::Path;
use std::time::Duration;

use relay_common::*;
use test_support::{create_bucket, free_port, Mosquitto};

fn lines_with(log: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_outage_is_logged_once_and_recovery_needs_no_reconnect() {
    let mut bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let port = free_port();
    let config = bench.relay_config("relay-1", None, port, "");
    let log = bench.dir.path().join("relay-1.log");
    // No RUST_LOG: the default level, as an operator runs it.
    let mut relay = bench.spawn_relay_logging(&config, &log, None);
    wait_relay_ready(port, &mut relay, &log).await;
    let agent = std::sync::Arc::new(Agent::connect(&bench.broker, "agent-sim").await);

    bench.moto.stop();
    // Sent once: no resend before the deadline, so every receipt is for a message the
    // relay took during the outage.
    let during = events(40, 14);
    let delivery =
        agent.deliver_in_background(&during, Duration::from_secs(600), Duration::from_secs(120));
    // Long enough for many retries of every event and several keep-alive rounds
    // (the relay's keep-alive is 10 s; retries back off up to 1 s).
    test_support::wait_until_async(
        Duration::from_secs(60),
        "the relay retrying S3 through several keep-alives",
        || async {
            metric(
                port,
                "cloud_relay_retries_total{operation=\"s3_put_event_index\"}",
            )
            .await
            .unwrap_or(0)
                >= 600
        },
    )
    .await;
    assert_eq!(agent.receipted(), 0, "no receipt while S3 is down");
    let waiting = lines_with(&log, "waiting for");
    assert_eq!(
        waiting.len(),
        1,
        "one line for the outage, not one per retry: {waiting:#?}"
    );
    let line = &waiting[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&format!("bucket {BUCKET}")),
        "names the bucket: {line}"
    );
    assert!(line.contains(&bench.s3_url), "names the endpoint: {line}");
    assert!(
        line.to_lowercase().contains("connection refused"),
        "says why: {line}"
    );

    bench.moto.start();
    create_bucket(&bench.s3, BUCKET).await;
    delivery.await.unwrap();
    assert_stored_exactly(&bench, &during).await;
    assert_eq!(agent.resends.load(std::sync::atomic::Ordering::SeqCst), 0);
    let recovered = lines_with(&log, "answers again");
    assert_eq!(recovered.len(), 1, "{recovered:#?}");
    assert!(recovered[0].contains(&bench.s3_url), "{}", recovered[0]);

    // One connection all along: in the relay's log and in the broker's.
    assert_eq!(
        lines_with(&log, "connected to the broker").len(),
        1,
        "{}",
        test_support::log_tail(&log, 40)
    );
    assert!(lines_with(&log, "broker connection lost").is_empty());
    assert_eq!(
        bench.broker_connections("relay-1"),
        1,
        "{}",
        bench.broker.log_tail(40)
    );
    relay.kill();
}
