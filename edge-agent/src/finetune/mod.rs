//! Fine-tuning the model's last layer on reviewed frames, on the device or an
//! operator's machine, with no cloud training service.
//!
//! The flow of `edge-agent retrain` ([`retrain::retrain`]):
//! 1. [`dataset`]: labelled frames from augmented manifests and class folders;
//! 2. [`embed`]: each frame's embedding from the agent's own inference code;
//! 3. [`split`]: a seeded per-class held-out split, plus the replay of the embeddings
//!    earlier retrains kept ([`replay`]);
//! 4. [`fit`]: softmax regression from the parent's layer, grown by a row per new
//!    class, regularised toward it;
//! 5. [`gate`]: parent and candidate on the held-out frames: `promote` or `keep parent`;
//! 6. [`output`]: the new model package, its `.tflite` differing from the parent's in
//!    the last layer only, with a regenerated self-test and its lineage.
//!
//! Everything here builds for armv7 (the tflite backend, no BLAS, no S3 client).

pub mod dataset;
pub mod embed;
pub mod fit;
pub mod gate;
pub mod output;
pub mod pool;
pub mod replay;
pub mod retrain;
pub mod split;

use std::path::PathBuf;

use crate::inference::BackendError;
use crate::model::head::HeadError;
use crate::model::ModelError;

/// Why `retrain` (or the data loading `eval` shares) could not go on.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the embedding model does not reproduce the model: {0}")]
    Embedding(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Fit(String),
    /// A source of labelled frames is unusable (names the file and line).
    #[error("{0}")]
    Data(String),
    /// An image a label points at cannot be used.
    #[error("{origin}: image {} {reason} (--skip-bad goes on without it and counts it)", path.display())]
    BadImage {
        origin: String,
        path: PathBuf,
        reason: String,
    },
    #[error("the training set is empty: {0}")]
    EmptyTrainingSet(String),
    #[error("output {}: {message}", path.display())]
    Output { path: PathBuf, message: String },
}

/// A progress bar on stderr that appears only once a run has lasted a second (short
/// runs print nothing) and never when `quiet` (`--json`) or stderr is not a terminal.
pub fn progress_bar(total: u64, what: &'static str, quiet: bool) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {pos}/{len} frames, {per_sec}, eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(what);
    let shown = bar.clone();
    // Shown after a second: a helper thread flips the draw target unless the bar is
    // done by then.
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(1));
        if !shown.is_finished() {
            shown.set_draw_target(ProgressDrawTarget::stderr());
        }
    });
    bar
}
