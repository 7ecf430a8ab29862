//! `EmbeddedBroker`: an MQTT broker inside the process (rumqttd as a library) on
//! loopback, so local mode needs nothing installed. MQTT 3.1.1 on one port and, when
//! configured, MQTT 5 on another (rumqttd serves one protocol per listener).
//!
//! It keeps nothing across restarts: sessions, retained messages and queued QoS 1
//! messages live in memory. That is the design, not a shortcut: the agent keeps every
//! selected frame in its on-disk outbox until the relay's receipt arrives and resends
//! after a timeout, so a broker restart costs a resend, never a frame. For the same
//! reason what it keeps is bounded ([`SEGMENT_SIZE`] x [`SEGMENT_COUNT`] per topic
//! filter, [`BrokerConfig::max_in_flight`] per client): its memory stays flat however
//! many events pass through.
//!
//! Lifecycle: the listeners and every connection run on a runtime owned by one
//! thread; [`EmbeddedBroker::stop`] ends that runtime, which closes the listeners and
//! all client sockets (clients see a disconnect, as from a broker restart). rumqttd's
//! router thread holds a sender to itself and so cannot be ended; after `stop` it sits
//! blocked, idle, until the process exits.
//!
//! Only clients that log in with the configured username and password get in (where
//! IoT Core checks each device's certificate): `local-aws run` makes the pair at the
//! first start ([`crate::credentials`]) and hands it to the relay, the Jobs service and
//! the agent. rumqttd closes the connection of any other client before its CONNACK.
//!
//! Both listeners route AWS IoT's reserved topics (`$aws/things/{thing}/jobs/...`),
//! which stock rumqttd refuses: see [`reserved`].

use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use rumqttd::protocol::v4::V4;
use rumqttd::protocol::v5::V5;
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use tokio::sync::oneshot;

pub mod reserved;

use reserved::AwsReserved;

use crate::credentials::MqttLogin;

/// IoT Core's message size limit (128 KiB), so local mode refuses what AWS would.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 128 * 1024;

/// rumqttd appends every message it routes to an in-memory log per topic filter and
/// drops a filter's oldest segment only when it has [`SEGMENT_COUNT`] full ones: the
/// log is the broker's whole memory of routed messages. 4 segments of 2 MiB keep at
/// most about 10 MiB per filter (16 of IoT Core's largest packets per segment), about
/// 300 frames of 32 KiB for a subscriber that falls behind. One that falls further
/// behind skips ahead (rumqttd logs a cursor jump), which costs a resend from the
/// agent's outbox, never a frame. (rumqttd's default keeps up to 1 GiB per filter;
/// local mode used 100 MiB x 10, and grew by every event it routed.)
pub const SEGMENT_SIZE: usize = 2 * 1024 * 1024;
/// See [`SEGMENT_SIZE`].
pub const SEGMENT_COUNT: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// MQTT 3.1.1 listener; port 0 picks a free one.
    pub listen_v4: SocketAddr,
    /// MQTT 5 listener (shared subscriptions); `None` serves 3.1.1 only.
    pub listen_v5: Option<SocketAddr>,
    /// Largest packet body (remaining length) accepted.
    pub max_packet_size: usize,
    /// Unacknowledged QoS 1 messages in flight per client.
    pub max_in_flight: usize,
    pub max_connections: usize,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// The only login accepted (by default a fresh random one: nobody gets in until
    /// it is set to one the clients know).
    pub login: MqttLogin,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen_v4: default_listen_v4(),
            listen_v5: Some(default_listen_v5()),
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            max_in_flight: 100,
            max_connections: 1000,
            connect_timeout: Duration::from_secs(10),
            login: crate::credentials::generate_login(),
        }
    }
}

pub fn default_listen_v4() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1883))
}

pub fn default_listen_v5() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1884))
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("MQTT broker cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("MQTT broker did not start listening on {0} within 10 s")]
    NotListening(SocketAddr),
    #[error("starting the MQTT broker thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("invalid broker configuration: {0}")]
    Config(String),
}

