//! The relay end to end on loopback: Mosquitto (TLS, client certificates, IoT Core
//! limits), moto's S3 server, the review service through the real A2I runtime client,
//! and `cloud-relay run` as a process.

mod relay_common;

use std::time::Duration;

use protocol::{Message, WholeEvent};
use relay_common::*;
use test_support::{free_port, Mosquitto};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_events_become_two_hundred_images_loops_receipts_and_manifest_rows() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let RunningRelay {
        process: mut relay,
        port,
        config,
        log,
    } = bench.start_relay("relay-1", None).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;

    let events = events(200, 1);
    assert!(
        events.iter().filter(|e| e.image.len() > 200_000).count() >= 20,
        "several are chunked"
    );
    agent
        .deliver(&events, Duration::from_secs(20), Duration::from_secs(120))
        .await;
    assert_eq!(agent.receipted(), 200);
    assert_stored_exactly(&bench, &events).await;

    assert_eq!(bench.answer_all("pug").await, 200);
    assert_rows_exactly(&bench, &events, Duration::from_secs(60)).await;
    test_support::wait_until_async(
        Duration::from_secs(30),
        "200 review results on the devices' topics",
        || async { agent.reviews.lock().unwrap().len() == 200 },
    )
    .await;
    assert_eq!(
        metric(port, "cloud_relay_manifest_rows_written_total").await,
        Some(200)
    );
    assert_eq!(
        metric(port, "cloud_relay_events_rejected_total").await,
        Some(0)
    );

    // The export: one JSON-lines file, filtered by label and time.
    let out = bench.dir.path().join("manifest.jsonl");
    let export = |args: Vec<String>| {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_cloud-relay"))
            .args(["manifest", "export", "--config"])
            .arg(&config)
            .arg("--output")
            .arg(&out)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(&out).unwrap()
    };
    let all = export(vec![]);
    assert_eq!(all.lines().count(), 200);
    for line in all.lines() {
        protocol::manifest::ManifestRow::parse(line, "label").unwrap();
    }
    assert_eq!(
        export(vec!["--label".into(), "beagle".into()])
            .lines()
            .count(),
        0
    );
    assert_eq!(
        export(vec!["--label".into(), "pug".into()]).lines().count(),
        200
    );
    assert_eq!(
        export(vec!["--to".into(), "2001-01-01T00:00:00Z".into()])
            .lines()
            .count(),
        0
    );

    let status = relay.terminate(Duration::from_secs(20));
    assert!(
        status.success(),
        "graceful stop: {status:?}\n{}",
        test_support::log_tail(&log, 20)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_truncated_and_forged_events_are_rejected_counted_and_never_stored() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let RunningRelay {
        process: mut relay,
        port,
        ..
    } = bench.start_relay("relay-1", None).await;
    let agent = Agent::connect(&bench.broker, "agent-sim").await;

    let mut bad = events(4, 7);
    // The body of one chunk is altered after the digest was taken.
    // A forged checksum on a whole event and on a chunked one (sizes right, digest not).
    let forged_whole = {
        let e = &mut bad[0];
        e.meta.image.sha256 = "00".repeat(32);
        Message::Event(WholeEvent {
            meta: e.meta.clone(),
            image: e.image.clone(),
        })
        .encode()
        .unwrap()
    };
    agent.publish_raw("pi-0", forged_whole.clone()).await;
    let chunked = &bad[3];
    assert!(chunked.image.len() > 200_000);
    let topic_len = "edge-a2i/pi-3/events".len();
    let chunks = protocol::encode_event(
        &chunked.meta,
        &chunked.image,
        topic_len,
        &protocol::Limits::default(),
    )
    .unwrap();
    let tampered = protocol::encode_event(
        &chunked.meta,
        &chunked.image,
        topic_len,
        &protocol::Limits::default(),
    )
    .unwrap()
    .into_iter()
    .enumerate()
    .map(|(i, mut c)| {
        if i == 0 {
            let n = c.len();
            c[n - 10] ^= 0xff;
        }
        c
    })
    .collect::<Vec<_>>();
    for c in &tampered {
        agent.publish_raw("pi-3", c.clone()).await;
    }
    // Malformed, truncated, unknown version, and another device's event.
    agent
        .publish_raw("pi-1", b"not an envelope at all".to_vec())
        .await;
    let good = Message::Event(WholeEvent {
        meta: bad[1].meta.clone(),
        image: bad[1].image.clone(),
    })
    .encode()
    .unwrap();
    agent
        .publish_raw("pi-1", good[..good.len() / 2].to_vec())
        .await;
    let mut v9 = good.clone();
    v9[4] = 9;
    agent.publish_raw("pi-1", v9).await;
    agent.publish_raw("pi-2", good.clone()).await;
    assert_eq!(chunks.len(), tampered.len());

    // A good event after them: once it is receipted, the bad ones were handled.
    let fine = events(1, 8);
    agent
        .deliver(&fine, Duration::from_secs(20), Duration::from_secs(60))
        .await;
    test_support::wait_until_async(Duration::from_secs(20), "6 rejections counted", || async {
        metric(port, "cloud_relay_events_rejected_total").await == Some(6)
    })
    .await;
    for (reason, n) in [
        ("checksum_mismatch", 2),
        ("malformed", 1),
        ("invalid_chunk_or_size", 1),
        ("unsupported_version", 1),
        ("device_mismatch", 1),
        ("truncated", 0),
    ] {
        let got = metric(
            port,
            &format!("cloud_relay_rejected_total{{reason=\"{reason}\"}}"),
        )
        .await
        .unwrap_or(0);
        assert_eq!(got, n, "{reason}");
    }
    let rejected = agent.rejected.lock().unwrap().clone();
    assert!(
        rejected.contains(&bad[0].meta.event_id),
        "forged whole event: rejected receipt"
    );
    assert!(
        rejected.contains(&bad[3].meta.event_id),
        "forged chunked event: rejected receipt"
    );
    assert_stored_exactly(&bench, &fine).await;
    assert!(bench.keys("staging/").await.is_empty());
    relay.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_checks_name_a_missing_bucket_a_broker_that_is_down_and_bad_certificates() {
    let bench = Bench::start(Mosquitto::builder().start(), 10_000).await;
    let config = bench.relay_config("relay-1", None, free_port(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    let cases = [
        (
            text.replace("bucket = \"frames\"", "bucket = \"no-such-bucket\""),
            "bucket \"no-such-bucket\" does not exist",
        ),
        (
            text.replace(
                &format!("port = {}", bench.broker.port()),
                &format!("port = {}", free_port()),
            ),
            "is unreachable",
        ),
        (
            text.replace(
                &bench.broker.certs().ca_cert.display().to_string(),
                &bench
                    .broker
                    .certs()
                    .client("relay-1")
                    .cert
                    .display()
                    .to_string(),
            ),
            "TLS with broker",
        ),
        (
            text.replace(
                &bench.broker.certs().ca_cert.display().to_string(),
                "/nonexistent/ca.pem",
            ),
            "cannot read mqtt.tls.ca_file /nonexistent/ca.pem",
        ),
        (
            text.replace("flow-definition/dogs", "flow-definition/cats"),
            "flow definition",
        ),
    ];
    for (i, (text, expected)) in cases.into_iter().enumerate() {
        let path = bench.dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let log = bench.dir.path().join(format!("bad-{i}.log"));
        let mut relay = bench.spawn_relay(&path, &log);
        let status = relay
            .wait_timeout(Duration::from_secs(30))
            .expect("the relay exits");
        let output = std::fs::read_to_string(&log).unwrap();
        assert!(!status.success(), "case {i} must fail");
        assert!(
            output.contains(expected),
            "case {i}: expected {expected:?} in:\n{output}"
        );
    }
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_cloud-relay"))
        .args(["check-config", "--config"])
        .arg(&config)
        .status()
        .unwrap();
    assert!(status.success());
}
