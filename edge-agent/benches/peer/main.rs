//! The peer benchmark (`cargo bench -p edge-agent --bench peer -- [OPTIONS]`, `--help`
//! for the options): per-stage times (p50/p99), end-to-end frames/s, peak RSS and time
//! to the first result, for both inference backends, measured on the sample photos and
//! on 1920x1080 JPEG camera-like frames made from them; and the Python peer
//! (../shared/bench/peer_agent.py, plus a per-stage probe of the same runtime,
//! `peer_stages.py`) run on the same images in the same run, so every claim is a ratio
//! measured here and now. The end-to-end figures come from the device binary itself
//! (`edge-agent classify`, built by cargo with the bench profile); the benchmark is a
//! target of its own so that the device binary holds only what a device runs.

mod table;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use edge_agent::cli::{expand_paths, ModelArgs};
use edge_agent::inference::{select_backend, BackendChoice, BackendKind};
use edge_agent::model::ModelPackage;
use edge_agent::pipeline::{prepare_frame, Classifier};
use edge_agent::preprocess::Preprocessor;
use serde_json::Value;

const PEER_STAGES: &str = include_str!("peer_stages.py");

#[derive(Debug, Parser)]
#[command(
    bin_name = "cargo bench -p edge-agent --bench peer --",
    about = "Measures decode, resize and inference times, throughput, memory and start-up, \
             side by side with the Python peer (../shared/bench/peer_agent.py)"
)]
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
    /// Passed by `cargo bench` to every benchmark; ignored.
    #[arg(long = "bench", hide = true)]
    _cargo_bench: bool,
}

fn main() {
    let args = BenchArgs::parse();
    if let Err(e) = run(args) {
        eprintln!("bench: error: {e:#}");
        std::process::exit(2);
    }
}

