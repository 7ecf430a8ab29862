//! A human loop stopped through the A2I API (StopHumanLoop, from the real
//! `aws-sdk-sagemakera2iruntime` client) does not lose its frame: the relay
//! (`cloud-relay run`, with Mosquitto and moto's S3 server) logs one warning for it,
//! counts it, records it for `manifest export --not-reviewed`, and `loops restart`
//! starts a fresh loop for the same stored image whose answer becomes the event's one
//! manifest row.

mod relay_common;

use std::path::Path;
use std::time::Duration;

use aws_sdk_sagemakera2iruntime::config::{BehaviorVersion, Credentials, Region};
use cloud_relay::relay::loops::NotReviewed;
use relay_common::*;
use test_support::Mosquitto;

const WAIT: Duration = Duration::from_secs(30);

/// The SDK's A2I client against the bench's review service, with its key pair.
fn a2i(bench: &Bench) -> aws_sdk_sagemakera2iruntime::Client {
    let c = &bench.credentials;
    let conf = aws_sdk_sagemakera2iruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(daemon_support::sdk_http::client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            None,
            None,
            "test",
        ))
        .endpoint_url(&bench.review_url)
        .build();
    aws_sdk_sagemakera2iruntime::Client::from_conf(conf)
}

/// Runs `cloud-relay ARGS --config CONFIG`; returns (success, stdout, stderr).
fn cli(bench: &Bench, config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloud-relay"))
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(bench.credentials.env())
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

fn not_reviewed(bench: &Bench, config: &Path) -> Vec<NotReviewed> {
    let (ok, stdout, stderr) = cli(bench, config, &["manifest", "export", "--not-reviewed"]);
    assert!(ok, "{stderr}");
    stdout
        .lines()
        .map(|l| NotReviewed::parse(l.as_bytes()).unwrap())
        .collect()
}

/// The relay's warnings about `loop_name` ending without answers.
fn warnings(log: &Path, loop_name: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(loop_name) && l.contains("not reviewed"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_loop_is_reported_once_exported_and_restarted_into_one_manifest_row() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let mut relay = bench.start_relay("relay-1", None).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let evs = events(2, 51);
    agent
        .deliver(&evs, Duration::from_secs(20), Duration::from_secs(60))
        .await;
    let stopped = &evs[0];
    let name = format!("ea2i-{}", stopped.meta.event_id);

    a2i(&bench)
        .stop_human_loop()
        .human_loop_name(&name)
        .send()
        .await
        .unwrap();
    test_support::wait_until_async(WAIT, "the stopped loop counted", || async {
        metric(relay.port, "cloud_relay_loops_not_reviewed_total").await == Some(1)
    })
    .await;
    assert_eq!(warnings(&relay.log, &name), 1);
    let log = std::fs::read_to_string(&relay.log).unwrap();
    assert!(
        log.contains("results: no [results.queue]; listing"),
        "without a queue the relay says it lists: {log}"
    );
    let records = not_reviewed(&bench, &relay.config);
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    let image_uri = format!(
        "s3://{BUCKET}/events/{}/2026/11/25/{}.jpg",
        stopped.meta.device_id, stopped.meta.event_id
    );
    assert_eq!(r.source_ref.as_deref(), Some(image_uri.as_str()));
    assert_eq!(r.event_id, stopped.meta.event_id);
    assert_eq!(r.device_id.as_ref(), Some(&stopped.meta.device_id));
    assert_eq!(
        (r.human_loop_name.as_str(), r.status.as_str()),
        (name.as_str(), "Stopped")
    );

    // Restart: a new loop for the same image; a second restart starts nothing.
    let (ok, stdout, stderr) = cli(&bench, &relay.config, &["loops", "restart", "--all"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("{name}: restarted as {name}-r1")),
        "{stdout}"
    );
    let (ok, stdout, stderr) = cli(&bench, &relay.config, &["loops", "restart", &name]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("already restarted"), "{stdout}");
    assert_eq!(bench.loop_count(), 3, "two loops and one restart");

    // Reviewers answer the restarted loop and the other one: one row per event.
    assert_eq!(bench.answer_all("pug").await, 2);
    assert_rows_exactly(&bench, &evs, Duration::from_secs(60)).await;
    let row = String::from_utf8(
        bench
            .get(&format!("manifest/rows/{}.json", stopped.meta.event_id))
            .await,
    )
    .unwrap();
    assert!(row.contains(&image_uri), "{row}");
    assert!(
        not_reviewed(&bench, &relay.config).is_empty(),
        "reviewed now"
    );
    test_support::wait_until_async(WAIT, "both rows counted", || async {
        metric(relay.port, "cloud_relay_manifest_rows_written_total").await == Some(2)
    })
    .await;
    assert_eq!(warnings(&relay.log, &name), 1, "reported once");

    // Another relay lists the same loops and reports nothing again.
    relay.process.terminate(Duration::from_secs(20));
    let relay = bench.start_relay("relay-2", None).await;
    test_support::wait_until_async(WAIT, "a poll of relay-2", || async {
        metric(relay.port, "cloud_relay_manifest_rows_existing_total")
            .await
            .unwrap_or(0)
            >= 2
    })
    .await;
    assert_eq!(
        metric(relay.port, "cloud_relay_loops_not_reviewed_total").await,
        Some(0)
    );
    assert_eq!(warnings(&relay.log, &name), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_stopped_or_failed_loops_of_the_relay_are_restarted() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let relay = bench.start_relay("relay-1", None).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;
    let evs = events(1, 53);
    agent
        .deliver(&evs, Duration::from_secs(20), Duration::from_secs(60))
        .await;
    let name = format!("ea2i-{}", evs[0].meta.event_id);
    let (ok, _, stderr) = cli(&bench, &relay.config, &["loops", "restart", &name]);
    assert!(!ok && stderr.contains("InProgress"), "{stderr}");
    let (ok, _, stderr) = cli(
        &bench,
        &relay.config,
        &["loops", "restart", "someone-elses-loop"],
    );
    assert!(!ok && stderr.contains("not a human loop name"), "{stderr}");
    assert_eq!(bench.loop_count(), 1);
}
