//! `edge-agent bench`: per-stage times (p50/p99), end-to-end frames/s, peak RSS and
//! time to the first result, measured on the sample photos; and the Python peer
//! (../shared/bench/peer_agent.py, plus a per-stage probe of the same runtime) run on
//! the same images in the same run, so every claim is a ratio measured here and now.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

use super::{expand_paths, ModelArgs};
use crate::inference::load_backend;
use crate::pipeline::{prepare_frame, Classifier};
use crate::preprocess::Preprocessor;

const PEER_STAGES: &str = include_str!("../../bench/peer_stages.py");

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Folder of images to run on. Default: the `samples/` folder beside the model.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Passes over the images (each stage is timed rounds x images times).
    #[arg(long, default_value_t = 20)]
    pub rounds: u32,
    /// The Python peer to compare with. Default: ../shared/bench/peer_agent.py
    /// relative to the workspace.
    #[arg(long)]
    pub peer: Option<PathBuf>,
    /// Python interpreter for the peer.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Skip the peer (prints edge-agent's figures only).
    #[arg(long)]
    pub no_peer: bool,
}

/// Peak resident set size of this process, in MiB (VmHWM).
pub fn peak_rss_mb() -> f64 {
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

struct Stages {
    decode: Vec<Duration>,
    resize: Vec<Duration>,
    infer: Vec<Duration>,
}

fn percentile_ms(xs: &[Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

pub fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let package = args.model.load()?;
    let models_dir = package
        .manifest_path
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let images_dir = args
        .images
        .clone()
        .unwrap_or_else(|| models_dir.join("samples"));
    let files = expand_paths(std::slice::from_ref(&images_dir))
        .with_context(|| format!("cannot list {}", images_dir.display()))?;
    if files.is_empty() {
        bail!("no images in {}", images_dir.display());
    }
    let rounds = args.rounds.max(1);
    eprintln!(
        "bench: {} images x {rounds} rounds, {} inference thread(s), model {}",
        files.len(),
        args.model.threads,
        package.display_name()
    );

    // 1. Per-stage times, in this process, on in-memory bytes.
    let backend = load_backend(&package, &args.model.backend_options())?;
    let mut classifier = Classifier::new(backend, package.labels.clone(), 1);
    let backend_name = classifier.backend_name();
    let mut pre = Preprocessor::new(&package.manifest.input);
    let bytes: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|f| Ok((f.clone(), std::fs::read(f)?)))
        .collect::<std::io::Result<_>>()?;
    let mut stages = Stages {
        decode: vec![],
        resize: vec![],
        infer: vec![],
    };
    let mut tensor = Vec::new();
    for round in 0..rounds + 1 {
        for (path, data) in &bytes {
            let frame = prepare_frame(&mut pre, path.clone(), data.clone(), tensor)
                .with_context(|| format!("{}", path.display()))?;
            let c = classifier.classify(&frame.tensor)?;
            if round > 0 {
                // round 0 warms caches and allocators
                stages.decode.push(frame.decode_time);
                stages.resize.push(frame.resize_time);
                stages.infer.push(c.infer_time);
            }
            tensor = frame.tensor;
        }
    }
    eprintln!("bench: stages timed; running edge-agent classify end to end ...");

    // 2. End to end, as a user runs it: a fresh process over the folder.
    let ours = run_ours(&args, &package.manifest_path, &images_dir, rounds)?;

    // 3. The peer, same images, same run.
    let peer = if args.no_peer {
        Err("skipped (--no-peer)".to_string())
    } else {
        eprintln!("bench: running the Python peer ...");
        run_peer(
            &args,
            &package.model_path,
            &models_dir,
            &images_dir,
            &files,
            rounds,
        )
    };

    print_table(backend_name, &stages, &ours, &peer);
    Ok(0)
}

struct EndToEnd {
    fps: f64,
    max_rss_mb: f64,
    first_result_ms: f64,
}

fn run_ours(
    args: &BenchArgs,
    manifest: &Path,
    images: &Path,
    rounds: u32,
) -> anyhow::Result<EndToEnd> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(["classify", "--json", "--summary", "--threads"])
        .arg(args.model.threads.to_string())
        .arg("--repeat")
        .arg(rounds.to_string())
        .arg("--model")
        .arg(manifest)
        .arg(images)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start edge-agent classify")?;
    let stdout = child.stdout.take().expect("piped");
    let mut first_result_ms = f64::NAN;
    let mut summary = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if first_result_ms.is_nan() {
            first_result_ms = started.elapsed().as_secs_f64() * 1e3;
        }
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v.get("summary").is_some() {
            summary = Some(v);
        }
    }
    child.wait()?;
    let summary = summary.context("edge-agent classify printed no summary")?;
    Ok(EndToEnd {
        fps: summary["fps"].as_f64().unwrap_or(f64::NAN),
        max_rss_mb: summary["max_rss_mb"].as_f64().unwrap_or(f64::NAN),
        first_result_ms,
    })
}

