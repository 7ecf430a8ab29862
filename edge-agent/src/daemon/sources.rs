//! Starts the configured sources on one bounded channel, stops them, and applies a
//! folder source's after-processing action once a frame is handled.

use std::sync::mpsc::SyncSender;

use crate::config::SourceConfig;
use crate::source::camera::spawn_camera_source;
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
    let Some(path) = &frame.path else {
        return Ok(());
    };
    for config in configs {
        if let SourceConfig::Folder(c) = config {
            if path.parent() == Some(c.path.as_path()) {
                return folder::finish(c, path);
            }
        }
    }
    Ok(())
}
