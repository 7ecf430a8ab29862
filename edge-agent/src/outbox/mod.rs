//! The durable outbox: every event the review policy selects lives here, on disk,
//! from the moment it is accepted until the relay's receipt says its image is stored
//! and its human loop exists (DESIGN.md, "Guarantees"). A broker's PUBACK only moves
//! an event to [`State::AwaitingReceipt`]; without a receipt it is resent after a
//! timeout that doubles per attempt ([`Backoff`]).
//!
//! Lifecycle of an entry:
//! `put` → [`State::ToSend`] → `published` (PUBACK) → [`State::AwaitingReceipt`] →
//! `receipt` → removed. `publish_failed` (connection lost before PUBACK) returns an
//! entry to `ToSend`; an `AwaitingReceipt` entry whose `next_attempt_at` has passed
//! is listed by `due` again. The outbox is bounded in bytes: a put that would exceed
//! the bound drops the oldest entries (any state) in the same transaction and adds
//! them to a persistent drop counter that [`Outbox::depths`] reports.
//!
//! Any state → `set_aside` (the relay rejected the event for good, or the broker
//! can never take it) → [`State::SetAside`]: never due, payloads kept with a code and
//! reason, still counted against (and dropped by) the bound; an operator lists them
//! ([`Outbox::set_aside_entries`]) and puts them back with [`Outbox::requeue`]
//! (`ToSend`, attempts 0), or a late receipt removes them. See `aside.rs`.
//!
//! # Time, disk, damage
//! - The clock may step back (a device without RTC syncing late): a resend time
//!   further ahead than the longest resend timeout counts as due
//!   ([`resend_is_due`]), so nothing waits for days.
//! - A full file system is [`OutboxError::DiskFull`] (SQLITE_FULL, ENOSPC, EDQUOT),
//!   naming the directory; every operation is one transaction, so a failed put
//!   leaves nothing behind and the same put can be retried once space is freed
//!   ([`OutboxError::is_transient`]; the daemon does, holding the frame).
//! - One owner per file: `open` holds an exclusive `flock` on `<file>.lock`
//!   ([`OutboxError::Locked`] for a second one; `lock.rs`).
//! - A corrupt file (an SD card that lied about fsync) is moved aside and what still
//!   reads is salvaged into a fresh file by [`Outbox::open_or_recover`], with
//!   persistent `salvaged`/`lost` counts; a foreign database or a newer schema is
//!   still refused untouched (`recover.rs`).
//! - The schema is versioned (`PRAGMA user_version`, [`SCHEMA_VERSION`]); older
//!   files are migrated in place in one transaction (`schema.rs`).
//!
//! # Why SQLite (WAL, `synchronous=FULL`) and not a spool directory
//! - Atomic multi-row transactions: "insert the event, drop the oldest, bump the
//!   drop counter" and "move to AwaitingReceipt with a new deadline" are each one
//!   commit, never half done.
//! - Crash safety that is proven, not hoped for: SQLite's test suite simulates
//!   crashes and power loss at every write; with WAL and `synchronous=FULL` the WAL
//!   is fsynced before a commit returns, so an accepted event survives SIGKILL and
//!   power loss. A spool directory would need a hand-written write/fsync/rename/
//!   fsync-the-directory protocol for each state change, plus recovery code for
//!   every crash point, and its drop counter would be one more such file.
//! - One file (plus its `-wal`/`-shm` companions) to place, back up or inspect with
//!   the `sqlite3` shell; queries like "due, in order" are an indexed `SELECT`
//!   instead of a directory scan.
//! - `bundled` compiles SQLite into the binary, so devices need no system library.
//!
//! # Use from async code
//! [`Outbox`] is `Send` (not `Sync`) and every method is synchronous and may block
//! on an fsync (milliseconds on an SD card). Own it from one dedicated thread, or
//! move it into `tokio::task::spawn_blocking` for each call (e.g. behind a
//! `std::sync::Mutex`); never call it directly on an async worker thread.
//!
//! # In flight
//! `due` does not mark what it returns: an entry being published stays `ToSend`
//! (or overdue) until `published` or `publish_failed` is called, so the driver
//! keeps the ids it has in flight in memory and skips them. After a crash nothing is
//! in flight, which is exactly right: everything unreceipted is due again.

mod aside;
mod lock;
mod recover;
mod rows;
mod schedule;
mod schema;
mod store;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v2;

use std::path::{Path, PathBuf};

pub use aside::SetAsideEntry;
pub use lock::lock_path;
pub(crate) use lock::try_lock;
pub use recover::{Opened, Recovery};
pub use schedule::{
    bytes_to_free, default_initial_resend, default_jitter, default_max_resend,
    default_resend_backoff, latest_plausible_resend, resend_is_due, Backoff, Delivery, State,
    UnixMillis,
};
pub use schema::SCHEMA_VERSION;
pub use store::Outbox;

/// Default bound of the outbox's stored payload bytes: 256 MiB.
pub fn default_max_bytes() -> u64 {
    256 * 1024 * 1024
}

/// Outbox settings; [`OutboxConfig::default`] gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxConfig {
    /// Upper bound of the sum of all stored payload sizes, in bytes.
    pub max_bytes: u64,
    /// Receipt timeout and its growth.
    pub backoff: Backoff,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_bytes: default_max_bytes(),
            backoff: default_resend_backoff(),
        }
    }
}

impl OutboxConfig {
    /// Checks the settings before anything is opened.
    pub fn validate(&self) -> Result<(), OutboxError> {
        if self.max_bytes == 0 {
            return Err(OutboxError::InvalidConfig(
                "max_bytes must be greater than zero".into(),
            ));
        }
        self.backoff
            .validate()
            .map_err(|e| OutboxError::InvalidConfig(format!("resend timeout: {e}")))
    }
}

