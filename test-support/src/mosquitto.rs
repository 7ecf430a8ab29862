//! A real Mosquitto 2 broker on loopback, configured like AWS IoT Core by default.
//!
//! The default broker has one TLS listener that demands a client certificate signed
//! by the test CA and takes the certificate's CN as the username (IoT Core's mutual
//! TLS), caps payloads at 128 KiB, allows QoS 0 and 1 only and keepalives up to
//! 1200 s. See [`MosquittoBuilder`] for each option and why it is there.
//!
//! The broker process belongs to the [`Mosquitto`] value: [`stop`](Mosquitto::stop),
//! [`kill`](Mosquitto::kill), [`start`](Mosquitto::start) and
//! [`restart`](Mosquitto::restart) keep the port and the config, so clients can
//! reconnect to the same address; dropping the value kills the broker.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::certs::TestCerts;
use crate::error::{Error, Result};
use crate::port::free_port;
use crate::process::{log_tail, ChildGuard};
use crate::server::{
    find_program, print_tail_if_panicking, start_and_wait, ServerDir, Started, TAIL_LINES,
};
use crate::wait::poll_until;

/// AWS IoT Core's payload limit: 128 KiB.
pub const IOT_CORE_MAX_PAYLOAD: u32 = 128 * 1024;

/// Room for the fixed header, topic (IoT Core allows 256 bytes) and MQTT 5
/// properties on top of the payload limit.
const PACKET_OVERHEAD: u32 = 1024;

/// How long a broker gets to become ready.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long SIGTERM gets before SIGKILL follows.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Attempts at finding a free port for a broker whose port was not given.
const PORT_ATTEMPTS: usize = 5;

/// Options for a [`Mosquitto`] broker; start with [`Mosquitto::builder`].
#[derive(Debug, Clone)]
pub struct MosquittoBuilder {
    tls: bool,
    certs: Option<TestCerts>,
    persistence: bool,
    persistent_client_expiration_hours: Option<u64>,
    max_payload: u32,
    extra_config: Vec<String>,
    dir: Option<PathBuf>,
    port: Option<u16>,
}

impl Default for MosquittoBuilder {
    fn default() -> Self {
        MosquittoBuilder {
            tls: true,
            certs: None,
            persistence: false,
            persistent_client_expiration_hours: None,
            max_payload: IOT_CORE_MAX_PAYLOAD,
            extra_config: Vec::new(),
            dir: None,
            port: None,
        }
    }
}

impl MosquittoBuilder {
    /// A plain TCP listener without TLS or authentication (anonymous clients
    /// allowed), for tests that are not about the transport.
    pub fn plain_tcp(mut self) -> Self {
        self.tls = false;
        self
    }

    /// Use these certificates instead of generating a fresh PKI in the broker's
    /// directory (e.g. to share one CA between a broker and a relay's config).
    pub fn certs(mut self, certs: TestCerts) -> Self {
        self.certs = Some(certs);
        self.tls = true;
        self
    }

    /// Keep retained messages, subscriptions and queued messages across restarts
    /// (off by default: a restart then forgets everything, like a broker that lost
    /// its state). The database is saved on [`stop`](Mosquitto::stop) (SIGTERM) and
    /// every second, so a [`kill`](Mosquitto::kill) may lose the last second.
    pub fn persistence(mut self, on: bool) -> Self {
        self.persistence = on;
        self
    }

    /// Forget persistent MQTT 3.1.1 sessions (clean session false) whose client has
    /// been away this long. Mosquitto 2.0 counts this in whole hours at the finest
    /// (its `m` suffix means *months*, not minutes), so `expiry` is rounded up to
    /// hours. MQTT 5 clients set their own session expiry interval, which Mosquitto
    /// honours; that is the way to test short expiries.
    ///
    /// # Panics
    /// When `expiry` is zero.
    pub fn persistent_client_expiration(mut self, expiry: Duration) -> Self {
        assert!(
            !expiry.is_zero(),
            "persistent_client_expiration must be positive"
        );
        self.persistent_client_expiration_hours = Some(expiry.as_secs().div_ceil(3600).max(1));
        self
    }

