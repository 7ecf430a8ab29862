//! `ReviewService`: the state machines plus their persistence and the output sink,
//! behind one handle that the HTTP layer and the reviewer web page share.
//!
//! Every change goes through [`ReviewService::commit`]: under one lock, check the
//! request against the state, journal the resulting event (fsync), then apply it. The
//! methods that commit block on disk I/O; async callers run them on the blocking pool.

use std::sync::{Arc, Mutex, MutexGuard};

use protocol::a2i::{HumanAnswer, HumanLoopOutput};
use time::OffsetDateTime;

use super::control_plane::{name_from_arn, ControlError, FlowDefinition, HumanTaskUi};

use super::output::{OutputKey, OutputSink, OutputSinkError};
use super::persist::{PersistError, ReviewEvent, ReviewState, StateDir};
use super::store::{
    FlowTarget, HumanLoop, HumanLoopStatus, ListQuery, LoopError, LoopEvent, StartRequest,
};

/// Who the local service pretends to be: ARNs are built from these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    pub region: String,
    pub account_id: String,
}

impl ServiceIdentity {
    pub fn arn(&self, kind: &str, name: &str) -> String {
        format!(
            "arn:aws:sagemaker:{}:{}:{kind}/{name}",
            self.region, self.account_id
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Loop(#[from] LoopError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("FlowDefinitionArn {0:?} is not a flow definition ARN")]
    BadFlowDefinitionArn(String),
    #[error("flow definition {0:?} does not exist")]
    UnknownFlowDefinition(String),
    #[error("saving review state: {0}")]
    Persist(#[from] PersistError),
    #[error("storing output.json: {0}")]
    Output(#[from] OutputSinkError),
    #[error("internal: {0}")]
    Internal(String),
}

/// What `CreateFlowDefinition` asks for (already parsed from the wire).
#[derive(Debug, Clone, PartialEq)]
pub struct NewFlowDefinition {
    pub name: String,
    pub output_config: serde_json::Value,
    pub role_arn: String,
    pub human_loop_config: Option<serde_json::Value>,
    pub activation_config: Option<serde_json::Value>,
    pub request_source: Option<serde_json::Value>,
}

#[derive(Clone)]
pub struct ReviewService {
    inner: Arc<Inner>,
}

struct Inner {
    identity: ServiceIdentity,
    /// The state directory, for reading loop inputs without the lock.
    state_dir: std::path::PathBuf,
    durable: Mutex<Durable>,
    sink: Arc<dyn OutputSink>,
    /// One completion at a time, so two submissions for one loop cannot interleave
    /// their output.json writes.
    completing: tokio::sync::Mutex<()>,
    /// Told of each loop that ends (see [`ReviewService::on_loop_end`]).
    on_loop_end: std::sync::OnceLock<LoopEndHook>,
}

/// Called with a loop that became Completed or Stopped, once that is recorded.
pub type LoopEndHook = Box<dyn Fn(&HumanLoop) + Send + Sync>;

struct Durable {
    state: ReviewState,
    dir: StateDir,
}

impl Durable {
    /// Journals `event`, applies it, and compacts when the journal has grown.
    fn record(&mut self, event: ReviewEvent) -> Result<(), ServiceError> {
        self.dir.append(&event)?;
        self.state.apply(&event);
        if let ReviewEvent::Loop(LoopEvent::Deleted { name }) = &event {
            self.dir.remove_input(name);
        }
        if self.dir.wants_compaction() {
            if let Err(e) = self.dir.compact(&self.state) {
                // The journal still holds everything; compaction is retried later.
                tracing::warn!(error = %e, "compacting the review state failed");
            }
        }
        Ok(())
    }
}

impl ReviewService {
    /// Opens (or creates) the state directory and recovers what it holds.
    pub fn open(
        identity: ServiceIdentity,
        state_dir: &std::path::Path,
        max_in_progress: usize,
        sink: Arc<dyn OutputSink>,
    ) -> Result<Self, PersistError> {
        let (dir, mut state) = StateDir::open(state_dir)?;
        state.loops.set_max_in_progress(max_in_progress);
        Ok(Self {
            inner: Arc::new(Inner {
                identity,
                state_dir: state_dir.to_owned(),
                durable: Mutex::new(Durable { state, dir }),
                sink,
                completing: tokio::sync::Mutex::new(()),
                on_loop_end: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Calls `hook` for every loop that completes or stops from now on (A2I's
    /// status-change event; local mode puts it into its completions queue). One hook;
    /// a second call is refused.
    pub fn on_loop_end(&self, hook: LoopEndHook) -> Result<(), LoopEndHook> {
        self.inner.on_loop_end.set(hook)
    }

    /// Tells the hook (if any) that loop `name` completed or stopped.
    fn loop_ended(&self, name: &str) {
        if let Some(hook) = self.inner.on_loop_end.get() {
            if let Ok(l) = self.describe_human_loop(name) {
                hook(&l);
            }
        }
    }

    pub fn identity(&self) -> &ServiceIdentity {
        &self.inner.identity
    }

    fn lock(&self) -> MutexGuard<'_, Durable> {
        // Nothing panics between journaling and applying, so a poisoned lock still
        // guards a consistent state.
        self.inner.durable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the state under the lock.
    pub fn read<R>(&self, f: impl FnOnce(&ReviewState) -> R) -> R {
        f(&self.lock().state)
    }

    /// Checks a change against the state, journals it, applies it. `Ok(None)` from the
    /// check means "nothing to change" (an idempotent repeat).
    pub fn commit(
        &self,
        check: impl FnOnce(&ReviewState) -> Result<Option<ReviewEvent>, ServiceError>,
    ) -> Result<(), ServiceError> {
        let mut guard = self.lock();
        let Some(event) = check(&guard.state)? else {
            return Ok(());
        };
        guard.record(event)
    }

    fn flow_target(&self, state: &ReviewState, flow_arn: &str) -> Result<FlowTarget, ServiceError> {
        let name = name_from_arn(flow_arn, "flow-definition")
            .ok_or_else(|| ServiceError::BadFlowDefinitionArn(flow_arn.to_owned()))?;
        let flow = state
            .control
            .flow_definition(name)
            .map_err(|_| ServiceError::UnknownFlowDefinition(flow_arn.to_owned()))?;
        Ok(FlowTarget {
            arn: flow.arn.clone(),
            name: flow.name.clone(),
            output_path: flow.output_path().to_owned(),
        })
    }

    /// `StartHumanLoop`; returns the new loop's ARN.
    pub fn start_human_loop(
        &self,
        flow_arn: &str,
        req: StartRequest,
    ) -> Result<String, ServiceError> {
        let arn = self.inner.identity.arn("human-loop", &req.name);
        let mut guard = self.lock();
        let flow = self.flow_target(&guard.state, flow_arn)?;
        let ev =
            guard
                .state
                .loops
                .check_start(&req, &flow, arn.clone(), OffsetDateTime::now_utc())?;
        // The input first: a journaled loop always has it (one without a loop is
        // removed at the next open).
        guard.dir.write_input(&req.name, &req.input_content)?;
        guard.record(ReviewEvent::Loop(ev))?;
        Ok(arn)
    }

    /// Loop `name`'s `HumanLoopInput.InputContent`, as its caller sent it.
    pub fn input_content(&self, name: &str) -> Result<String, ServiceError> {
        self.describe_human_loop(name)?;
        Ok(StateDir::read_input(&self.inner.state_dir, name)?)
    }

    pub fn describe_human_loop(&self, name: &str) -> Result<HumanLoop, ServiceError> {
        Ok(self.read(|s| s.loops.describe(name))?)
    }

    /// `ListHumanLoops`; `query.flow_definition_name` is filled in from `flow_arn`.
    pub fn list_human_loops(
        &self,
        flow_arn: &str,
        mut query: ListQuery,
    ) -> Result<(Vec<HumanLoop>, Option<String>), ServiceError> {
        self.read(|s| {
            let name = name_from_arn(flow_arn, "flow-definition")
                .ok_or_else(|| ServiceError::BadFlowDefinitionArn(flow_arn.to_owned()))?;
            s.control.flow_definition(name)?;
            query.flow_definition_name = name.to_owned();
            let page = s.loops.list(&query)?;
            Ok((page.loops, page.next_token))
        })
    }

    pub fn stop_human_loop(&self, name: &str) -> Result<(), ServiceError> {
        self.commit(|s| Ok(s.loops.check_stop(name)?.map(ReviewEvent::Loop)))?;
        self.loop_ended(name);
        Ok(())
    }

    pub fn delete_human_loop(&self, name: &str) -> Result<(), ServiceError> {
        self.commit(|s| Ok(Some(ReviewEvent::Loop(s.loops.check_delete(name)?))))
    }

    /// Loops waiting for a reviewer, oldest first (for the reviewer page).
    pub fn in_progress_loops(&self) -> Vec<HumanLoop> {
        self.read(|s| s.loops.with_status(HumanLoopStatus::InProgress))
    }

    /// The reviewer page's entry point: writes `output.json` the way A2I does, records
    /// the answers and marks the loop Completed. Returns the `s3://` URI of output.json.
    ///
    /// output.json is stored first, so a Completed loop always has its output; if the
    /// loop changes state meanwhile (stopped, deleted) the call fails and the object
    /// written is left behind, as it would be by A2I for a task finished while stopping.
    pub async fn complete_loop(
        &self,
        name: &str,
        answers: Vec<HumanAnswer>,
    ) -> Result<String, ServiceError> {
        let _one_at_a_time = self.inner.completing.lock().await;
        let l = self.read(|s| -> Result<_, ServiceError> {
            s.loops.check_complete(name, answers.clone())?;
            Ok(s.loops.describe(name)?)
        })?;
        let input = self.input_content(name)?;
        let input_content =
            serde_json::from_str(&input).unwrap_or(serde_json::Value::String(input));
        let (uri, doc) = (
            l.output_s3_uri,
            HumanLoopOutput {
                flow_definition_arn: l.flow_definition_arn,
                human_answers: answers.clone(),
                human_loop_name: l.name,
                input_content,
            },
        );
        let key = OutputKey::from_s3_uri(&uri)?;
        let bytes = serde_json::to_vec_pretty(&doc).expect("output.json always serializes");
        self.inner.sink.put_output(&key, bytes).await?;
        let this = self.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            this.commit(|s| {
                Ok(Some(ReviewEvent::Loop(
                    s.loops.check_complete(&name, answers)?,
                )))
            })?;
            this.loop_ended(&name);
            Ok::<_, ServiceError>(())
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
        Ok(uri)
    }

    /// `CreateHumanTaskUi`; returns its ARN.
    pub fn create_human_task_ui(
        &self,
        name: &str,
        template: String,
    ) -> Result<String, ServiceError> {
        let arn = self.inner.identity.arn("human-task-ui", name);
        let ui = HumanTaskUi {
            name: name.to_owned(),
            arn: arn.clone(),
            creation_time: OffsetDateTime::now_utc(),
            template,
        };
        self.commit(|s| {
            Ok(Some(ReviewEvent::Control(
                s.control.check_create_task_ui(ui)?,
            )))
        })?;
        Ok(arn)
    }

    pub fn describe_human_task_ui(&self, name: &str) -> Result<HumanTaskUi, ServiceError> {
        Ok(self.read(|s| s.control.task_ui(name).cloned())?)
    }

    pub fn delete_human_task_ui(&self, name: &str) -> Result<(), ServiceError> {
        self.commit(|s| {
            Ok(Some(ReviewEvent::Control(
                s.control.check_delete_task_ui(name)?,
            )))
        })
    }

    /// `CreateFlowDefinition`; returns its ARN.
    pub fn create_flow_definition(&self, new: NewFlowDefinition) -> Result<String, ServiceError> {
        let arn = self.inner.identity.arn("flow-definition", &new.name);
        let flow = FlowDefinition {
            name: new.name,
            arn: arn.clone(),
            creation_time: OffsetDateTime::now_utc(),
            output_config: new.output_config,
            role_arn: new.role_arn,
            human_loop_config: new.human_loop_config,
            activation_config: new.activation_config,
            request_source: new.request_source,
        };
        self.commit(|s| {
            Ok(Some(ReviewEvent::Control(
                s.control.check_create_flow_definition(flow)?,
            )))
        })?;
        Ok(arn)
    }

    pub fn describe_flow_definition(&self, name: &str) -> Result<FlowDefinition, ServiceError> {
        Ok(self.read(|s| s.control.flow_definition(name).cloned())?)
    }

    pub fn delete_flow_definition(&self, name: &str) -> Result<(), ServiceError> {
        self.commit(|s| {
            let active = s.loops.has_active_loops(name);
            Ok(Some(ReviewEvent::Control(
                s.control.check_delete_flow_definition(name, active)?,
            )))
        })
    }
}
