//! `edge-agent eval --review N` with a running agent: the labelled frames the model
//! got wrong go to human review through the agent's own event path (outbox, MQTT to a
//! Mosquitto configured like IoT Core, a receiver playing the relay), with the reason
//! `requested`, even when the policy alone would never send them.

mod support;

use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::Duration;

use protocol::ReviewReason;
use support::{samples, Agent, Receiver};
use test_support::{wait_until, Mosquitto};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn eval_review_sends_the_models_mistakes_through_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    agent.start();

    // Two frames the model gets wrong with a confidence the policy (0.35) would never
    // send, and one it gets right.
    let set = dir.path().join("validation");
    for (label, photo) in [
        ("cat", "chelsea.jpg"),
        ("Samoyed", "astronaut.jpg"),
        ("Yorkshire_terrier", "hubble.jpg"),
    ] {
        std::fs::create_dir_all(set.join(label)).unwrap();
        // The cat under a Latin-1 name: it must travel under its name, escaped.
        let name = match photo {
            "chelsea.jpg" => std::ffi::OsStr::from_bytes(b"caf\xe9-chelsea.jpg"),
            other => std::ffi::OsStr::new(other),
        };
        std::fs::copy(samples().join(photo), set.join(label).join(name)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .env_remove("EDGE_AGENT_LITERT_LIB")
        .args(["eval", "--json", "--review", "2", "--config"])
        .arg(&agent.config)
        .arg("--data")
        .arg(&set)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eval: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        eval["review_requested"].as_array().unwrap().len(),
        2,
        "{eval}"
    );

    wait_until(LONG, "2 events at the receiver", || {
        receiver.event_count() >= 2
    });
    let received = receiver.received.lock().unwrap();
    let mut sources: Vec<String> = Vec::new();
    for (meta, _) in received.events.values() {
        assert_eq!(meta.reasons, vec![ReviewReason::Requested], "{meta:?}");
        sources.push(meta.source.clone().unwrap());
    }
    drop(received);
    let mut photos: Vec<&str> = sources
        .iter()
        .map(|s| {
            assert!(s.starts_with("eval-"), "{s}");
            s.rsplit('-').next().unwrap()
        })
        .collect();
    photos.sort();
    assert_eq!(
        photos,
        ["astronaut.jpg", "chelsea.jpg"],
        "the two mistakes: {sources:?}"
    );
    assert!(
        sources.iter().any(|s| s.ends_with("-caf\\xe9-chelsea.jpg")),
        "{sources:?}"
    );
    let requests = dir.path().join("state/review-requests");
    wait_until(LONG, "the review-requests folder emptied", || {
        std::fs::read_dir(&requests).unwrap().next().is_none()
    });
    assert!(agent.stop());
}
