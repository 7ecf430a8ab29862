//! `HumanLoopStore`: the human-loop state machine of the local review service.
//!
//! Plain data, no I/O, no clock: the caller passes `now`. Every mutation is split in
//! two steps so that the persistence layer can journal a change *before* it becomes
//! visible: `check_*` validates a request against the current state and returns the
//! [`LoopEvent`] it would cause (or the API error), and [`HumanLoopStore::apply`]
//! applies an event. `start`/`stop`/`delete`/`complete` do both, for callers that do
//! not persist (and for the tests).
//!
//! Transitions (local mode has no workers mid-task, so `Stopping` is never lingered in):
//! `InProgress --stop--> Stopped`, `InProgress|Stopping --complete--> Completed`,
//! `Stopped|Completed|Failed --delete--> (gone)`. Deleting a loop that is still
//! `InProgress` is refused, as A2I does ("you must stop the human loop before deleting it").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::loop_record::{self, Kept, Origins};
pub use super::page_token::SortOrder;
pub use list::{ListPage, ListQuery, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use protocol::a2i::HumanAnswer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HumanLoopStatus {
    InProgress,
    Failed,
    Completed,
    Stopped,
    Stopping,
}

impl HumanLoopStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "InProgress",
            Self::Failed => "Failed",
            Self::Completed => "Completed",
            Self::Stopped => "Stopped",
            Self::Stopping => "Stopping",
        }
    }
}

/// The flow definition a loop belongs to, resolved by the caller from the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowTarget {
    pub arn: String,
    pub name: String,
    /// `OutputConfig.S3OutputPath` of the flow definition, e.g. `s3://bucket/prefix`.
    pub output_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HumanLoop {
    pub name: String,
    pub arn: String,
    pub flow_definition_arn: String,
    pub flow_definition_name: String,
    pub status: HumanLoopStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub creation_time: OffsetDateTime,
    pub content_classifiers: Vec<String>,
    /// Where A2I writes (and the reviewer page will write) this loop's `output.json`;
    /// fixed at creation because the path embeds the creation time.
    pub output_s3_uri: String,
    pub failure_reason: Option<String>,
    pub failure_code: Option<String>,
    /// `HumanLoopInput.InputContent` of a loop recorded by an older version, which kept
    /// it here (and so in memory); the persistence layer moves it to the loop's input
    /// file when it opens the state. New loops never carry it: their input (up to
    /// 3 MiB) is a file from the start, and their answers are in output.json.
    #[serde(default, rename = "input_content", skip_serializing)]
    pub legacy_input: Option<String>,
}

/// What `StartHumanLoop` asks for (already parsed from the wire).
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    pub name: String,
    pub input_content: String,
    pub content_classifiers: Vec<String>,
}

