//! Recovery from a corrupt outbox file. SD cards and cheap USB sticks acknowledge
//! writes they have not made (they lie about fsync), so after a power cut SQLite can
//! find pages that never reached the flash. Refusing to start would stop the device
//! for good until someone logs in; [`Outbox::open_or_recover`] instead moves the file
//! (with its `-wal` and `-shm`) aside to `<name>.corrupt-<unix seconds>`, copies every
//! entry whose row and payloads still read into a fresh outbox, and reports how many
//! were salvaged and how many lost (persistent counters, like `dropped`). A file that
//! is not ours (another program's database, a newer schema) is still refused and left
//! untouched: those are configuration mistakes, not damage.
//!
//! Salvage is per entry: sequence numbers are collected from both tables, scanning
//! each forwards and backwards as far as the damage allows, and each entry is read on
//! its own, so one bad page costs the entries on it, not the rest. A destroyed file
//! header (the first 100 bytes, which SQLite rewrites at every checkpoint) is rebuilt
//! in the quarantined copy from what edge-agent always writes (4096-byte pages, UTF-8,
//! WAL), so a torn header costs nothing. Payload bytes carry no checksum: a page
//! whose content (not structure) was altered is not detected here; the relay verifies
//! each image's SHA-256 and rejects such an event.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::lock::OutboxLock;
use super::rows::{add_counter, to_i64};
use super::schedule::UnixMillis;
use super::schema::SCHEMA_VERSION;
use super::{Outbox, OutboxConfig, OutboxError};

/// The result of [`Outbox::open_or_recover`].
#[derive(Debug)]
pub struct Opened {
    pub outbox: Outbox,
    /// `Some` when the file was corrupt and has been replaced.
    pub recovery: Option<Recovery>,
}

/// What a recovery did; also counted in [`Depths`](super::Depths)`::{salvaged, lost}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Where the corrupt file now is: `<name>.corrupt-<unix seconds>`.
    pub quarantined: PathBuf,
    /// Why the file was found corrupt (SQLite's message or integrity report).
    pub cause: String,
    /// Entries copied into the new file, set-aside ones included.
    pub salvaged: u64,
    /// Entries known to have existed (a row or payload of theirs was seen) that
    /// could not be read whole. Entries whose every trace is on destroyed pages
    /// cannot be counted: `salvaged + lost` is a lower bound of what the file held.
    pub lost: u64,
    /// The file header was unreadable and was rebuilt in the quarantined copy.
    pub header_rebuilt: bool,
}

/// One entry read back whole from a corrupt file.
struct Salvaged {
    event_id: String,
    payloads: Vec<Vec<u8>>,
    size: i64,
    created_at: i64,
    awaiting: i64,
    attempts: i64,
    next_attempt_at: Option<i64>,
    aside: Option<(String, String, i64)>,
}

#[derive(Default)]
struct Salvage {
    entries: Vec<Salvaged>,
    lost: u64,
    /// `dropped`, `salvaged` and `lost` counters of the old file, where readable.
    counters: [i64; 3],
    header_rebuilt: bool,
}

impl Outbox {
    /// [`Outbox::open`], but a corrupt file (SQLite reports it corrupt or not a
    /// database, or `PRAGMA quick_check` finds damage) is moved aside and replaced
    /// by a fresh outbox holding every entry that still reads (see the module doc).
    /// `now` names the quarantined file. Costs one read of the whole file (the
    /// quick check): seconds for a full 256 MiB outbox on an SD card, once at
    /// start-up. Other errors, a foreign database and a newer schema included, are
    /// returned as by `open`, with the file untouched.
    pub fn open_or_recover(
        path: impl AsRef<Path>,
        config: OutboxConfig,
        now: UnixMillis,
    ) -> Result<Opened, OutboxError> {
        config.validate()?;
        let path = path.as_ref().to_path_buf();
        let lock = OutboxLock::acquire(&path)?;
        let cause = match Outbox::open_locked(path.clone(), config, lock.try_clone(&path)?) {
            Ok(outbox) => match quick_check(&outbox.conn) {
                Ok(()) => {
                    return Ok(Opened {
                        outbox,
                        recovery: None,
                    })
                }
                Err(cause) => cause,
            },
            Err(OutboxError::Corrupt { source, .. }) => source.to_string(),
            Err(other) => return Err(other),
        };
        let quarantined = quarantine(&path, now)?;
        let salvage = salvage(&quarantined);
        let salvaged = salvage.entries.len() as u64;
        let restored = Outbox::open_locked(path.clone(), config, lock).and_then(|mut outbox| {
            outbox.restore(&salvage)?;
            Ok(outbox)
        });
        let outbox = match restored {
            Ok(outbox) => outbox,
            Err(e) => {
                // E.g. the disk is full: put the old file back, so that the next
                // start salvages it again instead of finding an empty new one.
                unquarantine(&path, &quarantined);
                return Err(e);
            }
        };
        Ok(Opened {
            outbox,
            recovery: Some(Recovery {
                quarantined,
                cause,
                salvaged,
                lost: salvage.lost,
                header_rebuilt: salvage.header_rebuilt,
            }),
        })
    }

