//! The MQTT side of the daemon: publishes due outbox events (QoS 1), moves them to
//! "awaiting receipt" when the broker has acknowledged every message, removes them
//! when the relay's receipt arrives, and keeps a retained status (with an `offline`
//! last will). Reconnects with exponential backoff and jitter. The frame pipeline
//! never waits on any of this: it only writes to the outbox and pokes `wake`.
//!
//! Each connection gets a fresh client and clean session: the outbox, not the broker,
//! is the record of what is undelivered, so nothing is carried over (a receipt missed
//! while offline just means the event is sent again later, which the relay ignores).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{DeviceId, Receipt, Status, Topics};
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::{watch, Notify};

use super::tracker::{DeliveryTracker, Sent};
use super::{now_ms, Stats};
use crate::config::{MqttSection, TlsSection};
use crate::outbox::Outbox;

/// An event still unacknowledged after this long is left to the outbox's resend.
const PUBACK_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

pub struct MqttDriver {
    pub config: MqttSection,
    pub device: DeviceId,
    pub topics: Topics,
    pub outbox: Arc<Mutex<Outbox>>,
    pub wake: Arc<Notify>,
    pub stats: Arc<Stats>,
    /// Builds the current status (counters, outbox depths).
    pub status: Arc<dyn Fn() -> Status + Send + Sync>,
    pub status_interval: Duration,
}

/// Reads the PEM files named in `[mqtt.tls]` into rumqttc's TLS settings.
pub fn tls_configuration(tls: &TlsSection) -> Result<TlsConfiguration, MqttSetupError> {
    let read = |what, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| MqttSetupError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    Ok(TlsConfiguration::Simple {
        ca: read("mqtt.tls.ca", &tls.ca)?,
        alpn: tls.alpn_iot_core.then(|| vec![b"x-amzn-mqtt-ca".to_vec()]),
        client_auth: Some((
            read("mqtt.tls.cert", &tls.cert)?,
            read("mqtt.tls.key", &tls.key)?,
        )),
    })
}