/// One image set: the photos, or the 1920x1080 frames made from them.
pub struct ImageSet {
    pub name: &'static str,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

fn run(args: BenchArgs) -> anyhow::Result<()> {
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
    let frames_dir = std::env::temp_dir().join(format!("edge-agent-bench-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(frames_dir.clone());
    let frames = make_camera_frames(&files, &frames_dir)?;
    let sets = [
        ImageSet {
            name: "photos",
            dir: images_dir.clone(),
            files,
        },
        ImageSet {
            name: "1920x1080 JPEG frames",
            dir: frames_dir.clone(),
            files: frames,
        },
    ];
    eprintln!(
        "bench: {} photos and {} camera-like frames x {rounds} rounds, {} inference thread(s), model {}",
        sets[0].files.len(),
        sets[1].files.len(),
        args.model.threads,
        package.display_name()
    );

    // The backends: tflite always; litert if it can be used (else its column says why).
    let mut columns = vec![];
    for kind in [BackendKind::Tflite, BackendKind::Litert] {
        let choice = BackendChoice {
            kind,
            library: args.model.litert_library.clone(),
        };
        match select_backend(&package, &args.model.backend_options(), &choice) {
            Ok(loaded) => {
                eprintln!(
                    "bench: {}: {}",
                    loaded.selection.backend, loaded.selection.reason
                );
                let classifier = Classifier::new(loaded, package.labels.clone(), 1);
                columns.push(Ok((kind, classifier)));
            }
            Err(e) => {
                eprintln!("bench: {}: unavailable: {e}", kind.as_str());
                columns.push(Err((kind, e.to_string())));
            }
        }
    }

    // 1. Per-stage times, in this process, on in-memory bytes: decode and resize as
    //    `classify` does them (the fast path on), inference per backend.
    let mut pre = Preprocessor::new(&package.manifest.input).with_reduced_decode(true);
    let mut stages = vec![];
    for set in &sets {
        stages.push(time_preparation(&mut pre, &set.files, rounds)?);
    }
    let tensor = package
        .self_test_input
        .clone()
        .unwrap_or_else(|| vec![0.0; package.manifest.input_len()]);
    let mut inference = vec![];
    for column in &mut columns {
        inference.push(match column {
            Ok((_, classifier)) => Some(time_inference(classifier, &tensor, rounds as usize * 6)?),
            Err(_) => None,
        });
    }
    let names: Vec<(BackendKind, Option<String>)> = columns
        .into_iter()
        .map(|c| match c {
            Ok((kind, _)) => (kind, None),
            Err((kind, why)) => (kind, Some(why)),
        })
        .collect();

    // 2. End to end, as a user runs it: a fresh process per backend and image set.
    let mut ours = vec![];
    for (kind, unavailable) in &names {
        let mut per_set = vec![];
        for set in &sets {
            per_set.push(match unavailable {
                Some(_) => None,
                None => {
                    eprintln!(
                        "bench: edge-agent classify --backend {} on the {} ...",
                        kind.as_str(),
                        set.name
                    );
                    Some(run_ours(
                        &args,
                        *kind,
                        &package.manifest_path,
                        &set.dir,
                        rounds,
                    )?)
                }
            });
        }
        ours.push(per_set);
    }

    // 3. The peer, same images, same run.
    let peer: Vec<Result<Peer, String>> = sets
        .iter()
        .map(|set| {
            if args.no_peer {
                return Err("skipped (--no-peer)".to_string());
            }
            eprintln!("bench: the Python peer on the {} ...", set.name);
            run_peer(&args, &package, &models_dir, set, rounds)
        })
        .collect();

    table::print(&sets, &names, &stages, &inference, &ours, &peer);
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Each photo upscaled to 1920x1080 and saved as a JPEG (quality 90), like the
/// frames of a 1080p camera.
fn make_camera_frames(photos: &[PathBuf], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut out = vec![];
    for photo in photos {
        let image = image::open(photo)
            .with_context(|| format!("cannot decode {}", photo.display()))?
            .to_rgb8();
        let big =
            image::imageops::resize(&image, 1920, 1080, image::imageops::FilterType::Triangle);
        let stem = photo
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("frame");
        let path = dir.join(format!("{stem}-1080p.jpg"));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(&big)?;
        std::fs::write(&path, bytes)?;
        out.push(path);
    }
    Ok(out)
}

/// Per-frame stage times of one image set.
pub struct Preparation {
    pub decode: Vec<Duration>,
    pub resize: Vec<Duration>,
}

fn time_preparation(
    pre: &mut Preprocessor,
    files: &[PathBuf],
    rounds: u32,
) -> anyhow::Result<Preparation> {
    let bytes: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|f| Ok((f.clone(), std::fs::read(f)?)))
        .collect::<std::io::Result<_>>()?;
    let mut out = Preparation {
        decode: vec![],
        resize: vec![],
    };
    let mut tensor = Vec::new();
    for round in 0..rounds + 1 {
        for (path, data) in &bytes {
            let frame = prepare_frame(pre, path.clone(), data.clone(), tensor)
                .with_context(|| format!("{}", path.display()))?;
            if round > 0 {
                // round 0 warms caches and allocators
                out.decode.push(frame.decode_time);
                out.resize.push(frame.resize_time);
            }
            tensor = frame.tensor;
        }
    }
    Ok(out)
}

fn time_inference(
    classifier: &mut Classifier,
    tensor: &[f32],
    runs: usize,
) -> anyhow::Result<Vec<Duration>> {
    for _ in 0..10 {
        classifier.classify(tensor)?;
    }
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        out.push(classifier.classify(tensor)?.infer_time);
    }
    Ok(out)
}

/// One `edge-agent classify` process on one image set.
pub struct EndToEnd {
    /// Frames per second over all rounds.
    pub fps: f64,
    /// Peak resident set size, MiB.
    pub max_rss_mb: f64,
    /// From process start to the first result line, ms.
    pub first_result_ms: f64,
}

fn run_ours(
    args: &BenchArgs,
    backend: BackendKind,
    manifest: &Path,
    images: &Path,
    rounds: u32,
) -> anyhow::Result<EndToEnd> {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
    cmd.args(["classify", "--json", "--summary", "--threads"])
        .arg(args.model.threads.to_string())
        .args(["--backend", backend.as_str()])
        .arg("--repeat")
        .arg(rounds.to_string())
        .arg("--model")
        .arg(manifest);
    if let Some(lib) = &args.model.litert_library {
        cmd.arg("--litert-library").arg(lib);
    }
    let mut child = cmd
        .arg(images)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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

/// The Python peer on one image set.
pub struct Peer {
    /// Frames per second over all rounds.
    pub fps: f64,
    /// Peak resident set size, MiB.
    pub max_rss_mb: f64,
    /// Model load after the imports, ms.
    pub startup_ms: f64,
    /// `peer_stages.py`'s JSON: `{decode,resize,inference}_{p50,p99}_ms`.
    pub stages: Value,
}

fn run_peer(
    args: &BenchArgs,
    package: &ModelPackage,
    models_dir: &Path,
    set: &ImageSet,
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
    let labels = models_dir.join(&package.manifest.model.labels);
    let model = &package.model_path;
    let whole = run_json(
        Command::new(&args.python)
            .arg(&script)
            .arg(model)
            .arg(&labels)
            .arg(&set.dir)
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
            .args(&set.files),
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
