//! Scores, reasons, per-label overrides, counters and label replacement.

use super::*;

// --- scores the policy cannot judge ---

#[test]
fn empty_scores_are_an_error_not_a_panic() {
    let mut p = policy(isolated());
    assert_eq!(p.decide(&[], 0, T0), Err(InvalidScores::Empty));
}

#[test]
fn scores_for_another_number_of_labels_are_an_error() {
    let mut p = policy(isolated());
    assert_eq!(
        p.decide(&[0.5, 0.5], 0, T0),
        Err(InvalidScores::LengthMismatch {
            expected: 4,
            got: 2
        })
    );
}

#[test]
fn nan_score_is_an_error_not_a_panic() {
    let mut p = policy(isolated());
    match p.decide(&[0.5, f32::NAN, 0.2, 0.1], 0, T0) {
        Err(InvalidScores::NotAProbability { index: 1, value }) => assert!(value.is_nan()),
        other => panic!("expected NotAProbability, got {other:?}"),
    }
}

#[test]
fn infinite_negative_and_above_one_scores_are_errors() {
    let mut p = policy(isolated());
    for bad in [f32::INFINITY, f32::NEG_INFINITY, -0.01, 1.01, 3.0] {
        assert_eq!(
            p.decide(&[0.1, 0.1, bad, 0.1], 0, T0),
            Err(InvalidScores::NotAProbability {
                index: 2,
                value: bad
            }),
            "{bad}"
        );
    }
}

#[test]
fn score_a_rounding_error_above_one_is_accepted() {
    let mut p = policy(isolated());
    assert_eq!(
        p.decide(&[1.0 + 1e-6, 0.0, 0.0, -0.0], 0, T0),
        skipped(SkipCause::Confident)
    );
}

#[test]
fn invalid_scores_are_counted_and_spend_nothing() {
    let mut p = policy(PolicyConfig {
        max_reviews_per_hour: Some(1),
        ..PolicyConfig::default()
    });
    assert!(p.decide(&[f32::NAN; 4], 7, T0).is_err());
    assert_eq!(p.counters().invalid_scores, 1);
    assert_eq!(p.counters().frames, 1);
    // Neither the budget of one nor the near-duplicate memory was touched.
    assert!(is_review(&p.decide(&UNCERTAIN, 7, T0)));
}

#[test]
fn error_messages_say_what_is_wrong() {
    assert_eq!(
        InvalidScores::LengthMismatch {
            expected: 19,
            got: 1000
        }
        .to_string(),
        "1000 scores for 19 labels"
    );
    assert_eq!(
        InvalidScores::NotAProbability {
            index: 3,
            value: f32::NAN
        }
        .to_string(),
        "score 3 is NaN, not a probability"
    );
    assert_eq!(InvalidScores::Empty.to_string(), "no scores to judge");
}

// --- reasons ---

#[test]
fn confident_frame_is_skipped() {
    let mut p = policy(PolicyConfig::default());
    assert_eq!(p.decide(&CONFIDENT, 0, T0), skipped(SkipCause::Confident));
}

#[test]
fn low_confidence_frame_is_sent_with_score_and_threshold() {
    let mut p = policy(isolated());
    assert_eq!(
        reasons(p.decide(&UNCERTAIN, 0, T0)),
        [ReviewReason::LowConfidence {
            score: 0.5,
            threshold: 0.7
        }]
    );
}

#[test]
fn score_exactly_at_min_confidence_is_confident() {
    let mut p = policy(isolated());
    assert_eq!(
        p.decide(&[0.7, 0.1, 0.1, 0.1], 0, T0),
        skipped(SkipCause::Confident)
    );
}

#[test]
fn small_margin_frame_is_sent() {
    let mut p = policy(PolicyConfig {
        min_confidence: 0.3,
        ..isolated()
    });
    let r = reasons(p.decide(&[0.45, 0.40, 0.1, 0.05], 0, T0));
    assert!(
        matches!(r[..], [ReviewReason::SmallMargin { margin, threshold }]
            if (margin - 0.05).abs() < 1e-6 && threshold == 0.15),
        "{r:?}"
    );
}

#[test]
fn tie_between_the_top_two_is_a_zero_margin_and_the_first_label_wins() {
    let mut p = policy(PolicyConfig {
        min_confidence: 0.3,
        labels: [(
            "pug".to_string(),
            LabelOverride {
                always_review: true,
                ..LabelOverride::default()
            },
        )]
        .into(),
        ..isolated()
    });
    // pug (index 1) ties with poodle (index 2): pug is the top-1.
    assert_eq!(
        reasons(p.decide(&[0.1, 0.45, 0.45, 0.0], 0, T0)),
        [
            ReviewReason::AlwaysReviewLabel {
                label: "pug".into()
            },
            ReviewReason::SmallMargin {
                margin: 0.0,
                threshold: 0.15
            },
        ]
    );
}

