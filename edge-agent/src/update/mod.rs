//! Model updates on the device: signed packages in, a new model serving without a
//! restart, and the way back.
//!
//! A package (see [`protocol::package`]) arrives by an AWS IoT job (its document
//! holds a presigned URL, the size, sha256 and minisign signature; the MQTT driver
//! hands it over) or is dropped into `<state_dir>/updates/` by a device owner as
//! `NAME.tar` + `NAME.tar.minisig`. Either way the [`worker`] takes it through
//! download, [`verify`], install ([`store`]), load and self-test on the running
//! backend, then hands it to the frame thread, which shadows, switches and watches
//! ([`lifecycle`], `daemon/serving.rs`). The device keeps the previous package, and
//! `edge-agent model rollback` or a watch that fails goes back to it.
//!
//! Invariant: whatever step a kill or a failure interrupts, the next frame (or the
//! next start) is classified by a model that loaded and passed its self-test.

pub mod config;
pub mod download;
mod drop_folder;
pub mod lifecycle;
mod recover;
pub mod store;
pub mod verify;
pub mod worker;

use std::path::Path;

pub use config::UpdateSection;

use crate::daemon::serving::ServingModel;
use crate::inference::{
    select_backend, BackendChoice, BackendKind, BackendOptions, BackendSelection,
};
use crate::model::ModelPackage;
use crate::pipeline::Classifier;
use crate::policy::{PolicyConfig, ReviewPolicy};
use crate::preprocess::Preprocessor;

/// What loading a model needs besides its manifest.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub threads: usize,
    pub top_k: usize,
    /// At start, the configured choice; for an update, the running backend's kind, so
    /// the new model runs where the old one did.
    pub backend: BackendKind,
    pub litert_library: Option<std::path::PathBuf>,
    pub policy: PolicyConfig,
    /// The configured model's version, the anti-rollback floor while no package has
    /// been installed.
    pub config_version: Option<String>,
}

impl LoadOptions {
    pub fn config_version(&self) -> Option<semver::Version> {
        self.config_version
            .as_deref()
            .and_then(|v| semver::Version::parse(v).ok())
    }
}

/// Loads a model package, builds its backend (which runs the self-test) and the
/// review policy for its labels. The error says which of the three failed.
pub fn load_serving(
    manifest: &Path,
    options: &LoadOptions,
) -> Result<(ServingModel, BackendSelection), String> {
    let package = ModelPackage::load(manifest).map_err(|e| e.to_string())?;
    let loaded = select_backend(
        &package,
        &BackendOptions {
            threads: options.threads,
        },
        &BackendChoice {
            kind: options.backend,
            library: options.litert_library.clone(),
        },
    )
    .map_err(|e| e.to_string())?;
    let selection = loaded.selection.clone();
    let policy = ReviewPolicy::new(options.policy.clone(), package.labels.clone())
        .map_err(|e| format!("[policy] does not fit the model's labels: {e}"))?;
    let info = protocol::ModelInfo {
        name: package.manifest.model.name.clone(),
        version: package.manifest.model.version.clone(),
        sha256: package.manifest.model.sha256.clone(),
    };
    Ok((
        ServingModel {
            pre: Preprocessor::new(&package.manifest.input),
            classifier: Classifier::new(loaded, package.labels.clone(), options.top_k),
            policy,
            info,
        },
        selection,
    ))
}

/// The backend kind that names a running backend ("tflite", "litert").
pub fn kind_of(backend_name: &str) -> BackendKind {
    match backend_name {
        "litert" => BackendKind::Litert,
        _ => BackendKind::Tflite,
    }
}
