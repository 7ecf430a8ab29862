//! Labelled data sets made from the sample photos for the `eval` and `retrain`
//! tests: augmented variants (crop, mirror, colour and brightness shift) drawn from a
//! seeded generator, written as JPEG files, class folders and augmented manifests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chacha20::rand_core::{Rng, SeedableRng};
use chacha20::ChaCha8Rng;
use image::RgbImage;
use protocol::manifest::{ClassificationMetadata, ManifestRow};

pub fn sample(name: &str) -> RgbImage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/samples")
        .join(name);
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

fn uniform(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    lo + (rng.next_u32() as f32 / u32::MAX as f32) * (hi - lo)
}

/// One augmented variant of `image`: a 70-95% crop, a mirror half the time, a
/// saturation and brightness shift.
pub fn variant(image: &RgbImage, seed: u64) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (w, h) = image.dimensions();
    let c = uniform(&mut rng, 0.7, 0.95);
    let (cw, ch) = ((w as f32 * c) as u32, (h as f32 * c) as u32);
    let x = (uniform(&mut rng, 0.0, 1.0) * (w - cw) as f32) as u32;
    let y = (uniform(&mut rng, 0.0, 1.0) * (h - ch) as f32) as u32;
    let mut out = image::imageops::crop_imm(image, x, y, cw, ch).to_image();
    if rng.next_u32() % 2 == 0 {
        out = image::imageops::flip_horizontal(&out);
    }
    let saturation = uniform(&mut rng, 0.6, 1.4);
    let brightness = uniform(&mut rng, 0.8, 1.2);
    for p in out.pixels_mut() {
        let [r, g, b] = p.0.map(f32::from);
        let grey = 0.299 * r + 0.587 * g + 0.114 * b;
        p.0 = [r, g, b]
            .map(|v| ((grey + (v - grey) * saturation) * brightness).clamp(0.0, 255.0) as u8);
    }
    out
}

/// Writes `count` variants of the sample `photo` (seeds `first..`) into `dir` as
/// `<stem>_<seed>.jpg` and returns their paths.
pub fn write_variants(dir: &Path, photo: &str, first: u64, count: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let image = sample(photo);
    let stem = photo.split('.').next().unwrap();
    (first..first + count)
        .map(|seed| {
            let path = dir.join(format!("{stem}_{seed}.jpg"));
            variant(&image, seed).save(&path).unwrap();
            path
        })
        .collect()
}

/// An augmented-manifest row for `source_ref` labelled `class_name`.
pub fn manifest_row(source_ref: &str, class_name: &str, attribute: &str) -> String {
    ManifestRow {
        source_ref: source_ref.into(),
        attribute: attribute.into(),
        class_index: 0,
        metadata: ClassificationMetadata {
            class_name: class_name.into(),
            confidence: 1.0,
            human_annotated: true,
            creation_date: "2026-11-29T09:00:00.000000".into(),
            job_name: "labeling-job/edge-a2i-test".into(),
            tie: false,
        },
    }
    .to_json_line()
}

pub fn edge_agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .env_remove("EDGE_AGENT_LITERT_LIB")
        .args(args)
        .output()
        .unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}\n{}", stderr(out)))
}

/// `classify --json` top-1 labels of every image in `paths`, in order.
pub fn top1(manifest: Option<&Path>, paths: &[PathBuf], extra: &[&str]) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
    cmd.args(["classify", "--json"]).args(extra);
    if let Some(m) = manifest {
        cmd.arg("--model").arg(m);
    }
    let out = cmd.args(paths).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["top_k"][0]["label"].as_str().unwrap().to_string()
        })
        .collect()
}

pub fn default_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/dogs_mobilenetv2.toml")
}
