//! Specifications of the review policy, one behaviour per test.

mod audit;
mod config;
mod decide;
mod memory;

use super::*;

/// Labels of a small test model, in score order.
const LABELS: [&str; 4] = ["husky", "pug", "poodle", "corgi"];

/// Top-1 0.9, margin 0.85: nothing to review.
const CONFIDENT: [f32; 4] = [0.9, 0.05, 0.03, 0.02];
/// Top-1 0.5 (below 0.7), margin 0.3: low confidence only.
const UNCERTAIN: [f32; 4] = [0.5, 0.2, 0.2, 0.1];

/// Some wall-clock time, in milliseconds since the Unix epoch.
const T0: u64 = 1_700_000_000_000;
const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

fn labels() -> Vec<String> {
    LABELS.iter().map(|l| l.to_string()).collect()
}

/// Defaults without the two memories (no near-duplicate check, no rate limit), so that
/// a test sees one check at a time.
fn isolated() -> PolicyConfig {
    PolicyConfig {
        max_reviews_per_hour: None,
        near_duplicate: NearDuplicateConfig {
            enabled: false,
            ..NearDuplicateConfig::default()
        },
        ..PolicyConfig::default()
    }
}

fn policy(config: PolicyConfig) -> ReviewPolicy {
    ReviewPolicy::new(config, labels()).expect("valid config")
}

/// The reasons of a `Review` decision; panics on anything else.
fn reasons(decision: Result<Decision, InvalidScores>) -> Vec<ReviewReason> {
    match decision {
        Ok(Decision::Review { reasons }) => reasons,
        other => panic!("expected a review, got {other:?}"),
    }
}

fn skipped(cause: SkipCause) -> Result<Decision, InvalidScores> {
    Ok(Decision::Skip(cause))
}

fn is_review(decision: &Result<Decision, InvalidScores>) -> bool {
    matches!(decision, Ok(Decision::Review { .. }))
}
