//! AWS IoT Jobs, device side of the MQTT API, and the model-update job document.
//!
//! Topics and payloads follow "Jobs device MQTT API operations" in the AWS IoT
//! Developer Guide (jobs-mqtt-api.html); the local Jobs service of `local-aws` speaks
//! the same, so a device has one code path:
//!
//! | topic (under `$aws/things/{thingName}/jobs/`) | direction | payload |
//! |---|---|---|
//! | `notify-next` | service -> device | [`NextJobExecutionChanged`] |
//! | `start-next` | device -> service | [`StartNextRequest`] |
//! | `start-next/accepted` | service -> device | [`StartNextAccepted`] |
//! | `start-next/rejected`, `{jobId}/update/rejected` | service -> device | [`JobsErrorResponse`] |
//! | `{jobId}/update` | device -> service | [`UpdateRequest`] |
//! | `{jobId}/update/accepted` | service -> device | [`UpdateAccepted`] |
//!
//! Field names are the service's (camelCase); timestamps are Unix seconds as the
//! service sends them. Unknown fields are ignored, as the service adds some.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::json::MessageError;

/// The reserved topics of one thing.
#[derive(Debug, Clone)]
pub struct JobsTopics {
    base: String,
}

impl JobsTopics {
    /// `thing` is the IoT thing name (`[a-zA-Z0-9:_-]+`, at most 128).
    pub fn new(thing: &str) -> Result<Self, MessageError> {
        let ok = !thing.is_empty()
            && thing.len() <= 128
            && thing
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
        if !ok {
            return Err(MessageError::invalid(
                "thing name",
                "thingName",
                format!("{thing:?} must be 1 to 128 of [a-zA-Z0-9:_-]"),
            ));
        }
        Ok(JobsTopics {
            base: format!("$aws/things/{thing}/jobs"),
        })
    }

    pub fn notify_next(&self) -> String {
        format!("{}/notify-next", self.base)
    }
    pub fn start_next(&self) -> String {
        format!("{}/start-next", self.base)
    }
    pub fn start_next_accepted(&self) -> String {
        format!("{}/start-next/accepted", self.base)
    }
    pub fn start_next_rejected(&self) -> String {
        format!("{}/start-next/rejected", self.base)
    }
    pub fn update(&self, job_id: &str) -> String {
        format!("{}/{job_id}/update", self.base)
    }
    /// `{jobId}/update/accepted` of every job: one subscription.
    pub fn update_accepted_all(&self) -> String {
        format!("{}/+/update/accepted", self.base)
    }
    pub fn update_rejected_all(&self) -> String {
        format!("{}/+/update/rejected", self.base)
    }

    /// What a topic under this thing's jobs is, for a message that arrived.
    pub fn classify<'t>(&self, topic: &'t str) -> Option<JobsTopic<'t>> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix('/')?;
        Some(match rest {
            "notify-next" => JobsTopic::NotifyNext,
            "start-next/accepted" => JobsTopic::StartNextAccepted,
            "start-next/rejected" => JobsTopic::StartNextRejected,
            _ => {
                let (job, tail) = rest.split_once('/')?;
                match tail {
                    "update/accepted" => JobsTopic::UpdateAccepted(job),
                    "update/rejected" => JobsTopic::UpdateRejected(job),
                    "update" => JobsTopic::Update(job),
                    _ => return None,
                }
            }
        })
    }

    /// The thing name of a topic under any thing's jobs (service side).
    pub fn thing_of(topic: &str) -> Option<&str> {
        let rest = topic.strip_prefix("$aws/things/")?;
        let (thing, tail) = rest.split_once('/')?;
        tail.starts_with("jobs/").then_some(thing)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobsTopic<'t> {
    NotifyNext,
    StartNextAccepted,
    StartNextRejected,
    /// A device's update request (service side).
    Update(&'t str),
    UpdateAccepted(&'t str),
    UpdateRejected(&'t str),
}

/// A job execution's status (JobExecutionStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobExecutionStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    TimedOut,
    Rejected,
    Removed,
    Canceled,
}

impl JobExecutionStatus {
    /// SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED and CANCELED end an execution.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::InProgress)
    }
}

/// statusDetails: name/value pairs (values at most 1,024 characters).
pub type StatusDetails = BTreeMap<String, String>;

/// JobExecution as the service sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecution {
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_name: Option<String>,
    pub status: JobExecutionStatus,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_details: StatusDetails,
    #[serde(default)]
    pub queued_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub last_updated_at: i64,
    #[serde(default)]
    pub version_number: u64,
    #[serde(default)]
    pub execution_number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_document: Option<serde_json::Value>,
}

