//! The MQTT side: connection options (MQTT 5, persistent session, receive maximum,
//! TLS with a client certificate, manual acks), the event-loop task, and the intake
//! driver that feeds messages to the [`Intake`] state machine and carries out its
//! actions: spawning per-event work on a bounded set of workers, publishing receipts,
//! acknowledging messages.
//!
//! Back-pressure: the broker sends at most `max_in_flight` unacknowledged messages (the
//! MQTT 5 receive maximum), and an event being stored keeps one message unacknowledged
//! until it is receipted (see [`super::intake`] for what is held and why), so memory
//! for events in flight is bounded by that window. Acks go out in arrival order, and
//! at most half the window of finished messages waits behind one that is still open
//! ([`AckOrder`]), so one slow event cannot close the window for everyone.
//!
//! The event-loop task only ever hands messages over (never waits on the intake while
//! the driver may be waiting on it), so the connection is polled, keep-alives flow and
//! acks leave while events wait for S3 or A2I.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use protocol::mqtt_tls::TlsFiles;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::Transport;
use tokio::sync::{mpsc, Semaphore};

use super::ack_order::{AckOrder, Ticket};
use super::event_handler::EventHandler;
use super::intake::{Action, EventKey, Intake, Staged};
use super::metrics::{inc, Metrics};
use super::RelayError;
use crate::config::Config;
use protocol::backoff::{Backoff, Retries};
use protocol::timestamp::now_ms;
use protocol::{AssemblerLimits, DeviceId, Receipt};

/// Largest packet the relay accepts: above IoT Core's 128 KiB, so an oversized event
/// is received, counted and rejected rather than silently dropped by the broker.
const MAX_PACKET_BYTES: u32 = 1024 * 1024;

pub fn options(config: &Config) -> Result<MqttOptions, RelayError> {
    let m = &config.mqtt;
    let mut o = MqttOptions::new(m.client_id.clone(), m.host.clone(), m.port);
    o.set_keep_alive(m.keep_alive)
        .set_clean_start(false)
        .set_session_expiry_interval(Some(m.session_expiry.as_secs() as u32))
        .set_receive_maximum(Some(m.max_in_flight))
        .set_max_packet_size(Some(MAX_PACKET_BYTES))
        .set_manual_acks(true)
        .set_connection_timeout(10)
        .set_request_channel_capacity(4 * usize::from(m.max_in_flight) + 64);
    if let (Some(user), password) = (&m.username, &m.password) {
        o.set_credentials(user.clone(), password.clone().unwrap_or_default());
    }
    if let Some(tls) = &m.tls {
        let files = TlsFiles {
            ca: &tls.ca_file,
            cert: &tls.cert_file,
            key: &tls.key_file,
            alpn: &tls.alpn,
        };
        o.set_transport(Transport::tls_with_config(files.load("mqtt.tls")?));
    }
    Ok(o)
}

/// Classifies the error of a first connection attempt by its type: rumqttc's TLS
/// error, or a rustls error carried inside an I/O error (a handshake the broker or we
/// refused), is a TLS failure; a CONNACK refusal names its reason code.
pub fn connect_error(config: &Config, e: &ConnectionError) -> RelayError {
    let text = e.to_string();
    let broker = format!("{}:{}", config.mqtt.host, config.mqtt.port);
    let rustls_inside = |io: &std::io::Error| {
        io.get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
    };
    let tls = match e {
        ConnectionError::Tls(_) => true,
        ConnectionError::Io(io) => rustls_inside(io),
        _ => false,
    };
    if tls {
        RelayError::BrokerTls {
            broker,
            message: text,
        }
    } else if let ConnectionError::ConnectionRefused(code) = e {
        RelayError::BrokerRefused {
            broker,
            message: format!("{code:?}"),
        }
    } else {
        RelayError::BrokerUnreachable {
            broker,
            message: text,
        }
    }
}

/// Connects once (within the connection timeout) to check broker and certificates.
pub async fn connect(config: &Config) -> Result<(AsyncClient, EventLoop), RelayError> {
    let opts = options(config)?;
    let cap = opts.request_channel_capacity();
    let (client, mut eventloop) = AsyncClient::new(opts, cap);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(
                    broker = %format!("{}:{}", config.mqtt.host, config.mqtt.port),
                    session_present = ack.session_present,
                    "connected to the broker"
                );
                subscribe(config, &client);
                return Ok((client, eventloop));
            }
            Ok(_) => {}
            Err(e) => return Err(connect_error(config, &e)),
        }
    }
}

