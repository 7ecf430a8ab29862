//! `DirStore`: buckets and objects as plain directories and files under one root,
//! `<root>/<bucket>/<key>`, so an operator can look at local mode's data with `ls` and
//! `cat`, and the review service can read images straight from it.
//!
//! Writes are atomic and durable: the body goes to `<root>/.tmp/`, is fsynced, then
//! renamed into place (or hard-linked, for If-None-Match: `link(2)` fails when the name
//! exists, so "create only if absent" needs no lock and holds across processes), and
//! the directory entry is fsynced. Readers see the old object or the new one, never a
//! part. Deleting an object prunes directories left empty, so prefixes vanish as in S3.
//!
//! What a directory cannot hold, it refuses with a clear error instead of storing
//! something else: keys with empty, `.` or `..` segments, and a key that is also the
//! prefix of another (`a` and `a/b`). Objects keep no metadata beyond their bytes: the
//! content type follows the key's extension.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// Where in-flight uploads live (bucket names cannot start with a dot).
const TMP_DIR: &str = ".tmp";
/// Largest object the store accepts (S3's single-PUT limit is 5 GiB; local mode
/// stores frames, output.json files and model packages).
pub const MAX_OBJECT_SIZE: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("object s3://{bucket}/{key} does not exist")]
    NoSuchKey { bucket: String, key: String },
    #[error("bucket name {name:?} is not valid: {reason}")]
    InvalidBucketName { name: String, reason: &'static str },
    #[error("object key {key:?} cannot be stored in a directory: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("bucket {0:?} already exists")]
    BucketExists(String),
    #[error("bucket {0:?} is not empty")]
    BucketNotEmpty(String),
    #[error("object s3://{bucket}/{key} already exists")]
    AlreadyExists { bucket: String, key: String },
    #[error("object s3://{bucket}/{key} conflicts with another key: {reason}")]
    KeyConflict {
        bucket: String,
        key: String,
        reason: &'static str,
    },
    #[error("object is larger than the store's limit of {MAX_OBJECT_SIZE} bytes")]
    TooLarge,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a write does when the key exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Replace it (plain PutObject).
    Overwrite,
    /// Refuse with [`StoreError::AlreadyExists`] (`If-None-Match: *`).
    IfAbsent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: SystemTime,
}

/// One ListObjectsV2 request, already parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRequest {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Only entries after this key (the continuation token or StartAfter).
    pub after: Option<String>,
    pub max_keys: usize,
}

/// One page: objects and common prefixes, each in key order; `next` is where the
/// following page starts (the last entry returned) when the listing was cut short.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub common_prefixes: Vec<String>,
    pub next: Option<String>,
}

/// A directory laid out like buckets and keys. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DirStore {
    inner: Arc<Root>,
}

#[derive(Debug)]
struct Root {
    root: PathBuf,
    next_tmp: AtomicU64,
}

/// An upload being written; dropped without [`DirStore::commit`] it removes itself.
pub struct TempObject {
    path: PathBuf,
    file: Option<File>,
    size: u64,
}

