//! Near-duplicate suppression and the hourly rate limit.

use super::*;

const SCENE: u64 = 0x0123_4567_89AB_CDEF;
/// `SCENE` with 3 bits flipped.
const SCENE_3_BITS_OFF: u64 = SCENE ^ 0b111;
/// `SCENE` with 6 bits flipped: still within the default max_hamming.
const SCENE_6_BITS_OFF: u64 = SCENE ^ 0b11_1111;
/// `SCENE` with 7 bits flipped: another scene.
const SCENE_7_BITS_OFF: u64 = SCENE ^ 0b111_1111;
const OTHER_SCENE: u64 = !SCENE;

fn near_duplicates_only() -> PolicyConfig {
    PolicyConfig {
        near_duplicate: NearDuplicateConfig::default(),
        ..isolated()
    }
}

fn rate_limit_only(per_hour: u32) -> PolicyConfig {
    PolicyConfig {
        max_reviews_per_hour: Some(per_hour),
        ..isolated()
    }
}

// --- near-duplicates ---

#[test]
fn near_duplicate_of_a_sent_frame_is_suppressed_with_its_distance() {
    let mut p = policy(near_duplicates_only());
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, T0)));
    assert_eq!(
        p.decide(&UNCERTAIN, SCENE_3_BITS_OFF, T0 + SECOND),
        skipped(SkipCause::NearDuplicate { distance: 3 })
    );
    assert_eq!(
        p.decide(&UNCERTAIN, SCENE_6_BITS_OFF, T0 + SECOND),
        skipped(SkipCause::NearDuplicate { distance: 6 })
    );
}

#[test]
fn frame_farther_than_max_hamming_is_sent() {
    let mut p = policy(near_duplicates_only());
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, T0)));
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE_7_BITS_OFF, T0)));
}

#[test]
fn distance_is_to_the_closest_sent_frame() {
    let mut p = policy(PolicyConfig {
        near_duplicate: NearDuplicateConfig {
            max_hamming: 10,
            ..NearDuplicateConfig::default()
        },
        ..isolated()
    });
    assert!(is_review(&p.decide(&UNCERTAIN, 0, T0)));
    assert!(is_review(&p.decide(&UNCERTAIN, 0xFFF, T0))); // 12 bits from 0
    assert_eq!(
        p.decide(&UNCERTAIN, 0x3F, T0), // 6 bits from both
        skipped(SkipCause::NearDuplicate { distance: 6 })
    );
    assert_eq!(
        p.decide(&UNCERTAIN, 0x7FF, T0), // 11 from 0, 1 from 0xFFF
        skipped(SkipCause::NearDuplicate { distance: 1 })
    );
}

#[test]
fn near_duplicate_within_window_is_suppressed() {
    let mut p = policy(near_duplicates_only());
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, T0)));
    assert_eq!(
        p.decide(&UNCERTAIN, SCENE, T0 + 600 * SECOND - 1),
        skipped(SkipCause::NearDuplicate { distance: 0 })
    );
}

#[test]
fn near_duplicate_outside_window_is_sent() {
    let mut p = policy(near_duplicates_only());
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, T0)));
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, T0 + 600 * SECOND)));
}

#[test]
fn static_scene_is_sent_once_per_window() {
    // Suppressed frames do not refresh the memory: one frame a second for an hour of
    // the same uncertain scene sends six frames with the 10-minute window.
    let mut p = policy(near_duplicates_only());
    let sent = (0..3600)
        .filter(|s| is_review(&p.decide(&UNCERTAIN, SCENE, T0 + s * SECOND)))
        .count();
    assert_eq!(sent, 6);
    assert_eq!(p.counters().suppressed_near_duplicate, 3594);
}

#[test]
fn skipped_frames_are_not_remembered() {
    let mut p = policy(near_duplicates_only());
    assert_eq!(
        p.decide(&CONFIDENT, SCENE, T0),
        skipped(SkipCause::Confident)
    );
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, T0)));
}

#[test]
fn rate_limited_frames_are_not_remembered() {
    let mut p = policy(PolicyConfig {
        max_reviews_per_hour: Some(1),
        ..near_duplicates_only()
    });
    assert!(is_review(&p.decide(&UNCERTAIN, OTHER_SCENE, T0)));
    assert_eq!(
        p.decide(&UNCERTAIN, SCENE, T0 + MINUTE),
        skipped(SkipCause::RateLimited)
    );
    // An hour later the budget is back, and SCENE was never seen by a human.
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, T0 + HOUR)));
}

#[test]
fn audited_frames_are_checked_for_near_duplicates_too() {
    let mut p = policy(PolicyConfig {
        audit_rate: 1.0,
        ..near_duplicates_only()
    });
    assert!(is_review(&p.decide(&CONFIDENT, SCENE, T0)));
    assert_eq!(
        p.decide(&CONFIDENT, SCENE, T0),
        skipped(SkipCause::NearDuplicate { distance: 0 })
    );
}

