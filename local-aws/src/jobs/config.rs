//! A job's rollout and abort configuration, in the shapes and ranges of IoT's CreateJob
//! (AWS IoT API Reference: `JobExecutionsRolloutConfig`, `ExponentialRolloutRate`,
//! `RateIncreaseCriteria`, `AbortConfig`, `AbortCriteria`), and the rollout's pace:
//! [`RolloutPace`], how many things may still be notified in the current minute.
//!
//! How the pace works ("Job rollout, scheduling, and abort configurations" in the AWS
//! IoT Developer Guide): without `exponentialRate` the job notifies at most
//! `maximumPerMinute` things (default 1000) per minute. With it, the rate starts at
//! `baseRatePerMinute` and is multiplied by `incrementFactor` (rounded up, capped at
//! `maximumPerMinute` or 1000) each time `numberOfNotifiedThings` more things were
//! notified, or `numberOfSucceededThings` more executions succeeded, since the last
//! increase. A "minute" is a window opened by the first notification after the last
//! window ended.

use serde::{Deserialize, Serialize};

use protocol::jobs::JobExecutionStatus;

/// IoT's upper bound for either rate.
pub const MAX_RATE_PER_MINUTE: u32 = 1000;
const MINUTE_MS: u64 = 60_000;

/// `jobExecutionsRolloutConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_rate: Option<ExponentialRate>,
}

/// `exponentialRate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExponentialRate {
    pub base_rate_per_minute: u32,
    pub increment_factor: f64,
    pub rate_increase_criteria: RateIncreaseCriteria,
}

/// `rateIncreaseCriteria`: exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateIncreaseCriteria {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_notified_things: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_succeeded_things: Option<u32>,
}

/// `abortConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortConfig {
    pub criteria_list: Vec<AbortCriteria>,
}

/// One `criteriaList` entry: cancel the job once at least `minNumberOfExecutedThings`
/// executions ended (SUCCEEDED, FAILED, REJECTED or TIMED_OUT) and `failureType`
/// failures are at least `thresholdPercentage` percent of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortCriteria {
    pub failure_type: FailureType,
    pub action: AbortAction,
    pub threshold_percentage: f64,
    pub min_number_of_executed_things: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureType {
    Failed,
    Rejected,
    TimedOut,
    All,
}

impl FailureType {
    pub fn counts(self, status: JobExecutionStatus) -> bool {
        use JobExecutionStatus as S;
        match self {
            Self::Failed => status == S::Failed,
            Self::Rejected => status == S::Rejected,
            Self::TimedOut => status == S::TimedOut,
            Self::All => matches!(status, S::Failed | S::Rejected | S::TimedOut),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AbortAction {
    Cancel,
}

/// Whether `x` has at most `digits` decimals (IoT: one for `incrementFactor`, two for
/// `thresholdPercentage`).
fn decimals_at_most(x: f64, digits: i32) -> bool {
    let scaled = x * 10f64.powi(digits);
    (scaled - scaled.round()).abs() < 1e-6
}

impl RolloutConfig {
    /// The ranges of the API reference; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(m) = self.maximum_per_minute {
            if !(1..=MAX_RATE_PER_MINUTE).contains(&m) {
                return Err(format!(
                    "jobExecutionsRolloutConfig.maximumPerMinute {m} must be 1 to {MAX_RATE_PER_MINUTE}"
                ));
            }
        }
        if let Some(e) = &self.exponential_rate {
            let f = "jobExecutionsRolloutConfig.exponentialRate";
            if !(1..=MAX_RATE_PER_MINUTE).contains(&e.base_rate_per_minute) {
                return Err(format!(
                    "{f}.baseRatePerMinute {} must be 1 to {MAX_RATE_PER_MINUTE}",
                    e.base_rate_per_minute
                ));
            }
            if !(1.1..=5.0).contains(&e.increment_factor)
                || !decimals_at_most(e.increment_factor, 1)
            {
                return Err(format!(
                    "{f}.incrementFactor {} must be 1.1 to 5 with at most one decimal",
                    e.increment_factor
                ));
            }
            let c = &e.rate_increase_criteria;
            match (c.number_of_notified_things, c.number_of_succeeded_things) {
                (Some(n), None) | (None, Some(n)) if n >= 1 => {}
                (Some(_), None) | (None, Some(_)) => {
                    return Err(format!("{f}.rateIncreaseCriteria: the number must be at least 1"))
                }
                _ => {
                    return Err(format!(
                        "{f}.rateIncreaseCriteria needs exactly one of numberOfNotifiedThings and numberOfSucceededThings"
                    ))
                }
            }
        }
        Ok(())
    }

    /// The rate ceiling: `maximumPerMinute`, else 1000.
    fn ceiling(&self) -> u32 {
        self.maximum_per_minute.unwrap_or(MAX_RATE_PER_MINUTE)
    }

    /// The rate at the start of the rollout.
    fn initial_rate(&self) -> u32 {
        match &self.exponential_rate {
            Some(e) => e.base_rate_per_minute.min(self.ceiling()),
            None => self.ceiling(),
        }
    }
}

impl AbortConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.criteria_list.is_empty() {
            return Err("abortConfig.criteriaList must not be empty".into());
        }
        for (i, c) in self.criteria_list.iter().enumerate() {
            let f = format!("abortConfig.criteriaList[{i}]");
            if !(0.0..=100.0).contains(&c.threshold_percentage)
                || !decimals_at_most(c.threshold_percentage, 2)
            {
                return Err(format!(
                    "{f}.thresholdPercentage {} must be 0 to 100 with at most two decimals",
                    c.threshold_percentage
                ));
            }
            if c.min_number_of_executed_things == 0 {
                return Err(format!("{f}.minNumberOfExecutedThings must be at least 1"));
            }
        }
        Ok(())
    }

    /// The first criteria met by these execution statuses, with a sentence saying why.
    pub fn triggered(
        &self,
        statuses: impl Iterator<Item = JobExecutionStatus> + Clone,
    ) -> Option<(&AbortCriteria, String)> {
        use JobExecutionStatus as S;
        let executed = statuses
            .clone()
            .filter(|s| matches!(s, S::Succeeded | S::Failed | S::Rejected | S::TimedOut))
            .count() as u64;
        self.criteria_list.iter().find_map(|c| {
            let failures = statuses.clone().filter(|s| c.failure_type.counts(*s)).count() as u64;
            let percent = if executed == 0 {
                0.0
            } else {
                failures as f64 * 100.0 / executed as f64
            };
            (executed >= u64::from(c.min_number_of_executed_things)
                && failures > 0
                && percent >= c.threshold_percentage)
                .then(|| {
                    (
                        c,
                        format!(
                            "aborted: {failures} of {executed} executed things {:?} ({percent:.2}% >= {}%)",
                            c.failure_type, c.threshold_percentage
                        ),
                    )
                })
        })
    }
}

