//! The update worker: one thread that takes a model update from an IoT job or from
//! the drop folder, and takes it through its steps while the frame thread goes on
//! serving:
//!
//! ```text
//! download -> verify -> install -> load + self-test -> shadow -> switch -> watch -> done
//!   (job)     (verify.rs) (store.rs)  (running backend)  (frame thread: daemon/serving.rs)
//! ```
//!
//! Each step is written to `models/update.json` before it starts, and the serving
//! version to `models/state.json` only at the switch (and a rollback), so a kill at
//! any step leaves a model that loads, and the next start knows what to report
//! ([`recover`]). The kill tests stop the agent at a step with its failpoint
//! (`update-verify`, `update-load`, `update-switch`; the `fail` crate, set through
//! `FAILPOINTS`). Every step and outcome is reported: to the job (IN_PROGRESS with
//! `statusDetails.step`, then SUCCEEDED, FAILED or REJECTED with the reason), to the
//! retained status, and to the log.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::jobs::{JobExecutionStatus, ModelUpdateDocument, StatusDetails};
use protocol::package::TrustedKey;
use protocol::status::UpdateStatus;

use super::download::{download, Retry};
pub use super::drop_folder::signature_path;
use super::drop_folder::{read_bounded, settle_dropped, settled, PROCESSING};
use super::recover::details;
pub use super::recover::recover;
use super::store::{ModelStore, StoreState, UpdateRecord};
use super::verify::{verify, Expected};
use super::{load_serving, LoadOptions, UpdateSection};
use crate::daemon::serving::{SwapCommand, SwapEvent};

/// A model-update job handed over by the MQTT driver (Jobs `start-next` / `notify-next`).
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub job_id: String,
    pub document: serde_json::Value,
}

/// A status for the job execution (and the retained status).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub job_id: Option<String>,
    pub status: JobExecutionStatus,
    pub details: StatusDetails,
}

/// Where the worker's reports go: the MQTT driver publishes the job ones.
pub type ReportSink = Box<dyn Fn(Report) + Send>;

pub struct Worker {
    pub store: ModelStore,
    pub config: UpdateSection,
    pub keys: Vec<TrustedKey>,
    pub load: LoadOptions,
    /// The model the config names: what serves when no package is installed.
    pub config_manifest: PathBuf,
    pub drop_dir: PathBuf,
    pub swap: Sender<SwapCommand>,
    pub events: Receiver<SwapEvent>,
    pub jobs: Receiver<JobRequest>,
    pub report: ReportSink,
    pub status: Arc<Mutex<Option<UpdateStatus>>>,
    pub stop: Arc<AtomicBool>,
}

/// Why an update ended without the new model serving.
struct Refusal {
    status: JobExecutionStatus,
    step: &'static str,
    reason: String,
    /// Shutdown came first: nothing is reported or cleaned up now; the next start
    /// finds `update.json` and reports the step as interrupted ([`recover`]).
    interrupted: bool,
}

fn rejected(step: &'static str, reason: impl ToString) -> Refusal {
    Refusal {
        status: JobExecutionStatus::Rejected,
        step,
        reason: reason.to_string(),
        interrupted: false,
    }
}

fn failed(step: &'static str, reason: impl ToString) -> Refusal {
    Refusal {
        status: JobExecutionStatus::Failed,
        step,
        reason: reason.to_string(),
        interrupted: false,
    }
}

/// Where a package comes from.
enum Origin {
    Job(ModelUpdateDocument),
    Folder { tar: PathBuf },
}

impl Worker {
    /// Runs until `stop` is set; first delivers `pending` (from [`recover`]).
    pub fn run(self, pending: Option<Report>) {
        if let Some(r) = pending {
            self.emit(r);
        }
        while !self.stop.load(Ordering::Relaxed) {
            match self.jobs.recv_timeout(Duration::from_secs(1)) {
                Ok(job) => self.handle_job(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_secs(1)),
            }
            if let Err(e) = self.scan_drop_folder() {
                tracing::warn!(dir = %self.drop_dir.display(), error = %e, "cannot read the updates folder");
            }
        }
    }

