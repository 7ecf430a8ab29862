//! Starts the configured sources on one bounded channel, stops them, and applies a
//! folder source's after-processing action once a frame is handled, or sets its file
//! aside when the frame was refused.

use std::sync::mpsc::SyncSender;

use crate::config::SourceConfig;
use crate::source::camera::spawn_camera_source;
use crate::source::command::spawn_command_source;
use crate::source::folder::{self, spawn_folder_source};
use crate::source::{SourceError, SourceFrame, SourceHandle};

pub struct Sources(Vec<SourceHandle>);

/// Starts every source; the channel closes when all of them have stopped.
pub fn start(
    configs: &[SourceConfig],
    tx: SyncSender<SourceFrame>,
) -> Result<Sources, SourceError> {
    let mut handles = Vec::new();
    for config in configs {
        let handle = match config {
            SourceConfig::Folder(c) => spawn_folder_source(c.clone(), tx.clone()),
            SourceConfig::Camera(c) => spawn_camera_source(c.clone(), tx.clone()),
            SourceConfig::Command(c) => spawn_command_source(c.clone(), tx.clone()),
        };
        match handle {
            Ok(h) => handles.push(h),
            Err(e) => {
                Sources(handles).stop();
                return Err(e);
            }
        }
    }
    Ok(Sources(handles))
}

impl Sources {
    pub fn stop(self) {
        for handle in self.0 {
            let name = handle.name().to_string();
            if let Err(e) = handle.stop() {
                tracing::warn!(source = %name, error = %e, "source stopped with an error");
            }
        }
    }
}

/// Moves or deletes a folder frame's file as its source says (no-op for cameras).
pub fn finish(configs: &[SourceConfig], frame: &SourceFrame) -> std::io::Result<()> {
    match folder_of(configs, frame) {
        Some((c, path)) => folder::finish(c, path),
        None => Ok(()),
    }
}

/// Sets a refused folder frame's file aside with `reason` ([`folder::reject`]); returns
/// where it went (no-op for cameras, and with `after = "leave"`).
pub fn reject(
    configs: &[SourceConfig],
    frame: &SourceFrame,
    reason: &str,
    now_ms: u64,
) -> std::io::Result<Option<std::path::PathBuf>> {
    match folder_of(configs, frame) {
        Some((c, path)) => folder::reject(c, path, reason, now_ms),
        None => Ok(None),
    }
}

fn folder_of<'a>(
    configs: &'a [SourceConfig],
    frame: &'a SourceFrame,
) -> Option<(&'a folder::FolderSourceConfig, &'a std::path::Path)> {
    let path = frame.path.as_deref()?;
    configs.iter().find_map(|config| match config {
        SourceConfig::Folder(c) if path.parent() == Some(c.path.as_path()) => Some((c, path)),
        _ => None,
    })
}
