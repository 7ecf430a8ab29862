//! The reconciliation sweep: with completion events ([`super::completions`]), listing
//! the flow's loops is only a slow catch-up for what an event missed (a message
//! dead-lettered after repeated failures, a rule created after loops ended, an event
//! lost in a misconfiguration). It runs once per `results.sweep_interval` across all
//! relays, resuming from a checkpoint in S3 (`{manifest}/sweep/checkpoint.json`), so
//! any relay can take it over and a restart does not list the whole lookback again.
//!
//! Who sweeps: every relay reads the checkpoint each tick ([`tick`]); once the last
//! sweep is an interval old, each tries to put a claim named after that checkpoint
//! (`{swept_at}-{attempt}`) only if absent: S3's conditional put picks one winner. A
//! winner that dies leaves its claim and the old checkpoint; an interval later the
//! attempt number is one higher, so another relay can claim it. The first relay
//! ever to find no checkpoint writes one at `now - lookback` without listing, so the
//! first sweep comes an interval after events were switched on, not at start-up.
//!
//! Each sweep lists from the checkpoint's watermark with the polling collector's own
//! [`LoopTracker`] and writing path ([`Collector::poll`]), then writes the new
//! watermark: the oldest loop still open (or the newest seen), less a margin.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::collector::Collector;
use super::results::LoopTracker;
use super::retry::Failure;
use super::s3::Put;

/// Loops listed this close to a sweep's newest are listed again by the next one.
const MARGIN_MS: i64 = 5 * 60 * 1000;

/// Where the next sweep starts, and when the last one finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub v: u32,
    /// Loops created before this (Unix ms) are not listed again.
    pub watermark_ms: i64,
    /// When the last sweep finished (or the checkpoint was first written).
    pub swept_at_ms: i64,
    /// The relay (MQTT client id) that wrote it.
    pub swept_by: String,
}

/// What a relay does on one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No checkpoint yet: write this one (if absent), list nothing.
    Initialize(Checkpoint),
    NotDue,
    /// Claim `claim` (put if absent); the winner lists from `from_ms`.
    Sweep {
        claim: String,
        from_ms: i64,
    },
}

/// The decision, from the checkpoint as read (`None`: absent).
pub fn next_step(
    now_ms: i64,
    interval_ms: i64,
    lookback_ms: i64,
    checkpoint: Option<&Checkpoint>,
    relay: &str,
) -> Step {
    let floor = now_ms - lookback_ms;
    let Some(c) = checkpoint else {
        return Step::Initialize(Checkpoint {
            v: 1,
            watermark_ms: floor,
            swept_at_ms: now_ms,
            swept_by: relay.to_owned(),
        });
    };
    let since = now_ms - c.swept_at_ms;
    if since < interval_ms {
        return Step::NotDue;
    }
    let attempt = since / interval_ms.max(1);
    Step::Sweep {
        claim: format!("{}-{attempt}", c.swept_at_ms),
        from_ms: c.watermark_ms.max(floor),
    }
}

/// How often a relay looks at the checkpoint: a tenth of the interval, between
/// 100 ms and 5 minutes (one GET per tick).
pub fn tick(interval: Duration) -> Duration {
    (interval / 10).clamp(Duration::from_millis(100), Duration::from_secs(300))
}

fn now_ms() -> i64 {
    protocol::timestamp::now_ms() as i64
}

