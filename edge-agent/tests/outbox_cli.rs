//! `edge-agent outbox list-set-aside` and `requeue`, run as the real binary on an
//! outbox made with the library API: what an operator sees and what it changes, and
//! that both refuse to touch an outbox another process (the daemon) holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edge_agent::outbox::{Outbox, OutboxConfig, State};

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    outbox: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nid = \"pi-test\"\nstate_dir = \"{}\"\n\n[mqtt]\nhost = \"127.0.0.1\"\n\n\
             [[source]]\nkind = \"folder\"\npath = \"{}\"\n",
            state.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let outbox = state.join("outbox.sqlite");
    let mut ob = Outbox::open(&outbox, OutboxConfig::default()).unwrap();
    for id in ["ev-a", "ev-b", "ev-c"] {
        ob.put(id, &[vec![7; 100]], 1_795_597_200_000).unwrap();
    }
    ob.set_aside(
        "ev-a",
        "device_mismatch",
        "event of pi-2 sent by pi-test",
        1_795_597_260_000,
    )
    .unwrap();
    ob.set_aside(
        "ev-c",
        "too_large_for_broker",
        "150000 > 131072 bytes",
        1_795_597_320_000,
    )
    .unwrap();
    Setup {
        _dir: dir,
        config,
        outbox,
    }
}

fn agent(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("outbox")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn list_set_aside_prints_each_event_with_code_time_size_and_reason() {
    let s = setup();
    let out = agent(&s.config, &["list-set-aside"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "ev-a\tdevice_mismatch\t2026-11-25T09:01:00.000Z\t100 bytes\tevent of pi-2 sent by pi-test",
            "ev-c\ttoo_large_for_broker\t2026-11-25T09:02:00.000Z\t100 bytes\t150000 > 131072 bytes",
        ]
    );
    assert!(text(&out.stderr).contains("2 event(s) set aside"));
}

#[test]
fn requeue_by_id_and_all_puts_events_back_to_send() {
    let s = setup();
    let out = agent(&s.config, &["requeue", "ev-a"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ev-a\trequeued\n");
    let listed = text(&agent(&s.config, &["list-set-aside"]).stdout);
    assert!(
        listed.starts_with("ev-c\t") && !listed.contains("ev-a"),
        "{listed}"
    );

    let out = agent(&s.config, &["requeue", "ev-b", "nope"]);
    assert_eq!(out.status.code(), Some(1), "not set aside: exit 1");
    assert!(text(&out.stderr).contains("nope: not a set-aside event"));

    let out = agent(&s.config, &["requeue", "--all"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ob = Outbox::open(&s.outbox, OutboxConfig::default()).unwrap();
    let d = ob.depths().unwrap();
    assert_eq!((d.to_send, d.set_aside), (3, 0));
    let c = ob.get("ev-c").unwrap().unwrap();
    assert_eq!((c.state, c.attempts), (State::ToSend, 0));
}

#[test]
fn requeue_needs_an_id_or_all() {
    let s = setup();
    let out = agent(&s.config, &["requeue"]);
    assert_eq!(out.status.code(), Some(2));
    let out = agent(&s.config, &["requeue", "--all", "ev-a"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn both_commands_refuse_an_outbox_that_a_running_daemon_holds_and_change_nothing() {
    let s = setup();
    let held = Outbox::open(&s.outbox, OutboxConfig::default()).unwrap();
    for args in [&["list-set-aside"][..], &["requeue", "--all"][..]] {
        let out = agent(&s.config, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        // The holder (here: this test process) is named by pid.
        assert!(
            err.contains(&format!("in use by process {} (", std::process::id()))
                && err.contains("stop edge-agent"),
            "{err}"
        );
    }
    assert_eq!(held.depths().unwrap().set_aside, 2);
}

#[test]
fn a_missing_outbox_is_reported_not_created() {
    let s = setup();
    std::fs::remove_file(&s.outbox).unwrap();
    let out = agent(&s.config, &["list-set-aside"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no outbox at"),
        "{}",
        text(&out.stderr)
    );
    assert!(!s.outbox.exists());
}
