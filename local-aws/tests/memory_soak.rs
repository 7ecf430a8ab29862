//! Soak tests: local mode's long-running services keep their memory flat however
//! much passes through them. Each runs the real `local-aws` binary, drives it as the
//! relay and the agent do (the AWS SDK's A2I client, the reviewer page's API, MQTT
//! clients), and reads its resident set size (`VmRSS` in `/proc/<pid>/status`) after a
//! warm-up and again at the end.
//!
//! Before these bounds, 40 loops with 3 MB inputs took the review service from 21 to
//! 207 MB, and the embedded broker kept every event it had routed (up to 1 GB per
//! topic filter). The bounds checked here are far below what the old code reached on
//! the same load, and far above allocator noise.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_sagemakera2iruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sagemakera2iruntime::types::HumanLoopInput;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use test_support::http::Request;
use test_support::{rss_kib, ChildGuard};

mod common;

const TOKEN: &str = "soak-test-reviewer-token-0123456789";

/// Starts `local-aws <args>` and returns it with the address on its first stdout line
/// (`listening on ...`).
fn start(args: &[&str], log: &Path) -> (ChildGuard, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_local-aws"));
    cmd.args(args)
        .env("RUST_LOG", "info,rumqttd=off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    let mut child = ChildGuard::new(cmd.spawn().unwrap());
    let out = child.child_mut().stdout.take().unwrap();
    let mut out = BufReader::new(out);
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    // Keep reading: a closed pipe would fail the service's next status line.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| {
            panic!(
                "first line {first:?}; log: {}",
                test_support::log_tail(log, 20)
            )
        })
        .trim_start_matches("http://")
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    (child, addr)
}

fn a2i(addr: &str, c: &local_aws::credentials::Credentials) -> aws_sdk_sagemakera2iruntime::Client {
    let conf = aws_sdk_sagemakera2iruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(daemon_support::sdk_http::client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            None,
            None,
            "soak",
        ))
        .endpoint_url(format!("http://{addr}"))
        .build();
    aws_sdk_sagemakera2iruntime::Client::from_conf(conf)
}

async fn sagemaker(
    addr: &str,
    c: &local_aws::credentials::Credentials,
    op: &str,
    body: Value,
) -> Value {
    let target = format!("SageMaker.{op}");
    let (status, bytes) = common::signed(
        &format!("http://{addr}"),
        "sagemaker",
        c,
        "POST",
        "/",
        &[
            ("x-amz-target", target.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
        ],
        body.to_string().into_bytes(),
    )
    .await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 200, "{op}: {v}");
    v
}

