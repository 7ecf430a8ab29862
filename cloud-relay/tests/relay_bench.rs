//! Throughput and memory of the relay against the local servers.
//!
//! `flood_of_incomplete_chunk_sets_keeps_rss_bounded` runs in CI. The throughput
//! benchmark is `#[ignore]`d (it measures, it does not check much):
//! `cargo test -p cloud-relay --release --test relay_bench -- --ignored --nocapture`.
//! It runs one relay, then two on a shared subscription, against Mosquitto, the
//! review service and `local-aws object-store`, and prints a table: events/s for a
//! burst of 2000 events (1 in 8 chunked), p50/p99 publish-to-receipt latency for 200
//! more at a steady rate below that, the relays' RSS; then the CPU seconds each
//! process used during the burst. `RELAY_BENCH_S3=moto` (or `both`) uses moto's S3
//! server instead (or as well), `RELAY_BENCH_EVENTS=N` sets the burst,
//! `RELAY_BENCH_RELAYS=1` or `2` runs only that, `RELAY_BENCH_LOGS=DIR` keeps the logs.

mod relay_common;

use std::time::{Duration, Instant};

use protocol::EventId;

use relay_common::*;
use test_support::{free_port, rss_kib, Mosquitto};

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

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    let total = ticks(14).unwrap_or(0) + ticks(15).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    total as f64 / hz as f64
}

/// The pid of the process whose command line contains all of `needles`.
fn find_pid(needles: &[&str]) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        needles.iter().all(|n| cmdline.contains(n)).then_some(pid)
    })
}

/// When each event was first published and when its stored receipt was seen (the
/// receipts are polled every 5 ms), and the relays' peak RSS meanwhile.
struct Drive {
    sent: Vec<Instant>,
    receipted: Vec<Instant>,
    peak_rss_kib: u64,
}

impl Drive {
    fn rate(&self) -> f64 {
        let first = self.sent.iter().min().unwrap();
        let last = self.receipted.iter().max().unwrap();
        self.sent.len() as f64 / last.duration_since(*first).as_secs_f64()
    }

    /// Event-to-receipt latency percentiles in ms (`q` in 0..=100).
    fn latency_ms(&self, q: &[usize]) -> Vec<f64> {
        let mut l: Vec<Duration> = self
            .sent
            .iter()
            .zip(&self.receipted)
            .map(|(s, r)| r.saturating_duration_since(*s))
            .collect();
        l.sort();
        q.iter()
            .map(|q| l[(l.len() - 1) * q / 100].as_secs_f64() * 1000.0)
            .collect()
    }
}

