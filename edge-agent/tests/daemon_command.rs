//! `edge-agent run` with a command source: a program writing MJPEG to its standard
//! output (a shell replaying a sample photo, saved as a webcam sends it) gives events
//! at the receiver (playing the relay, over a real Mosquitto), and stopping the agent
//! stops the program: no process is left behind.

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

#[test]
fn a_commands_frames_become_events_and_stopping_the_agent_stops_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    // hubble.jpg is a photo the model is unsure about: every frame taken is selected.
    let photo = std::fs::read(samples().join("hubble.jpg")).unwrap();
    let frame = dir.path().join("frame.mjpg");
    std::fs::write(
        &frame,
        edge_agent::source::mjpeg::strip_huffman_tables(&photo).unwrap(),
    )
    .unwrap();
    let pid_file = dir.path().join("command.pid");
    let script = format!(
        "echo $$ > '{}'; echo 'camera warming up' >&2; while :; do cat '{}'; sleep 0.2; done",
        pid_file.display(),
        frame.display()
    );
    let mut config = std::fs::read_to_string(&agent.config).unwrap();
    config.push_str(&format!(
        "\n[[source]]\nkind = \"command\"\nname = \"cam\"\nfps = 2.0\ncommand = [\"sh\", \"-c\", {}]\n",
        toml::Value::String(script)
    ));
    std::fs::write(&agent.config, config).unwrap();
    agent.start();

    wait_until(LONG, "two events from the command", || {
        support::names(&receiver)
            .iter()
            .filter(|n| n.starts_with("cam-") && n.ends_with(".jpg"))
            .count()
            >= 2
    });
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    assert!(
        agent.log().contains("stderr: camera warming up"),
        "{}",
        agent.log()
    );
    assert!(agent.stop(), "clean stop");
    wait_until(LONG, "the command gone with the agent", || !alive(pid));
}
