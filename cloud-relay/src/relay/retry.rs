//! Retrying calls to S3 and A2I. Every failure is classified ([`Failure`]): throttling,
//! 5xx and connection errors are retried with exponential backoff and jitter, without
//! limit (an event is never dropped for a transient fault: its MQTT message stays
//! unacknowledged and its agent keeps it); a quota error pauses intake ([`Gate`]) until
//! the call goes through; anything else is permanent and reported.
//!
//! Each retry is logged at debug only; what an operator sees at the default level is
//! the outage ([`OutageLog`]): one warning naming what is waited for and why when calls
//! to a dependency start failing, one line when it answers again.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::backoff::{jitter_sample, Backoff, Retries};
use tokio::sync::Notify;

use super::metrics::Metrics;
use crate::config::RetryConfig;

/// What kind of failure a call ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Throttling, 5xx, timeouts, connection refused: try again later.
    Transient(String),
    /// The account's quota is used up (A2I `ServiceQuotaExceededException`).
    Quota(String),
    /// Retrying cannot help (validation, access denied, missing bucket).
    Permanent(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(m) => write!(f, "transient: {m}"),
            Failure::Quota(m) => write!(f, "quota exceeded: {m}"),
            Failure::Permanent(m) => write!(f, "{m}"),
        }
    }
}

/// A call given up on because retrying cannot help: what [`Failure::Permanent`] said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PermanentFailure(pub String);

/// The retry delays of `config`: doubling from `initial_backoff` to `max_backoff`, each
/// a random value in the upper half of its ceiling, so relays that failed together do
/// not retry together.
pub fn backoff(config: &RetryConfig) -> Backoff {
    Backoff::new(config.initial_backoff, config.max_backoff).with_jitter(0.5)
}

/// Closed while a quota error holds: no new work starts until a call succeeds.
#[derive(Debug, Default, Clone)]
pub struct Gate {
    inner: Arc<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    closed: AtomicBool,
    opened: Notify,
}

