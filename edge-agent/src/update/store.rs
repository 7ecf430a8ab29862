//! The device's installed model packages, under `<state_dir>/models/`:
//!
//! ```text
//! models/state.json       {"current":"1.0.1","previous":"1.0.0","highest":"1.0.1"}
//! models/1.0.1/           an unpacked, verified package (package.toml, model.toml, ...)
//! models/1.0.0/           the one before: what a rollback goes back to
//! models/update.json      the update under way (removed when it ends)
//! models/staging/         downloads and unpacking in progress
//! ```
//!
//! Every change is a new file renamed over the old one after an fsync, so a power cut
//! leaves either the old or the new state, never half of one. `state.json` changes
//! only at the switch and at a rollback; a package directory appears by rename once
//! all its files are written. `highest` never goes down: it is what anti-rollback
//! compares with ([`protocol::package::admit`]). Without `current`, the model the
//! config names serves.

use std::path::{Path, PathBuf};

use protocol::atomic_file::write_atomically;
use protocol::package::PackageContents;
use serde::{Deserialize, Serialize};

/// `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreState {
    /// The installed version serving now; none: the config's model.
    #[serde(default)]
    pub current: Option<String>,
    /// The version served before `current` (none: the config's model).
    #[serde(default)]
    pub previous: Option<String>,
    /// The highest version ever installed.
    #[serde(default)]
    pub highest: Option<String>,
}

/// `update.json`: an update that has started and not ended. A restart that finds it
/// reports the update as failed at `step` (or, past the switch, rolls back first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// The IoT job's id, when a job carried the update.
    #[serde(default)]
    pub job_id: Option<String>,
    pub version: String,
    /// download, verify, load, shadow, watch.
    pub step: String,
    /// The version serving when the update began.
    #[serde(default)]
    pub from: Option<String>,
}

/// A job the device finished, kept so that a terminal report the service never got
/// (the connection dropped before its PUBACK) is sent again instead of the job being
/// run a second time when `start-next` hands it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedJob {
    pub job_id: String,
    pub status: protocol::jobs::JobExecutionStatus,
    pub details: protocol::jobs::StatusDetails,
}

/// How many finished jobs `jobs.json` remembers.
const FINISHED_JOBS_KEPT: usize = 32;

#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    /// Opens (creating) `<state_dir>/models`.
    pub fn open(state_dir: &Path) -> std::io::Result<Self> {
        let dir = state_dir.join("models");
        std::fs::create_dir_all(dir.join("staging"))?;
        Ok(ModelStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn staging(&self) -> PathBuf {
        self.dir.join("staging")
    }

    /// The manifest of an installed version.
    pub fn manifest_of(&self, version: &str, contents_manifest: &str) -> PathBuf {
        self.dir.join(version).join(contents_manifest)
    }

    /// The model manifest path of an installed version (read from its package.toml).
    pub fn model_manifest(&self, version: &str) -> std::io::Result<PathBuf> {
        let text = std::fs::read_to_string(
            self.dir
                .join(version)
                .join(protocol::package::PACKAGE_MANIFEST),
        )?;
        let m = protocol::package::PackageManifest::parse(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(self.dir.join(version).join(m.model_manifest))
    }

    pub fn state(&self) -> std::io::Result<StoreState> {
        read_json(&self.dir.join("state.json")).map(Option::unwrap_or_default)
    }

    pub fn set_state(&self, state: &StoreState) -> std::io::Result<()> {
        write_json(&self.dir.join("state.json"), state)
    }

    pub fn update(&self) -> std::io::Result<Option<UpdateRecord>> {
        read_json(&self.dir.join("update.json"))
    }

    pub fn set_update(&self, record: &UpdateRecord) -> std::io::Result<()> {
        write_json(&self.dir.join("update.json"), record)
    }

    pub fn clear_update(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.dir.join("update.json")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => sync_dir(&self.dir),
        }
    }

    /// The report of a job this device already finished, if it did.
    pub fn finished_job(&self, job_id: &str) -> std::io::Result<Option<FinishedJob>> {
        let jobs: Vec<FinishedJob> = read_json(&self.dir.join("jobs.json"))?.unwrap_or_default();
        Ok(jobs.into_iter().find(|j| j.job_id == job_id))
    }

    /// Remembers a finished job (the newest [`FINISHED_JOBS_KEPT`]).
    pub fn record_finished(&self, job: FinishedJob) -> std::io::Result<()> {
        let path = self.dir.join("jobs.json");
        let mut jobs: Vec<FinishedJob> = read_json(&path)?.unwrap_or_default();
        jobs.retain(|j| j.job_id != job.job_id);
        jobs.push(job);
        let excess = jobs.len().saturating_sub(FINISHED_JOBS_KEPT);
        jobs.drain(..excess);
        write_json(&path, &jobs)
    }

    /// Writes a verified package's files into `models/<version>/` (through a staging
    /// directory and a rename). An existing directory of that version is replaced:
    /// it can only be left from an update that did not finish.
    pub fn install(
        &self,
        contents: &PackageContents,
        package_toml: &str,
    ) -> std::io::Result<PathBuf> {
        let version = &contents.manifest.version;
        let tmp = self.staging().join(format!("{version}.unpack"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        write_synced(
            &tmp.join(protocol::package::PACKAGE_MANIFEST),
            package_toml.as_bytes(),
        )?;
        for (name, bytes) in &contents.files {
            // Names were checked by protocol::package::parse: plain, no separators.
            write_synced(&tmp.join(name), bytes)?;
        }
        sync_dir(&tmp)?;
        let target = self.dir.join(version);
        if target.exists() {
            let old = self.staging().join(format!("{version}.old"));
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&target, &old)?;
            let _ = std::fs::remove_dir_all(&old);
        }
        std::fs::rename(&tmp, &target)?;
        sync_dir(&self.dir)?;
        Ok(target)
    }

    /// Removes installed versions other than `keep` (current and previous).
    pub fn prune(&self, keep: &[Option<&str>]) -> std::io::Result<()> {
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !entry.file_type()?.is_dir() || name == "staging" {
                continue;
            }
            if semver::Version::parse(&name).is_ok() && !keep.contains(&Some(name.as_ref())) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("state serializes");
    write_atomically(path, &bytes)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_reopen_and_an_absent_file_is_the_config_model() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ModelStore::open(tmp.path()).unwrap();
        assert_eq!(store.state().unwrap(), StoreState::default());
        let s = StoreState {
            current: Some("1.0.1".into()),
            previous: None,
            highest: Some("1.0.1".into()),
        };
        store.set_state(&s).unwrap();
        assert_eq!(ModelStore::open(tmp.path()).unwrap().state().unwrap(), s);
        assert!(store.update().unwrap().is_none());
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it_not_a_silent_default() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ModelStore::open(tmp.path()).unwrap();
        std::fs::write(store.dir().join("state.json"), "{not json").unwrap();
        let err = store.state().unwrap_err();
        assert!(err.to_string().contains("state.json"), "{err}");
    }
}
