//! The local Jobs service as a pure state machine: jobs, their executions per thing,
//! the staged rollout and the abort. No I/O and no clock: every operation takes the
//! time (`now_ms`, milliseconds since the Unix epoch); the MQTT and HTTP adapters in
//! [`super::service`] and [`super::http`] do the rest.
//!
//! Lifecycle (AWS IoT Developer Guide, "Jobs concepts" and "Jobs device MQTT API
//! operations"): [`JobsState::create_job`] makes an IN_PROGRESS job whose targets are
//! not yet notified; [`JobsState::tick`] queues executions (QUEUED) as the rollout pace
//! allows, which is what "notified" means here; a device's `start-next`
//! ([`JobsState::start_next`]) moves its oldest pending execution (IN_PROGRESS first,
//! then QUEUED) to IN_PROGRESS; its `{jobId}/update` ([`JobsState::update`]) moves it on
//! to SUCCEEDED, FAILED or REJECTED. After a terminal update the job's abort criteria
//! are checked: when met, the job is CANCELED and its executions still QUEUED or
//! IN_PROGRESS become CANCELED. A job whose targets were all notified and whose
//! executions are all terminal is COMPLETED. [`JobsState::cancel_job`] is CancelJob:
//! QUEUED executions are CANCELED, IN_PROGRESS ones too with `force`.
//!
//! Whenever a thing's next pending execution changes, a [`NextChange`] is queued for
//! the adapter to publish on `notify-next` (drain them with
//! [`JobsState::drain_notifications`]).
//!
//! Memory is bounded: at most [`MAX_JOBS`] jobs (the oldest finished ones are dropped
//! to make room), [`MAX_TARGETS`] targets each, documents of at most
//! [`MAX_DOCUMENT_BYTES`], and at most [`MAX_STATUS_DETAILS`] status details per
//! execution.

use std::collections::BTreeMap;

use protocol::jobs::{
    JobExecutionStatus, JobsErrorResponse, NextJobExecutionChanged, StartNextAccepted,
    StartNextRequest, StatusDetails, UpdateAccepted, UpdateRequest,
};
use serde::{Deserialize, Serialize};

use super::config::RolloutPace;
pub use super::model::*;
use super::model::{reject, secs};

/// The whole service state (persisted as JSON by the service).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobsState {
    /// By job id.
    pub jobs: BTreeMap<String, Job>,
    next_queue_seq: u64,
    #[serde(skip)]
    notifications: Vec<NextChange>,
}

impl JobsState {
    /// The job a thing should work on next: its oldest IN_PROGRESS execution, else its
    /// oldest QUEUED one.
    pub fn next_pending(&self, thing: &str) -> Option<(&Job, &Execution)> {
        let mut best: Option<(&Job, &Execution)> = None;
        for job in self.jobs.values() {
            let Some(e) = job.executions.get(thing) else {
                continue;
            };
            if e.status.is_terminal() {
                continue;
            }
            let rank = |e: &Execution| (e.status != JobExecutionStatus::InProgress, e.queue_seq);
            if best.is_none_or(|(_, b)| rank(e) < rank(b)) {
                best = Some((job, e));
            }
        }
        best
    }

    fn next_job_id(&self, thing: &str) -> Option<String> {
        self.next_pending(thing).map(|(j, _)| j.job_id.clone())
    }

    /// Runs `f`, then queues `notify-next` for each of `things` whose next pending
    /// execution changed.
    fn tracking<R>(&mut self, things: &[String], now_ms: u64, f: impl FnOnce(&mut Self) -> R) -> R {
        let before: Vec<Option<String>> = things.iter().map(|t| self.next_job_id(t)).collect();
        let r = f(self);
        for (thing, before) in things.iter().zip(before) {
            if self.next_job_id(thing) != before {
                let execution = self
                    .next_pending(thing)
                    .map(|(j, e)| j.wire_execution(thing, e));
                self.notifications.push(NextChange {
                    thing: thing.clone(),
                    message: NextJobExecutionChanged {
                        timestamp: secs(now_ms),
                        execution,
                    },
                });
            }
        }
        r
    }

    /// The `notify-next` messages queued since the last call.
    pub fn drain_notifications(&mut self) -> Vec<NextChange> {
        std::mem::take(&mut self.notifications)
    }

