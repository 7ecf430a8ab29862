//! The embedded MQTT broker with real `rumqttc` clients on loopback: QoS 1 publish and
//! subscribe over MQTT 3.1.1 and MQTT 5, IoT Core's size limit, a clean stop, and
//! only clients with the broker's login get in.

use std::sync::OnceLock;
use std::time::Duration;

use local_aws::broker::{BrokerConfig, EmbeddedBroker};
use local_aws::credentials::MqttLogin;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::time::timeout;

/// This run's broker login (a fresh random one, as local mode makes).
fn login() -> &'static MqttLogin {
    static LOGIN: OnceLock<MqttLogin> = OnceLock::new();
    LOGIN.get_or_init(local_aws::credentials::generate_login)
}

fn free_ports() -> BrokerConfig {
    BrokerConfig {
        listen_v4: "127.0.0.1:0".parse().unwrap(),
        listen_v5: Some("127.0.0.1:0".parse().unwrap()),
        login: login().clone(),
        ..BrokerConfig::default()
    }
}

fn client_as(
    id: &str,
    port: u16,
    login: Option<(&str, &str)>,
) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    if let Some((user, password)) = login {
        o.set_credentials(user, password);
    }
    AsyncClient::new(o, 16)
}

fn client(id: &str, port: u16) -> (AsyncClient, rumqttc::EventLoop) {
    let l = login();
    client_as(id, port, Some((&l.username, &l.password)))
}

/// An MQTT 5 client's options with the broker's login.
fn options_v5(id: &str, port: u16) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_credentials(login().username.as_str(), login().password.as_str());
    o
}

