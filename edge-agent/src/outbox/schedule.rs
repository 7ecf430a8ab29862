//! The outbox's delivery state machine and resend backoff, as plain values with no
//! I/O and no clock: every function takes the current time as an argument, and the
//! random part of the jitter is a number the caller draws. The SQLite layer
//! (`store.rs`) loads a [`Delivery`], applies one of these transitions and writes the
//! result back in the same transaction.

use std::time::Duration;

/// Milliseconds since the Unix epoch. The outbox never reads a clock itself.
pub type UnixMillis = u64;

/// Where an event stands between "accepted" and "receipted".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not published, or its last publish failed before the broker's PUBACK: due now.
    ToSend,
    /// The broker acknowledged a publish (PUBACK); waiting for the relay's receipt.
    /// Due again (resent) once `next_attempt_at` has passed, or at once if it lies
    /// further ahead than the longest resend timeout (see [`resend_is_due`]).
    AwaitingReceipt { next_attempt_at: UnixMillis },
    /// Taken out of delivery (the relay rejected it for good, or the broker can
    /// never take it): never due, payloads kept until an operator requeues it or the
    /// byte bound drops it. Why is in the entry's code and reason.
    SetAside { set_aside_at: UnixMillis },
}

/// An event's delivery state plus how many publishes the broker has acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub state: State,
    /// Publishes acknowledged by the broker (PUBACK) so far; sets the next backoff.
    pub attempts: u32,
}

impl Delivery {
    /// A freshly accepted event: to send, never acknowledged.
    pub fn new() -> Self {
        Delivery {
            state: State::ToSend,
            attempts: 0,
        }
    }

    /// Whether the event should be published at `now`; `max_wait` is the longest
    /// resend timeout ([`Backoff::max`]), see [`resend_is_due`].
    pub fn is_due(&self, now: UnixMillis, max_wait: Duration) -> bool {
        match self.state {
            State::ToSend => true,
            State::AwaitingReceipt { next_attempt_at } => {
                resend_is_due(next_attempt_at, now, max_wait)
            }
            State::SetAside { .. } => false,
        }
    }

    /// The broker acknowledged a publish (first send or resend) at `now`: wait for
    /// the receipt, and resend after the backoff for this attempt if none comes.
    /// `jitter_sample` is a uniform draw from `[0, 1]` (see [`Backoff::delay`]).
    /// A set-aside event stays set aside (a PUBACK may arrive after the relay's
    /// rejection set it aside).
    pub fn acknowledged(self, now: UnixMillis, backoff: &Backoff, jitter_sample: f64) -> Self {
        if matches!(self.state, State::SetAside { .. }) {
            return self;
        }
        let attempts = self.attempts.saturating_add(1);
        let delay = backoff.delay(attempts, jitter_sample);
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        Delivery {
            state: State::AwaitingReceipt {
                next_attempt_at: now.saturating_add(delay_ms),
            },
            attempts,
        }
    }

    /// A publish failed before the broker acknowledged it (connection lost): the
    /// event is due again at once. Failed publishes do not count as attempts, so an
    /// outage does not inflate the next receipt timeout. A set-aside event stays
    /// set aside.
    pub fn publish_failed(self) -> Self {
        if matches!(self.state, State::SetAside { .. }) {
            return self;
        }
        Delivery {
            state: State::ToSend,
            attempts: self.attempts,
        }
    }
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery::new()
    }
}

/// How long to wait for a receipt before resending is a [`Backoff`]: `initial`,
/// doubling with every acknowledged attempt, capped at `max`, minus a random share of
/// up to `jitter` of itself so that a fleet coming back from an outage does not resend
/// in lockstep. `Backoff::delay(attempts, sample)` is the timeout after the
/// `attempts`-th acknowledged publish.
pub use protocol::backoff::Backoff;

/// Default receipt timeout after the first acknowledged publish.
pub fn default_initial_resend() -> Duration {
    Duration::from_secs(60)
}

/// Default upper bound of the receipt timeout.
pub fn default_max_resend() -> Duration {
    Duration::from_secs(60 * 60)
}

/// Default randomised fraction of each delay.
pub fn default_jitter() -> f64 {
    0.2
}

/// The default receipt timeouts: 60 s doubling to 1 h, 20 % of each randomised.
pub fn default_resend_backoff() -> Backoff {
    Backoff::new(default_initial_resend(), default_max_resend()).with_jitter(default_jitter())
}

