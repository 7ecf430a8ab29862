//! `local-aws run` as a process an operator starts from a terminal, kills, and starts
//! again: it stops cleanly when the terminal closes (SIGHUP), its agent never outlives
//! it (not even a SIGKILL of it), one local mode at a time owns a state directory, and
//! the progress line says what became of each frame and why.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use test_support::{wait_for, wait_until};

const LONG: Duration = Duration::from_secs(90);

/// A running `local-aws run`, its stdout lines collected as they come.
struct Local {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
}

impl Local {
    /// Starts it with its stderr appended to `<state>.log`.
    fn start(frames: &Path, state: &Path) -> Local {
        Local::start_logging_to(frames, state, &state.with_extension("log"))
    }

    fn start_logging_to(frames: &Path, state: &Path, log: &Path) -> Local {
        let log = log.to_path_buf();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_local-aws"))
            .arg("run")
            .arg("--frames")
            .arg(frames)
            .arg("--state-dir")
            .arg(state)
            .args(["--review-listen", "127.0.0.1:0"])
            .args(["--jobs-listen", "127.0.0.1:0"])
            .arg("--agent-bin")
            .arg(test_support::workspace_bin("edge-agent"))
            .env("RUST_LOG", "info,rumqttd=off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Local { child, lines, log }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let child = &mut self.child;
        wait_for(LONG, "local-aws run to exit", || child.try_wait().unwrap())
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn frames(dir: &Path, samples: &[&str]) -> PathBuf {
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/samples");
    for s in samples {
        std::fs::copy(from.join(s), frames.join(s)).unwrap();
    }
    frames
}

/// The pid written into a state directory's lock file by its holder.
fn holder_pid(dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join(".lock")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("pid ")?.parse().ok())
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    let exists = unsafe { libc::kill(pid, 0) == 0 };
    // A zombie counts as gone: it has exited, and nobody here will reap it.
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"));
    exists && !zombie
}

/// The running agent of local mode over `state`: its pid, from its state lock.
fn agent_pid(state: &Path) -> i32 {
    let agent_dir = state.join("agent");
    wait_for(LONG, "the agent holding its state directory", || {
        holder_pid(&agent_dir).filter(|&p| alive(p))
    })
}

#[test]
fn sighup_stops_local_mode_and_its_agent_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let frames = frames(dir.path(), &["chelsea.jpg"]);
    let state = dir.path().join("state");
    let mut local = Local::start(&frames, &state);
    let agent = agent_pid(&state);
    wait_until(LONG, "the reviewer page line", || {
        local
            .lines()
            .iter()
            .any(|l| l.starts_with("reviewer page: "))
    });
    local.signal(libc::SIGHUP);
    let status = local.wait_exit();
    assert!(status.success(), "{status}: {}", local.stderr());
    wait_until(Duration::from_secs(10), "the last stdout line", || {
        local.lines().last().is_some_and(|l| l == "stopped")
    });
    assert!(!alive(agent), "the agent {agent} outlived local mode");
}

#[test]
fn a_killed_local_mode_takes_its_agent_along_and_a_restart_runs_one_agent() {
    let dir = tempfile::tempdir().unwrap();
    let frames = frames(dir.path(), &["chelsea.jpg"]);
    let state = dir.path().join("state");
    let mut agents = Vec::new();
    for _ in 0..3 {
        let mut local = Local::start(&frames, &state);
        let agent = agent_pid(&state);
        assert!(
            agents.iter().all(|&a| !alive(a)),
            "an earlier agent still runs beside {agent}"
        );
        agents.push(agent);
        local.signal(libc::SIGKILL);
        local.wait_exit();
        wait_until(LONG, "the agent gone with its parent", || !alive(agent));
    }
}

#[test]
fn a_second_local_mode_on_the_same_state_refuses_to_start_and_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let frames = frames(dir.path(), &["chelsea.jpg"]);
    let state = dir.path().join("state");
    let first = Local::start(&frames, &state);
    agent_pid(&state);
    let mut second = Local::start_logging_to(&frames, &state, &dir.path().join("second.log"));
    let status = second.wait_exit();
    assert!(!status.success());
    let err = second.stderr();
    let expected = format!(
        "local mode's state directory {} is in use by process {} (",
        state.canonicalize().unwrap().display(),
        first.child.id()
    );
    assert!(err.contains(&expected), "{expected:?} in: {err}");
}

#[test]
fn the_progress_line_says_what_was_refused_passed_and_selected_and_why() {
    let dir = tempfile::tempdir().unwrap();
    // chelsea: selected by local mode's policy; a text file named like a photo: refused.
    let frames = frames(dir.path(), &["chelsea.jpg"]);
    std::fs::write(frames.join("broken.jpg"), "not a photo\n").unwrap();
    let state = dir.path().join("state");
    let local = Local::start(&frames, &state);
    let line = wait_for(LONG, "a progress line with all three frames", || {
        local.lines().into_iter().rev().find(|l| {
            l.starts_with("progress: 2 frames copied")
                && l.contains("1 refused")
                && l.contains("1 selected for review")
        })
    });
    // The broken frame is not counted as classified, and the line says why it was refused.
    assert!(line.contains(", 1 classified,"), "{line}");
    assert!(line.contains("1 refused (not_an_image 1)"), "{line}");
    assert!(line.contains("0 passed by the policy"), "{line}");
    assert!(line.contains("1 selected for review ("), "{line}");
}
