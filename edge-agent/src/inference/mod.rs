//! One inference interface, `InferenceBackend`, and the backends behind it: `tflite`
//! (TF Lite 1.15 compiled in; always there, the only one on armv7) and `litert`
//! (LiteRT with XNNPACK, loaded at run time from `libLiteRt.so`). A backend is built
//! once per model and reused for every frame: building an interpreter costs
//! milliseconds and megabytes, a frame must cost neither. Which backend runs is chosen
//! at start-up (`select`): `auto` prefers LiteRT when its library loads and passes the
//! model's self-test, and otherwise falls back to `tflite`, saying why.

mod litert_backend;
mod litert_ffi;
pub mod litert_probe;
mod select;
mod tflite_backend;

use crate::model::{ModelError, ModelPackage};

pub use litert_backend::LitertBackend;
pub use select::{
    litert_library_candidates, load_backend, probe_litert_here, select_backend, BackendChoice,
    BackendError, BackendKind, BackendSelection, LoadedBackend, LITERT_LIBRARY_ENV,
};
pub use tflite_backend::TfliteBackend;

/// A model ready to run: fill `input_mut()`, call `run()`, read the scores.
pub trait InferenceBackend: Send {
    /// Short name for logs, tables and JSON ("tflite", "litert").
    fn name(&self) -> &'static str;
    /// The input tensor (NHWC float32) to fill before `run`.
    fn input_mut(&mut self) -> &mut [f32];
    /// Runs the model on the current input and returns the output scores.
    fn run(&mut self) -> Result<&[f32], InferenceError>;
}

#[derive(Debug, thiserror::Error)]
#[error("{backend} inference failed: {message}")]
pub struct InferenceError {
    pub backend: &'static str,
    pub message: String,
}

/// Backend options from the command line or the config file.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Inference threads (the interpreter's own thread pool).
    pub threads: usize,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions { threads: 1 }
    }
}

/// Runs the manifest's self-test vector (if any) and compares every score.
pub fn self_test(
    package: &ModelPackage,
    backend: &mut dyn InferenceBackend,
) -> Result<(), ModelError> {
    let (Some(test), Some(input)) = (&package.manifest.self_test, &package.self_test_input) else {
        return Ok(());
    };
    let backend_name = backend.name();
    let fail = |message: String| ModelError::SelfTest {
        name: package.display_name(),
        backend: backend_name,
        message,
    };
    backend.input_mut().copy_from_slice(input);
    let scores = backend.run().map_err(|e| fail(e.message))?;
    if scores.len() != test.scores.len() {
        return Err(fail(format!(
            "{} scores, expected {}",
            scores.len(),
            test.scores.len()
        )));
    }
    if let Some(i) = first_mismatch(scores, &test.scores, test.tolerance) {
        return Err(fail(format!(
            "score {i} ({}) is {}, expected {} within {}",
            package.labels[i], scores[i], test.scores[i], test.tolerance
        )));
    }
    Ok(())
}

/// Index of the highest score, the lowest index winning ties (the order of
/// [`top_k`]); 0 for no scores.
pub fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if s.total_cmp(&scores[best]) == std::cmp::Ordering::Greater {
            best = i;
        }
    }
    best
}

/// The first index where `got` and `want` differ by more than `tolerance` (a NaN
/// difference counts as one); `None` when every pair is within it.
pub fn first_mismatch(got: &[f32], want: &[f32], tolerance: f32) -> Option<usize> {
    got.iter().zip(want).position(|(g, w)| {
        let diff = (g - w).abs();
        diff.is_nan() || diff > tolerance
    })
}

/// One label and its score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelScore {
    pub index: usize,
    pub label: String,
    pub score: f32,
}

/// The `k` best labels, highest score first (ties keep label order).
pub fn top_k(scores: &[f32], labels: &[String], k: usize) -> Vec<LabelScore> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|index| LabelScore {
            index,
            label: labels
                .get(index)
                .cloned()
                .unwrap_or_else(|| format!("#{index}")),
            score: scores[index],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_score_then_index() {
        let labels: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let top = top_k(&[0.1, 0.4, 0.4, 0.1], &labels, 3);
        let names: Vec<&str> = top.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(names, ["b", "c", "a"]);
    }

    #[test]
    fn top_k_with_k_beyond_len_returns_all() {
        let labels = vec!["x".to_string()];
        assert_eq!(top_k(&[1.0], &labels, 5).len(), 1);
    }
}
