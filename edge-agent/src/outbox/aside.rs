//! Set-aside entries: events taken out of delivery for good by the MQTT driver (the
//! relay rejected them with a code such as `device_mismatch`, `conflict` or
//! `invalid`; or the broker refused them, `refused_by_broker`, ...) but kept on
//! disk with their payloads, so that a rejection never silently destroys a frame
//! (DESIGN.md, "Guarantees"). They are never due, still count against the byte bound
//! (and are dropped oldest-first with everything else when it is reached, counted),
//! and an operator lists them and puts them back into delivery with
//! `edge-agent outbox list-set-aside` / `requeue`.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::rows::to_i64;
use super::schedule::UnixMillis;
use super::{Outbox, OutboxError};

/// A set-aside entry as [`Outbox::set_aside_entries`] lists it (no payloads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAsideEntry {
    pub event_id: String,
    /// Machine-readable class of the cause, e.g. `device_mismatch`, `conflict`,
    /// `invalid`, `refused_by_broker` (the caller's vocabulary; stored as given).
    pub code: String,
    /// Human-readable cause, e.g. the relay's rejection message.
    pub reason: String,
    /// When it was set aside.
    pub set_aside_at: UnixMillis,
    /// Sum of its payload lengths in bytes (counts against the bound).
    pub size: u64,
    /// When the event was accepted.
    pub created_at: UnixMillis,
}

impl Outbox {
    /// Takes `event_id` out of delivery for good: it is never due again, whatever
    /// its state, but its payloads stay on disk with `code`, `reason` and `now`
    /// until [`Outbox::requeue`] or the byte bound drops it. Setting aside an entry
    /// that is already aside replaces its code, reason and time. Returns false (and
    /// changes nothing) if the id is unknown.
    pub fn set_aside(
        &mut self,
        event_id: &str,
        code: &str,
        reason: &str,
        now: UnixMillis,
    ) -> Result<bool, OutboxError> {
        let err = self.err();
        let changed = self
            .conn
            .execute(
                "UPDATE entry SET awaiting = 2, next_attempt_at = NULL, set_aside_code = ?2,
                        set_aside_reason = ?3, set_aside_at = ?4
                 WHERE event_id = ?1",
                params![event_id, code, reason, to_i64(now)],
            )
            .map_err(err)?;
        Ok(changed > 0)
    }

    /// Every set-aside entry, oldest (by insertion) first, without payloads.
    pub fn set_aside_entries(&self) -> Result<Vec<SetAsideEntry>, OutboxError> {
        let err = self.err();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT event_id, set_aside_code, set_aside_reason, set_aside_at, size, created_at
                 FROM entry WHERE awaiting = 2 ORDER BY seq",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SetAsideEntry {
                    event_id: r.get(0)?,
                    code: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    reason: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    set_aside_at: r.get::<_, Option<i64>>(3)?.unwrap_or(0).max(0) as u64,
                    size: r.get::<_, i64>(4)?.max(0) as u64,
                    created_at: r.get::<_, i64>(5)?.max(0) as u64,
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(&err)
    }

    /// Puts a set-aside `event_id` back into delivery: `ToSend`, attempts 0, its
    /// set-aside code and reason forgotten. Returns false (and changes nothing) if
    /// the id is unknown or the entry is not set aside.
    pub fn requeue(&mut self, event_id: &str) -> Result<bool, OutboxError> {
        let err = self.err();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let aside = tx
            .query_row(
                "SELECT 1 FROM entry WHERE event_id = ?1 AND awaiting = 2",
                [event_id],
                |_| Ok(()),
            )
            .optional()
            .map_err(&err)?
            .is_some();
        if !aside {
            return Ok(false);
        }
        tx.execute(
            "UPDATE entry SET awaiting = 0, attempts = 0, next_attempt_at = NULL,
                    set_aside_code = NULL, set_aside_reason = NULL, set_aside_at = NULL
             WHERE event_id = ?1",
            [event_id],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(true)
    }
}
