//! The daemon end to end: the real `edge-agent run`, a real Mosquitto configured like
//! AWS IoT Core (TLS with client certificates, 128 KiB messages, QoS <= 1), and a
//! receiver playing the relay. Frames are dropped into the agent's inbox folder; what
//! the policy selects must arrive, byte for byte, whatever happens in between.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use protocol::sha256_hex;
use support::{drop_frame, names, Agent, Receiver, SAMPLES};
use test_support::{wait_until, Mosquitto};

const LONG: Duration = Duration::from_secs(60);

/// Drops `copies` of every sample as `{prefix}{i}-{name}`; returns the names the
/// policy should select.
fn drop_frames(agent: &Agent, prefix: &str, copies: usize) -> BTreeSet<String> {
    let mut selected = BTreeSet::new();
    for i in 0..copies {
        for (sample, unsure) in SAMPLES {
            let name = format!("{prefix}{i}-{sample}");
            drop_frame(&agent.inbox, &name, sample);
            if unsure {
                selected.insert(name);
            }
        }
    }
    selected
}

fn outbox_is_empty(receiver: &Receiver, frames: u64) -> bool {
    receiver.status().is_some_and(|s| {
        s.counters.frames >= frames && s.outbox.to_send == 0 && s.outbox.awaiting_receipt == 0
    })
}

#[test]
fn selected_frames_arrive_once_byte_identical_and_the_outbox_drains() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    agent.start();
    let expected = drop_frames(&agent, "a", 4);
    assert_eq!(expected.len(), 16);

    wait_until(LONG, "16 events at the receiver", || {
        receiver.event_count() >= 16
    });
    wait_until(LONG, "an empty outbox in the status", || {
        outbox_is_empty(&receiver, 24)
    });
    assert_eq!(
        names(&receiver),
        expected,
        "exactly the selected frames, each once"
    );
    assert_eq!(receiver.event_count(), 16);
    for (meta, image) in receiver.received.lock().unwrap().events.values() {
        let source = meta.source.as_deref().unwrap();
        let sample = source.split_once('-').unwrap().1;
        let original = std::fs::read(support::samples().join(sample)).unwrap();
        assert_eq!(
            sha256_hex(image),
            sha256_hex(&original),
            "{source} arrives byte for byte"
        );
        assert_eq!(meta.image.sha256, sha256_hex(&original));
    }
    let hubble = receiver
        .received
        .lock()
        .unwrap()
        .events
        .values()
        .filter(|(m, _)| m.image.size > 131_072)
        .count();
    assert_eq!(
        hubble, 12,
        "hubble.jpg, coffee.png and camera_gray.png travel in chunks"
    );
    let status = receiver.status().unwrap();
    assert_eq!(status.counters.frames, 24);
    assert_eq!(status.counters.selected, 16);
    assert!(
        matches!(status.backend.as_deref(), Some("tflite" | "litert")),
        "the status names the backend: {:?}",
        status.backend
    );
    wait_until(LONG, "the inbox emptied (after = delete)", || {
        agent.inbox_is_empty()
    });
    assert!(agent.stop(), "SIGTERM: a clean exit");
    wait_until(LONG, "the retained offline status", || {
        receiver
            .status()
            .is_some_and(|s| s.state == protocol::status::AgentState::Offline)
    });
}

#[test]
fn a_broker_that_restarts_without_its_state_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    agent.start();
    let mut expected = drop_frames(&agent, "a", 2);
    wait_until(LONG, "the first events", || receiver.event_count() >= 2);
    broker.kill();
    expected.extend(drop_frames(&agent, "b", 2));
    wait_until(LONG, "frames classified while the broker is down", || {
        agent.inbox_is_empty()
    });
    broker.start(); // forgot everything it had acknowledged
    wait_until(LONG, "every selected frame after the restart", || {
        names(&receiver) == expected
    });
    wait_until(LONG, "an empty outbox", || outbox_is_empty(&receiver, 24));
    assert!(agent.stop());
}