fn subscribe(config: &Config, client: &AsyncClient) {
    let topics = config.topics();
    let filter = match &config.mqtt.share_group {
        Some(group) => topics
            .shared_events_filter(group)
            .expect("validated: mqtt.share_group"),
        None => topics.events_filter(),
    };
    // Every time: an expired session forgets its subscriptions; repeating one is harmless.
    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
        tracing::error!(%filter, error = %e, "could not queue the subscription");
    }
}

// One per message, consumed at once by the driver: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
enum Incoming {
    Publish(Publish),
    /// A new connection: without a session, the broker forgot unacknowledged messages.
    Connected {
        session_present: bool,
    },
}

/// Polls the connection forever, reconnecting with backoff; forwards publishes.
fn spawn_eventloop(
    config: Config,
    client: AsyncClient,
    mut eventloop: EventLoop,
    tx: mpsc::Sender<Incoming>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Reconnects: 200 ms doubling to 30 s, from the start again once connected.
        let mut retries = Retries::new(Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(30),
        ));
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(Incoming::Publish(p)).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    retries.reset();
                    tracing::info!(
                        session_present = ack.session_present,
                        "reconnected to the broker"
                    );
                    subscribe(&config, &client);
                    let session_present = ack.session_present;
                    if tx
                        .send(Incoming::Connected { session_present })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if tx.is_closed() {
                        return;
                    }
                    let delay = retries.next_delay(0.0);
                    tracing::warn!(error = %e, retry_in = ?delay, "broker connection lost");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    })
}

// One per finished job, consumed at once by the driver.
#[allow(clippy::large_enum_variant)]
enum Done {
    Event {
        device: DeviceId,
        key: EventKey,
        receipt: Option<Receipt>,
    },
    Staged {
        device: DeviceId,
        key: EventKey,
        /// Chunks in the set.
        count: u32,
        ack: Ticket,
        staged: Staged,
    },
}

/// What the driver has sent to the broker, in order, by [`spawn_sender`].
enum Outgoing {
    Ack(Publish),
    Receipt { topic: String, receipt: Receipt },
}

/// Sends the driver's acks and receipts on a task of its own, in order, so the driver
/// never waits for room in rumqttc's request channel. That channel is drained by the
/// event loop only while the broker takes the relay's publishes (its receive
/// maximum); a driver waiting there while the event loop waits for the driver to take
/// a message would wait forever, the connection unpolled: no keep-alive, no PUBACK
/// read, and the broker drops the relay. The queue is unbounded but holds at most one
/// ack and one receipt per message received, and the broker's window bounds those.
fn spawn_sender(
    client: AsyncClient,
    metrics: Arc<Metrics>,
) -> (mpsc::UnboundedSender<Outgoing>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Outgoing::Ack(p) => match client.ack(&p).await {
                    Ok(()) => inc(&metrics.c.messages_acked_total),
                    Err(e) => tracing::warn!(error = %e, "could not queue an ack"),
                },
                Outgoing::Receipt { topic, receipt } => match client
                    .publish(topic.clone(), QoS::AtLeastOnce, false, receipt.to_json())
                    .await
                {
                    Ok(()) if receipt.is_stored() => inc(&metrics.c.receipts_sent_total),
                    Ok(()) => {}
                    Err(e) => tracing::warn!(%topic, error = %e, "could not queue a receipt"),
                },
            }
        }
    });
    (tx, task)
}

struct Driver {
    config: Config,
    client: AsyncClient,
    /// Acks and receipts, sent in order by [`spawn_sender`].
    sender: mpsc::UnboundedSender<Outgoing>,
    handler: EventHandler,
    metrics: Arc<Metrics>,
    workers: Arc<Semaphore>,
    done_tx: mpsc::Sender<Done>,
    /// The set whose staged chunks the step being carried out completed: its
    /// `Process` cleans them up afterwards. Other events have nothing staged.
    staged_set: Option<(EventKey, u32)>,
    /// Acks are sent in the order the messages arrived (MQTT requires it).
    acks: AckOrder<Publish>,
    /// `acks.released_early()` already counted in the metrics.
    early_counted: u64,
}

