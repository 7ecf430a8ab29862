//! The review policy: which classified frames go to a human, and why.
//!
//! [`ReviewPolicy`] is a pure state machine. It does no I/O, reads no clock (the
//! caller passes the time, milliseconds since the Unix epoch) and draws from no global
//! random source (the audit sample comes from a ChaCha8 generator seeded from the
//! config), so the same config and the same frames always give the same decisions.
//!
//! # Order of the checks in [`ReviewPolicy::decide`]
//! 1. **Scores**: an empty slice, one whose length is not the number of labels, or a
//!    score that is NaN, infinite or outside 0..=1 (give or take [`SCORE_TOLERANCE`]) is
//!    an [`InvalidScores`] error, counted, with no other effect. A broken model or
//!    preprocessing step is a fault to report, not a frame for a human; and sending
//!    every frame of a broken model would spend the whole review budget on garbage.
//! 2. **`never_review` label** (of the top-1) skips the frame. The operator's explicit
//!    "never" wins over everything, and such a frame takes no audit draw, no rate
//!    budget and no place in the near-duplicate memory.
//! 3. **Reasons**, all that apply, in this order: `AlwaysReviewLabel`,
//!    `LowConfidence` (the label's `min_confidence` if it has one, else the global
//!    one), `SmallMargin`, `HighEntropy`.
//! 4. **Audit**: only a frame with no reason draws from the audit generator, so the
//!    sample is a uniform fraction of the frames the model would have decided alone,
//!    which is what an audit measures. Not drawn: skipped as `Confident`.
//! 5. **Near-duplicate**: a candidate whose hash is close to a frame *sent* within the
//!    window is suppressed. It comes before the rate limit so that a repeat never
//!    spends the budget; it is compared only with frames that were sent, because a
//!    suppressed frame was seen by no one. A suppressed frame does not refresh the
//!    memory either, so a scene that stays in view is sent again once per window.
//! 6. **Rate limit**, last: it budgets what actually reaches humans, so only frames
//!    that passed every other check count against it.
//!
//! A frame that passes all six is sent, and only then remembered by both checks.
//!
//! # Configuration
//! The daemon's config file embeds [`PolicyConfig`] under `[policy]`; every field is
//! optional. This example (a test parses it and checks it against the defaults and
//! the default model's labels) shows the defaults and one override of each kind:
//! ```toml
#![doc = include_str!("example.toml")]
//! ```

mod config;
#[cfg(test)]
mod tests;
mod window;

pub use config::*;

use chacha20::rand_core::{Rng, SeedableRng};
use chacha20::ChaCha8Rng;
use protocol::ReviewReason;
use serde::{Deserialize, Serialize};

use window::{RateWindow, RecentHashes};

/// How far outside 0..=1 a score may stray (float rounding in a softmax) and still
/// count as a probability.
pub const SCORE_TOLERANCE: f32 = 1e-3;

/// What the policy decided for one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send the frame to a human, for these reasons (never empty).
    Review {
        /// Why, in the order of the checks.
        reasons: Vec<ReviewReason>,
    },
    /// Do not send it.
    Skip(SkipCause),
}

/// Why a frame is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipCause {
    /// No reason to review it, and the audit did not pick it.
    Confident,
    /// Its top-1 label is configured `never_review`.
    NeverReviewLabel,
    /// It would have been sent, but the hourly budget is spent.
    RateLimited,
    /// It would have been sent, but looks like a frame sent within the window.
    NearDuplicate {
        /// Hamming distance to the closest such frame.
        distance: u32,
    },
}

impl SkipCause {
    /// A short, stable word for the status's `outcomes.passed` (`confident`, ...).
    pub fn key(&self) -> &'static str {
        match self {
            SkipCause::Confident => "confident",
            SkipCause::NeverReviewLabel => "never_review_label",
            SkipCause::RateLimited => "rate_limited",
            SkipCause::NearDuplicate { .. } => "near_duplicate",
        }
    }
}

/// Scores that cannot be judged: the fault is in the model or the caller.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidScores {
    /// No scores at all.
    #[error("no scores to judge")]
    Empty,
    /// Not one score per label.
    #[error("{got} scores for {expected} labels")]
    LengthMismatch {
        /// Number of labels.
        expected: usize,
        /// Number of scores.
        got: usize,
    },
    /// A score that is not a probability (NaN, infinite, or outside 0..=1).
    #[error("score {index} is {value}, not a probability")]
    NotAProbability {
        /// Position of the score.
        index: usize,
        /// Its value.
        value: f32,
    },
}

