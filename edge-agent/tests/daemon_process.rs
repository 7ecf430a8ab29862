//! The daemon as a process among others: how it stops, and what it says when it is not
//! alone. The real `edge-agent run` against a real Mosquitto configured like IoT Core.
//! - SIGHUP (its terminal closed, an ssh session dropped) stops it cleanly, as SIGTERM
//!   does, instead of killing it mid-frame.
//! - A second agent on the same state directory refuses to start and names the first.
//! - When the broker hands its session to another client with the same id (two
//!   devices configured with one device id), it says so in words, not a reason code.

mod support;

use std::time::Duration;

use support::Agent;
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

/// Plays the broker's side of "another device connected with your id", as AWS IoT
/// Core does for MQTT 5 clients: every connection gets a CONNACK, then a DISCONNECT
/// with reason code 0x8E (Session taken over). (Mosquitto queues that DISCONNECT and
/// closes the socket at once, so its clients rarely see the reason.)
fn broker_that_hands_the_session_to_another_client() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                // The CONNECT (its contents do not matter here).
                if conn.read(&mut buf).unwrap_or(0) == 0 {
                    return;
                }
                // CONNACK: no session present, success, no properties; then
                // DISCONNECT: reason 0x8E, no properties (MQTT 5, 3.2 and 3.14).
                let _ = conn.write_all(&[0x20, 0x03, 0x00, 0x00, 0x00, 0xE0, 0x02, 0x8E, 0x00]);
                while conn.read(&mut buf).unwrap_or(0) > 0 {}
            });
        }
    });
    port
}

#[test]
fn a_session_taken_over_is_logged_as_two_devices_sharing_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = broker_that_hands_the_session_to_another_client();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[device]
id = "pi-kitchen"
state_dir = "{state}"

[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min = "100ms"
reconnect_max = "1s"

[[source]]
kind = "folder"
path = "{inbox}"
"#,
            state = dir.path().join("state").display(),
            inbox = inbox.display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let mut agent = test_support::spawn_with_log(
        std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info"),
        &log,
    )
    .unwrap();
    let told = "session taken over (MQTT reason 0x8E): another client connected with this \
                device id (client id pi-kitchen); two devices share an id?";
    wait_until(LONG, "the agent told why it lost its session", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains(told))
    });
    assert!(agent.terminate(Duration::from_secs(20)).success());
}
