//! The replay set a model package carries: the embeddings and labels of the frames
//! its layer was fitted on (`replay.json` + `replay.f32` beside the manifest), so the
//! next `retrain` fits on the new frames *and* the earlier ones, and a class reviewed
//! last month is not forgotten this month. Embeddings rather than images: 5 KiB a
//! frame, nothing to decode, and no reviewed photo copied onto every device. A "none
//! of these" frame is stored with the label `null`. At most [`MAX_FRAMES`] are kept,
//! the newest.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::FinetuneError;
use crate::model::{f32_from_le_bytes, f32_to_le_bytes};

pub const JSON_FILE: &str = "replay.json";
pub const DATA_FILE: &str = "replay.f32";
pub const MAX_FRAMES: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Index {
    features: usize,
    frames: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    label: Option<String>,
    image_sha256: String,
}

/// One remembered frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayFrame {
    /// `None`: "none of these".
    pub label: Option<String>,
    pub image_sha256: String,
    pub embedding: Vec<f32>,
}

/// Reads the replay set beside a manifest; an absent one is empty.
pub fn load(dir: &Path, features: usize) -> Result<Vec<ReplayFrame>, FinetuneError> {
    let json_path = dir.join(JSON_FILE);
    if !json_path.exists() {
        return Ok(Vec::new());
    }
    let bad = |message: String| {
        FinetuneError::Data(format!("replay set {}: {message}", json_path.display()))
    };
    let io = |what: &Path| {
        let what = format!("reading {}", what.display());
        move |source| FinetuneError::Io { what, source }
    };
    let text = std::fs::read_to_string(&json_path).map_err(io(&json_path))?;
    let index: Index = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if index.features != features {
        return Err(bad(format!(
            "its embeddings have {} features, the model's layer takes {features}",
            index.features
        )));
    }
    let data_path = dir.join(DATA_FILE);
    let bytes = std::fs::read(&data_path).map_err(io(&data_path))?;
    if bytes.len() != index.frames.len() * features * 4 {
        return Err(bad(format!(
            "{} holds {} bytes, {} frames of {features} floats need {}",
            data_path.display(),
            bytes.len(),
            index.frames.len(),
            index.frames.len() * features * 4
        )));
    }
    let floats = f32_from_le_bytes(&bytes);
    Ok(index
        .frames
        .into_iter()
        .zip(floats.chunks_exact(features.max(1)))
        .map(|(e, x)| ReplayFrame {
            label: e.label,
            image_sha256: e.image_sha256,
            embedding: x.to_vec(),
        })
        .collect())
}

/// Writes the replay set into `dir` (the newest [`MAX_FRAMES`] of `frames`).
pub fn save(dir: &Path, features: usize, frames: &[ReplayFrame]) -> Result<(), FinetuneError> {
    let frames = &frames[frames.len().saturating_sub(MAX_FRAMES)..];
    let index = Index {
        features,
        frames: frames
            .iter()
            .map(|f| Entry {
                label: f.label.clone(),
                image_sha256: f.image_sha256.clone(),
            })
            .collect(),
    };
    let data: Vec<u8> = frames
        .iter()
        .flat_map(|f| f32_to_le_bytes(&f.embedding))
        .collect();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| FinetuneError::Io {
            what: format!("writing {}", path.display()),
            source,
        })
    };
    write(DATA_FILE, &data)?;
    write(
        JSON_FILE,
        serde_json::to_string(&index)
            .expect("plain data")
            .as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_refuses_a_truncated_data_file() {
        let dir = tempfile::tempdir().unwrap();
        let frames = vec![
            ReplayFrame {
                label: Some("pug".into()),
                image_sha256: "aa".into(),
                embedding: vec![1.0, 2.0],
            },
            ReplayFrame {
                label: None,
                image_sha256: "bb".into(),
                embedding: vec![3.0, 4.0],
            },
        ];
        save(dir.path(), 2, &frames).unwrap();
        assert_eq!(load(dir.path(), 2).unwrap(), frames);
        let e = load(dir.path(), 3).unwrap_err().to_string();
        assert!(e.contains("2 features") && e.contains("takes 3"), "{e}");
        std::fs::write(dir.path().join(DATA_FILE), [0u8; 5]).unwrap();
        let e = load(dir.path(), 2).unwrap_err().to_string();
        assert!(e.contains("holds 5 bytes"), "{e}");
    }

    #[test]
    fn no_replay_set_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), 4).unwrap().is_empty());
    }
}
