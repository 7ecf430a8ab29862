//! What collecting results costs (issue #22), measured, `#[ignore]`d like the relay's
//! throughput benchmark:
//! `cargo test -p cloud-relay --test results_bench -- --ignored --nocapture`.
//!
//! 1. API calls and relay CPU per completed loop with 10, 1,000 and 10,000 loops open,
//!    collecting from completion events (moto's SQS) and by listing (as before, with
//!    `poll_interval = 1s`, a thirtieth of the default, so a short window shows many
//!    polls). The open loops are started in the review service directly; 50 more are
//!    completed one every 200 ms while the relay runs; the window ends when their 50
//!    rows are in S3 and at least 10 s have passed. The relay's calls are counted by
//!    counting proxies in front of moto (S3, SQS) and the review service (A2I); its CPU
//!    from /proc. The test plays A2I + EventBridge: it puts each completed loop's
//!    event into the queue (not counted).
//! 2. One and two relays draining 2,000 completion events (loops completed first, the
//!    events put once every relay is up): time to the last row, rows written by each
//!    (exactly 2,000 in all), messages each deleted, CPU.
//!
//! `RESULTS_BENCH_OPEN=10,1000` picks the open-loop counts, `RESULTS_BENCH_DRAIN=N`
//! the events drained.

mod relay_common;
mod relay_queue;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use local_aws::review_service::store::StartRequest;
use protocol::a2i::{InputContent, NONE_OF_THESE};
use protocol::{DeviceId, EventId};
use relay_common::*;
use relay_queue::*;
use test_support::Mosquitto;

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

/// An HTTP proxy that counts requests by operation and forwards them unchanged
/// (the Host header too, so SigV4 signatures stay valid).
struct Proxy {
    url: String,
    counts: Counts,
}

fn operation(method: &http::Method, uri: &http::Uri, headers: &http::HeaderMap) -> String {
    if let Some(t) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return t
            .replace("AmazonSQS.", "SQS ")
            .replace("SageMaker.", "SageMaker ");
    }
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    if path.starts_with("/human-loops") {
        return match (method.as_str(), path == "/human-loops") {
            ("GET", true) => "A2I ListHumanLoops",
            ("GET", false) => "A2I DescribeHumanLoop",
            ("POST", _) => "A2I StartHumanLoop",
            _ => "A2I other",
        }
        .to_owned();
    }
    match method.as_str() {
        "HEAD" => "S3 HeadObject",
        "GET" if query.contains("list-type") => "S3 ListObjectsV2",
        "GET" => "S3 GetObject",
        "PUT" => "S3 PutObject",
        _ => "S3 other",
    }
    .to_owned()
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        use http_body_util::{BodyExt, Full};
        let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let counts: Counts = Arc::default();
        let (c, up) = (counts.clone(), upstream.trim_end_matches('/').to_owned());
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (client, counts, up) = (client.clone(), c.clone(), up.clone());
            async move {
                let (parts, body) = req.into_parts();
                let op = operation(&parts.method, &parts.uri, &parts.headers);
                *counts.lock().unwrap().entry(op).or_default() += 1;
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let mut b = http::Request::builder()
                    .method(parts.method)
                    .uri(format!("{up}{pq}"));
                for (k, v) in &parts.headers {
                    b = b.header(k, v);
                }
                let resp = client
                    .request(b.body(Full::new(bytes)).unwrap())
                    .await
                    .unwrap();
                let (parts, body) = resp.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Proxy { url, counts }
    }

    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap())
    }
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    let total = ticks(14).unwrap_or(0) + ticks(15).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    total as f64 / hz as f64
}

fn event_id(n: u64) -> EventId {
    EventId::parse(&format!("01936f0e-7c4a-7b1e-9f3a-{n:012x}")).unwrap()
}

