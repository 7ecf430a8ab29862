//! The daemon's configuration: one TOML file (`/etc/edge-agent/config.toml`),
//! `deny_unknown_fields` everywhere so a typo is an error rather than a silent
//! default, defaults from named functions, and `validate()` before anything starts.
//! `edge-agent print-default-config` prints `DEFAULT_CONFIG`, which a test parses.

use protocol::renamed::Renamed;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{DeviceId, Topics};
use serde::{Deserialize, Serialize};

use crate::outbox::{Backoff, OutboxConfig};
use crate::policy::PolicyConfig;
use crate::source::camera::CameraSourceConfig;
use crate::source::folder::FolderSourceConfig;

/// The annotated example printed by `print-default-config`.
pub const DEFAULT_CONFIG: &str = include_str!("../config.example.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub device: DeviceSection,
    #[serde(default)]
    pub model: ModelSection,
    pub mqtt: MqttSection,
    #[serde(default)]
    pub outbox: OutboxSection,
    #[serde(default)]
    pub image: ImageSection,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub update: crate::update::UpdateSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    /// The IoT thing name; also the MQTT client id.
    pub id: String,
    /// Where the outbox and other state live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How often the retained status message is refreshed.
    #[serde(default = "default_status_interval", with = "humantime_serde")]
    pub status_interval: Duration,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/edge-agent")
}
fn default_status_interval() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model manifest; default: the installed default model.
    pub manifest: Option<PathBuf>,
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// How many labels each event carries.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// "auto" (LiteRT/XNNPACK if it loads and passes the self-test, else TF Lite),
    /// "tflite" or "litert".
    #[serde(default)]
    pub backend: crate::inference::BackendKind,
    /// libLiteRt.so; default: $EDGE_AGENT_LITERT_LIB, beside the executable,
    /// /usr/lib/edge-a2i/.
    #[serde(default)]
    pub litert_library: Option<PathBuf>,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            manifest: None,
            threads: default_threads(),
            top_k: default_top_k(),
            backend: Default::default(),
            litert_library: None,
        }
    }
}

fn default_threads() -> usize {
    1
}
fn default_top_k() -> usize {
    5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// Broker host: the IoT Core ATS endpoint, or 127.0.0.1 in local mode.
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Mutual TLS; omit only for a broker on loopback.
    pub tls: Option<TlsSection>,
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Largest MQTT message, topic included (IoT Core: 128 KiB).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Events published but not yet acknowledged by the broker, at most.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// MQTT username, for brokers that ask for one (local mode's); IoT Core does not.
    #[serde(default)]
    pub username: Option<String>,
    /// File whose first line is the password of `username` (read at start).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// The largest packet MQTT can express: a 4-byte Remaining Length varint (MQTT 5 spec
/// 1.5.5 and 2.1.4) plus the fixed header.
pub const MQTT_MAX_PACKET_BYTES: usize = 268_435_455;

/// Whether `host` is an AWS IoT Core data endpoint (`<prefix>-ats.iot.<region>.amazonaws.com`,
/// or the China regions' `.amazonaws.com.cn`), whose message size limit is 128 KiB.
pub fn is_iot_core_endpoint(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host.contains(".iot.")
        && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
}

fn default_port() -> u16 {
    8883
}
fn default_prefix() -> String {
    "edge-a2i".into()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_max_message_bytes() -> usize {
    protocol::envelope::DEFAULT_MAX_MESSAGE_BYTES
}
fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(120)
}
fn default_max_in_flight() -> usize {
    16
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// CA certificate(s) that signed the broker's certificate (PEM). Spelt `ca`
    /// before; like `cert` and `key`, the old name is read, with a warning, for a release.
    #[serde(alias = "ca")]
    pub ca_file: PathBuf,
    /// This device's certificate (PEM).
    #[serde(alias = "cert")]
    pub cert_file: PathBuf,
    /// This device's private key (PEM).
    #[serde(alias = "key")]
    pub key_file: PathBuf,
    /// Offer ALPN `x-amzn-mqtt-ca` (IoT Core's MQTT on port 443).
    #[serde(default)]
    pub alpn_iot_core: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    #[serde(default = "default_outbox_max_bytes")]
    pub max_bytes: u64,
    /// Resend an event with no receipt after this long (doubling up to `resend_max`).
    #[serde(default = "default_resend_after", with = "humantime_serde")]
    pub resend_after: Duration,
    #[serde(default = "default_resend_max", with = "humantime_serde")]
    pub resend_max: Duration,
}

fn default_outbox_max_bytes() -> u64 {
    crate::outbox::default_max_bytes()
}
fn default_resend_after() -> Duration {
    crate::outbox::default_initial_resend()
}
fn default_resend_max() -> Duration {
    crate::outbox::default_max_resend()
}

impl Default for OutboxSection {
    fn default() -> Self {
        OutboxSection {
            max_bytes: default_outbox_max_bytes(),
            resend_after: default_resend_after(),
            resend_max: default_resend_max(),
        }
    }
}

/// How images are shaped before they travel (bandwidth vs what a reviewer needs).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    /// Longer side in pixels; larger images are scaled down and re-encoded as JPEG.
    /// Smaller ones travel byte for byte as captured.
    #[serde(default = "default_max_side")]
    pub max_side: u32,
    #[serde(default = "default_jpeg_quality")]
    pub jpeg_quality: u8,
}

