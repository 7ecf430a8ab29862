//! What the server helpers share: finding a binary, the per-server temp dir, and
//! the start-and-wait-for-ready loop with its log-tail diagnostics.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::{log_tail, spawn_with_log, ChildGuard};
use crate::wait::poll_for;

/// How many log lines an error or a panicking test shows.
pub(crate) const TAIL_LINES: usize = 40;

/// Where a server keeps its files: a directory given by the test, or a temp dir
/// removed when the server is dropped.
#[derive(Debug)]
pub(crate) struct ServerDir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl ServerDir {
    pub(crate) fn new(given: Option<PathBuf>, prefix: &str) -> Result<ServerDir> {
        match given {
            Some(path) => {
                fs::create_dir_all(&path).map_err(|e| Error::io(format!("create {path:?}"), e))?;
                Ok(ServerDir { path, _temp: None })
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix(prefix)
                    .tempdir()
                    .map_err(|e| Error::io("create a temp dir", e))?;
                Ok(ServerDir {
                    path: temp.path().to_path_buf(),
                    _temp: Some(temp),
                })
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// `$env_var` if set, else `name` found on `$PATH`, else the first of `fallbacks` that exists.
pub(crate) fn find_program(env_var: &str, name: &str, fallbacks: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    on_path
        .or_else(|| {
            fallbacks
                .iter()
                .map(PathBuf::from)
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// What became of one attempt to start a server.
pub(crate) enum Started {
    Ready(ChildGuard),
    /// The port was taken by someone else: worth retrying on another port.
    PortInUse(Error),
}

/// Spawns `cmd` logging to `log`, then polls `ready` (which gets the log text written
/// since this spawn) until it says yes, the process exits, or `deadline` passes.
pub(crate) fn start_and_wait(
    what: &str,
    cmd: &mut Command,
    log: &Path,
    deadline: Duration,
    mut ready: impl FnMut(&str) -> bool,
) -> Result<Started> {
    let log_start = fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let mut child = spawn_with_log(cmd, log)
        .map_err(|e| Error::io(format!("spawn {what} ({:?})", cmd.get_program()), e))?;
    let new_log = || {
        fs::read(log)
            .map(|bytes| {
                String::from_utf8_lossy(&bytes[(log_start as usize).min(bytes.len())..])
                    .into_owned()
            })
            .unwrap_or_default()
    };
    let outcome = poll_for(deadline, || {
        if let Some(status) = child.exit_status() {
            return Some(Err(status));
        }
        ready(&new_log()).then_some(Ok(()))
    });
    match outcome {
        Some(Ok(())) => Ok(Started::Ready(child)),
        Some(Err(status)) => {
            let error = Error::Exited {
                what: what.to_string(),
                status,
                log: log.to_path_buf(),
                tail: log_tail(log, TAIL_LINES),
            };
            if new_log().contains("Address already in use") {
                Ok(Started::PortInUse(error))
            } else {
                Err(error)
            }
        }
        None => {
            child.kill();
            Err(Error::NotReady {
                what: what.to_string(),
                deadline,
                log: log.to_path_buf(),
                tail: log_tail(log, TAIL_LINES),
            })
        }
    }
}

/// Prints the tail of `log` to stderr when the current thread is panicking, so a
/// failed test shows what the server said (the test harness captures it).
pub(crate) fn print_tail_if_panicking(what: &str, log: &Path) {
    if std::thread::panicking() {
        eprintln!(
            "----- {what}: last {TAIL_LINES} lines of {} -----\n{}\n-----",
            log.display(),
            log_tail(log, TAIL_LINES)
        );
    }
}
