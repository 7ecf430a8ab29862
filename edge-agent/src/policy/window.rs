//! The two memories of the review policy, both of frames actually sent for review:
//! their times (for the hourly rate limit) and their perceptual hashes (for the
//! near-duplicate check). Both are bounded and forget by age.
//!
//! Time comes from the caller and may step backwards (an NTP correction, a device
//! without a real-time clock). An entry stamped later than "now" is then re-stamped to
//! now: it keeps counting, but for no longer than one window after the step, instead
//! of for as long as the clock needs to catch up (which may be days).

use std::collections::VecDeque;

use crate::phash::hamming;

/// One hour in milliseconds: the rate limit's sliding window.
pub(crate) const HOUR_MS: u64 = 3_600_000;

/// Times of the frames sent within the last hour, at most `limit` of them.
#[derive(Debug, Clone)]
pub(crate) struct RateWindow {
    limit: Option<u32>,
    sent_at: VecDeque<u64>,
}

impl RateWindow {
    pub(crate) fn new(limit: Option<u32>) -> Self {
        Self {
            limit,
            sent_at: VecDeque::new(),
        }
    }

    /// Whether the hour before `now_ms` already holds `limit` sent frames.
    pub(crate) fn is_full(&mut self, now_ms: u64) -> bool {
        let Some(limit) = self.limit else {
            return false;
        };
        forget_older_than(&mut self.sent_at, now_ms, HOUR_MS);
        self.sent_at.len() >= limit as usize
    }

    /// Records a frame sent at `now_ms`. Only called after `is_full` said no, so the
    /// queue never holds more than `limit` entries.
    pub(crate) fn record(&mut self, now_ms: u64) {
        if self.limit.is_some() {
            self.sent_at.push_back(now_ms);
        }
    }
}

/// Perceptual hashes of the frames sent within the window, at most `capacity`.
#[derive(Debug, Clone)]
pub(crate) struct RecentHashes {
    max_hamming: u32,
    window_ms: u64,
    capacity: usize,
    sent: VecDeque<Sent>,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    at_ms: u64,
    hash: u64,
}

impl RecentHashes {
    pub(crate) fn new(max_hamming: u32, window_secs: u64, capacity: usize) -> Self {
        Self {
            max_hamming,
            window_ms: window_secs.saturating_mul(1000),
            capacity,
            sent: VecDeque::new(),
        }
    }

    /// The distance to the closest remembered hash within `max_hamming`, if any.
    pub(crate) fn closest(&mut self, hash: u64, now_ms: u64) -> Option<u32> {
        forget_older_than(&mut self.sent, now_ms, self.window_ms);
        self.sent
            .iter()
            .map(|s| hamming(s.hash, hash))
            .filter(|&d| d <= self.max_hamming)
            .min()
    }

    /// Remembers a frame sent at `now_ms`, forgetting the oldest one when full.
    pub(crate) fn record(&mut self, hash: u64, now_ms: u64) {
        if self.sent.len() >= self.capacity {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent {
            at_ms: now_ms,
            hash,
        });
    }
}

/// Drops the entries at least `window_ms` old (entries are in time order, oldest
/// first), after re-stamping any entry from the future to `now_ms`.
fn forget_older_than<T: Stamped>(entries: &mut VecDeque<T>, now_ms: u64, window_ms: u64) {
    for entry in entries.iter_mut().rev() {
        let at = entry.at_ms();
        if *at <= now_ms {
            break;
        }
        *at = now_ms;
    }
    while let Some(oldest) = entries.front_mut() {
        if now_ms - *oldest.at_ms() < window_ms {
            break;
        }
        entries.pop_front();
    }
}

/// An entry that carries the time it was sent.
trait Stamped {
    fn at_ms(&mut self) -> &mut u64;
}

impl Stamped for u64 {
    fn at_ms(&mut self) -> &mut u64 {
        self
    }
}

impl Stamped for Sent {
    fn at_ms(&mut self) -> &mut u64 {
        &mut self.at_ms
    }
}
