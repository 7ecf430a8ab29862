//! The folder source: image files dropped into a directory become frames.
//!
//! A file is taken only once it is complete: inotify reports `IN_CLOSE_WRITE` (a
//! writer closed it) or `IN_MOVED_TO` (it was renamed in), never a mere create or
//! modify, so a half-written file is never read. Files already there at start-up are
//! taken first, oldest first. The watch is added before that scan, so nothing that
//! arrives meanwhile is missed; a file both found by the scan and then reported by an
//! event is delivered once ([`DeliveredLog`]). An inotify queue overflow triggers a
//! rescan. Hidden files (leading `.`) and other extensions are ignored, so a writer
//! that cannot close-then-rename atomically can write `name.jpg.part` and rename it.
//!
//! What happens to a file afterwards is the daemon's call: once a frame is fully
//! handled (classified and, if selected, durably in the outbox) it calls [`finish`]
//! to leave, move or delete the file. With `move`/`delete` the folder is its own to-do
//! list (a crash before `finish` leaves the file to be taken again: at least once).
//! `leave` keeps no record, so each start-up re-takes every file; a "processed" state
//! file was rejected as a second source of truth to keep in step with the folder
//! (README.md, "Folder", says more).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use inotify::{EventMask, Inotify, WatchMask};
use serde::{Deserialize, Serialize};

use super::{send_frame, Sent, SourceError, SourceFrame, SourceHandle, StopSignal, Wake};

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
        Ok(())
    }

    /// True if `name` is a file this source takes: a wanted extension, not hidden.
    pub fn wants(&self, name: &OsStr) -> bool {
        if super::is_hidden(name) {
            return false;
        }
        let Some(name) = name.to_str() else {
            return false;
        };
        match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => {
                self.extensions.iter().any(|e| e.eq_ignore_ascii_case(ext))
            }
            _ => false,
        }
    }
}

fn normalized(p: &Path) -> PathBuf {
    p.components().collect()
}

/// Applies `after` to a file whose frame is fully handled: nothing, a rename into the
/// `move` directory (a name already taken there gets a `-1`, `-2`... suffix), or a
/// delete. Deleting a file that is already gone succeeds.
pub fn finish(config: &FolderSourceConfig, path: &Path) -> io::Result<()> {
    match &config.after {
        AfterProcessing::Leave => Ok(()),
        AfterProcessing::Delete => match fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
        AfterProcessing::Move { to } => {
            let context = |e: io::Error, what: &str| {
                io::Error::new(e.kind(), format!("{what} {}: {e}", to.display()))
            };
            fs::create_dir_all(to).map_err(|e| context(e, "creating"))?;
            let name = path.file_name().unwrap_or(path.as_os_str());
            let target = free_name(to, name)?;
            fs::rename(path, &target).map_err(|e| {
                let hint = if e.raw_os_error() == Some(libc::EXDEV) {
                    " (after.move.to must be on the same filesystem as the watched folder)"
                } else {
                    ""
                };
                io::Error::new(
                    e.kind(),
                    format!(
                        "moving {} to {}: {e}{hint}",
                        path.display(),
                        target.display()
                    ),
                )
            })
        }
    }
}

/// `dir/name`, or `dir/stem-N.ext` with the smallest N that is not taken.
fn free_name(dir: &Path, name: &OsStr) -> io::Result<PathBuf> {
    let candidate = dir.join(name);
    if !candidate.exists() {
        return Ok(candidate);
    }
    let name = Path::new(name);
    let stem = name
        .file_stem()
        .unwrap_or(name.as_os_str())
        .to_string_lossy();
    let ext = name
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()));
    let ext = ext.as_deref().unwrap_or("");
    for n in 1..100_000 {
        let candidate = dir.join(format!("{stem}-{n}{ext}"));
        if !candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for {} in {}", stem, dir.display()),
    ))
}

/// What identifies one version of a file: the same name with another stamp is new
/// content (rewritten, or replaced by another file) and is delivered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileStamp {
    pub fn of(meta: &fs::Metadata) -> Self {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        }
    }
}

/// The most recent file versions delivered, so that a file found by the start-up scan
/// (or an overflow rescan) and also reported by an event goes out once. Bounded: the
/// oldest names are forgotten first.
#[derive(Debug)]
pub struct DeliveredLog {
    stamps: HashMap<OsString, FileStamp>,
    order: VecDeque<OsString>,
    capacity: usize,
}

impl DeliveredLog {
    pub fn new(capacity: usize) -> Self {
        DeliveredLog {
            stamps: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// True if exactly this version of `name` was delivered already.
    pub fn contains(&self, name: &OsStr, stamp: &FileStamp) -> bool {
        self.stamps.get(name) == Some(stamp)
    }

    pub fn record(&mut self, name: &OsStr, stamp: FileStamp) {
        if self.stamps.insert(name.to_owned(), stamp).is_none() {
            self.order.push_back(name.to_owned());
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.stamps.remove(&old);
                }
            }
        }
    }
}

/// How many delivered versions are remembered (see [`DeliveredLog`]).
const DELIVERED_LOG_CAPACITY: usize = 8192;

/// The wanted files in `dir`, oldest first (modification time, then name).
pub fn scan(config: &FolderSourceConfig) -> io::Result<Vec<OsString>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(&config.path)? {
        let entry = entry?;
        let name = entry.file_name();
        if !config.wants(&name) {
            continue;
        }
        // Follows symlinks: a link to an image is taken like the image.
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue; // vanished meanwhile
        };
        if meta.is_file() {
            found.push((FileStamp::of(&meta).mtime_ns, name));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, name)| name).collect())
}

