//! Faults found by attacking the running daemon as an operator and as a misbehaving
//! client would, each against the real `edge-agent run` and a real Mosquitto configured
//! like AWS IoT Core: nothing selected may be lost, and no single message may stop the
//! delivery of the others.

mod support;

use std::time::Duration;

use protocol::{RejectCode, Topics};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use support::{drop_samples, names, Agent, Answer, Receiver, DEVICE};
use test_support::{wait_until, Mosquitto};

const LONG: Duration = Duration::from_secs(60);

fn drained(receiver: &Receiver) -> bool {
    receiver
        .status()
        .is_some_and(|s| s.outbox.to_send == 0 && s.outbox.awaiting_receipt == 0)
}

fn connections(agent: &Agent) -> usize {
    agent.log().matches("mqtt: connected").count()
}

#[test]
fn a_device_id_change_moves_the_unsent_backlog_to_the_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::configure(dir.path(), &broker, "pi-old-name", "", "");
    broker.kill();
    agent.start();
    let expected = drop_samples(&agent, "a");
    wait_until(LONG, "frames stored while the broker is down", || {
        agent.inbox_is_empty() && agent.log().matches("selected for review").count() == 4
    });
    assert!(agent.stop());

    // The operator renames the device; the backlog still names the old one.
    let mut agent = Agent::configure(dir.path(), &broker, "pi-new-name", "", "");
    broker.start();
    agent.start();
    wait_until(LONG, "the whole backlog delivered", || {
        names(&receiver) == expected
    });
    for (meta, _) in receiver.received.lock().unwrap().events.values() {
        assert_eq!(meta.device_id.as_str(), "pi-new-name");
    }
    wait_until(LONG, "an empty outbox", || drained(&receiver));
    assert_eq!(receiver.received.lock().unwrap().rejected, 0);
    assert!(
        agent
            .log()
            .contains("made as device pi-old-name, now sent as pi-new-name"),
        "{}",
        agent.log()
    );
    assert!(agent.stop());
}

#[test]
fn messages_larger_than_the_broker_takes_are_rechunked_not_resent_forever() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start(); // 128 KiB payloads, like IoT Core
    let receiver = Receiver::start(&broker, "relay");
    // Not an IoT Core host name, so check-config lets it pass; the broker's CONNACK
    // Maximum Packet Size is what the agent must respect.
    let mut agent = Agent::configure(
        dir.path(),
        &broker,
        DEVICE,
        "max_message_bytes = 200000",
        "",
    );
    agent.start();
    let expected = drop_samples(&agent, "a");
    wait_until(LONG, "every selected frame, the large ones too", || {
        names(&receiver) == expected
    });
    wait_until(LONG, "an empty outbox", || drained(&receiver));
    let log = agent.log();
    assert_eq!(
        log.matches("the broker takes smaller packets than mqtt.max_message_bytes")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(connections(&agent), 1, "never disconnected: {log}");
    assert!(agent.stop());
}

/// Publishes `payload` retained on `topic` as client `name`, and waits for the PUBACK.
fn publish_retained(broker: &Mosquitto, name: &str, topic: String, payload: Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cert = broker.certs().client(name);
    let mut options = MqttOptions::new(name, broker.host(), broker.port());
    options
        .set_max_packet_size(16 << 20, 16 << 20)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: broker.certs().ca_pem.clone().into_bytes(),
            alpn: None,
            client_auth: Some((cert.cert_pem.into_bytes(), cert.key_pem.into_bytes())),
        }));
    runtime.block_on(async move {
        let (client, mut eventloop) = AsyncClient::new(options, 8);
        client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let polled = tokio::time::timeout_at(deadline, eventloop.poll())
                .await
                .expect("the PUBACK of the retained message");
            if let Ok(Event::Incoming(Packet::PubAck(_))) = polled {
                return;
            }
            polled.unwrap();
        }
    });
}

#[test]
fn an_oversized_retained_message_on_the_receipts_topic_does_not_stop_delivery() {
    let dir = tempfile::tempdir().unwrap();
    // A broker without IoT Core's size limit: anyone allowed to may retain 1 MiB.
    let broker = Mosquitto::builder().max_payload(8 << 20).start();
    let receipts = Topics::default().receipts(&protocol::DeviceId::new(DEVICE).unwrap());
    publish_retained(&broker, "intruder", receipts, vec![b'x'; 1 << 20]);
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    agent.start();
    let expected = drop_samples(&agent, "a");
    wait_until(LONG, "every selected frame", || {
        names(&receiver) == expected
    });
    wait_until(LONG, "every receipt taken: an empty outbox", || {
        drained(&receiver)
    });
    assert_eq!(connections(&agent), 1, "{}", agent.log());
    assert!(agent.stop());
}

#[test]
fn a_rejected_event_is_kept_aside_and_counted_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    *receiver.answer.lock().unwrap() = Answer::Reject(RejectCode::Conflict);
    let mut agent = Agent::new(dir.path(), &broker, "");
    agent.start();
    let expected = drop_samples(&agent, "a");
    wait_until(LONG, "every selected event set aside", || {
        receiver
            .status()
            .is_some_and(|s| s.outbox.set_aside == expected.len() as u64)
    });
    let status = receiver.status().unwrap();
    assert_eq!(
        (status.outbox.to_send, status.outbox.awaiting_receipt),
        (0, 0)
    );
    let log = agent.log();
    assert_eq!(log.matches("event set aside").count(), 4, "{log}");
    assert!(log.contains("code=\"conflict\""), "{log}");
    assert!(agent.stop());

    // Nothing was lost: the operator fixes the cause and puts them back in line.
    let requeue = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["outbox", "requeue", "--all", "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    assert!(requeue.status.success(), "{requeue:?}");
    *receiver.answer.lock().unwrap() = Answer::Relay;
    agent.start();
    wait_until(LONG, "the requeued events delivered", || {
        names(&receiver) == expected
    });
    wait_until(LONG, "an empty outbox", || {
        receiver.status().is_some_and(|s| {
            s.outbox.to_send == 0 && s.outbox.awaiting_receipt == 0 && s.outbox.set_aside == 0
        })
    });
    assert!(agent.stop());
}

#[test]
fn events_the_broker_refuses_are_set_aside_and_status_keeps_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    // The device may publish its status and read its receipts, not publish events
    // (an IoT Core policy that forgot the events topic).
    std::fs::write(
        &acl,
        format!(
            "user {DEVICE}\ntopic write edge-a2i/{DEVICE}/status\n\
             topic read edge-a2i/{DEVICE}/receipts\n\nuser relay\ntopic readwrite #\n"
        ),
    )
    .unwrap();
    let broker = Mosquitto::builder()
        .extra_config(format!("acl_file {}", acl.display()))
        .start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    agent.start();
    let expected = drop_samples(&agent, "a");
    wait_until(LONG, "every refused event set aside", || {
        receiver
            .status()
            .is_some_and(|s| s.outbox.set_aside == expected.len() as u64)
    });
    let log = agent.log();
    assert!(log.contains("refused_by_broker"), "{log}");
    assert!(log.contains("NotAuthorized"), "{log}");
    assert_eq!(connections(&agent), 1, "{log}");
    assert_eq!(receiver.event_count(), 0);
    assert!(agent.stop());
}
