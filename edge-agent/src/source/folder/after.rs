//! What becomes of a file once its frame is handled ([`finish`]: leave, move or delete
//! it, as `after` says) or refused ([`reject`]: moved aside with its reason, never
//! deleted).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::config::{AfterProcessing, FolderSourceConfig};
use crate::source::names;

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
                io::Error::new(e.kind(), format!("{what} {}: {e}", names::escaped_path(to)))
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
                        names::escaped_path(path),
                        names::escaped_path(&target)
                    ),
                )
            })
        }
    }
}

/// The folder's subdirectory that refused files are moved into (see [`reject`]).
pub const REJECTED_DIR: &str = "rejected";

/// What the reason file beside a rejected file is called: its name plus this.
pub const REASON_SUFFIX: &str = ".reason";

/// Sets aside a file whose frame was refused (not an image, truncated, corrupt...):
/// with `after = "delete"` or `move`, it is renamed into `<folder>/rejected/` (a taken
/// name gets a `-N` suffix) and `<name>.reason` beside it says why and when (as the
/// model drop folder's `rejected/` does); with `leave` it stays where it is. Never
/// deleted: a decoder's limit must not destroy a frame someone may still want.
/// Returns where the file went, if it moved.
pub fn reject(
    config: &FolderSourceConfig,
    path: &Path,
    reason: &str,
    now_ms: u64,
) -> io::Result<Option<PathBuf>> {
    if config.after == AfterProcessing::Leave {
        return Ok(None);
    }
    let dir = config.path.join(REJECTED_DIR);
    fs::create_dir_all(&dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("creating {}: {e}", names::escaped_path(&dir)),
        )
    })?;
    let name = path.file_name().unwrap_or(path.as_os_str());
    let target = free_name(&dir, name)?;
    fs::rename(path, &target).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "moving {} to {}: {e}",
                names::escaped_path(path),
                names::escaped_path(&target)
            ),
        )
    })?;
    let mut why = target.clone().into_os_string();
    why.push(REASON_SUFFIX);
    let text = format!(
        "{}\nrefused at {}\n",
        reason,
        protocol::timestamp::format_rfc3339_utc(now_ms as i64)
    );
    // Whole or absent: whoever reads it never sees it half-written.
    protocol::atomic_file::write_atomically(Path::new(&why), text.as_bytes()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {}: {e}", names::escaped_path(Path::new(&why))),
        )
    })?;
    Ok(Some(target))
}

/// `dir/name`, or `dir/stem-N.ext` with the smallest N that is not taken. Built from
/// the name's bytes: a name that is not UTF-8 keeps every byte.
fn free_name(dir: &Path, name: &OsStr) -> io::Result<PathBuf> {
    let candidate = dir.join(name);
    if !candidate.exists() {
        return Ok(candidate);
    }
    let bytes = name.as_encoded_bytes();
    let (stem, ext) = match names::extension(name) {
        Some(ext) => bytes.split_at(bytes.len() - ext.len() - 1),
        None => (bytes, &b""[..]),
    };
    for n in 1..100_000 {
        let mut candidate = Vec::with_capacity(bytes.len() + 8);
        candidate.extend_from_slice(stem);
        candidate.extend_from_slice(format!("-{n}").as_bytes());
        candidate.extend_from_slice(ext);
        let candidate = dir.join(OsString::from_vec(candidate));
        if !candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "no free name for {} in {}",
            names::escaped(name),
            names::escaped_path(dir)
        ),
    ))
}