/// What the policy has done since it started; for status reports and metrics.
/// `frames` is the sum of `invalid_scores`, `selected` and the four skip counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCounters {
    /// Every call of `decide`.
    pub frames: u64,
    /// Frames rejected as [`InvalidScores`].
    pub invalid_scores: u64,
    /// Frames sent for review.
    pub selected: u64,
    /// Reasons of the frames sent (a frame may have several).
    pub reasons: ReasonCounters,
    /// Skipped: no reason and no audit.
    pub skipped_confident: u64,
    /// Skipped: `never_review` label.
    pub skipped_never_review: u64,
    /// Suppressed: hourly budget spent.
    pub suppressed_rate_limited: u64,
    /// Suppressed: near-duplicate of a frame sent within the window.
    pub suppressed_near_duplicate: u64,
}

/// How often each reason appeared among the frames sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCounters {
    /// [`ReviewReason::AlwaysReviewLabel`].
    pub always_review_label: u64,
    /// [`ReviewReason::LowConfidence`].
    pub low_confidence: u64,
    /// [`ReviewReason::SmallMargin`].
    pub small_margin: u64,
    /// [`ReviewReason::HighEntropy`].
    pub high_entropy: u64,
    /// [`ReviewReason::Audit`].
    pub audit: u64,
}

/// Decides which frames go to a human; see the module documentation for the order.
/// Not `Clone`: two copies would spend the same hourly budget twice.
#[derive(Debug)]
pub struct ReviewPolicy {
    config: PolicyConfig,
    labels: Vec<String>,
    /// The override of each label, by index (no string lookup per frame).
    rules: Vec<LabelOverride>,
    audit_rng: ChaCha8Rng,
    rate: RateWindow,
    recent: Option<RecentHashes>,
    counters: PolicyCounters,
}

impl ReviewPolicy {
    /// A policy for a model with these `labels` (in score order). Validates `config`.
    pub fn new(config: PolicyConfig, labels: Vec<String>) -> Result<Self, PolicyError> {
        config.validate(&labels)?;
        let nd = &config.near_duplicate;
        let recent = nd
            .enabled
            .then(|| RecentHashes::new(nd.max_hamming, nd.window_secs, nd.max_remembered));
        Ok(Self {
            rules: rules_by_index(&config, &labels),
            audit_rng: audit_rng(config.audit_seed),
            rate: RateWindow::new(config.max_reviews_per_hour),
            recent,
            counters: PolicyCounters::default(),
            labels,
            config,
        })
    }

