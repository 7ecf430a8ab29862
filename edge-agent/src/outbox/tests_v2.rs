//! Specifications of schema version 2 and what came with it: set-aside entries, the
//! v1 -> v2 migration, the stepped-back clock, disk full, the one-owner lock and
//! recovery from a corrupt file. Each on a real file in a temporary directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::schema::SCHEMA_V1;
use super::tests::config;
use super::*;

const DAY: u64 = 24 * 3_600_000;

fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    (dir, path)
}

fn due_ids(ob: &Outbox, now: UnixMillis) -> Vec<String> {
    ob.due(now, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

#[test]
fn a_set_aside_entry_is_never_due_keeps_its_payloads_and_is_listed_with_its_cause() {
    let (_d, path) = fixture();
    let mut ob = Outbox::open(&path, config(10_000)).unwrap();
    ob.put("a", &[vec![1; 10], vec![2; 5]], 100).unwrap();
    ob.put("b", &[vec![3; 7]], 200).unwrap();
    ob.published("b", 300, 0.0).unwrap();
    assert!(ob
        .set_aside("a", "device_mismatch", "sent by pi-2", 400)
        .unwrap());
    assert!(ob.set_aside("b", "conflict", "other bytes", 500).unwrap());
    assert!(!ob.set_aside("nope", "invalid", "x", 500).unwrap());
    assert!(due_ids(&ob, u64::MAX).is_empty(), "never due");
    // A late PUBACK or publish failure does not bring it back.
    ob.published("a", 600, 0.0).unwrap();
    ob.publish_failed("b").unwrap();
    assert!(due_ids(&ob, u64::MAX).is_empty());
    assert_eq!(
        ob.get("a").unwrap().unwrap().payloads,
        [vec![1; 10], vec![2; 5]]
    );
    assert_eq!(
        ob.set_aside_entries().unwrap(),
        [
            SetAsideEntry {
                event_id: "a".into(),
                code: "device_mismatch".into(),
                reason: "sent by pi-2".into(),
                set_aside_at: 400,
                size: 15,
                created_at: 100,
            },
            SetAsideEntry {
                event_id: "b".into(),
                code: "conflict".into(),
                reason: "other bytes".into(),
                set_aside_at: 500,
                size: 7,
                created_at: 200,
            }
        ]
    );
    let d = ob.depths().unwrap();
    assert_eq!(
        (d.to_send, d.awaiting_receipt, d.set_aside, d.bytes),
        (0, 0, 2, 22)
    );
    ob.check_integrity().unwrap();
    // A receipt still removes it (the relay may have stored it after all).
    assert!(ob.receipt("b").unwrap());
    assert_eq!(ob.depths().unwrap().set_aside, 1);
}

#[test]
fn requeue_puts_a_set_aside_entry_back_to_send_with_no_attempts() {
    let (_d, path) = fixture();
    let mut ob = Outbox::open(&path, config(10_000)).unwrap();
    ob.put("a", &[vec![1; 10]], 0).unwrap();
    ob.put("b", &[vec![1; 10]], 0).unwrap();
    ob.published("a", 1, 0.0).unwrap();
    ob.published("a", 2, 0.0).unwrap();
    ob.set_aside("a", "too_large_for_broker", "150 KB > 128 KB", 3)
        .unwrap();
    assert!(!ob.requeue("b").unwrap(), "not set aside: unchanged");
    assert!(!ob.requeue("nope").unwrap());
    assert!(ob.requeue("a").unwrap());
    let a = ob.get("a").unwrap().unwrap();
    assert_eq!((a.state, a.attempts), (State::ToSend, 0));
    assert_eq!(due_ids(&ob, 0), ["a", "b"]);
    assert!(ob.set_aside_entries().unwrap().is_empty());
    ob.check_integrity().unwrap();
}

#[test]
fn set_aside_entries_count_against_the_bound_and_are_dropped_oldest_first() {
    let (_d, path) = fixture();
    let mut ob = Outbox::open(&path, config(100)).unwrap();
    ob.put("aside", &[vec![0; 60]], 0).unwrap();
    ob.set_aside("aside", "invalid", "bad", 1).unwrap();
    ob.put("b", &[vec![0; 30]], 2).unwrap();
    let PutOutcome::Stored { dropped, .. } = ob.put("c", &[vec![0; 30]], 3).unwrap() else {
        panic!()
    };
    assert_eq!(dropped, ["aside"]);
    let d = ob.depths().unwrap();
    assert_eq!((d.set_aside, d.dropped, d.bytes), (0, 1, 60));
}

#[test]
fn set_aside_entries_and_their_causes_survive_a_reopen() {
    let (_d, path) = fixture();
    {
        let mut ob = Outbox::open(&path, config(1000)).unwrap();
        ob.put("a", &[vec![0; 6]], 0).unwrap();
        ob.set_aside("a", "invalid", "no chunk 3", 9).unwrap();
    }
    let ob = Outbox::open(&path, config(1000)).unwrap();
    let listed = ob.set_aside_entries().unwrap();
    assert_eq!(
        (listed[0].code.as_str(), listed[0].set_aside_at),
        ("invalid", 9)
    );
    assert_eq!(
        ob.get("a").unwrap().unwrap().state,
        State::SetAside { set_aside_at: 9 }
    );
}

/// A file exactly as edge-agent 0.1 (schema version 1) left it.
fn make_v1_file(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.execute_batch(SCHEMA_V1).unwrap();
    c.execute_batch(
        "INSERT INTO entry (event_id, size, created_at, awaiting, attempts, next_attempt_at)
             VALUES ('sent', 3, 10, 1, 2, 5000), ('new', 4, 20, 0, 0, NULL);
         INSERT INTO payload (seq, idx, data) VALUES (1, 0, x'010203'), (2, 0, x'0a0b'),
             (2, 1, x'0c0d');
         UPDATE counter SET value = 7 WHERE name = 'bytes';
         UPDATE counter SET value = 4 WHERE name = 'dropped';
         PRAGMA user_version = 1;",
    )
    .unwrap();
}

#[test]
fn a_version_1_outbox_is_migrated_in_place_and_keeps_every_entry() {
    let (_d, path) = fixture();
    make_v1_file(&path);
    let mut ob = Outbox::open(&path, config(1000)).unwrap();
    let version: i64 = ob
        .conn_for_tests()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    ob.check_integrity().unwrap();
    let sent = ob.get("sent").unwrap().unwrap();
    assert_eq!(
        sent.state,
        State::AwaitingReceipt {
            next_attempt_at: 5000
        }
    );
    assert_eq!(
        (sent.attempts, sent.payloads.clone()),
        (2, vec![vec![1, 2, 3]])
    );
    let new = ob.get("new").unwrap().unwrap();
    assert_eq!(new.payloads, [vec![0x0a, 0x0b], vec![0x0c, 0x0d]]);
    assert_eq!(
        ob.depths().unwrap(),
        Depths {
            to_send: 1,
            awaiting_receipt: 1,
            bytes: 7,
            dropped: 4,
            ..Depths::default()
        }
    );
    assert!(ob.set_aside("new", "invalid", "x", 1).unwrap());
    drop(ob);
    let ob = Outbox::open(&path, config(1000)).unwrap();
    assert_eq!(ob.depths().unwrap().set_aside, 1);
}

#[test]
fn after_the_clock_steps_back_a_resend_time_beyond_the_longest_timeout_is_due() {
    let (_d, path) = fixture();
    let mut ob = Outbox::open(&path, config(1000)).unwrap();
    let wrong_clock = 1_800_000_000_000;
    ob.put("a", &[vec![0; 3]], wrong_clock).unwrap();
    ob.put("b", &[vec![0; 3]], wrong_clock).unwrap();
    ob.published("a", wrong_clock, 0.0).unwrap();
    ob.published("b", wrong_clock, 0.0).unwrap();
    assert!(due_ids(&ob, wrong_clock).is_empty());
    // NTP steps the clock back 30 days: both are due at once, not in 30 days.
    assert_eq!(due_ids(&ob, wrong_clock - 30 * DAY), ["a", "b"]);
    // Within the longest timeout (1 h) ahead, a wait is plausible and kept.
    assert!(due_ids(&ob, wrong_clock + 60_000 - 3_600_000).is_empty());
}

#[test]
fn a_full_disk_is_its_own_error_naming_the_directory_and_nothing_is_half_written() {
    let (dir, path) = fixture();
    let mut ob = Outbox::open(&path, config(10_000_000)).unwrap();
    ob.put("small", &[vec![1; 100]], 0).unwrap();
    let pages: i64 = ob
        .conn_for_tests()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    // SQLite's own page limit gives the same SQLITE_FULL as a full file system.
    ob.conn_for_tests()
        .pragma_update(None, "max_page_count", pages)
        .unwrap();
    let err = ob.put("big", &[vec![2; 200_000]], 1).unwrap_err();
    assert!(err.is_disk_full() && err.is_transient(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("disk is full"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert_eq!(ob.depths().unwrap().to_send, 1, "nothing half written");
    // Space again: the same put succeeds on the same connection.
    ob.conn_for_tests()
        .pragma_update(None, "max_page_count", 1_000_000)
        .unwrap();
    ob.put("big", &[vec![2; 200_000]], 1).unwrap();
    assert_eq!(due_ids(&ob, 0), ["small", "big"]);
    ob.check_integrity().unwrap();
}

#[test]
fn enospc_from_the_file_system_is_reported_as_disk_full() {
    let err = OutboxError::io(
        Path::new("/var/lib/edge-agent/outbox.sqlite"),
        std::io::Error::from_raw_os_error(libc::ENOSPC),
    );
    assert!(err.is_disk_full());
    assert!(err.to_string().contains("/var/lib/edge-agent"), "{err}");
}

#[test]
fn a_second_owner_of_the_same_file_is_refused_until_the_first_is_gone() {
    let (_d, path) = fixture();
    let ob = Outbox::open(&path, config(1000)).unwrap();
    let err = Outbox::open(&path, config(1000)).unwrap_err();
    assert!(matches!(err, OutboxError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("stop edge-agent"), "{err}");
    let err = Outbox::open_or_recover(&path, config(1000), 0).unwrap_err();
    assert!(matches!(err, OutboxError::Locked { .. }), "{err:?}");
    drop(ob);
    Outbox::open(&path, config(1000)).unwrap();
}

// ---- corrupt files -------------------------------------------------------------

const N: u64 = 40;

fn payloads_for(n: u64) -> Vec<Vec<u8>> {
    (0..2)
        .map(|c| {
            (0..5000 + n as usize * 13)
                .map(|i| (i as u64 * 31 + n + c) as u8)
                .collect()
        })
        .collect()
}

/// N events made with the real API (some published, some set aside), closed
/// cleanly; returns the file's page count.
fn build_outbox(path: &Path) -> u64 {
    let mut ob = Outbox::open(path, config(100_000_000)).unwrap();
    for n in 0..N {
        ob.put(&format!("ev-{n:03}"), &payloads_for(n), n).unwrap();
        if n % 3 == 0 {
            ob.published(&format!("ev-{n:03}"), n, 0.0).unwrap();
        }
        if n % 7 == 0 {
            ob.set_aside(&format!("ev-{n:03}"), "conflict", "why", n)
                .unwrap();
        }
    }
    drop(ob);
    assert!(
        !Path::new(&format!("{}-wal", path.display())).exists(),
        "checkpointed"
    );
    std::fs::metadata(path).unwrap().len() / 4096
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

/// Checks a recovered outbox: every salvaged entry whole, counts consistent.
fn check_recovered(path: &Path, opened: &Opened) -> HashMap<String, Entry> {
    let rec = opened.recovery.as_ref().expect("a recovery");
    assert_eq!(rec.salvaged + rec.lost, N, "{rec:?}");
    assert!(rec.quarantined.exists(), "{rec:?}");
    assert!(rec
        .quarantined
        .to_string_lossy()
        .starts_with(&format!("{}.corrupt-1800000000", path.display())));
    let ob = &opened.outbox;
    ob.check_integrity().unwrap();
    let d = ob.depths().unwrap();
    assert_eq!((d.salvaged, d.lost), (rec.salvaged, rec.lost));
    assert_eq!(d.to_send + d.awaiting_receipt + d.set_aside, rec.salvaged);
    let mut found = HashMap::new();
    for n in 0..N {
        let id = format!("ev-{n:03}");
        if let Some(e) = ob.get(&id).unwrap() {
            assert_eq!(e.payloads, payloads_for(n), "{id}");
            assert_eq!(e.created_at, n);
            if n % 7 == 0 {
                assert!(
                    matches!(e.state, State::SetAside { .. }),
                    "{id} stays aside"
                );
            }
            found.insert(id, e);
        }
    }
    assert_eq!(found.len() as u64, rec.salvaged);
    found
}

#[test]
fn a_corrupt_page_in_the_middle_costs_only_the_entries_on_it() {
    let (_d, path) = fixture();
    let pages = build_outbox(&path);
    assert!(pages > 50, "{pages}");
    // Three whole pages of garbage in the middle of the payloads.
    overwrite(&path, pages / 2 * 4096, &vec![0x5a; 3 * 4096]);
    assert!(matches!(
        Outbox::open(&path, config(100_000_000)).and_then(|o| o.check_integrity()),
        Err(OutboxError::Inconsistent { .. } | OutboxError::Corrupt { .. })
    ));
    let mut opened =
        Outbox::open_or_recover(&path, config(100_000_000), 1_800_000_000_123).unwrap();
    let found = check_recovered(&path, &opened);
    let rec = opened.recovery.clone().unwrap();
    assert!(rec.lost > 0 && rec.salvaged > 0, "{rec:?}");
    assert!(!rec.header_rebuilt);
    // Delivery goes on in the new file.
    let due = due_ids(&opened.outbox, u64::MAX);
    assert!(!due.is_empty() && due.iter().all(|id| found.contains_key(id)));
    opened.outbox.put("after", &[vec![9; 10]], 0).unwrap();
    assert!(opened.outbox.receipt(&due[0]).unwrap());
    drop(opened);
    // The next start finds a healthy file and recovers nothing more.
    let again = Outbox::open_or_recover(&path, config(100_000_000), 1_800_000_001_000).unwrap();
    assert!(again.recovery.is_none());
    assert_eq!(
        again.outbox.depths().unwrap().lost,
        rec.lost,
        "persistent count"
    );
}

#[test]
fn a_destroyed_header_is_rebuilt_and_every_entry_salvaged() {
    let (_d, path) = fixture();
    build_outbox(&path);
    overwrite(&path, 0, &[0xee; 100]);
    assert!(matches!(
        Outbox::open(&path, config(100_000_000)),
        Err(OutboxError::Corrupt { .. })
    ));
    let opened = Outbox::open_or_recover(&path, config(100_000_000), 1_800_000_000_000).unwrap();
    let found = check_recovered(&path, &opened);
    let rec = opened.recovery.as_ref().unwrap();
    assert!(rec.header_rebuilt);
    assert_eq!((rec.salvaged, rec.lost), (N, 0));
    assert_eq!(found.len() as u64, N);
    assert_eq!(opened.outbox.set_aside_entries().unwrap().len(), 6);
}

#[test]
fn a_file_that_is_not_an_outbox_at_all_is_moved_aside_and_nothing_is_salvaged() {
    let (_d, path) = fixture();
    let junk: Vec<u8> = (0..3 * 4096u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &junk).unwrap();
    let opened = Outbox::open_or_recover(&path, config(1000), 1_800_000_000_000).unwrap();
    let rec = opened.recovery.unwrap();
    assert_eq!((rec.salvaged, rec.lost), (0, 0));
    assert!(rec.quarantined.exists());
    assert_eq!(opened.outbox.depths().unwrap().to_send, 0);
}

#[test]
fn another_programs_database_or_a_newer_schema_is_refused_and_left_untouched() {
    let (dir, path) = fixture();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("CREATE TABLE things (x INTEGER);")
        .unwrap();
    drop(raw);
    let before = std::fs::read(&path).unwrap();
    let err = Outbox::open_or_recover(&path, config(1000), 0).unwrap_err();
    assert!(matches!(err, OutboxError::NotAnOutbox { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let newer = dir.path().join("newer.sqlite");
    drop(Outbox::open(&newer, config(1000)).unwrap());
    let raw = rusqlite::Connection::open(&newer).unwrap();
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(raw);
    let before = std::fs::read(&newer).unwrap();
    let err = Outbox::open_or_recover(&newer, config(1000), 0).unwrap_err();
    assert!(
        matches!(err, OutboxError::UnsupportedVersion { .. }),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&newer).unwrap(), before);
    let quarantined = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("corrupt")
        })
        .count();
    assert_eq!(quarantined, 0);
}
