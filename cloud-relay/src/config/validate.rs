//! [`Config::validate`]: every key checked before anything starts, each error naming
//! its key. `setup` validates with [`Purpose::Setup`], which lets
//! `a2i.flow_definition_arn` be missing (setup prints it) but needs `[a2i.setup]`.

use std::time::Duration;

use super::{invalid, Config, ConfigError};

/// What the configuration is loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The relay and the commands that talk to S3 and A2I.
    Run,
    /// `cloud-relay setup`: creates the flow definition the relay will use.
    Setup,
    /// `cloud-relay fleet`: needs the bucket and the broker, not the review flow.
    Fleet,
}

impl Config {
    /// Everything `run` needs; names the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_for(Purpose::Run)
    }

    pub fn validate_for(&self, purpose: Purpose) -> Result<(), ConfigError> {
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
        if m.max_in_flight == 0 {
            return Err(invalid("mqtt.max_in_flight", "must be at least 1"));
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
        if arn.is_empty() && purpose == Purpose::Run {
            return Err(invalid(
                "a2i.flow_definition_arn",
                "is missing (`cloud-relay setup` creates the flow definition and prints it)",
            ));
        }
        if !arn.is_empty() && self.a2i.flow_definition_name().is_none() {
            return Err(invalid(
                "a2i.flow_definition_arn",
                format!("{arn:?} is not a flow definition ARN (arn:aws:sagemaker:REGION:ACCOUNT:flow-definition/NAME)"),
            ));
        }
        // A flow definition lives in one region, and every A2I and SageMaker call goes
        // to `a2i.region`: a flow elsewhere would be "not found" at the first loop.
        if let Some(arn_region) = arn
            .split(':')
            .nth(3)
            .filter(|_| self.a2i.flow_definition_name().is_some())
        {
            if arn_region != self.a2i.region {
                return Err(invalid(
                    "a2i.region",
                    format!(
                        "is {:?}, but the flow definition {arn:?} is in {arn_region:?} (A2I and SageMaker calls go to a2i.region)",
                        self.a2i.region
                    ),
                ));
            }
        }
        match &self.a2i.setup {
            Some(setup) => setup.validate(self)?,
            None if purpose == Purpose::Setup => {
                return Err(invalid(
                    "a2i.setup",
                    "is missing: `cloud-relay setup` needs the [a2i.setup] table (see print-default-config)",
                ))
            }
            None => {}
        }
        if self.a2i.answer_field.is_empty() {
            return Err(invalid("a2i.answer_field", "is empty"));
        }
        // Rollouts carry their own labels in the package; only the review needs them.
        if self.model.labels.is_empty() && purpose != Purpose::Fleet {
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
        if r.sweep_interval < Duration::from_millis(100) {
            return Err(invalid("results.sweep_interval", "must be at least 100ms"));
        }
        if let Some(q) = &r.queue {
            // SQS: up to 80 characters, alphanumerics, hyphens and underscores; the
            // dead-letter queue's name adds "-dlq" (AWS, CreateQueue API reference).
            let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if q.name.is_empty() || q.name.len() > 76 || !q.name.chars().all(ok) {
                return Err(invalid(
                    "results.queue.name",
                    "must be 1-76 letters, digits, hyphens or underscores",
                ));
            }
            if q.wait_time > Duration::from_secs(20) {
                return Err(invalid("results.queue.wait_time", "must be at most 20s"));
            }
            if q.visibility_timeout < Duration::from_secs(1)
                || q.visibility_timeout > Duration::from_secs(12 * 3600)
            {
                return Err(invalid(
                    "results.queue.visibility_timeout",
                    "must be between 1s and 12h",
                ));
            }
            if !(1..=1000).contains(&q.max_receive_count) {
                return Err(invalid(
                    "results.queue.max_receive_count",
                    "must be between 1 and 1000",
                ));
            }
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
