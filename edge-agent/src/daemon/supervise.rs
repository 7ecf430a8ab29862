//! Supervision: the systemd watchdog is pinged only while the daemon's two workers make
//! progress, and the daemon exits non-zero as soon as one of them dies.
//!
//! Every frame passes through two workers: the frame thread (classify, policy, outbox)
//! and the MQTT task (outbox -> broker). Each holds a [`Heartbeat`] and says, on the
//! monotonic clock, that it made progress ([`Heartbeat::beat`]): after each frame or
//! event, and every [`Periods::beat`] while it waits for work. Waiting for input (a folder
//! with no new files), for a broker (connecting, backoff) or for the next tick is idle by
//! design, and a worker that waits like that keeps beating. A wait that is long by design
//! and cannot beat (the frame thread holding an event while the disk is full) is announced
//! with [`Heartbeat::waiting`]. A worker stuck inside a call (a decoder that never returns,
//! an SD card that stopped answering, a lock that is never released) beats no more: after
//! [`Periods::stall`] without progress (the watchdog period) the ping is withheld, and
//! systemd kills and restarts the daemon (`WatchdogSec=`). A worker that ended (returned or
//! panicked) while the daemon was not shutting down is reported at once by its
//! [`EndGuard`], and the daemon stops and exits non-zero (`Restart=on-failure`).
//!
//! [`Supervisor`] is the decision, a plain state machine with the time passed in;
//! [`Monitor::watch`] is the thin async driver that pings. The driver runs on the main
//! runtime, apart from both workers (the MQTT task has a thread of its own), so a worker
//! that blocks its thread cannot block the judgement about it.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::systemd;

/// The watchdog period assumed when systemd sets none (`$WATCHDOG_USEC` unset): stalls
/// are still logged and a dead worker still stops the daemon; nothing is pinged.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(30);

/// The workers under supervision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// The thread that classifies frames and stores events in the outbox.
    Frames,
    /// The task that sends outbox events to the broker and takes receipts.
    Mqtt,
}

impl Task {
    const ALL: [Task; 2] = [Task::Frames, Task::Mqtt];

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Frames => "frame thread",
            Task::Mqtt => "MQTT task",
        })
    }
}

/// How often things happen for a watchdog period `W` (`WatchdogSec=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    /// How often the supervisor decides (and pings): `W / 2`, as `sd_watchdog_enabled(3)`
    /// advises.
    pub ping: Duration,
    /// How often a waiting worker beats: `W / 4`, so a healthy worker is never close to
    /// a stall.
    pub beat: Duration,
    /// No progress for longer than this (`W`) is a stall.
    pub stall: Duration,
}

impl Periods {
    pub fn for_watchdog(watchdog: Duration) -> Periods {
        Periods {
            ping: watchdog / 2,
            beat: watchdog / 4,
            stall: watchdog,
        }
    }
}

