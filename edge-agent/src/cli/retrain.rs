//! `edge-agent retrain --data ... --out DIR`: fine-tunes the model's last layer on
//! reviewed frames and writes a new model package with a promotion verdict. See
//! [`crate::finetune`]. Exit status 0 when the candidate is promoted, 3 when the gate
//! keeps the parent, 4 when it was promoted with nothing held out to check it on (the
//! package is written in every case, its verdict in its `[lineage]`).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::eval::share;
use super::{DataArgs, ModelArgs};
use crate::finetune::fit::FitOptions;
use crate::finetune::retrain::{retrain, RetrainOptions, RetrainReport};

/// Exit status when the gate keeps the parent.
pub const KEEP_PARENT_EXIT: i32 = 3;
/// Exit status when the candidate is promoted without a gate (nothing was held out:
/// too few frames per class and no `--holdout`), so a `retrain && deploy` script
/// does not ship an unchecked model.
pub const UNGATED_EXIT: i32 = 4;

#[derive(Debug, Args)]
pub struct RetrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Directory for the new model package (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Extra held-out set for the promotion gate (class folder or manifest; repeatable).
    #[arg(long, value_name = "DIR|MANIFEST")]
    pub holdout: Vec<PathBuf>,
    /// Unreviewed frames (images or folders of them, e.g. recent frames of the
    /// device) whose current scores the new model must keep where no reviewer
    /// looked (repeatable).
    #[arg(long, value_name = "PATH")]
    pub anchor: Vec<PathBuf>,
    /// Largest held-out accuracy loss (0..=1) a promoted candidate may have.
    #[arg(long, default_value_t = 0.02, value_parser = share)]
    pub max_regression: f64,
    /// Share of each class's frames held out for the gate (at least one per class is
    /// always trained on).
    #[arg(long, default_value_t = 0.2, value_parser = share)]
    pub holdout_fraction: f64,
    /// Seed of the held-out split.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Version of the new model (default: the parent's with its last number plus one).
    #[arg(long)]
    pub version: Option<String>,
    /// Train "none of these" as a class of its own instead of as negatives.
    #[arg(long)]
    pub none_as_class: bool,
    /// Pull of the fit toward the parent's layer (λ).
    #[arg(long, default_value_t = FitOptions::default().l2_to_parent, value_parser = non_negative)]
    pub l2: f32,
    /// One JSON document on stdout instead of text; no progress bar.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RetrainArgs) -> anyhow::Result<i32> {
    let package = args.model.load()?;
    let options = RetrainOptions {
        data: args.data.sources.clone(),
        holdout: args.holdout.clone(),
        anchors: args.anchor.clone(),
        attribute: args.data.label_attribute.clone(),
        store: args.data.store(),
        out: args.out.clone(),
        version: args.version.clone(),
        seed: args.seed,
        holdout_fraction: args.holdout_fraction,
        max_regression: args.max_regression,
        skip_bad: args.data.skip_bad,
        none_as_class: args.none_as_class,
        fit: FitOptions {
            l2_to_parent: args.l2,
            ..FitOptions::default()
        },
        backend: args.model.backend_options(),
        choice: args.model.backend_choice(),
        quiet: args.json,
    };
    let report = retrain(&package, &options)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        print_report(&mut out, &report)?;
    }
    Ok(match (report.gate.promote, report.gate.gated) {
        (true, true) => 0,
        (true, false) => UNGATED_EXIT,
        (false, _) => KEEP_PARENT_EXIT,
    })
}

fn print_report(out: &mut impl Write, r: &RetrainReport) -> std::io::Result<()> {
    writeln!(out, "parent:     {} (backend {})", r.parent, r.backend)?;
    writeln!(
        out,
        "frames:     {} trained, {} held out (together: {} new, {} from the parent's replay set); {} anchors, {} skipped, {} met twice (newest label kept)",
        r.frames_trained,
        r.frames_held_out,
        r.frames_trained + r.frames_held_out - r.frames_replayed,
        r.frames_replayed,
        r.anchors,
        r.frames_skipped,
        r.frames_duplicate
    )?;
    if !r.new_classes.is_empty() {
        writeln!(out, "new classes: {}", r.new_classes.join(", "))?;
    }
    writeln!(
        out,
        "fit:        {} iterations, objective {:.4} -> {:.4}, layer changed {:.2}%",
        r.fit.iterations,
        r.fit.initial_objective,
        r.fit.final_objective,
        r.fit.relative_change * 100.0
    )?;
    writeln!(out, "\nreviewed frames, classified again:")?;
    writeln!(
        out,
        "  {:<40} {:<22} {:<28} {:<28}",
        "file", "reviewers said", "parent", "candidate"
    )?;
    for f in &r.frames {
        let name = std::path::Path::new(&f.file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        writeln!(
            out,
            "  {:<40} {:<22} {:<28} {:<28}{}",
            name,
            f.label,
            format!("{} {:.2}", f.parent.0, f.parent.1),
            format!("{} {:.2}", f.candidate.0, f.candidate.1),
            if f.held_out { "  (held out)" } else { "" }
        )?;
    }
    writeln!(
        out,
        "\npromotion gate (max regression {:.1} points):",
        r.gate.max_regression * 100.0
    )?;
    for s in &r.gate.sets {
        writeln!(
            out,
            "  {:<40} {:>5} frames  parent {:>5.1}%  candidate {:>5.1}%",
            s.name,
            s.frames,
            s.parent_accuracy * 100.0,
            s.candidate_accuracy * 100.0
        )?;
    }
    writeln!(
        out,
        "decision:   {}: {}",
        r.gate.decision.to_uppercase(),
        r.gate.reason
    )?;
    writeln!(
        out,
        "package:    {} (version {})",
        r.manifest.display(),
        r.version
    )?;
    writeln!(
        out,
        "time:       {:.2} s (embedding {:.2} s, fit {:.2} s)",
        r.total_seconds, r.embedding_seconds, r.fit_seconds
    )
}

fn non_negative(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not a finite number >= 0"))
    }
}
