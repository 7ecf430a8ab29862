//! Specifications of the SQLite-backed outbox, each on a real file in a temporary
//! directory. (The pure backoff and transitions are specified in `schedule.rs`.)

use std::path::PathBuf;
use std::time::Duration;

use super::*;

const MIN: u64 = 60_000;

/// Settings with the default backoff and no jitter, so deadlines are exact.
pub(super) fn config(max_bytes: u64) -> OutboxConfig {
    OutboxConfig {
        max_bytes,
        backoff: Backoff {
            initial: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            jitter: 0.0,
        },
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    Fixture { _dir: dir, path }
}

fn open(f: &Fixture, max_bytes: u64) -> Outbox {
    Outbox::open(&f.path, config(max_bytes)).unwrap()
}

fn ids(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.event_id.as_str()).collect()
}

fn stored(outcome: PutOutcome) -> (u64, Vec<String>) {
    match outcome {
        PutOutcome::Stored { seq, dropped } => (seq, dropped),
        PutOutcome::AlreadyPresent => panic!("expected Stored"),
    }
}

#[test]
fn the_outbox_is_send_so_it_can_move_to_a_blocking_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Outbox>();
}

#[test]
fn open_creates_an_empty_outbox_in_wal_mode_with_full_sync() {
    let f = fixture();
    let ob = open(&f, 1000);
    assert!(f.path.exists());
    assert_eq!(ob.depths().unwrap(), Depths::default());
    assert!(ob.due(0, 10).unwrap().is_empty());
    let raw = rusqlite::Connection::open(&f.path).unwrap();
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let sync: i64 = ob
        .conn_for_tests()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous=FULL");
    ob.check_integrity().unwrap();
}

#[test]
fn a_put_event_is_due_at_once_with_its_payloads_in_order() {
    let f = fixture();
    let mut ob = open(&f, 1000);
    let chunks = vec![b"one".to_vec(), b"two!".to_vec(), Vec::new(), b"3".to_vec()];
    let (seq, dropped) = stored(ob.put("ev-1", &chunks, 5_000).unwrap());
    assert!(dropped.is_empty());
    let due = ob.due(5_000, 10).unwrap();
    assert_eq!(
        due,
        vec![Entry {
            event_id: "ev-1".into(),
            seq,
            payloads: chunks,
            size: 8,
            created_at: 5_000,
            state: State::ToSend,
            attempts: 0,
        }]
    );
    let d = ob.depths().unwrap();
    assert_eq!((d.to_send, d.awaiting_receipt, d.bytes), (1, 0, 8));
}

#[test]
fn a_put_of_an_existing_id_changes_nothing() {
    let f = fixture();
    let mut ob = open(&f, 1000);
    ob.put("ev-1", &[b"original".to_vec()], 1).unwrap();
    ob.published("ev-1", 2, 0.0).unwrap();
    let before = ob.get("ev-1").unwrap();
    assert_eq!(
        ob.put("ev-1", &[b"other bytes".to_vec()], 3).unwrap(),
        PutOutcome::AlreadyPresent
    );
    assert_eq!(ob.get("ev-1").unwrap(), before);
    assert_eq!(ob.depths().unwrap().bytes, 8);
}

#[test]
fn sequence_numbers_follow_insertion_and_are_never_reused() {
    let f = fixture();
    let mut ob = open(&f, 1000);
    let (a, _) = stored(ob.put("a", &[vec![1]], 0).unwrap());
    let (b, _) = stored(ob.put("b", &[vec![1]], 0).unwrap());
    assert!(b > a);
    assert!(ob.receipt("b").unwrap());
    let (c, _) = stored(ob.put("c", &[vec![1]], 0).unwrap());
    assert!(c > b, "seq {c} reused after removing {b}");
}

