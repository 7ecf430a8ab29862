//! The start after a kill: an update that `models/update.json` says was under way is
//! over, as FAILED at its step; past the switch, the model that served before it is
//! made current again first (its watch never finished). A package taken from the
//! drop folder for it goes to `rejected/` with that reason. Also the `statusDetails`
//! every report carries.

use std::path::Path;

use protocol::jobs::{JobExecutionStatus, StatusDetails};

use super::drop_folder::{reject_dropped, PROCESSING};
use super::store::ModelStore;
use super::worker::Report;

/// Reads `update.json` left by an update a kill interrupted: past the switch the
/// old model is made current again (the watch never finished); in any case the
/// update is over, as FAILED, and the report for its job is returned.
pub fn recover(store: &ModelStore, drop_dir: &Path) -> std::io::Result<Option<Report>> {
    let Some(record) = store.update()? else {
        return Ok(None);
    };
    let mut state = store.state()?;
    let detail = if state.current.as_deref() == Some(record.version.as_str()) {
        state.current = record.from.clone();
        state.previous = None;
        store.set_state(&state)?;
        format!(
            "the agent restarted during the {} step; rolled back to {}",
            record.step,
            record.from.as_deref().unwrap_or("the configured model")
        )
    } else {
        format!("the agent restarted during the {} step", record.step)
    };
    store.clear_update()?;
    if let Ok(entries) = std::fs::read_dir(drop_dir.join(PROCESSING)) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tar") {
                reject_dropped(&path, drop_dir, &format!("FAILED: {detail}"));
            }
        }
    }
    tracing::warn!(version = %record.version, "model update interrupted: {detail}");
    Ok(Some(Report {
        job_id: record.job_id,
        status: JobExecutionStatus::Failed,
        details: details(&record.version, record.step.as_str(), Some(detail)),
    }))
}

pub(super) fn details(version: &str, step: &str, reason: Option<String>) -> StatusDetails {
    let mut d = StatusDetails::new();
    d.insert("version".into(), version.into());
    d.insert("step".into(), step.into());
    if let Some(r) = reason {
        // Jobs limits a statusDetails value to 1,024 characters.
        d.insert("reason".into(), r.chars().take(1024).collect());
    }
    d
}