impl TempObject {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.size += bytes.len() as u64;
        if self.size > MAX_OBJECT_SIZE {
            return Err(StoreError::TooLarge);
        }
        let file = self.file.as_mut().expect("open until committed");
        file.write_all(bytes).map_err(io_at(&self.path))
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for TempObject {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl DirStore {
    /// Opens (creating if needed) the store at `root` and removes uploads that a
    /// previous run left unfinished.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let tmp = root.join(TMP_DIR);
        fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        for entry in fs::read_dir(&tmp).map_err(io_at(&tmp))? {
            let entry = entry.map_err(io_at(&tmp))?;
            let _ = fs::remove_file(entry.path());
        }
        Ok(Self {
            inner: Arc::new(Root {
                root,
                next_tmp: AtomicU64::new(0),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The directory of `bucket` (checked to be a valid bucket name).
    pub fn bucket_path(&self, bucket: &str) -> Result<PathBuf, StoreError> {
        validate_bucket(bucket)?;
        Ok(self.inner.root.join(bucket))
    }

    /// The file that holds `bucket`/`key`.
    pub fn object_path(&self, bucket: &str, key: &str) -> Result<PathBuf, StoreError> {
        let mut path = self.bucket_path(bucket)?;
        for segment in key_segments(key)? {
            path.push(segment);
        }
        Ok(path)
    }

    fn existing_bucket(&self, bucket: &str) -> Result<PathBuf, StoreError> {
        let dir = self.bucket_path(bucket)?;
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(StoreError::NoSuchBucket(bucket.to_owned()))
        }
    }

    pub fn create_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let dir = self.bucket_path(bucket)?;
        match fs::create_dir(&dir) {
            Ok(()) => sync_dir(&self.inner.root),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::BucketExists(bucket.to_owned()))
            }
            Err(e) => Err(io_at(&dir)(e)),
        }
    }

    /// Creates `bucket` unless it exists.
    pub fn ensure_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        match self.create_bucket(bucket) {
            Err(StoreError::BucketExists(_)) => Ok(()),
            other => other,
        }
    }

    pub fn bucket_exists(&self, bucket: &str) -> Result<bool, StoreError> {
        Ok(self.bucket_path(bucket)?.is_dir())
    }

    pub fn delete_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let dir = self.existing_bucket(bucket)?;
        match fs::remove_dir(&dir) {
            Ok(()) => sync_dir(&self.inner.root),
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
                Err(StoreError::BucketNotEmpty(bucket.to_owned()))
            }
            Err(e) => Err(io_at(&dir)(e)),
        }
    }

    /// Buckets and their creation (or, where unknown, modification) times, by name.
    pub fn list_buckets(&self) -> Result<Vec<(String, SystemTime)>, StoreError> {
        let root = &self.inner.root;
        let mut out = Vec::new();
        for entry in fs::read_dir(root).map_err(io_at(root))? {
            let entry = entry.map_err(io_at(root))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() && validate_bucket(&name).is_ok() {
                let t = meta.created().or_else(|_| meta.modified());
                out.push((name, t.unwrap_or(SystemTime::UNIX_EPOCH)));
            }
        }
        out.sort();
        Ok(out)
    }

    /// A new upload in the store's temporary directory.
    pub fn temp_object(&self) -> Result<TempObject, StoreError> {
        let n = self.inner.next_tmp.fetch_add(1, Ordering::Relaxed);
        let path = self
            .inner
            .root
            .join(TMP_DIR)
            .join(format!("{}-{n}", std::process::id()));
        let file = File::create(&path).map_err(io_at(&path))?;
        Ok(TempObject {
            path,
            file: Some(file),
            size: 0,
        })
    }

    /// Makes a finished upload the object `bucket`/`key`: fsync, then rename (or link,
    /// for [`PutMode::IfAbsent`]) into place, then fsync the directory entry.
    pub fn commit(
        &self,
        mut tmp: TempObject,
        bucket: &str,
        key: &str,
        mode: PutMode,
    ) -> Result<(), StoreError> {
        let bucket_dir = self.existing_bucket(bucket)?;
        let dest = self.object_path(bucket, key)?;
        let file = tmp.file.take().expect("committed once");
        file.sync_all().map_err(io_at(&tmp.path))?;
        drop(file);
        let parent = dest.parent().expect("objects live inside their bucket");
        // A concurrent delete prunes directories that became empty, possibly one this
        // write is making or has just made: start again from the top, a few times.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.make_dirs(&bucket_dir, parent, bucket, key) {
                Err(StoreError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound && attempts < 5 =>
                {
                    continue
                }
                made => made?,
            }
            let placed = match mode {
                PutMode::Overwrite => fs::rename(&tmp.path, &dest),
                PutMode::IfAbsent => fs::hard_link(&tmp.path, &dest),
            };
            match placed {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 5 => continue,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && mode == PutMode::IfAbsent => {
                    return Err(if dest.is_dir() {
                        conflict(bucket, key, "it is a prefix of other keys")
                    } else {
                        StoreError::AlreadyExists {
                            bucket: bucket.to_owned(),
                            key: key.to_owned(),
                        }
                    });
                }
                Err(_) if dest.is_dir() => {
                    return Err(conflict(bucket, key, "it is a prefix of other keys"))
                }
                Err(e) => return Err(io_at(&dest)(e)),
            }
        }
        // `tmp` (removed on drop) is gone after a rename, and only an extra name after a link.
        sync_dir(parent)
    }

    /// Creates the directories between the bucket and `dir`, fsyncing each new entry.
    /// A directory pruned by a concurrent delete meanwhile is a `NotFound` I/O error,
    /// which `commit` answers by starting over.
    fn make_dirs(
        &self,
        bucket_dir: &Path,
        dir: &Path,
        bucket: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        let mut missing = Vec::new();
        let mut d = dir;
        // One stat per level: with two (is it a directory? does it exist?) a directory
        // created by a concurrent put in between looked like an object in the way.
        while d != bucket_dir {
            match fs::symlink_metadata(d) {
                Ok(m) if m.is_dir() => break,
                Ok(_) => return Err(conflict(bucket, key, "a prefix of it is an object")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing.push(d);
                    d = d.parent().expect("inside the bucket");
                }
                Err(e) => return Err(io_at(d)(e)),
            }
        }
        for d in missing.into_iter().rev() {
            match fs::create_dir(d) {
                Ok(()) => sync_dir(d.parent().expect("inside the bucket"))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::symlink_metadata(d)
                {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(conflict(bucket, key, "a prefix of it is an object")),
                    // Made and pruned again by others since: `make_dirs` starts over.
                    Err(e) => return Err(io_at(d)(e)),
                },
                Err(_) if d.exists() && !d.is_dir() => {
                    return Err(conflict(bucket, key, "a prefix of it is an object"))
                }
                Err(e) => return Err(io_at(d)(e)),
            }
        }
        Ok(())
    }

    /// Writes a whole object from memory.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: &[u8],
        mode: PutMode,
    ) -> Result<(), StoreError> {
        self.object_path(bucket, key)?;
        let mut tmp = self.temp_object()?;
        tmp.write(bytes)?;
        self.commit(tmp, bucket, key, mode)
    }

    /// The whole object and its details, read from one open file (so they agree).
    pub fn get(&self, bucket: &str, key: &str) -> Result<(Vec<u8>, ObjectInfo), StoreError> {
        let path = self.object_path(bucket, key)?;
        let mut file = self.open_object(bucket, key, &path)?;
        let meta = file.metadata().map_err(io_at(&path))?;
        if meta.is_dir() {
            return Err(no_such_key(bucket, key));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes).map_err(io_at(&path))?;
        let info = ObjectInfo {
            key: key.to_owned(),
            size: bytes.len() as u64,
            last_modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        };
        Ok((bytes, info))
    }

    fn open_object(&self, bucket: &str, key: &str, path: &Path) -> Result<File, StoreError> {
        match File::open(path) {
            Ok(f) => Ok(f),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                self.existing_bucket(bucket)?;
                Err(no_such_key(bucket, key))
            }
            Err(e) => Err(io_at(path)(e)),
        }
    }

    pub fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, StoreError> {
        let path = self.object_path(bucket, key)?;
        let meta = match fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Err(no_such_key(bucket, key)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                self.existing_bucket(bucket)?;
                return Err(no_such_key(bucket, key));
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        Ok(ObjectInfo {
            key: key.to_owned(),
            size: meta.len(),
            last_modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }

    /// Removes an object; removing one that is not there succeeds, as in S3.
    pub fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        let bucket_dir = self.existing_bucket(bucket)?;
        let path = self.object_path(bucket, key)?;
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            _ => return Ok(()),
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_at(&path)(e)),
        }
        let mut dir = path.parent().expect("inside the bucket");
        while dir != bucket_dir && fs::remove_dir(dir).is_ok() {
            dir = dir.parent().expect("inside the bucket");
        }
        // Make the removal durable in the nearest directory that is still there: a
        // concurrent delete may have pruned `dir` itself since our remove_dir failed.
        loop {
            match File::open(dir) {
                Ok(d) => return d.sync_all().map_err(io_at(dir)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && dir != bucket_dir => {
                    dir = dir.parent().expect("inside the bucket");
                }
                Err(e) => return Err(io_at(dir)(e)),
            }
        }
    }

    /// One page of the bucket's keys that start with `req.prefix`, in key order.
    pub fn list(&self, bucket: &str, req: &ListRequest) -> Result<ListPage, StoreError> {
        let bucket_dir = self.existing_bucket(bucket)?;
        // Walk only the directory the prefix points into.
        let (dir_part, _) = req.prefix.rsplit_once('/').unwrap_or(("", ""));
        let mut start = bucket_dir.clone();
        let mut base = String::new();
        for seg in dir_part.split('/').filter(|s| !s.is_empty()) {
            if seg == "." || seg == ".." {
                return Ok(ListPage::default());
            }
            start.push(seg);
            base.push_str(seg);
            base.push('/');
        }
        let mut all = Vec::new();
        if start.is_dir() {
            walk(&start, &base, &mut all)?;
        }
        all.retain(|o| o.key.starts_with(&req.prefix));
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(page(all, req))
    }
}