    fn emit(&self, report: Report) {
        if let (Some(job_id), true) = (&report.job_id, report.status.is_terminal()) {
            let finished = super::store::FinishedJob {
                job_id: job_id.clone(),
                status: report.status,
                details: report.details.clone(),
            };
            if let Err(e) = self.store.record_finished(finished) {
                tracing::warn!(error = %e, "cannot record the finished job");
            }
        }
        let version = report.details.get("version").cloned().unwrap_or_default();
        let step = report.details.get("step").cloned().unwrap_or_default();
        let detail = report.details.get("reason").cloned();
        *self.status.lock().unwrap() = Some(UpdateStatus {
            version,
            outcome: serde_json::to_value(report.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_ascii_lowercase))
                .unwrap_or_default(),
            step,
            detail,
            job_id: report.job_id.clone(),
            at: protocol::timestamp::format_rfc3339_utc(protocol::timestamp::now_ms() as i64),
        });
        (self.report)(report);
    }

    /// Packages dropped as `NAME.tar` + `NAME.tar.minisig`, both untouched for 2 s
    /// (so a copy still being written is not taken), and `rollback.request`.
    fn scan_drop_folder(&self) -> std::io::Result<()> {
        if self.drop_dir.join("rollback.request").exists() {
            let _ = std::fs::remove_file(self.drop_dir.join("rollback.request"));
            self.rollback_local();
        }
        let mut tars: Vec<PathBuf> = std::fs::read_dir(&self.drop_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "tar") && p.is_file())
            .collect();
        tars.sort();
        for tar in tars {
            let sig = signature_path(&tar);
            if settled(&tar) && settled(&sig) {
                // Out of the folder first: a kill mid-update must not make the next
                // start take the same package again ([`recover`] settles it).
                let processing = self.drop_dir.join(PROCESSING);
                std::fs::create_dir_all(&processing)?;
                let taken = processing.join(tar.file_name().unwrap_or_default());
                std::fs::rename(&sig, signature_path(&taken))?;
                std::fs::rename(&tar, &taken)?;
                self.handle(Origin::Folder { tar: taken }, None);
            }
        }
        Ok(())
    }

    /// A job whose document is not a valid model update is REJECTED at once; one
    /// this device already finished gets its report again, not a second run.
    fn handle_job(&self, job: JobRequest) {
        if let Ok(Some(done)) = self.store.finished_job(&job.job_id) {
            tracing::info!(job_id = %job.job_id, "jobs: already finished here; reporting it again");
            return self.emit(Report {
                job_id: Some(done.job_id),
                status: done.status,
                details: done.details,
            });
        }
        match ModelUpdateDocument::from_value(&job.document) {
            Ok(doc) => self.handle(Origin::Job(doc), Some(job.job_id)),
            Err(e) => self.emit(Report {
                job_id: Some(job.job_id),
                status: JobExecutionStatus::Rejected,
                details: details("?", "verify", Some(e.to_string())),
            }),
        }
    }

    fn handle(&self, origin: Origin, job_id: Option<String>) {
        let result = self.update(&origin, job_id.as_deref());
        if matches!(&result, Err((_, r)) if r.interrupted) {
            return;
        }
        if let Origin::Folder { tar } = &origin {
            let refusal = result.as_ref().err().map(|(_, r)| r);
            settle_dropped(
                tar,
                &self.drop_dir,
                refusal.map(|r| (r.status_str(), r.step, r.reason.as_str())),
            );
        }
        match result {
            Ok(report) => self.emit(report),
            Err((version, refusal)) => {
                tracing::error!(version = %version, step = refusal.step, reason = %refusal.reason,
                    "model update refused; the serving model is unchanged");
                let _ = self.store.clear_update();
                self.emit(Report {
                    job_id,
                    status: refusal.status,
                    details: details(&version, refusal.step, Some(refusal.reason)),
                });
            }
        }
    }

    /// The steps; the error carries the version (as far as known) and why.
    fn update(&self, origin: &Origin, job_id: Option<&str>) -> Result<Report, (String, Refusal)> {
        let (expected, signature, label) = match origin {
            Origin::Job(doc) => {
                let expected = Expected {
                    size: Some(doc.package.size),
                    sha256: Some(doc.package.sha256.clone()),
                    name: Some(doc.name.clone()),
                    version: Some(doc.version.clone()),
                };
                (
                    expected,
                    doc.package.signature.clone(),
                    doc.package.url.clone(),
                )
            }
            Origin::Folder { tar } => {
                let sig_path = signature_path(tar);
                let sig = std::fs::read_to_string(&sig_path).map_err(|e| {
                    (
                        "?".to_string(),
                        rejected("verify", format!("cannot read {}: {e}", sig_path.display())),
                    )
                })?;
                (Expected::default(), sig, tar.display().to_string())
            }
        };
        let fail = |r: Refusal| (expected.version.clone().unwrap_or_else(|| "?".into()), r);
        let mut state = self.store.state().map_err(|e| fail(failed("verify", e)))?;
        let serving_before = state.current.clone();
        let record = |step: &str, version: &str| UpdateRecord {
            job_id: job_id.map(String::from),
            version: version.to_string(),
            step: step.to_string(),
            from: serving_before.clone(),
        };
        if self.keys.is_empty() {
            return Err(fail(rejected(
                "verify",
                "no trusted keys are configured (update.trusted_keys): every package is refused",
            )));
        }
        let version_hint = expected.version.clone().unwrap_or_else(|| "?".into());
        self.emit_progress(job_id, &version_hint, "download");
        let bytes = match origin {
            Origin::Job(doc) => {
                if doc.package.size > self.config.max_package_bytes {
                    return Err(fail(rejected(
                        "download",
                        format!(
                            "the package is {} bytes, more than update.max_package_bytes {}",
                            doc.package.size, self.config.max_package_bytes
                        ),
                    )));
                }
                self.store
                    .set_update(&record("download", &version_hint))
                    .map_err(|e| fail(failed("download", e)))?;
                let part = self
                    .store
                    .staging()
                    .join(format!("{}.part", doc.package.sha256));
                let stop = self.stop.clone();
                let stopping = move || stop.load(Ordering::Relaxed);
                let bytes = download(
                    &doc.package.url,
                    &part,
                    doc.package.size,
                    Retry::default(),
                    &stopping,
                )
                .map_err(|e| {
                    let interrupted = matches!(e, super::download::DownloadError::Stopped);
                    fail(Refusal {
                        interrupted,
                        ..failed("download", e)
                    })
                })?;
                let _ = std::fs::remove_file(&part);
                bytes
            }
            Origin::Folder { tar } => read_bounded(tar, self.config.max_package_bytes)
                .map_err(|e| fail(rejected("download", e)))?,
        };
        let highest = state
            .highest
            .as_deref()
            .and_then(|v| semver::Version::parse(v).ok())
            .or_else(|| self.load.config_version());
        // Recorded for both origins: a kill while verifying a dropped package must
        // still be reported, and the package settled, at the next start.
        self.store
            .set_update(&record("verify", &version_hint))
            .map_err(|e| fail(failed("verify", e)))?;
        self.emit_progress(job_id, &version_hint, "verify");
        fail::fail_point!("update-verify");
        let now = protocol::timestamp::now_ms() as i64;
        let verified = verify(
            &bytes,
            &signature,
            &expected,
            &self.keys,
            self.config.max_package_bytes,
            highest.as_ref(),
            now,
        )
        .map_err(|e| fail(rejected("verify", e)))?;
        let version = verified.contents.manifest.version.clone();
        let fail = |r: Refusal| (version.clone(), r);
        tracing::info!(version = %version, key = %verified.key_id, source = %label, admission = ?verified.admission, "model package verified");
        self.store
            .set_update(&record("load", &version))
            .map_err(|e| fail(failed("load", e)))?;
        self.emit_progress(job_id, &version, "load");
        self.store
            .install(&verified.contents, &verified.contents.manifest.to_toml())
            .map_err(|e| fail(failed("load", format!("cannot install the package: {e}"))))?;
        let manifest = self
            .store
            .model_manifest(&version)
            .map_err(|e| fail(failed("load", e)))?;
        fail::fail_point!("update-load");
        let (serving, _) =
            load_serving(&manifest, &self.load).map_err(|e| fail(rejected("load", e)))?;

        self.store
            .set_update(&record("shadow", &version))
            .map_err(|e| fail(failed("shadow", e)))?;
        self.emit_progress(job_id, &version, "shadow");
        let lifecycle = super::lifecycle::Lifecycle::new(self.config.lifecycle());
        self.swap
            .send(SwapCommand::Candidate {
                model: Box::new(serving),
                lifecycle,
            })
            .map_err(|_| fail(failed("shadow", "the frame thread has ended")))?;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                // update.json stays: the next start reports the interrupted step.
                return Err(fail(Refusal {
                    interrupted: true,
                    ..failed("shadow", "the agent is shutting down")
                }));
            }
            let event = match self.events.recv_timeout(Duration::from_millis(500)) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(fail(failed("shadow", "the frame thread has ended")))
                }
            };
            match event {
                SwapEvent::Switched { shadow, .. } => {
                    // The frame thread serves the new model; until state.json says so,
                    // a kill brings the old one back at the next start.
                    self.store
                        .set_update(&record("switch", &version))
                        .map_err(|e| fail(failed("switch", e)))?;
                    fail::fail_point!("update-switch");
                    let from = state.current.clone();
                    state = StoreState {
                        current: Some(version.clone()),
                        previous: from.clone(),
                        highest: Some(max_version(state.highest.as_deref(), &version)),
                    };
                    self.store
                        .set_state(&state)
                        .map_err(|e| fail(failed("watch", e)))?;
                    let mut rec = record("watch", &version);
                    rec.from = from;
                    self.store
                        .set_update(&rec)
                        .map_err(|e| fail(failed("watch", e)))?;
                    let msg = format!(
                        "switched after {} shadow frames, {} top-1 disagreements",
                        shadow.frames, shadow.disagreements
                    );
                    tracing::info!(version = %version, "{msg}");
                    let mut d = details(&version, "watch", None);
                    d.insert("shadow".into(), msg);
                    self.emit(Report {
                        job_id: job_id.map(String::from),
                        status: JobExecutionStatus::InProgress,
                        details: d,
                    });
                }
                SwapEvent::Kept { baseline, live, .. } => {
                    let _ = self.store.clear_update();
                    let _ = self
                        .store
                        .prune(&[state.current.as_deref(), state.previous.as_deref()]);
                    let msg = format!(
                        "serving; watched {} frames: {:.1}% selected (before {:.1}%), mean confidence {:.3} (before {:.3})",
                        live.frames,
                        live.selected_share() * 100.0,
                        baseline.selected_share() * 100.0,
                        live.mean_confidence(),
                        baseline.mean_confidence()
                    );
                    tracing::info!(version = %version, "model update succeeded: {msg}");
                    let mut d = details(&version, "done", None);
                    d.insert("watch".into(), msg);
                    // What serves now, as the retained status says it too.
                    d.insert("backend".into(), self.load.backend.as_str().into());
                    return Ok(Report {
                        job_id: job_id.map(String::from),
                        status: JobExecutionStatus::Succeeded,
                        details: d,
                    });
                }
                SwapEvent::RolledBack { reason, .. } => {
                    state.current = state.previous.take();
                    self.store
                        .set_state(&state)
                        .map_err(|e| fail(failed("watch", e)))?;
                    return Err(fail(failed(
                        "watch",
                        format!("rolled back automatically: {reason}"),
                    )));
                }
                SwapEvent::CandidateFailed { error, .. } => {
                    return Err(fail(rejected(
                        "shadow",
                        format!("the model failed on a live frame: {error}"),
                    )));
                }
                SwapEvent::Replaced { .. } => {}
            }
        }
    }

    fn emit_progress(&self, job_id: Option<&str>, version: &str, step: &'static str) {
        self.emit(Report {
            job_id: job_id.map(String::from),
            status: JobExecutionStatus::InProgress,
            details: details(version, step, None),
        });
    }

    /// `edge-agent model rollback` while the agent runs: serve the previous package
    /// (or the configured model) again, now.
    fn rollback_local(&self) {
        let outcome = (|| -> Result<String, String> {
            let mut state = self.store.state().map_err(|e| e.to_string())?;
            let Some(current) = state.current.clone() else {
                return Err("no installed package serves: nothing to roll back".into());
            };
            let manifest = match &state.previous {
                Some(v) => self.store.model_manifest(v).map_err(|e| e.to_string())?,
                None => self.config_manifest.clone(),
            };
            let (serving, _) = load_serving(&manifest, &self.load)?;
            self.swap
                .send(SwapCommand::Replace(Box::new(serving)))
                .map_err(|_| "the frame thread has ended".to_string())?;
            state.current = state.previous.take();
            self.store.set_state(&state).map_err(|e| e.to_string())?;
            Ok(format!(
                "rolled back from {current} to {}",
                state.current.as_deref().unwrap_or("the configured model")
            ))
        })();
        match outcome {
            Ok(msg) => tracing::info!("{msg}"),
            Err(e) => tracing::error!(error = %e, "rollback refused"),
        }
    }
}

fn max_version(highest: Option<&str>, new: &str) -> String {
    match highest.and_then(|h| semver::Version::parse(h).ok()) {
        Some(h) if semver::Version::parse(new).is_ok_and(|n| n < h) => h.to_string(),
        _ => new.to_string(),
    }
}

impl Refusal {
    fn status_str(&self) -> &'static str {
        match self.status {
            JobExecutionStatus::Rejected => "REJECTED",
            _ => "FAILED",
        }
    }
}
