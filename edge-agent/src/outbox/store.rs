//! The SQLite layer of the outbox: opens (or creates) the file, and runs each
//! operation as one transaction that loads rows, applies the pure logic from
//! `schedule.rs` and writes the result. No scheduling decision is made here.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use super::lock::OutboxLock;
use super::rows::{
    add_counter, counter, drop_oldest, load_payloads, remove, select_entries, state_columns, to_i64,
};
use super::schedule::{bytes_to_free, latest_plausible_resend, Delivery, State, UnixMillis};
use super::schema::{upgrade, SCHEMA_VERSION};
use super::{Depths, Entry, OutboxConfig, OutboxError, PutOutcome};

/// The on-disk outbox. `Send`, not `Sync`; all methods block (see the module doc).
/// One `Outbox` per file: a second process on the same file would send everything
/// twice.
pub struct Outbox {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    pub(super) config: OutboxConfig,
    // Declared after `conn`, so dropped after it: the file is closed before another
    // process may take it.
    pub(super) _lock: OutboxLock,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Opens the outbox at `path`, creating the file and its schema if missing, and
    /// migrating a file of an older schema version in place (entries kept).
    /// A file that is not an SQLite database, is corrupt, belongs to another
    /// program or was written by a newer schema is refused with an error naming it,
    /// and is never written to ([`Outbox::open_or_recover`] instead moves a corrupt
    /// file aside). Holds `<path>.lock` (an exclusive `flock`) while open: a second
    /// `Outbox` on the same file, in this process or another, gets
    /// [`OutboxError::Locked`].
    pub fn open(path: impl AsRef<Path>, config: OutboxConfig) -> Result<Outbox, OutboxError> {
        config.validate()?;
        let path = path.as_ref().to_path_buf();
        let lock = OutboxLock::acquire(&path)?;
        Outbox::open_locked(path, config, lock)
    }

