//! Daemon benchmark (`cargo bench -p edge-agent --bench daemon`): frames/s of the
//! frame step (decode, classify, policy, encode, outbox fsync) with 0% and 100% of the
//! frames selected, the same with a model swap every 12 frames (the switch between two
//! frames, models loaded beforehand as the update worker does) and during a shadow
//! window (two models score each frame), and events/s drained from a full outbox by
//! the real `edge-agent run` through a real Mosquitto (TLS, like IoT Core) to a
//! receiver that sends receipts.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use edge_agent::config::ImageSection;
use edge_agent::daemon::{now_ms, FrameProcessor, Outcome};
use edge_agent::inference::{load_backend, BackendOptions};
use edge_agent::model::ModelPackage;
use edge_agent::outbox::{Outbox, OutboxConfig};
use edge_agent::pipeline::Classifier;
use edge_agent::policy::{PolicyConfig, ReviewPolicy};
use edge_agent::preprocess::Preprocessor;
use protocol::{DeviceId, ModelInfo, Topics};
use test_support::{wait_until, Mosquitto};

fn processor(min_confidence: f32) -> FrameProcessor {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let package = ModelPackage::load(&root.join("models/dogs_mobilenetv2.toml")).unwrap();
    let backend = load_backend(&package, &BackendOptions::default()).unwrap();
    let policy: PolicyConfig = toml::from_str(&format!(
        "min_confidence = {min_confidence}\nmin_margin = \"off\"\nmax_reviews_per_hour = \"off\"\n[near_duplicate]\nenabled = false\n"
    ))
    .unwrap();
    FrameProcessor::new(
        Preprocessor::new(&package.manifest.input),
        Classifier::new(backend, package.labels.clone(), 5),
        ReviewPolicy::new(policy, package.labels.clone()).unwrap(),
        DeviceId::new(support::DEVICE).unwrap(),
        ModelInfo {
            name: package.manifest.model.name.clone(),
            version: package.manifest.model.version.clone(),
            sha256: package.manifest.model.sha256.clone(),
        },
        &Topics::default(),
        131_072,
        ImageSection::default(),
    )
}

/// Frames/s through the frame step, storing selected events in a real outbox.
fn frame_step(min_confidence: f32, rounds: usize, outbox: &mut Outbox) -> (f64, usize) {
    let mut p = processor(min_confidence);
    let frames: Vec<(String, Vec<u8>)> = support::SAMPLES
        .iter()
        .map(|(name, _)| {
            (
                name.to_string(),
                std::fs::read(support::samples().join(name)).unwrap(),
            )
        })
        .collect();
    let (mut n, mut selected) = (0, 0);
    let start = Instant::now();
    for _ in 0..rounds {
        for (name, bytes) in &frames {
            let now = now_ms();
            if let Outcome::Selected { meta, messages } =
                p.process(name, bytes.clone(), now, now).unwrap()
            {
                outbox
                    .put(&meta.event_id.to_string(), &messages, now)
                    .unwrap();
                selected += 1;
            }
            n += 1;
        }
    }
    (n as f64 / start.elapsed().as_secs_f64(), selected)
}

