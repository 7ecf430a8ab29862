//! `[a2i.setup]`: what `cloud-relay setup` creates (the human task UI, generated from
//! `model.labels`, and the flow definition), with defaults and validation. The limits
//! are SageMaker's (`HumanLoopConfig`, resource names).

use std::time::Duration;

use serde::Deserialize;

use super::{invalid, Config, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupConfig {
    /// Default: the name in `a2i.flow_definition_arn`.
    #[serde(default)]
    pub flow_definition_name: Option<String>,
    /// Default: the flow definition's name.
    #[serde(default)]
    pub task_ui_name: Option<String>,
    /// The private (or vendor) work team: `arn:aws:sagemaker:REGION:ACCOUNT:workteam/...`.
    pub workteam_arn: String,
    /// The IAM role A2I assumes to read the images and write `output.json`.
    pub role_arn: String,
    /// Where A2I writes `output.json`. Default: `s3://<s3.bucket>/a2i-output`.
    #[serde(default)]
    pub output_path: Option<String>,
    #[serde(default = "default_task_title")]
    pub task_title: String,
    #[serde(default = "default_task_description")]
    pub task_description: String,
    /// Reviewers per image (1 to 3); several are consolidated by majority.
    #[serde(default = "default_task_count")]
    pub task_count: u32,
    /// How long one reviewer may take (30s to 8h).
    #[serde(default = "default_task_time_limit", with = "humantime_serde")]
    pub task_time_limit: Duration,
    /// How long a task waits for a reviewer before the loop fails (1m to 10days).
    #[serde(default = "default_task_availability", with = "humantime_serde")]
    pub task_availability: Duration,
    /// The question above the image in the reviewer's form.
    #[serde(default = "default_question")]
    pub question: String,
}

pub fn default_task_title() -> String {
    "Classify the image".to_owned()
}
pub fn default_task_description() -> String {
    "Choose the label that fits the image, or \"none of these\".".to_owned()
}
pub fn default_task_count() -> u32 {
    1
}
pub fn default_task_time_limit() -> Duration {
    Duration::from_secs(3600)
}
pub fn default_task_availability() -> Duration {
    Duration::from_secs(24 * 3600)
}
pub fn default_question() -> String {
    "Which of these is in the image?".to_owned()
}

/// Task UI and flow definition names: `[a-z0-9](-*[a-z0-9])*`, 1 to 63 characters.
fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `arn:PARTITION:SERVICE:...:KIND/NAME` with a non-empty name.
fn valid_arn(arn: &str, service: &str, kind: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == service
        && parts[5]
            .strip_prefix(kind)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|n| !n.is_empty())
}

impl SetupConfig {
    /// The flow definition's name ([`SetupConfig::validate`] makes sure there is one).
    pub fn flow_definition_name<'a>(&'a self, config: &'a Config) -> &'a str {
        self.flow_definition_name
            .as_deref()
            .or_else(|| config.a2i.flow_definition_name())
            .unwrap_or_default()
    }

    pub fn task_ui_name<'a>(&'a self, config: &'a Config) -> &'a str {
        self.task_ui_name
            .as_deref()
            .unwrap_or_else(|| self.flow_definition_name(config))
    }

    pub fn output_path(&self, config: &Config) -> String {
        self.output_path
            .clone()
            .unwrap_or_else(|| format!("s3://{}/a2i-output", config.s3.bucket))
    }

    pub fn validate(&self, config: &Config) -> Result<(), ConfigError> {
        let flow = self.flow_definition_name(config);
        if flow.is_empty() {
            return Err(invalid(
                "a2i.setup.flow_definition_name",
                "is missing (set it, or a2i.flow_definition_arn)",
            ));
        }
        for (key, name) in [
            ("a2i.setup.flow_definition_name", flow),
            ("a2i.setup.task_ui_name", self.task_ui_name(config)),
        ] {
            if !valid_name(name) {
                return Err(invalid(
                    key,
                    format!("{name:?} must be 1 to 63 lowercase letters, digits or hyphens, starting and ending with a letter or digit"),
                ));
            }
        }
        if !valid_arn(&self.workteam_arn, "sagemaker", "workteam") {
            return Err(invalid(
                "a2i.setup.workteam_arn",
                format!("{:?} is not a work team ARN (arn:aws:sagemaker:REGION:ACCOUNT:workteam/private-crowd/NAME)", self.workteam_arn),
            ));
        }
        if !valid_arn(&self.role_arn, "iam", "role") {
            return Err(invalid(
                "a2i.setup.role_arn",
                format!(
                    "{:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
                    self.role_arn
                ),
            ));
        }
        let path = self.output_path(config);
        let ok = protocol::json::parse_s3_prefix_uri(&path).is_some();
        if !ok || path.len() > 1024 {
            return Err(invalid(
                "a2i.setup.output_path",
                format!("{path:?} is not an s3://BUCKET[/PREFIX] URI"),
            ));
        }
        for (key, text, max) in [
            ("a2i.setup.task_title", &self.task_title, 128),
            ("a2i.setup.task_description", &self.task_description, 255),
            ("a2i.setup.question", &self.question, 1000),
        ] {
            if text.trim().is_empty() || text.chars().count() > max {
                return Err(invalid(key, format!("must be 1 to {max} characters")));
            }
        }
        if !(1..=3).contains(&self.task_count) {
            return Err(invalid("a2i.setup.task_count", "must be 1, 2 or 3"));
        }
        if !(Duration::from_secs(30)..=Duration::from_secs(8 * 3600))
            .contains(&self.task_time_limit)
        {
            return Err(invalid(
                "a2i.setup.task_time_limit",
                "must be between 30s and 8h",
            ));
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(10 * 24 * 3600))
            .contains(&self.task_availability)
        {
            return Err(invalid(
                "a2i.setup.task_availability",
                "must be between 1m and 10days",
            ));
        }
        Ok(())
    }
}
