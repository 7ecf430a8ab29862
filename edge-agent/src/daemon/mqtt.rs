//! The MQTT side of the daemon: publishes due outbox events (QoS 1), moves them to
//! "awaiting receipt" when the broker has acknowledged every message, removes them
//! when the relay's receipt says `stored`, and keeps a retained status (with an
//! `offline` last will). Reconnects with exponential backoff and jitter. The frame
//! pipeline never waits on any of this: it only writes to the outbox and pokes `wake`.
//!
//! MQTT 5 (AWS IoT Core and Mosquitto speak it), for three things MQTT 3.1.1 cannot say:
//! - the broker's Maximum Packet Size in CONNACK (spec 3.2.2.3.6): events whose
//!   messages would exceed it are re-chunked before they go out ([`super::prepare`]);
//!   sending one would get the connection closed, again at every reconnect;
//! - our own Maximum Packet Size in CONNECT (3.1.2.11.4): the broker discards larger
//!   messages for us instead of sending them, so no incoming message, whatever its size,
//!   can break the connection; receipts are subscribed without retained messages
//!   (Retain Handling 2, 3.8.3.1), and a receipt that does not parse is ignored;
//! - PUBACK reason codes (3.4.2.1): a message the broker refuses (not authorised,
//!   invalid payload, ...) sets its event aside instead of being resent forever;
//! - DISCONNECT reason codes (3.14.2.1): 0x8E Session taken over means another client
//!   connected with our client id, which is the device id: two devices configured with
//!   the same id take the session from each other in turns, and the log says so.
//!
//! No event can block the others: an event that cannot be sent, is refused, or is in
//! flight every time the connection drops ([`STRIKES_TO_SET_ASIDE`] times in a row) is
//! set aside in the outbox, kept on disk and counted, and the rest keep flowing. A
//! `rejected` receipt sets the event aside too (DESIGN.md: a rejection never destroys a
//! frame). Timeouts run on the monotonic clock, so a stepped wall clock changes nothing.
//!
//! The task beats its [`Heartbeat`] from every wait (connected or not), so a handler
//! that never returns stops the watchdog pings, and reconnecting never does.
//!
//! Each connection gets a fresh client and clean start: the outbox, not the broker, is
//! the record of what is undelivered, so nothing is carried over (a receipt missed
//! while offline just means the event is sent again later, which the relay ignores).

use protocol::backoff::{jitter_sample, Backoff, Retries};
use protocol::mqtt_tls::{TlsFileError, TlsFiles, IOT_CORE_ALPN};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::envelope::Limits;
use protocol::{DeviceId, Receipt, ReceiptStatus, Status, Topics};
use rumqttc::v5::mqttbytes::v5::{
    Filter, LastWill, Packet, PubAck, PubAckReason, RetainForwardRule,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use tokio::sync::{watch, Notify};

use super::jobs::JobsClient;
use super::mqtt_login::MqttLogin;
use super::prepare::{prepare, Prepared};
use super::supervise::Heartbeat;
use super::tracker::{DeliveryTracker, Sent};
use super::{now_ms, Stats};
use crate::config::{MqttSection, TlsSection};
use crate::outbox::{Entry, Outbox};

/// An event still unacknowledged after this long is left to the outbox's resend.
const PUBACK_TIMEOUT_MS: u64 = 30_000;
/// Largest packet this client takes (told to the broker in CONNECT). Receipts and
/// status are a few hundred bytes; the broker discards anything larger for us.
pub const MAX_INCOMING_PACKET_BYTES: u32 = 64 * 1024;
/// Connections in a row that dropped while the same event was the oldest in flight
/// before that event is set aside as the likely cause.
pub const STRIKES_TO_SET_ASIDE: u32 = 5;

/// Set-aside code: the broker answered the event's PUBLISH with an error reason code.
pub const CODE_REFUSED_BY_BROKER: &str = "refused_by_broker";
/// Set-aside code: the connection dropped each time the event was being published.
pub const CODE_CONNECTION_DROPS: &str = "connection_drops";

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
    /// The task's line to the supervisor.
    pub heartbeat: Heartbeat,
    /// AWS IoT Jobs for model updates (absent: the thing name is not a valid one).
    pub jobs: Option<JobsClient>,
    /// `[mqtt] username` and the password from `password_file`, read at start.
    pub login: Option<MqttLogin>,
}

