//! Row-level helpers of the SQLite layer: reading and writing entries, payloads
//! and counters inside a transaction the caller (`store.rs`) owns.

use rusqlite::{params, Connection, Row, Transaction};

use super::schedule::State;
use super::Entry;

pub(super) const ENTRY_COLUMNS: &str =
    "seq, event_id, size, created_at, awaiting, attempts, next_attempt_at, set_aside_at";

/// The `awaiting` and `next_attempt_at` columns of a delivery state (a set-aside
/// entry's own columns are written by `aside.rs`).
pub(super) fn state_columns(state: State) -> (i64, Option<i64>) {
    match state {
        State::ToSend => (0, None),
        State::AwaitingReceipt { next_attempt_at } => (1, Some(to_i64(next_attempt_at))),
        State::SetAside { .. } => (2, None),
    }
}

/// SQLite integers are i64; times and sizes beyond that saturate (never reached
/// in practice, but `u64::MAX` is a valid "never" deadline).
pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn counter(conn: &Connection, name: &str) -> rusqlite::Result<u64> {
    let v: i64 = conn.query_row("SELECT value FROM counter WHERE name = ?1", [name], |r| {
        r.get(0)
    })?;
    Ok(v.max(0) as u64)
}

pub(super) fn add_counter(conn: &Connection, name: &str, delta: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE counter SET value = value + ?2 WHERE name = ?1",
        params![name, delta],
    )?;
    Ok(())
}

/// Drops the oldest entries until at least `need` bytes are freed; counts them.
pub(super) fn drop_oldest(tx: &Transaction<'_>, need: u64) -> rusqlite::Result<Vec<String>> {
    let mut victims: Vec<(i64, String)> = Vec::new();
    let mut freed: u64 = 0;
    {
        let mut stmt = tx.prepare_cached("SELECT seq, event_id, size FROM entry ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        while freed < need {
            let Some(row) = rows.next()? else { break };
            victims.push((row.get(0)?, row.get(1)?));
            freed = freed.saturating_add(row.get::<_, i64>(2)?.max(0) as u64);
        }
    }
    for (seq, _) in &victims {
        remove(tx, *seq)?;
    }
    add_counter(tx, "bytes", -to_i64(freed))?;
    add_counter(tx, "dropped", victims.len() as i64)?;
    Ok(victims.into_iter().map(|(_, id)| id).collect())
}

pub(super) fn remove(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM payload WHERE seq = ?1", [seq])?;
    conn.execute("DELETE FROM entry WHERE seq = ?1", [seq])?;
    Ok(())
}

pub(super) fn select_entries(
    conn: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Entry>> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM entry {filter}");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params, entry_from_row)?;
    rows.collect()
}

pub(super) fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<Entry> {
    let awaiting: i64 = row.get(4)?;
    let state = match awaiting {
        0 => State::ToSend,
        1 => State::AwaitingReceipt {
            next_attempt_at: row.get::<_, Option<i64>>(6)?.unwrap_or(0).max(0) as u64,
        },
        2 => State::SetAside {
            set_aside_at: row.get::<_, Option<i64>>(7)?.unwrap_or(0).max(0) as u64,
        },
        other => return Err(rusqlite::Error::IntegralValueOutOfRange(4, other)),
    };
    Ok(Entry {
        seq: row.get::<_, i64>(0)? as u64,
        event_id: row.get(1)?,
        payloads: Vec::new(),
        size: row.get::<_, i64>(2)?.max(0) as u64,
        created_at: row.get::<_, i64>(3)?.max(0) as u64,
        state,
        attempts: row.get(5)?,
    })
}

pub(super) fn load_payloads(conn: &Connection, seq: u64) -> rusqlite::Result<Vec<Vec<u8>>> {
    let mut stmt = conn.prepare_cached("SELECT data FROM payload WHERE seq = ?1 ORDER BY idx")?;
    let rows = stmt.query_map([seq as i64], |r| r.get(0))?;
    rows.collect()
}
