//! Embeddings from the agent's own inference code. The model is edited so that its
//! output is the pooled tensor feeding its last FULLY_CONNECTED layer
//! ([`crate::model::head::embedding_model`]), then loaded like any model through
//! [`select_backend`], so the embedding comes from the same backend (tflite or
//! litert), preprocessing and threads the agent classifies with. The head is run in
//! Rust ([`DenseHead::scores`]).
//!
//! Why edit the model rather than ask the interpreter for an intermediate tensor:
//! TF Lite 1.15 could (`set_outputs`), LiteRT's compiled-model API cannot (its
//! outputs are the signature's, and XNNPACK fuses intermediates away), and one way for
//! both backends keeps them comparable. Why run the head in Rust: fine-tuning needs
//! the embedding anyway, and the head is a 19x1280 matrix product; at load the Rust
//! head is checked against the parent's own self-test scores, so the two cannot drift.

use std::path::PathBuf;

use crate::inference::{first_mismatch, InferenceBackend};
use crate::inference::{select_backend, BackendChoice, BackendOptions, BackendSelection};
use crate::model::head::{embedding_model, read_head, DenseHead};
use crate::model::{ModelPackage, SelfTestSection};

use super::FinetuneError;

/// A model cut at its embedding, on one backend, with its head read out.
pub struct Embedder {
    backend: Box<dyn InferenceBackend>,
    pub head: DenseHead,
    pub selection: BackendSelection,
}

impl Embedder {
    /// Loads the embedding variant of `package` on the backend `choice` asks for and
    /// checks that embedding + Rust head reproduce the package's self-test scores.
    ///
    /// # Errors
    /// [`FinetuneError::Head`] when the model's last layer cannot be retrained;
    /// [`FinetuneError::Backend`] when no backend loads the variant;
    /// [`FinetuneError::Embedding`] when the self-test check fails.
    pub fn load(
        package: &ModelPackage,
        options: &BackendOptions,
        choice: &BackendChoice,
    ) -> Result<Self, FinetuneError> {
        let bytes = package.read_model()?;
        let head = read_head(&bytes)?;
        let (variant, width) = embedding_model(&bytes)?;
        // The backends load a package from a file; the variant lives in a private
        // temporary file only while the backend is built (a mapping keeps it after).
        let dir = tempfile::tempdir().map_err(|e| FinetuneError::Io {
            what: "a temporary directory for the embedding model".into(),
            source: e,
        })?;
        let path = dir.path().join("embedding.tflite");
        std::fs::write(&path, &variant).map_err(|e| FinetuneError::Io {
            what: format!("writing {}", path.display()),
            source: e,
        })?;
        let mut cut = package.clone();
        cut.model_path = path;
        cut.manifest.model.sha256 = protocol::sha256_hex(&variant);
        cut.labels = (0..width).map(|i| format!("embedding[{i}]")).collect();
        cut.manifest.self_test = None;
        cut.self_test_input = None;
        let loaded = select_backend(&cut, options, choice)?;
        let mut embedder = Embedder {
            backend: loaded.backend,
            head,
            selection: loaded.selection,
        };
        if let (Some(test), Some(input)) = (&package.manifest.self_test, &package.self_test_input) {
            embedder.check(test, input, &package.labels)?;
        }
        Ok(embedder)
    }

    /// "tflite" or "litert".
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The embedding (`head.features` floats) of one prepared input tensor.
    pub fn embed(&mut self, tensor: &[f32]) -> Result<Vec<f32>, FinetuneError> {
        self.backend.input_mut().copy_from_slice(tensor);
        let out = self
            .backend
            .run()
            .map_err(|e| FinetuneError::Inference(e.to_string()))?;
        Ok(out.to_vec())
    }

    fn check(
        &mut self,
        test: &SelfTestSection,
        input: &[f32],
        labels: &[String],
    ) -> Result<(), FinetuneError> {
        let embedding = self.embed(input)?;
        let scores = self.head.scores(&embedding);
        // The head is summed in another order than the runtime's kernel: allow a
        // little more than the self-test's own tolerance.
        let tolerance = test.tolerance.max(1e-5) * 4.0;
        if let Some(i) = first_mismatch(&scores, &test.scores, tolerance) {
            return Err(FinetuneError::Embedding(format!(
                "embedding + head give {} for score {i} ({}) of the self-test input, the model gives {}",
                scores[i],
                labels.get(i).map(String::as_str).unwrap_or("?"),
                test.scores[i]
            )));
        }
        Ok(())
    }
}

/// Where an embedding came from, for errors and the training-data digest.
#[derive(Debug, Clone)]
pub struct EmbeddedFrame {
    pub path: PathBuf,
    pub embedding: Vec<f32>,
    /// sha256 of the image file's bytes.
    pub image_sha256: String,
}

/// Embeds the images of `frames` in order; see [`for_each_frame`].
pub fn embed_all(
    embedder: &mut Embedder,
    input: &crate::model::InputSection,
    frames: &[super::dataset::LabelledFrame],
    skip_bad: bool,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Option<EmbeddedFrame>>, FinetuneError> {
    for_each_frame(input, frames, skip_bad, progress, |path, p| {
        Ok(EmbeddedFrame {
            path: path.to_path_buf(),
            embedding: embedder.embed(&p.tensor)?,
            image_sha256: protocol::sha256_hex(&p.bytes),
        })
    })
}

/// Runs `f` on the prepared input of each of `frames`, in order (decoding on
/// background threads, as `classify` does). A missing or undecodable image is an
/// error naming it and where its label came from, or, with `skip_bad`, a line on
/// stderr and `None` in its place.
pub fn for_each_frame<T>(
    input: &crate::model::InputSection,
    frames: &[super::dataset::LabelledFrame],
    skip_bad: bool,
    progress: &indicatif::ProgressBar,
    mut f: impl FnMut(&std::path::Path, &crate::pipeline::PreparedFrame) -> Result<T, FinetuneError>,
) -> Result<Vec<Option<T>>, FinetuneError> {
    use crate::pipeline::{FrameError, Preparer, PreparerOptions};
    let options = PreparerOptions {
        keep_pixels: false,
        ..PreparerOptions::default()
    };
    let paths: Vec<PathBuf> = frames.iter().map(|f| f.path.clone()).collect();
    let mut preparer = Preparer::spawn_with(paths, input, &options);
    let mut out = Vec::with_capacity(frames.len());
    for frame in frames {
        let Some((path, prepared)) = preparer.next() else {
            break;
        };
        let reason = match prepared {
            Ok(p) => {
                out.push(Some(f(&path, &p)?));
                progress.inc(1);
                continue;
            }
            Err(FrameError::Read(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                "is missing".to_string()
            }
            Err(FrameError::Read(e)) => format!("cannot be read: {e}"),
            Err(FrameError::Decode(e)) => format!("cannot be decoded: {e}"),
        };
        if !skip_bad {
            return Err(FinetuneError::BadImage {
                origin: frame.origin.clone(),
                path,
                reason,
            });
        }
        progress.suspend(|| {
            eprintln!(
                "edge-agent: skipping {}: image {} {reason}",
                frame.origin,
                path.display()
            )
        });
        out.push(None);
        progress.inc(1);
    }
    Ok(out)
}