    /// Payload limit in bytes instead of IoT Core's 128 KiB (for tests of the limit
    /// itself). Payloads over it are dropped by the broker; packets more than 1 KiB
    /// over it disconnect the client.
    pub fn max_payload(mut self, bytes: u32) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Appends a line to the generated mosquitto.conf (global options go before the
    /// listener, so write listener options only if you know what you are doing).
    pub fn extra_config(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// Keep the broker's files (config, log, certs, persistence) in `dir` instead of
    /// a temp dir that is removed on drop.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Listen on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Starts the broker and waits until it listens.
    ///
    /// # Panics
    /// When it does not start; the message carries the tail of its log.
    pub fn start(self) -> Mosquitto {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the broker and waits until it listens.
    pub fn try_start(self) -> Result<Mosquitto> {
        let dir = ServerDir::new(self.dir.clone(), "mosquitto-")?;
        let certs = match (&self.certs, self.tls) {
            (Some(certs), _) => Some(certs.clone()),
            (None, true) => Some(TestCerts::try_generate(dir.path().join("certs"))?),
            (None, false) => None,
        };
        let persistence_dir = self.persistence.then(|| dir.path().join("persistence"));
        if let Some(persistence_dir) = &persistence_dir {
            fs::create_dir_all(persistence_dir)
                .map_err(|e| Error::io(format!("create {persistence_dir:?}"), e))?;
        }
        let mut broker = Mosquitto {
            child: None,
            port: self.port.unwrap_or_else(free_port),
            config_path: dir.path().join("mosquitto.conf"),
            log_path: dir.path().join("mosquitto.log"),
            persistence_dir,
            certs,
            binary: find_program("MOSQUITTO_BIN", "mosquitto", &["/usr/sbin/mosquitto"]),
            options: self,
            dir,
        };
        let attempts = if broker.options.port.is_some() {
            1
        } else {
            PORT_ATTEMPTS
        };
        for attempt in 1..=attempts {
            broker.write_config()?;
            match broker.spawn()? {
                Started::Ready(child) => {
                    broker.child = Some(child);
                    return Ok(broker);
                }
                Started::PortInUse(error) if attempt == attempts => return Err(error),
                Started::PortInUse(_) => broker.port = free_port(),
            }
        }
        unreachable!("the last attempt returns")
    }
}

/// A running (or stopped) Mosquitto broker; killed when dropped. If the test is
/// panicking at that moment, the tail of the broker log is printed first.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<ChildGuard>,
    port: u16,
    config_path: PathBuf,
    log_path: PathBuf,
    persistence_dir: Option<PathBuf>,
    certs: Option<TestCerts>,
    binary: PathBuf,
    options: MosquittoBuilder,
    dir: ServerDir,
}

impl Mosquitto {
    /// Options for a new broker; the defaults are IoT Core's (see the module docs).
    pub fn builder() -> MosquittoBuilder {
        MosquittoBuilder::default()
    }

    /// The host to connect to: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The listener's port; it stays the same across stop, start and restart.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Whether the listener speaks TLS with client certificates (the default).
    pub fn is_tls(&self) -> bool {
        self.certs.is_some()
    }

    /// The certificates the TLS listener uses: make client certificates with
    /// [`TestCerts::client`].
    ///
    /// # Panics
    /// For a [`plain_tcp`](MosquittoBuilder::plain_tcp) broker.
    pub fn certs(&self) -> &TestCerts {
        self.certs
            .as_ref()
            .expect("a plain_tcp broker has no certificates")
    }

    /// The broker's directory (config, log, certs, persistence).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated mosquitto.conf.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The broker's log (stdout and stderr of every start, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Where the persistence database lives, when persistence is on.
    pub fn persistence_dir(&self) -> Option<&Path> {
        self.persistence_dir.as_deref()
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// Waits until the log contains `needle` (e.g. `"New client connected"`).
    ///
    /// # Panics
    /// On timeout, with the log tail.
    #[track_caller]
    pub fn wait_for_log(&self, deadline: Duration, needle: &str) {
        if !poll_until(deadline, || self.log().contains(needle)) {
            panic!(
                "timed out after {deadline:?} waiting for {needle:?} in the mosquitto log; it ends with:\n{}",
                self.log_tail(TAIL_LINES)
            );
        }
    }

    /// The broker's pid while it runs.
    pub fn pid(&mut self) -> Option<u32> {
        self.is_running()
            .then(|| self.child.as_ref().map(ChildGuard::id))
            .flatten()
    }

    /// Whether the broker process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Starts the broker again after [`stop`](Self::stop) or [`kill`](Self::kill),
    /// on the same port with the same config, and waits until it listens.
    ///
    /// # Panics
    /// When it is already running or does not start (with the log tail).
    pub fn start(&mut self) {
        assert!(!self.is_running(), "mosquitto is already running");
        match self.spawn() {
            Ok(Started::Ready(child)) => self.child = Some(child),
            Ok(Started::PortInUse(e)) | Err(e) => panic!("{e}"),
        }
    }

    /// Stops the broker with SIGTERM (it saves its database if persistence is on)
    /// and waits for it to exit; SIGKILL after 10 s. A no-op when not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate(STOP_GRACE);
        }
    }

    /// Kills the broker with SIGKILL (nothing is saved) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// [`stop`](Self::stop) then [`start`](Self::start): same port, same config.
    /// Without persistence the new broker knows nothing of the old one's sessions,
    /// subscriptions, queued or retained messages.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    fn spawn(&mut self) -> Result<Started> {
        let port = self.port;
        start_and_wait(
            &format!("mosquitto on port {port}"),
            Command::new(&self.binary).arg("-c").arg(&self.config_path),
            &self.log_path,
            START_DEADLINE,
            |log| log.contains(" running"),
        )
    }

