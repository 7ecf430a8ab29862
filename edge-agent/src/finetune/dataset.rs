//! Labelled frames for `eval` and `retrain`, from two kinds of source:
//!
//! - a folder per class: `<dir>/<label>/<image>` (JPEG or PNG; other files and
//!   deeper folders are ignored, hidden folders too);
//! - a SageMaker Ground Truth augmented manifest (JSON lines, as `cloud-relay manifest
//!   export` writes it), whose `source-ref` is a local path (relative to the manifest
//!   file) or an `s3://bucket/key` URI. `s3://` images are read from a local object
//!   store directory (`--store DIR`, laid out `<DIR>/<bucket>/<key>` as local mode's
//!   `local-mode/objects` is); for AWS S3, `aws s3 sync` the bucket's events prefix into such a
//!   directory first (the device build carries no S3 client).
//!
//! The label of a manifest row is its `<attribute>-metadata.class-name`; the answer
//! [`NONE_OF_THESE`] is kept as a negative ([`Target::NoneOfThese`]). Every error names
//! the file and line at fault.

use std::path::{Path, PathBuf};

use protocol::a2i::NONE_OF_THESE;
use protocol::manifest::ManifestRow;

use super::FinetuneError;
use crate::cli::is_image_name;

/// What a reviewer (or a folder name) says a frame shows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Label(String),
    /// "none of these": the frame shows none of the classes offered.
    NoneOfThese,
}

/// One labelled frame.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledFrame {
    /// The image file to read.
    pub path: PathBuf,
    pub target: Target,
    /// Where the label came from, for errors: `file:line` or the folder.
    pub origin: String,
}

/// Where images named `s3://bucket/key` are read from.
#[derive(Debug, Clone, Default)]
pub struct ImageStore {
    pub dir: Option<PathBuf>,
}

impl ImageStore {
    fn resolve(
        &self,
        source_ref: &str,
        manifest_dir: &Path,
        origin: &str,
    ) -> Result<PathBuf, FinetuneError> {
        if source_ref.starts_with("s3://") {
            let Some(dir) = &self.dir else {
                return Err(FinetuneError::Data(format!(
                    "{origin}: image {source_ref} is in S3: pass --store DIR, a local copy laid out <DIR>/<bucket>/<key> (local mode's local-mode/objects, or `aws s3 sync` of the bucket)"
                )));
            };
            // The key's segments become path components under the store: none may
            // be empty, "." or "..", nor the bucket, so no URI leaves the store.
            let usable = protocol::json::parse_s3_uri(source_ref).filter(|(bucket, key)| {
                !matches!(*bucket, "." | "..")
                    && key.split('/').all(|s| !matches!(s, "" | "." | ".."))
            });
            let Some((bucket, key)) = usable else {
                return Err(FinetuneError::Data(format!(
                    "{origin}: source-ref {source_ref:?} is not an s3://bucket/key URI this store can hold"
                )));
            };
            return Ok(dir.join(bucket).join(key));
        }
        let path = source_ref.strip_prefix("file://").unwrap_or(source_ref);
        Ok(manifest_dir.join(path))
    }
}

/// Reads every source: a directory is a folder per class, a file an augmented
/// manifest with label attribute `attribute`.
pub fn load(
    sources: &[PathBuf],
    attribute: &str,
    store: &ImageStore,
) -> Result<Vec<LabelledFrame>, FinetuneError> {
    let mut frames = Vec::new();
    for source in sources {
        if !source.exists() {
            return Err(FinetuneError::Data(format!(
                "{}: no such file or folder (expected a class folder or an augmented manifest)",
                source.display()
            )));
        }
        if source.is_dir() {
            frames.extend(from_folders(source)?);
        } else {
            frames.extend(from_manifest(source, attribute, store)?);
        }
    }
    Ok(frames)
}

/// `<dir>/<label>/<image>`, labels and files in name order.
pub fn from_folders(dir: &Path) -> Result<Vec<LabelledFrame>, FinetuneError> {
    let io = |e: std::io::Error| FinetuneError::Io {
        what: format!("listing {}", dir.display()),
        source: e,
    };
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !is_hidden(p))
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Err(FinetuneError::Data(format!(
            "{}: no class folders in it (expected <dir>/<label>/<image>)",
            dir.display()
        )));
    }
    let mut frames = Vec::new();
    for class in classes {
        let label = class
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                FinetuneError::Data(format!("{}: folder name is not UTF-8", class.display()))
            })?
            .to_string();
        check_label(&label, &class.display().to_string())?;
        let mut images: Vec<PathBuf> = std::fs::read_dir(&class)
            .map_err(|e| FinetuneError::Io {
                what: format!("listing {}", class.display()),
                source: e,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image_name(p) && !is_hidden(p))
            .collect();
        images.sort();
        let target = if label == NONE_OF_THESE {
            Target::NoneOfThese
        } else {
            Target::Label(label)
        };
        frames.extend(images.into_iter().map(|path| LabelledFrame {
            origin: class.display().to_string(),
            path,
            target: target.clone(),
        }));
    }
    Ok(frames)
}

/// The rows of an augmented manifest.
pub fn from_manifest(
    file: &Path,
    attribute: &str,
    store: &ImageStore,
) -> Result<Vec<LabelledFrame>, FinetuneError> {
    let text = std::fs::read_to_string(file).map_err(|e| FinetuneError::Io {
        what: format!("reading manifest {}", file.display()),
        source: e,
    })?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut frames = Vec::new();
    // A byte-order mark is not JSON, but some editors write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let origin = format!("{}:{}", file.display(), n + 1);
        let row = ManifestRow::parse_local_or_s3(line, attribute).map_err(|e| {
            FinetuneError::Data(format!(
                "{origin}: {e} (label attribute {attribute:?}; another one is chosen with --label-attribute)"
            ))
        })?;
        let name = row.metadata.class_name;
        check_label(&name, &origin)?;
        let target = if name == NONE_OF_THESE {
            Target::NoneOfThese
        } else {
            Target::Label(name)
        };
        frames.push(LabelledFrame {
            path: store.resolve(&row.source_ref, dir, &origin)?,
            target,
            origin,
        });
    }
    Ok(frames)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().is_some_and(crate::source::is_hidden)
}

/// A class name must survive a round trip through a labels file (one per line,
/// trimmed): non-empty, no surrounding whitespace, no control characters.
fn check_label(label: &str, origin: &str) -> Result<(), FinetuneError> {
    let problem = if label.is_empty() {
        "it is empty"
    } else if label.trim() != label {
        "it starts or ends with whitespace"
    } else if label.chars().any(char::is_control) {
        "it contains a control character (a newline?)"
    } else {
        return Ok(());
    };
    Err(FinetuneError::Data(format!(
        "{origin}: label {label:?} cannot be a class name: {problem}"
    )))
}
