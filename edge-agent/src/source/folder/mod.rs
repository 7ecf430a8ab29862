//! The folder source: image files dropped into a directory become frames.
//!
//! A file is taken only once it is complete, by the rule in `arrivals.rs`: renamed or
//! linked in (hard link or symlink), it is taken at once; closed after writing, once
//! nothing still holds it open and it has been unchanged for `settle` (so a writer
//! that closes, reopens and appends is taken once, whole). A file is never read while
//! a writer has it open. Files already there at start-up are taken first, oldest
//! first. The watch is added before that scan, so nothing that arrives meanwhile is
//! missed; a file both found by the scan and then reported by an event is delivered
//! once ([`DeliveredLog`]). An inotify queue overflow triggers a rescan. Hidden files
//! (leading `.`) and other extensions are ignored, so a writer can also write
//! `name.jpg.part` and rename it. A name is matched and kept as bytes: a file whose name
//! is not UTF-8 is taken like any other, and shown escaped (`names.rs`).
//!
//! A symlink is followed: the frame is the file it points to, and `after` deletes or
//! moves the link, never its target. A link to something that is not a file, or to
//! nothing, is skipped with a warning naming both.
//!
//! What happens to a file afterwards is the daemon's call: once a frame is fully
//! handled (classified and, if selected, durably in the outbox) it calls [`finish`]
//! to leave, move or delete the file; a frame refused as not an image (truncated,
//! corrupt...) goes to [`reject`] instead, which moves it aside with its reason. With
//! `move`/`delete` the folder is its own to-do list (a crash before `finish` leaves the
//! file to be taken again: at least once). `leave` keeps no record, so each start-up
//! re-takes every file; a "processed" state file was rejected as a second source of
//! truth to keep in step with the folder (README.md, "Folder", says more).

mod after;
mod arrivals;
mod config;

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use inotify::{EventMask, Inotify, WatchMask};

use super::names::escaped_path;
use super::{send_frame, Sent, SourceError, SourceFrame, SourceHandle, StopSignal, Wake};
pub use after::{finish, reject, REASON_SUFFIX, REJECTED_DIR};
use arrivals::DELIVERED_LOG_CAPACITY;
pub use arrivals::{Arrivals, DeliveredLog, FileStamp, Signal};
pub use config::{
    default_after, default_extensions, default_max_file_bytes, default_settle, AfterProcessing,
    FolderConfigError, FolderSourceConfig,
};

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// A symlink is followed to a file; one that leads elsewhere is said, not ignored.
fn warn_bad_symlink(path: &Path, problem: io::Result<()>) {
    let target = fs::read_link(path).unwrap_or_default();
    let problem = match problem {
        Ok(()) => "it is not a regular file".to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(file = %escaped_path(path), target = %escaped_path(&target), %problem, "skipping a symlink that does not lead to a file");
}

/// The stamp of the file at `path` (through a symlink), if it is a regular file.
fn stamp_of(path: &Path) -> Option<FileStamp> {
    fs::metadata(path)
        .ok()
        .filter(fs::Metadata::is_file)
        .map(|m| FileStamp::of(&m))
}

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
        let meta = fs::metadata(entry.path());
        match meta {
            Ok(meta) if meta.is_file() => found.push((FileStamp::of(&meta).mtime_ns, name)),
            other if is_symlink(&entry.path()) => {
                warn_bad_symlink(&entry.path(), other.map(|_| ()))
            }
            _ => {} // a directory, or vanished meanwhile
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
    // Opens and read-only closes too: the arrival rule counts who holds a pending
    // file open (arrivals.rs); creates: hard links and symlinks arrive that way.
    let mask = WatchMask::CLOSE_WRITE
        | WatchMask::CLOSE_NOWRITE
        | WatchMask::OPEN
        | WatchMask::CREATE
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
                    escaped_path(to)
                ))));
            }
        }
    }
    // Listed now, after the watch exists and before this returns: a file created after
    // spawn_folder_source returns is seen through its event, never half-written by the
    // scan. (A file a writer began before the agent started cannot be told from a
    // complete one; such writers should write under a temporary name and rename.)
    let mut watcher = FolderWatcher {
        arrivals: Arrivals::new(config.settle),
        config,
        inotify,
        queue: VecDeque::new(),
        queued: HashSet::new(),
        delivered: DeliveredLog::new(DELIVERED_LOG_CAPACITY),
    };
    watcher.rescan()?;
    let name = format!("folder-source:{}", escaped_path(&watcher.config.path));
    SourceHandle::spawn(name, move |stop| watcher.run(&tx, &stop))
}

struct FolderWatcher {
    config: FolderSourceConfig,
    inotify: Inotify,
    /// Names waiting to be read, in delivery order, and the same names as a set.
    queue: VecDeque<OsString>,
    queued: HashSet<OsString>,
    /// Names reported but not complete yet.
    arrivals: Arrivals,
    delivered: DeliveredLog,
}