    /// [`Outbox::open`] once the lock is held.
    pub(super) fn open_locked(
        path: PathBuf,
        config: OutboxConfig,
        lock: OutboxLock,
    ) -> Result<Outbox, OutboxError> {
        let is_new = match std::fs::metadata(&path) {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(source) => return Err(OutboxError::Io { path, source }),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(sql_err(&path, None))?;
        let err = sql_err(&path, Some(&conn));
        conn.busy_timeout(Duration::from_secs(5)).map_err(&err)?;

        // Only reads until the file is known to be ours: a foreign or corrupt file
        // fails here and stays byte-for-byte as it was.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(&err)?;
        if version > SCHEMA_VERSION {
            return Err(OutboxError::UnsupportedVersion {
                path,
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == 0 {
            let tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(&err)?;
            if tables > 0 {
                return Err(OutboxError::NotAnOutbox { path });
            }
        }

        // WAL + synchronous=FULL: a commit returns only after the WAL is fsynced.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(&err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OutboxError::NoWal { path, mode });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&err)?;
        upgrade(&mut conn, version).map_err(&err)?;
        if is_new {
            // SQLite syncs the directory for its WAL file, but the database file's
            // own directory entry is made here; make it durable too.
            sync_parent_dir(&path)?;
        }
        Ok(Outbox {
            conn,
            path,
            config,
            _lock: lock,
        })
    }

    /// The file this outbox lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &OutboxConfig {
        &self.config
    }

    /// Accepts an event: when this returns `Stored`, the event is on disk and
    /// survives a crash or power loss. A put of an id already present changes
    /// nothing. If the bound would be exceeded, the oldest entries (any state) are
    /// dropped and counted in the same transaction; an event larger than the whole
    /// bound, or with no payload, is refused.
    pub fn put(
        &mut self,
        event_id: &str,
        payloads: &[Vec<u8>],
        now: UnixMillis,
    ) -> Result<PutOutcome, OutboxError> {
        if payloads.is_empty() {
            return Err(OutboxError::EmptyEvent {
                event_id: event_id.to_owned(),
            });
        }
        let size: u64 = payloads.iter().map(|p| p.len() as u64).sum();
        let err = self.err();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let exists = tx
            .query_row(
                "SELECT 1 FROM entry WHERE event_id = ?1",
                [event_id],
                |_| Ok(()),
            )
            .optional()
            .map_err(&err)?
            .is_some();
        if exists {
            return Ok(PutOutcome::AlreadyPresent);
        }
        let stored = counter(&tx, "bytes").map_err(&err)?;
        let max_bytes = self.config.max_bytes;
        let need = bytes_to_free(stored, size, max_bytes).ok_or_else(|| OutboxError::TooLarge {
            event_id: event_id.to_owned(),
            size,
            max_bytes,
        })?;
        let dropped = if need > 0 {
            drop_oldest(&tx, need).map_err(&err)?
        } else {
            Vec::new()
        };

        tx.execute(
            "INSERT INTO entry (event_id, size, created_at, awaiting, attempts, next_attempt_at)
             VALUES (?1, ?2, ?3, 0, 0, NULL)",
            params![event_id, to_i64(size), to_i64(now)],
        )
        .map_err(&err)?;
        let seq = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO payload (seq, idx, data) VALUES (?1, ?2, ?3)")
                .map_err(&err)?;
            for (idx, data) in payloads.iter().enumerate() {
                insert
                    .execute(params![seq, idx as i64, data])
                    .map_err(&err)?;
            }
        }
        add_counter(&tx, "bytes", to_i64(size)).map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(PutOutcome::Stored {
            seq: seq as u64,
            dropped,
        })
    }

    /// What to publish at `now`, at most `limit` entries: every `ToSend` entry in
    /// insertion order, then every `AwaitingReceipt` entry whose resend time has
    /// come, in insertion order. A resend time further ahead of `now` than the
    /// longest resend timeout also counts as come: the clock was stepped back
    /// ([`resend_is_due`](super::resend_is_due)). Set-aside entries are never due.
    /// Changes nothing (see "In flight" in the module doc).
    pub fn due(&self, now: UnixMillis, limit: usize) -> Result<Vec<Entry>, OutboxError> {
        let err = self.err();
        // One read transaction: both lists and the payloads come from one snapshot.
        let tx = self.conn.unchecked_transaction().map_err(&err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut entries = select_entries(
            &tx,
            "WHERE awaiting = 0 ORDER BY seq LIMIT ?1",
            params![limit],
        )
        .map_err(&err)?;
        let left = limit - entries.len() as i64;
        if left > 0 {
            entries.extend(
                select_entries(
                    &tx,
                    "WHERE awaiting = 1 AND (next_attempt_at <= ?1 OR next_attempt_at > ?2)
                     ORDER BY seq LIMIT ?3",
                    params![
                        to_i64(now),
                        to_i64(latest_plausible_resend(now, self.config.backoff.max)),
                        left
                    ],
                )
                .map_err(&err)?,
            );
        }
        for entry in &mut entries {
            entry.payloads = load_payloads(&tx, entry.seq).map_err(&err)?;
        }
        Ok(entries)
    }

    /// The broker acknowledged a publish of `event_id` (PUBACK) at `now`: it now
    /// waits for the relay's receipt, and is resent after the backoff for its
    /// attempt count. `jitter_sample` is a uniform draw from `[0, 1]`. Returns the
    /// new state, or `None` if the id is unknown (already receipted or dropped). A
    /// set-aside entry stays set aside.
    pub fn published(
        &mut self,
        event_id: &str,
        now: UnixMillis,
        jitter_sample: f64,
    ) -> Result<Option<State>, OutboxError> {
        let backoff = self.config.backoff;
        let after = self.transition(event_id, |d| d.acknowledged(now, &backoff, jitter_sample))?;
        Ok(after.map(|d| d.state))
    }

    /// Publishing `event_id` failed before the broker acknowledged it: due again at
    /// once. Returns false if the id is unknown.
    pub fn publish_failed(&mut self, event_id: &str) -> Result<bool, OutboxError> {
        Ok(self
            .transition(event_id, Delivery::publish_failed)?
            .is_some())
    }

    /// The relay's receipt for `event_id`: the event is stored and its human loop
    /// exists, so it leaves the outbox, whatever its state. Returns false for an
    /// unknown id (a duplicate receipt, which is normal).
    pub fn receipt(&mut self, event_id: &str) -> Result<bool, OutboxError> {
        let err = self.err();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let found: Option<(i64, i64)> = tx
            .query_row(
                "SELECT seq, size FROM entry WHERE event_id = ?1",
                [event_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&err)?;
        let Some((seq, size)) = found else {
            return Ok(false);
        };
        remove(&tx, seq).map_err(&err)?;
        add_counter(&tx, "bytes", -size).map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(true)
    }

    /// The entry for `event_id`, with its payloads, if present.
    pub fn get(&self, event_id: &str) -> Result<Option<Entry>, OutboxError> {
        let err = self.err();
        let tx = self.conn.unchecked_transaction().map_err(&err)?;
        let mut found =
            select_entries(&tx, "WHERE event_id = ?1", params![event_id]).map_err(&err)?;
        let Some(mut entry) = found.pop() else {
            return Ok(None);
        };
        entry.payloads = load_payloads(&tx, entry.seq).map_err(&err)?;
        Ok(Some(entry))
    }

    /// How many entries wait in each state, their bytes, and the persistent count
    /// of entries dropped to respect the bound.
    pub fn depths(&self) -> Result<Depths, OutboxError> {
        let err = self.err();
        let tx = self.conn.unchecked_transaction().map_err(&err)?;
        let mut depths = Depths {
            bytes: counter(&tx, "bytes").map_err(&err)?,
            dropped: counter(&tx, "dropped").map_err(&err)?,
            ..Depths::default()
        };
        let mut stmt = tx
            .prepare_cached("SELECT awaiting, count(*) FROM entry GROUP BY awaiting")
            .map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        while let Some(row) = rows.next().map_err(&err)? {
            let (awaiting, n): (i64, i64) = (row.get(0).map_err(&err)?, row.get(1).map_err(&err)?);
            match awaiting {
                0 => depths.to_send = n as u64,
                2 => depths.set_aside = n as u64,
                _ => depths.awaiting_receipt += n as u64,
            }
        }
        depths.salvaged = counter(&tx, "salvaged").map_err(&err)?;
        depths.lost = counter(&tx, "lost").map_err(&err)?;
        Ok(depths)
    }

    /// Reads the whole file: SQLite's `integrity_check`, then the outbox's own
    /// invariants (byte counter = sum of sizes = sum of payload lengths, states
    /// well formed, no orphan payloads). Costs a full read; for tests, a status
    /// command, or after an unclean shutdown.
    pub fn check_integrity(&self) -> Result<(), OutboxError> {
        let err = self.err();
        let tx = self.conn.unchecked_transaction().map_err(&err)?;
        let mut problems: Vec<String> = Vec::new();
        {
            let mut stmt = tx.prepare("PRAGMA integrity_check").map_err(&err)?;
            let report: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .map_err(&err)?
                .collect::<Result<_, _>>()
                .map_err(&err)?;
            if report != ["ok"] {
                problems.extend(report);
            }
        }
        let checks: [(&str, &str); 4] = [
            (
                "byte counter differs from the sum of entry sizes",
                "SELECT (SELECT value FROM counter WHERE name = 'bytes')
                        IS NOT (SELECT coalesce(sum(size), 0) FROM entry)",
            ),
            (
                "an entry's size differs from its payloads, or it has none",
                "SELECT count(*) FROM entry e WHERE e.size IS NOT
                        (SELECT sum(length(p.data)) FROM payload p WHERE p.seq = e.seq)",
            ),
            (
                "payload rows without an entry",
                "SELECT count(*) FROM payload p WHERE NOT EXISTS
                        (SELECT 1 FROM entry e WHERE e.seq = p.seq)",
            ),
            (
                "malformed entry state",
                "SELECT count(*) FROM entry WHERE NOT
                        ((awaiting = 0 AND next_attempt_at IS NULL AND set_aside_at IS NULL)
                      OR (awaiting = 1 AND next_attempt_at IS NOT NULL AND set_aside_at IS NULL)
                      OR (awaiting = 2 AND set_aside_at IS NOT NULL
                          AND set_aside_code IS NOT NULL AND set_aside_reason IS NOT NULL))
                      OR attempts < 0",
            ),
        ];
        for (what, sql) in checks {
            let bad: i64 = tx.query_row(sql, [], |r| r.get(0)).map_err(&err)?;
            if bad != 0 {
                problems.push(what.to_owned());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(OutboxError::Inconsistent {
                path: self.path.clone(),
                detail: problems.join("; "),
            })
        }
    }

    /// Maps SQLite errors of this outbox's connection (see [`sql_err`]).
    pub(super) fn err(&self) -> impl Fn(rusqlite::Error) -> OutboxError + use<> {
        sql_err(&self.path, Some(&self.conn))
    }

    /// The raw connection, for tests that inspect or tamper with the file.
    #[cfg(test)]
    pub(super) fn conn_for_tests(&self) -> &Connection {
        &self.conn
    }

    /// Loads the delivery state of `event_id`, applies `f`, stores the result;
    /// one transaction. `None` if the id is unknown.
    fn transition(
        &mut self,
        event_id: &str,
        f: impl FnOnce(Delivery) -> Delivery,
    ) -> Result<Option<Delivery>, OutboxError> {
        let err = self.err();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let found = select_entries(&tx, "WHERE event_id = ?1", params![event_id])
            .map_err(&err)?
            .pop();
        let Some(entry) = found else {
            return Ok(None);
        };
        let after = f(entry.delivery());
        if after == entry.delivery() {
            return Ok(Some(after));
        }
        let (awaiting, next_attempt_at) = state_columns(after.state);
        tx.execute(
            "UPDATE entry SET awaiting = ?1, attempts = ?2, next_attempt_at = ?3 WHERE seq = ?4",
            params![awaiting, after.attempts, next_attempt_at, entry.seq as i64],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(Some(after))
    }
}

/// Maps SQLite's "not a database" and "corrupt" codes to [`OutboxError::Corrupt`],
/// "disk full" (SQLITE_FULL, or an I/O error whose errno is ENOSPC or EDQUOT) to
/// [`OutboxError::DiskFull`], everything else to [`OutboxError::Sqlite`]; all name the
/// file. `conn` gives the errno of the last failed system call, when known.
pub(super) fn sql_err(
    path: &Path,
    conn: Option<&Connection>,
) -> impl Fn(rusqlite::Error) -> OutboxError + use<> {
    let path = path.to_path_buf();
    // SAFETY: the handle is only used for sqlite3_system_errno, by closures that
    // never outlive the connection (each lives within one method of its owner).
    let handle = conn.map(|c| unsafe { c.handle() });
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => OutboxError::Corrupt {
            path: path.clone(),
            source,
        },
        Some(ErrorCode::DiskFull) => OutboxError::disk_full(&path, source),
        Some(ErrorCode::SystemIoFailure)
            if handle.is_some_and(|h| {
                // SAFETY: see above; the connection is open.
                let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(h) };
                errno == libc::ENOSPC || errno == libc::EDQUOT
            }) =>
        {
            OutboxError::disk_full(&path, source)
        }
        _ => OutboxError::Sqlite {
            path: path.clone(),
            source,
        },
    }
}

fn sync_parent_dir(path: &Path) -> Result<(), OutboxError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| OutboxError::io(dir, source))
}