#[test]
fn due_lists_to_send_by_seq_then_overdue_awaiting_by_seq_within_the_limit() {
    let f = fixture();
    let mut ob = open(&f, 1000);
    for id in ["a", "b", "c", "d", "e"] {
        ob.put(id, &[vec![0; 10]], 0).unwrap();
    }
    // a and c published at t=0 (due again at 1 min), d at t=1 min (due at 2 min).
    ob.published("a", 0, 0.0).unwrap();
    ob.published("c", 0, 0.0).unwrap();
    ob.published("d", MIN, 0.0).unwrap();
    assert_eq!(ids(&ob.due(MIN - 1, 10).unwrap()), ["b", "e"]);
    assert_eq!(ids(&ob.due(MIN, 10).unwrap()), ["b", "e", "a", "c"]);
    assert_eq!(
        ids(&ob.due(2 * MIN, 10).unwrap()),
        ["b", "e", "a", "c", "d"]
    );
    assert_eq!(ids(&ob.due(2 * MIN, 3).unwrap()), ["b", "e", "a"]);
    assert_eq!(ids(&ob.due(2 * MIN, 1).unwrap()), ["b"]);
    assert!(ob.due(2 * MIN, 0).unwrap().is_empty());
}

#[test]
fn puback_moves_to_awaiting_receipt_until_the_resend_timeout() {
    let f = fixture();
    let mut ob = open(&f, 1000);
    ob.put("ev", &[vec![7]], 0).unwrap();
    let state = ob.published("ev", 10_000, 0.0).unwrap();
    let expected = State::AwaitingReceipt {
        next_attempt_at: 10_000 + MIN,
    };
    assert_eq!(state, Some(expected));
    let entry = ob.get("ev").unwrap().unwrap();
    assert_eq!((entry.state, entry.attempts), (expected, 1));
    assert!(ob.due(10_000 + MIN - 1, 10).unwrap().is_empty());
    assert_eq!(ids(&ob.due(10_000 + MIN, 10).unwrap()), ["ev"]);
    let d = ob.depths().unwrap();
    assert_eq!((d.to_send, d.awaiting_receipt), (0, 1));
}

#[test]
fn each_acknowledged_resend_waits_twice_as_long_up_to_the_max() {
    let f = fixture();
    let mut ob = open(&f, 1000);
    ob.put("ev", &[vec![7]], 0).unwrap();
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..8 {
        let Some(State::AwaitingReceipt { next_attempt_at }) =
            ob.published("ev", now, 0.0).unwrap()
        else {
            panic!("not awaiting a receipt");
        };
        waits.push((next_attempt_at - now) / 1000);
        now = next_attempt_at;
    }
    assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    assert_eq!(ob.get("ev").unwrap().unwrap().attempts, 8);
}

#[test]
fn jitter_sample_shortens_the_timeout_by_the_configured_fraction() {
    let f = fixture();
    let mut cfg = config(1000);
    cfg.backoff.jitter = 0.5;
    let mut ob = Outbox::open(&f.path, cfg).unwrap();
    ob.put("ev", &[vec![7]], 0).unwrap();
    assert_eq!(
        ob.published("ev", 0, 1.0).unwrap(),
        Some(State::AwaitingReceipt {
            next_attempt_at: 30_000
        })
    );
}

#[test]
fn a_failed_publish_returns_the_entry_to_send() {
    let f = fixture();
    let mut ob = open(&f, 1000);
    ob.put("fresh", &[vec![1]], 0).unwrap();
    ob.put("resent", &[vec![1]], 0).unwrap();
    ob.published("resent", 0, 0.0).unwrap();
    assert!(ob.publish_failed("fresh").unwrap());
    assert!(ob.publish_failed("resent").unwrap());
    let due = ob.due(0, 10).unwrap();
    assert_eq!(ids(&due), ["fresh", "resent"]);
    assert!(due.iter().all(|e| e.state == State::ToSend));
    assert_eq!(due[1].attempts, 1, "failed publishes are not attempts");
    ob.check_integrity().unwrap();
}

#[test]
fn a_receipt_removes_the_entry_in_any_state() {
    let f = fixture();
    let mut ob = open(&f, 1000);
    ob.put("to-send", &[vec![0; 3]], 0).unwrap();
    ob.put("awaiting", &[vec![0; 4]], 0).unwrap();
    ob.published("awaiting", 0, 0.0).unwrap();
    assert!(ob.receipt("to-send").unwrap());
    assert!(ob.receipt("awaiting").unwrap());
    assert_eq!(ob.get("awaiting").unwrap(), None);
    assert!(ob.due(u64::MAX, 10).unwrap().is_empty());
    let d = ob.depths().unwrap();
    assert_eq!((d.to_send, d.awaiting_receipt, d.bytes), (0, 0, 0));
    ob.check_integrity().unwrap();
}

