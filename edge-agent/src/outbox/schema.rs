//! The outbox's SQLite schema, version by version, and the migrations between them.
//! A new file is made by running every step from version 1, so a fresh outbox and a
//! migrated one go through the same SQL; `PRAGMA user_version` says which step a
//! file has reached.

use rusqlite::{Transaction, TransactionBehavior};

/// The schema version this code writes, kept in `PRAGMA user_version`.
/// 1: entries, payloads, counters. 2: set-aside entries (`awaiting = 2` with code,
/// reason and time), and the `salvaged`/`lost` counters of corrupt-file recovery.
pub const SCHEMA_VERSION: i64 = 2;

// Payloads live apart from their entry so that scanning entries (due, depths,
// eviction) never reads image bytes. `awaiting` is 0 for ToSend, 1 for
// AwaitingReceipt; `next_attempt_at` is set exactly when `awaiting` is 1.
// AUTOINCREMENT: a sequence number is never reused, even after the newest entry is
// removed, so `seq` is insertion order across the life of the file.
/// Version 1, exactly as edge-agent 0.1 wrote it (kept verbatim: tests make v1 files
/// with it, and new files start from it).
pub(super) const SCHEMA_V1: &str = "
CREATE TABLE entry (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL UNIQUE,
    size            INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    awaiting        INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER
);
CREATE INDEX entry_by_state ON entry (awaiting, seq);
CREATE TABLE payload (
    seq  INTEGER NOT NULL,
    idx  INTEGER NOT NULL,
    data BLOB    NOT NULL,
    PRIMARY KEY (seq, idx)
);
CREATE TABLE counter (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counter (name, value) VALUES ('bytes', 0), ('dropped', 0);
";

// Version 2: `awaiting = 2` marks a set-aside entry; its three set_aside_* columns
// are set exactly then (NULL otherwise). Existing rows keep their state.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE entry ADD COLUMN set_aside_code   TEXT;
ALTER TABLE entry ADD COLUMN set_aside_reason TEXT;
ALTER TABLE entry ADD COLUMN set_aside_at     INTEGER;
INSERT OR IGNORE INTO counter (name, value) VALUES ('salvaged', 0), ('lost', 0);
";

/// The SQL that takes a file from version `n - 1` to `n`, for n in 1..=SCHEMA_VERSION.
const STEPS: [&str; SCHEMA_VERSION as usize] = [SCHEMA_V1, MIGRATE_1_TO_2];

/// Brings a file at `from` (0 = empty) to [`SCHEMA_VERSION`] in one exclusive
/// transaction: a crash midway leaves it at `from`, never half migrated.
pub(super) fn upgrade(conn: &mut rusqlite::Connection, from: i64) -> rusqlite::Result<()> {
    if from >= SCHEMA_VERSION {
        return Ok(());
    }
    let tx: Transaction<'_> = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    for step in &STEPS[from as usize..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}
