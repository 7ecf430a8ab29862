//! Intake of `local-aws run`: the frames folder copied into the agent's inbox, each
//! name once (recorded in `<state>/copied.txt`, so a second run sends nothing again).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::{Layout, FRAME_EXTENSIONS};

/// Copies the frames not copied before into the inbox (temporary hidden name, then a
/// rename, so the agent never sees half a file). Returns how many were copied.
pub(super) fn intake(
    frames: &Path,
    layout: &Layout,
    copied: &mut BTreeSet<String>,
) -> anyhow::Result<usize> {
    let mut names: Vec<String> = std::fs::read_dir(frames)
        .with_context(|| format!("reading {}", frames.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            !n.starts_with('.')
                && n.rsplit_once('.').is_some_and(|(_, ext)| {
                    FRAME_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
                })
        })
        .collect();
    names.sort();
    let mut n = 0;
    for name in names {
        if copied.contains(&name) {
            continue;
        }
        let tmp = layout.inbox.join(format!(".{name}.part"));
        std::fs::copy(frames.join(&name), &tmp)
            .with_context(|| format!("copying {} into the inbox", name))?;
        std::fs::rename(&tmp, layout.inbox.join(&name))?;
        let mut record = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&layout.copied)
            .with_context(|| format!("writing {}", layout.copied.display()))?;
        writeln!(record, "{name}")?;
        record.sync_data()?;
        copied.insert(name);
        n += 1;
    }
    Ok(n)
}

pub(super) fn read_copied(path: &Path) -> anyhow::Result<BTreeSet<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