/// One stored event, as [`Outbox::due`] and [`Outbox::get`] return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The event's id; unique in the outbox.
    pub event_id: String,
    /// Insertion order; never reused, even after the entry is gone.
    pub seq: u64,
    /// The encoded MQTT payloads (one message, or the chunks of one image), opaque.
    pub payloads: Vec<Vec<u8>>,
    /// Sum of the payload lengths; what counts against the bound.
    pub size: u64,
    /// When the event was accepted.
    pub created_at: UnixMillis,
    pub state: State,
    /// Publishes acknowledged by the broker so far.
    pub attempts: u32,
}

impl Entry {
    /// The entry's delivery state, for the pure transitions in [`Delivery`].
    pub fn delivery(&self) -> Delivery {
        Delivery {
            state: self.state,
            attempts: self.attempts,
        }
    }
}

/// What [`Outbox::put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored and synced to disk. `dropped` lists the ids of the oldest entries that
    /// were dropped (in the same transaction) to make room, oldest first.
    Stored { seq: u64, dropped: Vec<String> },
    /// An entry with this id is already in the outbox; nothing changed.
    AlreadyPresent,
}

/// How full the outbox is, for metrics and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depths {
    pub to_send: u64,
    pub awaiting_receipt: u64,
    /// Sum of the stored payload sizes.
    pub bytes: u64,
    /// Entries set aside ([`Outbox::set_aside`]): never sent, kept for an operator.
    pub set_aside: u64,
    /// Entries dropped to respect the bound, since the outbox file was created.
    pub dropped: u64,
    /// Entries carried over from corrupt files into this one
    /// ([`Outbox::open_or_recover`]), in all recoveries since it was created.
    pub salvaged: u64,
    /// Entries found in corrupt files whose rows or payloads no longer read.
    pub lost: u64,
}

/// Everything that can go wrong; each error names the file or event concerned.
/// Underlying SQLite and I/O errors are the `source()`, not repeated in the message:
/// log the whole chain (e.g. `{:#}` with anyhow).
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The caller's settings make no sense.
    #[error("invalid outbox configuration: {0}")]
    InvalidConfig(String),
    /// The caller handed in an event that can never be stored.
    #[error(
        "event {event_id} is {size} bytes, larger than the whole outbox bound of {max_bytes} \
         bytes; refused"
    )]
    TooLarge {
        event_id: String,
        size: u64,
        max_bytes: u64,
    },
    /// The caller handed in an event with no payload.
    #[error("event {event_id} has no payload; refused")]
    EmptyEvent { event_id: String },
    /// The file exists but is not a readable SQLite database. It was not modified.
    #[error(
        "outbox {}: not an SQLite database, or corrupt (left untouched; move it aside to \
         start a new outbox)", .path.display()
    )]
    Corrupt {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A SQLite database that some other program made.
    #[error(
        "outbox {}: an SQLite database with other tables and no outbox schema (left untouched)",
        .path.display()
    )]
    NotAnOutbox { path: PathBuf },
    /// Written by a newer edge-agent; this one does not know its layout.
    #[error(
        "outbox {}: schema version {found} is newer than the {supported} this edge-agent \
         understands (left untouched; upgrade edge-agent)", .path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The stored data contradicts itself (see [`Outbox::check_integrity`]).
    #[error("outbox {}: integrity check failed: {detail}", .path.display())]
    Inconsistent { path: PathBuf, detail: String },
    /// The file system refused WAL mode (e.g. no shared memory on a network mount).
    #[error("outbox {}: cannot use WAL journal mode here (SQLite kept {mode})", .path.display())]
    NoWal { path: PathBuf, mode: String },
    /// The file system holding the outbox has no space left (SQLITE_FULL, ENOSPC,
    /// EDQUOT). Transient: retry once space is freed; nothing was half written.
    #[error(
        "outbox {}: the disk is full (no space left on the file system holding {}); \
         free space there", .path.display(), .dir.display()
    )]
    DiskFull {
        path: PathBuf,
        /// The directory whose file system is full.
        dir: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another `Outbox` (the daemon, or another command) has this file open.
    #[error(
        "outbox {}: in use by {holder} (it holds {}); stop edge-agent first \
         (systemctl stop edge-agent)", .path.display(), .lock.display()
    )]
    Locked {
        path: PathBuf,
        lock: PathBuf,
        /// Who holds it, as the lock file says (pid and command).
        holder: String,
    },
    /// SQLite failed (I/O error, file locked, ...); see the source.
    #[error("outbox {}: database operation failed", .path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A file-system operation outside SQLite failed; see the source.
    #[error("outbox {}: file system operation failed", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl OutboxError {
    /// The file system is full: the same operation may succeed once space is freed.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, OutboxError::DiskFull { .. })
    }

    /// Whether retrying the same operation later can succeed (disk full, I/O or
    /// SQLite failures); false for refusals that no retry changes (bad input, wrong
    /// or corrupt file, settings, another owner).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OutboxError::DiskFull { .. } | OutboxError::Sqlite { .. } | OutboxError::Io { .. }
        )
    }

    pub(crate) fn disk_full(
        path: &Path,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> OutboxError {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        OutboxError::DiskFull {
            path: path.to_path_buf(),
            dir,
            source: source.into(),
        }
    }

    /// An I/O error on `path`; ENOSPC and EDQUOT become [`OutboxError::DiskFull`].
    pub(crate) fn io(path: &Path, source: std::io::Error) -> OutboxError {
        match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => OutboxError::disk_full(path, source),
            _ => OutboxError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}
