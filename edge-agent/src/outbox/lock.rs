//! One process per outbox: an exclusive `flock` on `<outbox>.lock`, held for as long
//! as an [`Outbox`](super::Outbox) is open. Two owners would each send every event
//! (and the operator CLI must not requeue under a running daemon's feet), so the
//! second one is refused with [`OutboxError::Locked`]. A separate file, not the
//! database itself: SQLite takes POSIX (`fcntl`) locks on the database, which some
//! file systems (NFS) emulate `flock` with. The lock goes away with the process, even
//! on SIGKILL; the file stays (it is empty and harmless).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::OutboxError;

/// The held lock; released on drop.
#[derive(Debug)]
pub(crate) struct OutboxLock {
    _file: File,
}

/// How long a busy lock is tried again before it counts as held by another owner.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Where the lock of the outbox at `outbox` lives: `<outbox>.lock`.
pub fn lock_path(outbox: &Path) -> PathBuf {
    let mut name = outbox.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The lock if nobody holds it (`None`: an agent runs on this outbox).
pub(crate) fn try_lock(outbox: &Path) -> Result<Option<OutboxLock>, OutboxError> {
    match OutboxLock::acquire(outbox) {
        Ok(lock) => Ok(Some(lock)),
        Err(OutboxError::Locked { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl OutboxLock {
    /// Takes the lock of the outbox at `outbox` without waiting.
    pub(crate) fn acquire(outbox: &Path) -> Result<OutboxLock, OutboxError> {
        let lock = lock_path(outbox);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|source| OutboxError::io(&lock, source))?;
        // A lock can be held for a moment by a process that is not its owner: a child
        // forked by another thread of the owner's process shares the descriptor until
        // it execs (which closes it, O_CLOEXEC). So a busy lock is tried again for up
        // to LOCK_PATIENCE before it counts as another owner's.
        let deadline = std::time::Instant::now() + LOCK_PATIENCE;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(OutboxLock { _file: file }),
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(OutboxError::Locked {
                        path: outbox.to_path_buf(),
                        lock,
                    })
                }
                Err(TryLockError::Error(source)) => return Err(OutboxError::io(&lock, source)),
            }
        }
    }
}

impl OutboxLock {
    /// A second handle on the same lock (a `dup` of the descriptor: the lock is held
    /// until both are dropped).
    pub(crate) fn try_clone(&self, outbox: &Path) -> Result<OutboxLock, OutboxError> {
        let file = self
            ._file
            .try_clone()
            .map_err(|source| OutboxError::io(&lock_path(outbox), source))?;
        Ok(OutboxLock { _file: file })
    }
}