impl Gate {
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
    }

    pub fn open(&self) {
        if self.inner.closed.swap(false, Ordering::SeqCst) {
            self.inner.opened.notify_waiters();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Returns once the gate is open.
    pub async fn wait_open(&self) {
        loop {
            let notified = self.inner.opened.notified();
            if !self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// Whether a dependency is in an outage, as seen by the calls made to it (pure: the
/// caller passes the time in and logs what comes out).
#[derive(Debug, Default)]
pub struct OutageState {
    /// Since when calls have been failing, and how many failed.
    failing: Option<(Instant, u64)>,
    /// When a call last succeeded.
    last_success: Option<Instant>,
}

impl OutageState {
    /// A call made at `started` failed (transiently) at `now`: true when this starts
    /// an outage. A call made before the last success says nothing new (calls in
    /// flight while the dependency came back fail late), so it starts none.
    pub fn failed(&mut self, started: Instant, now: Instant) -> bool {
        match &mut self.failing {
            Some((_, failures)) => {
                *failures += 1;
                false
            }
            None if self.last_success.is_some_and(|s| s >= started) => false,
            None => {
                self.failing = Some((now, 1));
                true
            }
        }
    }

    /// A call succeeded at `now`: the outage it ends (how long, failed calls), if any.
    pub fn succeeded(&mut self, now: Instant) -> Option<(Duration, u64)> {
        self.last_success = Some(now);
        self.failing
            .take()
            .map(|(since, failures)| (now.saturating_duration_since(since), failures))
    }
}

/// Logs a dependency's outages once each, whatever the number of calls retrying:
/// a warning when calls start failing (what is waited for, the first cause), and a
/// line when a call goes through again. Clones share the state.
#[derive(Debug, Clone)]
pub struct OutageLog {
    /// What is waited for, e.g. "the object store (bucket frames at http://…)".
    name: Arc<str>,
    state: Arc<Mutex<OutageState>>,
}

impl OutageLog {
    pub fn new(name: impl Into<String>) -> Self {
        OutageLog {
            name: name.into().into(),
            state: Arc::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutageState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A transient failure of `what` (an operation) on this dependency, called at
    /// `started`.
    pub fn failed(&self, what: &'static str, started: Instant, failure: &Failure) {
        if self.lock().failed(started, Instant::now()) {
            tracing::warn!(
                operation = what,
                "waiting for {}: {failure}; events wait unacknowledged (their agents keep \
                 them) and calls are retried until it answers",
                self.name
            );
        }
    }

    pub fn succeeded(&self) {
        if let Some((after, failures)) = self.lock().succeeded(Instant::now()) {
            tracing::info!(
                after = ?Duration::from_secs(after.as_secs()),
                failed_calls = failures,
                "{} answers again: intake goes on",
                self.name
            );
        }
    }
}

/// Runs `call` until it succeeds or fails permanently. Transient failures and quota
/// errors are retried with backoff (a quota error also closes `gate` until a call
/// succeeds); `what` names the operation in logs and in the `retries` metric.
pub async fn retry<T, F, Fut>(
    what: &'static str,
    config: &RetryConfig,
    metrics: &Metrics,
    gate: Option<&Gate>,
    call: F,
) -> Result<T, PermanentFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    retry_logged(what, config, metrics, gate, None, call).await
}

/// [`retry`] for calls to a dependency whose outages `outage` logs.
pub async fn retry_logged<T, F, Fut>(
    what: &'static str,
    config: &RetryConfig,
    metrics: &Metrics,
    gate: Option<&Gate>,
    outage: Option<&OutageLog>,
    mut call: F,
) -> Result<T, PermanentFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut retries = Retries::new(backoff(config));
    loop {
        let started = Instant::now();
        let result = call().await;
        if let Some(outage) = outage {
            match &result {
                Err(failure @ Failure::Transient(_)) => outage.failed(what, started, failure),
                // A permanent failure is an answer: the dependency is there.
                _ => outage.succeeded(),
            }
        }
        match result {
            Ok(value) => {
                if let Some(gate) = gate {
                    if gate.is_closed() {
                        tracing::info!(what, "quota available again: intake resumes");
                        gate.open();
                    }
                }
                return Ok(value);
            }
            Err(Failure::Permanent(message)) => return Err(PermanentFailure(message)),
            Err(failure) => {
                if let (Failure::Quota(_), Some(gate)) = (&failure, gate) {
                    if !gate.is_closed() {
                        tracing::warn!(what, %failure, "quota exceeded: intake paused until it clears");
                    }
                    gate.close();
                }
                metrics.retry(what);
                let delay = retries.next_delay(jitter_sample());
                tracing::debug!(what, %failure, attempt = retries.failures(), ?delay, "retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RetryConfig {
        RetryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter_in_the_upper_half() {
        let b = backoff(&config());
        let ceilings: Vec<_> = (1..=8).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        for a in 1..=8 {
            let ceiling = b.ceiling(a);
            assert_eq!(b.delay(a, 0.0), ceiling);
            assert_eq!(b.delay(a, 1.0), ceiling / 2);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_success_and_counted() {
        let metrics = Metrics::default();
        let mut calls = 0;
        let out = retry("s3_put", &config(), &metrics, None, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 4 {
                    Err(Failure::Transient("503".into()))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(out, Ok(4));
        assert_eq!(metrics.retries_total(), 3);
    }

    #[test]
    fn an_outage_is_reported_once_when_it_starts_and_once_when_it_ends() {
        let t0 = Instant::now();
        let mut s = OutageState::default();
        assert!(s.failed(t0, t0), "the first failure starts the outage");
        for k in 1..50 {
            let at = t0 + Duration::from_millis(k);
            assert!(!s.failed(at, at), "later ones are quiet");
        }
        let end = t0 + Duration::from_secs(90);
        assert_eq!(s.succeeded(end), Some((Duration::from_secs(90), 50)));
        assert_eq!(s.succeeded(end), None, "reported once");
        // A call made before the recovery and failing after it is no new outage.
        let late = end + Duration::from_millis(5);
        assert!(!s.failed(end - Duration::from_millis(1), late));
        assert!(s.failed(late, late), "a call made after it is");
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_returned_at_once() {
        let metrics = Metrics::default();
        let out: Result<(), _> = retry("s3_put", &config(), &metrics, None, || async {
            Err(Failure::Permanent("AccessDenied".into()))
        })
        .await;
        assert_eq!(out, Err(PermanentFailure("AccessDenied".into())));
        assert_eq!(metrics.retries_total(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quota_error_closes_the_gate_until_a_call_succeeds() {
        let metrics = Metrics::default();
        let gate = Gate::default();
        let observed = gate.clone();
        let mut calls = 0;
        let out = retry("start_loop", &config(), &metrics, Some(&gate), || {
            calls += 1;
            let n = calls;
            let closed = observed.is_closed();
            async move {
                match n {
                    1 => Err(Failure::Quota("ServiceQuotaExceeded".into())),
                    2 => {
                        assert!(closed, "gate closed while the quota error holds");
                        Err(Failure::Quota("ServiceQuotaExceeded".into()))
                    }
                    _ => Ok(()),
                }
            }
        })
        .await;
        assert_eq!(out, Ok(()));
        assert!(!gate.is_closed());
        tokio::time::timeout(Duration::from_secs(1), gate.wait_open())
            .await
            .unwrap();
    }
}
