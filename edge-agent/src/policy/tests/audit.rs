//! The seeded audit sample of otherwise-confident frames.

use super::*;

/// Which of `n` confident frames the audit picks.
fn audited(config: PolicyConfig, n: usize) -> Vec<usize> {
    let mut p = policy(config);
    (0..n)
        .filter(|_| is_review(&p.decide(&CONFIDENT, 0, T0)))
        .collect()
}

fn audit(rate: f64, seed: u64) -> PolicyConfig {
    PolicyConfig {
        audit_rate: rate,
        audit_seed: seed,
        ..isolated()
    }
}

#[test]
fn audit_rate_zero_sends_no_confident_frame() {
    assert!(audited(audit(0.0, 1), 10_000).is_empty());
}

#[test]
fn audit_rate_one_sends_every_confident_frame_with_the_rate() {
    let mut p = policy(audit(1.0, 1));
    assert_eq!(
        reasons(p.decide(&CONFIDENT, 0, T0)),
        [ReviewReason::Audit { rate: 1.0 }]
    );
    assert_eq!(audited(audit(1.0, 1), 1000).len(), 1000);
}

#[test]
fn audit_sample_is_deterministic_for_a_seed() {
    let first = audited(audit(0.1, 42), 1000);
    assert!(!first.is_empty());
    assert_eq!(first, audited(audit(0.1, 42), 1000));
}

#[test]
fn different_seeds_sample_different_frames() {
    assert_ne!(audited(audit(0.1, 1), 1000), audited(audit(0.1, 2), 1000));
}

#[test]
fn audit_sample_is_pinned_for_the_default_seed() {
    // Guards against a generator or key-derivation change: the same config must audit
    // the same frames after an upgrade.
    assert_eq!(
        audited(audit(0.1, default_audit_seed()), 100),
        PINNED_AUDIT_SAMPLE
    );
}
const PINNED_AUDIT_SAMPLE: [usize; 10] = [10, 12, 23, 41, 50, 51, 55, 79, 86, 97];

#[test]
fn audit_sends_about_the_configured_fraction() {
    let n = audited(audit(0.05, 7), 20_000).len();
    assert!((800..=1200).contains(&n), "{n} of 20000 at 5%");
}

#[test]
fn uncertain_frames_take_no_audit_draw() {
    // Interleaving uncertain frames does not change which confident frames are picked.
    let plain = audited(audit(0.2, 9), 200);
    let mut p = policy(audit(0.2, 9));
    let mut picked = Vec::new();
    for i in 0..200 {
        assert!(is_review(&p.decide(&UNCERTAIN, 0, T0)));
        if is_review(&p.decide(&CONFIDENT, 0, T0)) {
            picked.push(i);
        }
    }
    assert_eq!(picked, plain);
}