fn default_max_side() -> u32 {
    1920
}
fn default_jpeg_quality() -> u8 {
    90
}

impl Default for ImageSection {
    fn default() -> Self {
        ImageSection {
            max_side: default_max_side(),
            jpeg_quality: default_jpeg_quality(),
        }
    }
}

/// One `[[source]]` table; `kind` says which.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    Folder(FolderSourceConfig),
    Camera(CameraSourceConfig),
    Command(crate::source::command::CommandSourceConfig),
}

impl SourceConfig {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SourceConfig::Folder(c) => c.validate().map_err(|e| e.to_string()),
            SourceConfig::Camera(c) => c.validate().map_err(|e| e.to_string()),
            SourceConfig::Command(c) => c.validate().map_err(|e| e.to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Settings renamed so that both daemons spell them alike (the relay's names).
pub const RENAMED: &[Renamed] = &[
    Renamed {
        old: "mqtt.tls.ca",
        new: "mqtt.tls.ca_file",
    },
    Renamed {
        old: "mqtt.tls.cert",
        new: "mqtt.tls.cert_file",
    },
    Renamed {
        old: "mqtt.tls.key",
        new: "mqtt.tls.key_file",
    },
];

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        for warning in protocol::renamed::renamed_keys(&text, RENAMED) {
            tracing::warn!(config = %path.display(), "{warning}");
        }
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: origin.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// Checks that need more than types; messages name the field. (Policy labels are
    /// checked against the model when it is loaded.)
    pub fn validate(&self) -> Result<(), String> {
        DeviceId::new(self.device.id.clone()).map_err(|e| format!("device.id: {e}"))?;
        Topics::new(self.mqtt.topic_prefix.clone())
            .map_err(|e| format!("mqtt.topic_prefix: {e}"))?;
        if self.mqtt.host.trim().is_empty() {
            return Err("mqtt.host is empty".into());
        }
        self.update.validate()?;
        if self.mqtt.max_message_bytes < 4096 {
            return Err(format!(
                "mqtt.max_message_bytes must be at least 4096, got {}",
                self.mqtt.max_message_bytes
            ));
        }
        if self.mqtt.max_message_bytes > MQTT_MAX_PACKET_BYTES {
            return Err(format!(
                "mqtt.max_message_bytes {} is more than MQTT allows in one packet \
                 ({MQTT_MAX_PACKET_BYTES} bytes, MQTT 5 spec 1.5.5)",
                self.mqtt.max_message_bytes
            ));
        }
        if is_iot_core_endpoint(&self.mqtt.host)
            && self.mqtt.max_message_bytes > protocol::envelope::DEFAULT_MAX_MESSAGE_BYTES
        {
            return Err(format!(
                "mqtt.max_message_bytes {} is more than AWS IoT Core accepts ({} bytes per \
                 message, AWS IoT Core quotas: \"Maximum size of a message payload\"); \
                 {} is an IoT Core endpoint: use at most {}",
                self.mqtt.max_message_bytes,
                protocol::envelope::DEFAULT_MAX_MESSAGE_BYTES,
                self.mqtt.host,
                protocol::envelope::DEFAULT_MAX_MESSAGE_BYTES
            ));
        }
        if self.mqtt.reconnect_min.is_zero() || self.mqtt.reconnect_min > self.mqtt.reconnect_max {
            return Err("mqtt.reconnect_min must be > 0 and <= mqtt.reconnect_max".into());
        }
        if !(1..=100).contains(&self.mqtt.max_in_flight) {
            return Err(format!(
                "mqtt.max_in_flight must be within 1..=100 (IoT Core allows 100 unacknowledged), got {}",
                self.mqtt.max_in_flight
            ));
        }
        if self.mqtt.password_file.is_some() && self.mqtt.username.is_none() {
            return Err("mqtt.password_file is set without mqtt.username".into());
        }
        if self.mqtt.keep_alive < Duration::from_secs(5) {
            return Err("mqtt.keep_alive must be at least 5s".into());
        }
        if !(1..=64).contains(&self.model.threads) {
            return Err(format!(
                "model.threads must be within 1..=64, got {}",
                self.model.threads
            ));
        }
        if self.model.top_k == 0 {
            return Err("model.top_k must be at least 1".into());
        }
        if !(1..=100).contains(&self.image.jpeg_quality) {
            return Err(format!(
                "image.jpeg_quality must be within 1..=100, got {}",
                self.image.jpeg_quality
            ));
        }
        if self.image.max_side < 160 {
            return Err(format!(
                "image.max_side must be at least 160, got {}",
                self.image.max_side
            ));
        }
        self.outbox_config()
            .validate()
            .map_err(|e| format!("outbox: {e}"))?;
        if self.sources.is_empty() {
            return Err("no [[source]]: add a folder or camera source".into());
        }
        for (i, source) in self.sources.iter().enumerate() {
            source.validate().map_err(|e| format!("source[{i}]: {e}"))?;
        }
        Ok(())
    }

    pub fn outbox_config(&self) -> OutboxConfig {
        OutboxConfig {
            max_bytes: self.outbox.max_bytes,
            backoff: Backoff {
                initial: self.outbox.resend_after,
                max: self.outbox.resend_max,
                ..crate::outbox::default_resend_backoff()
            },
        }
    }

    pub fn outbox_path(&self) -> PathBuf {
        self.device.state_dir.join("outbox.sqlite")
    }

    /// The folder whose image files the daemon sends for review whatever the policy
    /// says (reason `requested`), then deletes: `<state_dir>/review-requests`.
    /// `edge-agent eval --review N` writes into it.
    pub fn review_requests_dir(&self) -> PathBuf {
        self.device.state_dir.join("review-requests")
    }

    /// The folder a device owner drops signed model packages into (`PKG.tar` with
    /// `PKG.tar.minisig` beside it): `<state_dir>/updates`. See [`crate::update`].
    pub fn updates_dir(&self) -> PathBuf {
        self.device.state_dir.join("updates")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(text, Path::new("agent.toml"))
    }

    #[test]
    fn the_printed_default_config_parses_and_validates() {
        let c = parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(c.mqtt.port, 8883);
        assert!(c.mqtt.tls.is_some());
        assert_eq!(c.sources.len(), 1);
    }

    #[test]
    fn a_misspelt_key_is_an_error_naming_it() {
        let text = DEFAULT_CONFIG.replace("topic_prefix", "topic_prefx");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("topic_prefx"), "{err}");
    }

    #[test]
    fn the_old_tls_file_names_are_read_and_named() {
        let text = DEFAULT_CONFIG
            .replace("\nca_file = ", "\nca = ")
            .replace("\ncert_file = ", "\ncert = ")
            .replace("\nkey_file = ", "\nkey = ");
        let old = parse(&text).unwrap().mqtt.tls.unwrap();
        let new = parse(DEFAULT_CONFIG).unwrap().mqtt.tls.unwrap();
        assert_eq!(
            (old.ca_file, old.cert_file, old.key_file),
            (new.ca_file, new.cert_file, new.key_file)
        );
        assert!(protocol::renamed::renamed_keys(DEFAULT_CONFIG, RENAMED).is_empty());
        let warnings = protocol::renamed::renamed_keys(&text, RENAMED);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("`mqtt.tls.ca_file`"), "{warnings:?}");
    }

