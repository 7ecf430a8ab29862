//! The `[[source]]` table of a folder source: its settings, their defaults in one
//! place, the check run before anything starts, and which file names it takes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A `[[source]]` table with `kind = "folder"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSourceConfig {
    /// The directory watched for new image files (absolute; not watched recursively).
    pub path: PathBuf,
    /// What [`finish`] does with a file once its frame is handled.
    #[serde(default = "default_after")]
    pub after: AfterProcessing,
    /// File extensions taken, without the dot, matched case-insensitively.
    #[serde(default = "default_extensions")]
    pub extensions: Vec<String>,
    /// Files larger than this are skipped with a warning (and left in place), so a
    /// stray video or disk image cannot exhaust memory.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// How long a file closed after writing must stay closed and unchanged before it
    /// is taken, so that a writer that closes, reopens and appends is taken once, whole
    /// (`arrivals.rs` has the rule). Files renamed or linked in are taken at once.
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle: Duration,
}

/// `after = "leave"`, `after = "delete"` or `after = { move = { to = "/dir" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum AfterProcessing {
    /// Leave the file; it is taken again at every start-up (see the module docs).
    Leave,
    /// Rename it into `to` (created if missing; must be on the same filesystem).
    Move { to: PathBuf },
    /// Delete it.
    Delete,
}

pub fn default_after() -> AfterProcessing {
    AfterProcessing::Leave
}

pub fn default_extensions() -> Vec<String> {
    vec!["jpg".into(), "jpeg".into(), "png".into()]
}

pub fn default_max_file_bytes() -> u64 {
    64 * 1024 * 1024
}

pub fn default_settle() -> Duration {
    Duration::from_secs(1)
}

/// Longer would hold every frame back for no writer known to need it.
const MAX_SETTLE: Duration = Duration::from_secs(60);

/// A folder source setting that cannot work; displayed as `field: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FolderConfigError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> FolderConfigError {
    FolderConfigError {
        field,
        message: message.into(),
    }
}

impl FolderSourceConfig {
    /// A config with every default, watching `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FolderSourceConfig {
            path: path.into(),
            after: default_after(),
            extensions: default_extensions(),
            max_file_bytes: default_max_file_bytes(),
            settle: default_settle(),
        }
    }

    /// Checks the settings without touching the file system.
    pub fn validate(&self) -> Result<(), FolderConfigError> {
        if !self.path.is_absolute() {
            return Err(invalid(
                "path",
                format!("{:?} must be an absolute path", self.path),
            ));
        }
        if let AfterProcessing::Move { to } = &self.after {
            if !to.is_absolute() {
                return Err(invalid(
                    "after.move.to",
                    format!("{to:?} must be an absolute path"),
                ));
            }
            if normalized(to) == normalized(&self.path) {
                return Err(invalid(
                    "after.move.to",
                    format!("{to:?} is the watched folder itself; name another directory"),
                ));
            }
        }
        if self.extensions.is_empty() {
            return Err(invalid("extensions", "must list at least one extension"));
        }
        for ext in &self.extensions {
            if ext.starts_with('.') {
                return Err(invalid(
                    "extensions",
                    format!("{ext:?}: write it without the leading dot"),
                ));
            }
            if ext.is_empty() || !ext.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(invalid(
                    "extensions",
                    format!("{ext:?} is not an extension (letters and digits only)"),
                ));
            }
        }
        if self.max_file_bytes == 0 {
            return Err(invalid("max_file_bytes", "must be greater than 0"));
        }
        if self.settle > MAX_SETTLE {
            return Err(invalid(
                "settle",
                format!(
                    "{:?} is longer than the {MAX_SETTLE:?} maximum",
                    self.settle
                ),
            ));
        }
        Ok(())
    }

    /// True if `name` is a file this source takes: a wanted extension, not hidden.
    pub fn wants(&self, name: &OsStr) -> bool {
        if crate::source::is_hidden(name) {
            return false;
        }
        // On the name's bytes: a name that is not UTF-8 (`caf\xe9.jpg`) is taken too.
        crate::source::names::extension(name).is_some_and(|ext| {
            self.extensions
                .iter()
                .any(|e| e.as_bytes().eq_ignore_ascii_case(ext))
        })
    }
}

fn normalized(p: &Path) -> PathBuf {
    p.components().collect()
}
