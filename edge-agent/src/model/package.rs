//! A model package on disk: manifest + model file + labels (+ self-test input),
//! loaded and checked against each other before any backend sees the model.

use std::path::{Path, PathBuf};

use protocol::sha256_hex;

use super::{ModelError, ModelManifest};

/// A model whose files were read and found to match their manifest.
#[derive(Debug, Clone)]
pub struct ModelPackage {
    pub manifest: ModelManifest,
    pub manifest_path: PathBuf,
    pub model_path: PathBuf,
    pub labels: Vec<String>,
    /// The self-test input tensor, when the manifest has one.
    pub self_test_input: Option<Vec<f32>>,
}

/// The TFLite FlatBuffer file identifier, stored at byte offset 4.
const TFLITE_IDENTIFIER: &[u8; 4] = b"TFL3";

impl ModelPackage {
    pub fn load(manifest_path: &Path) -> Result<Self, ModelError> {
        let text = read_to_string(manifest_path, "model manifest")?;
        let manifest = ModelManifest::parse(&text, manifest_path)?;
        let dir = manifest_path.parent().unwrap_or(Path::new("."));

        let model_path = dir.join(&manifest.model.file);
        // Checked here so a bad model is refused at start whatever the backend; the
        // mapping is dropped again (a backend maps or reads the file again, see
        // `map_model`), which keeps one copy of the weights in memory instead of two.
        map_verified(&model_path, &manifest.model.sha256)?;

        let labels_path = dir.join(&manifest.model.labels);
        let labels = parse_labels(&labels_path, &read_to_string(&labels_path, "labels file")?)?;

        let self_test_input = match &manifest.self_test {
            None => None,
            Some(test) => {
                let path = dir.join(&test.input);
                let bytes = read(&path, "self-test input")?;
                if bytes.len() != manifest.input_len() * 4 {
                    return Err(ModelError::ManifestInvalid {
                        path: manifest_path.to_path_buf(),
                        message: format!(
                            "self_test.input {} has {} bytes, the input tensor needs {}",
                            path.display(),
                            bytes.len(),
                            manifest.input_len() * 4
                        ),
                    });
                }
                if test.scores.len() != labels.len() {
                    return Err(ModelError::ManifestInvalid {
                        path: manifest_path.to_path_buf(),
                        message: format!(
                            "self_test.scores has {} values but there are {} labels",
                            test.scores.len(),
                            labels.len()
                        ),
                    });
                }
                Some(f32_from_le_bytes(&bytes))
            }
        };

        Ok(ModelPackage {
            manifest,
            manifest_path: manifest_path.to_path_buf(),
            model_path,
            labels,
            self_test_input,
        })
    }

    /// Reads the model file and checks it again against the manifest, so a backend
    /// runs exactly the bytes that were verified even if the file changed since.
    pub fn read_model(&self) -> Result<Vec<u8>, ModelError> {
        let bytes = read(&self.model_path, "model file")?;
        verify(&self.model_path, &bytes, &self.manifest.model.sha256)?;
        Ok(bytes)
    }

    /// Maps the model file read-only and checks it against the manifest, like
    /// `read_model` but without copying it onto the heap: see [`MappedModel`].
    pub fn map_model(&self) -> Result<MappedModel, ModelError> {
        map_verified(&self.model_path, &self.manifest.model.sha256)
    }

    /// "name version" for logs and tables.
    pub fn display_name(&self) -> String {
        format!(
            "{} {}",
            self.manifest.model.name, self.manifest.model.version
        )
    }
}

/// Encodes floats as a little-endian f32 tensor file (the inverse of
/// [`f32_from_le_bytes`]).
pub fn f32_to_le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes a little-endian f32 tensor file.
pub fn f32_from_le_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A model file mapped read-only (private, file-backed), verified against its
/// manifest's sha256 after mapping, so the bytes a backend runs are the bytes that
/// were checked.
///
/// Why a mapping rather than a `Vec`: a runtime that repacks the weights for its
/// kernels (XNNPACK does) no longer reads the FlatBuffer's weights once compiled.
/// File-backed pages can then be handed back to the page cache with
/// [`release_resident_pages`](Self::release_resident_pages); heap pages cannot. That
/// is one copy of the weights (8.5 MiB for the default model) less in the agent's
/// resident memory for its whole life.
///
/// Model files are replaced by writing a new file and renaming it over the old one
/// (how `install`, package managers and the agent itself do it): a mapping keeps
/// the inode it was made from, so the verified bytes stay what they were. Writing a
/// model file in place while an agent runs it is not supported (as for any mapped
/// executable code).
pub struct MappedModel {
    map: memmap2::Mmap,
}

