//! Models: the manifest that describes one (`manifest`), a loaded, verified
//! model package (`package`), and the classification head read from and written
//! into the TF Lite file (`head`, for fine-tuning). Every way a model can fail to fit its manifest has its
//! own `ModelError` variant naming the file and what was wrong.

mod flatbuf;
pub mod head;
mod manifest;
mod package;

use std::path::PathBuf;

pub use manifest::{
    ColorOrder, DType, InputSection, Layout, LineageSection, ModelManifest, ModelSection,
    OutputSection, ResizeFilter, ScoreKind, SelfTestSection, MANIFEST_FORMAT,
};
pub use package::{
    default_manifest_candidates, f32_from_le_bytes, f32_to_le_bytes, find_default_manifest,
    MappedModel, ModelPackage,
};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model manifest {path} is not valid TOML: {message}")]
    ManifestSyntax { path: PathBuf, message: String },
    #[error("model manifest {path}: {message}")]
    ManifestInvalid { path: PathBuf, message: String },
    #[error("model file {path} does not match its manifest: sha256 is {actual}, the manifest says {expected}")]
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("model file {path} is not a TFLite model: {reason}")]
    NotTflite { path: PathBuf, reason: String },
    #[error("labels file {path}: {message}")]
    Labels { path: PathBuf, message: String },
    #[error("model file {path} does not match its manifest: {message}")]
    Shape { path: PathBuf, message: String },
    #[error("model file {path}: the {backend} runtime failed: {message}")]
    Runtime {
        path: PathBuf,
        backend: &'static str,
        message: String,
    },
    #[error("model {name} failed its self-test on the {backend} backend: {message}")]
    SelfTest {
        name: String,
        backend: &'static str,
        message: String,
    },
    #[error("no model manifest given and none found at: {tried}")]
    NoDefault { tried: String },
}
