//! `edge-agent eval`: how good the model is on a labelled set, and what a review
//! threshold costs. Frames are classified by the same pipeline as `classify` and the
//! daemon (decode, resize, backend); [`metrics`] turns the scores into numbers and
//! [`report`] into a terminal report or a static HTML page with SVG plots.
//!
//! A label in the data that the model does not have is kept (its frames are mistakes
//! the model cannot avoid); "none of these" frames have no right answer and are left
//! out, counted. The `[policy]` point applies the review policy's score checks
//! (confidence, margin, entropy, per-label overrides) to every frame; the audit, the
//! hourly budget and near-duplicate suppression depend on time and on the stream, not
//! on the frame, and are left out of it.

pub mod metrics;
pub mod report;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::finetune::dataset::{LabelledFrame, Target};
use crate::finetune::embed::for_each_frame;
use crate::finetune::FinetuneError;
use crate::pipeline::Classifier;
use crate::policy::{Decision, PolicyConfig, ReviewPolicy};
use metrics::{PolicyPoint, Prediction, ReviewPoint};

/// The outcome of one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub model: String,
    pub backend: String,
    pub metrics: metrics::Metrics,
    /// Lowest threshold whose review catches `catch_target` of the mistakes.
    pub catch_target: f64,
    pub target_point: Option<ReviewPoint>,
    pub policy_point: Option<PolicyPoint>,
    /// "none of these" frames, left out.
    pub none_of_these: usize,
    /// Images skipped with `--skip-bad`.
    pub skipped: usize,
    pub seconds: f64,
    /// Every frame's label and scores (in `metrics.labels` order), for analyses of
    /// one's own.
    pub predictions: Vec<FramePrediction>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FramePrediction {
    /// The file as shown (escaped: `protocol::file_name`).
    pub file: String,
    /// The file itself, whatever bytes its name holds.
    #[serde(skip)]
    pub path: std::path::PathBuf,
    /// Index into `metrics.labels`.
    pub truth: usize,
    /// One per model class.
    pub scores: Vec<f32>,
}

/// Classifies every frame and computes the metrics.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    classifier: &mut Classifier,
    model: &str,
    input: &crate::model::InputSection,
    frames: &[LabelledFrame],
    policy: &PolicyConfig,
    catch_target: f64,
    skip_bad: bool,
    progress: &indicatif::ProgressBar,
) -> Result<Evaluation, FinetuneError> {
    let started = std::time::Instant::now();
    let model_labels = classifier.labels().to_vec();
    let mut labels = model_labels.clone();
    let extra: BTreeSet<&str> = frames
        .iter()
        .filter_map(|f| match &f.target {
            Target::Label(l) if !model_labels.contains(l) => Some(l.as_str()),
            _ => None,
        })
        .collect();
    labels.extend(extra.into_iter().map(String::from));
    let scores = for_each_frame(input, frames, skip_bad, progress, |_, p| {
        classifier
            .classify(&p.tensor)
            .map(|c| c.scores)
            .map_err(|e| FinetuneError::Inference(e.to_string()))
    })?;
    let skipped = scores.iter().filter(|s| s.is_none()).count();
    let mut none_of_these = 0;
    let mut predictions = Vec::new();
    let mut files = Vec::new();
    for (frame, scores) in frames.iter().zip(scores) {
        let Some(scores) = scores else { continue };
        match &frame.target {
            Target::NoneOfThese => none_of_these += 1,
            Target::Label(l) => {
                predictions.push(Prediction {
                    truth: labels
                        .iter()
                        .position(|x| x == l)
                        .expect("every label was added"),
                    scores,
                });
                files.push(frame.path.clone());
            }
        }
    }
    if predictions.is_empty() {
        return Err(FinetuneError::Data(format!(
            "nothing to score: of {} frames, {none_of_these} are \"none of these\" and {skipped} were skipped",
            frames.len()
        )));
    }
    let metrics = metrics::evaluate(&labels, &predictions, 10);
    let full_curve = metrics::review_curve(&predictions);
    let target_point = metrics::threshold_for_catch(&full_curve, catch_target);
    let sent = policy_flags(policy, &model_labels, &predictions)
        .map_err(|e| FinetuneError::Data(format!("the [policy] does not fit the model: {e}")))?;
    let policy_point = Some(metrics::review_point(&predictions, &sent));
    Ok(Evaluation {
        model: model.to_string(),
        backend: classifier.backend_name().to_string(),
        metrics,
        catch_target,
        target_point,
        policy_point,
        none_of_these,
        skipped,
        seconds: started.elapsed().as_secs_f64(),
        predictions: predictions
            .into_iter()
            .zip(files)
            .map(|(p, path)| FramePrediction {
                file: protocol::file_name::escaped_path(&path),
                path,
                truth: p.truth,
                scores: p.scores,
            })
            .collect(),
    })
}

/// For each prediction, whether the policy's score checks send it (see the module
/// docs).
///
/// # Errors
/// The policy does not fit the model's labels (an override names a label it lacks).
pub fn policy_flags(
    policy: &PolicyConfig,
    labels: &[String],
    predictions: &[Prediction],
) -> Result<Vec<bool>, crate::policy::PolicyError> {
    let mut scores_only = policy.clone();
    scores_only.audit_rate = 0.0;
    scores_only.max_reviews_per_hour = None;
    scores_only.near_duplicate.enabled = false;
    let mut policy = ReviewPolicy::new(scores_only, labels.to_vec())?;
    Ok(predictions
        .iter()
        .map(|p| matches!(policy.decide(&p.scores, 0, 0), Ok(Decision::Review { .. })))
        .collect())
}

/// The report's header facts.
pub fn report_context(evaluation: &Evaluation, dataset: &str) -> report::ReportContext {
    report::ReportContext {
        title: format!("Evaluation of {}", evaluation.model),
        model: format!("{} (backend {})", evaluation.model, evaluation.backend),
        dataset: dataset.to_string(),
        catch_target: evaluation.catch_target,
        target_point: evaluation.target_point,
        policy_point: evaluation.policy_point,
    }
}
