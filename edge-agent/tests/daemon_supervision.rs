//! Supervision, end to end: the real `edge-agent run` started the way systemd starts it
//! for `WatchdogSec=`, with `$WATCHDOG_USEC` set and `$NOTIFY_SOCKET` naming a datagram
//! socket this test owns, against a real Mosquitto.
//!
//! - Healthy (idle, then classifying frames), it pings `WATCHDOG=1` every half period.
//! - With its frame thread or its MQTT thread wedged, the pings stop and the status names
//!   the worker; once the thread runs again, so do the pings. A thread is wedged with
//!   ptrace (`PTRACE_INTERRUPT` stops that one thread and no other), which is what a
//!   thread stuck in the kernel looks like from user space: an SD card or a USB camera
//!   that stopped answering, a call that never returns. No test hook in the binary.
//! - When a worker ends for real, the process exits non-zero: the frame thread when the
//!   folders it is fed from are deleted (every source ends), the MQTT task when its TLS
//!   key cannot be read. A worker that panics is covered by `daemon::supervise`'s unit
//!   tests (the same guard, on a real thread).

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{drop_samples, Agent, Receiver};
use test_support::{wait_until, Mosquitto};

/// What the test makes systemd's watchdog period: pings every 1 s, stall after 2 s.
const WATCHDOG: Duration = Duration::from_secs(2);
/// Model load and self-test come before READY=1.
const START: Duration = Duration::from_secs(60);

/// The socket systemd would listen on, and what arrived on it.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket { socket, path }
    }

    /// The environment systemd gives a `Type=notify` service with `WatchdogSec=`.
    fn env(&self, watchdog: Duration) -> [(&'static str, String); 2] {
        [
            ("NOTIFY_SOCKET", self.path.to_str().unwrap().to_owned()),
            ("WATCHDOG_USEC", watchdog.as_micros().to_string()),
        ]
    }

    /// The next notification, if one comes within `timeout`.
    fn next(&self, timeout: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Every notification until `deadline` passes, in order.
    fn during(&self, window: Duration) -> Vec<String> {
        let end = Instant::now() + window;
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            seen.extend(self.next(left));
        }
        seen
    }

    /// Reads notifications until one satisfies `wanted`; panics after `deadline`.
    #[track_caller]
    fn wait_for(&self, deadline: Duration, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + deadline;
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(n) if wanted(&n) => return n,
                Some(n) => seen.push(n),
                None => {}
            }
        }
        panic!("timed out after {deadline:?} waiting for {what}; got {seen:?}");
    }

    /// Waits for `count` watchdog pings.
    #[track_caller]
    fn wait_for_pings(&self, count: usize, deadline: Duration) {
        let end = Instant::now() + deadline;
        for i in 0..count {
            let left = end.saturating_duration_since(Instant::now());
            self.wait_for(left, &format!("watchdog ping {}", i + 1), |n| {
                n == "WATCHDOG=1"
            });
        }
    }
}

/// An agent started as systemd would, with a broker and a relay-like receiver.
struct Setup {
    _dir: tempfile::TempDir,
    notify: NotifySocket,
    receiver: Receiver,
    agent: Agent,
    _broker: Mosquitto,
}

/// Starts the agent with watchdog period `watchdog`; `edit` may change its config
/// first. Returns once it said READY=1.
fn start(watchdog: Duration, edit: impl FnOnce(&Agent)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().dir(dir.path().join("broker")).start();
    let receiver = Receiver::start(&broker, "relay-test");
    let mut agent = Agent::new(&dir.path().join("agent"), &broker, "");
    edit(&agent);
    let notify = NotifySocket::bind(dir.path());
    let env = notify.env(watchdog);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    agent.start_with_env(&env);
    notify.wait_for(START, "READY=1", |n| n == "READY=1");
    Setup {
        _dir: dir,
        notify,
        receiver,
        agent,
        _broker: broker,
    }
}

/// One thread of the agent held in a ptrace-stop: it runs no instruction until this is
/// dropped, while the agent's other threads go on. Must be dropped on the thread that
/// made it (ptrace's rule).
struct StoppedThread {
    tid: libc::pid_t,
}

impl StoppedThread {
    /// Stops the agent's thread named `name` (`/proc/<pid>/task/<tid>/comm`).
    fn stop(pid: u32, name: &str) -> StoppedThread {
        let tid = thread_id(pid, name);
        // SAFETY: ptrace and waitpid on a thread of our own child process; no memory
        // is passed to them.
        unsafe {
            let seized = libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0);
            assert_eq!(
                seized,
                0,
                "PTRACE_SEIZE of thread {name}: {} (ptrace is needed to wedge a thread)",
                std::io::Error::last_os_error()
            );
            assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0), 0);
            let mut status = 0;
            assert_eq!(libc::waitpid(tid, &mut status, libc::__WALL), tid);
            assert!(
                libc::WIFSTOPPED(status),
                "thread {name}: status {status:#x}"
            );
        }
        StoppedThread { tid }
    }
}

