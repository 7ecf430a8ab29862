//! The one error type of this crate: what failed, and the log that says why.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a helper could not set something up.
///
/// Server start failures carry the tail of the server's log, so the message alone
/// usually explains the failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key could not be generated.
    #[error("generating {what}: {message}")]
    Cert { what: String, message: String },
    /// A server process exited before it became ready.
    #[error("{what} exited with {status} before it was ready; log {log:?} ends with:\n{tail}")]
    Exited {
        what: String,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    /// A server process did not become ready in time.
    #[error("{what} was not ready within {deadline:?}; log {log:?} ends with:\n{tail}")]
    NotReady {
        what: String,
        deadline: Duration,
        log: PathBuf,
        tail: String,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
