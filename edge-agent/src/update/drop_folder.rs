//! The device owner's drop folder, `<state_dir>/updates/`: a package is copied in
//! as `NAME.tar` with `NAME.tar.minisig` beside it and taken once both have been left
//! alone for 2 s (a copy still being written is not taken). It moves to
//! `processing/` while it is installed, so a kill does not make the next start take
//! it again; then it is removed (installed) or moved to `rejected/` with a `.reason`
//! file beside it (refused: never deleted for that). `rollback.request` asks the
//! running agent for `edge-agent model rollback`.

use std::path::Path;

pub use protocol::package::signature_path;
use std::time::{Duration, SystemTime};

pub(super) fn settled(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| {
            SystemTime::now().duration_since(t).unwrap_or_default() >= Duration::from_secs(2)
        })
}

pub(super) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if len > max {
        return Err(format!(
            "{} is {len} bytes, more than update.max_package_bytes {max}",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Where a dropped package waits while it is being installed.
pub(super) const PROCESSING: &str = "processing";

/// A dropped package is removed once installed, or moved to `rejected/` with the
/// reason beside it, never deleted because it was refused.
pub(super) fn settle_dropped(tar: &Path, drop_dir: &Path, refusal: Option<(&str, &str, &str)>) {
    let sig = signature_path(tar);
    match refusal {
        None => {
            let _ = std::fs::remove_file(tar);
            let _ = std::fs::remove_file(&sig);
        }
        Some((status, step, reason)) => {
            reject_dropped(tar, drop_dir, &format!("{status} at {step}: {reason}"))
        }
    }
}

pub(super) fn reject_dropped(tar: &Path, drop_dir: &Path, reason: &str) {
    let dir = drop_dir.join("rejected");
    let _ = std::fs::create_dir_all(&dir);
    let name = tar.file_name().unwrap_or_default();
    let _ = std::fs::rename(tar, dir.join(name));
    let sig = signature_path(tar);
    if let Some(sig_name) = sig.file_name() {
        let _ = std::fs::rename(&sig, dir.join(sig_name));
    }
    let mut reason_path = dir.join(name).into_os_string();
    reason_path.push(".reason");
    // Whole or absent: whoever waits for the file never reads it half-written.
    let _ = protocol::atomic_file::write_atomically(
        Path::new(&reason_path),
        format!("{reason}\n").as_bytes(),
    );
}