/// Starts one loop with an input of `pad` bytes and answers it on the reviewer page.
async fn one_loop(
    addr: &str,
    client: &aws_sdk_sagemakera2iruntime::Client,
    flow: &str,
    i: usize,
    pad: usize,
) {
    let name = format!("soak-{i}");
    let input = json!({
        "taskObject": format!("s3://frames/soak/{i}.jpg"),
        "labels": ["beagle", "pug"],
        "initialValue": "beagle",
        "padding": "x".repeat(pad),
    });
    client
        .start_human_loop()
        .human_loop_name(&name)
        .flow_definition_arn(flow)
        .human_loop_input(
            HumanLoopInput::builder()
                .input_content(input.to_string())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let r = Request::post(format!("http://{addr}/review/api/loops/{name}/answer"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&json!({"label": "pug", "reviewer": "soak"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_service_keeps_finished_loops_on_disk_not_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let output = tmp.path().join("objects");
    let log = tmp.path().join("review.log");
    let (mut child, addr) = start(
        &[
            "review-service",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().unwrap(),
            "--output-dir",
            output.to_str().unwrap(),
            "--review-token",
            TOKEN,
        ],
        &log,
    );
    let creds = common::state_credentials(&state);
    let ui = sagemaker(
        &addr,
        &creds,
        "CreateHumanTaskUi",
        json!({"HumanTaskUiName": "soak-ui", "UiTemplate": {"Content": "<p>{{ task.input.taskObject }}</p>"}}),
    )
    .await;
    let flow = sagemaker(
        &addr,
        &creds,
        "CreateFlowDefinition",
        json!({
            "FlowDefinitionName": "soak",
            "RoleArn": "arn:aws:iam::000000000000:role/a2i-local",
            "OutputConfig": {"S3OutputPath": "s3://review-bucket/a2i"},
            "HumanLoopConfig": {
                "WorkteamArn": "arn:aws:sagemaker:us-east-1:000000000000:workteam/private-crowd/local",
                "HumanTaskUiArn": ui["HumanTaskUiArn"],
                "TaskTitle": "t", "TaskDescription": "d", "TaskCount": 1,
            },
        }),
    )
    .await["FlowDefinitionArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = a2i(&addr, &creds);
    // 512 KiB inputs: 200 of them are 100 MiB, which the old service kept in RAM.
    let pad = 512 * 1024;
    for i in 0..30 {
        one_loop(&addr, &client, &flow, i, pad).await;
    }
    let warm = rss_kib(child.id());
    for i in 30..230 {
        one_loop(&addr, &client, &flow, i, pad).await;
    }
    let end = rss_kib(child.id());
    let grew_mib = end.saturating_sub(warm) as f64 / 1024.0;
    eprintln!(
        "review service RSS: {warm} KiB after 30 loops, {end} KiB after 230 (+{grew_mib:.1} MiB)"
    );
    assert!(
        grew_mib < 40.0,
        "the review service grew by {grew_mib:.1} MiB over 200 loops of 512 KiB inputs"
    );
    // Still all there: listed, described, and the last output holds its input.
    let listed = client
        .list_human_loops()
        .flow_definition_arn(&flow)
        .max_results(100)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.human_loop_summaries().len(), 100);
    let d = client
        .describe_human_loop()
        .human_loop_name("soak-229")
        .send()
        .await
        .unwrap();
    let uri = d.human_loop_output().unwrap().output_s3_uri().unwrap();
    let key = uri.strip_prefix("s3://").unwrap();
    let doc: Value = serde_json::from_slice(&std::fs::read(output.join(key)).unwrap()).unwrap();
    assert_eq!(doc["inputContent"]["padding"].as_str().unwrap().len(), pad);
    assert_eq!(
        doc["humanAnswers"][0]["answerContent"]["annotatedResult"]["label"],
        "pug"
    );
    child.terminate(Duration::from_secs(10));
}

/// A subscriber that takes every message on `filter` and counts them.
fn subscriber(
    port: u16,
    login: &local_aws::credentials::MqttLogin,
) -> tokio::sync::watch::Receiver<Option<usize>> {
    let mut o = MqttOptions::new("soak-relay", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    o.set_credentials(login.username.as_str(), login.password.as_str());
    let (client, mut ev) = AsyncClient::new(o, 64);
    let (tx, rx) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        client
            .subscribe("edge/+/events", QoS::AtLeastOnce)
            .await
            .unwrap();
        let mut n = 0;
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    n += 1;
                    let _ = tx.send(Some(n));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(Some(n));
                }
                Ok(_) => {}
                // The broker stopped (the end of the test); a broken connection
                // before that shows as a count that never arrives.
                Err(_) => return,
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_does_not_keep_what_it_has_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let creds_file = tmp.path().join("credentials");
    let log = tmp.path().join("broker.log");
    let (mut child, addr) = start(
        &[
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--no-v5",
            "--credentials",
            creds_file.to_str().unwrap(),
        ],
        &log,
    );
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let login = local_aws::credentials::LocalSecrets::load(&creds_file)
        .unwrap()
        .mqtt;
    let received = subscriber(port, &login);
    let mut subscribed = received.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        subscribed.wait_for(Option::is_some),
    )
    .await
    .expect("SUBACK within 10 s")
    .unwrap();

    let mut o = MqttOptions::new("soak-agent", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    o.set_credentials(login.username.as_str(), login.password.as_str());
    let (agent, mut ev) = AsyncClient::new(o, 64);
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    // 32 KiB events, about what a 160x160 JPEG frame with its metadata weighs.
    let event = vec![b'e'; 32 * 1024];
    let publish = |n: usize| {
        let (agent, event) = (agent.clone(), event.clone());
        async move {
            for _ in 0..n {
                agent
                    .publish(
                        "edge/soak-device/events",
                        QoS::AtLeastOnce,
                        false,
                        event.clone(),
                    )
                    .await
                    .unwrap();
            }
        }
    };
    let until = |rx: &tokio::sync::watch::Receiver<Option<usize>>, n: usize| {
        let mut rx = rx.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(120),
                rx.wait_for(|c| c.is_some_and(|c| c >= n)),
            )
            .await
            .unwrap_or_else(|_| panic!("subscriber got fewer than {n} events in 120 s"))
            .unwrap();
        }
    };
    publish(300).await;
    until(&received, 300).await;
    let warm = rss_kib(child.id());
    // In steps of 100, each delivered before the next: a relay that keeps up. (One
    // that falls more than the broker's bound behind loses what it skipped, and the
    // agent resends it: see local_aws::broker::SEGMENT_SIZE.)
    for step in 1..=60 {
        publish(100).await;
        until(&received, 300 + step * 100).await;
    }
    let end = rss_kib(child.id());
    let grew_mib = end.saturating_sub(warm) as f64 / 1024.0;
    eprintln!("broker RSS: {warm} KiB after 300 events, {end} KiB after 6300 (+{grew_mib:.1} MiB)");
    // 6000 x 32 KiB = 188 MiB went through.
    assert!(
        grew_mib < 40.0,
        "the broker grew by {grew_mib:.1} MiB while routing 6000 events of 32 KiB"
    );
    child.terminate(Duration::from_secs(10));
}
