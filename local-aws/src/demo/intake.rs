//! Which frames of the frames folder local mode has copied into the agent's inbox, so
//! a second run sends nothing again. A frame is known by its content (sha256), not its
//! name: a camera that reuses file names (`IMG_0001.jpg` after a card wipe) makes a
//! new photo under an old name, which must be sent, and a renamed copy of a sent photo
//! must not be sent twice.
//!
//! The record is `<state>/copied.jsonl`, one JSON object per copied frame
//! (`{"sha256": "...", "name": "..."}`), appended and fsynced after each copy. JSON
//! keeps any file name whole: the old `copied.txt` held one name per line, so a
//! newline in a name split it in two and the frame was sent again as a new loop.
//! An existing `copied.txt` is still read, once: each name in it that is in the frames
//! folder now counts as copied (by that file's content), and the file is renamed
//! `copied.txt.migrated`.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use protocol::file_name::{escaped, extension};
use sha2::{Digest, Sha256};

/// File extensions local mode copies (any case).
const FRAME_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    sha256: String,
    name: String,
}

/// What identifies a file's content without reading it again: hashed once per
/// (name, size, modification time).
type Stamp = (PathBuf, u64, Option<SystemTime>);

/// The frames copied so far, by content.
pub(super) struct Copied {
    record: PathBuf,
    hashes: HashSet<String>,
    cache: HashMap<Stamp, String>,
}

impl Copied {
    /// Reads `<root>/copied.jsonl`, migrating `<root>/copied.txt` if there is one.
    pub(super) fn open(root: &Path, frames: &Path) -> anyhow::Result<Copied> {
        let mut copied = Copied {
            record: root.join("copied.jsonl"),
            hashes: HashSet::new(),
            cache: HashMap::new(),
        };
        match std::fs::read_to_string(&copied.record) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Record>(line) {
                        Ok(r) => {
                            copied.hashes.insert(r.sha256);
                        }
                        // A line cut short by a crash mid-append: that frame is copied
                        // again (the agent's event id makes the resend harmless).
                        Err(e) => tracing::warn!(
                            "{} line {}: skipped ({e})",
                            copied.record.display(),
                            n + 1
                        ),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", copied.record.display()))
            }
        }
        copied.migrate(&root.join("copied.txt"), frames)?;
        Ok(copied)
    }

    /// How many distinct frames have been copied.
    pub(super) fn len(&self) -> usize {
        self.hashes.len()
    }

    fn migrate(&mut self, old: &Path, frames: &Path) -> anyhow::Result<()> {
        let text = match std::fs::read_to_string(old) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", old.display())),
        };
        let mut migrated = 0;
        for name in text.lines().filter(|l| !l.is_empty()) {
            let path = frames.join(name);
            if !path.is_file() {
                continue;
            }
            let sha = self.hash(&path)?;
            if !self.hashes.contains(&sha) {
                self.remember(sha, name)?;
                migrated += 1;
            }
        }
        let done = old.with_extension("txt.migrated");
        std::fs::rename(old, &done)
            .with_context(|| format!("renaming {} to {}", old.display(), done.display()))?;
        tracing::info!(
            frames = migrated,
            "copied.txt migrated to copied.jsonl (frames are now known by content)"
        );
        Ok(())
    }

    fn hash(&mut self, path: &Path) -> anyhow::Result<String> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        let stamp = (path.to_path_buf(), meta.len(), meta.modified().ok());
        if let Some(sha) = self.cache.get(&stamp) {
            return Ok(sha.clone());
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        self.cache.insert(stamp, sha.clone());
        Ok(sha)
    }

    fn remember(&mut self, sha256: String, name: &str) -> anyhow::Result<()> {
        let line = serde_json::to_string(&Record {
            sha256: sha256.clone(),
            name: name.to_owned(),
        })?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.record)
            .with_context(|| format!("writing {}", self.record.display()))?;
        writeln!(f, "{line}").with_context(|| format!("writing {}", self.record.display()))?;
        f.sync_data()?;
        self.hashes.insert(sha256);
        Ok(())
    }

    /// Copies the frames whose content was not copied before into `inbox` (temporary
    /// hidden name, then a rename, so the agent never sees half a file). A frame whose
    /// name the inbox still holds (the agent has not taken the earlier one yet) waits
    /// for the next call. Returns how many were copied.
    /// Names are kept as bytes: a name that is not UTF-8 (`caf\xe9.jpg`) or holds a
    /// newline is copied like any other, and recorded and shown escaped.
    pub(super) fn intake(&mut self, frames: &Path, inbox: &Path) -> anyhow::Result<usize> {
        let mut names: Vec<OsString> = std::fs::read_dir(frames)
            .with_context(|| format!("reading {}", frames.display()))?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name())
            .filter(|n| is_frame_name(n))
            .collect();
        names.sort();
        let mut n = 0;
        for name in names {
            let sha = self.hash(&frames.join(&name))?;
            if self.hashes.contains(&sha) || inbox.join(&name).exists() {
                continue;
            }
            let mut tmp = OsString::from(".");
            tmp.push(&name);
            tmp.push(".part");
            let tmp = inbox.join(tmp);
            let shown = escaped(&name);
            std::fs::copy(frames.join(&name), &tmp)
                .with_context(|| format!("copying {shown} into the inbox"))?;
            std::fs::rename(&tmp, inbox.join(&name))?;
            self.remember(sha, &shown)?;
            n += 1;
        }
        Ok(n)
    }
}