/// Cuts a sorted listing into a page, grouping keys by delimiter like S3.
pub fn page(sorted: Vec<ObjectInfo>, req: &ListRequest) -> ListPage {
    let mut out = ListPage::default();
    let mut taken = 0;
    let mut last: Option<String> = None;
    let mut truncated = false;
    for o in sorted {
        if let Some(after) = &req.after {
            if o.key.as_str() <= after.as_str() {
                continue;
            }
        }
        let grouped = req
            .delimiter
            .as_deref()
            .filter(|d| !d.is_empty())
            .and_then(|d| {
                let rest = &o.key[req.prefix.len()..];
                rest.find(d)
                    .map(|i| o.key[..req.prefix.len() + i + d.len()].to_owned())
            });
        if let Some(p) = grouped {
            if out.common_prefixes.last() == Some(&p) {
                continue;
            }
            // A continuation token that is a common prefix skips all of its keys.
            if req.after.as_deref().is_some_and(|a| a.starts_with(&p)) {
                continue;
            }
            if taken == req.max_keys {
                truncated = true;
                break;
            }
            out.common_prefixes.push(p.clone());
            last = Some(p);
        } else {
            if taken == req.max_keys {
                truncated = true;
                break;
            }
            last = Some(o.key.clone());
            out.objects.push(o);
        }
        taken += 1;
    }
    if truncated {
        out.next = last;
    }
    out
}

