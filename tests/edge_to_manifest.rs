//! Frames in, manifest rows out, with every part real: the `edge-agent` daemon
//! classifies a folder of frames with the shipped model and sends every one for review
//! over a Mosquitto configured like AWS IoT Core (mutual TLS, 128 KiB messages, so the
//! larger frames travel as chunks); `cloud-relay run` stores them through the S3 API
//! and opens human loops on the review service; a reviewer answers each loop on the
//! reviewer page; `cloud-relay manifest export`, the operator's command, prints the
//! augmented manifest. Midway the agent is SIGKILLed (some events sent, not all) and
//! restarted, and so is the relay (some events stored, not all). At the end every
//! frame is in the manifest exactly once, with the label its reviewer gave, as one
//! image object and one human loop, and the agent's outbox is empty: nothing lost,
//! nothing doubled.
//!
//! The binaries are the workspace's own (`cargo build --workspace` first; `cargo test
//! --workspace` builds them). The S3 server is `local-aws object-store` over the
//! directory the review service writes `output.json` into, as in local mode: the review
//! service process writes to a directory, so an S3 server of its own (moto) would
//! never see the reviewers' answers.

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use protocol::manifest::ManifestRow;
use support::*;
use test_support::{wait_for, wait_until, Mosquitto};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_reaches_the_manifest_exactly_once_across_sigkills_of_both_daemons() {
    let started = Instant::now();
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

    // The servers: a broker like IoT Core, S3, the review service; the flow definition
    // made by `cloud-relay setup`, as an operator would.
    let broker = Mosquitto::builder().start();
    let (_object_store, s3_url) = start_object_store(&objects, &store_log);
    let (_review_service, review_addr) =
        start_review_service(&d.join("review-state"), &objects, &review_log);
    let relay_toml = relay_config(d, &broker, &s3_url, &format!("http://{review_addr}"));
    let setup = command("cloud-relay")
        .args(["setup", "--wait", "30s", "--config"])
        .arg(&relay_toml)
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "cloud-relay setup: {}{}",
        String::from_utf8_lossy(&setup.stdout),
        String::from_utf8_lossy(&setup.stderr)
    );

    // The daemons, and who watches them.
    let relay_args = ["run", "--config", relay_toml.to_str().unwrap()];
    let mut relay = Daemon::new("cloud-relay", &relay_args, relay_log);
    relay.start("relay running");
    let agent_toml = agent_config(d, &broker, &inbox);
    let agent_args = ["run", "--config", agent_toml.to_str().unwrap()];
    let mut agent = Daemon::new("edge-agent", &agent_args, agent_log);
    agent.start("mqtt: connected");
    let statuses = watch_status(&broker);
    let mut reviewer = Reviewer::new(review_addr);
    let mut frames = Vec::new();

    // The agent dies while sending batch 0, killed once the first of its events has a
    // human loop. Batch 1 lands while it is down; it finds both at its restart.
    frames.extend(drop_batch(&inbox, 0));
    wait_until(DEADLINE, "a first human loop", || reviewer.loops() >= 1);
    agent.kill();
    let at_agent_kill = reviewer.loops();
    frames.extend(drop_batch(&inbox, 1));
    agent.start("mqtt: connected");

    // Some answers go in, so the relay is also collecting results when it dies, killed
    // once a loop newer than the answered ones exists. Batch 3 lands while it is down.
    reviewer.answer_all();
    let before = reviewer.loops();
    frames.extend(drop_batch(&inbox, 2));
    wait_until(DEADLINE, "a human loop after the answers", || {
        reviewer.loops() > before
    });
    relay.kill();
    let at_relay_kill = reviewer.loops();
    frames.extend(drop_batch(&inbox, 3));
    relay.start("relay running");
    assert!(
        (1..FRAMES).contains(&at_agent_kill) && (1..FRAMES).contains(&at_relay_kill),
        "kills midway: {at_agent_kill} and {at_relay_kill} loops of {FRAMES} existed"
    );

    // The reviewer answers everything that comes; the operator exports the manifest.
    wait_until(DEADLINE, "every frame answered by the reviewer", || {
        reviewer.answer_all();
        reviewer.answered.len() >= FRAMES
    });
    let rows = wait_for(DEADLINE, "a manifest row for every frame", || {
        let rows = export_manifest(&relay_toml);
        (rows.len() >= FRAMES).then_some(rows)
    });

    // The agent's outbox drains: a status sent after the last row says so.
    let seen = statuses.lock().unwrap().0;
    wait_until(DEADLINE, "the agent's outbox to drain", || {
        let s = statuses.lock().unwrap();
        s.0 > seen + 1
            && s.1
                .as_ref()
                .is_some_and(|st| st.outbox.to_send == 0 && st.outbox.awaiting_receipt == 0)
    });
    let outbox = statuses.lock().unwrap().1.clone().unwrap().outbox;
    assert_eq!(
        (outbox.set_aside, outbox.dropped, outbox.lost),
        (0, 0, 0),
        "{outbox:?}"
    );

    // Each row is one frame: row -> event id -> the frame the event was made from.
    let s3 = local_s3_client(&s3_url);
    let labels = labels();
    let mut sources = Vec::new();
    let mut row_ids = BTreeSet::new();
    for line in &rows {
        let row = ManifestRow::parse(line, "label").unwrap();
        let prefix = format!("s3://{BUCKET}/events/{DEVICE}/");
        assert!(row.source_ref.starts_with(&prefix), "{line}");
        let file = row.source_ref.rsplit('/').next().unwrap();
        let event_id = file.split('.').next().unwrap().to_owned();
        assert_eq!(
            Some(&row.metadata.class_name),
            reviewer.answered.get(&event_id),
            "the row carries its reviewer's label: {line}"
        );
        assert_eq!(labels[row.class_index as usize], row.metadata.class_name);
        sources.push(event_source(&s3, &event_id).await);
        assert!(row_ids.insert(event_id), "two rows for one event: {line}");
    }
    sources.sort();
    frames.sort();
    assert_eq!(sources, frames, "every frame exactly once in the manifest");

    // Behind the rows: one image object and one human loop per frame, and the inbox
    // worked through.
    let images: Vec<String> = keys(&s3, "events/")
        .await
        .into_iter()
        .filter(|k| !k.ends_with(".json"))
        .collect();
    assert_eq!(images.len(), FRAMES, "one image per frame: {images:#?}");
    assert_eq!(reviewer.loops(), FRAMES, "one human loop per frame");
    wait_until(DEADLINE, "the inbox to empty", || {
        std::fs::read_dir(&inbox).unwrap().next().is_none()
    });
    eprintln!(
        "{FRAMES} frames, agent killed at {at_agent_kill} loops, relay at {at_relay_kill}: \
         each exactly once in the manifest after {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