#[test]
fn near_duplicate_check_can_be_switched_off() {
    let mut p = policy(isolated());
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, T0)));
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, T0)));
}

#[test]
fn memory_is_bounded_and_forgets_the_oldest_first() {
    let mut p = policy(PolicyConfig {
        near_duplicate: NearDuplicateConfig {
            max_hamming: 0,
            max_remembered: 2,
            ..NearDuplicateConfig::default()
        },
        ..isolated()
    });
    for hash in [1, 2, 3] {
        assert!(is_review(&p.decide(&UNCERTAIN, hash, T0)));
    }
    // 1 was forgotten to make room for 3; 2 and 3 are remembered.
    assert!(is_review(&p.decide(&UNCERTAIN, 1, T0)));
    assert_eq!(
        p.decide(&UNCERTAIN, 3, T0),
        skipped(SkipCause::NearDuplicate { distance: 0 })
    );
}

// --- rate limit ---

#[test]
fn rate_limit_suppresses_frames_beyond_the_hourly_budget() {
    let mut p = policy(rate_limit_only(3));
    for i in 0..3 {
        assert!(is_review(&p.decide(&UNCERTAIN, i, T0 + i * MINUTE)));
    }
    assert_eq!(
        p.decide(&UNCERTAIN, 9, T0 + 10 * MINUTE),
        skipped(SkipCause::RateLimited)
    );
}

#[test]
fn rate_limit_allows_again_after_an_hour() {
    let mut p = policy(rate_limit_only(1));
    assert!(is_review(&p.decide(&UNCERTAIN, 0, T0)));
    assert_eq!(
        p.decide(&UNCERTAIN, 0, T0 + HOUR - 1),
        skipped(SkipCause::RateLimited)
    );
    assert!(is_review(&p.decide(&UNCERTAIN, 0, T0 + HOUR)));
}

#[test]
fn rate_limit_window_slides_frame_by_frame() {
    let mut p = policy(rate_limit_only(2));
    assert!(is_review(&p.decide(&UNCERTAIN, 0, T0)));
    assert!(is_review(&p.decide(&UNCERTAIN, 0, T0 + 30 * MINUTE)));
    // At T0 + 1h only the first frame has left the window: one slot, not two.
    assert!(is_review(&p.decide(&UNCERTAIN, 0, T0 + HOUR)));
    assert_eq!(
        p.decide(&UNCERTAIN, 0, T0 + HOUR),
        skipped(SkipCause::RateLimited)
    );
    assert!(is_review(&p.decide(&UNCERTAIN, 0, T0 + 90 * MINUTE)));
}

#[test]
fn near_duplicates_do_not_spend_the_rate_budget() {
    let mut p = policy(PolicyConfig {
        max_reviews_per_hour: Some(2),
        ..near_duplicates_only()
    });
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, T0)));
    for _ in 0..10 {
        assert!(!is_review(&p.decide(&UNCERTAIN, SCENE, T0)));
    }
    assert!(is_review(&p.decide(&UNCERTAIN, OTHER_SCENE, T0)));
}

#[test]
fn no_rate_limit_when_switched_off() {
    let mut p = policy(isolated());
    assert!((0..10_000).all(|i| is_review(&p.decide(&UNCERTAIN, i, T0))));
}

#[test]
fn clock_stepping_back_blocks_for_at_most_one_window() {
    let mut p = policy(rate_limit_only(1));
    assert!(is_review(&p.decide(&UNCERTAIN, 0, T0)));
    // The clock steps back a day (say an NTP correction): the frame sent "in the
    // future" counts as sent now, for one hour, not for the day and an hour.
    let back = T0 - 24 * HOUR;
    assert_eq!(
        p.decide(&UNCERTAIN, 0, back),
        skipped(SkipCause::RateLimited)
    );
    assert!(is_review(&p.decide(&UNCERTAIN, 0, back + HOUR)));
}

#[test]
fn clock_stepping_back_keeps_near_duplicates_for_at_most_one_window() {
    let mut p = policy(near_duplicates_only());
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, T0)));
    let back = T0 - 24 * HOUR;
    assert!(!is_review(&p.decide(&UNCERTAIN, SCENE, back)));
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, back + 600 * SECOND)));
}

#[test]
fn time_zero_and_the_far_future_do_not_overflow() {
    let mut p = policy(PolicyConfig {
        near_duplicate: NearDuplicateConfig {
            window_secs: u64::MAX,
            ..NearDuplicateConfig::default()
        },
        ..rate_limit_only(1)
    });
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, 0)));
    // The window (saturated at u64::MAX ms) has just passed, and so has the hour.
    assert!(is_review(&p.decide(&UNCERTAIN, SCENE, u64::MAX)));
    assert_eq!(
        p.decide(&UNCERTAIN, OTHER_SCENE, u64::MAX),
        skipped(SkipCause::RateLimited)
    );
}
