//! `edge-agent classify FILE...`: top-k labels per file, as a table or JSON lines.
//! A file that cannot be read or decoded gets a one-line error naming it and the
//! others are still classified; the exit status is 1 when any file failed. File names
//! are shown escaped (`source::names`): one that is not UTF-8 keeps every byte visible.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::{expand_paths, ModelArgs};
use crate::inference::select_backend;
use crate::pipeline::{Classifier, Preparer, PreparerOptions};
use crate::source::names::escaped_path;

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Image files (JPEG, PNG) or folders of them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// How many labels to show per file.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub top_k: u16,
    /// One JSON object per line instead of a table: per file `file`, `width`,
    /// `height`, `model`, `backend`, `top_k` [{index, label, score}], `timings_ms`;
    /// a file that could not be classified gets `{"file": ..., "error": "why"}`
    /// instead (and the exit status is 1). Hidden files in folders are skipped.
    #[arg(long)]
    pub json: bool,
    /// Classify the inputs this many times (for throughput measurements).
    #[arg(long, default_value_t = 1, hide = true)]
    pub repeat: u32,
    /// Print per-frame results only for the first pass, then one summary line
    /// (JSON) with frames/s and peak memory. Used by the peer benchmark
    /// (`benches/peer`).
    #[arg(long, hide = true)]
    pub summary: bool,
}

pub fn run(args: ClassifyArgs) -> anyhow::Result<i32> {
    let package = args.model.load()?;
    let loaded = select_backend(
        &package,
        &args.model.backend_options(),
        &args.model.backend_choice(),
    )?;
    // The one log line about the backend: which one runs and why (after a fallback,
    // what was wrong with LiteRT).
    eprintln!(
        "edge-agent: inference backend {}: {}",
        loaded.selection.backend, loaded.selection.reason
    );
    let backend = loaded;
    let files = expand_paths(&args.paths).context("cannot list the input folders")?;
    if files.is_empty() {
        anyhow::bail!("no image files (.jpg, .jpeg, .png) in {:?}", args.paths);
    }
    let mut classifier = Classifier::new(backend, package.labels.clone(), args.top_k as usize);
    let model_name = package.display_name();

    let passes = args.repeat.max(1) as usize;
    let first_pass = files.len();
    let inputs: Vec<PathBuf> = files
        .iter()
        .cycle()
        .take(first_pass * passes)
        .cloned()
        .collect();
    // Classifying needs the tensor, not the pixels: dropping them as soon as the
    // tensor is made keeps a large frame's memory out of the queue.
    let options = PreparerOptions {
        keep_pixels: false,
        ..PreparerOptions::default()
    };
    let mut preparer = Preparer::spawn_with(inputs, &package.manifest.input, &options);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.json && !args.summary {
        writeln!(
            out,
            "model: {model_name} (backend {})",
            classifier.backend_name()
        )?;
    }
    let started = Instant::now();
    let (mut frames, mut failed) = (0usize, 0usize);
    while let Some((path, prepared)) = preparer.next() {
        let show = !args.summary || frames + failed < first_pass;
        let frame = match prepared {
            Ok(frame) => frame,
            Err(e) => {
                failed += 1;
                if show {
                    report_error(&mut out, args.json, &path, &e.to_string())?;
                }
                continue;
            }
        };
        match classifier.classify(&frame.tensor) {
            Ok(c) => {
                frames += 1;
                if show {
                    if args.json {
                        let line = json!({
                            "file": escaped_path(&path),
                            "width": frame.width,
                            "height": frame.height,
                            "model": model_name,
                            "backend": classifier.backend_name(),
                            "top_k": c.top_k,
                            "timings_ms": {
                                "decode": ms(frame.decode_time),
                                "resize": ms(frame.resize_time),
                                "inference": ms(c.infer_time),
                            },
                        });
                        writeln!(out, "{line}")?;
                    } else {
                        let labels: Vec<String> = c
                            .top_k
                            .iter()
                            .map(|l| format!("{:<28} {:.3}", l.label, l.score))
                            .collect();
                        writeln!(out, "{:<32} {}", escaped_path(&path), labels.join("  "))?;
                    }
                    out.flush()?;
                }
            }
            Err(e) => {
                failed += 1;
                report_error(&mut out, args.json, &path, &e.to_string())?;
            }
        }
        preparer.recycle(frame.tensor);
    }
    let elapsed = started.elapsed();
    if args.summary {
        let summary = json!({
            "summary": true,
            "frames": frames,
            "failed": failed,
            "seconds": elapsed.as_secs_f64(),
            "fps": frames as f64 / elapsed.as_secs_f64().max(1e-9),
            "max_rss_mb": peak_rss_mb(),
            "backend": classifier.backend_name(),
        });
        writeln!(out, "{summary}")?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn report_error(
    out: &mut impl Write,
    json: bool,
    path: &std::path::Path,
    message: &str,
) -> std::io::Result<()> {
    if json {
        let line = json!({ "file": escaped_path(path), "error": message });
        writeln!(out, "{line}")?;
    }
    eprintln!("error: {}: {message}", escaped_path(path));
    Ok(())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Peak resident set size of this process, in MiB (VmHWM).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