/// Polls the event loop until `pick` returns something, within 10 s.
async fn until<T>(
    ev: &mut rumqttc::EventLoop,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Result<T, String> {
    timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(e) => {
                    if let Some(t) = pick(&e) {
                        return Ok(t);
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no such event within 10 s".to_owned())?
}

#[tokio::test]
async fn qos1_messages_reach_a_subscriber_over_mqtt_3_1_1() {
    let broker = EmbeddedBroker::start(free_ports()).await.unwrap();
    assert_ne!(broker.port(), 0);
    let (sub, mut sub_ev) = client("relay-1", broker.port());
    until(&mut sub_ev, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await
    .unwrap();
    sub.subscribe("edge-a2i/+/events", QoS::AtLeastOnce)
        .await
        .unwrap();
    until(&mut sub_ev, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await
    .unwrap();

    let (publ, mut pub_ev) = client("pi-kitchen", broker.port());
    let payload = vec![7u8; 100 * 1024];
    publ.publish(
        "edge-a2i/pi-kitchen/events",
        QoS::AtLeastOnce,
        false,
        payload.clone(),
    )
    .await
    .unwrap();
    until(&mut pub_ev, |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
    })
    .await
    .expect("the broker acknowledges the QoS 1 publish");

    let got = until(&mut sub_ev, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(got.topic, "edge-a2i/pi-kitchen/events");
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert_eq!(got.payload.as_ref(), payload.as_slice());
    broker.stop().await;
}

#[tokio::test]
async fn qos1_messages_reach_a_subscriber_over_mqtt_5() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::{AsyncClient as C5, Event as E5};

    let broker = EmbeddedBroker::start(free_ports()).await.unwrap();
    let port = broker.v5_addr().unwrap().port();
    let opts = |id: &str| options_v5(id, port);
    let (sub, mut sub_ev) = C5::new(opts("relay-v5"), 16);
    let (publ, mut pub_ev) = C5::new(opts("pi-v5"), 16);
    sub.subscribe("edge-a2i/+/events", Q5::AtLeastOnce)
        .await
        .unwrap();
    timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(E5::Incoming(P5::SubAck(_))) = sub_ev.poll().await {
                break;
            }
        }
    })
    .await
    .expect("SUBACK within 10 s");
    publ.publish(
        "edge-a2i/pi-v5/events",
        Q5::AtLeastOnce,
        false,
        b"frame".to_vec(),
    )
    .await
    .unwrap();
    let publisher = tokio::spawn(async move {
        loop {
            match pub_ev.poll().await {
                Ok(E5::Incoming(P5::PubAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    });
    let got = timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(E5::Incoming(P5::Publish(p))) = sub_ev.poll().await {
                return p;
            }
        }
    })
    .await
    .expect("the message arrives within 10 s");
    assert_eq!(got.topic.as_ref(), b"edge-a2i/pi-v5/events");
    assert_eq!(got.payload.as_ref(), b"frame");
    assert!(timeout(Duration::from_secs(10), publisher)
        .await
        .unwrap()
        .unwrap());
    broker.stop().await;
}

#[tokio::test]
async fn packets_over_iot_cores_size_limit_are_refused() {
    let broker = EmbeddedBroker::start(free_ports()).await.unwrap();
    let (publ, mut ev) = client("too-big", broker.port());
    until(&mut ev, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await
    .unwrap();
    publ.publish(
        "edge-a2i/x/events",
        QoS::AtLeastOnce,
        false,
        vec![0u8; 200 * 1024],
    )
    .await
    .unwrap();
    let outcome = until(&mut ev, |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
    })
    .await;
    assert!(
        outcome.is_err(),
        "a 200 KiB publish must not be acknowledged"
    );
    broker.stop().await;
}

#[tokio::test]
async fn stopping_closes_the_listener_and_disconnects_clients() {
    let broker = EmbeddedBroker::start(free_ports()).await.unwrap();
    let addr = broker.v4_addr();
    let (_c, mut ev) = client("watcher", addr.port());
    until(&mut ev, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await
    .unwrap();
    timeout(Duration::from_secs(10), broker.stop())
        .await
        .expect("stops within 10 s");
    let err = until(&mut ev, |_| None::<()>).await.unwrap_err();
    assert!(
        !err.contains("within 10 s"),
        "the client sees the disconnect: {err}"
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Stock rumqttd refuses `$`-filters (disconnecting the client) and never routes
/// `$`-topics; the embedded broker routes IoT's reserved `$aws/...` namespace, `+`
/// wildcards included, across its MQTT 3.1.1 and MQTT 5 listeners.
#[tokio::test]
async fn reserved_aws_topics_are_routed_with_wildcards_across_protocol_versions() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::{AsyncClient as C5, Event as E5};

    let broker = EmbeddedBroker::start(free_ports()).await.unwrap();
    // The service side, MQTT 3.1.1, subscribed with a wildcard over every thing.
    let (service, mut service_ev) = client("jobs-service", broker.port());
    service
        .subscribe("$aws/things/+/jobs/start-next", QoS::AtLeastOnce)
        .await
        .unwrap();
    until(&mut service_ev, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await
    .expect("the $aws filter is accepted, the connection kept");

    // The device side, MQTT 5, like edge-agent.
    let o = options_v5("pi-7", broker.v5_addr().unwrap().port());
    let (device, mut device_ev) = C5::new(o, 16);
    device
        .subscribe("$aws/things/pi-7/jobs/notify-next", Q5::AtLeastOnce)
        .await
        .unwrap();
    timeout(Duration::from_secs(10), async {
        loop {
            match device_ev.poll().await {
                Ok(E5::Incoming(P5::SubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("device connection failed: {e}"),
            }
        }
    })
    .await
    .expect("SUBACK within 10 s");
    // The device's event loop runs on its own from here on; its messages come back
    // over a channel.
    let (got_tx, mut got_rx) = tokio::sync::mpsc::channel(4);
    let device_loop = tokio::spawn(async move {
        while let Ok(e) = device_ev.poll().await {
            if let E5::Incoming(P5::Publish(p)) = e {
                let _ = got_tx.send(p).await;
            }
        }
    });
    device
        .publish(
            "$aws/things/pi-7/jobs/start-next",
            Q5::AtLeastOnce,
            false,
            b"{}".to_vec(),
        )
        .await
        .unwrap();

    // The service gets it under its reserved name, and answers.
    let got = until(&mut service_ev, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(got.topic, "$aws/things/pi-7/jobs/start-next");
    assert_eq!(got.payload.as_ref(), b"{}");
    service
        .publish(
            "$aws/things/pi-7/jobs/notify-next",
            QoS::AtLeastOnce,
            false,
            b"{\"timestamp\":1}".to_vec(),
        )
        .await
        .unwrap();
    let service_loop = tokio::spawn(async move { while service_ev.poll().await.is_ok() {} });
    let note = timeout(Duration::from_secs(10), got_rx.recv())
        .await
        .expect("notify-next within 10 s")
        .expect("the device connection stays up");
    assert_eq!(note.topic.as_ref(), b"$aws/things/pi-7/jobs/notify-next");
    service_loop.abort();
    device_loop.abort();
    broker.stop().await;
}

#[tokio::test]
async fn clients_without_the_login_are_refused_on_both_listeners() {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::{AsyncClient as C5, Event as E5};

    let broker = EmbeddedBroker::start(free_ports()).await.unwrap();
    let wrong = (login().username.as_str(), "not-the-password");
    for (who, creds) in [("anonymous", None), ("wrong password", Some(wrong))] {
        let (_c, mut ev) = client_as("intruder", broker.port(), creds);
        let got = until(&mut ev, |e| {
            matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
        })
        .await;
        assert!(got.is_err(), "MQTT 3.1.1, {who}: connected");
    }
    // MQTT 5, no login: the connection ends before any CONNACK.
    let mut o =
        rumqttc::v5::MqttOptions::new("intruder-5", "127.0.0.1", broker.v5_addr().unwrap().port());
    o.set_keep_alive(Duration::from_secs(5));
    let (_c, mut ev) = C5::new(o, 16);
    let outcome = timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(E5::Incoming(P5::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .expect("the broker answers within 10 s");
    assert!(outcome.is_err(), "MQTT 5 without a login connected");
    // The login gets in.
    let (_c, mut ev) = client("relay", broker.port());
    until(&mut ev, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await
    .expect("the client with the login connects");
    broker.stop().await;
}