impl FolderWatcher {
    fn run(mut self, tx: &SyncSender<SourceFrame>, stop: &StopSignal) -> Result<(), SourceError> {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            self.drain_events(&mut buffer)?;
            let dir = &self.config.path;
            for name in self
                .arrivals
                .take_due(Instant::now(), |name| stamp_of(&dir.join(name)))
            {
                self.enqueue(name);
            }
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
            let next = self.arrivals.next_due();
            let timeout = next.map(|due| due.saturating_duration_since(Instant::now()));
            match stop.wait_readable(self.inotify.as_raw_fd(), timeout) {
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

    /// Takes every wanted file in the folder (at start-up).
    fn rescan(&mut self) -> Result<(), SourceError> {
        let names = scan(&self.config).map_err(|e| self.watch_error(e))?;
        if !names.is_empty() {
            tracing::info!(folder = %escaped_path(&self.config.path), files = names.len(), "taking files already in the folder");
        }
        for name in names {
            self.enqueue(name);
        }
        Ok(())
    }

    /// After lost events (an overflow): every wanted file is looked at as if a writer
    /// had just closed it, so one still being written is not read half-way.
    fn rescan_settled(&mut self) -> Result<(), SourceError> {
        let names = scan(&self.config).map_err(|e| self.watch_error(e))?;
        self.arrivals.clear();
        let now = Instant::now();
        for name in names {
            let stamp = stamp_of(&self.config.path.join(&name));
            self.arrivals.note(&name, Signal::ClosedWrite, stamp, now);
        }
        Ok(())
    }

    /// What an event on a wanted name means for the arrival rule.
    fn signal(&self, name: &OsStr, mask: EventMask) -> Option<Signal> {
        if mask.contains(EventMask::MOVED_TO) {
            Some(Signal::MovedIn)
        } else if mask.contains(EventMask::CLOSE_WRITE) {
            Some(Signal::ClosedWrite)
        } else if mask.contains(EventMask::CLOSE_NOWRITE) {
            Some(Signal::ClosedRead)
        } else if mask.contains(EventMask::OPEN) {
            Some(Signal::Opened)
        } else if mask.contains(EventMask::CREATE) {
            let path = self.config.path.join(name);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = fs::read_link(&path).unwrap_or_default();
                    match fs::metadata(&path) {
                        Ok(t) if t.is_file() => {
                            tracing::info!(file = %escaped_path(&path), target = %escaped_path(&target), "symlink arrived: taking the file it points to");
                            Some(Signal::Linked)
                        }
                        other => {
                            warn_bad_symlink(&path, other.map(|_| ()));
                            None
                        }
                    }
                }
                Ok(m) if m.is_file() && m.nlink() > 1 => Some(Signal::Linked),
                Ok(m) if m.is_file() => Some(Signal::Created),
                _ => None,
            }
        } else {
            None
        }
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
                                names.push((name.to_owned(), event.mask));
                            }
                        }
                    }
                }
            }
            let now = Instant::now();
            for (name, mask) in names {
                if !self.config.wants(&name) {
                    continue;
                }
                if let Some(signal) = self.signal(&name, mask) {
                    let stamp = match signal {
                        Signal::Opened | Signal::ClosedRead => None,
                        _ => stamp_of(&self.config.path.join(&name)),
                    };
                    self.arrivals.note(&name, signal, stamp, now);
                }
            }
            if gone {
                return Err(self.watch_error(io::Error::other(
                    "the watched folder was deleted or moved away",
                )));
            }
            if overflow {
                tracing::warn!(folder = %escaped_path(&self.config.path), "inotify queue overflowed; rescanning the folder");
                self.rescan_settled()?;
            }
        }
    }

    /// Reads a queued file, unless it vanished, is too large or was delivered already.
    fn read(&mut self, name: &OsStr) -> Option<(SourceFrame, FileStamp)> {
        let path = self.config.path.join(name);
        let meta = match fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            other => {
                if is_symlink(&path) {
                    warn_bad_symlink(&path, other.map(|_| ()));
                } else if let Err(e) = other {
                    tracing::debug!(file = %escaped_path(&path), error = %e, "file vanished before it was read");
                }
                return None;
            }
        };
        let stamp = FileStamp::of(&meta);
        if self.delivered.contains(name, &stamp) {
            return None;
        }
        if meta.len() > self.config.max_file_bytes {
            tracing::warn!(file = %escaped_path(&path), bytes = meta.len(), limit = self.config.max_file_bytes, "skipping a file larger than max_file_bytes");
            self.delivered.record(name, stamp); // warn once per version
            return None;
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %escaped_path(&path), error = %e, "cannot read file");
                return None;
            }
        };
        let captured_at_ms = u64::try_from(stamp.mtime_ns / 1_000_000).unwrap_or(0);
        let frame = SourceFrame {
            name: super::names::escaped(name),
            path: Some(path),
            bytes,
            captured_at_ms,
        };
        Some((frame, stamp))
    }
}
