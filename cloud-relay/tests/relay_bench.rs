//! Throughput and memory of the relay against the local servers.
//!
//! `flood_of_incomplete_chunk_sets_keeps_rss_bounded` runs in CI. The throughput
//! benchmark is `#[ignore]`d (it measures, it does not check much):
//! `cargo test -p cloud-relay --release --test relay_bench -- --ignored --nocapture`.

mod relay_common;

use std::time::{Duration, Instant};

use relay_common::*;
use test_support::{free_port, Mosquitto};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flood_of_incomplete_chunk_sets_keeps_rss_bounded() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let port = free_port();
    let extra = "";
    let config = bench.relay_config("relay-1", None, port, extra);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "chunk_timeout = \"20s\"",
        "chunk_timeout = \"20s\"\nmax_pending_sets = 16\nmax_pending_bytes = 4194304",
    );
    std::fs::write(&config, text).unwrap();
    let log = bench.dir.path().join("relay-1.log");
    let mut relay = bench.spawn_relay(&config, &log);
    wait_relay_ready(port, &mut relay, &log).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let baseline = rss_kib(relay.id());

    // 600 large events, of which only the first chunk is ever sent: ~75 MB of
    // chunks that can never complete.
    let flood = events(600 * 8, 12)
        .into_iter()
        .filter(|e| e.image.len() > 200_000)
        .collect::<Vec<_>>();
    assert_eq!(flood.len(), 600);
    let mut peak = baseline;
    for (n, e) in flood.iter().enumerate() {
        let topic = format!("edge-a2i/{}/events", e.meta.device_id);
        let first =
            protocol::encode_event(&e.meta, &e.image, topic.len(), &protocol::Limits::default())
                .unwrap()
                .remove(0);
        agent.publish_raw(e.meta.device_id.as_str(), first).await;
        if n % 50 == 0 {
            peak = peak.max(rss_kib(relay.id()));
        }
    }
    test_support::wait_until_async(
        Duration::from_secs(60),
        "all 600 chunks received",
        || async { metric(port, "cloud_relay_messages_in_total").await == Some(600) },
    )
    .await;
    peak = peak.max(rss_kib(relay.id()));
    let dropped = metric(port, "cloud_relay_chunk_sets_expired_total")
        .await
        .unwrap();
    let pending = metric(port, "cloud_relay_pending_chunk_sets")
        .await
        .unwrap();
    println!(
        "RSS baseline {baseline} KiB, peak {peak} KiB; sets dropped {dropped}, pending {pending}"
    );
    assert!(dropped >= 600 - 16, "stalest sets evicted: {dropped}");
    assert!(pending <= 16);
    assert!(
        peak < baseline + 48 * 1024,
        "RSS grew from {baseline} to {peak} KiB under the flood"
    );
    // And a real event still goes through.
    let fine = events(1, 13);
    agent
        .deliver(&fine, Duration::from_secs(10), Duration::from_secs(30))
        .await;
    relay.kill();
}

async fn throughput(relays: usize, count: u64) -> f64 {
    // Mosquitto queues at most 1000 messages per session by default and drops the
    // rest (the agents would resend them after their timeout): a burst of 1000
    // events must not measure that timeout.
    let broker = Mosquitto::builder()
        .extra_config("max_queued_messages 100000")
        .start();
    let bench = Bench::start(broker, 100_000).await;
    let mut guards = vec![];
    for r in 0..relays {
        let port = free_port();
        let id = format!("relay-{r}");
        let share = (relays > 1).then_some("bench");
        let config = bench.relay_config(&id, share, port, "");
        let log = bench.dir.path().join(format!("{id}.log"));
        let mut g = bench.spawn_relay(&config, &log);
        wait_relay_ready(port, &mut g, &log).await;
        guards.push(g);
    }
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let events = events(count, 20 + relays as u64);
    let start = Instant::now();
    agent
        .deliver(&events, Duration::from_secs(60), Duration::from_secs(600))
        .await;
    let rate = count as f64 / start.elapsed().as_secs_f64();
    for mut g in guards {
        g.kill();
    }
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn events_per_second_through_one_and_two_relays() {
    let one = throughput(1, 1000).await;
    let two = throughput(2, 1000).await;
    println!("events/s (1 in 8 chunked, 300 KB; others 4-20 KB): one relay {one:.0}, two relays {two:.0}");
}
