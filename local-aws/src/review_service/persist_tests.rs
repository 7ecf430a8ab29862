use super::*;
use crate::review_service::control_plane::HumanTaskUi;
use crate::review_service::store::{FlowTarget, StartRequest};
use time::macros::datetime;

fn flow() -> FlowTarget {
    FlowTarget {
        arn: "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/f".into(),
        name: "f".into(),
        output_path: "s3://b".into(),
    }
}

fn start(state: &ReviewState, name: &str) -> ReviewEvent {
    let req = StartRequest {
        name: name.into(),
        input_content: "{}".into(),
        content_classifiers: vec![],
    };
    let ev = state
        .loops
        .check_start(
            &req,
            &flow(),
            format!("arn:{name}"),
            datetime!(2024-01-01 0:00 UTC),
        )
        .unwrap();
    ReviewEvent::Loop(ev)
}

fn commit(dir: &mut StateDir, state: &mut ReviewState, ev: ReviewEvent) {
    dir.append(&ev).unwrap();
    state.apply(&ev);
}

#[test]
fn state_survives_reopening_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut dir, mut state) = StateDir::open(tmp.path()).unwrap();
    assert_eq!(state, ReviewState::default());
    let ui = ReviewEvent::Control(ControlEvent::TaskUiCreated(HumanTaskUi {
        name: "ui".into(),
        arn: "arn:ui".into(),
        creation_time: datetime!(2024-01-01 0:00 UTC),
        template: "<p>".into(),
    }));
    commit(&mut dir, &mut state, ui);
    for name in ["a", "b"] {
        let ev = start(&state, name);
        commit(&mut dir, &mut state, ev);
    }
    let stop = ReviewEvent::Loop(state.loops.check_stop("a").unwrap().unwrap());
    commit(&mut dir, &mut state, stop);
    drop(dir);
    let (_dir, reopened) = StateDir::open(tmp.path()).unwrap();
    assert_eq!(reopened, state);
}

#[test]
fn opening_folds_the_journal_into_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut dir, mut state) = StateDir::open(tmp.path()).unwrap();
    let ev = start(&state, "a");
    commit(&mut dir, &mut state, ev);
    assert!(
        std::fs::metadata(tmp.path().join(JOURNAL_FILE))
            .unwrap()
            .len()
            > 0
    );
    drop(dir);
    let (_dir, reopened) = StateDir::open(tmp.path()).unwrap();
    assert_eq!(reopened, state);
    assert_eq!(
        std::fs::metadata(tmp.path().join(JOURNAL_FILE))
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn a_journal_left_behind_after_compaction_is_not_replayed_twice() {
    // Crash after the snapshot was renamed into place but before the journal was emptied.
    let tmp = tempfile::tempdir().unwrap();
    let (mut dir, mut state) = StateDir::open(tmp.path()).unwrap();
    let a = start(&state, "a");
    commit(&mut dir, &mut state, a);
    let stop = ReviewEvent::Loop(state.loops.check_stop("a").unwrap().unwrap());
    commit(&mut dir, &mut state, stop);
    let delete = ReviewEvent::Loop(state.loops.check_delete("a").unwrap());
    commit(&mut dir, &mut state, delete);
    let journal = std::fs::read(tmp.path().join(JOURNAL_FILE)).unwrap();
    dir.compact(&state).unwrap();
    std::fs::write(tmp.path().join(JOURNAL_FILE), &journal).unwrap();
    drop(dir);
    let (_dir, reopened) = StateDir::open(tmp.path()).unwrap();
    assert!(
        reopened.loops.is_empty(),
        "the old start must not bring loop a back"
    );
}

#[test]
fn a_torn_last_journal_line_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut dir, mut state) = StateDir::open(tmp.path()).unwrap();
    let ev = start(&state, "a");
    commit(&mut dir, &mut state, ev);
    drop(dir);
    let mut f = OpenOptions::new()
        .append(true)
        .open(tmp.path().join(JOURNAL_FILE))
        .unwrap();
    f.write_all(br#"{"seq":2,"event":{"Loop":{"Sto"#).unwrap();
    drop(f);
    let (_dir, reopened) = StateDir::open(tmp.path()).unwrap();
    assert_eq!(reopened, state);
}