/// A change to the store; what the persistence layer journals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LoopEvent {
    Started(Box<HumanLoop>),
    Stopped {
        name: String,
    },
    Completed {
        name: String,
        answers: Vec<HumanAnswer>,
    },
    Deleted {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoopError {
    #[error("invalid human loop name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{0}")]
    Invalid(String),
    #[error("human loop {0:?} already exists")]
    AlreadyExists(String),
    #[error("human loop {0:?} does not exist")]
    NotFound(String),
    #[error("human loop {name:?} is {status}; cannot {action} it", status = status.as_str())]
    WrongState {
        name: String,
        status: HumanLoopStatus,
        action: &'static str,
    },
    #[error("too many human loops in progress (limit {limit})")]
    QuotaExceeded { limit: usize },
}

/// All human loops, by name, each in its compact form ([`loop_record`]): memory
/// grows by about 100 bytes a loop. Serialized as `{"loops": {name: HumanLoop},
/// "max_in_progress": n}`, streamed loop by loop (see [`loop_record`]).
#[derive(Debug, Clone)]
pub struct HumanLoopStore {
    loops: BTreeMap<Box<str>, Kept>,
    origins: Origins,
    /// Inputs that loops recorded by an older version carried inline, until
    /// [`HumanLoopStore::take_legacy_inputs`] hands them to the persistence layer.
    legacy_inputs: Vec<(String, String)>,
    /// Most loops that may be `InProgress` at once (A2I's per-account quota);
    /// beyond it `StartHumanLoop` answers ServiceQuotaExceededException.
    max_in_progress: usize,
}

impl Default for HumanLoopStore {
    fn default() -> Self {
        Self::new(default_max_in_progress())
    }
}

pub fn default_max_in_progress() -> usize {
    10_000
}

/// Checks a name against A2I's rule: `^[a-z0-9](-*[a-z0-9])*$`, 1 to 63 characters.
pub fn validate_loop_name(name: &str) -> Result<(), LoopError> {
    let invalid = |reason| {
        Err(LoopError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 63 {
        return invalid("must be 1 to 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return invalid("only lowercase letters, digits and hyphens are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return invalid("must start and end with a letter or digit");
    }
    Ok(())
}

/// `s3://bucket/prefix/<flow>/YYYY/MM/DD/hh/mm/ss/<loop>/output.json`, the layout A2I uses.
pub fn output_uri(
    output_path: &str,
    flow_name: &str,
    created: OffsetDateTime,
    loop_name: &str,
) -> String {
    let t = created.to_offset(time::UtcOffset::UTC);
    format!(
        "{}/{}/{:04}/{:02}/{:02}/{:02}/{:02}/{:02}/{}/output.json",
        output_path.trim_end_matches('/'),
        flow_name,
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        loop_name
    )
}

/// Timestamps are kept at millisecond precision, what the wire format carries, so a
/// `CreationTime` read back from Describe filters exactly.
fn truncate_to_millis(t: OffsetDateTime) -> OffsetDateTime {
    let ms = t.nanosecond() / 1_000_000 * 1_000_000;
    t.replace_nanosecond(ms).unwrap_or(t)
}

impl HumanLoopStore {
    pub fn new(max_in_progress: usize) -> Self {
        Self {
            loops: BTreeMap::new(),
            origins: Origins::default(),
            legacy_inputs: Vec::new(),
            max_in_progress,
        }
    }

    pub(super) fn insert(&mut self, mut l: HumanLoop) {
        if let Some(input) = l.legacy_input.take() {
            self.legacy_inputs.push((l.name.clone(), input));
        }
        let kept = loop_record::compact(&mut self.origins, &l);
        self.loops.insert(l.name.into_boxed_str(), kept);
    }

    fn expand(&self, name: &str, k: &Kept) -> HumanLoop {
        loop_record::expand(&self.origins, name, k)
    }

    pub fn set_max_in_progress(&mut self, limit: usize) {
        self.max_in_progress = limit;
    }

    pub fn max_in_progress(&self) -> usize {
        self.max_in_progress
    }

    pub fn len(&self) -> usize {
        self.loops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.loops.is_empty()
    }

    /// All loops, by name (each expanded from its compact form).
    pub fn iter(&self) -> impl Iterator<Item = HumanLoop> + '_ {
        self.loops.iter().map(|(n, k)| self.expand(n, k))
    }

    /// How many loops have `status`.
    pub fn count(&self, status: HumanLoopStatus) -> usize {
        self.loops.values().filter(|k| k.status == status).count()
    }

    /// Loops with `status`, oldest first (ties by name).
    pub fn with_status(&self, status: HumanLoopStatus) -> Vec<HumanLoop> {
        let mut v: Vec<(&str, &Kept)> = self
            .loops
            .iter()
            .filter(|(_, k)| k.status == status)
            .map(|(n, k)| (&**n, k))
            .collect();
        v.sort_by_key(|(n, k)| (k.creation_time, *n));
        v.into_iter().map(|(n, k)| self.expand(n, k)).collect()
    }

    /// True when some loop of this flow definition still waits for a reviewer.
    pub fn has_active_loops(&self, flow_definition_name: &str) -> bool {
        self.loops.values().any(|k| {
            self.origins.get(k.origin).flow_definition_name == flow_definition_name
                && matches!(
                    k.status,
                    HumanLoopStatus::InProgress | HumanLoopStatus::Stopping
                )
        })
    }

    fn status(&self, name: &str) -> Result<HumanLoopStatus, LoopError> {
        validate_loop_name(name)?;
        self.loops
            .get(name)
            .map(|k| k.status)
            .ok_or_else(|| LoopError::NotFound(name.to_owned()))
    }

    pub fn describe(&self, name: &str) -> Result<HumanLoop, LoopError> {
        validate_loop_name(name)?;
        self.loops
            .get_key_value(name)
            .map(|(n, k)| self.expand(n, k))
            .ok_or_else(|| LoopError::NotFound(name.to_owned()))
    }

    /// The event carries the loop without its `InputContent`: the caller stores
    /// `req.input_content` (see [`super::persist::StateDir::write_input`]).
    pub fn check_start(
        &self,
        req: &StartRequest,
        flow: &FlowTarget,
        loop_arn: String,
        now: OffsetDateTime,
    ) -> Result<LoopEvent, LoopError> {
        validate_loop_name(&req.name)?;
        if self.loops.contains_key(req.name.as_str()) {
            return Err(LoopError::AlreadyExists(req.name.clone()));
        }
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&req.input_content) {
            return Err(LoopError::Invalid(format!(
                "HumanLoopInput.InputContent is not valid JSON: {e}"
            )));
        }
        let in_progress = self.count(HumanLoopStatus::InProgress);
        if in_progress >= self.max_in_progress {
            return Err(LoopError::QuotaExceeded {
                limit: self.max_in_progress,
            });
        }
        let creation_time = truncate_to_millis(now);
        Ok(LoopEvent::Started(Box::new(HumanLoop {
            output_s3_uri: output_uri(&flow.output_path, &flow.name, creation_time, &req.name),
            name: req.name.clone(),
            arn: loop_arn,
            flow_definition_arn: flow.arn.clone(),
            flow_definition_name: flow.name.clone(),
            status: HumanLoopStatus::InProgress,
            creation_time,
            content_classifiers: req.content_classifiers.clone(),
            failure_reason: None,
            failure_code: None,
            legacy_input: None,
        })))
    }

    /// `Ok(None)`: the loop is already stopped, nothing changes (stop is idempotent).
    pub fn check_stop(&self, name: &str) -> Result<Option<LoopEvent>, LoopError> {
        match self.status(name)? {
            HumanLoopStatus::InProgress | HumanLoopStatus::Stopping => {
                Ok(Some(LoopEvent::Stopped {
                    name: name.to_owned(),
                }))
            }
            HumanLoopStatus::Stopped => Ok(None),
            status @ (HumanLoopStatus::Completed | HumanLoopStatus::Failed) => {
                Err(LoopError::WrongState {
                    name: name.to_owned(),
                    status,
                    action: "stop",
                })
            }
        }
    }

    pub fn check_delete(&self, name: &str) -> Result<LoopEvent, LoopError> {
        match self.status(name)? {
            status @ (HumanLoopStatus::InProgress | HumanLoopStatus::Stopping) => {
                Err(LoopError::WrongState {
                    name: name.to_owned(),
                    status,
                    action: "delete (stop it first)",
                })
            }
            _ => Ok(LoopEvent::Deleted {
                name: name.to_owned(),
            }),
        }
    }

    pub fn check_complete(
        &self,
        name: &str,
        answers: Vec<HumanAnswer>,
    ) -> Result<LoopEvent, LoopError> {
        let status = self.status(name)?;
        if answers.is_empty() {
            return Err(LoopError::Invalid(format!(
                "completing human loop {name:?} needs at least one answer"
            )));
        }
        match status {
            HumanLoopStatus::InProgress | HumanLoopStatus::Stopping => Ok(LoopEvent::Completed {
                name: name.to_owned(),
                answers,
            }),
            status => Err(LoopError::WrongState {
                name: name.to_owned(),
                status,
                action: "complete",
            }),
        }
    }

    /// Applies an event produced by a `check_*` call on this same state (or replayed
    /// from the journal). Events that no longer fit (a loop that is gone) are ignored,
    /// so replaying a journal twice cannot corrupt the store.
    pub fn apply(&mut self, event: &LoopEvent) {
        match event {
            LoopEvent::Started(l) => {
                if !self.loops.contains_key(l.name.as_str()) {
                    self.insert((**l).clone());
                }
            }
            LoopEvent::Stopped { name } => {
                if let Some(l) = self.loops.get_mut(name.as_str()) {
                    l.status = HumanLoopStatus::Stopped;
                }
            }
            // The answers are journaled with the event and written to output.json
            // before it; the store does not keep them.
            LoopEvent::Completed { name, .. } => {
                if let Some(l) = self.loops.get_mut(name.as_str()) {
                    l.status = HumanLoopStatus::Completed;
                }
            }
            LoopEvent::Deleted { name } => {
                self.loops.remove(name.as_str());
            }
        }
    }

    pub fn start(
        &mut self,
        req: &StartRequest,
        flow: &FlowTarget,
        loop_arn: String,
        now: OffsetDateTime,
    ) -> Result<HumanLoop, LoopError> {
        let ev = self.check_start(req, flow, loop_arn, now)?;
        self.apply(&ev);
        self.describe(&req.name)
    }

    pub fn stop(&mut self, name: &str) -> Result<(), LoopError> {
        if let Some(ev) = self.check_stop(name)? {
            self.apply(&ev);
        }
        Ok(())
    }

    pub fn delete(&mut self, name: &str) -> Result<(), LoopError> {
        let ev = self.check_delete(name)?;
        self.apply(&ev);
        Ok(())
    }

    /// Records the answers, marks the loop Completed and returns where its output goes.
    pub fn complete(&mut self, name: &str, answers: Vec<HumanAnswer>) -> Result<String, LoopError> {
        let ev = self.check_complete(name, answers)?;
        self.apply(&ev);
        Ok(self.describe(name)?.output_s3_uri)
    }

    /// Takes the inputs that loops recorded by an older version still carry
    /// ([`HumanLoop::legacy_input`]), as (loop name, `InputContent`).
    pub fn take_legacy_inputs(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.legacy_inputs)
    }
}

#[path = "store_list.rs"]
mod list;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