#[test]
fn receipts_and_pubacks_for_unknown_ids_are_ignored() {
    let f = fixture();
    let mut ob = open(&f, 1000);
    ob.put("ev", &[vec![1]], 0).unwrap();
    assert!(ob.receipt("ev").unwrap());
    assert!(!ob.receipt("ev").unwrap(), "duplicate receipt");
    assert!(!ob.receipt("never-seen").unwrap());
    assert_eq!(ob.published("ev", 0, 0.0).unwrap(), None);
    assert!(!ob.publish_failed("ev").unwrap());
    assert_eq!(ob.depths().unwrap(), Depths::default());
}

#[test]
fn a_put_over_the_bound_drops_the_oldest_entries_in_any_state_and_counts_them() {
    let f = fixture();
    let mut ob = open(&f, 100);
    ob.put("a", &[vec![0; 30]], 0).unwrap();
    ob.put("b", &[vec![0; 30]], 0).unwrap();
    ob.put("c", &[vec![0; 30]], 0).unwrap();
    ob.published("a", 0, 0.0).unwrap();
    // 90 stored + 40 = 130: free 30, i.e. drop "a" (awaiting a receipt).
    let (_, dropped) = stored(ob.put("d", &[vec![0; 40]], 0).unwrap());
    assert_eq!(dropped, ["a"]);
    // 100 stored + 70: free 70, i.e. drop "b", "c" and "d".
    let (_, dropped) = stored(ob.put("e", &[vec![0; 35], vec![0; 35]], 0).unwrap());
    assert_eq!(dropped, ["b", "c", "d"]);
    assert_eq!(ids(&ob.due(0, 10).unwrap()), ["e"]);
    let d = ob.depths().unwrap();
    assert_eq!((d.to_send, d.bytes, d.dropped), (1, 70, 4));
    ob.check_integrity().unwrap();
}

#[test]
fn an_event_exactly_the_size_of_the_bound_fits() {
    let f = fixture();
    let mut ob = open(&f, 100);
    ob.put("small", &[vec![0; 1]], 0).unwrap();
    let (_, dropped) = stored(ob.put("full", &[vec![0; 100]], 0).unwrap());
    assert_eq!(dropped, ["small"]);
    assert_eq!(ob.depths().unwrap().bytes, 100);
}