#[test]
fn a_corrupt_journal_line_in_the_middle_is_an_error_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut dir, mut state) = StateDir::open(tmp.path()).unwrap();
    let a = start(&state, "a");
    commit(&mut dir, &mut state, a);
    drop(dir);
    let path = tmp.path().join(JOURNAL_FILE);
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("garbage\n{good}")).unwrap();
    let err = StateDir::open(tmp.path()).unwrap_err();
    assert!(
        matches!(err, PersistError::CorruptJournal { line: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("journal.jsonl"), "{err}");
    // Nothing changed: the journal is still there for an operator to look at.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("garbage\n{good}")
    );
}

#[test]
fn a_corrupt_snapshot_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(SNAPSHOT_FILE), b"{not json").unwrap();
    let err = StateDir::open(tmp.path()).unwrap_err();
    assert!(matches!(err, PersistError::CorruptSnapshot { .. }), "{err}");
    assert!(err.to_string().contains("snapshot.json"), "{err}");
}

#[test]
fn a_snapshot_of_an_unknown_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let state = serde_json::to_value(ReviewState::default()).unwrap();
    let snap = serde_json::json!({"version": 99, "last_seq": 0, "state": state});
    std::fs::write(tmp.path().join(SNAPSHOT_FILE), snap.to_string()).unwrap();
    assert!(matches!(
        StateDir::open(tmp.path()),
        Err(PersistError::SnapshotVersion { found: 99, .. })
    ));
}

#[test]
fn compaction_is_wanted_after_many_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut dir, mut state) = StateDir::open(tmp.path()).unwrap();
    let ev = start(&state, "a");
    commit(&mut dir, &mut state, ev);
    assert!(!dir.wants_compaction());
    dir.entries_since_compaction = COMPACT_AFTER;
    assert!(dir.wants_compaction());
    dir.compact(&state).unwrap();
    assert!(!dir.wants_compaction());
    drop(dir);
    assert_eq!(StateDir::open(tmp.path()).unwrap().1, state);
}

#[test]
fn inputs_kept_inline_by_an_older_version_move_to_their_files_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut dir, mut state) = StateDir::open(tmp.path()).unwrap();
    let ev = start(&state, "a");
    commit(&mut dir, &mut state, ev);
    drop(dir);
    // What the older version journaled: the loop with its input inline.
    let path = tmp.path().join(JOURNAL_FILE);
    let old = std::fs::read_to_string(&path).unwrap().replace(
        r#""creation_time""#,
        r#""input_content":"{\"taskObject\":\"s3://b/k.jpg\"}","creation_time""#,
    );
    std::fs::write(&path, old).unwrap();
    std::fs::remove_file(tmp.path().join(SNAPSHOT_FILE)).unwrap();
    std::fs::remove_dir_all(tmp.path().join(INPUTS_DIR)).ok();

    let (_dir, reopened) = StateDir::open(tmp.path()).unwrap();
    assert_eq!(
        StateDir::read_input(tmp.path(), "a").unwrap(),
        r#"{"taskObject":"s3://b/k.jpg"}"#
    );
    assert!(reopened.loops.iter().all(|l| l.legacy_input.is_none()));
    let snapshot = std::fs::read_to_string(tmp.path().join(SNAPSHOT_FILE)).unwrap();
    assert!(!snapshot.contains("taskObject"), "{snapshot}");
}

#[test]
fn an_input_whose_loop_was_never_journaled_is_removed_on_open() {
    // Crash after the input file was written, before the Started event was journaled.
    let tmp = tempfile::tempdir().unwrap();
    let (mut dir, mut state) = StateDir::open(tmp.path()).unwrap();
    dir.write_input("kept", "{}").unwrap();
    let ev = start(&state, "kept");
    commit(&mut dir, &mut state, ev);
    dir.write_input("orphan", "{}").unwrap();
    drop(dir);
    let (_dir, _) = StateDir::open(tmp.path()).unwrap();
    assert!(StateDir::read_input(tmp.path(), "kept").is_ok());
    assert!(matches!(
        StateDir::read_input(tmp.path(), "orphan"),
        Err(PersistError::Io { .. })
    ));
}
