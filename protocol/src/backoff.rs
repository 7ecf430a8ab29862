//! Exponential backoff, the one copy the workspace uses: the agent's receipt timeout
//! and MQTT reconnects, the relay's S3/A2I retries and reconnects, camera reopening.
//! Delivery timing is part of the protocol between the two sides, so it lives here.
//!
//! A delay starts at `initial`, doubles with every attempt and is capped at `max`;
//! `jitter` is the share of it that is randomised, so that a fleet (or a set of relays)
//! that failed together does not retry in lockstep. A delay `d` becomes a value in
//! `[d * (1 - jitter), d]`: jitter never exceeds the cap. The random draw is passed in
//! (the pure [`Backoff::delay`]), and [`jitter_sample`] makes one from the OS source.

use std::time::Duration;

/// Delays `initial * 2^(attempt - 1)`, at most `max`, shortened by up to `jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Fraction of each delay that is randomised, in `[0, 1]` (clamped).
    pub jitter: f64,
}

impl Backoff {
    /// A backoff without jitter; see [`Backoff::with_jitter`].
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            jitter: 0.0,
        }
    }

    pub const fn with_jitter(self, jitter: f64) -> Self {
        Backoff { jitter, ..self }
    }

    /// Checks the settings; the error names the offending one.
    pub fn validate(&self) -> Result<(), String> {
        if self.initial.is_zero() {
            return Err("initial delay must be greater than zero".into());
        }
        if self.max < self.initial {
            return Err(format!(
                "max delay ({:?}) is shorter than the initial one ({:?})",
                self.max, self.initial
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!("jitter {} is not within [0, 1]", self.jitter));
        }
        Ok(())
    }

    /// The delay before try `attempt + 1` without jitter: `initial * 2^(attempt - 1)`
    /// capped at `max` (`attempt` is 1-based; 0 is treated as 1). Never overflows.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        1u32.checked_shl(doublings)
            .and_then(|factor| self.initial.checked_mul(factor))
            .map_or(self.max, |d| d.min(self.max))
    }

    /// [`Backoff::ceiling`] shortened by `jitter * jitter_sample` of itself.
    /// `jitter_sample` is a uniform draw from `[0, 1]` made by the caller (0 gives the
    /// full delay); values outside it, and NaN, are clamped.
    pub fn delay(&self, attempt: u32, jitter_sample: f64) -> Duration {
        let base = self.ceiling(attempt);
        let sample = if jitter_sample.is_nan() {
            0.0
        } else {
            jitter_sample.clamp(0.0, 1.0)
        };
        let keep = 1.0 - self.jitter.clamp(0.0, 1.0) * sample;
        // try_: a cap near Duration::MAX must not panic in the float round trip.
        Duration::try_from_secs_f64(base.as_secs_f64() * keep).map_or(base, |d| d.min(base))
    }
}

/// Consecutive failures against one [`Backoff`]: the delay grows with each failure
/// until [`Retries::reset`] (a success).
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    failures: u32,
}

impl Retries {
    pub const fn new(backoff: Backoff) -> Self {
        Retries {
            backoff,
            failures: 0,
        }
    }

    /// Counts a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self, jitter_sample: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.backoff.delay(self.failures, jitter_sample)
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A uniform draw from `[0, 1)` from the OS random source, for [`Backoff::delay`]
/// (0 if the source fails: the full delay, never a shorter one).
pub fn jitter_sample() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.0;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn delays_double_from_initial_up_to_max() {
        let b = Backoff::new(s(1), s(30));
        let delays: Vec<_> = (1..=7).map(|a| b.delay(a, 0.7)).collect();
        assert_eq!(delays, [s(1), s(2), s(4), s(8), s(16), s(30), s(30)]);
        assert_eq!(b.ceiling(0), s(1), "attempt 0 counts as the first");
    }

    #[test]
    fn huge_attempt_counts_and_caps_never_overflow() {
        let b = Backoff::new(s(60), Duration::MAX).with_jitter(0.5);
        assert_eq!(b.ceiling(u32::MAX), Duration::MAX);
        assert!(b.delay(u32::MAX, 1.0) <= Duration::MAX);
        assert_eq!(Backoff::new(s(1), s(30)).ceiling(40), s(30));
    }

    #[test]
    fn jitter_shortens_a_delay_by_at_most_its_share() {
        let b = Backoff::new(s(10), s(10)).with_jitter(0.5);
        assert_eq!(b.delay(1, 0.0), s(10));
        assert_eq!(b.delay(1, 1.0), s(5));
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(7500));
        assert_eq!(b.delay(1, f64::NAN), s(10), "NaN gives the full delay");
        assert_eq!(b.delay(1, 7.0), s(5), "samples are clamped to [0, 1]");
    }

    #[test]
    fn retries_grow_until_reset() {
        let mut r = Retries::new(Backoff::new(s(1), s(30)));
        assert_eq!((r.next_delay(0.0), r.next_delay(0.0)), (s(1), s(2)));
        assert_eq!(r.failures(), 2);
        r.reset();
        assert_eq!(r.next_delay(0.0), s(1));
    }

    #[test]
    fn jitter_samples_are_in_the_unit_interval_and_vary() {
        let draws: Vec<f64> = (0..64).map(|_| jitter_sample()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        assert!(draws.windows(2).any(|w| w[0] != w[1]));
    }
}
