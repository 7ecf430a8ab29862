//! The model manifest: a TOML file beside the model that says everything the agent
//! needs to run it without guessing (input size, layout, colour order, normalization,
//! labels, the model file's sha256 and a self-test vector). Parsing and validation
//! only; loading the files it names is `package.rs`'s job.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// The only manifest format this build understands.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    pub format: u32,
    pub model: ModelSection,
    pub input: InputSection,
    pub output: OutputSection,
    pub self_test: Option<SelfTestSection>,
    /// Where a fine-tuned model came from; absent on a model trained elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<LineageSection>,
}

/// A fine-tuned model's parent, training data and fit (written by `retrain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageSection {
    pub parent_name: String,
    pub parent_version: String,
    /// Lowercase hex sha256 of the parent's model file.
    pub parent_sha256: String,
    /// sha256 over the sorted `label<TAB>image sha256` lines of the frames fitted on.
    pub training_data_sha256: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub frames_trained: u64,
    pub frames_replayed: u64,
    pub frames_held_out: u64,
    /// Labels this model added to its parent's.
    pub new_classes: Vec<String>,
    pub fit_iterations: u64,
    pub fit_objective_start: f64,
    pub fit_objective_end: f64,
    /// ‖θ − θ_parent‖ / ‖θ_parent‖ over the last layer.
    pub fit_relative_change: f64,
    /// The promotion gate's "promote" or "keep parent", and why.
    pub decision: String,
    pub decision_reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub name: String,
    pub version: String,
    /// The .tflite file, relative to the manifest.
    pub file: String,
    /// Lowercase hex sha256 of the model file.
    pub sha256: String,
    /// One label per line, in output order, relative to the manifest.
    pub labels: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nhwc,
    Nchw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Float32,
    Uint8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeFilter {
    /// Antialiased bilinear (a triangle filter widened by the scale), as Pillow's
    /// `Image.resize(..., BILINEAR)` that most training pipelines used.
    Bilinear,
    Nearest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    pub width: u32,
    pub height: u32,
    pub channels: u32,
    pub layout: Layout,
    pub dtype: DType,
    pub color: ColorOrder,
    pub resize: ResizeFilter,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    Probabilities,
    Logits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    pub dtype: DType,
    pub scores: ScoreKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfTestSection {
    /// A float32 little-endian input tensor file, relative to the manifest.
    pub input: String,
    /// The scores the reference interpreter gives for it.
    pub scores: Vec<f32>,
    /// Largest allowed absolute difference per score.
    pub tolerance: f32,
}

impl ModelManifest {
    /// Parses and validates a manifest; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ModelError> {
        let manifest: ModelManifest =
            toml::from_str(text).map_err(|e| ModelError::ManifestSyntax {
                path: origin.to_path_buf(),
                message: e.to_string(),
            })?;
        manifest
            .validate()
            .map_err(|message| ModelError::ManifestInvalid {
                path: origin.to_path_buf(),
                message,
            })?;
        Ok(manifest)
    }

    /// Checks what TOML types cannot: ranges, formats and the combinations the
    /// preprocessing supports. The message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != MANIFEST_FORMAT {
            return Err(format!(
                "format = {} is not supported (this edge-agent reads format {MANIFEST_FORMAT})",
                self.format
            ));
        }
        if self.model.name.trim().is_empty() {
            return Err("model.name is empty".into());
        }
        if self.model.version.trim().is_empty() {
            return Err("model.version is empty".into());
        }
        let sha = &self.model.sha256;
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(format!(
                "model.sha256 must be 64 lowercase hex digits, got {sha:?}"
            ));
        }
        let input = &self.input;
        if !(1..=4096).contains(&input.width) || !(1..=4096).contains(&input.height) {
            return Err(format!(
                "input.width and input.height must be within 1..=4096, got {}x{}",
                input.width, input.height
            ));
        }
        if input.channels != 3 {
            return Err(format!(
                "input.channels must be 3 (RGB/BGR), got {}",
                input.channels
            ));
        }
        if input.layout != Layout::Nhwc {
            return Err("input.layout: only \"nhwc\" is supported".into());
        }
        if input.dtype != DType::Float32 {
            return Err("input.dtype: only \"float32\" is supported".into());
        }
        if let Some(i) = input.std.iter().position(|s| !s.is_finite() || *s == 0.0) {
            return Err(format!("input.std[{i}] must be a finite non-zero number"));
        }
        if let Some(i) = input.mean.iter().position(|m| !m.is_finite()) {
            return Err(format!("input.mean[{i}] must be a finite number"));
        }
        if self.output.dtype != DType::Float32 {
            return Err("output.dtype: only \"float32\" is supported".into());
        }
        if let Some(test) = &self.self_test {
            if test.scores.is_empty() {
                return Err("self_test.scores is empty".into());
            }
            if !(test.tolerance.is_finite() && test.tolerance > 0.0) {
                return Err(format!(
                    "self_test.tolerance must be > 0, got {}",
                    test.tolerance
                ));
            }
        }
        Ok(())
    }

    /// Number of f32 values in one input tensor.
    pub fn input_len(&self) -> usize {
        (self.input.width * self.input.height * self.input.channels) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/dogs_mobilenetv2.toml"
        );
        std::fs::read_to_string(path).unwrap()
    }

    fn parse(text: &str) -> Result<ModelManifest, ModelError> {
        ModelManifest::parse(text, Path::new("m.toml"))
    }

    #[test]
    fn shipped_manifest_parses() {
        let m = parse(&shipped()).unwrap();
        assert_eq!((m.input.width, m.input.height), (160, 160));
        assert_eq!(m.self_test.unwrap().scores.len(), 19);
    }

    #[test]
    fn unknown_field_is_named() {
        let text = shipped().replace("[input]", "[input]\nwidht = 3");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("widht"), "{err}");
        assert!(err.contains("m.toml"), "{err}");
    }

    #[test]
    fn bad_sha256_is_refused() {
        let text = shipped().replace("a64f55ab", "A64F55AB");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("model.sha256"), "{err}");
    }

    #[test]
    fn zero_std_is_refused() {
        let text = shipped().replace("std = [127.5, 127.5, 127.5]", "std = [127.5, 0.0, 127.5]");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("input.std[1]"), "{err}");
    }

    #[test]
    fn newer_format_is_refused() {
        let text = shipped().replace("format = 1", "format = 2");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("format = 2 is not supported"), "{err}");
    }
}