    /// CreateJob. Executions are queued by the next [`Self::tick`].
    pub fn create_job(&mut self, new: NewJob, now_ms: u64) -> Result<(), JobsError> {
        let invalid = |m: String| Err(JobsError::InvalidRequest(m));
        if !valid_job_id(&new.job_id) {
            return invalid(format!(
                "jobId {:?} must be 1 to 64 of [a-zA-Z0-9_-]",
                new.job_id
            ));
        }
        if self.jobs.contains_key(&new.job_id) {
            return Err(JobsError::AlreadyExists(new.job_id));
        }
        if new.targets.is_empty() || new.targets.len() > MAX_TARGETS {
            return invalid(format!("targets must hold 1 to {MAX_TARGETS} things"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &new.targets {
            if !valid_thing_name(t) {
                return invalid(format!(
                    "target {t:?} is not a thing name ([a-zA-Z0-9:_-]{{1,128}})"
                ));
            }
            if !seen.insert(t) {
                return invalid(format!("target {t:?} is given twice"));
            }
        }
        if !new.document.is_object() {
            return invalid("document must be a JSON object".into());
        }
        let size = serde_json::to_vec(&new.document).map_or(usize::MAX, |v| v.len());
        if size > MAX_DOCUMENT_BYTES {
            return invalid(format!(
                "document is {size} bytes; at most {MAX_DOCUMENT_BYTES}"
            ));
        }
        new.rollout.validate().map_err(JobsError::InvalidRequest)?;
        if let Some(a) = &new.abort {
            a.validate().map_err(JobsError::InvalidRequest)?;
        }
        if self.jobs.len() >= MAX_JOBS {
            let oldest_done = self
                .jobs
                .values()
                .filter(|j| j.status != JobStatus::InProgress)
                .min_by_key(|j| (j.completed_at_ms, j.created_at_ms))
                .map(|j| j.job_id.clone());
            match oldest_done {
                Some(id) => {
                    self.jobs.remove(&id);
                }
                None => {
                    return Err(JobsError::LimitExceeded(format!(
                        "{MAX_JOBS} jobs are in progress; cancel or finish one first"
                    )))
                }
            }
        }
        let job = Job {
            pace: RolloutPace::new(&new.rollout),
            pending: new.targets.iter().cloned().collect(),
            job_id: new.job_id.clone(),
            description: new.description,
            document: new.document,
            targets: new.targets,
            status: JobStatus::InProgress,
            rollout: new.rollout,
            abort: new.abort,
            created_at_ms: now_ms,
            last_updated_at_ms: now_ms,
            completed_at_ms: None,
            reason_code: None,
            comment: None,
            force_canceled: false,
            executions: BTreeMap::new(),
        };
        self.jobs.insert(new.job_id, job);
        Ok(())
    }

    /// CancelJob.
    pub fn cancel_job(
        &mut self,
        job_id: &str,
        force: bool,
        reason_code: Option<String>,
        comment: Option<String>,
        now_ms: u64,
    ) -> Result<(), JobsError> {
        let job = self
            .jobs
            .get(job_id)
            .ok_or_else(|| JobsError::NotFound(format!("job {job_id:?} does not exist")))?;
        if job.status == JobStatus::Completed {
            return Err(JobsError::InvalidRequest(format!(
                "job {job_id:?} is COMPLETED and cannot be canceled"
            )));
        }
        let things: Vec<String> = job.executions.keys().cloned().collect();
        self.tracking(&things, now_ms, |s| {
            let job = s.jobs.get_mut(job_id).expect("checked above");
            job.cancel(force, reason_code, comment, now_ms);
        });
        Ok(())
    }

    /// Queues executions as each job's rollout pace allows; true when anything changed.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let mut changed = false;
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in ids {
            loop {
                let job = self.jobs.get_mut(&id).expect("listed");
                if job.status != JobStatus::InProgress || job.pending.is_empty() {
                    break;
                }
                if !job.pace.may_notify(now_ms) {
                    break;
                }
                let thing = job.pending.pop_front().expect("not empty");
                job.pace.notified(&job.rollout, now_ms);
                job.last_updated_at_ms = now_ms;
                let seq = self.next_queue_seq;
                self.next_queue_seq += 1;
                let things = [thing.clone()];
                self.tracking(&things, now_ms, |s| {
                    let job = s.jobs.get_mut(&id).expect("listed");
                    job.executions.insert(
                        thing,
                        Execution {
                            status: JobExecutionStatus::Queued,
                            status_details: StatusDetails::new(),
                            queued_at_ms: now_ms,
                            started_at_ms: None,
                            last_updated_at_ms: now_ms,
                            version_number: 1,
                            execution_number: 1,
                            queue_seq: seq,
                        },
                    );
                });
                changed = true;
            }
        }
        changed
    }

    /// `start-next`: the thing's next pending execution, moved to IN_PROGRESS (with the
    /// request's statusDetails merged in) if it was QUEUED; no execution when none.
    pub fn start_next(
        &mut self,
        thing: &str,
        request: StartNextRequest,
        now_ms: u64,
    ) -> Result<StartNextAccepted, JobsErrorResponse> {
        let token = request.client_token.clone();
        let Some((job, _)) = self.next_pending(thing) else {
            return Ok(StartNextAccepted {
                timestamp: secs(now_ms),
                execution: None,
                client_token: token,
            });
        };
        let job_id = job.job_id.clone();
        let e = self
            .jobs
            .get_mut(&job_id)
            .and_then(|j| j.executions.get_mut(thing))
            .expect("next_pending found it");
        let mut details = e.status_details.clone();
        details.extend(request.status_details);
        if let Err(m) = check_status_details(&details) {
            return Err(reject("InvalidRequest", m, now_ms, token, Some(e.state())));
        }
        let mut changed = false;
        if e.status == JobExecutionStatus::Queued {
            e.status = JobExecutionStatus::InProgress;
            e.started_at_ms = Some(now_ms);
            changed = true;
        }
        if e.status_details != details {
            e.status_details = details;
            changed = true;
        }
        if changed {
            e.last_updated_at_ms = now_ms;
            e.version_number += 1;
        }
        let job = &self.jobs[&job_id];
        Ok(StartNextAccepted {
            timestamp: secs(now_ms),
            execution: Some(job.wire_execution(thing, &job.executions[thing])),
            client_token: token,
        })
    }

    /// `{jobId}/update` from `thing`.
    pub fn update(
        &mut self,
        thing: &str,
        job_id: &str,
        request: UpdateRequest,
        now_ms: u64,
    ) -> Result<UpdateAccepted, JobsErrorResponse> {
        use JobExecutionStatus as S;
        let token = request.client_token.clone();
        let Some(e) = self.jobs.get(job_id).and_then(|j| j.executions.get(thing)) else {
            return Err(reject(
                "ResourceNotFound",
                format!("no execution of job {job_id:?} for thing {thing:?}"),
                now_ms,
                token,
                None,
            ));
        };
        if !matches!(
            request.status,
            S::InProgress | S::Succeeded | S::Failed | S::Rejected
        ) {
            return Err(reject(
                "InvalidRequest",
                format!(
                    "status {:?} cannot be set by a device (IN_PROGRESS, SUCCEEDED, FAILED or REJECTED)",
                    request.status
                ),
                now_ms,
                token,
                None,
            ));
        }
        if let Some(expected) = request.expected_version {
            if expected != e.version_number {
                return Err(reject(
                    "VersionMismatch",
                    format!(
                        "expectedVersion {expected} is not the current version {}",
                        e.version_number
                    ),
                    now_ms,
                    token,
                    Some(e.state()),
                ));
            }
        }
        if e.status.is_terminal() {
            return Err(reject(
                "InvalidStateTransition",
                format!(
                    "the execution is {:?} already; it cannot become {:?}",
                    e.status, request.status
                ),
                now_ms,
                token,
                Some(e.state()),
            ));
        }
        let mut details = e.status_details.clone();
        details.extend(request.status_details);
        if let Err(m) = check_status_details(&details) {
            return Err(reject("InvalidRequest", m, now_ms, token, Some(e.state())));
        }
        let things = [thing.to_owned()];
        let state = self.tracking(&things, now_ms, |s| {
            let job = s.jobs.get_mut(job_id).expect("found above");
            let e = job.executions.get_mut(thing).expect("found above");
            if e.started_at_ms.is_none() {
                e.started_at_ms = Some(now_ms);
            }
            e.status = request.status;
            e.status_details = details;
            e.last_updated_at_ms = now_ms;
            e.version_number += 1;
            let state = e.state();
            job.last_updated_at_ms = now_ms;
            if request.status == S::Succeeded {
                job.pace.succeeded(&job.rollout);
            }
            if request.status.is_terminal() {
                s.after_terminal_update(job_id, now_ms);
            }
            state
        });
        Ok(UpdateAccepted {
            timestamp: secs(now_ms),
            execution_state: Some(state),
            client_token: token,
        })
    }

    /// The abort evaluation, then completion. The abort's cancellations change other
    /// things' next executions: those are tracked too.
    fn after_terminal_update(&mut self, job_id: &str, now_ms: u64) {
        let job = self.jobs.get(job_id).expect("exists");
        let triggered = job.status == JobStatus::InProgress
            && job.abort.as_ref().is_some_and(|a| {
                a.triggered(job.executions.values().map(|e| e.status))
                    .is_some()
            });
        if triggered {
            let comment = job
                .abort
                .as_ref()
                .and_then(|a| a.triggered(job.executions.values().map(|e| e.status)))
                .map(|(_, why)| why);
            let things: Vec<String> = job.executions.keys().cloned().collect();
            self.tracking(&things, now_ms, |s| {
                let job = s.jobs.get_mut(job_id).expect("exists");
                job.cancel(true, Some("ABORTED".to_owned()), comment, now_ms);
            });
        } else if let Some(job) = self.jobs.get_mut(job_id) {
            job.finish_if_done(now_ms);
        }
    }

    /// Jobs, oldest first (ListJobs).
    pub fn list_jobs(&self) -> Vec<&Job> {
        let mut v: Vec<&Job> = self.jobs.values().collect();
        v.sort_by_key(|j| (j.created_at_ms, j.job_id.clone()));
        v
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
