//! Offline evaluation of a classifier on a labelled data set: accuracy, per-class
//! precision/recall/F1 and one-vs-rest AUROC/AUPRC, the confusion matrix, calibration
//! (ECE and a reliability table) and the review-budget curve that says how many frames
//! a confidence threshold sends to human review and how many of the model's mistakes
//! that catches. Everything here is pure (no I/O) and panic-free on any input; the
//! numbers follow scikit-learn's definitions so that `sklearn_check.py` can check them:
//! precision/recall/F1 use `zero_division=0`, AUROC is `roc_auc_score` (trapezoid, ties
//! averaged), AUPRC is `average_precision_score` (step-wise, not trapezoid).
//!
//! Conventions worth knowing:
//! - The model's classes are the first `n` labels, `n` = the longest `scores` vector
//!   (shorter ones are read as 0.0 for the missing classes). A truth index `>= n` is a
//!   class the model cannot predict, so that frame is always a mistake. Labels missing
//!   for a score or truth index are named `#<index>`, as `top_k` does.
//! - Top-1 is the highest score, the lowest index winning ties (like `top_k`). A frame
//!   with no scores at all has no prediction and confidence 0.0: a mistake that is
//!   reviewed at any positive threshold and is not counted in the confusion matrix.
//! - Empty input gives `frames == 0`, every ratio 0.0, every AUC `None`, an ECE of 0.0
//!   and a review curve of two points with `catch_share == 1.0` (there is nothing to
//!   catch).

use serde::{Deserialize, Serialize};

/// At most this many points are kept in [`Metrics::review_curve`].
pub const MAX_REVIEW_POINTS: usize = 512;
/// At most this many points are kept in each ROC and PR [`Curve`].
pub const MAX_CURVE_POINTS: usize = 200;

/// One evaluated frame: its true class and the model's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Index into the labels; may be past the model's classes.
    pub truth: usize,
    /// Probabilities over the model's classes, in output order.
    pub scores: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub frames: u64,
    /// Every label: the given ones, extended with `#<index>` where needed.
    pub labels: Vec<String>,
    /// The model's classes are `labels[..model_classes]`.
    pub model_classes: usize,
    /// Frames whose top-1 prediction is not the truth.
    pub mistakes: u64,
    pub accuracy: f64,
    /// One entry per label, in label order.
    pub per_class: Vec<ClassMetrics>,
    /// Macro averages over the labels that occur as truth or as a prediction (sklearn's
    /// default `labels` for `average='macro'`); a label that does neither is left out.
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    /// Mean over the classes where the AUROC / AUPRC is defined.
    pub macro_auroc: Option<f64>,
    pub macro_auprc: Option<f64>,
    /// `confusion[truth][predicted]`: a row per label, a column per model class.
    pub confusion: Vec<Vec<u64>>,
    /// Expected calibration error over [`Metrics::reliability`].
    pub ece: f64,
    pub reliability: Vec<ReliabilityBin>,
    /// Sorted by threshold, at most [`MAX_REVIEW_POINTS`] points, see [`review_curve`].
    pub review_curve: Vec<ReviewPoint>,
    /// ROC curves, points `(false positive rate, true positive rate)`.
    pub roc: Vec<Curve>,
    /// Precision-recall curves, points `(recall, precision)`.
    pub pr: Vec<Curve>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub label: String,
    /// Frames whose truth is this label.
    pub support: u64,
    /// Frames predicted as this label.
    pub predicted: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// One-vs-rest over this class's score; `None` when the class has no positive or no
    /// negative frame, or is not a model class.
    pub auroc: Option<f64>,
    pub auprc: Option<f64>,
}

/// One equal-width bin of top-1 confidence: `[lower, upper)`, the last bin `[lower, 1]`.
/// Confidences outside [0, 1] are counted in the first or last bin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub frames: u64,
    /// `None` for an empty bin.
    pub mean_confidence: Option<f64>,
    /// Share of the bin's frames whose top-1 is right; `None` for an empty bin.
    pub accuracy: Option<f64>,
}

/// What reviewing every frame with top-1 confidence `< threshold` costs and catches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReviewPoint {
    pub threshold: f64,
    /// `reviewed / frames` (0.0 when there are no frames).
    pub review_share: f64,
    /// `caught / mistakes` (1.0 when there are no mistakes).
    pub catch_share: f64,
    pub reviewed: u64,
    /// Mistakes among the reviewed frames.
    pub caught: u64,
}