struct Peer {
    fps: f64,
    max_rss_mb: f64,
    startup_ms: f64,
    stages: Value,
}

fn run_peer(
    args: &BenchArgs,
    model: &Path,
    models_dir: &Path,
    images: &Path,
    files: &[PathBuf],
    rounds: u32,
) -> Result<Peer, String> {
    let script = args
        .peer
        .clone()
        .unwrap_or_else(|| models_dir.join("../../shared/bench/peer_agent.py"));
    if !script.is_file() {
        return Err(format!(
            "skipped: {} not found (use --peer)",
            script.display()
        ));
    }
    let labels = models_dir.join("labels.txt");
    let whole = run_json(
        Command::new(&args.python)
            .arg(&script)
            .arg(model)
            .arg(&labels)
            .arg(images)
            .args(["--threads", &args.model.threads.to_string()])
            .args(["--repeat", &rounds.to_string()]),
    )?;
    let tensor = models_dir.join("dogs_mobilenetv2.selftest.f32");
    let stages = run_json(
        Command::new(&args.python)
            .arg("-c")
            .arg(PEER_STAGES)
            .arg(model)
            .arg(&tensor)
            .arg(rounds.to_string())
            .args(files),
    )?;
    Ok(Peer {
        fps: whole["fps"].as_f64().unwrap_or(f64::NAN),
        max_rss_mb: whole["max_rss_mb"].as_f64().unwrap_or(f64::NAN),
        startup_ms: whole["startup_s"].as_f64().unwrap_or(f64::NAN) * 1e3,
        stages,
    })
}

fn run_json(cmd: &mut Command) -> Result<Value, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!("peer failed ({}): {last}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or("");
    serde_json::from_str(last).map_err(|e| format!("peer printed no JSON ({e}): {last:?}"))
}

fn print_table(backend: &str, s: &Stages, ours: &EndToEnd, peer: &Result<Peer, String>) {
    let p = |xs: &[Duration]| (percentile_ms(xs, 50.0), percentile_ms(xs, 99.0));
    let (d50, d99) = p(&s.decode);
    let (r50, r99) = p(&s.resize);
    let (i50, i99) = p(&s.infer);
    let ps = |key: &str| match peer {
        Ok(peer) => peer.stages[key].as_f64().unwrap_or(f64::NAN),
        Err(_) => f64::NAN,
    };
    let ratio = |a: f64, b: f64| {
        if b.is_finite() && b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "-".into()
        }
    };
    println!();
    println!(
        "| metric | edge-agent ({backend}) | peer (Python, LiteRT/XNNPACK) | ratio | target |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| decode p50 / p99 (ms) | {d50:.2} / {d99:.2} | {:.2} / {:.2} | {} | |",
        ps("decode_p50_ms"),
        ps("decode_p99_ms"),
        ratio(d50, ps("decode_p50_ms"))
    );
    println!(
        "| resize+normalize p50 / p99 (ms) | {r50:.2} / {r99:.2} | {:.2} / {:.2} | {} | |",
        ps("resize_p50_ms"),
        ps("resize_p99_ms"),
        ratio(r50, ps("resize_p50_ms"))
    );
    println!(
        "| inference p50 / p99 (ms) | {i50:.2} / {i99:.2} | {:.2} / {:.2} | {} | <= 1.5x |",
        ps("inference_p50_ms"),
        ps("inference_p99_ms"),
        ratio(i50, ps("inference_p50_ms"))
    );
    let (pfps, prss, pstart) = match peer {
        Ok(peer) => (peer.fps, peer.max_rss_mb, peer.startup_ms),
        Err(_) => (f64::NAN, f64::NAN, f64::NAN),
    };
    println!(
        "| end-to-end frames/s | {:.1} | {pfps:.1} | {} | >= 1.3x |",
        ours.fps,
        ratio(ours.fps, pfps)
    );
    println!(
        "| peak RSS (MiB) | {:.1} | {prss:.1} | {} | <= 0.5x |",
        ours.max_rss_mb,
        ratio(ours.max_rss_mb, prss)
    );
    println!(
        "| first result after process start (ms) | {:.0} | {pstart:.0} (model load, after imports) | | <= 300 ms |",
        ours.first_result_ms
    );
    if let Err(why) = peer {
        println!("\npeer: {why}");
    }
}
