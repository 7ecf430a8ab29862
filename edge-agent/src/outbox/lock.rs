//! One process per outbox: an exclusive `flock` on `<outbox>.lock`, held for as long
//! as an [`Outbox`](super::Outbox) is open. Two owners would each send every event
//! (and the operator CLI must not requeue under a running daemon's feet), so the
//! second one is refused with [`OutboxError::Locked`], which names the holder. A
//! separate file, not the database itself: SQLite takes POSIX (`fcntl`) locks on the
//! database, which some file systems (NFS) emulate `flock` with. The lock is the
//! workspace's one state lock ([`daemon_support::StateLock`]): it goes away with the
//! process, even on SIGKILL; the file stays (it names the last holder and is harmless).

use std::path::{Path, PathBuf};

use daemon_support::{LockError, StateLock};

use super::OutboxError;

/// The held lock; released on drop.
#[derive(Debug)]
pub(crate) struct OutboxLock {
    _lock: StateLock,
}

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
    /// Takes the lock of the outbox at `outbox` (a busy lock is tried again briefly).
    pub(crate) fn acquire(outbox: &Path) -> Result<OutboxLock, OutboxError> {
        let lock = lock_path(outbox);
        match StateLock::acquire_file(&lock, outbox, "outbox") {
            Ok(held) => Ok(OutboxLock { _lock: held }),
            Err(LockError::Held { holder, .. }) => Err(OutboxError::Locked {
                path: outbox.to_path_buf(),
                lock,
                holder: holder.to_string(),
            }),
            Err(LockError::Io { source, .. }) => Err(OutboxError::io(&lock, source)),
        }
    }

    /// A second handle on the same lock (a `dup` of the descriptor: the lock is held
    /// until both are dropped).
    pub(crate) fn try_clone(&self, outbox: &Path) -> Result<OutboxLock, OutboxError> {
        let held = self
            ._lock
            .try_clone()
            .map_err(|source| OutboxError::io(&lock_path(outbox), source))?;
        Ok(OutboxLock { _lock: held })
    }
}