impl Driver {
    /// Feeds a finished job to the intake and carries out what follows.
    fn on_done(&mut self, intake: &mut Intake<Ticket>, done: Done) {
        if let Done::Staged {
            key,
            count,
            staged: Staged::Complete(_),
            ..
        } = &done
        {
            self.staged_set = Some((key.clone(), *count));
        }
        let actions = on_done(intake, done);
        self.execute(actions);
        self.staged_set = None;
    }

    /// Carries out the intake's actions without waiting for anything.
    fn execute(&mut self, actions: Vec<Action<Ticket>>) {
        for action in actions {
            match action {
                Action::Ack(ticket) => {
                    for p in self.acks.ready(ticket) {
                        let _ = self.sender.send(Outgoing::Ack(p));
                    }
                    let early = self.acks.released_early();
                    if early > self.early_counted {
                        tracing::debug!(
                            count = early - self.early_counted,
                            "acknowledged messages still being stored early, to keep the window open"
                        );
                        self.metrics.c.acks_released_early_total.fetch_add(
                            early - self.early_counted,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        self.early_counted = early;
                    }
                }
                Action::Receipt { device, receipt } => {
                    let topic = self.config.topics().receipts(&device);
                    let _ = self.sender.send(Outgoing::Receipt { topic, receipt });
                }
                Action::Rejected { reason, detail } => {
                    self.metrics.reject(reason);
                    tracing::warn!(reason, "rejected: {detail}");
                }
                Action::Dropped { event_ids } => {
                    for _ in &event_ids {
                        inc(&self.metrics.c.chunk_sets_expired_total);
                    }
                    tracing::info!(count = event_ids.len(), ids = ?event_ids, "incomplete chunk sets dropped; their agents will resend");
                }
                Action::Process { device, event } => self.spawn_process(device, event),
                Action::Stage { device, chunk, ack } => self.spawn_stage(device, chunk, ack),
            }
        }
    }

    fn spawn_process(&self, device: DeviceId, event: protocol::CompleteEvent) {
        inc(&self.metrics.c.events_in_total);
        let (handler, workers, done) = (
            self.handler.clone(),
            self.workers.clone(),
            self.done_tx.clone(),
        );
        let (client, topics, metrics) = (
            self.client.clone(),
            self.config.topics(),
            self.metrics.clone(),
        );
        let key = EventKey::of(&event.meta);
        let staged = self
            .staged_set
            .as_ref()
            .filter(|(set, _)| *set == key)
            .map(|(_, count)| *count);
        tokio::spawn(async move {
            let Ok(_permit) = workers.acquire().await else {
                return;
            };
            handler.gate.wait_open().await;
            let event_id = event.meta.event_id;
            let receipt = match handler.process(&event).await {
                Ok(receipt) => {
                    let topic = topics.receipts(&device);
                    match client
                        .publish(topic, QoS::AtLeastOnce, false, receipt.to_json())
                        .await
                    {
                        Ok(()) => inc(&metrics.c.receipts_sent_total),
                        Err(e) => tracing::warn!(error = %e, "could not queue a receipt"),
                    }
                    tracing::debug!(%event_id, %device, "event stored, loop started, receipt sent");
                    Some(receipt)
                }
                Err(e) => {
                    inc(&metrics.c.event_failures_total);
                    tracing::error!(%event_id, %device, error = %e, "event failed; its agent will resend it");
                    None
                }
            };
            let stored = receipt.is_some();
            let _ = done
                .send(Done::Event {
                    device,
                    key: key.clone(),
                    receipt,
                })
                .await;
            // After the acknowledgements, still holding the worker: the staged chunks
            // of a stored set are of no more use.
            if let (true, Some(count)) = (stored, staged) {
                handler.clean_staging(&key, count).await;
            }
        });
    }

    fn spawn_stage(&self, device: DeviceId, chunk: protocol::envelope::Chunk, ack: Ticket) {
        let (handler, workers, done, metrics) = (
            self.handler.clone(),
            self.workers.clone(),
            self.done_tx.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            let Ok(_permit) = workers.acquire().await else {
                return;
            };
            let (key, count) = (EventKey::of(&chunk.header.meta), chunk.header.count);
            let event_id = key.event_id;
            let payload = protocol::Message::Chunk(chunk.clone())
                .encode()
                .unwrap_or_default();
            let staged = match handler.stage(&chunk, payload).await {
                Ok(staged) => staged,
                Err(e) => {
                    inc(&metrics.c.event_failures_total);
                    tracing::error!(%event_id, error = %e, "staging a chunk failed; its agent will resend");
                    Staged::Incomplete
                }
            };
            let _ = done
                .send(Done::Staged {
                    device,
                    key,
                    count,
                    ack,
                    staged,
                })
                .await;
        });
    }
}