/// A running broker; [`EmbeddedBroker::stop`] (or dropping it) closes it.
pub struct EmbeddedBroker {
    v4: SocketAddr,
    v5: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("v4", &self.v4)
            .field("v5", &self.v5)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Starts the broker and returns once its listeners accept connections.
    pub async fn start(config: BrokerConfig) -> Result<Self, BrokerError> {
        if config.max_packet_size == 0 || config.max_in_flight == 0 || config.max_connections == 0 {
            return Err(BrokerError::Config(
                "max packet size, max inflight and max connections must be positive".into(),
            ));
        }
        // rumqttd binds its listeners itself and does not report the port it got, so
        // port 0 is resolved here; a port taken in between shows as a bind failure,
        // and the start is retried on fresh ports.
        let wants_free_port =
            config.listen_v4.port() == 0 || config.listen_v5.is_some_and(|a| a.port() == 0);
        let attempts = if wants_free_port { 3 } else { 1 };
        let mut last_err = None;
        for _ in 0..attempts {
            let v4 = resolve_port(config.listen_v4)?;
            let v5 = config.listen_v5.map(resolve_port).transpose()?;
            match Self::start_on(&config, v4, v5).await {
                Ok(b) => return Ok(b),
                Err(e @ BrokerError::Listen { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    async fn start_on(
        config: &BrokerConfig,
        v4: SocketAddr,
        v5: Option<SocketAddr>,
    ) -> Result<Self, BrokerError> {
        let connections = ConnectionSettings {
            connection_timeout_ms: u16::try_from(config.connect_timeout.as_millis())
                .unwrap_or(u16::MAX),
            max_payload_size: config.max_packet_size,
            max_inflight_count: config.max_in_flight,
            auth: Some(
                [(config.login.username.clone(), config.login.password.clone())]
                    .into_iter()
                    .collect(),
            ),
            external_auth: None,
            dynamic_filters: true,
        };
        let settings = |name: &str, listen| ServerSettings {
            name: name.to_owned(),
            listen,
            tls: None,
            next_connection_delay_ms: 0,
            connections: connections.clone(),
        };
        let router = Router::new(
            0,
            RouterConfig {
                max_connections: config.max_connections,
                max_outgoing_packet_count: 200,
                max_segment_size: SEGMENT_SIZE,
                max_segment_count: SEGMENT_COUNT,
                ..Default::default()
            },
        );
        let router_tx = router.spawn();
        let mut v4_server = Server::new(settings("v4", v4), router_tx.clone(), AwsReserved(V4));
        let mut v5_server =
            v5.map(|a| Server::new(settings("v5", a), router_tx.clone(), AwsReserved(V5)));
        drop(router_tx);

        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (failed_tx, mut failed_rx) = tokio::sync::mpsc::channel::<(SocketAddr, String)>(2);
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = failed_tx.blocking_send((v4, e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let f4 = failed_tx.clone();
                    let serve_v4 = async move {
                        if let Err(e) = v4_server.start(LinkType::Remote).await {
                            let _ = f4.send((v4, format!("{e}"))).await;
                        }
                    };
                    let serve_v5 = async move {
                        match (&mut v5_server, v5) {
                            (Some(s), Some(addr)) => {
                                if let Err(e) = s.start(LinkType::Remote).await {
                                    let _ = failed_tx.send((addr, format!("{e}"))).await;
                                }
                            }
                            _ => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = shutdown_rx => {}
                        // A listener that ends has failed; the rest stop with it.
                        () = serve_v4 => {}
                        () = serve_v5 => {}
                    }
                });
                // Dropping the runtime cancels every connection task: sockets close.
                drop(rt);
            })
            .map_err(BrokerError::Thread)?;
        let mut broker = EmbeddedBroker {
            v4,
            v5,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        };

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for addr in std::iter::once(v4).chain(v5) {
            loop {
                if let Ok((failed, reason)) = failed_rx.try_recv() {
                    broker.shutdown_now();
                    return Err(BrokerError::Listen {
                        addr: failed,
                        reason,
                    });
                }
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    broker.shutdown_now();
                    return Err(BrokerError::NotListening(addr));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Our listener bound (the connect reached it) unless it failed meanwhile.
        if let Ok((failed, reason)) = failed_rx.try_recv() {
            broker.shutdown_now();
            return Err(BrokerError::Listen {
                addr: failed,
                reason,
            });
        }
        tracing::info!(mqtt_v4 = %v4, mqtt_v5 = ?v5, "embedded MQTT broker listening");
        Ok(broker)
    }

    /// The MQTT 3.1.1 address.
    pub fn v4_addr(&self) -> SocketAddr {
        self.v4
    }

    /// The MQTT 5 address, when served.
    pub fn v5_addr(&self) -> Option<SocketAddr> {
        self.v5
    }

    /// The MQTT 3.1.1 port.
    pub fn port(&self) -> u16 {
        self.v4.port()
    }

    fn shutdown_now(&mut self) -> Option<std::thread::JoinHandle<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.thread.take()
    }

    /// Closes the listeners and all connections, and waits for them to be gone.
    pub async fn stop(mut self) {
        if let Some(thread) = self.shutdown_now() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        tracing::info!(mqtt_v4 = %self.v4, "embedded MQTT broker stopped");
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        // Not joined here: dropping may happen on an async thread.
        let _ = self.shutdown_now();
    }
}

fn resolve_port(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = StdListener::bind(addr).map_err(|e| BrokerError::Listen {
        addr,
        reason: e.to_string(),
    })?;
    l.local_addr().map_err(|e| BrokerError::Listen {
        addr,
        reason: e.to_string(),
    })
}