/// The same as [`ReviewPoint`] for an external policy that has no single threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PolicyPoint {
    pub review_share: f64,
    pub catch_share: f64,
    pub reviewed: u64,
    pub caught: u64,
}

/// A curve for one class, for plotting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Top-1 of one frame.
struct Outcome {
    truth: usize,
    predicted: Option<usize>,
    confidence: f64,
    correct: bool,
}

impl Outcome {
    fn of(p: &Prediction) -> Self {
        let top = top1(&p.scores);
        Outcome {
            truth: p.truth,
            predicted: top.map(|(i, _)| i),
            confidence: top.map_or(0.0, |(_, s)| f64::from(s)),
            correct: top.is_some_and(|(i, _)| i == p.truth),
        }
    }
}

/// Index and score of the highest score, the lowest index winning ties.
fn top1(scores: &[f32]) -> Option<(usize, f32)> {
    (!scores.is_empty()).then(|| {
        let i = crate::inference::argmax(scores);
        (i, scores[i])
    })
}

/// `num / den`, or 0.0 when `den` is 0 (sklearn's `zero_division=0`).
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Computes every metric; `reliability_bins` of 0 is taken as 1.
pub fn evaluate(labels: &[String], predictions: &[Prediction], reliability_bins: usize) -> Metrics {
    let model_classes = predictions
        .iter()
        .map(|p| p.scores.len())
        .max()
        .unwrap_or(0);
    let truth_classes = predictions.iter().map(|p| p.truth + 1).max().unwrap_or(0);
    let n_labels = labels.len().max(model_classes).max(truth_classes);
    let labels: Vec<String> = (0..n_labels)
        .map(|i| labels.get(i).cloned().unwrap_or_else(|| format!("#{i}")))
        .collect();
    let outcomes: Vec<Outcome> = predictions.iter().map(Outcome::of).collect();
    let frames = outcomes.len() as u64;
    let correct = outcomes.iter().filter(|o| o.correct).count() as u64;

    let mut confusion = vec![vec![0u64; model_classes]; n_labels];
    let (mut support, mut predicted, mut tp) = (
        vec![0u64; n_labels],
        vec![0u64; n_labels],
        vec![0u64; n_labels],
    );
    for o in &outcomes {
        support[o.truth] += 1;
        if let Some(p) = o.predicted {
            confusion[o.truth][p] += 1;
            predicted[p] += 1;
            tp[p] += u64::from(o.correct);
        }
    }

    let mut per_class = Vec::with_capacity(n_labels);
    let (mut roc, mut pr) = (Vec::new(), Vec::new());
    for (c, label) in labels.iter().enumerate() {
        let (tp, predicted) = (tp[c], predicted[c]);
        let (fp, fn_) = (predicted - tp, support[c] - tp);
        let ranking = Ranking::new(predictions, c).filter(|_| c < model_classes);
        if let Some(r) = &ranking {
            let curve = |points: Vec<(f64, f64)>| Curve {
                label: label.clone(),
                points: downsample(&points, MAX_CURVE_POINTS),
            };
            roc.push(curve(r.roc_points()));
            pr.push(curve(r.pr_points()));
        }
        per_class.push(ClassMetrics {
            label: label.clone(),
            support: support[c],
            predicted,
            precision: ratio(tp, predicted),
            recall: ratio(tp, support[c]),
            f1: ratio(2 * tp, 2 * tp + fp + fn_),
            auroc: ranking.as_ref().map(Ranking::auroc),
            auprc: ranking.as_ref().map(Ranking::average_precision),
        });
    }
    let occurring = || {
        per_class
            .iter()
            .filter(|m| m.support > 0 || m.predicted > 0)
    };
    let (reliability, ece) = reliability(&outcomes, reliability_bins.max(1));

    Metrics {
        frames,
        model_classes,
        mistakes: frames - correct,
        accuracy: ratio(correct, frames),
        macro_precision: mean(occurring().map(|m| m.precision)).unwrap_or(0.0),
        macro_recall: mean(occurring().map(|m| m.recall)).unwrap_or(0.0),
        macro_f1: mean(occurring().map(|m| m.f1)).unwrap_or(0.0),
        macro_auroc: mean(per_class.iter().filter_map(|m| m.auroc)),
        macro_auprc: mean(per_class.iter().filter_map(|m| m.auprc)),
        per_class,
        labels,
        confusion,
        ece,
        reliability,
        review_curve: downsample_review_curve(&review_curve(predictions), MAX_REVIEW_POINTS),
        roc,
        pr,
    }
}

