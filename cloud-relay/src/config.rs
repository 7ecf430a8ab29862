//! The relay's configuration: `/etc/cloud-relay/config.toml` (TOML, unknown keys
//! refused), defaults in one place ([`Config::default`] and the `default_*` functions),
//! and [`Config::validate`], which runs before anything starts and names the key at
//! fault. `cloud-relay print-default-config` prints [`DEFAULT_CONFIG`], an annotated
//! example that a test parses, so it cannot drift from the types.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// The annotated default configuration (`cloud-relay print-default-config`).
pub const DEFAULT_CONFIG: &str = include_str!("relay/default-config.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub s3: S3Config,
    pub a2i: A2iConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub intake: IntakeConfig,
    #[serde(default)]
    pub results: ResultsConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// MQTT client id; with a persistent session it must be stable across restarts and
    /// unique per relay instance.
    pub client_id: String,
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// MQTT 5 shared-subscription group: relays with the same group split the events.
    #[serde(default)]
    pub share_group: Option<String>,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// How long the broker keeps the session (and queues events) while the relay is away.
    #[serde(default = "default_session_expiry", with = "humantime_serde")]
    pub session_expiry: Duration,
    /// MQTT 5 receive maximum: unacknowledged events the broker sends at once.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// e.g. `["x-amzn-mqtt-ca"]` for IoT Core on port 443.
    #[serde(default)]
    pub alpn: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// An S3-compatible server instead of AWS (local mode, tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Path-style URLs (`http://host/bucket/key`); on by default with `endpoint_url`.
    #[serde(default)]
    pub force_path_style: Option<bool>,
    #[serde(default = "default_images_prefix")]
    pub images_prefix: String,
    #[serde(default = "default_manifest_prefix")]
    pub manifest_prefix: String,
    #[serde(default = "default_staging_prefix")]
    pub staging_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct A2iConfig {
    pub flow_definition_arn: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// An A2I-compatible runtime endpoint (the local review service).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The SageMaker control plane (for `setup` and the flow-definition check).
    #[serde(default)]
    pub sagemaker_endpoint_url: Option<String>,
    /// Name of the answer field in the task form (`<crowd-image-classifier name=...>`).
    #[serde(default = "default_answer_field")]
    pub answer_field: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model's class labels in class-index order (or `labels_file`).
    #[serde(default)]
    pub labels: Vec<String>,
    /// One label per line, in class-index order.
    #[serde(default)]
    pub labels_file: Option<PathBuf>,
}

/// How chunked events are reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Assembly {
    /// `memory` without `share_group`, `object-store` with it.
    #[default]
    Auto,
    /// In this relay's memory: all chunks of an event must reach this relay.
    Memory,
    /// Chunks staged in S3, so relays on a shared subscription (which deals one
    /// event's chunks out to different relays) can complete each other's sets.
    ObjectStore,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeConfig {
    #[serde(default)]
    pub assembly: Assembly,
    /// Events processed at once (S3 uploads and StartHumanLoop calls in flight).
    #[serde(default = "default_workers")]
    pub workers: usize,
    #[serde(default = "default_chunk_timeout", with = "humantime_serde")]
    pub chunk_timeout: Duration,
    #[serde(default = "default_max_pending_bytes")]
    pub max_pending_bytes: u64,
    #[serde(default = "default_max_pending_sets")]
    pub max_pending_sets: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How far back the first listing of human loops reaches after a start.
    #[serde(default = "default_lookback", with = "humantime_serde")]
    pub lookback: Duration,
    #[serde(default = "default_label_attribute")]
    pub label_attribute: String,
    #[serde(default = "default_job_name")]
    pub job_name: String,
    /// Publish the reviewed label to `{prefix}/{device}/reviews`.
    #[serde(default)]
    pub publish_reviews: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Prometheus `/metrics` listener; keep it on loopback. Absent: no endpoint.
    #[serde(default = "default_metrics_listen")]
    pub listen: Option<SocketAddr>,
}

pub fn default_mqtt_port() -> u16 {
    8883
}
pub fn default_topic_prefix() -> String {
    protocol::topics::DEFAULT_PREFIX.to_owned()
}
pub fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
pub fn default_session_expiry() -> Duration {
    Duration::from_secs(24 * 3600)
}
pub fn default_max_inflight() -> u16 {
    128
}
pub fn default_region() -> String {
    "us-east-1".to_owned()
}
pub fn default_images_prefix() -> String {
    "events".to_owned()
}
pub fn default_manifest_prefix() -> String {
    "manifest".to_owned()
}
pub fn default_staging_prefix() -> String {
    "staging".to_owned()
}
pub fn default_answer_field() -> String {
    protocol::a2i::DEFAULT_ANSWER_FIELD.to_owned()
}
pub fn default_workers() -> usize {
    16
}
pub fn default_chunk_timeout() -> Duration {
    Duration::from_secs(300)
}
pub fn default_max_pending_bytes() -> u64 {
    64 * 1024 * 1024
}
pub fn default_max_pending_sets() -> usize {
    256
}
fn yes() -> bool {
    true
}
pub fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}
pub fn default_lookback() -> Duration {
    Duration::from_secs(14 * 24 * 3600)
}
pub fn default_label_attribute() -> String {
    protocol::manifest::DEFAULT_ATTRIBUTE.to_owned()
}
pub fn default_job_name() -> String {
    "labeling-job/edge-a2i".to_owned()
}
pub fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
pub fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
pub fn default_metrics_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            assembly: Assembly::Auto,
            workers: default_workers(),
            chunk_timeout: default_chunk_timeout(),
            max_pending_bytes: default_max_pending_bytes(),
            max_pending_sets: default_max_pending_sets(),
        }
    }
}

