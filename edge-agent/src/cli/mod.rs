//! Command-line interface: argument definitions and one module per subcommand.

pub mod classify;
pub mod daemon;
pub mod eval;
pub mod model;
pub mod outbox;
pub mod retrain;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::inference::{BackendChoice, BackendKind, BackendOptions};
use crate::model::{find_default_manifest, ModelError, ModelPackage};

#[derive(Debug, Parser)]
#[command(
    name = "edge-agent",
    version,
    about = "Classifies camera and file frames with a TFLite model and sends uncertain ones for human review"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify image files (or folders of them) and print the top labels.
    Classify(classify::ClassifyArgs),
    /// Run the device daemon (sources -> classify -> review policy -> outbox -> MQTT).
    Run(daemon::ConfigArgs),
    /// Validate a config file (and the model and TLS files it names), then exit.
    CheckConfig(daemon::ConfigArgs),
    /// Print an annotated example config.
    PrintDefaultConfig,
    /// Inspect and repair the outbox (the daemon must be stopped).
    Outbox(outbox::OutboxArgs),
    /// Evaluates the model on labelled frames: accuracy, per-class metrics, calibration
    /// and the review-budget curve (terminal, --json, --report DIR).
    Eval(eval::EvalArgs),
    /// Fine-tunes the model's last layer on reviewed frames and writes a new model
    /// package, with a promote / keep-parent verdict (exit 3 when kept).
    Retrain(retrain::RetrainArgs),
    /// Signed model packages (keygen, sign, verify) and this device's installed
    /// models (status, rollback).
    Model(model::ModelArgs),
    /// Internal: load `--litert-library` and run the model's self-test, exit 0 or 1
    /// with the reason (`auto` runs this in a child process first, see
    /// `inference::litert_probe`).
    #[command(name = "litert-probe", hide = true)]
    LitertProbe(ModelArgs),
}

/// `edge-agent litert-probe`: the child side of `inference::litert_probe`.
pub fn litert_probe(args: ModelArgs) -> anyhow::Result<i32> {
    let Some(library) = args.litert_library.as_deref() else {
        anyhow::bail!("litert-probe needs --litert-library");
    };
    let package = args.load()?;
    match crate::inference::probe_litert_here(&package, &args.backend_options(), library) {
        Ok(()) => Ok(0),
        Err(why) => {
            eprintln!("edge-agent: {why}");
            Ok(1)
        }
    }
}

/// Options shared by every command that loads a model.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model manifest (TOML). Default: $EDGE_AGENT_MODEL, ./models/dogs_mobilenetv2.toml,
    /// the workspace's models/, /usr/share/edge-a2i/models/.
    #[arg(long, value_name = "MANIFEST")]
    pub model: Option<PathBuf>,
    /// Inference threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Inference backend: auto (LiteRT/XNNPACK if libLiteRt.so loads and passes the
    /// model's self-test, else tflite), tflite, or litert (an error if unusable).
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,
    /// libLiteRt.so to use. Default: $EDGE_AGENT_LITERT_LIB, beside the executable,
    /// /usr/lib/edge-a2i/.
    #[arg(long, value_name = "PATH")]
    pub litert_library: Option<PathBuf>,
}

impl ModelArgs {
    pub fn load(&self) -> Result<ModelPackage, ModelError> {
        let path = match &self.model {
            Some(p) => p.clone(),
            None => find_default_manifest()?,
        };
        ModelPackage::load(&path)
    }

    pub fn backend_options(&self) -> BackendOptions {
        BackendOptions {
            threads: self.threads as usize,
        }
    }

    pub fn backend_choice(&self) -> BackendChoice {
        BackendChoice {
            kind: self.backend,
            library: self.litert_library.clone(),
        }
    }
}

/// Labelled frames for `eval` and `retrain` (see [`crate::finetune::dataset`]).
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Class folders (`<dir>/<label>/<image>`) or augmented manifests (JSON lines).
    #[arg(long = "data", value_name = "DIR|MANIFEST", required = true)]
    pub sources: Vec<PathBuf>,
    /// The manifests' label attribute (`cloud-relay`'s `results.label_attribute`).
    #[arg(long, default_value = protocol::manifest::DEFAULT_ATTRIBUTE)]
    pub label_attribute: String,
    /// Where `s3://bucket/key` images are read from: a directory laid out
    /// `<DIR>/<bucket>/<key>` (local mode's `local-mode/objects`, or a synced copy of the bucket).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Go on past missing or undecodable images, counting them.
    #[arg(long)]
    pub skip_bad: bool,
}

impl DataArgs {
    pub fn store(&self) -> crate::finetune::dataset::ImageStore {
        crate::finetune::dataset::ImageStore {
            dir: self.store.clone(),
        }
    }
}

/// Expands folders into the image files they hold (sorted, not recursive; hidden
/// files such as `._photo.jpg` skipped, as the daemon's folder source skips them);
/// files are kept as given, whatever their name, so a bad file gets a precise error.
pub fn expand_paths(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && is_image_name(p)
                        && !p.file_name().is_some_and(crate::source::is_hidden)
                })
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Whether a file name has an image extension (jpg, jpeg, png; any case).
pub fn is_image_name(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        .unwrap_or(false)
}