#[test]
fn an_event_larger_than_the_whole_bound_is_refused_and_drops_nothing() {
    let f = fixture();
    let mut ob = open(&f, 100);
    ob.put("kept", &[vec![0; 50]], 0).unwrap();
    let err = ob.put("huge", &[vec![0; 60], vec![0; 41]], 0).unwrap_err();
    assert!(
        matches!(&err, OutboxError::TooLarge { event_id, size: 101, max_bytes: 100 } if event_id == "huge"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "event huge is 101 bytes, larger than the whole outbox bound of 100 bytes; refused"
    );
    assert_eq!(ids(&ob.due(0, 10).unwrap()), ["kept"]);
    assert_eq!(ob.depths().unwrap().dropped, 0);
}

#[test]
fn an_event_without_payload_is_refused() {
    let f = fixture();
    let mut ob = open(&f, 100);
    let err = ob.put("nothing", &[], 0).unwrap_err();
    assert!(matches!(err, OutboxError::EmptyEvent { .. }), "{err:?}");
    assert_eq!(ob.depths().unwrap(), Depths::default());
}

#[test]
fn entries_states_and_the_drop_count_survive_a_reopen() {
    let f = fixture();
    {
        let mut ob = open(&f, 100);
        ob.put("old", &[vec![0; 60]], 1).unwrap();
        ob.put("sent", &[vec![0; 60]], 2).unwrap();
        ob.put("new", &[vec![0; 10]], 3).unwrap();
        ob.published("sent", 4, 0.0).unwrap();
    }
    let ob = open(&f, 100);
    let sent = ob.get("sent").unwrap().unwrap();
    assert_eq!(sent.created_at, 2);
    assert_eq!(sent.attempts, 1);
    assert_eq!(
        sent.state,
        State::AwaitingReceipt {
            next_attempt_at: 4 + MIN
        }
    );
    assert_eq!(
        ob.depths().unwrap(),
        Depths {
            to_send: 1,
            awaiting_receipt: 1,
            bytes: 70,
            dropped: 1,
            ..Depths::default()
        }
    );
    ob.check_integrity().unwrap();
}

#[test]
fn a_smaller_bound_after_reopen_is_enforced_at_the_next_put() {
    let f = fixture();
    {
        let mut ob = open(&f, 1000);
        for id in ["a", "b", "c"] {
            ob.put(id, &[vec![0; 100]], 0).unwrap();
        }
    }
    let mut ob = open(&f, 150);
    let (_, dropped) = stored(ob.put("d", &[vec![0; 50]], 0).unwrap());
    // 300 stored + 50 incoming - 150 bound: free 200 bytes, i.e. "a" and "b".
    assert_eq!(dropped, ["a", "b"]);
    assert_eq!(ids(&ob.due(0, 10).unwrap()), ["c", "d"]);
    assert_eq!(ob.depths().unwrap().bytes, 150);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_by_path_and_left_untouched() {
    let f = fixture();
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for content in [b"hello, not a database".to_vec(), garbage] {
        std::fs::write(&f.path, &content).unwrap();
        let err = Outbox::open(&f.path, config(1000)).unwrap_err();
        assert!(matches!(err, OutboxError::Corrupt { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&f.path.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read(&f.path).unwrap(), content);
    }
}

#[test]
fn a_database_of_a_newer_schema_is_refused_with_both_versions() {
    let f = fixture();
    drop(open(&f, 1000));
    let raw = rusqlite::Connection::open(&f.path).unwrap();
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(raw);
    let err = Outbox::open(&f.path, config(1000)).unwrap_err();
    assert!(
        matches!(err, OutboxError::UnsupportedVersion { found, supported, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("outbox.sqlite"), "{err}");
}

#[test]
fn another_programs_database_is_refused() {
    let f = fixture();
    let raw = rusqlite::Connection::open(&f.path).unwrap();
    raw.execute_batch("CREATE TABLE things (x INTEGER);")
        .unwrap();
    drop(raw);
    let err = Outbox::open(&f.path, config(1000)).unwrap_err();
    assert!(matches!(err, OutboxError::NotAnOutbox { .. }), "{err:?}");
}

#[test]
fn a_missing_directory_is_an_error_naming_the_path() {
    let f = fixture();
    let path = f.path.with_file_name("no-such-dir").join("outbox.sqlite");
    let err = Outbox::open(&path, config(1000)).unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

#[test]
fn nonsense_settings_are_refused_before_anything_is_opened() {
    let f = fixture();
    let err = Outbox::open(&f.path, config(0)).unwrap_err();
    assert!(matches!(err, OutboxError::InvalidConfig(_)), "{err:?}");
    let mut cfg = config(100);
    cfg.backoff.max = Duration::from_secs(1);
    assert!(Outbox::open(&f.path, cfg).is_err());
    assert!(!f.path.exists());
}

#[test]
fn defaults_are_256_mib_and_one_minute_to_one_hour() {
    let cfg = OutboxConfig::default();
    assert_eq!(cfg.max_bytes, 256 * 1024 * 1024);
    assert_eq!(cfg.backoff.initial, Duration::from_secs(60));
    assert_eq!(cfg.backoff.max, Duration::from_secs(3600));
    cfg.validate().unwrap();
}

#[test]
fn the_integrity_check_notices_a_byte_counter_that_disagrees() {
    let f = fixture();
    let mut ob = open(&f, 1000);
    ob.put("ev", &[vec![0; 10]], 0).unwrap();
    ob.check_integrity().unwrap();
    ob.conn_for_tests()
        .execute("UPDATE counter SET value = 3 WHERE name = 'bytes'", [])
        .unwrap();
    let err = ob.check_integrity().unwrap_err();
    assert!(err.to_string().contains("byte counter"), "{err}");
}