/// The next report of the update worker; pending forever without Jobs.
async fn next_report(jobs: &mut Option<JobsClient>) -> Option<crate::update::worker::Report> {
    match jobs {
        Some(j) => j.reports.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads the PEM files named in `[mqtt.tls]` into rumqttc's TLS settings.
pub fn tls_configuration(tls: &TlsSection) -> Result<TlsConfiguration, TlsFileError> {
    let alpn = [IOT_CORE_ALPN.to_owned()];
    TlsFiles {
        ca: &tls.ca_file,
        cert: &tls.cert_file,
        key: &tls.key_file,
        alpn: if tls.alpn_iot_core { &alpn } else { &[] },
    }
    .load("mqtt.tls")
}

/// What one connection learnt and keeps: the largest PUBLISH the broker takes.
struct Session {
    /// `mqtt.max_message_bytes`, lowered to the broker's CONNACK Maximum Packet Size.
    limits: Limits,
    connected: bool,
}

/// Per-driver memory across connections.
#[derive(Default)]
struct Memory {
    /// Connections in a row that dropped while this event was the oldest in flight.
    strikes: HashMap<String, u32>,
    /// The broker limit last warned about, so a reconnect does not repeat it.
    warned_limit: Option<u32>,
}

impl MqttDriver {
    fn options(&self, tls: &Option<TlsConfiguration>) -> MqttOptions {
        let c = &self.config;
        let mut o = MqttOptions::new(self.device.as_str(), &c.host, c.port);
        let will = LastWill::new(
            self.topics.status(&self.device),
            Status::offline_will(self.device.clone()).to_json(),
            QoS::AtLeastOnce,
            true,
            None,
        );
        o.set_keep_alive(c.keep_alive)
            .set_clean_start(true)
            .set_max_packet_size(Some(MAX_INCOMING_PACKET_BYTES))
            .set_outgoing_inflight_upper_limit(100)
            .set_connection_timeout(10)
            .set_last_will(will);
        if let Some(tls) = tls {
            o.set_transport(Transport::Tls(tls.clone()));
        }
        if let Some(login) = &self.login {
            o.set_credentials(login.username.as_str(), login.password.as_str());
        }
        o
    }

    /// Runs until `shutdown` turns true; then publishes `offline` and disconnects.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), TlsFileError> {
        let mut jobs = self.jobs.take();
        let tls = match &self.config.tls {
            Some(t) => Some(tls_configuration(t)?),
            None => None,
        };
        // Full jitter in the upper half: a fleet cut off together does not return together.
        let mut retries = Retries::new(
            Backoff::new(self.config.reconnect_min, self.config.reconnect_max).with_jitter(0.5),
        );
        let mut tracker = DeliveryTracker::new();
        let mut memory = Memory::default();
        let clock = Instant::now();
        loop {
            let (client, eventloop) = AsyncClient::new(self.options(&tls), 256);
            let connected = self
                .session(
                    &client,
                    eventloop,
                    &mut tracker,
                    &mut memory,
                    &clock,
                    &mut shutdown,
                    &mut retries,
                    &mut jobs,
                )
                .await;
            if *shutdown.borrow() {
                return Ok(());
            }
            if connected {
                retries.reset();
                self.strike(&mut tracker, &mut memory).await;
            }
            tracker.reset();
            let wait = retries.next_delay(jitter_sample());
            tracing::info!(retry_in_ms = wait.as_millis() as u64, "mqtt: reconnecting");
            let until = tokio::time::sleep(wait);
            tokio::pin!(until);
            let mut beat = tokio::time::interval(self.heartbeat.every());
            loop {
                tokio::select! {
                    _ = &mut until => break,
                    _ = beat.tick() => self.heartbeat.beat(),
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    }

    /// A connection dropped: count a strike against the oldest event in flight, and set
    /// it aside once it has been in flight at [`STRIKES_TO_SET_ASIDE`] drops in a row.
    async fn strike(&self, tracker: &mut DeliveryTracker, memory: &mut Memory) {
        let Some(id) = tracker.oldest_event() else {
            return;
        };
        let strikes = memory.strikes.entry(id.clone()).or_insert(0);
        *strikes += 1;
        if *strikes >= STRIKES_TO_SET_ASIDE {
            memory.strikes.remove(&id);
            let reason = format!(
                "the broker connection dropped {STRIKES_TO_SET_ASIDE} times in a row while \
                 this event was being published"
            );
            self.set_aside(id, CODE_CONNECTION_DROPS, reason).await;
        }
    }

    /// One connection, from connect to error or shutdown. Returns whether it connected.
    #[allow(clippy::too_many_arguments)]
    async fn session(
        &self,
        client: &AsyncClient,
        mut eventloop: EventLoop,
        tracker: &mut DeliveryTracker,
        memory: &mut Memory,
        clock: &Instant,
        shutdown: &mut watch::Receiver<bool>,
        retries: &mut Retries,
        jobs: &mut Option<JobsClient>,
    ) -> bool {
        let receipts = self.topics.receipts(&self.device);
        let status_topic = self.topics.status(&self.device);
        let events_topic = self.topics.events(&self.device);
        let mono = || clock.elapsed().as_millis() as u64;
        let mut session = Session {
            limits: Limits {
                max_message_bytes: self.config.max_message_bytes,
                ..Limits::default()
            },
            connected: false,
        };
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut status_tick = tokio::time::interval(self.status_interval);
        let mut beat = tokio::time::interval(self.heartbeat.every());
        loop {
            tokio::select! {
                _ = beat.tick() => self.heartbeat.beat(),
                polled = eventloop.poll() => match polled {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        session.connected = true;
                        retries.reset();
                        let broker_max = ack.properties.as_ref().and_then(|p| p.max_packet_size);
                        session.limits.max_message_bytes =
                            self.effective_max(broker_max, &mut memory.warned_limit);
                        tracing::info!(host = %self.config.host, max_message_bytes = session.limits.max_message_bytes, "mqtt: connected");
                        let filter = Filter {
                            retain_forward_rule: RetainForwardRule::Never,
                            ..Filter::new(receipts.clone(), QoS::AtLeastOnce)
                        };
                        let mut filters = vec![filter];
                        filters.extend(jobs.iter().flat_map(JobsClient::filters));
                        let _ = client.try_subscribe_many(filters);
                        self.publish_status(client, tracker, &status_topic);
                        if let Some(j) = jobs.as_mut() {
                            j.on_connect(client);
                        }
                        self.fill(client, tracker, &session, &events_topic, mono()).await;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == receipts.as_bytes() => {
                        self.on_receipt(&p.payload).await;
                        self.fill(client, tracker, &session, &events_topic, mono()).await;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if jobs.is_some() => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        if let Some(j) = jobs.as_mut() {
                            j.on_publish(client, &topic, &p.payload);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        self.on_puback(tracker, memory, &ack).await;
                        self.fill(client, tracker, &session, &events_topic, mono()).await;
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => tracker.outgoing(pkid),
                    Ok(_) => {}
                    Err(e) => {
                        match super::disconnect::session_taken_over(&e, self.device.as_str()) {
                            Some(why) => tracing::warn!("mqtt: connection closed by the broker: {why}"),
                            None => tracing::warn!(error = %e, "mqtt: connection lost or refused"),
                        }
                        return session.connected;
                    }
                },
                _ = self.wake.notified(), if session.connected => {
                    self.fill(client, tracker, &session, &events_topic, mono()).await
                }
                _ = tick.tick(), if session.connected => {
                    tracker.expire(mono(), PUBACK_TIMEOUT_MS);
                    self.fill(client, tracker, &session, &events_topic, mono()).await;
                }
                _ = status_tick.tick(), if session.connected => self.publish_status(client, tracker, &status_topic),
                Some(report) = next_report(jobs) => {
                    // The status carries the update's progress too: publish it with the job's.
                    if let Some(j) = jobs.as_mut() {
                        j.on_report(client, session.connected, report);
                    }
                    if session.connected {
                        self.publish_status(client, tracker, &status_topic);
                    }
                }
                _ = shutdown.changed() => {
                    if session.connected {
                        self.say_goodbye(client, &mut eventloop, &status_topic).await;
                    }
                    return session.connected;
                }
            }
        }
    }

    /// The largest PUBLISH to send: the configured `max_message_bytes`, or less when
    /// the broker's CONNACK Maximum Packet Size says so (warned about once).
    fn effective_max(&self, broker_max: Option<u32>, warned: &mut Option<u32>) -> usize {
        let configured = self.config.max_message_bytes;
        let usable = broker_max.map(broker_usable_packet_bytes);
        match (broker_max, usable) {
            (Some(b), Some(u)) if u < configured => {
                if *warned != Some(b) {
                    *warned = Some(b);
                    tracing::warn!(
                        broker_max_packet_size = b,
                        max_message_bytes = configured,
                        using = u,
                        "mqtt: the broker takes smaller packets than mqtt.max_message_bytes; \
                         events are re-chunked to fit (lower max_message_bytes to match)"
                    );
                }
                u
            }
            _ => configured,
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

    /// Publishes due events until `max_in_flight` events are unacknowledged. Events
    /// that cannot go out as stored are re-encoded or set aside ([`prepare`]) first.
    async fn fill(
        &self,
        client: &AsyncClient,
        tracker: &mut DeliveryTracker,
        session: &Session,
        topic: &str,
        mono_ms: u64,
    ) {
        loop {
            let room = self
                .config
                .max_in_flight
                .saturating_sub(tracker.events_in_progress());
            if room == 0 {
                return;
            }
            let outbox = self.outbox.clone();
            let limit = room + tracker.events_in_progress();
            let due =
                tokio::task::spawn_blocking(move || outbox.lock().unwrap().due(now_ms(), limit))
                    .await
                    .expect("outbox task");
            let due = match due {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot read due events");
                    return;
                }
            };
            let fresh: Vec<Entry> = due
                .into_iter()
                .filter(|e| !tracker.is_in_progress(&e.event_id))
                .take(room)
                .collect();
            if fresh.is_empty() {
                return;
            }
            let mut set_aside_any = false;
            for entry in fresh {
                let payloads = match prepare(
                    &entry.payloads,
                    &self.device,
                    topic.len(),
                    &session.limits,
                ) {
                    Prepared::AsStored => entry.payloads,
                    Prepared::Reencoded { payloads, why } => {
                        tracing::info!(event_id = %entry.event_id, messages = payloads.len(), "re-encoding a stored event: {why}");
                        payloads
                    }
                    Prepared::SetAside { code, reason } => {
                        self.set_aside(entry.event_id, code, reason).await;
                        set_aside_any = true;
                        continue;
                    }
                };
                if !self.publish_event(client, tracker, topic, &entry.event_id, payloads, mono_ms) {
                    return; // client queue full: the rest waits for the next round
                }
                if entry.attempts == 0 {
                    Stats::inc(&self.stats.sent);
                } else {
                    Stats::inc(&self.stats.resent);
                }
            }
            // Entries set aside made room: look again so they do not cost a round.
            if !set_aside_any {
                return;
            }
        }
    }

    /// Hands an event's messages to the client; false if its queue is full.
    fn publish_event(
        &self,
        client: &AsyncClient,
        tracker: &mut DeliveryTracker,
        topic: &str,
        event_id: &str,
        payloads: Vec<Vec<u8>>,
        mono_ms: u64,
    ) -> bool {
        tracker.start_event(event_id, payloads.len(), mono_ms);
        for (index, payload) in payloads.into_iter().enumerate() {
            if client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                tracker.abandon_event(event_id);
                return false;
            }
            tracker.requested(Sent::Event {
                event_id: event_id.to_string(),
                index,
            });
        }
        true
    }

    /// A PUBACK: success completes the message (and maybe its event); an error reason
    /// code refuses the event, which is set aside, except "quota exceeded", which only
    /// means "later" (the event stays due).
    async fn on_puback(&self, tracker: &mut DeliveryTracker, memory: &mut Memory, ack: &PubAck) {
        match ack.reason {
            PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {
                if let Some(event_id) = tracker.acked(ack.pkid) {
                    memory.strikes.remove(&event_id);
                    self.on_published(event_id).await;
                }
            }
            PubAckReason::QuotaExceeded => {
                if let Some(event_id) = tracker.refused(ack.pkid) {
                    tracing::warn!(%event_id, "mqtt: broker quota exceeded; the event is sent again later");
                }
            }
            reason => {
                if let Some(event_id) = tracker.refused(ack.pkid) {
                    memory.strikes.remove(&event_id);
                    let text = ack
                        .properties
                        .as_ref()
                        .and_then(|p| p.reason_string.clone())
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    let why =
                        format!("the broker refused its PUBLISH with reason {reason:?}{text}");
                    self.set_aside(event_id, CODE_REFUSED_BY_BROKER, why).await;
                }
            }
        }
    }

    async fn on_published(&self, event_id: String) {
        let outbox = self.outbox.clone();
        let jitter = jitter_sample();
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

    /// Takes `event_id` out of delivery, keeping it on disk, and says so at warn.
    async fn set_aside(&self, event_id: String, code: &'static str, reason: String) {
        tracing::warn!(%event_id, code, %reason, "event set aside (kept in the outbox; `edge-agent outbox list-set-aside` shows it)");
        Stats::inc(&self.stats.set_aside);
        let outbox = self.outbox.clone();
        let result = tokio::task::spawn_blocking(move || {
            outbox
                .lock()
                .unwrap()
                .set_aside(&event_id, code, &reason, now_ms())
        })
        .await
        .expect("outbox task");
        if let Err(e) = result {
            tracing::error!(error = %e, "outbox: cannot set an event aside");
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
        let id = receipt.event_id.to_string();
        if let ReceiptStatus::Rejected { code, reason } = receipt.status {
            Stats::inc(&self.stats.rejected);
            let code = code.map_or("rejected", |c| c.as_str());
            let why = format!("the relay rejected it: {reason}");
            self.set_aside(id, code, why).await;
            return;
        }
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

/// Bytes kept free below a broker's advertised Maximum Packet Size. Brokers enforce a
/// payload limit a little under their packet limit (Mosquitto's `message_size_limit`
/// next to `max_packet_size`; IoT Core's 128 KiB payload quota under its larger packet
/// size), and answer a payload over it with a refusal some clients cannot even parse.
/// One KiB off a chunk costs under 1% of throughput.
pub const BROKER_LIMIT_MARGIN: u32 = 1024;

/// The largest PUBLISH packet to send to a broker that advertised `broker_max`.
pub fn broker_usable_packet_bytes(broker_max: u32) -> usize {
    broker_max.saturating_sub(BROKER_LIMIT_MARGIN).max(4096) as usize
}