#[test]
fn margin_check_switched_off_never_fires() {
    let mut p = policy(PolicyConfig {
        min_confidence: 0.3,
        min_margin: None,
        ..isolated()
    });
    assert_eq!(
        p.decide(&[0.45, 0.45, 0.1, 0.0], 0, T0),
        skipped(SkipCause::Confident)
    );
}

#[test]
fn single_label_model_has_its_top_score_as_margin() {
    let mut p = ReviewPolicy::new(isolated(), vec!["only".into()]).unwrap();
    assert_eq!(p.decide(&[0.9], 0, T0), skipped(SkipCause::Confident));
    let r = reasons(p.decide(&[0.1], 0, T0));
    assert!(matches!(r[1], ReviewReason::SmallMargin { margin, .. } if margin == 0.1));
}

#[test]
fn high_entropy_frame_is_sent() {
    let mut p = policy(PolicyConfig {
        min_confidence: 0.0,
        min_margin: None,
        max_entropy_bits: Some(1.5),
        ..isolated()
    });
    assert_eq!(
        reasons(p.decide(&[0.25; 4], 0, T0)),
        [ReviewReason::HighEntropy {
            entropy: 2.0,
            threshold: 1.5
        }]
    );
    assert_eq!(
        p.decide(&[0.5, 0.5, 0.0, 0.0], 0, T0),
        skipped(SkipCause::Confident),
        "one bit is not above 1.5"
    );
}

#[test]
fn entropy_check_is_off_by_default() {
    let mut p = policy(PolicyConfig {
        min_confidence: 0.0,
        min_margin: None,
        ..isolated()
    });
    assert_eq!(p.decide(&[0.25; 4], 0, T0), skipped(SkipCause::Confident));
}

#[test]
fn entropy_is_measured_in_bits_of_the_normalised_scores() {
    assert_eq!(entropy_bits(&[1.0, 0.0, 0.0, 0.0]), 0.0);
    assert_eq!(entropy_bits(&[0.25; 4]), 2.0);
    assert_eq!(entropy_bits(&[0.5, 0.5]), 1.0);
    // A softmax that sums to a bit less than one is normalised first.
    assert!((entropy_bits(&[0.4995, 0.4995]) - 1.0).abs() < 1e-6);
    // All-zero scores carry no information: the uniform distribution's entropy.
    assert_eq!(entropy_bits(&[0.0; 8]), 3.0);
}

#[test]
fn all_reasons_that_apply_are_listed_in_check_order() {
    let mut p = policy(PolicyConfig {
        max_entropy_bits: Some(1.0),
        labels: [(
            "poodle".to_string(),
            LabelOverride {
                always_review: true,
                ..LabelOverride::default()
            },
        )]
        .into(),
        ..isolated()
    });
    let r = reasons(p.decide(&[0.2, 0.3, 0.35, 0.15], 0, T0));
    assert!(
        matches!(
            &r[..],
            [
                ReviewReason::AlwaysReviewLabel { label },
                ReviewReason::LowConfidence { score: 0.35, threshold: 0.7 },
                ReviewReason::SmallMargin { threshold: 0.15, .. },
                ReviewReason::HighEntropy { entropy, threshold: 1.0 },
            ] if label == "poodle" && *entropy > 1.9
        ),
        "{r:?}"
    );
}

// --- per-label overrides ---

fn with_label(label: &str, rule: LabelOverride) -> PolicyConfig {
    PolicyConfig {
        labels: [(label.to_string(), rule)].into(),
        ..isolated()
    }
}

#[test]
fn label_min_confidence_replaces_the_global_threshold_for_that_label() {
    let mut p = policy(with_label(
        "husky",
        LabelOverride {
            min_confidence: Some(0.95),
            ..LabelOverride::default()
        },
    ));
    assert_eq!(
        reasons(p.decide(&CONFIDENT, 0, T0)),
        [ReviewReason::LowConfidence {
            score: 0.9,
            threshold: 0.95
        }]
    );
    // Another label with the same score keeps the global 0.7.
    assert_eq!(
        p.decide(&[0.05, 0.9, 0.03, 0.02], 0, T0),
        skipped(SkipCause::Confident)
    );
}

#[test]
fn label_min_confidence_may_also_be_lower_than_the_global_one() {
    let mut p = policy(with_label(
        "husky",
        LabelOverride {
            min_confidence: Some(0.4),
            ..LabelOverride::default()
        },
    ));
    assert_eq!(p.decide(&UNCERTAIN, 0, T0), skipped(SkipCause::Confident));
}

#[test]
fn always_review_label_is_sent_even_when_confident() {
    let mut p = policy(with_label(
        "husky",
        LabelOverride {
            always_review: true,
            ..LabelOverride::default()
        },
    ));
    assert_eq!(
        reasons(p.decide(&CONFIDENT, 0, T0)),
        [ReviewReason::AlwaysReviewLabel {
            label: "husky".into()
        }]
    );
}