    /// Writes salvaged entries and the old counters into this (fresh) outbox.
    fn restore(&mut self, salvage: &Salvage) -> Result<(), OutboxError> {
        let err = self.err();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut bytes = 0i64;
        for e in &salvage.entries {
            let (code, reason, at) = match &e.aside {
                Some((c, r, a)) => (Some(c.as_str()), Some(r.as_str()), Some(*a)),
                None => (None, None, None),
            };
            tx.execute(
                "INSERT INTO entry (event_id, size, created_at, awaiting, attempts,
                     next_attempt_at, set_aside_code, set_aside_reason, set_aside_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    e.event_id,
                    e.size,
                    e.created_at,
                    e.awaiting,
                    e.attempts,
                    e.next_attempt_at,
                    code,
                    reason,
                    at
                ],
            )
            .map_err(&err)?;
            let seq = tx.last_insert_rowid();
            for (idx, data) in e.payloads.iter().enumerate() {
                tx.execute(
                    "INSERT INTO payload (seq, idx, data) VALUES (?1, ?2, ?3)",
                    params![seq, idx as i64, data],
                )
                .map_err(&err)?;
            }
            bytes += e.size;
        }
        let [dropped, salvaged, lost] = salvage.counters;
        add_counter(&tx, "bytes", bytes).map_err(&err)?;
        add_counter(&tx, "dropped", dropped).map_err(&err)?;
        add_counter(&tx, "salvaged", salvaged + salvage.entries.len() as i64).map_err(&err)?;
        add_counter(&tx, "lost", lost + to_i64(salvage.lost)).map_err(&err)?;
        tx.commit().map_err(&err)
    }
}

/// `PRAGMA quick_check` (structure of every page, not index contents); `Err` holds
/// its report or the error that stopped it.
fn quick_check(conn: &Connection) -> Result<(), String> {
    let report: rusqlite::Result<Vec<String>> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    match report {
        Ok(lines) if lines == ["ok"] => Ok(()),
        Ok(lines) => Err(format!("quick_check: {}", lines.join("; "))),
        Err(e) => Err(e.to_string()),
    }
}

/// Renames the file and its `-wal`/`-shm` to `<name>.corrupt-<secs>[-wal|-shm]`
/// (SQLite then still finds the WAL that belongs to it) and syncs the directory.
fn quarantine(path: &Path, now: UnixMillis) -> Result<PathBuf, OutboxError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let secs = now / 1000;
    let mut target = path.with_file_name(format!("{name}.corrupt-{secs}"));
    let mut n = 1;
    while target.exists() {
        target = path.with_file_name(format!("{name}.corrupt-{secs}.{n}"));
        n += 1;
    }
    for suffix in ["-wal", "-shm", ""] {
        let from = with_suffix(path, suffix);
        if suffix.is_empty() || from.exists() {
            std::fs::rename(&from, with_suffix(&target, suffix))
                .map_err(|source| OutboxError::io(&from, source))?;
        }
    }
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| OutboxError::io(dir, source))?;
    }
    Ok(target)
}

