//! The daemon as a process among others: how it stops, and what it says when it is not
//! alone. The real `edge-agent run` against a real Mosquitto configured like IoT Core.
//! - SIGHUP (its terminal closed, an ssh session dropped) stops it cleanly, as SIGTERM
//!   does, instead of killing it mid-frame.
//! - A second agent on the same state directory refuses to start and names the first.
//! - Two devices configured with one device id take the MQTT session from each other;
//!   each says so, in words, not as a reason code.

mod support;

use std::time::Duration;

use support::{Agent, DEVICE};
use test_support::{wait_until, Mosquitto};

const LONG: Duration = Duration::from_secs(60);

fn connected(agent: &Agent) -> bool {
    agent.log().contains("mqtt: connected")
}

#[test]
fn sighup_stops_the_agent_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let mut agent = Agent::new(dir.path(), &broker, "");
    agent.start();
    wait_until(LONG, "the agent connected", || connected(&agent));
    // SAFETY: kill(2) on our own running child.
    unsafe {
        libc::kill(agent.pid() as i32, libc::SIGHUP);
    }
    let status = agent.wait_exit(LONG).expect("the agent exits on SIGHUP");
    assert!(
        status.success(),
        "clean exit, not killed: {status}\n{}",
        agent.log()
    );
    assert!(
        agent
            .log()
            .contains("SIGHUP (terminal closed) received: stopping"),
        "{}",
        agent.log()
    );
}

#[test]
fn a_second_agent_on_the_same_state_dir_refuses_to_start_and_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let mut first = Agent::new(dir.path(), &broker, "");
    first.start();
    wait_until(LONG, "the first agent connected", || connected(&first));

    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("run")
        .arg("--config")
        .arg(&first.config)
        .current_dir(other.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let state = dir.path().join("state");
    assert!(
        err.contains(&format!(
            "device.state_dir {} is in use by process {} (",
            state.display(),
            first.pid()
        )),
        "{err}"
    );
    assert!(
        err.contains("edge-agent run --config"),
        "the holder's command: {err}"
    );
    // The first one never noticed.
    assert!(first.stop());
}

#[test]
fn two_devices_with_one_id_are_told_that_they_share_it() {
    let broker = Mosquitto::builder().start();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Agent::new(a_dir.path(), &broker, "");
    let mut b = Agent::new(b_dir.path(), &broker, "");
    a.start();
    wait_until(LONG, "device A connected", || connected(&a));
    b.start();
    let told = format!(
        "another client connected with this device id (client id {DEVICE}); two devices share an id?"
    );
    wait_until(LONG, "device A told why it lost its session", || {
        a.log().contains(&told)
    });
    assert!(a.stop());
    assert!(b.stop());
}
