//! Waiting under a deadline instead of sleeping and hoping.
//!
//! Every helper polls its condition at a short interval (starting at 5 ms and
//! backing off to 50 ms) until it holds or the deadline passes. The sync helpers
//! panic with `what` on timeout, so a failing test says what it was waiting for.
//!
//! Deadlines are measured with [`std::time::Instant`], not tokio's clock: a test
//! that calls `tokio::time::pause()` still gets a real deadline when it waits for a
//! real process.

use std::future::Future;
use std::time::{Duration, Instant};

const FIRST_INTERVAL: Duration = Duration::from_millis(5);
const MAX_INTERVAL: Duration = Duration::from_millis(50);

fn next_interval(current: Duration) -> Duration {
    (current * 2).min(MAX_INTERVAL)
}

/// Polls `cond` until it returns `true` or `deadline` has passed; returns whether it held.
///
/// Never panics: for code that wants to decide itself what a timeout means.
pub fn poll_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    poll_for(deadline, || cond().then_some(())).is_some()
}

/// Polls `f` until it returns `Some(value)` or `deadline` has passed.
pub fn poll_for<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    let mut interval = FIRST_INTERVAL;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= end {
            return None;
        }
        std::thread::sleep(interval.min(end - now));
        interval = next_interval(interval);
    }
}

/// Waits until `cond` returns `true`.
///
/// # Panics
/// With `what` in the message when `deadline` passes first.
///
/// ```
/// # use std::time::Duration;
/// let start = std::time::Instant::now();
/// test_support::wait_until(Duration::from_secs(5), "50 ms to pass", || {
///     start.elapsed() >= Duration::from_millis(50)
/// });
/// ```
#[track_caller]
pub fn wait_until(deadline: Duration, what: &str, cond: impl FnMut() -> bool) {
    if !poll_until(deadline, cond) {
        panic!("timed out after {deadline:?} waiting for {what}");
    }
}

/// Waits until `f` returns `Some(value)` and returns the value.
///
/// # Panics
/// With `what` in the message when `deadline` passes first.
#[track_caller]
pub fn wait_for<T>(deadline: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    match poll_for(deadline, f) {
        Some(value) => value,
        None => panic!("timed out after {deadline:?} waiting for {what}"),
    }
}

/// Async [`wait_until`]: awaits `cond()` until it yields `true`, sleeping with
/// `tokio::time::sleep` in between (so it never blocks the runtime).
///
/// # Panics
/// With `what` in the message when `deadline` passes first.
pub async fn wait_until_async<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_async(deadline, what, || {
        let fut = cond();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Async [`wait_for`]: awaits `f()` until it yields `Some(value)` and returns the value.
///
/// # Panics
/// With `what` in the message when `deadline` passes first.
pub async fn wait_for_async<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    let mut interval = FIRST_INTERVAL;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        let now = Instant::now();
        if now >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(interval.min(end - now)).await;
        interval = next_interval(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn wait_until_returns_as_soon_as_the_condition_holds() {
        let calls = Cell::new(0);
        wait_until(Duration::from_secs(5), "third call", || {
            calls.set(calls.get() + 1);
            calls.get() == 3
        });
        assert_eq!(calls.get(), 3);
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for the impossible")]
    fn wait_until_panics_with_what_it_waited_for() {
        wait_until(Duration::from_millis(50), "the impossible", || false);
    }

    #[test]
    fn wait_for_hands_back_the_value() {
        let mut n = 0;
        let got = wait_for(Duration::from_secs(5), "n to reach 4", || {
            n += 1;
            (n >= 4).then_some(n * 10)
        });
        assert_eq!(got, 40);
    }

    #[test]
    fn poll_until_reports_timeout_without_panicking() {
        let start = Instant::now();
        assert!(!poll_until(Duration::from_millis(30), || false));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn async_variant_waits_for_a_future_condition() {
        let start = Instant::now();
        wait_until_async(Duration::from_secs(5), "20 ms to pass", || async {
            start.elapsed() >= Duration::from_millis(20)
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for never")]
    async fn async_variant_panics_on_timeout() {
        wait_until_async(Duration::from_millis(30), "never", || async { false }).await;
    }
}