/// Frames/s with a model update handed over every `every` frames: with `shadow = 0`
/// the switch alone, else the shadow window too. Returns (frames/s, swaps done).
fn with_swaps(rounds: usize, every: usize, shadow: u32) -> (f64, usize) {
    use edge_agent::daemon::serving::{SwapCommand, Swapper};
    use edge_agent::update::lifecycle::{Lifecycle, LifecycleConfig};
    use edge_agent::update::{load_serving, LoadOptions};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = root.join("models/dogs_mobilenetv2.toml");
    let mut p = processor(1.0);
    let (tx, rx) = std::sync::mpsc::channel();
    let (events, _events_rx) = std::sync::mpsc::channel();
    let identity = std::sync::Arc::new(std::sync::Mutex::new((p.model().clone(), "tflite")));
    p.set_swapper(Swapper::new(rx, events, identity));
    let options = LoadOptions {
        threads: 1,
        top_k: 5,
        backend: edge_agent::inference::BackendKind::Tflite,
        litert_library: None,
        policy: toml::from_str("min_confidence = 1.0\nmin_margin = \"off\"\nmax_reviews_per_hour = \"off\"\n[near_duplicate]\nenabled = false\n").unwrap(),
        config_version: None,
    };
    let total = rounds * support::SAMPLES.len();
    let mut candidates: Vec<_> = (0..total / every)
        .map(|_| load_serving(&manifest, &options).unwrap().0)
        .collect();
    let frames: Vec<(String, Vec<u8>)> = support::SAMPLES
        .iter()
        .map(|(name, _)| {
            (
                name.to_string(),
                std::fs::read(support::samples().join(name)).unwrap(),
            )
        })
        .collect();
    let config = LifecycleConfig {
        shadow_frames: shadow,
        watch_frames: 0,
        max_selected_increase: 1.0,
        max_confidence_drop: 1.0,
    };
    let (mut n, mut swaps) = (0, 0);
    let start = Instant::now();
    for _ in 0..rounds {
        for (name, bytes) in &frames {
            if n % every == 0 {
                if let Some(model) = candidates.pop() {
                    tx.send(SwapCommand::Candidate {
                        model: Box::new(model),
                        lifecycle: Lifecycle::new(config),
                    })
                    .unwrap();
                    swaps += 1;
                }
            }
            let now = now_ms();
            p.process(name, bytes.clone(), now, now).unwrap();
            n += 1;
        }
    }
    (n as f64 / start.elapsed().as_secs_f64(), swaps)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let rounds = 20;
    let mut scratch =
        Outbox::open(dir.path().join("scratch.sqlite"), OutboxConfig::default()).unwrap();
    let (fps_none, sel_none) = frame_step(0.0, rounds, &mut scratch);
    let (fps_all, sel_all) = frame_step(1.0, rounds, &mut scratch);
    drop(scratch);
    let (fps_steady, _) = with_swaps(rounds, usize::MAX, 0);
    let (fps_swapping, swaps) = with_swaps(rounds, 12, 0);
    let (fps_shadowing, _) = with_swaps(rounds, 12, 12);
    assert_eq!(sel_none, 0);
    assert_eq!(sel_all, rounds * 6);

    // A full outbox: the events of the 100% run, drained by the real daemon.
    let broker = Mosquitto::builder()
        .extra_config("max_queued_messages 100000")
        .start();
    let receiver = support::Receiver::start(&broker, "relay");
    let mut agent = support::Agent::new(dir.path(), &broker, "");
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::rename(
        dir.path().join("scratch.sqlite"),
        dir.path().join("state/outbox.sqlite"),
    )
    .unwrap();
    let events = sel_all;
    let start = Instant::now();
    agent.start();
    wait_until(Duration::from_secs(300), "the outbox drained", || {
        receiver.event_count() >= events
            && receiver
                .status()
                .is_some_and(|s| s.outbox.to_send == 0 && s.outbox.awaiting_receipt == 0)
    });
    let drain = events as f64 / start.elapsed().as_secs_f64();
    assert!(agent.stop());

    // The backend `auto` chose (litert when $EDGE_AGENT_LITERT_LIB points at it).
    let backend = processor(1.0).backend_name();
    println!();
    println!("| daemon benchmark (1 inference thread, {backend}) | value |");
    println!("|---|---|");
    println!("| frame step, 0% selected (frames/s) | {fps_none:.1} |");
    println!("| frame step, 100% selected, outbox fsync per event (frames/s) | {fps_all:.1} |");
    println!("| outbox drained through Mosquitto/TLS with receipts (events/s, {events} events incl. start-up) | {drain:.1} |");
    println!("| frame step, 100% selected, no outbox (frames/s) | {fps_steady:.1} |");
    println!(
        "| the same with a model switch every 12 frames ({swaps} switches; frames/s, change) | {fps_swapping:.1} ({:+.1}%) |",
        (fps_swapping / fps_steady - 1.0) * 100.0
    );
    println!(
        "| the same, always in a shadow window (two models per frame; frames/s, change) | {fps_shadowing:.1} ({:+.1}%) |",
        (fps_shadowing / fps_steady - 1.0) * 100.0
    );
}