/// Whether an event waiting for its receipt since a publish should be resent at
/// `now`: its resend time `next_attempt_at` has come, or it lies more than
/// `max_wait` (the longest resend timeout, [`Backoff::max`]) ahead of `now`.
///
/// The second case is the wall clock stepped back: a device without a real-time
/// clock starts in 1970 or at its last shutdown, publishes, and syncs NTP later; or
/// NTP corrects a clock that ran ahead. A resend time stored before the step can then
/// lie days ahead of the new clock. No wait this outbox computes is ever longer than
/// `max_wait` (jitter only shortens), so such a time is wrong and the entry is due at
/// once (its next PUBACK stores a time on the corrected clock). A clock stepped
/// forward needs no rule: everything just becomes due early.
pub fn resend_is_due(next_attempt_at: UnixMillis, now: UnixMillis, max_wait: Duration) -> bool {
    next_attempt_at <= now || next_attempt_at > latest_plausible_resend(now, max_wait)
}

/// The latest resend time that can have been computed at or before `now`:
/// `now + max_wait` (saturating). The SQL form of [`resend_is_due`] uses it.
pub fn latest_plausible_resend(now: UnixMillis, max_wait: Duration) -> UnixMillis {
    now.saturating_add(u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX))
}

/// How many bytes must be freed (by dropping the oldest entries) before an event of
/// `incoming` bytes fits into an outbox holding `stored` bytes with bound `max`.
/// `None` when the event is larger than the whole bound and can never fit.
pub fn bytes_to_free(stored: u64, incoming: u64, max: u64) -> Option<u64> {
    if incoming > max {
        return None;
    }
    Some(stored.saturating_add(incoming).saturating_sub(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_jitter() -> Backoff {
        Backoff {
            jitter: 0.0,
            ..default_resend_backoff()
        }
    }

    #[test]
    fn a_new_delivery_is_to_send_and_due_at_once() {
        let d = Delivery::new();
        assert_eq!(d.state, State::ToSend);
        assert_eq!(d.attempts, 0);
        assert!(d.is_due(0, HOUR));
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn puback_moves_to_awaiting_receipt_with_the_initial_timeout() {
        let d = Delivery::new().acknowledged(1_000, &no_jitter(), 0.0);
        assert_eq!(
            d.state,
            State::AwaitingReceipt {
                next_attempt_at: 61_000
            }
        );
        assert_eq!(d.attempts, 1);
    }

    #[test]
    fn awaiting_receipt_is_due_exactly_when_its_time_has_come() {
        let d = Delivery::new().acknowledged(1_000, &no_jitter(), 0.0);
        assert!(!d.is_due(60_999, HOUR));
        assert!(d.is_due(61_000, HOUR));
        assert!(d.is_due(u64::MAX, HOUR));
    }

    #[test]
    fn a_resend_acknowledged_waits_twice_as_long() {
        let b = no_jitter();
        let first = Delivery::new().acknowledged(0, &b, 0.0);
        let second = first.acknowledged(60_000, &b, 0.0);
        assert_eq!(
            second.state,
            State::AwaitingReceipt {
                next_attempt_at: 60_000 + 120_000
            }
        );
        assert_eq!(second.attempts, 2);
    }

    #[test]
    fn publish_failure_returns_to_send_and_keeps_the_attempt_count() {
        let b = no_jitter();
        let awaiting = Delivery::new().acknowledged(0, &b, 0.0);
        let failed = awaiting.publish_failed();
        assert_eq!(failed.state, State::ToSend);
        assert_eq!(failed.attempts, 1);
        assert!(failed.is_due(0, HOUR));
        assert_eq!(Delivery::new().publish_failed(), Delivery::new());
    }

    #[test]
    fn a_resend_time_further_ahead_than_the_longest_timeout_is_due_at_once() {
        // Published at 2026-11-29 by a clock that ran ahead, then NTP stepped the
        // clock back 30 days: the stored resend time is 30 days in the future.
        let published_at: UnixMillis = 1_795_900_000_000;
        let d = Delivery::new().acknowledged(published_at, &no_jitter(), 0.0);
        let stepped_back = published_at - 30 * 24 * 3_600_000;
        assert!(d.is_due(stepped_back, HOUR), "30 days ahead: due now");
        // Exactly the longest timeout ahead is still a plausible wait, a millisecond
        // more is not.
        let State::AwaitingReceipt { next_attempt_at } = d.state else {
            panic!()
        };
        assert!(!resend_is_due(
            next_attempt_at,
            next_attempt_at - 3_600_000,
            HOUR
        ));
        assert!(resend_is_due(
            next_attempt_at,
            next_attempt_at - 3_600_001,
            HOUR
        ));
        assert!(!resend_is_due(u64::MAX, u64::MAX - 1, HOUR));
        assert_eq!(latest_plausible_resend(u64::MAX - 5, HOUR), u64::MAX);
    }

    #[test]
    fn a_set_aside_event_is_never_due_and_stays_aside_on_late_pubacks() {
        let d = Delivery {
            state: State::SetAside { set_aside_at: 5 },
            attempts: 2,
        };
        assert!(!d.is_due(0, HOUR) && !d.is_due(u64::MAX, HOUR));
        assert_eq!(d.acknowledged(10, &no_jitter(), 0.0), d);
        assert_eq!(d.publish_failed(), d);
    }

    #[test]
    fn backoff_doubles_from_initial_up_to_max() {
        let b = no_jitter();
        let secs: Vec<u64> = (1..=9).map(|n| b.delay(n, 0.0).as_secs()).collect();
        assert_eq!(secs, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(b.delay(0, 0.0), b.delay(1, 0.0));
    }

    #[test]
    fn backoff_never_overflows_for_huge_attempt_counts() {
        let b = no_jitter();
        for n in [31, 32, 33, 63, 64, 1000, u32::MAX] {
            assert_eq!(b.delay(n, 0.0), Duration::from_secs(3600), "attempt {n}");
        }
        let d = Delivery {
            state: State::ToSend,
            attempts: u32::MAX,
        }
        .acknowledged(u64::MAX - 1, &b, 0.0);
        assert_eq!(d.attempts, u32::MAX);
        assert_eq!(
            d.state,
            State::AwaitingReceipt {
                next_attempt_at: u64::MAX
            }
        );
    }

    #[test]
    fn jitter_shortens_the_delay_by_at_most_its_fraction() {
        let b = Backoff {
            jitter: 0.25,
            ..default_resend_backoff()
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(60));
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(45));
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(52_500));
        // At the cap, jitter only ever shortens: the max is never exceeded.
        assert_eq!(b.delay(20, 1.0), Duration::from_secs(2700));
    }

    #[test]
    fn out_of_range_jitter_samples_are_clamped() {
        let b = Backoff {
            jitter: 0.5,
            ..default_resend_backoff()
        };
        assert_eq!(b.delay(1, -3.0), Duration::from_secs(60));
        assert_eq!(b.delay(1, f64::NAN), Duration::from_secs(60));
        assert_eq!(b.delay(1, 7.0), Duration::from_secs(30));
    }

    #[test]
    fn defaults_are_one_minute_to_one_hour() {
        let b = default_resend_backoff();
        assert_eq!(b.initial, Duration::from_secs(60));
        assert_eq!(b.max, Duration::from_secs(3600));
        assert!(b.validate().is_ok());
    }

    #[test]
    fn validate_rejects_nonsense_settings() {
        let zero = Backoff {
            initial: Duration::ZERO,
            ..default_resend_backoff()
        };
        assert!(zero.validate().unwrap_err().contains("initial"));
        let inverted = Backoff {
            max: Duration::from_secs(1),
            ..default_resend_backoff()
        };
        assert!(inverted.validate().unwrap_err().contains("max"));
        let wild = Backoff {
            jitter: 1.5,
            ..default_resend_backoff()
        };
        assert!(wild.validate().unwrap_err().contains("jitter"));
    }

    #[test]
    fn bytes_to_free_is_the_overflow_and_refuses_what_can_never_fit() {
        assert_eq!(bytes_to_free(0, 10, 100), Some(0));
        assert_eq!(bytes_to_free(90, 10, 100), Some(0));
        assert_eq!(bytes_to_free(95, 10, 100), Some(5));
        assert_eq!(bytes_to_free(500, 100, 100), Some(500));
        assert_eq!(bytes_to_free(0, 101, 100), None);
        assert_eq!(bytes_to_free(u64::MAX, 1, 100), Some(u64::MAX - 100));
    }
}