    #[test]
    fn an_invalid_device_id_names_the_field() {
        let text = DEFAULT_CONFIG.replace("id = \"pi-kitchen\"", "id = \"pi/kitchen\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("device.id"), "{err}");
    }

    #[test]
    fn durations_are_human_readable() {
        let text = DEFAULT_CONFIG.replace("keep_alive = \"30s\"", "keep_alive = \"1m\"");
        assert_eq!(
            parse(&text).unwrap().mqtt.keep_alive,
            Duration::from_secs(60)
        );
        let text = DEFAULT_CONFIG.replace("keep_alive = \"30s\"", "keep_alive = \"soon\"");
        assert!(parse(&text).unwrap_err().to_string().contains("keep_alive"));
    }

    #[test]
    fn a_message_size_iot_core_cannot_take_is_refused_for_an_iot_core_endpoint() {
        let text =
            DEFAULT_CONFIG.replace("max_message_bytes = 131072", "max_message_bytes = 200000");
        assert_ne!(text, DEFAULT_CONFIG);
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("mqtt.max_message_bytes 200000 is more than AWS IoT Core accepts (131072"),
            "{err}"
        );
        // The same size against another broker is that broker's business (the agent
        // learns its limit from CONNACK); beyond what MQTT can express it is not.
        let local = text.replace(
            "host = \"abcdefghij1234-ats.iot.us-east-1.amazonaws.com\"",
            "host = \"broker.example\"",
        );
        assert_eq!(parse(&local).unwrap().mqtt.max_message_bytes, 200_000);
        let huge = local.replace(
            "max_message_bytes = 200000",
            "max_message_bytes = 300000000",
        );
        let err = parse(&huge).unwrap_err().to_string();
        assert!(err.contains("more than MQTT allows in one packet"), "{err}");
    }

    #[test]
    fn iot_core_endpoints_are_recognised_by_their_host_name() {
        assert!(is_iot_core_endpoint(
            "abcdefghij1234-ats.iot.us-east-1.amazonaws.com"
        ));
        assert!(is_iot_core_endpoint(
            "a1b2-ats.iot.cn-north-1.amazonaws.com.cn"
        ));
        assert!(is_iot_core_endpoint("ABC-ATS.IOT.EU-WEST-1.AMAZONAWS.COM."));
        assert!(!is_iot_core_endpoint("127.0.0.1"));
        assert!(!is_iot_core_endpoint("s3.us-east-1.amazonaws.com"));
    }
}
