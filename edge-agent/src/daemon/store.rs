//! Storing an event from the frame thread when the outbox may not be writable.
//!
//! A full disk (or an I/O error) must neither lose the frame nor wait for a restart:
//! [`store_event`] keeps the already-encoded event and retries the put after 1 s,
//! doubling to 30 s ([`retry_delay`]), until it succeeds or the daemon shuts down.
//! Meanwhile the frame thread takes no new frames, so the bounded source channel
//! fills and the sources slow down (a folder source leaves its files where they are);
//! that is the back-pressure STYLE.md asks for, not unbounded memory. It logs once
//! when it starts waiting and once when it recovers, and [`StorageHealth`] puts the
//! state (`disk_full` / `failing`, since when) into the retained status. At shutdown
//! it gives up on the frame without finishing its source file, so the file is taken
//! again at the next start. The wait counts as idle by design for supervision
//! ([`Heartbeat::waiting`]): a full disk is reported in the status, not "fixed" by
//! systemd restarting the agent.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use protocol::backoff::Backoff;
use protocol::status::{Storage, StorageState};

use tokio::sync::Notify;

use super::supervise::Heartbeat;
use super::Stats;
use crate::outbox::{Outbox, OutboxError, PutOutcome, UnixMillis};
use crate::source::now_ms;

/// What the frame thread needs to store events.
pub struct FrameStore {
    pub outbox: Arc<Mutex<Outbox>>,
    pub stats: Arc<Stats>,
    /// Poked when an event is stored, so the MQTT task sends it.
    pub wake: Arc<Notify>,
    pub health: Arc<StorageHealth>,
    /// Disconnected at shutdown.
    pub halt: mpsc::Receiver<()>,
    /// The frame thread's line to the supervisor.
    pub heartbeat: Heartbeat,
}

/// The first wait after a failed put.
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// How long to wait before try `failures + 1`, after `failures` (>= 1) failed puts:
/// 1 s, 2 s, 4 s, ... capped at 30 s.
pub fn retry_delay(failures: u32) -> Duration {
    Backoff::new(RETRY_INITIAL, RETRY_MAX).delay(failures, 0.0)
}

/// The outbox's writability, shared with the status.
#[derive(Debug, Default)]
pub struct StorageHealth(Mutex<Storage>);

impl StorageHealth {
    pub fn get(&self) -> Storage {
        self.0.lock().unwrap().clone()
    }

    fn set_failing(&self, error: &OutboxError, since: UnixMillis) {
        let state = if error.is_disk_full() {
            StorageState::DiskFull
        } else {
            StorageState::Failing
        };
        let mut s = self.0.lock().unwrap();
        if s.state != state {
            s.state = state;
            s.since = Some(protocol::timestamp::format_rfc3339_utc(since as i64));
        }
        s.detail = Some(format!("{error}"));
    }

    fn set_ok(&self) {
        *self.0.lock().unwrap() = Storage::default();
    }
}

/// What became of an event handed to [`store_event`].
#[derive(Debug)]
pub enum Stored {
    /// The outbox took it (or already had it).
    Yes(PutOutcome),
    /// The outbox refuses it for good (too large for the bound, corrupt file, ...).
    Refused(OutboxError),
    /// Shutdown came while waiting for the outbox to become writable.
    ShuttingDown,
}

/// Puts the event, retrying transient failures (see the module doc) until it is
/// stored or `store.halt` is disconnected.
pub fn store_event(
    store: &FrameStore,
    frame: &str,
    event_id: &str,
    messages: &[Vec<u8>],
    now: UnixMillis,
) -> Stored {
    let FrameStore {
        outbox,
        health,
        halt,
        heartbeat,
        ..
    } = store;
    let mut failures: u32 = 0;
    loop {
        let result = outbox.lock().unwrap().put(event_id, messages, now);
        match result {
            Ok(outcome) => {
                if failures > 0 {
                    health.set_ok();
                    tracing::info!(
                        frame,
                        event_id,
                        tries = failures + 1,
                        "outbox writable again: event stored, taking frames again"
                    );
                }
                return Stored::Yes(outcome);
            }
            Err(e) if e.is_transient() => {
                failures += 1;
                if failures == 1 {
                    health.set_failing(&e, now_ms());
                    tracing::error!(frame, event_id, error = %e, source = ?std::error::Error::source(&e),
                        "cannot store the event; holding it and retrying (1 s doubling to 30 s), no new frames meanwhile");
                }
                heartbeat.waiting();
                let waited = halt.recv_timeout(retry_delay(failures));
                heartbeat.beat();
                match waited {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                        return Stored::ShuttingDown
                    }
                }
            }
            Err(e) => return Stored::Refused(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_one_second_doubling_up_to_thirty() {
        let secs: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
        assert_eq!(retry_delay(0), RETRY_INITIAL);
    }
}
