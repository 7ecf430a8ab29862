//! `edge-agent eval DATA...`: metrics of the model on labelled frames (class folders
//! or augmented manifests), as a terminal report, `--json`, and/or a static HTML
//! report (`--report DIR`). See [`crate::evaluate`].

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{DataArgs, ModelArgs};
use crate::config::AgentConfig;
use crate::evaluate::{evaluate, report, report_context};
use crate::finetune::{dataset, progress_bar};
use crate::inference::select_backend;
use crate::pipeline::Classifier;
use crate::policy::PolicyConfig;

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Share of the model's mistakes that review should catch: the report names the
    /// confidence threshold that does, and what it costs. 0..=1.
    #[arg(long, default_value_t = 0.9, value_parser = share)]
    pub catch: f64,
    /// The agent config whose `[policy]` gives the "current policy" point (default:
    /// the default policy).
    #[arg(long, value_name = "AGENT_TOML")]
    pub config: Option<PathBuf>,
    /// Write a static HTML report (index.html, inline SVG plots) into this directory.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// One JSON document on stdout instead of the terminal report; no progress bar.
    #[arg(long)]
    pub json: bool,
    /// Send the N frames the model got wrong or was least sure about (mistakes
    /// first, least confident first) to human review: copied into the review-requests
    /// folder of the agent `--config` names, from which the running agent sends them
    /// like live frames (reason `requested`), so they become human loops and manifest
    /// rows like any other.
    #[arg(long, value_name = "N", requires = "config")]
    pub review: Option<usize>,
}

pub fn share(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not within 0..=1"))
    }
}

pub fn run(args: EvalArgs) -> anyhow::Result<i32> {
    let package = args.model.load()?;
    let agent = args.config.as_deref().map(AgentConfig::load).transpose()?;
    let policy = agent
        .as_ref()
        .map(|a| a.policy.clone())
        .unwrap_or_else(PolicyConfig::default);
    let frames = dataset::load(
        &args.data.sources,
        &args.data.label_attribute,
        &args.data.store(),
    )?;
    if frames.is_empty() {
        anyhow::bail!("no labelled frames in {:?}", args.data.sources);
    }
    let loaded = select_backend(
        &package,
        &args.model.backend_options(),
        &args.model.backend_choice(),
    )?;
    if !args.json {
        eprintln!(
            "edge-agent: inference backend {}: {}",
            loaded.selection.backend, loaded.selection.reason
        );
    }
    let mut classifier = Classifier::new(loaded, package.labels.clone(), 1);
    let progress = progress_bar(frames.len() as u64, "evaluating", args.json);
    let evaluation = evaluate(
        &mut classifier,
        &package.display_name(),
        &package.manifest.input,
        &frames,
        &policy,
        args.catch,
        args.data.skip_bad,
        &progress,
    )?;
    progress.finish_and_clear();
    let dataset_name = args
        .data
        .sources
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let context = report_context(&evaluation, &dataset_name);
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let page = report::html(&evaluation.metrics, &context)?;
        let path = dir.join("index.html");
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        if !args.json {
            eprintln!("edge-agent: HTML report written to {}", path.display());
        }
    }
    let requested = match (args.review, &agent) {
        (Some(n), Some(agent)) => {
            let dir = agent.review_requests_dir();
            let written = request_reviews(&evaluation, n, &dir)?;
            if !args.json {
                eprintln!(
                    "edge-agent: {} frames queued for human review in {} (the running agent sends them)",
                    written.len(),
                    dir.display()
                );
            }
            written
        }
        _ => Vec::new(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let mut value = serde_json::to_value(&evaluation)?;
        // Shown escaped: a file name need not be UTF-8 (protocol::file_name).
        let shown: Vec<String> = requested
            .iter()
            .map(|p| protocol::file_name::escaped_path(p))
            .collect();
        value["review_requested"] = serde_json::json!(shown);
        writeln!(out, "{value}")?;
    } else {
        write!(out, "{}", report::terminal(&evaluation.metrics, &context))?;
        if evaluation.none_of_these > 0 {
            writeln!(
                out,
                "({} \"none of these\" frames left out)",
                evaluation.none_of_these
            )?;
        }
        if evaluation.skipped > 0 {
            writeln!(out, "({} unusable images skipped)", evaluation.skipped)?;
        }
    }
    Ok(0)
}

/// Copies the `n` frames most worth a reviewer's time into `dir`: mistakes first,
/// then the rest, each group least confident first. Each file is written under a
/// hidden name and renamed, so the agent's folder source never reads half a file.
/// Returns the paths written.
fn request_reviews(
    evaluation: &crate::evaluate::Evaluation,
    n: usize,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ranked: Vec<(bool, f32, &crate::evaluate::FramePrediction)> = evaluation
        .predictions
        .iter()
        .map(|p| {
            let top = crate::inference::argmax(&p.scores);
            let confidence = p.scores.get(top).copied().unwrap_or(0.0);
            (top == p.truth, confidence, p)
        })
        .collect();
    ranked.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(a.1.total_cmp(&b.1))
            .then(a.2.path.cmp(&b.2.path))
    });
    let mut written = Vec::new();
    for (_, _, p) in ranked.into_iter().take(n) {
        let source = p.path.as_path();
        let bytes = std::fs::read(source).with_context(|| format!("reading {}", p.file))?;
        // The name's own bytes (any name the file system allows); the content hash
        // keeps two files of the same name apart.
        let mut name =
            std::ffi::OsString::from(format!("eval-{}-", &protocol::sha256_hex(&bytes)[..12]));
        name.push(source.file_name().unwrap_or_default());
        let target = dir.join(&name);
        let mut hidden = std::ffi::OsString::from(".");
        hidden.push(&name);
        hidden.push(".part");
        let part = dir.join(hidden);
        std::fs::write(&part, &bytes).with_context(|| format!("writing {}", part.display()))?;
        std::fs::rename(&part, &target)
            .with_context(|| format!("renaming {} to {}", part.display(), target.display()))?;
        written.push(target);
    }
    Ok(written)
}