impl Collector {
    /// Sweeps when due (see the module doc) until `shutdown`.
    pub async fn sweep_when_due(self, shutdown: impl Future<Output = ()>) {
        let every = tick(self.config.results.sweep_interval);
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.sweep_turn().await {
                tracing::warn!(error = %e, "reconciliation sweep failed; it is tried again an interval later");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One tick: read the checkpoint, and initialize it, or claim and sweep.
    pub async fn sweep_turn(&self) -> Result<(), Failure> {
        let r = &self.config.results;
        let key = self.layout.sweep_checkpoint_key();
        let relay = &self.config.mqtt.client_id;
        let lookback_ms = r.lookback.as_millis() as i64;
        let checkpoint = self.store.get(&key).await?.map(|bytes| {
            serde_json::from_slice::<Checkpoint>(&bytes).unwrap_or_else(|e| {
                tracing::error!(%key, error = %e, "sweep checkpoint unreadable; sweeping the lookback and writing a new one");
                Checkpoint {
                    v: 1,
                    watermark_ms: 0,
                    swept_at_ms: 0,
                    swept_by: String::new(),
                }
            })
        });
        let interval_ms = r.sweep_interval.as_millis() as i64;
        match next_step(
            now_ms(),
            interval_ms,
            lookback_ms,
            checkpoint.as_ref(),
            relay,
        ) {
            Step::NotDue => Ok(()),
            Step::Initialize(c) => {
                let body = serde_json::to_vec(&c).expect("plain fields serialize");
                self.store.put(&key, body, "application/json", true).await?;
                Ok(())
            }
            Step::Sweep { claim, from_ms } => {
                let claim_key = self.layout.sweep_claim_key(&claim);
                let body = serde_json::to_vec(&serde_json::json!({"relay": relay}))
                    .expect("plain fields serialize");
                if self
                    .store
                    .put(&claim_key, body, "application/json", true)
                    .await?
                    == Put::Existed
                {
                    return Ok(());
                }
                let started = now_ms();
                let mut tracker = LoopTracker::resuming_at(lookback_ms, MARGIN_MS, from_ms);
                self.poll(&mut tracker).await?;
                let c = Checkpoint {
                    v: 1,
                    watermark_ms: tracker.list_from(now_ms()),
                    swept_at_ms: now_ms(),
                    swept_by: relay.clone(),
                };
                let body = serde_json::to_vec(&c).expect("plain fields serialize");
                self.store
                    .put(&key, body, "application/json", false)
                    .await?;
                tracing::info!(
                    from = %protocol::timestamp::format_rfc3339_utc(from_ms),
                    next_from = %protocol::timestamp::format_rfc3339_utc(c.watermark_ms),
                    open = tracker.open_loops(),
                    took_ms = now_ms() - started,
                    "reconciliation sweep done"
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn at(swept_at_ms: i64, watermark_ms: i64) -> Checkpoint {
        Checkpoint {
            v: 1,
            watermark_ms,
            swept_at_ms,
            swept_by: "r1".into(),
        }
    }

    #[test]
    fn the_first_relay_writes_a_checkpoint_at_the_lookback_and_lists_nothing() {
        assert_eq!(
            next_step(100 * DAY, HOUR, 14 * DAY, None, "r2"),
            Step::Initialize(Checkpoint {
                v: 1,
                watermark_ms: 86 * DAY,
                swept_at_ms: 100 * DAY,
                swept_by: "r2".into()
            })
        );
    }

    #[test]
    fn a_sweep_is_due_an_interval_after_the_last_and_resumes_at_its_watermark() {
        let c = at(10 * DAY, 9 * DAY);
        assert_eq!(
            next_step(10 * DAY + HOUR - 1, HOUR, 14 * DAY, Some(&c), "r"),
            Step::NotDue
        );
        assert_eq!(
            next_step(10 * DAY + HOUR, HOUR, 14 * DAY, Some(&c), "r"),
            Step::Sweep {
                claim: format!("{}-1", 10 * DAY),
                from_ms: 9 * DAY
            }
        );
    }

    #[test]
    fn relays_reading_the_same_checkpoint_in_one_interval_claim_the_same_name() {
        let c = at(10 * DAY, 9 * DAY);
        let a = next_step(10 * DAY + HOUR + 5, HOUR, 14 * DAY, Some(&c), "a");
        let b = next_step(10 * DAY + 2 * HOUR - 5, HOUR, 14 * DAY, Some(&c), "b");
        assert_eq!(a, b, "one claim: one winner");
    }

    #[test]
    fn a_claim_whose_sweeper_died_gives_way_to_a_new_claim_an_interval_later() {
        let c = at(10 * DAY, 9 * DAY);
        let Step::Sweep { claim, .. } =
            next_step(10 * DAY + 2 * HOUR, HOUR, 14 * DAY, Some(&c), "a")
        else {
            panic!()
        };
        assert_eq!(claim, format!("{}-2", 10 * DAY));
    }

    #[test]
    fn an_old_watermark_is_clamped_to_the_lookback() {
        let c = at(30 * DAY, DAY);
        assert!(matches!(
            next_step(30 * DAY + HOUR, HOUR, 14 * DAY, Some(&c), "r"),
            Step::Sweep { from_ms, .. } if from_ms == 16 * DAY + HOUR
        ));
    }

    #[test]
    fn the_tick_is_a_tenth_of_the_interval_within_bounds() {
        assert_eq!(tick(Duration::from_secs(3600)), Duration::from_secs(300));
        assert_eq!(tick(Duration::from_secs(60)), Duration::from_secs(6));
        assert_eq!(tick(Duration::from_millis(200)), Duration::from_millis(100));
    }
}