/// Starts watching `config.path` and lists the files already there (errors here are
/// synchronous: a missing folder, no permission, the inotify watch limit), then
/// delivers the files on a new thread.
pub fn spawn_folder_source(
    config: FolderSourceConfig,
    tx: SyncSender<SourceFrame>,
) -> Result<SourceHandle, SourceError> {
    let watch_err = |source: io::Error| SourceError::Watch {
        path: config.path.clone(),
        source,
    };
    let inotify = Inotify::init().map_err(watch_err)?;
    let mask = WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR;
    inotify
        .watches()
        .add(&config.path, mask)
        .map_err(watch_err)?;
    if let AfterProcessing::Move { to } = &config.after {
        // Catch a cross-filesystem move at start, not at the first file.
        if let (Ok(a), Ok(b)) = (fs::metadata(&config.path), fs::metadata(to)) {
            if a.dev() != b.dev() {
                return Err(watch_err(io::Error::other(format!(
                    "after.move.to {} is on another filesystem; files are moved by rename",
                    to.display()
                ))));
            }
        }
    }
    // Listed now, after the watch exists and before this returns: a file created after
    // spawn_folder_source returns is seen through its event, never half-written by the
    // scan. (A file a writer began before the agent started cannot be told from a
    // complete one; such writers should write under a temporary name and rename.)
    let mut watcher = FolderWatcher {
        config,
        inotify,
        queue: VecDeque::new(),
        queued: HashSet::new(),
        delivered: DeliveredLog::new(DELIVERED_LOG_CAPACITY),
    };
    watcher.rescan()?;
    let name = format!("folder-source:{}", watcher.config.path.display());
    SourceHandle::spawn(name, move |stop| watcher.run(&tx, &stop))
}

struct FolderWatcher {
    config: FolderSourceConfig,
    inotify: Inotify,
    /// Names waiting to be read, in delivery order, and the same names as a set.
    queue: VecDeque<OsString>,
    queued: HashSet<OsString>,
    delivered: DeliveredLog,
}

impl FolderWatcher {
    fn run(mut self, tx: &SyncSender<SourceFrame>, stop: &StopSignal) -> Result<(), SourceError> {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            self.drain_events(&mut buffer)?;
            if let Some(name) = self.queue.pop_front() {
                self.queued.remove(&name);
                if let Some(frame) = self.read(&name) {
                    let stamp = frame.1;
                    match send_frame(tx, frame.0, stop) {
                        Sent::Delivered => self.delivered.record(&name, stamp),
                        Sent::Stopped | Sent::Disconnected => return Ok(()),
                    }
                }
                if stop.is_triggered() {
                    return Ok(());
                }
                continue;
            }
            match stop.wait_readable(self.inotify.as_raw_fd(), None) {
                Wake::Stopped => return Ok(()),
                Wake::Ready | Wake::TimedOut => {}
            }
        }
    }

    fn watch_error(&self, source: io::Error) -> SourceError {
        SourceError::Watch {
            path: self.config.path.clone(),
            source,
        }
    }

    fn enqueue(&mut self, name: OsString) {
        if self.queued.insert(name.clone()) {
            self.queue.push_back(name);
        }
    }

    fn rescan(&mut self) -> Result<(), SourceError> {
        let names = scan(&self.config).map_err(|e| self.watch_error(e))?;
        if !names.is_empty() {
            tracing::info!(folder = %self.config.path.display(), files = names.len(), "taking files already in the folder");
        }
        for name in names {
            self.enqueue(name);
        }
        Ok(())
    }

    /// Moves every pending inotify event into the queue without blocking.
    fn drain_events(&mut self, buffer: &mut [u8]) -> Result<(), SourceError> {
        loop {
            let mut overflow = false;
            let mut gone = false;
            let mut names = Vec::new();
            match self.inotify.read_events(buffer) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.watch_error(e)),
                Ok(events) => {
                    for event in events {
                        if event.mask.contains(EventMask::Q_OVERFLOW) {
                            overflow = true;
                        } else if event.mask.intersects(
                            EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED,
                        ) {
                            gone = true;
                        } else if let Some(name) = event.name {
                            if !event.mask.contains(EventMask::ISDIR) {
                                names.push(name.to_owned());
                            }
                        }
                    }
                }
            }
            for name in names {
                if self.config.wants(&name) {
                    self.enqueue(name);
                }
            }
            if gone {
                return Err(self.watch_error(io::Error::other(
                    "the watched folder was deleted or moved away",
                )));
            }
            if overflow {
                tracing::warn!(folder = %self.config.path.display(), "inotify queue overflowed; rescanning the folder");
                self.rescan()?;
            }
        }
    }

    /// Reads a queued file, unless it vanished, is too large or was delivered already.
    fn read(&mut self, name: &OsStr) -> Option<(SourceFrame, FileStamp)> {
        let path = self.config.path.join(name);
        let meta = match fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!(file = %path.display(), error = %e, "file vanished before it was read");
                return None;
            }
        };
        let stamp = FileStamp::of(&meta);
        if self.delivered.contains(name, &stamp) {
            return None;
        }
        if meta.len() > self.config.max_file_bytes {
            tracing::warn!(file = %path.display(), bytes = meta.len(), limit = self.config.max_file_bytes, "skipping a file larger than max_file_bytes");
            self.delivered.record(name, stamp); // warn once per version
            return None;
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read file");
                return None;
            }
        };
        let captured_at_ms = u64::try_from(stamp.mtime_ns / 1_000_000).unwrap_or(0);
        let frame = SourceFrame {
            name: name.to_string_lossy().into_owned(),
            path: Some(path),
            bytes,
            captured_at_ms,
        };
        Some((frame, stamp))
    }
}
