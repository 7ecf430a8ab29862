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