    fn write_config(&self) -> Result<()> {
        fs::write(&self.config_path, self.config_text())
            .map_err(|e| Error::io(format!("write {:?}", self.config_path), e))
    }

    fn config_text(&self) -> String {
        let o = &self.options;
        let mut lines = vec![
            "# Generated by test-support: a broker that behaves like AWS IoT Core.".to_string(),
            // As root, mosquitto would switch to the `mosquitto` user, which cannot
            // read a test's private temp dir; as any other user this is ignored.
            "user root".to_string(),
            "per_listener_settings false".to_string(),
            "log_dest stderr".to_string(),
            "log_type all".to_string(),
            "log_timestamp_format %Y-%m-%dT%H:%M:%S".to_string(),
            "connection_messages true".to_string(),
            // IoT Core: payloads up to 128 KiB. message_size_limit drops bigger
            // payloads exactly at the limit (MQTT 5 publishers get a PUBACK with
            // reason 0x95, MQTT 3.1.1 ones a plain PUBACK); max_packet_size
            // disconnects clients whose packets are larger still, as IoT Core does,
            // and tells MQTT 5 clients the limit. (Mosquitto suggests max_packet_size
            // alone, but that counts the topic and headers: not an exact payload limit.)
            format!("message_size_limit {}", o.max_payload),
            format!("max_packet_size {}", o.max_payload + PACKET_OVERHEAD),
            // IoT Core: keepalive 30..1200 s; MQTT 5 clients asking for more are told 1200.
            "max_keepalive 1200".to_string(),
        ];
        match &self.persistence_dir {
            Some(dir) => {
                lines.push("persistence true".to_string());
                lines.push(format!("persistence_location {}/", dir.display()));
                lines.push("autosave_interval 1".to_string());
            }
            None => lines.push("persistence false".to_string()),
        }
        if let Some(hours) = o.persistent_client_expiration_hours {
            lines.push(format!("persistent_client_expiration {hours}h"));
        }
        lines.extend(o.extra_config.iter().cloned());

        lines.push(format!("listener {} 127.0.0.1", self.port));
        // IoT Core has no QoS 2.
        lines.push("max_qos 1".to_string());
        match &self.certs {
            Some(certs) => {
                lines.push(format!("cafile {}", certs.ca_cert.display()));
                lines.push(format!("certfile {}", certs.server_cert.display()));
                lines.push(format!("keyfile {}", certs.server_key.display()));
                // Mutual TLS: no certificate from the test CA, no connection. The
                // CN becomes the username, and with it no password check is made,
                // so anonymous access can stay off.
                lines.push("require_certificate true".to_string());
                lines.push("use_identity_as_username true".to_string());
                lines.push("allow_anonymous false".to_string());
            }
            None => lines.push("allow_anonymous true".to_string()),
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        print_tail_if_panicking("mosquitto", &self.log_path);
    }
}
