//! The relay's configuration: `/etc/cloud-relay/config.toml` (TOML, unknown keys
//! refused), defaults in one place ([`Config::default`] and the `default_*` functions),
//! and [`Config::validate`] (in [`validate`]), which runs before anything starts and
//! names the key at fault. `[a2i.setup]` ([`SetupConfig`], in [`setup`]) is what
//! `cloud-relay setup` creates the task UI and flow definition from. `cloud-relay print-default-config` prints [`DEFAULT_CONFIG`], an annotated
//! example that a test parses, so it cannot drift from the types.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

mod setup;
mod validate;

pub use setup::SetupConfig;
pub use validate::Purpose;

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
    /// Spelt `max_inflight` before; that name is read, with a warning, for a release.
    #[serde(default = "default_max_in_flight", alias = "max_inflight")]
    pub max_in_flight: u16,
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
    /// Required by `run`; `setup` prints it (empty when absent).
    #[serde(default)]
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
    /// What `cloud-relay setup` creates.
    #[serde(default)]
    pub setup: Option<SetupConfig>,
}

impl A2iConfig {
    /// The name at the end of `flow_definition_arn` (`None` if it is not such an ARN).
    pub fn flow_definition_name(&self) -> Option<&str> {
        let arn = &self.flow_definition_arn;
        if !arn.starts_with("arn:") {
            return None;
        }
        arn.rsplit_once(":flow-definition/")
            .map(|(_, name)| name)
            .filter(|name| !name.is_empty() && !name.contains('/'))
    }
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
    /// Completion events from SQS (A2I -> EventBridge -> SQS). Without it the relay
    /// lists loops every `poll_interval`, as before, and says so at start-up.
    #[serde(default)]
    pub queue: Option<QueueConfig>,
    /// With a queue: how often the listing runs as a reconciliation sweep that
    /// catches what an event missed.
    #[serde(default = "default_sweep_interval", with = "humantime_serde")]
    pub sweep_interval: Duration,
}

/// `[results.queue]`: the SQS queue an EventBridge rule fills with A2I's "SageMaker
/// A2I HumanLoop Status Change" events (AWS, "Use Amazon CloudWatch Events in Amazon
/// Augmented AI"). `cloud-relay setup` creates it, its dead-letter queue `{name}-dlq`
/// and the rule `{name}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The queue's name (its URL is looked up at start-up with GetQueueUrl).
    pub name: String,
    /// An SQS-compatible server instead of AWS (local mode, tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// An EventBridge-compatible server instead of AWS, for `setup`.
    #[serde(default)]
    pub events_endpoint_url: Option<String>,
    /// How long a received message stays hidden from other relays; one not deleted by
    /// then (its relay died or failed) is delivered again.
    #[serde(default = "default_visibility_timeout", with = "humantime_serde")]
    pub visibility_timeout: Duration,
    /// Long-polling wait of one receive (at most 20 s).
    #[serde(default = "default_wait_time", with = "humantime_serde")]
    pub wait_time: Duration,
    /// Receives after which SQS moves a message to the dead-letter queue (`setup`
    /// writes it into the queue's redrive policy).
    #[serde(default = "default_max_receive_count")]
    pub max_receive_count: u32,
}

impl QueueConfig {
    pub fn dead_letter_queue_name(&self) -> String {
        format!("{}-dlq", self.name)
    }

    pub fn rule_name(&self) -> &str {
        &self.name
    }
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
pub fn default_max_in_flight() -> u16 {
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
pub fn default_sweep_interval() -> Duration {
    Duration::from_secs(3600)
}
pub fn default_visibility_timeout() -> Duration {
    Duration::from_secs(60)
}
pub fn default_wait_time() -> Duration {
    Duration::from_secs(20)
}
pub fn default_max_receive_count() -> u32 {
    5
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
            queue: None,
            sweep_interval: default_sweep_interval(),
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
    #[error("cannot read {path}")]
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

/// Settings renamed so that both daemons spell them alike.
pub const RENAMED: &[protocol::renamed::Renamed] = &[protocol::renamed::Renamed {
    old: "mqtt.max_inflight",
    new: "mqtt.max_in_flight",
}];

impl Config {
    /// Reads, parses and validates `path` for `run`; settings spelt the old way
    /// ([`RENAMED`]) are read and logged at warn; relative `labels_file` is
    /// resolved against the config file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_for(path, Purpose::Run)
    }

    /// [`Config::load`], validated for `purpose`.
    pub fn load_for(path: &Path, purpose: Purpose) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        for warning in protocol::renamed::renamed_keys(&text, RENAMED) {
            tracing::warn!(config = %path.display(), "{warning}");
        }
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
        config.validate_for(purpose)?;
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
}

#[cfg(test)]
mod tests;