impl MqttDriver {
    fn options(&self, tls: &Option<TlsConfiguration>) -> MqttOptions {
        let c = &self.config;
        let mut o = MqttOptions::new(self.device.as_str(), &c.host, c.port);
        o.set_keep_alive(c.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(256 * 1024, c.max_message_bytes)
            .set_inflight(100)
            .set_last_will(LastWill::new(
                self.topics.status(&self.device),
                Status::offline_will(self.device.clone()).to_json(),
                QoS::AtLeastOnce,
                true,
            ));
        if let Some(tls) = tls {
            o.set_transport(Transport::Tls(tls.clone()));
        }
        o
    }

    /// Runs until `shutdown` turns true; then publishes `offline` and disconnects.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), MqttSetupError> {
        let tls = match &self.config.tls {
            Some(t) => Some(tls_configuration(t)?),
            None => None,
        };
        let mut backoff = self.config.reconnect_min;
        let mut tracker = DeliveryTracker::new();
        loop {
            let (client, eventloop) = AsyncClient::new(self.options(&tls), 256);
            let connected = self
                .session(
                    &client,
                    eventloop,
                    &mut tracker,
                    &mut shutdown,
                    &mut backoff,
                )
                .await;
            tracker.reset();
            if *shutdown.borrow() {
                return Ok(());
            }
            if connected {
                backoff = self.config.reconnect_min;
            }
            // Full jitter: wait a random time up to the current backoff.
            let wait = backoff.mul_f64(0.5 + 0.5 * jitter());
            tracing::info!(retry_in_ms = wait.as_millis() as u64, "mqtt: reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            backoff = (backoff * 2).min(self.config.reconnect_max);
        }
    }

    /// One connection, from connect to error or shutdown. Returns whether it connected.
    async fn session(
        &self,
        client: &AsyncClient,
        mut eventloop: EventLoop,
        tracker: &mut DeliveryTracker,
        shutdown: &mut watch::Receiver<bool>,
        backoff: &mut Duration,
    ) -> bool {
        let receipts = self.topics.receipts(&self.device);
        let status_topic = self.topics.status(&self.device);
        let events_topic = self.topics.events(&self.device);
        let mut connected = false;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut status_tick = tokio::time::interval(self.status_interval);
        loop {
            tokio::select! {
                polled = eventloop.poll() => match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        *backoff = self.config.reconnect_min;
                        tracing::info!(host = %self.config.host, "mqtt: connected");
                        let _ = client.try_subscribe(receipts.clone(), QoS::AtLeastOnce);
                        self.publish_status(client, tracker, &status_topic);
                        self.fill(client, tracker, &events_topic).await;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == receipts => {
                        self.on_receipt(&p.payload).await;
                        self.fill(client, tracker, &events_topic).await;
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(event_id) = tracker.acked(ack.pkid) {
                            self.on_published(event_id).await;
                        }
                        self.fill(client, tracker, &events_topic).await;
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => tracker.outgoing(pkid),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "mqtt: connection lost or refused");
                        return connected;
                    }
                },
                _ = self.wake.notified(), if connected => self.fill(client, tracker, &events_topic).await,
                _ = tick.tick(), if connected => {
                    tracker.expire(now_ms(), PUBACK_TIMEOUT_MS);
                    self.fill(client, tracker, &events_topic).await;
                }
                _ = status_tick.tick(), if connected => self.publish_status(client, tracker, &status_topic),
                _ = shutdown.changed() => {
                    if connected {
                        self.say_goodbye(client, &mut eventloop, &status_topic).await;
                    }
                    return connected;
                }
            }
        }
    }

    fn publish_status(&self, client: &AsyncClient, tracker: &mut DeliveryTracker, topic: &str) {
        let status = (self.status)();
        if client
            .try_publish(topic, QoS::AtLeastOnce, true, status.to_json())
            .is_ok()
        {
            tracker.requested(Sent::Other);
        }
    }

    /// Publishes due events until `max_in_flight` events are unacknowledged.
    async fn fill(&self, client: &AsyncClient, tracker: &mut DeliveryTracker, topic: &str) {
        let room = self
            .config
            .max_in_flight
            .saturating_sub(tracker.events_in_progress());
        if room == 0 {
            return;
        }
        let outbox = self.outbox.clone();
        let limit = room + tracker.events_in_progress();
        let due = tokio::task::spawn_blocking(move || outbox.lock().unwrap().due(now_ms(), limit))
            .await
            .expect("outbox task");
        let due = match due {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot read due events");
                return;
            }
        };
        let now = now_ms();
        let fresh: Vec<_> = due
            .into_iter()
            .filter(|e| !tracker.is_in_progress(&e.event_id))
            .take(room)
            .collect();
        for entry in fresh {
            tracker.start_event(&entry.event_id, entry.payloads.len(), now);
            for (index, payload) in entry.payloads.into_iter().enumerate() {
                if client
                    .try_publish(topic, QoS::AtLeastOnce, false, payload)
                    .is_err()
                {
                    tracker.abandon_event(&entry.event_id);
                    return; // client queue full: the rest waits for the next round
                }
                tracker.requested(Sent::Event {
                    event_id: entry.event_id.clone(),
                    index,
                });
            }
            if entry.attempts == 0 {
                Stats::inc(&self.stats.sent);
            } else {
                Stats::inc(&self.stats.resent);
            }
        }
    }

    async fn on_published(&self, event_id: String) {
        let outbox = self.outbox.clone();
        let jitter = jitter();
        let result = tokio::task::spawn_blocking(move || {
            outbox
                .lock()
                .unwrap()
                .published(&event_id, now_ms(), jitter)
        })
        .await
        .expect("outbox task");
        if let Err(e) = result {
            tracing::error!(error = %e, "outbox: cannot record a PUBACK");
        }
    }

    async fn on_receipt(&self, payload: &[u8]) {
        let receipt = match Receipt::from_json(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "mqtt: ignoring a malformed receipt");
                return;
            }
        };
        if !receipt.is_stored() {
            tracing::warn!(event_id = %receipt.event_id, status = ?receipt.status, "relay rejected an event; dropping it");
            Stats::inc(&self.stats.rejected);
        }
        let id = receipt.event_id.to_string();
        let outbox = self.outbox.clone();
        let removed = tokio::task::spawn_blocking(move || outbox.lock().unwrap().receipt(&id))
            .await
            .expect("outbox task");
        match removed {
            Ok(true) => Stats::inc(&self.stats.receipted),
            Ok(false) => {} // a duplicate receipt
            Err(e) => tracing::error!(error = %e, "outbox: cannot record a receipt"),
        }
    }

    /// Retained `offline` status, then DISCONNECT, waiting briefly for both to go out.
    async fn say_goodbye(&self, client: &AsyncClient, eventloop: &mut EventLoop, topic: &str) {
        let mut status = (self.status)();
        status.state = protocol::status::AgentState::Offline;
        let _ = client.try_publish(topic, QoS::AtLeastOnce, true, status.to_json());
        let _ = client.try_disconnect();
        let deadline = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                polled = eventloop.poll() => match polled {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = &mut deadline => return,
            }
        }
    }
}

/// A uniform random number in [0, 1).
fn jitter() -> f64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}
