//! `edge-agent run` with a command source: a program writing MJPEG to its standard
//! output (a shell replaying a sample photo, saved as a webcam sends it) gives events
//! at the receiver (playing the relay, over a real Mosquitto), and stopping the agent,
//! or killing it with SIGKILL, stops the program: no process is left behind.

mod support;

use std::time::Duration;

use support::{samples, Agent, Receiver};
use test_support::{wait_until, Mosquitto};

const LONG: Duration = Duration::from_secs(60);

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// An agent whose config has, besides its inbox, a command source `cam` replaying
/// hubble.jpg (a photo the model is unsure about: every frame taken is selected) as a
/// webcam frame five times a second, writing its pid to `command.pid`.
fn agent_with_a_command(dir: &std::path::Path, broker: &Mosquitto) -> Agent {
    let agent = Agent::new(dir, broker, "");
    let photo = std::fs::read(samples().join("hubble.jpg")).unwrap();
    let frame = dir.join("frame.mjpg");
    std::fs::write(
        &frame,
        edge_agent::source::mjpeg::strip_huffman_tables(&photo).unwrap(),
    )
    .unwrap();
    let script = format!(
        "echo $$ > '{}'; echo 'camera warming up' >&2; while :; do cat '{}'; sleep 0.2; done",
        dir.join("command.pid").display(),
        frame.display()
    );
    let mut config = std::fs::read_to_string(&agent.config).unwrap();
    config.push_str(&format!(
        "\n[[source]]\nkind = \"command\"\nname = \"cam\"\nfps = 2.0\ncommand = [\"sh\", \"-c\", {}]\n",
        toml::Value::String(script)
    ));
    std::fs::write(&agent.config, config).unwrap();
    agent
}

/// Waits for two events from the command; returns the command's pid.
fn command_running(dir: &std::path::Path, receiver: &Receiver) -> i32 {
    wait_until(LONG, "two events from the command", || {
        support::names(receiver)
            .iter()
            .filter(|n| n.starts_with("cam-") && n.ends_with(".jpg"))
            .count()
            >= 2
    });
    let pid: i32 = std::fs::read_to_string(dir.join("command.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    pid
}

#[test]
fn a_commands_frames_become_events_and_stopping_the_agent_stops_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = agent_with_a_command(dir.path(), &broker);
    agent.start();
    let pid = command_running(dir.path(), &receiver);
    assert!(
        agent.log().contains("stderr: camera warming up"),
        "{}",
        agent.log()
    );
    assert!(agent.stop(), "clean stop");
    wait_until(LONG, "the command gone with the agent", || !alive(pid));
}

#[test]
fn an_agent_killed_outright_leaves_no_command_behind() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = agent_with_a_command(dir.path(), &broker);
    agent.start();
    let pid = command_running(dir.path(), &receiver);
    agent.kill(); // SIGKILL: no clean-up code runs; the kernel's death signal does it
    wait_until(LONG, "the command gone with the agent", || !alive(pid));
}