/// What the supervisor does at one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every worker makes progress or is idle by design: ping the watchdog.
    Ping,
    /// `task` made no progress for `stalled` (the longest stall if several): no ping.
    Withhold { task: Task, stalled: Duration },
    /// `task` ended (returned or panicked): stop the daemon and exit non-zero.
    Exit { task: Task, cause: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Activity {
    /// Progress was last reported at this instant.
    Working { last_progress: Instant },
    /// In a wait that is long by design, until the next progress report.
    Waiting,
    /// Ended, for this reason; final.
    Ended(String),
}

/// The supervisor's state: what each worker last reported. No I/O, no clock.
#[derive(Debug, Clone)]
pub struct Supervisor {
    stall: Duration,
    tasks: [Activity; 2],
}

impl Supervisor {
    /// Both workers count as having made progress at `now` (their start).
    pub fn new(stall: Duration, now: Instant) -> Supervisor {
        let working = Activity::Working { last_progress: now };
        Supervisor {
            stall,
            tasks: [working.clone(), working],
        }
    }

    /// `task` made progress at `now` (also ends a [`Supervisor::waiting`] wait).
    pub fn progress(&mut self, task: Task, now: Instant) {
        self.set(task, Activity::Working { last_progress: now });
    }

    /// `task` entered a wait that is long by design and will report progress after it.
    pub fn waiting(&mut self, task: Task) {
        self.set(task, Activity::Waiting);
    }

    /// `task` ended because of `cause`. The first cause stays: later reports (progress,
    /// another end) change nothing.
    pub fn ended(&mut self, task: Task, cause: impl Into<String>) {
        self.set(task, Activity::Ended(cause.into()));
    }

    fn set(&mut self, task: Task, activity: Activity) {
        let slot = &mut self.tasks[task.index()];
        if !matches!(slot, Activity::Ended(_)) {
            *slot = activity;
        }
    }

    /// The decision at `now`: a dead worker outweighs a stalled one, which outweighs
    /// everything else.
    pub fn decide(&self, now: Instant) -> Decision {
        for task in Task::ALL {
            if let Activity::Ended(cause) = &self.tasks[task.index()] {
                return Decision::Exit {
                    task,
                    cause: cause.clone(),
                };
            }
        }
        let stalls = Task::ALL
            .into_iter()
            .filter_map(|task| match self.tasks[task.index()] {
                Activity::Working { last_progress } => {
                    Some((task, now.saturating_duration_since(last_progress)))
                }
                _ => None,
            });
        match stalls.max_by_key(|(_, stalled)| *stalled) {
            Some((task, stalled)) if stalled > self.stall => Decision::Withhold { task, stalled },
            _ => Decision::Ping,
        }
    }
}

/// What the workers and the driver share.
#[derive(Debug)]
struct Shared {
    state: Mutex<Supervisor>,
    /// Woken when a worker ends, so the driver does not wait for its next check.
    ended: Notify,
}

impl Shared {
    /// The state, even after a panic elsewhere: every update is a single assignment,
    /// so a poisoned lock never guards a half-made change.
    fn state(&self) -> MutexGuard<'_, Supervisor> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A worker's line to the supervisor. Cheap to clone; reads the monotonic clock.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    task: Task,
    every: Duration,
    shared: Arc<Shared>,
}

impl Heartbeat {
    /// Reports progress now.
    pub fn beat(&self) {
        self.shared.state().progress(self.task, Instant::now());
    }

    /// Reports a wait that is long by design; the next [`Heartbeat::beat`] ends it.
    pub fn waiting(&self) {
        self.shared.state().waiting(self.task);
    }

    /// How often to beat while waiting for work.
    pub fn every(&self) -> Duration {
        self.every
    }
}

/// Reports its worker's end when dropped: moved into the worker's thread, it drops when
/// the worker returns or unwinds from a panic. The cause is "panicked" while unwinding,
/// else what [`EndGuard::set_cause`] said, else "returned".
#[derive(Debug)]
pub struct EndGuard {
    task: Task,
    cause: Option<String>,
    shared: Arc<Shared>,
}

impl EndGuard {
    /// Why the worker is about to end (it returned this error, its input closed, ...).
    pub fn set_cause(&mut self, cause: impl Into<String>) {
        self.cause = Some(cause.into());
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        let cause = if std::thread::panicking() {
            "panicked (the panic message is logged above)".to_string()
        } else {
            self.cause.take().unwrap_or_else(|| "returned".to_string())
        };
        self.shared.state().ended(self.task, cause);
        self.shared.ended.notify_one();
    }
}

/// A worker that ended while the daemon was not shutting down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    pub task: Task,
    pub cause: String,
}

/// The supervisor with its workers' lines, and the driver that pings.
#[derive(Debug)]
pub struct Monitor {
    shared: Arc<Shared>,
    periods: Periods,
    /// Whether systemd watches this process (else decisions are only logged).
    pings: bool,
}

impl Monitor {
    /// For systemd's watchdog period `watchdog` (`None`: not watched, see
    /// [`DEFAULT_PERIOD`]); both workers count as started now.
    pub fn new(watchdog: Option<Duration>) -> Monitor {
        let periods = Periods::for_watchdog(watchdog.unwrap_or(DEFAULT_PERIOD));
        Monitor {
            shared: Arc::new(Shared {
                state: Mutex::new(Supervisor::new(periods.stall, Instant::now())),
                ended: Notify::new(),
            }),
            periods,
            pings: watchdog.is_some(),
        }
    }

    pub fn heartbeat(&self, task: Task) -> Heartbeat {
        Heartbeat {
            task,
            every: self.periods.beat,
            shared: self.shared.clone(),
        }
    }

    /// The guard to move into `task`'s thread (see [`EndGuard`]).
    pub fn end_guard(&self, task: Task) -> EndGuard {
        EndGuard {
            task,
            cause: None,
            shared: self.shared.clone(),
        }
    }

    /// Decides every [`Periods::ping`] (and at once when a worker ends), pinging the
    /// watchdog while the workers are healthy, until `shutdown` completes (`None`) or a
    /// worker dies (`Some`).
    pub async fn watch(&self, shutdown: impl Future<Output = ()>) -> Option<Death> {
        let mut check = tokio::time::interval(self.periods.ping);
        let mut withheld: Option<Task> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => return None,
                _ = self.shared.ended.notified() => {}
                _ = check.tick() => {}
            }
            let decision = self.shared.state().decide(Instant::now());
            match decision {
                Decision::Ping => {
                    if let Some(task) = withheld.take() {
                        tracing::warn!(%task, "the {task} makes progress again; pinging the watchdog again");
                        let _ = systemd::notify_status("running");
                    }
                    if self.pings {
                        let _ = systemd::notify_watchdog();
                    }
                }
                Decision::Withhold { task, stalled } => {
                    withheld = Some(task);
                    tracing::error!(%task, stalled_ms = stalled.as_millis() as u64,
                        watchdog_ms = self.periods.stall.as_millis() as u64,
                        "the {task} made no progress for longer than the watchdog period; \
                         not pinging the watchdog, so systemd restarts the agent");
                    let _ = systemd::notify_status(&format!(
                        "{task} stalled for {:.1} s; watchdog withheld",
                        stalled.as_secs_f64()
                    ));
                }
                Decision::Exit { task, cause } => return Some(Death { task, cause }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(30);

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn periods_ping_at_half_and_beat_at_a_quarter_of_the_watchdog_period() {
        let p = Periods::for_watchdog(s(30));
        assert_eq!((p.ping, p.beat, p.stall), (s(15), s(7) + s(1) / 2, s(30)));
    }

    #[test]
    fn workers_that_beat_get_pings() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(W, t0);
        assert_eq!(sup.decide(t0), Decision::Ping);
        for step in 1..=10 {
            let now = t0 + s(20 * step);
            sup.progress(Task::Frames, now);
            sup.progress(Task::Mqtt, now);
            assert_eq!(sup.decide(now + s(15)), Decision::Ping);
        }
    }

    #[test]
    fn a_worker_without_progress_for_exactly_the_period_still_gets_its_ping() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(W, t0);
        sup.progress(Task::Mqtt, t0 + W);
        assert_eq!(sup.decide(t0 + W), Decision::Ping);
    }