#[test]
fn a_receiver_that_is_down_for_a_while_gets_everything_later() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let mut receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    agent.start();
    wait_until(LONG, "the agent online", || receiver.status().is_some());
    receiver.pause();
    let expected = drop_frames(&agent, "a", 2);
    wait_until(LONG, "frames classified", || agent.inbox_is_empty());
    // Published and acknowledged by the broker, but nobody took them: without the
    // receipts the agent must send them again.
    wait_until(LONG, "events published while the receiver is down", || {
        agent.log().matches("selected for review").count() >= expected.len()
    });
    receiver.resume(&broker);
    wait_until(LONG, "every selected frame", || {
        names(&receiver) == expected
    });
    wait_until(LONG, "an empty outbox", || outbox_is_empty(&receiver, 12));
    assert!(agent.stop());
}

#[test]
fn an_agent_killed_again_and_again_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    let expected = drop_frames(&agent, "a", 5);
    for round in 1..=3 {
        agent.start();
        let before = receiver.event_count();
        wait_until(LONG, "progress before the kill", || {
            receiver.event_count() > before || names(&receiver) == expected
        });
        agent.kill();
        eprintln!(
            "round {round}: killed with {} events received",
            receiver.event_count()
        );
    }
    agent.start();
    wait_until(LONG, "every selected frame", || {
        names(&receiver) == expected
    });
    wait_until(LONG, "an empty outbox", || {
        receiver
            .status()
            .is_some_and(|s| s.outbox.to_send == 0 && s.outbox.awaiting_receipt == 0)
            && agent.inbox_is_empty()
    });
    assert!(agent.stop());
    // A frame killed between its outbox write and its file's deletion is taken again
    // at start-up; its event id is derived from the frame, so it is the same event
    // (resent, perhaps), never a second one.
    assert_eq!(receiver.event_count(), expected.len());
}

#[test]
fn a_full_outbox_drops_the_oldest_counts_them_and_delivers_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    // hubble.jpg (265 KB) + coffee.png (449 KB) + two small ones: ~ 880 KB per copy.
    let mut agent = Agent::new(dir.path(), &broker, "max_bytes = 1200000");
    broker.kill();
    agent.start();
    let mut order = Vec::new();
    for i in 0..3 {
        for (sample, unsure) in SAMPLES {
            let name = format!("a{i}-{sample}");
            drop_frame(&agent.inbox, &name, sample);
            wait_until(LONG, "the frame handled", || agent.inbox_is_empty());
            if unsure {
                order.push(name);
            }
        }
    }
    assert!(
        agent
            .log()
            .contains("outbox full: dropped the oldest events"),
        "{}",
        agent.log()
    );
    broker.start();
    wait_until(LONG, "the outbox drained", || {
        receiver.status().is_some_and(|s| {
            s.outbox.to_send == 0 && s.outbox.awaiting_receipt == 0 && s.outbox.dropped > 0
        })
    });
    let got = names(&receiver);
    let dropped = receiver.status().unwrap().outbox.dropped as usize;
    assert_eq!(
        got.len() + dropped,
        order.len(),
        "every selected frame is delivered or counted as dropped"
    );
    let newest: BTreeSet<String> = order[dropped..].iter().cloned().collect();
    assert_eq!(got, newest, "the oldest were dropped, the newest delivered");
    assert!(agent.stop());
}

#[test]
fn a_corrupt_frame_is_logged_and_the_daemon_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    agent.start();
    let hubble = std::fs::read(support::samples().join("hubble.jpg")).unwrap();
    std::fs::write(agent.inbox.join(".cut.part"), &hubble[..hubble.len() / 2]).unwrap();
    std::fs::rename(agent.inbox.join(".cut.part"), agent.inbox.join("cut.jpg")).unwrap();
    std::fs::write(agent.inbox.join(".noise.part"), b"not an image at all").unwrap();
    std::fs::rename(
        agent.inbox.join(".noise.part"),
        agent.inbox.join("noise.png"),
    )
    .unwrap();
    let expected = drop_frames(&agent, "a", 1);
    wait_until(LONG, "the good frames delivered", || {
        names(&receiver) == expected
    });
    wait_until(LONG, "errors counted", || {
        receiver.status().is_some_and(|s| s.counters.errors >= 2)
    });
    let log = agent.log();
    assert!(
        log.contains("cut.jpg") && log.contains("truncated JPEG"),
        "{log}"
    );
    assert!(
        log.contains("noise.png") && log.contains("not an image"),
        "{log}"
    );
    assert!(agent.stop());
}