/// A frame file: not hidden, with an image extension.
fn is_frame_name(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() != Some(&b'.')
        && extension(name).is_some_and(|ext| {
            FRAME_EXTENSIONS
                .iter()
                .any(|e| e.as_bytes().eq_ignore_ascii_case(ext))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dirs {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        frames: PathBuf,
        inbox: PathBuf,
    }

    fn dirs() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let (root, frames, inbox) = (
            tmp.path().join("state"),
            tmp.path().join("frames"),
            tmp.path().join("inbox"),
        );
        for d in [&root, &frames, &inbox] {
            std::fs::create_dir_all(d).unwrap();
        }
        Dirs {
            _tmp: tmp,
            root,
            frames,
            inbox,
        }
    }

    fn inbox_names(d: &Dirs) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&d.inbox)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_photo_saved_under_an_old_name_is_sent() {
        let d = dirs();
        std::fs::write(d.frames.join("IMG_0001.jpg"), b"first photo").unwrap();
        let mut copied = Copied::open(&d.root, &d.frames).unwrap();
        assert_eq!(copied.intake(&d.frames, &d.inbox).unwrap(), 1);
        std::fs::remove_file(d.inbox.join("IMG_0001.jpg")).unwrap(); // the agent took it
        std::fs::write(d.frames.join("IMG_0001.jpg"), b"second photo, same name").unwrap();
        assert_eq!(copied.intake(&d.frames, &d.inbox).unwrap(), 1);
        // And a restart remembers both.
        std::fs::remove_file(d.inbox.join("IMG_0001.jpg")).unwrap();
        let mut again = Copied::open(&d.root, &d.frames).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again.intake(&d.frames, &d.inbox).unwrap(), 0);
    }

    #[test]
    fn a_name_with_a_newline_is_remembered_whole() {
        let d = dirs();
        std::fs::write(d.frames.join("two\nlines.jpg"), b"photo").unwrap();
        let mut copied = Copied::open(&d.root, &d.frames).unwrap();
        assert_eq!(copied.intake(&d.frames, &d.inbox).unwrap(), 1);
        std::fs::remove_file(d.inbox.join("two\nlines.jpg")).unwrap();
        let mut again = Copied::open(&d.root, &d.frames).unwrap();
        assert_eq!(again.intake(&d.frames, &d.inbox).unwrap(), 0);
        assert!(inbox_names(&d).is_empty());
    }

    #[test]
    fn a_name_that_is_not_utf8_is_copied_with_its_own_bytes_and_recorded_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let d = dirs();
        let name = OsStr::from_bytes(b"caf\xe9.jpg");
        std::fs::write(d.frames.join(name), b"photo").unwrap();
        let mut copied = Copied::open(&d.root, &d.frames).unwrap();
        assert_eq!(copied.intake(&d.frames, &d.inbox).unwrap(), 1);
        assert_eq!(std::fs::read(d.inbox.join(name)).unwrap(), b"photo");
        let record = std::fs::read_to_string(d.root.join("copied.jsonl")).unwrap();
        assert!(record.contains(r#""name":"caf\\xe9.jpg""#), "{record}");
    }

    #[test]
    fn a_frame_waits_while_the_inbox_still_holds_its_name() {
        let d = dirs();
        std::fs::write(d.frames.join("a.jpg"), b"old").unwrap();
        let mut copied = Copied::open(&d.root, &d.frames).unwrap();
        copied.intake(&d.frames, &d.inbox).unwrap();
        std::fs::write(d.frames.join("a.jpg"), b"new").unwrap();
        assert_eq!(copied.intake(&d.frames, &d.inbox).unwrap(), 0);
        assert_eq!(std::fs::read(d.inbox.join("a.jpg")).unwrap(), b"old");
        std::fs::remove_file(d.inbox.join("a.jpg")).unwrap();
        assert_eq!(copied.intake(&d.frames, &d.inbox).unwrap(), 1);
        assert_eq!(std::fs::read(d.inbox.join("a.jpg")).unwrap(), b"new");
    }

    #[test]
    fn an_old_copied_txt_still_counts_and_is_migrated() {
        let d = dirs();
        std::fs::write(d.frames.join("a.jpg"), b"sent by an older version").unwrap();
        std::fs::write(d.frames.join("b.jpg"), b"never sent").unwrap();
        std::fs::write(d.root.join("copied.txt"), "a.jpg\n").unwrap();
        let mut copied = Copied::open(&d.root, &d.frames).unwrap();
        assert_eq!(copied.intake(&d.frames, &d.inbox).unwrap(), 1);
        assert_eq!(inbox_names(&d), ["b.jpg"]);
        assert!(!d.root.join("copied.txt").exists());
        assert!(d.root.join("copied.txt.migrated").exists());
    }

    #[test]
    fn hidden_files_and_other_extensions_are_not_frames() {
        let is = |n: &str| is_frame_name(OsStr::new(n));
        assert!(is("a.JPG") && is("b.png"));
        assert!(!is("._a.jpg") && !is("notes.txt"));
    }
}
