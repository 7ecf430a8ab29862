//! One owner per state directory: [`StateLock`] takes an exclusive `flock(2)` on
//! `<dir>/.lock` (std's [`File::try_lock`]) and keeps it until dropped or until the
//! process ends, however it ends. The holder writes its pid and command line into
//! the file, so whoever is refused can be told who holds the directory: two agents
//! on one outbox, or two local modes on one state directory, would each resend and
//! delete the other's work.
//!
//! The lock is advisory: it keeps out the workspace's own binaries, which all take it
//! before they touch the directory; it does not stop `rm`.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file's name inside a state directory.
pub const LOCK_FILE: &str = ".lock";

/// Who holds a state directory, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holder's process id, if it wrote one.
    pub pid: Option<u32>,
    /// The holder's command line, if it wrote one.
    pub command: Option<String>,
}

impl Holder {
    /// Parses a lock file's text: `pid <n>` and `command <line>`, one per line.
    fn parse(text: &str) -> Holder {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        Holder {
            pid: field("pid").and_then(|p| p.parse().ok()),
            command: field("command").map(str::to_owned),
        }
    }

    fn of_this_process() -> Holder {
        let command: Vec<String> = std::env::args().collect();
        Holder {
            pid: Some(std::process::id()),
            command: Some(command.join(" ")),
        }
    }

    fn to_text(&self) -> String {
        let mut text = String::new();
        if let Some(pid) = self.pid {
            text.push_str(&format!("pid {pid}\n"));
        }
        if let Some(command) = &self.command {
            // One line: a newline in an argument would end the field early.
            text.push_str(&format!("command {}\n", command.replace('\n', " ")));
        }
        text
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.pid, &self.command) {
            (Some(pid), Some(command)) => write!(f, "process {pid} ({command})"),
            (Some(pid), None) => write!(f, "process {pid}"),
            // The holder is between taking the lock and writing its name.
            _ => f.write_str("another process (it has not written its pid yet)"),
        }
    }
}

/// Why a state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the directory.
    #[error(
        "{what} {dir} is in use by {holder}: stop it first, or give this one another one \
         (lock file {lock})",
        dir = dir.display(),
        lock = lock.display()
    )]
    Held {
        what: String,
        dir: PathBuf,
        lock: PathBuf,
        holder: Holder,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot lock {what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The exclusive lock on one state directory, held until dropped.
#[derive(Debug)]
pub struct StateLock {
    // Held for its lock: the kernel releases it when the file is closed.
    file: File,
    dir: PathBuf,
}

/// How long a busy lock is tried again before it counts as another owner's. A lock
/// can be held for a moment by a process that is not its owner: a child forked by
/// another thread of the owner's process shares the descriptor until it execs (which
/// closes it, O_CLOEXEC).
const LOCK_PATIENCE: Duration = Duration::from_millis(500);

impl StateLock {
    /// Locks `dir` (which must exist) for this process, or says who holds it.
    /// `what` names the directory in errors, e.g. `"state_dir"`.
    pub fn acquire(dir: &Path, what: &str) -> Result<StateLock, LockError> {
        StateLock::acquire_file(&dir.join(LOCK_FILE), dir, what)
    }

    /// Locks `guarded` through the lock file `lock` (for a lock beside a single
    /// file, e.g. `<outbox>.lock`). `what` names `guarded` in errors.
    pub fn acquire_file(lock: &Path, guarded: &Path, what: &str) -> Result<StateLock, LockError> {
        let io = |source| LockError::Io {
            what: what.to_owned(),
            path: lock.to_path_buf(),
            source,
        };
        // Not truncated on open: a refused instance must not wipe the holder's name.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock)
            .map_err(io)?;
        let deadline = Instant::now() + LOCK_PATIENCE;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    return Err(LockError::Held {
                        what: what.to_owned(),
                        dir: guarded.to_path_buf(),
                        lock: lock.to_path_buf(),
                        holder: Holder::parse(&text),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(Holder::of_this_process().to_text().as_bytes())
            .map_err(io)?;
        file.flush().map_err(io)?;
        Ok(StateLock {
            file,
            dir: guarded.to_path_buf(),
        })
    }

    /// Who holds `dir` now, if anyone. Looks with a shared lock taken and dropped at
    /// once, which could make an [`acquire`](Self::acquire) at that very moment wait
    /// (it tries again for a while).
    pub fn holder(dir: &Path) -> Option<Holder> {
        let mut file = File::open(dir.join(LOCK_FILE)).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Some(Holder::parse(&text))
            }
        }
    }

    /// A second handle on the same lock (a `dup` of the descriptor: the lock is held
    /// until both are dropped).
    pub fn try_clone(&self) -> std::io::Result<StateLock> {
        Ok(StateLock {
            file: self.file.try_clone()?,
            dir: self.dir.clone(),
        })
    }

    /// The guarded directory (or file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path(), "state_dir").unwrap();
        let err = StateLock::acquire(dir.path(), "state_dir").unwrap_err();
        let LockError::Held { holder, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(holder.pid, Some(std::process::id()));
        let text = err.to_string();
        assert!(
            text.contains(&format!("in use by process {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("stop it first"), "{text}");
        assert_eq!(
            StateLock::holder(dir.path()).and_then(|h| h.pid),
            Some(std::process::id())
        );
        drop(first);
        assert_eq!(StateLock::holder(dir.path()), None);
        StateLock::acquire(dir.path(), "state_dir").unwrap();
    }

    #[test]
    fn a_lock_file_left_by_a_dead_holder_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "pid 1\ncommand gone\n").unwrap();
        assert_eq!(StateLock::holder(dir.path()), None);
        StateLock::acquire(dir.path(), "state_dir").unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(
            text.starts_with(&format!("pid {}\n", std::process::id())),
            "{text}"
        );
    }

    #[test]
    fn a_holder_that_has_not_written_its_name_yet_is_still_a_holder() {
        assert_eq!(
            Holder::parse("").to_string(),
            "another process (it has not written its pid yet)"
        );
        let h = Holder::parse("pid 42\ncommand edge-agent run --config a.toml\n");
        assert_eq!(h.to_string(), "process 42 (edge-agent run --config a.toml)");
    }
}