    /// Switches to the labels of a new model, keeping the rate window, the
    /// near-duplicate memory, the audit sequence and the counters (a model update
    /// must not reset the review budget). On error nothing changes.
    pub fn replace_labels(&mut self, labels: Vec<String>) -> Result<(), PolicyError> {
        self.config.validate(&labels)?;
        self.rules = rules_by_index(&self.config, &labels);
        self.labels = labels;
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The model's labels, in score order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// What the policy has decided so far.
    pub fn counters(&self) -> &PolicyCounters {
        &self.counters
    }

    /// Decides whether the frame with these `scores` (one per label) and perceptual
    /// hash `phash` (see [`crate::phash::dhash`]), classified at `now_ms`, goes to a
    /// human. A `Review` decision is final: the frame counts against the hourly budget
    /// and suppresses its near-duplicates from now on.
    pub fn decide(
        &mut self,
        scores: &[f32],
        phash: u64,
        now_ms: u64,
    ) -> Result<Decision, InvalidScores> {
        self.counters.frames += 1;
        let decision = self.judge(scores, phash, now_ms);
        let c = &mut self.counters;
        match &decision {
            Err(_) => c.invalid_scores += 1,
            Ok(Decision::Skip(SkipCause::Confident)) => c.skipped_confident += 1,
            Ok(Decision::Skip(SkipCause::NeverReviewLabel)) => c.skipped_never_review += 1,
            Ok(Decision::Skip(SkipCause::RateLimited)) => c.suppressed_rate_limited += 1,
            Ok(Decision::Skip(SkipCause::NearDuplicate { .. })) => c.suppressed_near_duplicate += 1,
            Ok(Decision::Review { reasons }) => {
                c.selected += 1;
                for reason in reasons {
                    let n = match reason {
                        ReviewReason::AlwaysReviewLabel { .. } => {
                            &mut c.reasons.always_review_label
                        }
                        ReviewReason::LowConfidence { .. } => &mut c.reasons.low_confidence,
                        ReviewReason::SmallMargin { .. } => &mut c.reasons.small_margin,
                        ReviewReason::HighEntropy { .. } => &mut c.reasons.high_entropy,
                        ReviewReason::Audit { .. } => &mut c.reasons.audit,
                        // Never the policy's decision (see `FrameProcessor`).
                        ReviewReason::Requested => continue,
                    };
                    *n += 1;
                }
            }
        }
        decision
    }

    fn judge(
        &mut self,
        scores: &[f32],
        phash: u64,
        now_ms: u64,
    ) -> Result<Decision, InvalidScores> {
        let ranked = Ranked::of(scores, self.labels.len())?;
        let rule = &self.rules[ranked.top];
        if rule.never_review {
            return Ok(Decision::Skip(SkipCause::NeverReviewLabel));
        }
        let mut reasons = self.reasons(scores, &ranked);
        if reasons.is_empty() {
            if !self.audit_draw() {
                return Ok(Decision::Skip(SkipCause::Confident));
            }
            reasons.push(ReviewReason::Audit {
                rate: self.config.audit_rate,
            });
        }
        if let Some(recent) = &mut self.recent {
            if let Some(distance) = recent.closest(phash, now_ms) {
                return Ok(Decision::Skip(SkipCause::NearDuplicate { distance }));
            }
        }
        if self.rate.is_full(now_ms) {
            return Ok(Decision::Skip(SkipCause::RateLimited));
        }
        self.rate.record(now_ms);
        if let Some(recent) = &mut self.recent {
            recent.record(phash, now_ms);
        }
        Ok(Decision::Review { reasons })
    }

    fn reasons(&self, scores: &[f32], ranked: &Ranked) -> Vec<ReviewReason> {
        let rule = &self.rules[ranked.top];
        let mut reasons = Vec::new();
        if rule.always_review {
            reasons.push(ReviewReason::AlwaysReviewLabel {
                label: self.labels[ranked.top].clone(),
            });
        }
        let threshold = rule.min_confidence.unwrap_or(self.config.min_confidence);
        if ranked.score < threshold {
            reasons.push(ReviewReason::LowConfidence {
                score: ranked.score,
                threshold,
            });
        }
        if let Some(threshold) = self.config.min_margin {
            if ranked.margin < threshold {
                reasons.push(ReviewReason::SmallMargin {
                    margin: ranked.margin,
                    threshold,
                });
            }
        }
        if let Some(threshold) = self.config.max_entropy_bits {
            let entropy = entropy_bits(scores);
            if entropy > threshold {
                reasons.push(ReviewReason::HighEntropy { entropy, threshold });
            }
        }
        reasons
    }

    /// One uniform draw in [0, 1) against the audit rate; no draw when the rate is 0.
    fn audit_draw(&mut self) -> bool {
        if self.config.audit_rate <= 0.0 {
            return false;
        }
        // The top 53 bits make an exactly uniform multiple of 2^-53.
        let uniform = (self.audit_rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        uniform < self.config.audit_rate
    }
}

/// The top-1 of a valid score vector.
#[derive(Debug)]
struct Ranked {
    /// Index of the highest score (the first one on a tie).
    top: usize,
    score: f32,
    /// Top-1 minus top-2 (top-1 itself when there is one label).
    margin: f32,
}

impl Ranked {
    fn of(scores: &[f32], labels: usize) -> Result<Self, InvalidScores> {
        if scores.is_empty() {
            return Err(InvalidScores::Empty);
        }
        if scores.len() != labels {
            return Err(InvalidScores::LengthMismatch {
                expected: labels,
                got: scores.len(),
            });
        }
        let valid = -SCORE_TOLERANCE..=1.0 + SCORE_TOLERANCE;
        if let Some((index, &value)) = scores.iter().enumerate().find(|(_, s)| !valid.contains(s)) {
            return Err(InvalidScores::NotAProbability { index, value });
        }
        let (mut top, mut first, mut second) = (0, scores[0], 0.0f32);
        for (i, &s) in scores.iter().enumerate().skip(1) {
            if s > first {
                (top, first, second) = (i, s, first);
            } else if s > second {
                second = s;
            }
        }
        Ok(Self {
            top,
            score: first,
            margin: first - second,
        })
    }
}

/// Shannon entropy in bits of the scores taken as a distribution (normalised by their
/// sum, so a softmax that sums to 0.999 is no problem). All-zero scores say nothing,
/// which is the uniform distribution's log2(n).
fn entropy_bits(scores: &[f32]) -> f32 {
    let sum: f64 = scores.iter().map(|&s| f64::from(s.max(0.0))).sum();
    if sum <= 0.0 {
        return (scores.len() as f64).log2() as f32;
    }
    let entropy: f64 = scores
        .iter()
        .map(|&s| f64::from(s.max(0.0)) / sum)
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.log2())
        .sum();
    entropy as f32
}

fn rules_by_index(config: &PolicyConfig, labels: &[String]) -> Vec<LabelOverride> {
    labels
        .iter()
        .map(|label| config.labels.get(label).cloned().unwrap_or_default())
        .collect()
}

/// The audit generator: ChaCha8 keyed with the seed's little-endian bytes (the rest of
/// the 256-bit key zero), a definition that does not depend on any crate's
/// `seed_from_u64` expansion.
fn audit_rng(seed: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}
