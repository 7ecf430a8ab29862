//! When a file in the watched folder is complete: a pure state machine fed with what
//! inotify reports and with the file's [`FileStamp`] (size, mtime, inode), with time
//! passed in. No I/O here; `mod.rs` reads the events and stats the files.
//!
//! The rule, for the writers people use:
//! - **Renamed in** (`IN_MOVED_TO`: rsync's `.name.XXXXXX`, ffmpeg's `-atomic_writing`,
//!   any write-then-rename) is complete by the writer's own statement: taken at once.
//! - **Linked in** (`IN_CREATE` of a symlink, or of a hard link while the file has
//!   another name: `ln tmp x.jpg`, an SFTP client's hardlink finish) points at a file
//!   that exists already: taken at once.
//! - **Closed after writing** (`IN_CLOSE_WRITE`: cp, scp, curl -o, ffmpeg's image2,
//!   rpicam-still) is taken once nothing that opened it since is still holding it open
//!   and its stamp has not changed for `settle`. A writer that closes, reopens and
//!   appends (within `settle`) is therefore taken once, whole, after its last close;
//!   every open postpones it, every close re-arms it.
//! - **Created any other way** (`IN_CREATE` with one link and no `IN_OPEN` after it: a
//!   hard link whose other name is already gone) is taken once its stamp has been still
//!   for `settle`. A file created by `open(2)` gets its `IN_OPEN` in the same system call,
//!   so it waits for its writer's close as above.
//!
//! Opens and closes are counted only while a name is pending, and a close never takes
//! the count below zero: a reader that opened the file before it became pending cannot
//! hold it back for ever.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

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
pub(super) const DELIVERED_LOG_CAPACITY: usize = 8192;

/// What inotify reported about a name in the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `IN_CLOSE_WRITE`: a writer closed it.
    ClosedWrite,
    /// `IN_CLOSE_NOWRITE`: a reader closed it.
    ClosedRead,
    /// `IN_OPEN`: someone opened it (a writer about to append, or a reader).
    Opened,
    /// `IN_MOVED_TO`: renamed into the folder.
    MovedIn,
    /// `IN_CREATE` of a symlink or of a hard link to a file with another name.
    Linked,
    /// `IN_CREATE` of anything else (a file a writer is creating, usually).
    Created,
}

#[derive(Debug, Clone)]
struct Pending {
    /// When to look at it next.
    due: Instant,
    /// Its stamp when it was last armed.
    stamp: Option<FileStamp>,
    /// Opens not yet matched by a close, counted while pending.
    open: u32,
    /// Complete by the writer's statement (renamed or linked in): no settling.
    ready: bool,
}

/// The names reported but not yet taken, and when each is due (see the module docs).
#[derive(Debug)]
pub struct Arrivals {
    settle: Duration,
    pending: HashMap<OsString, Pending>,
}

impl Arrivals {
    pub fn new(settle: Duration) -> Self {
        Arrivals {
            settle,
            pending: HashMap::new(),
        }
    }

    /// Records `signal` for `name`, whose stamp is now `stamp` (`None`: not a file).
    pub fn note(&mut self, name: &OsStr, signal: Signal, stamp: Option<FileStamp>, now: Instant) {
        let settled = now + self.settle;
        let entry = self.pending.get_mut(name);
        match (signal, entry) {
            (Signal::MovedIn | Signal::Linked, _) => {
                self.pending.insert(
                    name.to_owned(),
                    Pending {
                        due: now,
                        stamp,
                        open: 0,
                        ready: true,
                    },
                );
            }
            (Signal::ClosedWrite, Some(p)) => {
                p.open = p.open.saturating_sub(1);
                p.stamp = stamp;
                p.due = settled;
                p.ready = false;
            }
            (Signal::ClosedWrite | Signal::Created, None) => {
                self.pending.insert(
                    name.to_owned(),
                    Pending {
                        due: settled,
                        stamp,
                        open: 0,
                        ready: false,
                    },
                );
            }
            (Signal::ClosedRead, Some(p)) => p.open = p.open.saturating_sub(1),
            (Signal::Opened, Some(p)) => {
                p.open += 1;
                p.ready = false;
            }
            (Signal::Created, Some(_)) | (Signal::ClosedRead | Signal::Opened, None) => {}
        }
    }

    /// Pending names and, for each, when it is next looked at (for a file that is still
    /// open or changing, every `settle`).
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.due).min()
    }

    /// The names complete at `now`, in the order they became due; `stat` gives a name's
    /// current stamp (`None`: gone, or not a file: forgotten). Names still open or
    /// changed since armed stay pending, re-armed.
    pub fn take_due(
        &mut self,
        now: Instant,
        mut stat: impl FnMut(&OsStr) -> Option<FileStamp>,
    ) -> Vec<OsString> {
        let mut due: Vec<(Instant, OsString)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(n, p)| (p.due, n.clone()))
            .collect();
        due.sort();
        let mut taken = Vec::new();
        for (_, name) in due {
            let Some(p) = self.pending.get_mut(&name) else {
                continue;
            };
            let Some(current) = stat(&name) else {
                self.pending.remove(&name);
                continue;
            };
            if p.ready || (p.open == 0 && p.stamp == Some(current)) {
                self.pending.remove(&name);
                taken.push(name);
            } else {
                p.stamp = Some(current);
                p.due = now + self.settle;
            }
        }
        taken
    }

    /// Forgets every pending name (before a full rescan).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    pub fn is_pending(&self, name: &OsStr) -> bool {
        self.pending.contains_key(name)
    }
}

#[cfg(test)]
#[path = "arrivals_tests.rs"]
mod tests;