impl Drop for StoppedThread {
    fn drop(&mut self) {
        // SAFETY: as in `stop`; detaching lets the thread run on.
        unsafe {
            libc::ptrace(libc::PTRACE_DETACH, self.tid, 0, 0);
        }
    }
}

fn thread_id(pid: u32, name: &str) -> libc::pid_t {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    for entry in std::fs::read_dir(&tasks).unwrap() {
        let entry = entry.unwrap();
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return entry.file_name().to_str().unwrap().parse().unwrap();
        }
    }
    panic!("the agent (pid {pid}) has no thread named {name}");
}

#[test]
fn a_healthy_agent_pings_the_watchdog_while_idle_and_while_classifying() {
    // A longer period than the other tests: frames are classified by a debug build on a
    // machine that may be busy, and that must not look like a stall here.
    let s = start(Duration::from_secs(4), |_| {});
    // Idle by design: no frames, nothing to send.
    s.notify.wait_for_pings(3, Duration::from_secs(10));
    let selected = drop_samples(&s.agent, "healthy");
    let pings_meanwhile = std::cell::Cell::new(0);
    wait_until(
        Duration::from_secs(60),
        "the selected frames to arrive",
        || {
            for n in s.notify.during(Duration::from_millis(100)) {
                assert!(!n.contains("stalled"), "a healthy agent reported {n}");
                pings_meanwhile.set(pings_meanwhile.get() + usize::from(n == "WATCHDOG=1"));
            }
            s.receiver.event_count() == selected.len()
        },
    );
    assert!(s.agent.inbox_is_empty());
    s.notify.wait_for_pings(2, Duration::from_secs(5));
    let mut agent = s.agent;
    assert!(agent.stop(), "a clean stop exits 0");
}

/// Wedges `thread`, sees the pings stop with a status naming `worker`, lets the thread
/// go and sees the pings come back.
fn wedging_stops_the_pings(thread: &str, worker: &str) {
    let mut s = start(WATCHDOG, |_| {});
    s.notify.wait_for_pings(2, Duration::from_secs(10));

    let stopped = StoppedThread::stop(s.agent.pid(), thread);
    let stalled = format!("STATUS={worker} stalled");
    // The stall is seen within one period plus one check (2 s + 1 s); some slack.
    s.notify.wait_for(Duration::from_secs(10), &stalled, |n| {
        n.starts_with(&stalled)
    });
    // Three checks later: still no ping, and the stall is reported at each check.
    let after = s.notify.during(Duration::from_secs(3));
    assert!(
        !after.iter().any(|n| n == "WATCHDOG=1"),
        "pinged while the {worker} was wedged: {after:?}"
    );
    assert!(after.iter().any(|n| n.starts_with(&stalled)), "{after:?}");

    drop(stopped);
    s.notify.wait_for_pings(2, Duration::from_secs(10));
    assert!(s.agent.log().contains(&format!(
        "the {worker} made no progress for longer than the watchdog period"
    )));
    assert!(s.agent.stop(), "a clean stop exits 0");
}

#[test]
fn a_wedged_frame_thread_stops_the_watchdog_pings() {
    wedging_stops_the_pings("frames", "frame thread");
}

#[test]
fn a_wedged_mqtt_task_stops_the_watchdog_pings() {
    wedging_stops_the_pings("mqtt", "MQTT task");
}

/// Waits for the agent to exit by itself; returns its log.
fn exits_non_zero(s: &mut Setup) -> String {
    let status = s
        .agent
        .wait_exit(Duration::from_secs(20))
        .expect("the agent exits by itself");
    assert_eq!(status.code(), Some(2), "{status:?}");
    s.agent.log()
}

#[test]
fn the_agent_exits_non_zero_when_its_frame_thread_ends() {
    let mut s = start(WATCHDOG, |_| {});
    s.notify.wait_for_pings(1, Duration::from_secs(10));
    // Both folders the frame thread is fed from: the inbox and the review requests.
    std::fs::remove_dir_all(&s.agent.inbox).unwrap();
    std::fs::remove_dir_all(s.agent.dir.join("state/review-requests")).unwrap();
    let log = exits_non_zero(&mut s);
    assert!(
        log.contains("the frame thread ended unexpectedly: every frame source has ended"),
        "{log}"
    );
}

#[test]
fn the_agent_exits_non_zero_when_its_mqtt_task_ends() {
    let mut s = start(WATCHDOG, |agent| {
        // A key path that cannot be read as a file: the MQTT task ends at its start.
        let config = std::fs::read_to_string(&agent.config).unwrap();
        let key = config
            .lines()
            .find(|l| l.starts_with("key_file = "))
            .unwrap();
        let config = config.replace(key, &format!("key_file = \"{}\"", agent.dir.display()));
        std::fs::write(&agent.config, config).unwrap();
    });
    let log = exits_non_zero(&mut s);
    assert!(
        log.contains("the MQTT task ended unexpectedly: cannot read mqtt.tls.key_file"),
        "{log}"
    );
}
