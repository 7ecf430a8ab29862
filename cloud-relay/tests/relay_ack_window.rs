//! The broker's receive window (MQTT 5 receive maximum, the relay's `max_in_flight`)
//! is shared by every device: nothing one device sends may keep it closed for the
//! others. Mosquitto configured like IoT Core, moto's S3, the relay as a process.

mod relay_common;

use std::time::Duration;

use protocol::{encode_event, Limits, Topics};
use relay_common::*;
use test_support::{free_port, Mosquitto};

const WINDOW: usize = 16;

/// A relay with a receive window of [`WINDOW`] and a chunk timeout of ten minutes.
async fn start_relay(bench: &Bench) -> (test_support::ChildGuard, u16) {
    let port = free_port();
    let config = bench.relay_config("relay-1", None, port, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_in_flight = 64", &format!("max_in_flight = {WINDOW}"))
        .replace("chunk_timeout = \"20s\"", "chunk_timeout = \"10m\"");
    std::fs::write(&config, text).unwrap();
    let log = bench.dir.path().join("relay-1.log");
    let mut relay = bench.spawn_relay(&config, &log);
    wait_relay_ready(port, &mut relay, &log).await;
    (relay, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_devices_incomplete_chunk_set_does_not_stall_other_devices_events() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let (mut relay, port) = start_relay(&bench).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;

    let all = events(8 * WINDOW as u64, 13);
    let chunked = all.iter().find(|e| e.image.len() > 200_000).unwrap();
    let stalled_device = chunked.meta.device_id.clone();
    // Only the first chunk of a multi-chunk set: its other chunks never come.
    let topic = Topics::default().events(&stalled_device);
    let messages = encode_event(
        &chunked.meta,
        &chunked.image,
        topic.len(),
        &Limits::default(),
    )
    .unwrap();
    assert!(messages.len() >= 3);
    agent
        .publish_raw(stalled_device.as_str(), messages[0].clone())
        .await;

    // Then three windows' worth of whole events from other devices, sent once (no
    // resends before the deadline): each must get through the window on its own.
    let whole: Vec<TestEvent> = all
        .into_iter()
        .filter(|e| e.image.len() < 100_000 && e.meta.device_id != stalled_device)
        .take(3 * WINDOW)
        .collect();
    assert_eq!(whole.len(), 3 * WINDOW);
    agent
        .deliver(&whole, Duration::from_secs(600), Duration::from_secs(30))
        .await;
    assert_eq!(agent.resends.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(
        metric(port, "cloud_relay_chunk_sets_expired_total").await,
        Some(0),
        "the incomplete set is still pending: it was not timed out to make room"
    );
    assert_stored_exactly(&bench, &whole).await;
    relay.kill();
}
