//! The promotion gate: parent and candidate are scored on the same held-out frames
//! (the split `retrain` kept aside, and each `--holdout` set). The candidate is
//! promoted unless, on some set, its top-1 accuracy is lower than the parent's by more
//! than `max_regression`. A class the parent does not have counts as a parent mistake
//! (the parent cannot name it). "None of these" frames have no right answer to count
//! and are left out of accuracy.

use serde::{Deserialize, Serialize};

use crate::inference::argmax;
use crate::model::head::DenseHead;

/// One held-out set's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSet {
    pub name: String,
    pub frames: usize,
    pub parent_accuracy: f64,
    pub candidate_accuracy: f64,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub promote: bool,
    /// False when there was nothing held out to compare on (promoted ungated).
    pub gated: bool,
    /// "promote" or "keep parent".
    pub decision: String,
    /// One sentence: why.
    pub reason: String,
    pub max_regression: f64,
    pub sets: Vec<GateSet>,
}

/// Accuracy of top-1 predictions against truths (`None` truth: not counted).
pub fn accuracy(predicted: &[usize], truth: &[Option<usize>]) -> (usize, f64) {
    let counted: Vec<(usize, usize)> = predicted
        .iter()
        .zip(truth)
        .filter_map(|(p, t)| t.map(|t| (*p, t)))
        .collect();
    let right = counted.iter().filter(|(p, t)| p == t).count();
    let n = counted.len();
    (n, if n == 0 { 0.0 } else { right as f64 / n as f64 })
}

/// Scores parent and candidate on one set of (embedding, truth) pairs.
pub fn score_set<'a>(
    name: String,
    parent: &DenseHead,
    candidate: &DenseHead,
    items: impl Iterator<Item = (&'a [f32], Option<usize>)>,
) -> GateSet {
    let (mut truth, mut by_parent, mut by_candidate) = (Vec::new(), Vec::new(), Vec::new());
    for (embedding, t) in items {
        truth.push(t);
        by_parent.push(argmax(&parent.scores(embedding)));
        by_candidate.push(argmax(&candidate.scores(embedding)));
    }
    let (frames, parent_accuracy) = accuracy(&by_parent, &truth);
    let (_, candidate_accuracy) = accuracy(&by_candidate, &truth);
    GateSet {
        name,
        frames,
        parent_accuracy,
        candidate_accuracy,
    }
}

/// Decides from the sets' results.
pub fn decide(sets: Vec<GateSet>, max_regression: f64) -> GateResult {
    let scored: Vec<&GateSet> = sets.iter().filter(|s| s.frames > 0).collect();
    let worst = scored
        .iter()
        .map(|s| (s, s.parent_accuracy - s.candidate_accuracy))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let (promote, reason) = match worst {
        None => (
            true,
            "no held-out frames to compare on (too few frames per class; pass --holdout): promoted without a gate".to_string(),
        ),
        Some((set, loss)) if loss > max_regression + 1e-12 => (
            false,
            format!(
                "on {} the candidate's accuracy is {:.1}%, the parent's {:.1}%: a loss of {:.1} points, more than --max-regression {:.1}",
                set.name,
                set.candidate_accuracy * 100.0,
                set.parent_accuracy * 100.0,
                loss * 100.0,
                max_regression * 100.0
            ),
        ),
        Some(_) => (
            true,
            format!(
                "on every held-out set the candidate is within {:.1} points of the parent or better",
                max_regression * 100.0
            ),
        ),
    };
    GateResult {
        gated: worst.is_some(),
        promote,
        decision: if promote { "promote" } else { "keep parent" }.into(),
        reason,
        max_regression,
        sets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, frames: usize, parent: f64, candidate: f64) -> GateSet {
        GateSet {
            name: name.into(),
            frames,
            parent_accuracy: parent,
            candidate_accuracy: candidate,
        }
    }

    #[test]
    fn a_loss_beyond_the_allowed_regression_on_any_set_keeps_the_parent() {
        let r = decide(
            vec![set("split", 10, 0.5, 0.9), set("holdout", 50, 0.9, 0.8)],
            0.05,
        );
        assert!(!r.promote);
        assert_eq!(r.decision, "keep parent");
        assert!(
            r.reason.contains("holdout") && r.reason.contains("10.0 points"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn a_loss_within_the_allowed_regression_promotes() {
        let r = decide(vec![set("holdout", 50, 0.9, 0.88)], 0.05);
        assert!(r.promote, "{}", r.reason);
    }

    #[test]
    fn no_held_out_frames_promotes_and_says_so() {
        let r = decide(vec![set("split", 0, 0.0, 0.0)], 0.0);
        assert!(r.promote && !r.gated && r.reason.contains("no held-out frames"));
    }

    #[test]
    fn none_of_these_frames_are_not_counted() {
        assert_eq!(accuracy(&[0, 1, 2], &[Some(0), None, Some(1)]), (2, 0.5));
    }
}
