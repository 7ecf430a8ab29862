//! Why the review policy sent a frame to a human. Carried in every event so that
//! reviewers and operators can see (and count) what triggered a review.

use serde::{Deserialize, Serialize};

/// One reason a frame was selected for human review. An event carries one or more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReviewReason {
    /// The top-1 score was below the threshold (global or the label's override).
    LowConfidence { score: f32, threshold: f32 },
    /// The gap between the top-1 and top-2 scores was below the threshold.
    SmallMargin { margin: f32, threshold: f32 },
    /// The Shannon entropy of the scores (in bits) was above the threshold.
    HighEntropy { entropy: f32, threshold: f32 },
    /// The top-1 label is one that is always reviewed.
    AlwaysReviewLabel { label: String },
    /// A confident frame picked by the random audit sample.
    Audit { rate: f64 },
    /// An operator asked for this frame to be reviewed, whatever the model said: a
    /// file put into the agent's review-requests folder, e.g. by `edge-agent eval
    /// --review N` (labelled frames the model got wrong or was least sure about).
    Requested,
}

impl ReviewReason {
    /// The reason's kind as it is tagged on the wire (`low_confidence`, `audit`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            ReviewReason::LowConfidence { .. } => "low_confidence",
            ReviewReason::SmallMargin { .. } => "small_margin",
            ReviewReason::HighEntropy { .. } => "high_entropy",
            ReviewReason::AlwaysReviewLabel { .. } => "always_review_label",
            ReviewReason::Audit { .. } => "audit",
            ReviewReason::Requested => "requested",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_tagged_by_kind_and_reads_back() {
        let reasons = vec![
            ReviewReason::LowConfidence {
                score: 0.4,
                threshold: 0.6,
            },
            ReviewReason::Audit { rate: 0.01 },
            ReviewReason::Requested,
        ];
        let json = serde_json::to_string(&reasons).unwrap();
        assert_eq!(
            json,
            r#"[{"kind":"low_confidence","score":0.4,"threshold":0.6},{"kind":"audit","rate":0.01},{"kind":"requested"}]"#
        );
        assert_eq!(
            serde_json::from_str::<Vec<ReviewReason>>(&json).unwrap(),
            reasons
        );
    }
}
