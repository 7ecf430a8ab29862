//! `[update]`: which keys a model package must be signed by, how large it may be,
//! and the shadow and watch windows of a switch ([`super::lifecycle`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::lifecycle::LifecycleConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSection {
    /// minisign public key files (`edge-agent model keygen` writes one). A package
    /// must be signed by one of them; with none, every update is refused.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// Largest package accepted, in bytes (checked before and while downloading).
    #[serde(default = "default_max_package_bytes")]
    pub max_package_bytes: u64,
    /// Frames the new model scores beside the serving one before the switch.
    #[serde(default = "default_shadow_frames")]
    pub shadow_frames: u32,
    /// Frames watched after the switch; past a threshold the agent rolls back.
    #[serde(default = "default_watch_frames")]
    pub watch_frames: u32,
    /// Roll back when the share of frames selected for review rises by more than
    /// this (absolute, 0..1) over the old model's share in the shadow window.
    #[serde(default = "default_max_selected_increase")]
    pub max_selected_increase: f64,
    /// Roll back when the mean top-1 confidence falls by more than this (absolute).
    #[serde(default = "default_max_confidence_drop")]
    pub max_confidence_drop: f64,
}

fn default_max_package_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_shadow_frames() -> u32 {
    50
}
fn default_watch_frames() -> u32 {
    200
}
fn default_max_selected_increase() -> f64 {
    0.25
}
fn default_max_confidence_drop() -> f64 {
    0.2
}

impl Default for UpdateSection {
    fn default() -> Self {
        UpdateSection {
            trusted_keys: Vec::new(),
            max_package_bytes: default_max_package_bytes(),
            shadow_frames: default_shadow_frames(),
            watch_frames: default_watch_frames(),
            max_selected_increase: default_max_selected_increase(),
            max_confidence_drop: default_max_confidence_drop(),
        }
    }
}

impl UpdateSection {
    pub fn lifecycle(&self) -> LifecycleConfig {
        LifecycleConfig {
            shadow_frames: self.shadow_frames,
            watch_frames: self.watch_frames,
            max_selected_increase: self.max_selected_increase,
            max_confidence_drop: self.max_confidence_drop,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("update.max_selected_increase", self.max_selected_increase),
            ("update.max_confidence_drop", self.max_confidence_drop),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be within 0..=1, not {v}"));
            }
        }
        if self.max_package_bytes == 0 {
            return Err("update.max_package_bytes must be above 0".into());
        }
        Ok(())
    }

    /// Reads every trusted key; an unreadable or malformed one is an error naming it.
    pub fn load_keys(&self) -> Result<Vec<protocol::package::TrustedKey>, String> {
        self.trusted_keys
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("cannot read update.trusted_keys {}: {e}", path.display())
                })?;
                protocol::package::TrustedKey::parse(&text)
                    .map_err(|e| format!("update.trusted_keys {}: {e}", path.display()))
            })
            .collect()
    }
}