/// Starts loops `range` in the review service directly; returns their names.
fn start_loops(bench: &Bench, range: std::ops::Range<u64>) -> Vec<String> {
    tokio::task::block_in_place(|| {
        range
            .map(|n| {
                let id = event_id(n);
                let mut labels: Vec<String> = LABELS.iter().map(|l| l.to_string()).collect();
                labels.push(NONE_OF_THESE.into());
                let input = InputContent {
                    task_object: format!("s3://{BUCKET}/events/pi-1/2026/11/25/{id}.jpg"),
                    initial_value: "pug".into(),
                    labels,
                    scores: vec![],
                    device_id: DeviceId::new("pi-1").unwrap(),
                    model_version: "1".into(),
                    event_id: id,
                    source: None,
                };
                let name = format!("ea2i-{id}");
                let req = StartRequest {
                    name: name.clone(),
                    input_content: input.to_json_string(),
                    content_classifiers: vec![],
                };
                bench.review.start_human_loop(&bench.flow_arn, req).unwrap();
                name
            })
            .collect()
    })
}

async fn complete(bench: &Bench, name: &str) {
    let now = protocol::timestamp::now_ms() as i64;
    let answer = local_aws::review_service::HumanAnswer::classification(
        "annotatedResult",
        "pug",
        "w1",
        now - 1000,
        now,
        None,
    );
    bench
        .review
        .complete_loop(name, vec![answer])
        .await
        .unwrap();
}

struct Cost {
    open: usize,
    mode: &'static str,
    calls: BTreeMap<String, u64>,
    cpu_s: f64,
    completed: u64,
    secs: f64,
}

const COMPLETING: u64 = 50;

