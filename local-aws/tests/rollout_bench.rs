//! Rollout benchmark (`cargo test --workspace --test rollout_bench -- --ignored
//! --nocapture`; `ROLLOUT_DEVICES`, default 100): that many real `edge-agent run`
//! processes on local mode's embedded broker, its Jobs service and object store, a
//! package published to all of them with `cloud-relay fleet publish`, and the time
//! until every execution is SUCCEEDED (shadow and watch windows 0: the figure is
//! delivery, download, checks, load, self-test and switch). Prints a table.

use std::time::{Duration, Instant};

use common::{credentials_env, repo, run_bin, signed, signed_model};

use local_aws::broker::{BrokerConfig, EmbeddedBroker};
use local_aws::credentials::LocalSecrets;
use local_aws::jobs::{self, ApiIdentity, Jobs};
use local_aws::object_store::{self, ObjectStoreConfig};
use local_aws::sigv4::Verifier;
use serde_json::Value;
use test_support::{
    spawn_with_log, wait_until, wait_until_async, workspace_bin, ChildGuard, InProcessServer,
};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn a_rollout_to_many_local_devices() {
    let n: usize = std::env::var("ROLLOUT_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // Each agent takes two inotify instances (its inbox and review-requests folders);
    // the kernel's per-user limit (128 by default) is meant for one agent, not a fleet
    // on one machine. Say so at once rather than after the first agents fail.
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(usize::MAX);
    assert!(
        limit >= 2 * n + 16,
        "{n} agents need {} inotify instances, fs.inotify.max_user_instances is {limit}: \
         raise it for this run (sysctl -w fs.inotify.max_user_instances={})",
        2 * n + 16,
        (2 * n + 16).next_power_of_two()
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Local mode's parts, in process, with fresh credentials.
    let secrets = LocalSecrets::load_or_create(&d.join("credentials")).unwrap();
    let password_file = d.join("mqtt-password");
    std::fs::write(&password_file, &secrets.mqtt.password).unwrap();
    let verifier = Verifier::new(secrets.aws.clone(), "the bench's");
    let broker = EmbeddedBroker::start(BrokerConfig {
        listen_v4: "127.0.0.1:0".parse().unwrap(),
        listen_v5: Some("127.0.0.1:0".parse().unwrap()),
        login: secrets.mqtt.clone(),
        ..BrokerConfig::default()
    })
    .await
    .unwrap();
    let v5 = broker.v5_addr().unwrap();
    let jobs_state = Jobs::open(&d.join("jobs")).unwrap();
    let (j, v4, login) = (jobs_state.clone(), broker.v4_addr(), secrets.mqtt.clone());
    let _jobs_mqtt: InProcessServer<std::io::Error> =
        InProcessServer::spawn(move |sd| async move {
            jobs::run_mqtt(j, v4, login, sd).await;
            Ok(())
        });
    let jobs_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jobs_url = format!("http://{}", jobs_listener.local_addr().unwrap());
    let id = ApiIdentity {
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
    };
    let _jobs_http = InProcessServer::spawn(|sd| {
        jobs::serve(jobs_listener, jobs_state.clone(), id, verifier, sd)
    });
    let store_config = ObjectStoreConfig {
        root: d.join("objects"),
        listen: "127.0.0.1:0".parse().unwrap(),
        credentials: secrets.aws.clone(),
        buckets: vec!["models".into()],
    };
    let store = store_config.open().unwrap();
    let s3_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s3_url = format!("http://{}", s3_listener.local_addr().unwrap());
    let service = object_store::s3_service(store, &store_config.credentials);
    let _s3 = InProcessServer::spawn(|sd| object_store::serve(s3_listener, service, sd));

    // The fleet key, a package, and the devices.
    let fleet = d.join("fleet");
    run_bin(
        "edge-agent",
        &["model", "keygen", "--out", fleet.to_str().unwrap()],
        common::NO_ENV,
    );
    let package = signed_model(d, "1.0.1", &d.join("fleet.key"), &d.join("dist"), None);
    let devices: Vec<String> = (0..n).map(|i| format!("dev-{i:03}")).collect();
    let mut agents: Vec<(ChildGuard, std::path::PathBuf)> = Vec::new();
    for device in &devices {
        let home = d.join(device);
        std::fs::create_dir_all(home.join("inbox")).unwrap();
        let config = format!(
            r#"[device]
id = "{device}"
state_dir = "{state}"
status_interval = "1h"
[model]
manifest = "{manifest}"
backend = "tflite"
[mqtt]
host = "127.0.0.1"
port = {port}
username = "{username}"
password_file = "{password_file}"
[update]
trusted_keys = ["{key}"]
shadow_frames = 0
watch_frames = 0
[[source]]
kind = "folder"
path = "{inbox}"
"#,
            state = home.join("state").display(),
            manifest = repo().join("models/dogs_mobilenetv2.toml").display(),
            port = v5.port(),
            username = secrets.mqtt.username,
            password_file = password_file.display(),
            key = d.join("fleet.pub").display(),
            inbox = home.join("inbox").display(),
        );
        std::fs::write(home.join("agent.toml"), config).unwrap();
        let log = home.join("agent.log");
        let child = spawn_with_log(
            std::process::Command::new(workspace_bin("edge-agent"))
                .args(["run", "--config"])
                .arg(home.join("agent.toml"))
                .env("RUST_LOG", "info")
                .env_remove("EDGE_AGENT_LITERT_LIB"),
            &log,
        )
        .unwrap();
        agents.push((child, log));
    }
    let started = Instant::now();
    wait_until(Duration::from_secs(300), "every agent connected", || {
        agents.iter_mut().all(|(child, log)| {
            let text = std::fs::read_to_string(&*log).unwrap_or_default();
            // An agent that cannot start says why rather than timing out.
            assert!(
                child.is_running(),
                "an agent exited: {}",
                test_support::log_tail(log, 20)
            );
            text.contains("mqtt: connected")
        })
    });
    let connected = started.elapsed();

    let relay_toml = d.join("relay.toml");
    std::fs::write(
        &relay_toml,
        format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"fleet-admin\"\nusername = \"{}\"\npassword = \"{}\"\n\n[s3]\nbucket = \"models\"\nendpoint_url = \"{s3_url}\"\n\n[a2i]\nendpoint_url = \"{jobs_url}\"\n\n[model]\nlabels = []\n",
            v5.port(),
            secrets.mqtt.username,
            secrets.mqtt.password,
        ),
    )
    .unwrap();
    let list = devices.join(",");
    let published = Instant::now();
    run_bin(
        "cloud-relay",
        &[
            "fleet",
            "publish",
            package.to_str().unwrap(),
            "--config",
            relay_toml.to_str().unwrap(),
            "--jobs-endpoint-url",
            &jobs_url,
            "--devices",
            &list,
            "--job-id",
            "scale",
        ],
        &credentials_env(&secrets.aws),
    );
    let first = std::sync::Mutex::new(None);
    let (first_ref, jobs_url_ref, key_pair) = (&first, &jobs_url, &secrets.aws);
    wait_until_async(
        Duration::from_secs(600),
        "every execution SUCCEEDED",
        || async move {
            let (_, body) = signed(
                jobs_url_ref,
                "iot",
                key_pair,
                "GET",
                "/jobs/scale/things?maxResults=250",
                &[],
                Vec::new(),
            )
            .await;
            let v: Value = serde_json::from_slice(&body).unwrap();
            let statuses: Vec<&str> = v["executionSummaries"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e["jobExecutionSummary"]["status"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let bad: Vec<&&str> = statuses
                .iter()
                .filter(|s| matches!(**s, "FAILED" | "REJECTED" | "CANCELED"))
                .collect();
            assert!(bad.is_empty(), "executions ended badly: {v}");
            let done = statuses.iter().filter(|s| **s == "SUCCEEDED").count();
            let mut first = first_ref.lock().unwrap();
            if done > 0 && first.is_none() {
                *first = Some(published.elapsed());
            }
            done == n
        },
    )
    .await;
    let all = published.elapsed();
    for (_, log) in &agents {
        let text = std::fs::read_to_string(log).unwrap();
        assert_eq!(
            text.matches("model loaded").count(),
            1,
            "one start per agent"
        );
    }
    println!();
    println!("| rollout benchmark (local mode, 2 cores, dev profile) | value |");
    println!("|---|---|");
    println!("| devices (real edge-agent processes, tflite) | {n} |");
    println!(
        "| all connected after start (s) | {:.1} |",
        connected.as_secs_f64()
    );
    println!(
        "| fleet publish -> first SUCCEEDED (s) | {:.1} |",
        first.into_inner().unwrap().unwrap_or(all).as_secs_f64()
    );
    println!(
        "| fleet publish -> all {n} SUCCEEDED (s) | {:.1} |",
        all.as_secs_f64()
    );
    drop(agents);
}