    #[test]
    fn a_frame_thread_stuck_in_a_call_for_longer_than_the_period_withholds_the_ping() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(W, t0);
        let now = t0 + s(31);
        sup.progress(Task::Mqtt, now);
        assert_eq!(
            sup.decide(now),
            Decision::Withhold {
                task: Task::Frames,
                stalled: s(31)
            }
        );
        // Progress again before systemd gives up: pings resume.
        sup.progress(Task::Frames, now + s(1));
        assert_eq!(sup.decide(now + s(1)), Decision::Ping);
    }

    #[test]
    fn the_longest_stall_is_the_one_reported() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(W, t0);
        sup.progress(Task::Frames, t0 + s(5));
        assert_eq!(
            sup.decide(t0 + s(40)),
            Decision::Withhold {
                task: Task::Mqtt,
                stalled: s(40)
            }
        );
    }

    #[test]
    fn a_wait_by_design_is_not_a_stall_however_long() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(W, t0);
        sup.waiting(Task::Frames); // disk full: holding the event, retrying
        for minutes in 1..=60 {
            let now = t0 + s(60 * minutes);
            sup.progress(Task::Mqtt, now);
            assert_eq!(sup.decide(now), Decision::Ping);
        }
        // The wait ends with progress; from then on the clock runs again.
        sup.progress(Task::Frames, t0 + s(3600));
        sup.progress(Task::Mqtt, t0 + s(3631));
        assert!(matches!(
            sup.decide(t0 + s(3631)),
            Decision::Withhold {
                task: Task::Frames,
                ..
            }
        ));
    }

    #[test]
    fn a_dead_worker_means_exit_even_while_the_other_is_stalled() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(W, t0);
        sup.ended(Task::Mqtt, "cannot read mqtt.tls.key");
        assert_eq!(
            sup.decide(t0 + s(100)),
            Decision::Exit {
                task: Task::Mqtt,
                cause: "cannot read mqtt.tls.key".into()
            }
        );
    }

    #[test]
    fn an_end_is_final_and_keeps_its_first_cause() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(W, t0);
        sup.ended(Task::Frames, "every frame source has ended");
        sup.progress(Task::Frames, t0 + s(1));
        sup.waiting(Task::Frames);
        sup.ended(Task::Frames, "returned");
        assert_eq!(
            sup.decide(t0 + s(1)),
            Decision::Exit {
                task: Task::Frames,
                cause: "every frame source has ended".into()
            }
        );
    }

    /// The guard as the daemon uses it, on a real thread.
    fn end_of_thread(body: impl FnOnce(&mut EndGuard) + Send + 'static) -> Option<Death> {
        let monitor = Monitor::new(Some(Duration::from_secs(60)));
        let mut guard = monitor.end_guard(Task::Frames);
        let _ = std::thread::spawn(move || body(&mut guard)).join();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // No shutdown: watch returns only on a death, and at once, not after a period.
        runtime.block_on(async {
            tokio::time::timeout(s(5), monitor.watch(std::future::pending()))
                .await
                .expect("a death is reported at once")
        })
    }

    #[test]
    fn a_worker_thread_that_panics_is_reported_dead_at_once() {
        let death = end_of_thread(|_| panic!("decoder bug")).unwrap();
        assert_eq!(death.task, Task::Frames);
        assert!(death.cause.starts_with("panicked"), "{}", death.cause);
    }

    #[test]
    fn a_worker_thread_that_returns_is_reported_dead_with_its_cause() {
        let death = end_of_thread(|g| g.set_cause("every frame source has ended")).unwrap();
        assert_eq!(death.cause, "every frame source has ended");
        let death = end_of_thread(|_| {}).unwrap();
        assert_eq!(death.cause, "returned");
    }

    #[test]
    fn the_driver_returns_nothing_on_shutdown() {
        let monitor = Monitor::new(None);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(monitor.watch(async {})), None);
    }
}
