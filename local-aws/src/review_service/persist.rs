//! Keeps the review service's state across restarts: a snapshot plus a journal.
//!
//! Why a journal rather than rewriting one state file per change: rewriting every
//! loop on every StartHumanLoop costs O(all loops) per request, while appending one
//! JSON line and `fdatasync`ing it costs O(one change). The journal is folded into
//! `snapshot.json` (streamed to a temp file, fsynced, renamed, directory fsynced) when
//! the state directory is opened and whenever it grows past [`COMPACT_AFTER`] entries.
//!
//! A loop's `InputContent` (up to 3 MiB) is neither journaled nor kept in memory: it
//! is written to `inputs/<loop name>.json` (atomically) before the loop's Started event
//! is journaled, read when the reviewer page or output.json needs it, and removed with
//! the loop. So memory grows with a loop's small record only, not with its input; the
//! answers live in output.json. Opening the directory moves inputs that an older
//! version kept inline into their files, and removes input files of loops that were
//! never journaled (a crash between the two writes).
//!
//! Crash safety: an event reaches the journal (fsynced) before the in-memory state
//! changes and before the client gets its answer. Every event has a sequence number and
//! the snapshot records the last one it contains, so a crash between writing the
//! snapshot and emptying the journal replays nothing twice. A torn last line (power cut
//! mid-append) is dropped with a warning; a corrupt line anywhere else is an error that
//! names the file and line, and nothing is changed.
//!
//! One process per state directory: nothing here locks the directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::control_plane::{ControlEvent, ControlPlane};
use super::store::{HumanLoopStore, LoopEvent};

/// Journal entries after which the journal is folded into the snapshot.
pub const COMPACT_AFTER: u64 = 1_000;
const SNAPSHOT_FILE: &str = "snapshot.json";
const JOURNAL_FILE: &str = "journal.jsonl";
const INPUTS_DIR: &str = "inputs";
const SNAPSHOT_VERSION: u32 = 1;

/// Everything the review service knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReviewState {
    pub loops: HumanLoopStore,
    pub control: ControlPlane,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReviewEvent {
    Loop(LoopEvent),
    Control(ControlEvent),
}