/// Publishes `events` (all at once, or one every `pace`) and resends those without a
/// receipt after 60 s, like [`Agent::deliver`], timing each event.
async fn drive(
    agent: &Agent,
    events: &[TestEvent],
    pace: Option<Duration>,
    relays: &[u32],
) -> Drive {
    const RESEND_AFTER: Duration = Duration::from_secs(60);
    const DEADLINE: Duration = Duration::from_secs(600);
    let n = events.len();
    let ids: Vec<EventId> = events.iter().map(|e| e.meta.event_id).collect();
    let start = Instant::now();
    let mut sent = vec![start; n];
    let mut last_sent = vec![start; n];
    let mut receipted: Vec<Option<Instant>> = vec![None; n];
    let mut pending: Vec<usize> = Vec::with_capacity(n);
    let mut next = 0;
    let mut peak = 0;
    let mut rss_at = start;
    loop {
        // What is due: everything at once (in slices of 50, to keep polling), or paced.
        let slice_end = (next + 50).min(n);
        while next < slice_end && pace.is_none_or(|p| start.elapsed() >= p * next as u32) {
            agent.publish(&events[next]).await;
            sent[next] = Instant::now();
            last_sent[next] = sent[next];
            pending.push(next);
            next += 1;
        }
        let now = Instant::now();
        {
            let r = agent.receipts.lock().unwrap();
            pending.retain(|&i| {
                let done = r.contains_key(&ids[i]);
                if done {
                    receipted[i] = Some(now);
                }
                !done
            });
        }
        if now.duration_since(rss_at) >= Duration::from_millis(50)
            || (next == n && pending.is_empty())
        {
            rss_at = now;
            for &pid in relays {
                peak = peak.max(rss_kib(pid));
            }
        }
        if next == n && pending.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{} of {n} events still without a receipt after {DEADLINE:?}",
            pending.len() + n - next
        );
        for &i in &pending {
            if last_sent[i].elapsed() >= RESEND_AFTER {
                agent
                    .resends
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                agent.publish(&events[i]).await;
                last_sent[i] = Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Drive {
        sent,
        receipted: receipted.into_iter().map(Option::unwrap).collect(),
        peak_rss_kib: peak,
    }
}

/// One line of the table, and where the CPU went during the burst.
struct Measured {
    relays: usize,
    server: S3Server,
    events: usize,
    chunked: usize,
    rate: f64,
    /// p50, p99 at the paced rate.
    latency_ms: Vec<f64>,
    paced_rate: f64,
    peak_rss_kib: u64,
    idle_rss_kib: u64,
    /// Seconds of CPU per component during the burst, and the burst's wall time.
    cpu: Vec<(&'static str, f64)>,
    wall: f64,
    /// Chunked events processed by both relays (each saw its set complete).
    loops_existing: u64,
    resends: u32,
    /// Staged chunks still in S3 at the end (shared mode cleans up after each set).
    staged_left: usize,
}

async fn throughput(relays: usize, server: S3Server, count: u64) -> Measured {
    // Mosquitto queues at most 1000 messages per session by default and drops the
    // rest (the agents would resend them after their timeout): a burst of 2000
    // events must not measure that timeout.
    let broker = Mosquitto::builder()
        .extra_config("max_queued_messages 100000")
        .start();
    let mut bench = Bench::start_with(broker, 100_000, server).await;
    let mut guards = vec![];
    let mut ports = vec![];
    for r in 0..relays {
        let share = (relays > 1).then_some("bench");
        let relay = bench.start_relay(&format!("relay-{r}"), share).await;
        guards.push(relay.process);
        ports.push(relay.port);
    }
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let relay_pids: Vec<u32> = guards.iter().map(|g| g.id()).collect();
    let idle_rss_kib = relay_pids.iter().map(|&p| rss_kib(p)).max().unwrap();
    let s3_pid = match &bench.object_store {
        Some(g) => Some(g.id()),
        None => find_pid(&["moto.server", &bench.moto.port().to_string()]),
    };
    let broker_pid = bench.broker.pid();
    let pids: Vec<(&'static str, Vec<u32>)> = vec![
        ("relays", relay_pids.clone()),
        ("S3 server", s3_pid.into_iter().collect()),
        ("broker", broker_pid.into_iter().collect()),
        ("bench (agent, review service)", vec![std::process::id()]),
    ];
    let cpu_now = || -> Vec<f64> {
        pids.iter()
            .map(|(_, p)| p.iter().map(|&p| cpu_seconds(p)).sum())
            .collect()
    };

    let burst = events(count, 20 + relays as u64);
    let before = cpu_now();
    let started = Instant::now();
    let d = drive(&agent, &burst, None, &relay_pids).await;
    let wall = started.elapsed().as_secs_f64();
    let after = cpu_now();
    // Latency without a queue: 200 events at half a relay's burst rate at most.
    let paced = events(200, 40 + relays as u64);
    let per_s = (d.rate() / 2.0).clamp(10.0, 50.0);
    let p = drive(
        &agent,
        &paced,
        Some(Duration::from_secs_f64(1.0 / per_s)),
        &relay_pids,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the last clean-ups
    let mut loops_existing = 0;
    for &port in &ports {
        loops_existing += metric(port, "cloud_relay_loops_existing_total")
            .await
            .unwrap_or(0);
    }
    let m = Measured {
        relays,
        server,
        events: burst.len(),
        chunked: burst.iter().filter(|e| e.image.len() > 200_000).count(),
        rate: d.rate(),
        latency_ms: p.latency_ms(&[50, 99]),
        paced_rate: per_s,
        peak_rss_kib: d.peak_rss_kib.max(p.peak_rss_kib),
        idle_rss_kib,
        cpu: pids
            .iter()
            .zip(after.iter().zip(&before))
            .map(|((name, _), (a, b))| (*name, a - b))
            .collect(),
        wall,
        loops_existing,
        resends: agent.resends.load(std::sync::atomic::Ordering::SeqCst),
        staged_left: bench.keys("staging/").await.len(),
    };
    for mut g in guards {
        g.kill();
    }
    // RELAY_BENCH_LOGS=DIR keeps the relays' logs.
    if let Ok(keep) = std::env::var("RELAY_BENCH_LOGS") {
        let to = std::path::Path::new(&keep).join(format!("{server:?}-{relays}"));
        std::fs::create_dir_all(&to).unwrap();
        if server == S3Server::Moto {
            std::fs::copy(bench.moto.log_path(), to.join("moto.log")).unwrap();
        }
        std::fs::copy(bench.broker.log_path(), to.join("mosquitto.log")).unwrap();
        for entry in std::fs::read_dir(bench.dir.path()).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    m
}

fn servers() -> Vec<S3Server> {
    match std::env::var("RELAY_BENCH_S3").as_deref() {
        Ok("moto") => vec![S3Server::Moto],
        Ok("both") => vec![S3Server::Local, S3Server::Moto],
        _ => vec![S3Server::Local],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn events_per_second_through_one_and_two_relays() {
    let count = std::env::var("RELAY_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut rows = vec![];
    let relays: Vec<usize> = match std::env::var("RELAY_BENCH_RELAYS").as_deref() {
        Ok("1") => vec![1],
        Ok("2") => vec![2],
        _ => vec![1, 2],
    };
    for server in servers() {
        for &relays in &relays {
            rows.push(throughput(relays, server, count).await);
        }
    }
    println!();
    println!("| relays | S3 server | events | chunked (300 KB) | events/s | p50 / p99 to receipt | relay RSS idle / peak |");
    println!("|---|---|---|---|---|---|---|");
    for m in &rows {
        let server = match m.server {
            S3Server::Local => "object-store",
            S3Server::Moto => "moto",
        };
        println!(
            "| {} | {server} | {} | {} | {:.0} | {:.0} / {:.0} ms at {:.0}/s | {:.0} / {:.0} MiB |",
            m.relays,
            m.events,
            m.chunked,
            m.rate,
            m.latency_ms[0],
            m.latency_ms[1],
            m.paced_rate,
            m.idle_rss_kib as f64 / 1024.0,
            m.peak_rss_kib as f64 / 1024.0
        );
    }
    println!();
    for m in &rows {
        let cpu: Vec<String> = m.cpu.iter().map(|(n, s)| format!("{n} {s:.1}")).collect();
        println!(
            "{} relay(s), {:?}: burst {:.1} s wall; CPU s: {}; sets processed twice {}, resends {}, staged chunks left {}",
            m.relays,
            m.server,
            m.wall,
            cpu.join(", "),
            m.loops_existing,
            m.resends,
            m.staged_left
        );
    }
}
