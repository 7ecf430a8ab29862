//! The records of the local Jobs service: a job, its executions, the control API's
//! errors, the `notify-next` message to send, and the input rules (job ids, thing
//! names, statusDetails) of the AWS IoT API Reference (CreateJob,
//! UpdateJobExecution). [`super::state`] changes them.

use std::collections::{BTreeMap, VecDeque};

use protocol::jobs::{
    JobExecution, JobExecutionState, JobExecutionStatus, JobsErrorResponse,
    NextJobExecutionChanged, StatusDetails,
};
use serde::{Deserialize, Serialize};

use super::config::{AbortConfig, RolloutConfig, RolloutPace};

/// Jobs kept, finished ones included (the oldest finished are dropped beyond).
pub const MAX_JOBS: usize = 100;
/// Targets of one job.
pub const MAX_TARGETS: usize = 1000;
/// A job document's size (IoT's limit for a document given inline).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;
/// Name/value pairs in an execution's statusDetails (a local limit).
pub const MAX_STATUS_DETAILS: usize = 10;

/// A job's status (DescribeJob's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    InProgress,
    Canceled,
    Completed,
}

/// One thing's execution of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub status: JobExecutionStatus,
    #[serde(default)]
    pub status_details: StatusDetails,
    pub queued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub last_updated_at_ms: u64,
    pub version_number: u64,
    pub execution_number: u64,
    /// Order of queuing over all jobs: "oldest" for start-next.
    pub queue_seq: u64,
}

/// A job (CreateJob's input plus where it stands).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub job_id: String,
    pub description: Option<String>,
    pub document: serde_json::Value,
    /// Thing names, in the order given.
    pub targets: Vec<String>,
    pub status: JobStatus,
    pub rollout: RolloutConfig,
    pub abort: Option<AbortConfig>,
    pub created_at_ms: u64,
    pub last_updated_at_ms: u64,
    pub completed_at_ms: Option<u64>,
    pub reason_code: Option<String>,
    pub comment: Option<String>,
    pub force_canceled: bool,
    /// Targets not notified yet, next first.
    pub pending: VecDeque<String>,
    pub pace: RolloutPace,
    /// By thing name.
    pub executions: BTreeMap<String, Execution>,
}

/// CreateJob's input, already read from the request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub job_id: String,
    pub description: Option<String>,
    pub document: serde_json::Value,
    pub targets: Vec<String>,
    pub rollout: RolloutConfig,
    pub abort: Option<AbortConfig>,
}

/// What the control API reports (mapped to IoT's exception names by the HTTP layer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobsError {
    #[error("job {0:?} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    LimitExceeded(String),
}

/// `notify-next` for one thing.
#[derive(Debug, Clone, PartialEq)]
pub struct NextChange {
    pub thing: String,
    pub message: NextJobExecutionChanged,
}

pub(crate) fn secs(ms: u64) -> i64 {
    (ms / 1000) as i64
}

/// IoT's thing-name rule, shared with the device's topic builder.
pub fn valid_thing_name(name: &str) -> bool {
    protocol::jobs::JobsTopics::new(name).is_ok()
}

/// Job ids: `[a-zA-Z0-9_-]{1,64}` (CreateJob).
pub fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// statusDetails as the Jobs API takes them: keys `[a-zA-Z0-9:_-]{1,128}`, values of 1
/// to 1,024 characters without control characters.
pub fn check_status_details(details: &StatusDetails) -> Result<(), String> {
    if details.len() > MAX_STATUS_DETAILS {
        return Err(format!(
            "statusDetails has {} entries; at most {MAX_STATUS_DETAILS}",
            details.len()
        ));
    }
    for (k, v) in details {
        let key_ok = !k.is_empty()
            && k.len() <= 128
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
        if !key_ok {
            return Err(format!(
                "statusDetails key {k:?} must be 1 to 128 of [a-zA-Z0-9:_-]"
            ));
        }
        if v.is_empty() || v.chars().count() > 1024 || v.chars().any(char::is_control) {
            return Err(format!(
                "statusDetails value of {k:?} must be 1 to 1024 characters without control characters"
            ));
        }
    }
    Ok(())
}

pub(crate) fn reject(
    code: &str,
    message: impl Into<String>,
    now_ms: u64,
    client_token: Option<String>,
    state: Option<JobExecutionState>,
) -> JobsErrorResponse {
    JobsErrorResponse {
        code: code.to_owned(),
        message: message.into(),
        timestamp: secs(now_ms),
        client_token,
        execution_state: state,
    }
}

impl Execution {
    pub fn state(&self) -> JobExecutionState {
        JobExecutionState {
            status: self.status,
            status_details: self.status_details.clone(),
            version_number: self.version_number,
        }
    }
}

impl Job {
    /// The execution as the device API sends it (document included).
    pub fn wire_execution(&self, thing: &str, e: &Execution) -> JobExecution {
        JobExecution {
            job_id: self.job_id.clone(),
            thing_name: Some(thing.to_owned()),
            status: e.status,
            status_details: e.status_details.clone(),
            queued_at: secs(e.queued_at_ms),
            started_at: e.started_at_ms.map(secs),
            last_updated_at: secs(e.last_updated_at_ms),
            version_number: e.version_number,
            execution_number: e.execution_number,
            job_document: Some(self.document.clone()),
        }
    }

    /// How many executions are in `status`.
    pub fn count(&self, status: JobExecutionStatus) -> usize {
        self.executions
            .values()
            .filter(|e| e.status == status)
            .count()
    }

    pub(crate) fn finish_if_done(&mut self, now_ms: u64) {
        if self.status == JobStatus::InProgress
            && self.pending.is_empty()
            && self.executions.values().all(|e| e.status.is_terminal())
        {
            self.status = JobStatus::Completed;
            self.completed_at_ms = Some(now_ms);
            self.last_updated_at_ms = now_ms;
        }
    }

    /// Cancels: no more notifications; QUEUED executions (IN_PROGRESS ones too when
    /// `force`) become CANCELED.
    pub(crate) fn cancel(
        &mut self,
        force: bool,
        reason_code: Option<String>,
        comment: Option<String>,
        now_ms: u64,
    ) {
        self.status = JobStatus::Canceled;
        self.pending.clear();
        self.force_canceled |= force;
        self.reason_code = reason_code.or(self.reason_code.take());
        self.comment = comment.or(self.comment.take());
        self.last_updated_at_ms = now_ms;
        self.completed_at_ms.get_or_insert(now_ms);
        for e in self.executions.values_mut() {
            let cancel = match e.status {
                JobExecutionStatus::Queued => true,
                JobExecutionStatus::InProgress => force,
                _ => false,
            };
            if cancel {
                e.status = JobExecutionStatus::Canceled;
                e.last_updated_at_ms = now_ms;
                e.version_number += 1;
            }
        }
    }
}