impl ReviewState {
    pub fn apply(&mut self, event: &ReviewEvent) {
        match event {
            ReviewEvent::Loop(e) => self.loops.apply(e),
            ReviewEvent::Control(e) => self.control.apply(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: line {line}: {source}")]
    CorruptJournal {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    CorruptSnapshot {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: snapshot version {found} is not supported (expected {SNAPSHOT_VERSION})")]
    SnapshotVersion { path: PathBuf, found: u32 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot<S> {
    version: u32,
    last_seq: u64,
    state: S,
}

#[derive(Serialize, Deserialize)]
struct JournalEntry<E> {
    seq: u64,
    event: E,
}

/// The open state directory: appends events, compacts.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    journal: File,
    journal_len: u64,
    last_seq: u64,
    entries_since_compaction: u64,
}

impl StateDir {
    /// Loads the snapshot, replays the journal, and compacts both into a new snapshot.
    pub fn open(dir: &Path) -> Result<(Self, ReviewState), PersistError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let snap_path = dir.join(SNAPSHOT_FILE);
        let (mut state, mut last_seq) = match std::fs::read(&snap_path) {
            Ok(bytes) => {
                let snap: Snapshot<ReviewState> =
                    serde_json::from_slice(&bytes).map_err(|source| {
                        PersistError::CorruptSnapshot {
                            path: snap_path.clone(),
                            source,
                        }
                    })?;
                if snap.version != SNAPSHOT_VERSION {
                    return Err(PersistError::SnapshotVersion {
                        path: snap_path,
                        found: snap.version,
                    });
                }
                (snap.state, snap.last_seq)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (ReviewState::default(), 0),
            Err(e) => return Err(io_err(&snap_path)(e)),
        };
        let journal_path = dir.join(JOURNAL_FILE);
        for entry in read_journal(&journal_path)? {
            if entry.seq > last_seq {
                state.apply(&entry.event);
                last_seq = entry.seq;
            }
        }
        let mut this = Self {
            dir: dir.to_owned(),
            journal: open_append(&journal_path)?,
            journal_len: 0,
            last_seq,
            entries_since_compaction: 0,
        };
        for (name, input) in state.loops.take_legacy_inputs() {
            this.write_input(&name, &input)?;
        }
        this.compact(&state)?;
        this.remove_orphan_inputs(&state)?;
        Ok((this, state))
    }

    /// Where loop `name`'s `InputContent` is kept.
    pub fn input_path(dir: &Path, name: &str) -> PathBuf {
        // Loop names are `[a-z0-9-]{1,63}` (checked before any loop exists).
        dir.join(INPUTS_DIR).join(format!("{name}.json"))
    }

    /// Stores loop `name`'s `InputContent` (atomically, fsynced). Call before
    /// journaling the loop's Started event.
    pub fn write_input(&self, name: &str, input: &str) -> Result<(), PersistError> {
        let path = Self::input_path(&self.dir, name);
        write_atomically(&path, input.as_bytes()).map_err(io_err(&path))
    }

    /// Reads loop `name`'s `InputContent` from the state directory `dir`.
    pub fn read_input(dir: &Path, name: &str) -> Result<String, PersistError> {
        let path = Self::input_path(dir, name);
        std::fs::read_to_string(&path).map_err(io_err(&path))
    }

    /// Removes a deleted loop's input; one left behind is removed at the next open.
    pub fn remove_input(&self, name: &str) {
        let path = Self::input_path(&self.dir, name);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "removing a deleted loop's input");
            }
        }
    }

    fn remove_orphan_inputs(&self, state: &ReviewState) -> Result<(), PersistError> {
        let inputs = self.dir.join(INPUTS_DIR);
        let entries = match std::fs::read_dir(&inputs) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&inputs)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&inputs))?;
            let file = entry.file_name();
            let known = file
                .to_str()
                .and_then(|f| f.strip_suffix(".json"))
                .is_some_and(|name| state.loops.describe(name).is_ok());
            if !known {
                let path = entry.path();
                tracing::info!(path = %path.display(), "removing the input of a loop that was never started");
                std::fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes `event` durable. Call before applying it to the in-memory state.
    pub fn append(&mut self, event: &ReviewEvent) -> Result<(), PersistError> {
        let path = self.dir.join(JOURNAL_FILE);
        let entry = JournalEntry {
            seq: self.last_seq + 1,
            event,
        };
        let mut line = serde_json::to_vec(&entry).expect("events always serialize");
        line.push(b'\n');
        let written = self
            .journal
            .write_all(&line)
            .and_then(|()| self.journal.sync_data());
        if let Err(e) = written {
            // Cut off whatever part of the line got out, so the journal stays parseable.
            let _ = self.journal.set_len(self.journal_len);
            return Err(io_err(&path)(e));
        }
        self.journal_len += line.len() as u64;
        self.last_seq += 1;
        self.entries_since_compaction += 1;
        Ok(())
    }

    /// True when the journal has grown enough to be worth folding into the snapshot.
    pub fn wants_compaction(&self) -> bool {
        self.entries_since_compaction >= COMPACT_AFTER
    }

    /// Writes `state` (which must include every appended event) as the new snapshot and
    /// empties the journal.
    pub fn compact(&mut self, state: &ReviewState) -> Result<(), PersistError> {
        let snap_path = self.dir.join(SNAPSHOT_FILE);
        let snap = Snapshot {
            version: SNAPSHOT_VERSION,
            last_seq: self.last_seq,
            state,
        };
        // Streamed: no second copy of the state in memory while it is written.
        write_atomically_with(&snap_path, |w| {
            serde_json::to_writer(w, &snap).map_err(io::Error::other)
        })
        .map_err(io_err(&snap_path))?;
        let journal_path = self.dir.join(JOURNAL_FILE);
        write_atomically(&journal_path, b"").map_err(io_err(&journal_path))?;
        self.journal = open_append(&journal_path)?;
        self.journal_len = 0;
        self.entries_since_compaction = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, PersistError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

fn read_journal(path: &Path) -> Result<Vec<JournalEntry<ReviewEvent>>, PersistError> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let complete = text.ends_with(b"\n");
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut entries = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_slice(line) {
            Ok(entry) => entries.push(entry),
            Err(_) if i + 1 == lines.len() && !complete => {
                tracing::warn!(path = %path.display(), line = i + 1, "dropping torn last journal line");
            }
            Err(source) => {
                return Err(PersistError::CorruptJournal {
                    path: path.to_owned(),
                    line: i + 1,
                    source,
                })
            }
        }
    }
    Ok(entries)
}

pub use protocol::atomic_file::{write_atomically, write_atomically_with};

#[cfg(test)]
#[path = "persist_tests.rs"]
mod tests;