/// Runs intake until `shutdown`; then stops taking messages, lets events in flight
/// finish (up to `drain`), and disconnects. Unfinished messages stay unacknowledged:
/// the broker redelivers them (persistent session) and agents resend them anyway.
pub async fn run_intake(
    config: Config,
    client: AsyncClient,
    eventloop: EventLoop,
    handler: EventHandler,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let window = usize::from(config.mqtt.max_in_flight);
    let (tx, mut rx) = mpsc::channel(2 * window + 64);
    let poller = spawn_eventloop(config.clone(), client.clone(), eventloop, tx);
    let (done_tx, mut done_rx) = mpsc::channel(2 * window + 64);
    let limits = AssemblerLimits {
        max_pending_bytes: config.intake.max_pending_bytes,
        max_pending_sets: config.intake.max_pending_sets,
        timeout_ms: config.intake.chunk_timeout.as_millis() as u64,
    };
    let mut intake: Intake<Ticket> = Intake::new(config.topics(), config.stages_chunks(), limits);
    let (sender, sending) = spawn_sender(client.clone(), metrics.clone());
    let mut driver = Driver {
        sender,
        workers: Arc::new(Semaphore::new(config.intake.workers)),
        config,
        client: client.clone(),
        handler,
        metrics: metrics.clone(),
        done_tx,
        staged_set: None,
        acks: AckOrder::new(window.div_ceil(2)),
        early_counted: 0,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    loop {
        let actions = tokio::select! {
            _ = &mut shutdown => break,
            Some(incoming) = rx.recv() => match incoming {
                Incoming::Publish(p) => {
                    inc(&metrics.c.messages_in_total);
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    let payload = p.payload.clone();
                    // The ack needs the packet id and QoS only. Topic and payload are
                    // views into the connection's read buffer: a held token keeping
                    // either would pin that whole buffer until the message is acked.
                    let token = Publish { topic: bytes::Bytes::new(), payload: bytes::Bytes::new(), properties: None, ..p };
                    let ticket = if token.qos == QoS::AtMostOnce {
                        Ticket::NONE
                    } else {
                        driver.acks.received(token.pkid, token)
                    };
                    intake.on_message(&topic, &payload, ticket, now_ms())
                }
                Incoming::Connected { session_present } => {
                    if !session_present {
                        driver.acks.new_session();
                    }
                    continue;
                }
            },
            Some(done) = done_rx.recv() => {
                driver.on_done(&mut intake, done);
                continue;
            }
            _ = tick.tick() => {
                metrics.pending_sets.store(intake.pending_sets() as u64, std::sync::atomic::Ordering::Relaxed);
                metrics.pending_bytes.store(intake.pending_bytes(), std::sync::atomic::Ordering::Relaxed);
                metrics.paused.store(u64::from(driver.handler.gate.is_closed()), std::sync::atomic::Ordering::Relaxed);
                intake.on_tick(now_ms())
            }
        };
        driver.execute(actions);
    }
    tracing::info!(
        in_flight = intake.in_flight(),
        unacked = driver.acks.waiting(),
        "intake stopping"
    );
    let deadline = tokio::time::Instant::now() + drain;
    while intake.in_flight() > 0 {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some(done)) => driver.on_done(&mut intake, done),
            _ => break,
        }
    }
    // The last acks and receipts go out before the DISCONNECT.
    drop(driver);
    let _ = tokio::time::timeout(Duration::from_secs(2), sending).await;
    let _ = client.disconnect().await;
    drop(rx);
    // Give the event loop a moment to flush the last acks and the DISCONNECT.
    let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
}

fn on_done(intake: &mut Intake<Ticket>, done: Done) -> Vec<Action<Ticket>> {
    match done {
        Done::Event {
            device,
            key,
            receipt,
        } => intake.on_done(device, key, receipt),
        Done::Staged {
            device,
            key,
            ack,
            staged,
            ..
        } => intake.on_staged(device, key, ack, staged),
    }
}