/// One class's frames ranked by its score, highest first, as cumulative
/// `(true positives, false positives)` at the end of each group of equal scores: the
/// thresholds of sklearn's `roc_curve` / `precision_recall_curve` before any dropping.
struct Ranking {
    steps: Vec<(u64, u64)>,
    positives: u64,
    negatives: u64,
}

impl Ranking {
    /// `None` when the class has no positive or no negative frame.
    fn new(predictions: &[Prediction], class: usize) -> Option<Self> {
        let mut ranked: Vec<(f32, bool)> = predictions
            .iter()
            .map(|p| {
                (
                    p.scores.get(class).copied().unwrap_or(0.0),
                    p.truth == class,
                )
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut tp, mut fp) = (0u64, 0u64);
        let mut steps = Vec::new();
        for (i, &(score, positive)) in ranked.iter().enumerate() {
            if positive {
                tp += 1;
            } else {
                fp += 1;
            }
            // `==`, not `total_cmp`: -0.0 and 0.0 are one threshold, as in numpy.
            if ranked.get(i + 1).is_none_or(|next| next.0 != score) {
                steps.push((tp, fp));
            }
        }
        (tp > 0 && fp > 0).then_some(Ranking {
            steps,
            positives: tp,
            negatives: fp,
        })
    }

    /// Trapezoid area under the ROC curve, in counts until the final division so that
    /// ties contribute exactly half (the Mann-Whitney convention).
    fn auroc(&self) -> f64 {
        let mut area = 0.0;
        let mut prev = (0u64, 0u64);
        for &(tp, fp) in &self.steps {
            area += (fp - prev.1) as f64 * (tp + prev.0) as f64;
            prev = (tp, fp);
        }
        area / (2.0 * self.positives as f64 * self.negatives as f64)
    }

    /// Σ (R_k - R_{k-1}) P_k over the thresholds: sklearn's `average_precision_score`.
    fn average_precision(&self) -> f64 {
        let mut ap = 0.0;
        let mut prev_tp = 0u64;
        for &(tp, fp) in &self.steps {
            ap += ratio(tp - prev_tp, self.positives) * ratio(tp, tp + fp);
            prev_tp = tp;
        }
        ap
    }

    fn roc_points(&self) -> Vec<(f64, f64)> {
        let (p, n) = (self.positives, self.negatives);
        std::iter::once((0.0, 0.0))
            .chain(
                self.steps
                    .iter()
                    .map(|&(tp, fp)| (ratio(fp, n), ratio(tp, p))),
            )
            .collect()
    }

    fn pr_points(&self) -> Vec<(f64, f64)> {
        std::iter::once((0.0, 1.0))
            .chain(
                self.steps
                    .iter()
                    .map(|&(tp, fp)| (ratio(tp, self.positives), ratio(tp, tp + fp))),
            )
            .collect()
    }
}

/// Equal-width bins over [0, 1] and ECE = Σ |accuracy - confidence| · n_bin / N.
fn reliability(outcomes: &[Outcome], bins: usize) -> (Vec<ReliabilityBin>, f64) {
    let edge = |i: usize| i as f64 / bins as f64;
    let mut count = vec![0u64; bins];
    let mut confidence = vec![0.0f64; bins];
    let mut correct = vec![0u64; bins];
    for o in outcomes {
        // Start from the product, then settle on the bin whose printed edges hold the
        // value, so that a confidence equal to an edge always opens the upper bin.
        let c = o.confidence.clamp(0.0, 1.0);
        let mut b = ((c * bins as f64) as usize).min(bins - 1);
        while b + 1 < bins && c >= edge(b + 1) {
            b += 1;
        }
        while b > 0 && c < edge(b) {
            b -= 1;
        }
        count[b] += 1;
        confidence[b] += o.confidence;
        correct[b] += u64::from(o.correct);
    }
    let total = outcomes.len() as u64;
    let mut ece = 0.0;
    let table = (0..bins)
        .map(|b| {
            let n = count[b];
            let (conf, acc) = (confidence[b] / n as f64, ratio(correct[b], n));
            if n > 0 {
                ece += (acc - conf).abs() * ratio(n, total);
            }
            ReliabilityBin {
                lower: edge(b),
                upper: edge(b + 1),
                frames: n,
                mean_confidence: (n > 0).then_some(conf),
                accuracy: (n > 0).then_some(acc),
            }
        })
        .collect();
    (table, ece)
}

/// The full review-budget curve, not downsampled: one point per distinct top-1
/// confidence, plus threshold 0.0 and a last threshold just above both 1.0 and the
/// highest confidence (every frame reviewed), sorted by threshold.
pub fn review_curve(predictions: &[Prediction]) -> Vec<ReviewPoint> {
    let mut frames: Vec<(f64, bool)> = predictions
        .iter()
        .map(Outcome::of)
        .map(|o| (o.confidence, !o.correct))
        .collect();
    frames.sort_by(|a, b| a.0.total_cmp(&b.0));
    let top = frames.last().map_or(1.0, |f| f.0.max(1.0)).next_up();
    let mut thresholds: Vec<f64> = std::iter::once(0.0)
        .chain(frames.iter().map(|f| f.0))
        .chain(std::iter::once(top))
        .collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup_by(|a, b| a == b);

    let total = frames.len() as u64;
    let mistakes = frames.iter().filter(|f| f.1).count() as u64;
    let (mut reviewed, mut caught) = (0usize, 0u64);
    thresholds
        .into_iter()
        .map(|threshold| {
            while reviewed < frames.len() && frames[reviewed].0 < threshold {
                caught += u64::from(frames[reviewed].1);
                reviewed += 1;
            }
            let (review_share, catch_share) = shares(reviewed as u64, caught, total, mistakes);
            ReviewPoint {
                threshold,
                review_share,
                catch_share,
                reviewed: reviewed as u64,
                caught,
            }
        })
        .collect()
}

fn shares(reviewed: u64, caught: u64, frames: u64, mistakes: u64) -> (f64, f64) {
    let catch = if mistakes == 0 {
        1.0
    } else {
        ratio(caught, mistakes)
    };
    (ratio(reviewed, frames), catch)
}

/// Keeps at most `max` points (at least 2) of a review curve, always the first and the
/// last. The points where `caught` first reaches a new value go first, so that
/// [`threshold_for_catch`] on the result gives the same answer as on the full curve
/// whenever the curve has fewer than `max - 1` such steps; the rest of the budget is
/// spread evenly over the other points to keep the plotted shape.
pub fn downsample_review_curve(curve: &[ReviewPoint], max: usize) -> Vec<ReviewPoint> {
    let max = max.max(2);
    if curve.len() <= max {
        return curve.to_vec();
    }
    let last = curve.len() - 1;
    let steps: Vec<usize> = (0..curve.len())
        .filter(|&i| i == 0 || i == last || curve[i].caught > curve[i - 1].caught)
        .collect();
    let mut keep = if steps.len() >= max {
        downsample(&steps, max)
    } else {
        let others: Vec<usize> = (0..curve.len())
            .filter(|i| steps.binary_search(i).is_err())
            .collect();
        let mut keep = steps.clone();
        keep.extend(downsample(&others, max - steps.len()));
        keep
    };
    keep.sort_unstable();
    keep.dedup();
    keep.into_iter().map(|i| curve[i]).collect()
}

/// The lowest threshold on `curve` (sorted by threshold, as [`review_curve`] returns
/// it) whose catch share reaches `target`; `None` when no point does.
pub fn threshold_for_catch(curve: &[ReviewPoint], target: f64) -> Option<ReviewPoint> {
    curve.iter().find(|p| p.catch_share >= target).copied()
}

/// What an external policy that sent the frames flagged in `sent` reviewed and caught.
/// `sent[i]` belongs to `predictions[i]`; a frame without a flag counts as not sent.
pub fn review_point(predictions: &[Prediction], sent: &[bool]) -> PolicyPoint {
    let (mut reviewed, mut caught, mut mistakes) = (0u64, 0u64, 0u64);
    for (i, p) in predictions.iter().enumerate() {
        let mistake = !Outcome::of(p).correct;
        let was_sent = sent.get(i).copied().unwrap_or(false);
        mistakes += u64::from(mistake);
        reviewed += u64::from(was_sent);
        caught += u64::from(was_sent && mistake);
    }
    let (review_share, catch_share) = shares(reviewed, caught, predictions.len() as u64, mistakes);
    PolicyPoint {
        review_share,
        catch_share,
        reviewed,
        caught,
    }
}

/// At most `max` items, evenly spaced, keeping the first and the last.
fn downsample<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max || max == 0 {
        return if max == 0 { Vec::new() } else { items.to_vec() };
    }
    if max == 1 {
        return vec![items[0].clone()];
    }
    let last = items.len() - 1;
    (0..max)
        .map(|k| items[(k * last + (max - 1) / 2) / (max - 1)].clone())
        .collect()
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