/// Where a job's rollout stands: its current rate and this minute's notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPace {
    pub rate_per_minute: u32,
    /// Start of the current one-minute window (ms since the Unix epoch); `None` before
    /// the first notification.
    pub window_start_ms: Option<u64>,
    pub notified_in_window: u32,
    /// Notified (or succeeded) things counted towards the next rate increase.
    pub counted_since_increase: u32,
}

impl RolloutPace {
    pub fn new(config: &RolloutConfig) -> Self {
        Self {
            rate_per_minute: config.initial_rate(),
            window_start_ms: None,
            notified_in_window: 0,
            counted_since_increase: 0,
        }
    }

    /// Whether one more thing may be notified at `now_ms`.
    pub fn may_notify(&mut self, now_ms: u64) -> bool {
        match self.window_start_ms {
            Some(start) if now_ms < start + MINUTE_MS => {}
            _ => {
                self.window_start_ms = None;
                self.notified_in_window = 0;
            }
        }
        self.notified_in_window < self.rate_per_minute
    }

    /// Records one notification (after [`Self::may_notify`] said yes).
    pub fn notified(&mut self, config: &RolloutConfig, now_ms: u64) {
        self.window_start_ms.get_or_insert(now_ms);
        self.notified_in_window += 1;
        if let Some(e) = &config.exponential_rate {
            if e.rate_increase_criteria.number_of_notified_things.is_some() {
                self.count_towards_increase(config);
            }
        }
    }

    /// Records one SUCCEEDED execution.
    pub fn succeeded(&mut self, config: &RolloutConfig) {
        if let Some(e) = &config.exponential_rate {
            if e.rate_increase_criteria
                .number_of_succeeded_things
                .is_some()
            {
                self.count_towards_increase(config);
            }
        }
    }

    fn count_towards_increase(&mut self, config: &RolloutConfig) {
        let Some(e) = &config.exponential_rate else {
            return;
        };
        let c = &e.rate_increase_criteria;
        let every = c
            .number_of_notified_things
            .or(c.number_of_succeeded_things)
            .unwrap_or(1);
        self.counted_since_increase += 1;
        if self.counted_since_increase >= every {
            self.counted_since_increase = 0;
            let next = (f64::from(self.rate_per_minute) * e.increment_factor).ceil() as u32;
            self.rate_per_minute = next.clamp(self.rate_per_minute, config.ceiling());
        }
    }
}