/// Undoes [`quarantine`] after a failed salvage (best effort: the error that made
/// it necessary is the one reported).
fn unquarantine(path: &Path, quarantined: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(path, suffix));
    }
    for suffix in ["-wal", "-shm", ""] {
        let from = with_suffix(quarantined, suffix);
        if from.exists() {
            if let Err(e) = std::fs::rename(&from, with_suffix(path, suffix)) {
                tracing::error!(file = %from.display(), error = %e, "cannot move the corrupt outbox back");
            }
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Reads whatever still reads from the quarantined file. Never fails: what cannot
/// be read is lost (and counted where it is known to have existed).
fn salvage(file: &Path) -> Salvage {
    let mut out = Salvage::default();
    let open = || {
        let c = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?;
        Ok::<_, rusqlite::Error>(c)
    };
    let conn = match open() {
        Ok(c) => c,
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            match rebuild_header(file) {
                Ok(true) => out.header_rebuilt = true,
                _ => return out,
            }
            match open() {
                Ok(c) => c,
                Err(_) => return out,
            }
        }
        Err(_) => return out,
    };
    let counter = |name: &str| {
        conn.query_row("SELECT value FROM counter WHERE name = ?1", [name], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_or(0)
        .max(0)
    };
    out.counters = [counter("dropped"), counter("salvaged"), counter("lost")];
    let has_aside = conn
        .prepare("SELECT set_aside_code FROM entry LIMIT 0")
        .is_ok();
    let mut known = BTreeSet::new();
    for sql in [
        "SELECT seq FROM entry ORDER BY seq",
        "SELECT seq FROM entry ORDER BY seq DESC",
        "SELECT DISTINCT seq FROM payload ORDER BY seq",
        "SELECT DISTINCT seq FROM payload ORDER BY seq DESC",
    ] {
        collect_until_error(&conn, sql, &mut known);
    }
    for seq in known {
        match read_entry(&conn, seq, has_aside) {
            Some(entry) => out.entries.push(entry),
            None => out.lost += 1,
        }
    }
    out
}

/// Runs a one-column integer query, keeping the rows read before any error.
fn collect_until_error(conn: &Connection, sql: &str, into: &mut BTreeSet<i64>) {
    let Ok(mut stmt) = conn.prepare(sql) else {
        return;
    };
    let Ok(mut rows) = stmt.query([]) else { return };
    while let Ok(Some(row)) = rows.next() {
        match row.get::<_, i64>(0) {
            Ok(seq) => {
                into.insert(seq);
            }
            Err(_) => return,
        }
    }
}

/// One entry with all its payloads, or `None` if any part is unreadable or does not
/// add up (payload lengths differ from the recorded size, unknown state).
fn read_entry(conn: &Connection, seq: i64, has_aside: bool) -> Option<Salvaged> {
    let aside_cols = if has_aside {
        "set_aside_code, set_aside_reason, set_aside_at"
    } else {
        "NULL, NULL, NULL"
    };
    let sql = format!(
        "SELECT event_id, size, created_at, awaiting, attempts, next_attempt_at, {aside_cols}
         FROM entry WHERE seq = ?1"
    );
    let mut entry = conn
        .query_row(&sql, [seq], |r| {
            let aside = match (r.get(6)?, r.get(7)?, r.get(8)?) {
                (Some(c), Some(re), Some(at)) => Some((c, re, at)),
                _ => None,
            };
            Ok(Salvaged {
                event_id: r.get(0)?,
                size: r.get(1)?,
                created_at: r.get(2)?,
                awaiting: r.get(3)?,
                attempts: r.get(4)?,
                next_attempt_at: r.get(5)?,
                aside,
                payloads: Vec::new(),
            })
        })
        .ok()?;
    let mut stmt = conn
        .prepare("SELECT data FROM payload WHERE seq = ?1 ORDER BY idx")
        .ok()?;
    entry.payloads = stmt
        .query_map([seq], |r| r.get(0))
        .ok()?
        .collect::<rusqlite::Result<_>>()
        .ok()?;
    let total: i64 = entry.payloads.iter().map(|p| p.len() as i64).sum();
    let state_ok = match entry.awaiting {
        0 => entry.aside.is_none(),
        1 => entry.next_attempt_at.is_some() && entry.aside.is_none(),
        2 => entry.aside.is_some(),
        _ => false,
    };
    (!entry.payloads.is_empty() && total == entry.size && state_ok).then_some(entry)
}

/// Page size of every outbox edge-agent makes (SQLite's default; never changed).
const PAGE_SIZE: u64 = 4096;

/// Rewrites the 100-byte database header of `file` with the values edge-agent's
/// outboxes always have, if the magic string is gone. Ok(false): left alone (the
/// header looks fine, or the file cannot be an outbox: not whole pages).
fn rebuild_header(file: &Path) -> std::io::Result<bool> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)?;
    let len = f.metadata()?.len();
    let mut header = [0u8; 100];
    f.read_exact(&mut header)?;
    const MAGIC: &[u8; 16] = b"SQLite format 3\0";
    if &header[..16] == MAGIC || len < PAGE_SIZE || len % PAGE_SIZE != 0 {
        return Ok(false);
    }
    let mut h = [0u8; 100];
    h[..16].copy_from_slice(MAGIC);
    h[16..18].copy_from_slice(&(PAGE_SIZE as u16).to_be_bytes());
    h[18] = 2; // write version: WAL
    h[19] = 2; // read version: WAL
    h[20] = 0; // reserved bytes per page
    h[21] = 64; // max embedded payload fraction (fixed)
    h[22] = 32; // min embedded payload fraction (fixed)
    h[23] = 32; // leaf payload fraction (fixed)
    h[24..28].copy_from_slice(&1u32.to_be_bytes()); // file change counter
    h[28..32].copy_from_slice(&((len / PAGE_SIZE) as u32).to_be_bytes()); // pages
                                                                          // 32..40: no freelist (its pages are simply not reused by the read-only salvage)
    h[40..44].copy_from_slice(&1u32.to_be_bytes()); // schema cookie
    h[44..48].copy_from_slice(&4u32.to_be_bytes()); // schema format 4
    h[56..60].copy_from_slice(&1u32.to_be_bytes()); // UTF-8
    h[60..64].copy_from_slice(&(SCHEMA_VERSION as u32).to_be_bytes()); // user_version
    h[92..96].copy_from_slice(&1u32.to_be_bytes()); // version-valid-for = change counter
    h[96..100].copy_from_slice(&(rusqlite::version_number() as u32).to_be_bytes());
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&h)?;
    f.sync_all()?;
    Ok(true)
}
