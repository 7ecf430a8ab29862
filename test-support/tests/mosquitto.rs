//! The Mosquitto helper against a real broker, driven by rumqttc the way the agent
//! and the relay drive it.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use test_support::{ClientCert, Mosquitto, TestCerts, IOT_CORE_MAX_PAYLOAD};

const DEADLINE: Duration = Duration::from_secs(20);

/// The settings the README recommends for talking to the IoT-Core-like broker.
fn tls_options(broker: &Mosquitto, client_id: &str, cert: Option<&ClientCert>) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, broker.host(), broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    // rumqttc accepts only 10 KiB packets by default; frames travel in 128 KiB chunks.
    options.set_max_packet_size(Some(IOT_CORE_MAX_PAYLOAD + 1024));
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: broker.certs().ca_pem.clone().into_bytes(),
        alpn: None,
        client_auth: cert.map(|c| {
            (
                c.cert_pem.clone().into_bytes(),
                c.key_pem.clone().into_bytes(),
            )
        }),
    }));
    options
}

fn plain_options(broker: &Mosquitto, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, broker.host(), broker.port());
    options.set_max_packet_size(Some(IOT_CORE_MAX_PAYLOAD + 1024));
    options
}

/// Polls the event loop until `pick` accepts an event; panics on timeout or a
/// connection error.
async fn next_matching<T>(
    eventloop: &mut EventLoop,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            match eventloop.poll().await {
                Ok(event) => {
                    if let Some(value) = pick(&event) {
                        return value;
                    }
                }
                Err(e) => panic!("connection error while waiting for {what}: {e}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

/// Polls until the first connection error (the broker refusing or dropping us).
async fn first_error(eventloop: &mut EventLoop, what: &str) -> ConnectionError {
    let wait = async {
        loop {
            if let Err(e) = eventloop.poll().await {
                return e;
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

async fn connect(options: MqttOptions) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    next_matching(&mut eventloop, "CONNACK", |event| {
        matches!(event, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await;
    (client, eventloop)
}

async fn subscribe(client: &AsyncClient, eventloop: &mut EventLoop, topic: &str) {
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    next_matching(eventloop, "SUBACK", |event| {
        matches!(event, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;
}

async fn next_publish(eventloop: &mut EventLoop) -> (String, Vec<u8>, bool) {
    next_matching(eventloop, "a PUBLISH", |event| match event {
        Event::Incoming(Packet::Publish(p)) => Some((
            String::from_utf8_lossy(&p.topic).into_owned(),
            p.payload.to_vec(),
            p.retain,
        )),
        _ => None,
    })
    .await
}

async fn next_puback_reason(eventloop: &mut EventLoop) -> PubAckReason {
    next_matching(eventloop, "a PUBACK", |event| match event {
        Event::Incoming(Packet::PubAck(ack)) => Some(ack.reason),
        _ => None,
    })
    .await
}

/// A PUBACK that says the broker took the message (with or without a subscriber).
fn assert_accepted(reason: PubAckReason) {
    assert!(
        matches!(
            reason,
            PubAckReason::Success | PubAckReason::NoMatchingSubscribers
        ),
        "PUBACK reason {reason:?}"
    );
}

#[tokio::test]
async fn tls_broker_accepts_a_client_certificate_from_the_test_ca_and_uses_its_cn_as_username() {
    let broker = Mosquitto::builder().start();
    let thing = broker.certs().client("thing-1");
    let (client, mut eventloop) = connect(tls_options(&broker, "thing-1", Some(&thing))).await;

    subscribe(&client, &mut eventloop, "edge/thing-1/events").await;
    client
        .publish("edge/thing-1/events", QoS::AtLeastOnce, false, "hello")
        .await
        .unwrap();
    let (topic, payload, _) = next_publish(&mut eventloop).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("edge/thing-1/events", &b"hello"[..])
    );
    broker.wait_for_log(DEADLINE, "u'thing-1'");
}

#[tokio::test]
async fn tls_broker_refuses_a_client_without_a_certificate() {
    let broker = Mosquitto::builder().start();
    let (_client, mut eventloop) = AsyncClient::new(tls_options(&broker, "anonymous", None), 16);
    let error = first_error(&mut eventloop, "the broker to refuse the TLS handshake").await;
    assert!(
        !matches!(error, ConnectionError::Timeout(_)),
        "expected a refusal, got {error:?}"
    );
}

#[tokio::test]
async fn tls_broker_refuses_a_certificate_from_another_ca() {
    let broker = Mosquitto::builder().start();
    let stranger_ca = TestCerts::generate(broker.dir().join("stranger-ca"));
    let stranger = stranger_ca.client("thing-1");
    let (_client, mut eventloop) =
        AsyncClient::new(tls_options(&broker, "thing-1", Some(&stranger)), 16);
    first_error(&mut eventloop, "the broker to refuse a foreign certificate").await;
}

#[tokio::test]
async fn payload_at_128_kib_is_delivered_and_one_byte_more_is_dropped_and_costs_the_connection() {
    let broker = Mosquitto::builder().start();
    let certs = broker.certs();
    let (sub, mut sub_loop) =
        connect(tls_options(&broker, "relay", Some(&certs.client("relay")))).await;
    subscribe(&sub, &mut sub_loop, "limits/#").await;
    let thing = certs.client("thing-1");
    let (publisher, mut pub_loop) = connect(tls_options(&broker, "thing-1", Some(&thing))).await;

    let at_limit = vec![b'a'; IOT_CORE_MAX_PAYLOAD as usize];
    publisher
        .publish("limits/at", QoS::AtLeastOnce, false, at_limit.clone())
        .await
        .unwrap();
    assert_accepted(next_puback_reason(&mut pub_loop).await);
    let (topic, payload, _) = next_publish(&mut sub_loop).await;
    assert_eq!(topic, "limits/at");
    assert_eq!(payload.len(), at_limit.len());

    // Mosquitto drops the payload and answers PUBACK with reason 0x95 (packet too
    // large), which is not a valid PUBACK reason: rumqttc 0.25 fails to decode it
    // and reports a connection error. Either way the publisher's connection is gone.
    let over_limit = vec![b'b'; IOT_CORE_MAX_PAYLOAD as usize + 1];
    publisher
        .publish("limits/over", QoS::AtLeastOnce, false, over_limit)
        .await
        .unwrap();
    first_error(&mut pub_loop, "the oversized publish to fail").await;
    broker.wait_for_log(DEADLINE, "Dropped too large PUBLISH from thing-1");

    let (publisher, mut pub_loop) = connect(tls_options(&broker, "thing-1", Some(&thing))).await;
    publisher
        .publish("limits/marker", QoS::AtLeastOnce, false, "after")
        .await
        .unwrap();
    assert_accepted(next_puback_reason(&mut pub_loop).await);
    // Delivery is in order: the marker arriving next proves the big one was dropped.
    let (topic, _, _) = next_publish(&mut sub_loop).await;
    assert_eq!(topic, "limits/marker");
}

#[tokio::test]
async fn packet_far_over_the_limit_disconnects_an_mqtt_3_client() {
    let broker = Mosquitto::builder().start();
    let thing = broker.certs().client("thing-1");
    // MQTT 3.1.1 clients are not told the broker's maximum packet size, so this one
    // sends the packet and the broker hangs up on it (as IoT Core does).
    let mut options = rumqttc::MqttOptions::new("thing-1", broker.host(), broker.port());
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: broker.certs().ca_pem.clone().into_bytes(),
        alpn: None,
        client_auth: Some((thing.cert_pem.into_bytes(), thing.key_pem.into_bytes())),
    }));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
    let connected = async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("connect: {e}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, connected)
        .await
        .expect("CONNACK");

    client
        .publish(
            "limits/huge",
            rumqttc::QoS::AtLeastOnce,
            false,
            vec![0u8; 256 * 1024],
        )
        .await
        .unwrap();
    let dropped = async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(ack))) => {
                    panic!("the broker acknowledged an oversized packet: {ack:?}")
                }
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    };
    tokio::time::timeout(DEADLINE, dropped)
        .await
        .expect("the broker to disconnect the client");
}

#[tokio::test]
async fn mqtt_3_publisher_over_the_limit_gets_a_plain_puback_and_nothing_is_delivered() {
    let broker = Mosquitto::builder().plain_tcp().start();
    let (sub, mut sub_loop) = connect(plain_options(&broker, "relay")).await;
    subscribe(&sub, &mut sub_loop, "limits/#").await;

    let mut options = rumqttc::MqttOptions::new("thing-1", broker.host(), broker.port());
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (publisher, mut pub_loop) = rumqttc::AsyncClient::new(options, 16);
    for (topic, size) in [
        ("limits/over", IOT_CORE_MAX_PAYLOAD as usize + 1),
        ("limits/marker", 1),
    ] {
        publisher
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, vec![b'c'; size])
            .await
            .unwrap();
        let acked = async {
            loop {
                match pub_loop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => break,
                    Ok(_) => {}
                    Err(e) => panic!("publish {topic}: {e}"),
                }
            }
        };
        tokio::time::timeout(DEADLINE, acked).await.expect("PUBACK");
    }
    let (topic, _, _) = next_publish(&mut sub_loop).await;
    assert_eq!(
        topic, "limits/marker",
        "the oversized payload was delivered"
    );
}

#[tokio::test]
async fn restart_without_persistence_forgets_retained_messages() {
    let mut broker = Mosquitto::builder().plain_tcp().start();
    let port = broker.port();
    {
        let (client, mut eventloop) = connect(plain_options(&broker, "writer")).await;
        client
            .publish("fleet/model", QoS::AtLeastOnce, true, "v1")
            .await
            .unwrap();
        assert_accepted(next_puback_reason(&mut eventloop).await);
    }
    assert_eq!(
        retained_on(&broker, "fleet/model").await.as_deref(),
        Some(&b"v1"[..])
    );

    broker.restart();

    assert_eq!(broker.port(), port, "restart keeps the port");
    assert_eq!(retained_on(&broker, "fleet/model").await, None);
}

#[tokio::test]
async fn restart_with_persistence_keeps_retained_messages() {
    let mut broker = Mosquitto::builder().plain_tcp().persistence(true).start();
    {
        let (client, mut eventloop) = connect(plain_options(&broker, "writer")).await;
        client
            .publish("fleet/model", QoS::AtLeastOnce, true, "v2")
            .await
            .unwrap();
        assert_accepted(next_puback_reason(&mut eventloop).await);
    }
    broker.restart();
    assert_eq!(
        retained_on(&broker, "fleet/model").await.as_deref(),
        Some(&b"v2"[..])
    );
}

/// The retained message on `topic`, if any: subscribes, then publishes a
/// non-retained marker; a retained message arrives before the marker.
async fn retained_on(broker: &Mosquitto, topic: &str) -> Option<Vec<u8>> {
    let (client, mut eventloop) = connect(plain_options(broker, "reader")).await;
    subscribe(&client, &mut eventloop, topic).await;
    client
        .publish(topic, QoS::AtLeastOnce, false, "marker")
        .await
        .unwrap();
    let (_, payload, retain) = next_publish(&mut eventloop).await;
    retain.then_some(payload)
}

#[tokio::test]
async fn kill_stops_the_broker_at_once_and_start_brings_it_back_on_the_same_port() {
    let mut broker = Mosquitto::builder().plain_tcp().start();
    assert!(broker.is_running());
    broker.kill();
    assert!(!broker.is_running());
    assert!(std::net::TcpStream::connect(broker.addr()).is_err());

    broker.start();
    assert!(broker.is_running());
    connect(plain_options(&broker, "back")).await;
}

#[test]
fn generated_config_is_like_iot_core() {
    let broker = Mosquitto::builder()
        .persistence(true)
        .persistent_client_expiration(Duration::from_secs(90 * 60))
        .extra_config("max_queued_messages 5000")
        .start();
    let config = std::fs::read_to_string(broker.config_path()).unwrap();
    for line in [
        "require_certificate true",
        "use_identity_as_username true",
        "allow_anonymous false",
        "message_size_limit 131072",
        "max_qos 1",
        "persistence true",
        "persistent_client_expiration 2h",
        "max_queued_messages 5000",
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "{line:?} missing from:\n{config}"
        );
    }
}

#[test]
fn a_broker_that_cannot_start_reports_its_log() {
    let error = Mosquitto::builder()
        .plain_tcp()
        .extra_config("no_such_option true")
        .try_start()
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("no_such_option"), "{message}");
}