fn walk(dir: &Path, base: &str, out: &mut Vec<ObjectInfo>) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // Temp files of writers that share the directory (DirOutputSink's `.x.tmp-...`).
        if name.starts_with('.') && name.contains(".tmp-") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let key = format!("{base}{name}");
        if meta.is_dir() {
            walk(&entry.path(), &format!("{key}/"), out)?;
        } else if meta.is_file() {
            out.push(ObjectInfo {
                key,
                size: meta.len(),
                last_modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

fn no_such_key(bucket: &str, key: &str) -> StoreError {
    StoreError::NoSuchKey {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    }
}

fn conflict(bucket: &str, key: &str, reason: &'static str) -> StoreError {
    StoreError::KeyConflict {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        reason,
    }
}

/// S3's bucket naming rules (the subset a directory name needs, plus S3's own).
pub fn validate_bucket(name: &str) -> Result<(), StoreError> {
    let bad = |reason| {
        Err(StoreError::InvalidBucketName {
            name: name.to_owned(),
            reason,
        })
    };
    if !(3..=63).contains(&name.len()) {
        return bad("must be 3 to 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("only lowercase letters, digits, dots and hyphens are allowed");
    }
    let first_last_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !first_last_ok(name.as_bytes()[0]) || !first_last_ok(name.as_bytes()[name.len() - 1]) {
        return bad("must start and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("must not contain two dots in a row");
    }
    Ok(())
}

/// The path segments of `key`; refuses keys a directory tree cannot represent.
pub fn key_segments(key: &str) -> Result<std::str::Split<'_, char>, StoreError> {
    let bad = |reason| {
        Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() || key.len() > 1024 {
        return bad("keys must be 1 to 1024 bytes");
    }
    if key.contains('\0') {
        return bad("keys must not contain NUL");
    }
    for seg in key.split('/') {
        if seg.is_empty() {
            return bad("empty segments (leading, trailing or doubled '/') are not supported");
        }
        if seg == "." || seg == ".." {
            return bad("'.' and '..' segments are not supported");
        }
        if seg.len() > 255 {
            return bad("each '/'-separated segment must be at most 255 bytes");
        }
    }
    Ok(key.split('/'))
}

/// The content type an object is served with, from its key's extension.
pub fn content_type_for(key: &str) -> &'static str {
    let ext = key
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "json" => "application/json",
        "jsonl" | "manifest" => "application/jsonlines",
        "txt" | "log" => "text/plain; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "toml" => "application/toml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
#[path = "dir_tests.rs"]
mod tests;