impl MappedModel {
    /// Drops the mapping's pages from this process's resident memory. Nothing is
    /// lost: a later read faults them back in from the file. Call it once the
    /// runtime has copied what it needs (after compiling the model).
    pub fn release_resident_pages(&self) {
        // SAFETY: MADV_DONTNEED on a read-only private file mapping that was never
        // written (it cannot be: PROT_READ) only discards clean page-cache-backed
        // pages; the next access reads the same file bytes again.
        let result = unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        };
        if let Err(e) = result {
            tracing::debug!("madvise(MADV_DONTNEED) on the model mapping failed: {e}");
        }
    }
}

impl std::ops::Deref for MappedModel {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

fn map_verified(path: &Path, sha256: &str) -> Result<MappedModel, ModelError> {
    let read_error = |source| ModelError::Read {
        what: "model file",
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let len = file.metadata().map_err(read_error)?.len();
    if len < 8 {
        // Also keeps a zero-length file away from mmap, which refuses it.
        return Err(ModelError::NotTflite {
            path: path.to_path_buf(),
            reason: format!("only {len} bytes long"),
        });
    }
    // SAFETY: a read-only private mapping; see `MappedModel` for why the file is not
    // expected to change under it. Its contents are verified below before any use.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(read_error)?;
    verify(path, &map, sha256)?;
    Ok(MappedModel { map })
}

fn verify(path: &Path, bytes: &[u8], sha256: &str) -> Result<(), ModelError> {
    let actual = sha256_hex(bytes);
    if actual != sha256 {
        return Err(ModelError::Sha256Mismatch {
            path: path.to_path_buf(),
            expected: sha256.to_string(),
            actual,
        });
    }
    check_tflite_header(path, bytes)?;
    Ok(())
}

fn check_tflite_header(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    if bytes.len() < 8 {
        return Err(ModelError::NotTflite {
            path: path.to_path_buf(),
            reason: format!("only {} bytes long", bytes.len()),
        });
    }
    if &bytes[4..8] != TFLITE_IDENTIFIER {
        return Err(ModelError::NotTflite {
            path: path.to_path_buf(),
            reason: format!(
                "no TFL3 FlatBuffer identifier (found {:?} at offset 4)",
                String::from_utf8_lossy(&bytes[4..8])
            ),
        });
    }
    Ok(())
}

fn parse_labels(path: &Path, text: &str) -> Result<Vec<String>, ModelError> {
    let labels: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if labels.is_empty() {
        return Err(ModelError::Labels {
            path: path.to_path_buf(),
            message: "no labels in it".into(),
        });
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
        return Err(ModelError::Labels {
            path: path.to_path_buf(),
            message: format!("label {dup:?} appears twice"),
        });
    }
    Ok(labels)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_to_string(path: &Path, what: &'static str) -> Result<String, ModelError> {
    std::fs::read_to_string(path).map_err(|source| ModelError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// File name of the default model's manifest.
const DEFAULT_MANIFEST: &str = "dogs_mobilenetv2.toml";

/// Where the default model is looked for, in order: `$EDGE_AGENT_MODEL`, `./models/`,
/// the `models/` of the source tree this binary was built from (so `cargo run` and
/// tests work from any directory), and the system install location.
pub fn default_manifest_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("EDGE_AGENT_MODEL") {
        out.push(PathBuf::from(p));
    }
    out.push(Path::new("models").join(DEFAULT_MANIFEST));
    out.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(DEFAULT_MANIFEST),
    );
    out.push(Path::new("/usr/share/edge-a2i/models").join(DEFAULT_MANIFEST));
    out
}

pub fn find_default_manifest() -> Result<PathBuf, ModelError> {
    let candidates = default_manifest_candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| ModelError::NoDefault {
            tried: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}
