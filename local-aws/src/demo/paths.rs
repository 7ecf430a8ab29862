//! Where local mode finds what it runs on: the default model (as edge-agent looks for
//! it) and its labels, the sample frames, and the edge-agent binary.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::MODEL_MANIFEST;

/// The first of `candidates` that exists.
fn first_existing(candidates: Vec<PathBuf>, what: &str) -> anyhow::Result<PathBuf> {
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| {
            let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            anyhow::anyhow!("no {what} found (looked in: {})", list.join(", "))
        })
}

fn source_tree_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The default model's manifest, looked for as edge-agent does.
pub(super) fn model_manifest() -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("EDGE_AGENT_MODEL") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(Path::new("models").join(MODEL_MANIFEST));
    candidates.push(source_tree_models().join(MODEL_MANIFEST));
    candidates.push(Path::new("/usr/share/edge-a2i/models").join(MODEL_MANIFEST));
    let path = first_existing(candidates, "model manifest")?;
    Ok(path.canonicalize()?)
}

/// The model's labels in class-index order, from the labels file its manifest names.
pub(super) fn model_labels(manifest: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let file = doc
        .get("model")
        .and_then(|m| m.get("labels"))
        .and_then(|l| l.as_str())
        .with_context(|| format!("{}: no model.labels", manifest.display()))?;
    let path = manifest.parent().unwrap_or(Path::new(".")).join(file);
    let labels: Vec<String> = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if labels.is_empty() {
        bail!("{}: no labels", path.display());
    }
    Ok(labels)
}

pub(super) fn default_agent_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let bin = exe.with_file_name("edge-agent");
    if !bin.is_file() {
        bail!(
            "{} not found: build it (cargo build -p edge-agent, same profile) or pass --agent-bin",
            bin.display()
        );
    }
    Ok(bin)
}

pub(super) fn default_frames() -> anyhow::Result<PathBuf> {
    first_existing(
        vec![
            Path::new("models").join("samples"),
            source_tree_models().join("samples"),
        ],
        "frames folder (models/samples)",
    )
}