async fn cost(open: u64, events: bool) -> Cost {
    let bench = Bench::start(Mosquitto::builder().start(), 30_000).await;
    start_loops(&bench, 0..open);
    let completing = start_loops(&bench, open..open + COMPLETING);
    let s3 = Proxy::start(&bench.s3_url).await;
    let a2i = Proxy::start(&bench.review_url).await;
    let q = if events {
        Some(Queues::create(&bench, "completions", 5).await)
    } else {
        None
    };
    let table = match &q {
        Some(q) => format!(
            "\n[results.queue]\nname = \"{}\"\nendpoint_url = \"{}\"\n",
            q.name, s3.url
        ),
        None => String::new(),
    };
    let port = test_support::free_port();
    let config = bench.relay_config("relay-1", None, port, &table);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            &format!("endpoint_url = \"{}\"", bench.s3_url),
            &format!("endpoint_url = \"{}\"", s3.url),
        )
        .replace(&bench.review_url, &a2i.url)
        .replace(
            "poll_interval = \"300ms\"",
            "poll_interval = \"1s\"\nsweep_interval = \"1h\"",
        );
    std::fs::write(&config, text).unwrap();
    let log = bench.dir.path().join("relay-1.log");
    let mut process = bench.spawn_relay_logging(&config, &log, Some("warn"));
    wait_relay_ready(port, &mut process, &log).await;
    // Warm-up: listing reads every loop once after a start.
    if !events {
        let pages = (open + COMPLETING).div_ceil(100);
        test_support::wait_until_async(Duration::from_secs(600), "the first listing", || async {
            metric(port, "cloud_relay_loop_listings_total").await >= Some(pages)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    s3.take();
    a2i.take();
    let pid = process.id();
    let cpu0 = cpu_seconds(pid);
    let started = Instant::now();
    for name in &completing {
        complete(&bench, name).await;
        if let Some(q) = &q {
            q.send_events(&bench, std::slice::from_ref(name)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    test_support::wait_until_async(Duration::from_secs(600), "the 50 rows", || async {
        bench.keys("manifest/rows/").await.len() as u64 >= COMPLETING
    })
    .await;
    let rest = Duration::from_secs(10).saturating_sub(started.elapsed());
    tokio::time::sleep(rest).await;
    let mut calls = s3.take();
    for (k, v) in a2i.take() {
        *calls.entry(k).or_default() += v;
    }
    let cpu_s = cpu_seconds(pid) - cpu0;
    // The bench's own ListObjectsV2 calls (counting rows) did not go through the proxy.
    process.kill();
    Cost {
        open: open as usize,
        mode: if events {
            "events"
        } else {
            "listing (1 s poll)"
        },
        calls,
        cpu_s,
        completed: COMPLETING,
        secs: started.elapsed().as_secs_f64(),
    }
}

struct Drain {
    relays: usize,
    secs: f64,
    written: Vec<u64>,
    deleted: Vec<u64>,
    cpu_s: Vec<f64>,
}

async fn drain(relays: usize, count: u64) -> Drain {
    let bench = Bench::start(Mosquitto::builder().start(), 30_000).await;
    let names = start_loops(&bench, 0..count);
    for name in &names {
        complete(&bench, name).await;
    }
    let q = Queues::create(&bench, "completions", 5).await;
    let mut running = Vec::new();
    for i in 0..relays {
        let table = q.config_extra("60s");
        let id = format!("relay-{}", i + 1);
        let port = test_support::free_port();
        let config = bench.relay_config(&id, None, port, &table);
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("[results]\n", "[results]\nsweep_interval = \"1h\"\n");
        std::fs::write(&config, text).unwrap();
        let log = bench.dir.path().join(format!("{id}.log"));
        let process = bench.spawn_relay_logging(&config, &log, Some("warn"));
        running.push((process, port, log));
    }
    for (process, port, log) in &mut running {
        wait_relay_ready(*port, process, log).await;
    }
    // Timed from here: every relay is up, and the events arrive (as fast as the test
    // can put them, ten per call).
    let started = Instant::now();
    q.send_events(&bench, &names).await;
    // The relays' counters, not a listing of the bucket: listing 2,000 keys every few
    // milliseconds is what moto would spend its time on.
    let ports: Vec<u16> = running.iter().map(|(_, port, _)| *port).collect();
    test_support::wait_until_async(Duration::from_secs(900), "every row", || async {
        let mut written = 0;
        for port in &ports {
            written += metric(*port, "cloud_relay_manifest_rows_written_total")
                .await
                .unwrap_or(0);
        }
        if written < count {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        written >= count
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    q.wait_drained(Duration::from_secs(120)).await;
    assert_eq!(bench.keys("manifest/rows/").await.len() as u64, count);
    let mut out = Drain {
        relays,
        secs,
        written: vec![],
        deleted: vec![],
        cpu_s: vec![],
    };
    for (process, port, _) in &mut running {
        let port = *port;
        out.written.push(
            metric(port, "cloud_relay_manifest_rows_written_total")
                .await
                .unwrap_or(0),
        );
        out.deleted.push(
            metric(port, "cloud_relay_completion_events_deleted_total")
                .await
                .unwrap_or(0),
        );
        out.cpu_s.push(cpu_seconds(process.id()));
        process.kill();
    }
    assert_eq!(
        out.written.iter().sum::<u64>(),
        count,
        "each row written once"
    );
    out
}

fn counts_from_env(var: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn results_cost_per_completed_loop_and_draining_with_one_and_two_relays() {
    let mut costs = Vec::new();
    for open in counts_from_env("RESULTS_BENCH_OPEN", &[10, 1000, 10_000]) {
        for events in [true, false] {
            let c = cost(open, events).await;
            eprintln!("measured: {} open, {}", c.open, c.mode);
            costs.push(c);
        }
    }
    println!();
    println!("Results collection: relay API calls and CPU per completed loop ({COMPLETING} loops completed over >= 10 s)");
    println!("| loops open | collecting by | API calls / completed loop | of which ListHumanLoops | relay CPU ms / completed loop | calls in the window |");
    println!("|---:|---|---:|---:|---:|---|");
    for c in &costs {
        let total: u64 = c.calls.values().sum();
        let lists = c.calls.get("A2I ListHumanLoops").copied().unwrap_or(0);
        let detail: Vec<String> = c.calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} ({:.0} s) |",
            c.open,
            c.mode,
            total as f64 / c.completed as f64,
            lists as f64 / c.completed as f64,
            c.cpu_s * 1000.0 / c.completed as f64,
            detail.join(", "),
            c.secs
        );
    }
    let count = counts_from_env("RESULTS_BENCH_DRAIN", &[2000])[0];
    let mut drains = Vec::new();
    for relays in [1, 2] {
        drains.push(drain(relays, count).await);
        eprintln!("measured: draining with {relays}");
    }
    println!();
    println!("Draining {count} completion events (moto SQS + S3, debug build)");
    println!("| relays | time s | events/s | rows written (each relay) | messages deleted (each relay) | relay CPU s (each) |");
    println!("|---:|---:|---:|---|---|---|");
    for d in &drains {
        println!(
            "| {} | {:.1} | {:.0} | {:?} | {:?} | {:?} |",
            d.relays,
            d.secs,
            count as f64 / d.secs,
            d.written,
            d.deleted,
            d.cpu_s
                .iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
        );
    }
}