impl Default for ResultsConfig {
    fn default() -> Self {
        ResultsConfig {
            enabled: true,
            poll_interval: default_poll_interval(),
            lookback: default_lookback(),
            label_attribute: default_label_attribute(),
            job_name: default_job_name(),
            publish_reviews: false,
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics_listen(),
        }
    }
}

/// A configuration that cannot be used; each names the file or key at fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

impl Config {
    /// Reads, parses and validates `path`; relative `labels_file` is resolved
    /// against the config file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })?;
        if let Some(file) = &config.model.labels_file {
            let file = path.parent().unwrap_or(Path::new(".")).join(file);
            let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                path: file.clone(),
                source,
            })?;
            config.model.labels = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            config.model.labels_file = Some(file);
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML without reading files or validating.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            source: Box::new(source),
        })
    }

    pub fn topics(&self) -> protocol::Topics {
        protocol::Topics::new(self.mqtt.topic_prefix.clone()).expect("validated: mqtt.topic_prefix")
    }

    /// Whether chunk sets are staged in S3 (see [`Assembly`]).
    pub fn stages_chunks(&self) -> bool {
        match self.intake.assembly {
            Assembly::Auto => self.mqtt.share_group.is_some(),
            Assembly::Memory => false,
            Assembly::ObjectStore => true,
        }
    }

    /// Labels the reviewer chooses from: the model's classes and "none of these".
    pub fn review_labels(&self) -> Vec<String> {
        let mut labels = self.model.labels.clone();
        labels.push(protocol::a2i::NONE_OF_THESE.to_owned());
        labels
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.mqtt;
        if m.host.is_empty() {
            return Err(invalid("mqtt.host", "is empty"));
        }
        protocol::DeviceId::new(m.client_id.clone())
            .map_err(|e| invalid("mqtt.client_id", e.to_string()))?;
        let topics = protocol::Topics::new(m.topic_prefix.clone())
            .map_err(|e| invalid("mqtt.topic_prefix", e.to_string()))?;
        if let Some(group) = &m.share_group {
            topics
                .shared_events_filter(group)
                .map_err(|e| invalid("mqtt.share_group", e.to_string()))?;
        }
        if m.max_inflight == 0 {
            return Err(invalid("mqtt.max_inflight", "must be at least 1"));
        }
        if m.keep_alive < Duration::from_secs(5) {
            return Err(invalid("mqtt.keep_alive", "must be at least 5s"));
        }
        if m.session_expiry.as_secs() > u64::from(u32::MAX) {
            return Err(invalid("mqtt.session_expiry", "is longer than 136 years"));
        }
        if m.password.is_some() && m.username.is_none() {
            return Err(invalid("mqtt.password", "is set without mqtt.username"));
        }
        if let Some(tls) = &m.tls {
            for (key, path) in [
                ("mqtt.tls.ca_file", &tls.ca_file),
                ("mqtt.tls.cert_file", &tls.cert_file),
                ("mqtt.tls.key_file", &tls.key_file),
            ] {
                if path.as_os_str().is_empty() {
                    return Err(invalid(key, "is empty"));
                }
            }
        }
        let s3 = &self.s3;
        let bucket_ok = (3..=63).contains(&s3.bucket.len())
            && s3
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(invalid(
                "s3.bucket",
                format!(
                    "{:?} is not a bucket name (3-63 lowercase letters, digits, '-', '.')",
                    s3.bucket
                ),
            ));
        }
        for (key, prefix) in [
            ("s3.images_prefix", &s3.images_prefix),
            ("s3.manifest_prefix", &s3.manifest_prefix),
            ("s3.staging_prefix", &s3.staging_prefix),
        ] {
            if prefix.is_empty() || prefix.starts_with('/') || prefix.ends_with('/') {
                return Err(invalid(
                    key,
                    format!("{prefix:?} must be non-empty without a leading or trailing '/'"),
                ));
            }
        }
        let prefixes = [&s3.images_prefix, &s3.manifest_prefix, &s3.staging_prefix];
        for (i, a) in prefixes.iter().enumerate() {
            for b in &prefixes[i + 1..] {
                if a == b {
                    return Err(invalid(
                        "s3.images_prefix",
                        "images, manifest and staging prefixes must differ",
                    ));
                }
            }
        }
        for (key, url) in [
            ("s3.endpoint_url", &s3.endpoint_url),
            ("a2i.endpoint_url", &self.a2i.endpoint_url),
            (
                "a2i.sagemaker_endpoint_url",
                &self.a2i.sagemaker_endpoint_url,
            ),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(
                        key,
                        format!("{url:?} is not an http:// or https:// URL"),
                    ));
                }
            }
        }
        let arn = &self.a2i.flow_definition_arn;
        let arn_ok = arn.starts_with("arn:")
            && arn
                .rsplit_once(":flow-definition/")
                .is_some_and(|(_, name)| !name.is_empty());
        if !arn_ok {
            return Err(invalid(
                "a2i.flow_definition_arn",
                format!("{arn:?} is not a flow definition ARN (arn:aws:sagemaker:REGION:ACCOUNT:flow-definition/NAME)"),
            ));
        }
        if self.a2i.answer_field.is_empty() {
            return Err(invalid("a2i.answer_field", "is empty"));
        }
        if self.model.labels.is_empty() {
            return Err(invalid(
                "model.labels",
                "is empty (set model.labels or model.labels_file)",
            ));
        }
        for (i, label) in self.model.labels.iter().enumerate() {
            if label.trim().is_empty() || label == protocol::a2i::NONE_OF_THESE {
                return Err(invalid(
                    "model.labels",
                    format!("label {i} ({label:?}) is empty or reserved"),
                ));
            }
            if self.model.labels[..i].contains(label) {
                return Err(invalid(
                    "model.labels",
                    format!("label {label:?} appears twice"),
                ));
            }
        }
        let intake = &self.intake;
        if intake.workers == 0 {
            return Err(invalid("intake.workers", "must be at least 1"));
        }
        if intake.max_pending_sets == 0 {
            return Err(invalid("intake.max_pending_sets", "must be at least 1"));
        }
        if intake.max_pending_bytes < 1024 * 1024 {
            return Err(invalid(
                "intake.max_pending_bytes",
                "must be at least 1 MiB",
            ));
        }
        if intake.chunk_timeout < Duration::from_secs(1) {
            return Err(invalid("intake.chunk_timeout", "must be at least 1s"));
        }
        let r = &self.results;
        protocol::manifest::validate_attribute(&r.label_attribute)
            .map_err(|e| invalid("results.label_attribute", e.to_string()))?;
        if r.job_name.is_empty() {
            return Err(invalid("results.job_name", "is empty"));
        }
        if r.poll_interval < Duration::from_millis(100) {
            return Err(invalid("results.poll_interval", "must be at least 100ms"));
        }
        if self.retry.initial_backoff.is_zero()
            || self.retry.max_backoff < self.retry.initial_backoff
        {
            return Err(invalid(
                "retry.max_backoff",
                "must be at least retry.initial_backoff, which must be above 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> String {
        r#"
[mqtt]
host = "127.0.0.1"
client_id = "relay-1"
[s3]
bucket = "edge-a2i"
[a2i]
flow_definition_arn = "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/dogs"
[model]
labels = ["beagle", "pug"]
"#
        .to_owned()
    }

    #[test]
    fn the_annotated_default_config_parses_and_validates() {
        let c = Config::parse(DEFAULT_CONFIG).unwrap();
        c.validate().unwrap();
        assert_eq!(c.mqtt.port, 8883);
        assert_eq!(c.intake.workers, 16);
        assert!(c.stages_chunks(), "the default config shares the load");
    }

    #[test]
    fn a_minimal_config_gets_defaults() {
        let c = Config::parse(&minimal()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.mqtt.session_expiry, Duration::from_secs(86400));
        assert_eq!(c.s3.images_prefix, "events");
        assert_eq!(c.results.label_attribute, "label");
        assert!(!c.stages_chunks());
        assert_eq!(c.review_labels(), ["beagle", "pug", "none of these"]);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let text = minimal().replace("[s3]", "[s3]\nbuckt = \"x\"");
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("unknown field `buckt`"), "{e}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            (
                "bucket = \"edge-a2i\"",
                "bucket = \"Edge_A2I\"",
                "s3.bucket",
            ),
            (
                "labels = [\"beagle\", \"pug\"]",
                "labels = []",
                "model.labels",
            ),
            (
                "labels = [\"beagle\", \"pug\"]",
                "labels = [\"pug\", \"pug\"]",
                "model.labels",
            ),
            (
                "flow-definition/dogs",
                "human-task-ui/dogs",
                "a2i.flow_definition_arn",
            ),
            (
                "client_id = \"relay-1\"",
                "client_id = \"a b\"",
                "mqtt.client_id",
            ),
        ];
        for (from, to, key) in cases {
            let c = Config::parse(&minimal().replace(from, to)).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(key), "{to}: {e}");
        }
        let text = minimal().replace("[intake]", "") + "[intake]\nchunk_timeout = \"soon\"\n";
        let e = Config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("chunk_timeout"), "{e}");
    }
}