/// `notify-next`: the next pending execution changed (`execution` absent: none left).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NextJobExecutionChanged {
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<JobExecution>,
}

/// `start-next`: start (IN_PROGRESS) the next pending execution and send it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartNextRequest {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_details: StatusDetails,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_in_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `start-next/accepted` (`execution` absent when nothing is pending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartNextAccepted {
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<JobExecution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `{jobId}/update`: a new status for this device's execution of the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRequest {
    pub status: JobExecutionStatus,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_details: StatusDetails,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// The execution's state in an accepted update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionState {
    pub status: JobExecutionStatus,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_details: StatusDetails,
    #[serde(default)]
    pub version_number: u64,
}

/// `{jobId}/update/accepted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateAccepted {
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_state: Option<JobExecutionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `.../rejected`: ErrorResponse (`code` e.g. InvalidStateTransition,
/// ResourceNotFound, VersionMismatch, InvalidRequest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobsErrorResponse {
    pub code: String,
    pub message: String,
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_state: Option<JobExecutionState>,
}

/// The `operation` of a model-update job document.
pub const MODEL_UPDATE_OPERATION: &str = "edge-a2i.model-update";
/// Format version of [`ModelUpdateDocument`].
pub const MODEL_UPDATE_VERSION: u32 = 1;

/// The job document of a model rollout (`fleet publish` / `fleet rollback`):
///
/// ```json
/// {"operation":"edge-a2i.model-update","v":1,"name":"dogs-mobilenetv2","version":"1.0.1",
///  "package":{"url":"https://...presigned...","size":9041920,
///             "sha256":"<64 hex>","signature":"untrusted comment: ...\n..."}}
/// ```
///
/// The URL is presigned for S3 (or the local object store's); size and sha256 are of
/// the package's tar file; `signature` is its `.minisig` text. Nothing here is
/// trusted before the signature checks against a key pinned in the agent's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelUpdateDocument {
    pub operation: String,
    pub v: u32,
    pub name: String,
    pub version: String,
    pub package: PackageLocation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageLocation {
    pub url: String,
    /// Bytes of the tar file.
    pub size: u64,
    /// Lowercase hex sha256 of the tar file.
    pub sha256: String,
    /// The `.minisig` text.
    pub signature: String,
}

const DOCUMENT: &str = "model-update job document";

impl ModelUpdateDocument {
    /// Reads a job document; an operation other than a model update is an error the
    /// device reports as REJECTED.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, MessageError> {
        let op = value
            .get("operation")
            .and_then(|o| o.as_str())
            .unwrap_or("");
        if op != MODEL_UPDATE_OPERATION {
            return Err(MessageError::invalid(
                DOCUMENT,
                "operation",
                format!("{op:?} is not {MODEL_UPDATE_OPERATION:?}"),
            ));
        }
        let doc: ModelUpdateDocument =
            serde_json::from_value(value.clone()).map_err(|source| MessageError::Json {
                message: DOCUMENT,
                source,
            })?;
        if doc.v != MODEL_UPDATE_VERSION {
            return Err(MessageError::UnsupportedVersion {
                message: DOCUMENT,
                found: doc.v.into(),
                supported: MODEL_UPDATE_VERSION,
            });
        }
        crate::json::check_sha256(DOCUMENT, "package.sha256", &doc.package.sha256)?;
        if !(doc.package.url.starts_with("http://") || doc.package.url.starts_with("https://")) {
            return Err(MessageError::invalid(
                DOCUMENT,
                "package.url",
                "must be an http:// or https:// URL",
            ));
        }
        Ok(doc)
    }
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
