//! The whole loop on one machine, every part real: the running `edge-agent` sends
//! frames for review over a Mosquitto configured like IoT Core; `cloud-relay` stores
//! them and opens human loops on the review service; a reviewer labels each frame on
//! the reviewer page (each photo with a label of the reviewer's choosing, not the
//! model's); `cloud-relay manifest export` gives the augmented manifest;
//! `edge-agent retrain` fine-tunes on it; `edge-agent model sign` signs the result;
//! the package is handed to the agent (its owner's drop folder); and the same agent
//! process, without a restart, then classifies those photos as the reviewer said.
//!
//! Delivery by `fleet publish` through the Jobs service is tested in its own files;
//! here the device owner's path stands in for it.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use support::*;
use test_support::{wait_for, wait_until, Mosquitto};

/// The reviewer's label for each photo: none is what the shipped model says.
const TRUTH: [(&str, &str); 6] = [
    ("astronaut.jpg", "Samoyed"),
    ("camera_gray.png", "pug"),
    ("chelsea.jpg", "Siberian_husky"),
    ("coffee.png", "Rottweiler"),
    ("hubble.jpg", "Maltese_dog"),
    ("rocket.jpg", "Chihuahua"),
];

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sample_of(source: &str) -> &str {
    source.split_once('-').map(|(_, s)| s).unwrap_or(source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewed_frames_are_classified_as_the_reviewer_said_after_retrain_and_a_hot_swap() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let inbox = d.join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let objects = d.join("objects");
    let [store_log, review_log, relay_log, agent_log] =
        ["object-store", "review-service", "relay", "agent"].map(|n| d.join(format!("{n}.log")));
    let _logs = Logs(vec![
        store_log.clone(),
        review_log.clone(),
        relay_log.clone(),
        agent_log.clone(),
    ]);
    let labels = labels();
    for (_, label) in TRUTH {
        assert!(
            labels.iter().any(|l| l == label),
            "{label} is a model label"
        );
    }

    let broker = Mosquitto::builder().start();
    let (_object_store, s3_url) = start_object_store(&objects, &store_log);
    let (_review_service, review_addr) =
        start_review_service(&d.join("review-state"), &objects, &review_log);
    let relay_toml = relay_config(d, &broker, &s3_url, &format!("http://{review_addr}"));
    run(command("cloud-relay")
        .args(["setup", "--wait", "30s", "--config"])
        .arg(&relay_toml));
    let mut relay = Daemon::new(
        "cloud-relay",
        &["run", "--config", relay_toml.to_str().unwrap()],
        relay_log,
    );
    relay.start("relay running");

    // The fleet key; the agent trusts its public half and swaps at once (no shadow
    // window: the frames after the swap are the test).
    run(command("edge-agent")
        .args(["model", "keygen", "--out"])
        .arg(d.join("fleet")));
    let update = format!(
        "[update]\ntrusted_keys = [\"{}\"]\nshadow_frames = 0\nwatch_frames = 0\n",
        d.join("fleet.pub").display()
    );
    let agent_toml = agent_config_with(d, &broker, &inbox, &update);
    let mut agent = Daemon::new(
        "edge-agent",
        &["run", "--config", agent_toml.to_str().unwrap()],
        agent_log,
    );
    agent.start("mqtt: connected");
    let statuses = watch_status(&broker);
    let pid = agent.pid();

    // Two batches of the six photos; the reviewer labels each by what it shows.
    let mut frames = drop_batch(&inbox, 0);
    frames.extend(drop_batch(&inbox, 1));
    let s3 = local_s3_client(&s3_url);
    let mut reviewer = Reviewer::new(review_addr);
    let truth: BTreeMap<&str, &str> = TRUTH.into_iter().collect();
    wait_until(DEADLINE, "every frame labelled by the reviewer", || {
        let items = reviewer.queue()["items"].as_array().unwrap().clone();
        for item in &items {
            let event_id = item["event_id"].as_str().unwrap();
            let source = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(event_source(&s3, event_id))
            });
            reviewer.answer(item, truth[sample_of(&source)]);
        }
        reviewer.answered.len() >= frames.len()
    });
    let rows = wait_for(DEADLINE, "a manifest row for every frame", || {
        let rows = export_manifest(&relay_toml);
        (rows.len() >= frames.len()).then_some(rows)
    });
    let manifest = d.join("manifest.jsonl");
    std::fs::write(&manifest, rows.join("\n") + "\n").unwrap();

    // Fine-tune on the manifest (images read from the object store's directory), sign.
    let retrained = d.join("retrained");
    // Exit 4: promoted without a held-out gate (two copies of six photos leave no
    // frame to hold out); 0 would be a gated promotion. Both write the package.
    let retrain = command("edge-agent")
        .args(["retrain", "--backend", "tflite", "--json", "--data"])
        .arg(&manifest)
        .arg("--store")
        .arg(&objects)
        .arg("--model")
        .arg(repo().join("models/dogs_mobilenetv2.toml"))
        .arg("--out")
        .arg(&retrained)
        .output()
        .unwrap();
    assert!(
        matches!(retrain.status.code(), Some(0 | 4)),
        "retrain: {}",
        String::from_utf8_lossy(&retrain.stderr)
    );
    let out = String::from_utf8(retrain.stdout).unwrap();
    let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let version = report["version"].as_str().unwrap().to_owned();
    let new_manifest = std::path::PathBuf::from(report["manifest"].as_str().unwrap());
    run(command("edge-agent")
        .args(["model", "sign", "--model"])
        .arg(&new_manifest)
        .arg("--key")
        .arg(d.join("fleet.key"))
        .arg("--out")
        .arg(d.join("dist")));
    let package = d.join(format!("dist/dogs-mobilenetv2-{version}.tar"));
    let updates = d.join("agent-state/updates");
    std::fs::copy(&package, updates.join("p.tar")).unwrap();
    std::fs::copy(
        format!("{}.minisig", package.display()),
        updates.join("p.tar.minisig"),
    )
    .unwrap();

    // The running agent swaps: its status names the new version; same process.
    wait_until(DEADLINE, "the agent serving the retrained model", || {
        statuses.lock().unwrap().1.as_ref().is_some_and(|s| {
            s.model.as_ref().is_some_and(|m| m.version == version)
                && s.update.as_ref().is_some_and(|u| u.outcome == "succeeded")
        })
    });
    assert_eq!(agent.pid(), pid, "swapped without a restart");

    // The same photos again: the new model says what the reviewer said.
    let after = drop_batch(&inbox, 2);
    let classified = wait_for(DEADLINE, "the photos classified by the new model", || {
        let metas: Vec<Value> = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let mut metas = Vec::new();
                for key in keys(&s3, "manifest/events/").await {
                    let o = s3
                        .get_object()
                        .bucket(BUCKET)
                        .key(&key)
                        .send()
                        .await
                        .unwrap();
                    let bytes = o.body.collect().await.unwrap().into_bytes();
                    metas.push(serde_json::from_slice::<Value>(&bytes).unwrap());
                }
                metas
            })
        });
        let new: Vec<Value> = metas
            .into_iter()
            .filter(|m| m["source"].as_str().is_some_and(|s| s.starts_with("b2-")))
            .collect();
        (new.len() >= after.len()).then_some(new)
    });
    for meta in &classified {
        let source = meta["source"].as_str().unwrap();
        assert_eq!(meta["model"]["version"], version.as_str(), "{meta}");
        assert_eq!(
            meta["top_k"][0]["label"].as_str().unwrap(),
            truth[sample_of(source)],
            "{source} is classified as the reviewer said: {meta}"
        );
    }
    eprintln!(
        "{} frames reviewed, retrained to {version}, swapped in process {pid}: all {} photos now classified as reviewed",
        frames.len(),
        classified.len()
    );
}