#[test]
fn never_review_label_is_skipped_even_when_uncertain() {
    let mut p = policy(with_label(
        "husky",
        LabelOverride {
            never_review: true,
            ..LabelOverride::default()
        },
    ));
    assert_eq!(
        p.decide(&UNCERTAIN, 0, T0),
        skipped(SkipCause::NeverReviewLabel)
    );
}

#[test]
fn never_review_label_is_not_audited() {
    let mut p = policy(PolicyConfig {
        audit_rate: 1.0,
        ..with_label(
            "husky",
            LabelOverride {
                never_review: true,
                ..LabelOverride::default()
            },
        )
    });
    assert_eq!(
        p.decide(&CONFIDENT, 0, T0),
        skipped(SkipCause::NeverReviewLabel)
    );
}

#[test]
fn overrides_apply_to_the_top1_label_only() {
    let mut p = policy(with_label(
        "pug",
        LabelOverride {
            always_review: true,
            ..LabelOverride::default()
        },
    ));
    // pug is second here.
    assert_eq!(
        p.decide(&[0.8, 0.15, 0.05, 0.0], 0, T0),
        skipped(SkipCause::Confident)
    );
}

// --- counters and labels ---

#[test]
fn counters_add_up_to_the_frames_seen() {
    let mut p = policy(PolicyConfig {
        max_reviews_per_hour: Some(2),
        near_duplicate: NearDuplicateConfig::default(),
        ..with_label(
            "corgi",
            LabelOverride {
                never_review: true,
                ..LabelOverride::default()
            },
        )
    });
    p.decide(&CONFIDENT, 0, T0).unwrap(); // confident
    p.decide(&[0.0, 0.0, 0.0, 0.4], 0, T0).unwrap(); // never_review
    p.decide(&UNCERTAIN, 0, T0).unwrap(); // sent
    p.decide(&UNCERTAIN, 0, T0).unwrap(); // near-duplicate
    p.decide(&UNCERTAIN, u64::MAX, T0).unwrap(); // sent
    p.decide(&UNCERTAIN, 0xF0F0, T0).unwrap(); // rate limited
    p.decide(&[], 0, T0).unwrap_err(); // invalid
    let c = p.counters();
    assert_eq!(
        *c,
        PolicyCounters {
            frames: 7,
            invalid_scores: 1,
            selected: 2,
            reasons: ReasonCounters {
                low_confidence: 2,
                ..ReasonCounters::default()
            },
            skipped_confident: 1,
            skipped_never_review: 1,
            suppressed_rate_limited: 1,
            suppressed_near_duplicate: 1,
        }
    );
}

#[test]
fn counters_count_every_reason_of_a_sent_frame() {
    let mut p = policy(PolicyConfig {
        audit_rate: 1.0,
        ..isolated()
    });
    p.decide(&[0.3, 0.25, 0.25, 0.2], 0, T0).unwrap();
    p.decide(&CONFIDENT, 0, T0).unwrap();
    let r = &p.counters().reasons;
    assert_eq!((r.low_confidence, r.small_margin, r.audit), (1, 1, 1));
    assert_eq!(p.counters().selected, 2);
}

#[test]
fn replacing_the_labels_keeps_budget_memory_and_counters() {
    let mut p = policy(PolicyConfig {
        max_reviews_per_hour: Some(1),
        ..PolicyConfig::default()
    });
    assert!(is_review(&p.decide(&UNCERTAIN, 0, T0)));
    let new_labels: Vec<String> = ["a", "b", "c"].iter().map(|l| l.to_string()).collect();
    p.replace_labels(new_labels.clone()).unwrap();
    assert_eq!(p.labels(), new_labels);
    assert_eq!(
        p.decide(&[0.5, 0.3, 0.2], u64::MAX, T0),
        skipped(SkipCause::RateLimited)
    );
    assert_eq!(p.counters().frames, 2);
}

#[test]
fn replacing_the_labels_fails_and_changes_nothing_when_an_override_is_orphaned() {
    let mut p = policy(with_label(
        "husky",
        LabelOverride {
            always_review: true,
            ..LabelOverride::default()
        },
    ));
    let err = p.replace_labels(vec!["cat".into()]).unwrap_err();
    assert!(matches!(err, PolicyError::UnknownLabel { .. }), "{err}");
    assert_eq!(p.labels(), labels());
    assert!(is_review(&p.decide(&CONFIDENT, 0, T0)));
}

#[test]
fn new_rejects_an_invalid_config() {
    let err = ReviewPolicy::new(
        PolicyConfig {
            min_confidence: 2.0,
            ..PolicyConfig::default()
        },
        labels(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "policy.min_confidence must be within 0..=1, got 2"
    );
    assert_eq!(
        ReviewPolicy::new(PolicyConfig::default(), vec![]).unwrap_err(),
        PolicyError::NoLabels
    );
}
