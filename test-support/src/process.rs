//! Child processes that cannot outlive their test.
//!
//! [`ChildGuard`] owns a [`std::process::Child`] and SIGKILLs it on drop, so a test
//! that panics halfway leaves no broker or server behind. [`spawn_with_log`] starts
//! a command with stdout and stderr appended to one log file, which the servers in
//! this crate print the tail of when something goes wrong.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wait::poll_for;

/// A spawned child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Takes ownership of an already spawned child.
    pub fn new(child: Child) -> Self {
        ChildGuard {
            child,
            status: None,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has exited (reaping it), `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) if the child is still running.
    ///
    /// The child is only signalled while it has not been reaped, so its pid cannot
    /// have been reused by another process.
    pub fn signal(&mut self, signal: i32) {
        if self.is_running() {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid belongs to
            // our own unreaped child.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, signal);
            }
        }
    }

    /// Waits up to `deadline` for the child to exit on its own.
    pub fn wait_timeout(&mut self, deadline: Duration) -> Option<ExitStatus> {
        poll_for(deadline, || self.exit_status())
    }

    /// SIGTERM, then waits up to `grace` for a clean exit; SIGKILL after that.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait_timeout(grace) {
            Some(status) => status,
            None => self.kill(),
        }
    }

    /// SIGKILL and reap: the process gets no chance to save anything.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exit_status() {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for a killed child");
        self.status = Some(status);
        status
    }

    /// The underlying child, e.g. to take its stdin.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `cmd` with stdin from /dev/null and stdout and stderr appended to
/// `log_path` (created if missing), and guards the child.
///
/// A header line naming the command is written first, so a log that spans several
/// starts of the same server shows where each one begins.
pub fn spawn_with_log(cmd: &mut Command, log_path: &Path) -> std::io::Result<ChildGuard> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    writeln!(
        log,
        "===== test-support: spawning {cmd:?} at unix time {}.{:03} =====",
        since_epoch.as_secs(),
        since_epoch.subsec_millis()
    )?;
    let stderr = log.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr))
        .spawn()?;
    Ok(ChildGuard::new(child))
}

/// The last `lines` lines of the file at `path` (reads at most its last 64 KiB);
/// a note instead when it cannot be read.
/// A binary of another workspace package, from the target directory this test runs
/// from (`target/<profile>/deps/<test>` → `target/<profile>/<name>`). Cargo sets
/// `CARGO_BIN_EXE_<name>` only for the test's own package; `cargo test --workspace`
/// builds every package's binaries before running tests.
///
/// # Panics
/// If the binary is not there, saying how to build it.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a test runs from target/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace` first (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Resident set size of process `pid`, in KiB (`VmRSS` in `/proc/<pid>/status`).
/// Panics when the process is gone or the field is missing.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Whether the program `tool` is on `PATH`, for tests of what real tools write or
/// stream (ffmpeg, rsync, curl). Missing, the test says so and is skipped, except with
/// `EDGE_A2I_REQUIRE_TOOLS=1` (set by scripts/test.sh, whose set-up installs them),
/// where a missing tool fails the test instead of skipping it unseen.
pub fn tool_available(tool: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let p = dir.join(tool);
            p.is_file()
                && std::os::unix::fs::PermissionsExt::mode(&p.metadata().unwrap().permissions())
                    & 0o111
                    != 0
        })
    });
    if !found {
        assert!(
            std::env::var("EDGE_A2I_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{tool} is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("{tool} is not installed: skipped");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_with_log_captures_stdout_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("child.log");
        let mut child = spawn_with_log(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            &log,
        )
        .unwrap();
        assert!(child
            .wait_timeout(Duration::from_secs(10))
            .unwrap()
            .success());
        let tail = log_tail(&log, 2);
        assert!(tail.contains("out") && tail.contains("err"), "{tail}");
    }

    #[test]
    fn dropping_the_guard_kills_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let child = spawn_with_log(
            Command::new("sleep").arg("600"),
            &dir.path().join("sleep.log"),
        )
        .unwrap();
        let pid = child.id() as libc::pid_t;
        drop(child);
        // SAFETY: signal 0 only checks whether the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "child {pid} survived its guard");
    }

    #[test]
    fn terminate_lets_the_child_exit_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn_with_log(
            Command::new("sleep").arg("600"),
            &dir.path().join("sleep.log"),
        )
        .unwrap();
        assert!(child.is_running());
        let status = child.terminate(Duration::from_secs(10));
        assert!(!status.success());
        assert!(!child.is_running());
    }
}
