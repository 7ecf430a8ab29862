//! `edge-agent retrain` as an operator runs it, on real photos and the real model:
//! the seed's scenario (reviewed frames the model got wrong, labelled with new and
//! existing classes, fitted on 4 per class), the promotion gate, the new package in
//! both backends and in the Python reference interpreter, and every refusal.

mod common;
mod finetune_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use edge_agent::inference::{select_backend, BackendChoice, BackendKind, BackendOptions};
use edge_agent::model::ModelPackage;
use finetune_support::*;

/// Reviewed photos and what the reviewers said: three classes the model does not
/// have, and one of its own.
const REVIEWED: [(&str, &str); 4] = [
    ("chelsea.jpg", "cat"),
    ("coffee.png", "coffee_cup"),
    ("rocket.jpg", "rocket"),
    ("astronaut.jpg", "Samoyed"),
];
/// Photos nobody reviewed: the classes the parent gives them are untouched.
const UNTOUCHED: [&str; 2] = ["hubble.jpg", "camera_gray.png"];

struct Scenario {
    dir: tempfile::TempDir,
    manifest: PathBuf,
    store: PathBuf,
    held: PathBuf,
    anchors: PathBuf,
    check: Vec<PathBuf>,
}

/// 4 training variants per reviewed photo, listed in an augmented manifest (the
/// rocket's in an `s3://` store directory, the others as local paths); 6 held-out
/// variants each in class folders; 6 anchor and 6 check variants of each untouched
/// photo.
fn scenario() -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = root.join("store");
    let mut rows = Vec::new();
    for (photo, label) in REVIEWED {
        let in_s3 = photo == "rocket.jpg";
        let images = if in_s3 {
            store.join("edge-a2i-bucket/events/pi-1")
        } else {
            root.join("reviewed")
        };
        for path in write_variants(&images, photo, 100, 4) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let source = if in_s3 {
                format!("s3://edge-a2i-bucket/events/pi-1/{name}")
            } else {
                format!("reviewed/{name}")
            };
            rows.push(manifest_row(&source, label, "label"));
        }
        write_variants(&root.join("held").join(label), photo, 200, 6);
    }
    let manifest = root.join("reviewed.manifest");
    std::fs::write(&manifest, rows.join("\n") + "\n").unwrap();
    let mut check = Vec::new();
    for photo in UNTOUCHED {
        write_variants(&root.join("anchors"), photo, 300, 6);
        check.extend(write_variants(&root.join("check"), photo, 400, 6));
    }
    Scenario {
        manifest,
        store,
        held: root.join("held"),
        anchors: root.join("anchors"),
        check,
        dir,
    }
}

fn retrain(s: &Scenario, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "retrain",
        "--json",
        "--backend",
        "tflite",
        "--data",
        s.manifest.to_str().unwrap(),
        "--store",
        s.store.to_str().unwrap(),
        "--anchor",
        s.anchors.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    edge_agent(&args)
}

fn held_out_frames(s: &Scenario) -> Vec<(PathBuf, String)> {
    let mut frames = Vec::new();
    for (_, label) in REVIEWED {
        let mut files: Vec<PathBuf> = std::fs::read_dir(s.held.join(label))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        frames.extend(files.into_iter().map(|f| (f, label.to_string())));
    }
    frames
}

#[test]
fn retrain_learns_the_reviewed_frames_keeps_the_rest_and_runs_everywhere() {
    let s = scenario();
    let out = s.dir.path().join("model-v2");
    let run = retrain(&s, &out, &["--holdout", s.held.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    let report = stdout_json(&run);
    assert_eq!(report["gate"]["decision"], "promote", "{report:#}");
    assert_eq!(
        report["new_classes"],
        serde_json::json!(["cat", "coffee_cup", "rocket"])
    );
    assert_eq!(
        report["frames_trained"].as_u64().unwrap() + report["frames_held_out"].as_u64().unwrap(),
        16
    );
    let manifest = out.join("dogs_mobilenetv2.toml");

    // Held-out variants of the reviewed photos: classified as the reviewers said.
    let held = held_out_frames(&s);
    let paths: Vec<PathBuf> = held.iter().map(|(p, _)| p.clone()).collect();
    let before = top1(None, &paths, &["--backend", "tflite"]);
    let after = top1(Some(&manifest), &paths, &["--backend", "tflite"]);
    let right_before = held
        .iter()
        .zip(&before)
        .filter(|((_, l), p)| l == *p)
        .count();
    let right_after = held
        .iter()
        .zip(&after)
        .filter(|((_, l), p)| l == *p)
        .count();
    assert_eq!(right_before, 0, "the parent got none right: {before:?}");
    assert!(
        right_after * 100 >= held.len() * 95,
        "{right_after}/{}: {after:?}",
        held.len()
    );

    // Unreviewed frames of the untouched classes: the candidate agrees with its parent.
    let parent = top1(None, &s.check, &["--backend", "tflite"]);
    let child = top1(Some(&manifest), &s.check, &["--backend", "tflite"]);
    let agree = parent.iter().zip(&child).filter(|(a, b)| a == b).count();
    assert!(
        agree * 100 >= s.check.len() * 98,
        "{agree}/{}: {parent:?} vs {child:?}",
        s.check.len()
    );

    // The new package: lineage, labels, and only the last layer changed.
    let package = ModelPackage::load(&manifest).unwrap();
    let lineage = package
        .manifest
        .lineage
        .clone()
        .expect("a [lineage] section");
    assert_eq!(lineage.parent_version, "1.0.0");
    assert_eq!(package.manifest.model.version, "1.0.1");
    assert_eq!(
        lineage.parent_sha256,
        ModelPackage::load(&default_manifest())
            .unwrap()
            .manifest
            .model
            .sha256
    );
    assert_eq!(package.labels.len(), 22);
    assert!(out.join("replay.json").is_file() && out.join("replay.f32").is_file());

    // Both backends and the Python reference interpreter give the same top-1.
    same_top1_everywhere(&package);
}

/// The fixtures' input tensors and the self-test input, through tflite, litert and
/// the LiteRT Python interpreter.
fn same_top1_everywhere(package: &ModelPackage) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".input.f32"))
        .collect();
    inputs.sort();
    inputs.push(
        package
            .manifest_path
            .parent()
            .unwrap()
            .join("dogs_mobilenetv2.selftest.f32"),
    );
    let mut tops: Vec<(String, Vec<usize>)> = Vec::new();
    for (kind, library) in [
        (BackendKind::Tflite, None),
        (BackendKind::Litert, Some(common::litert_library())),
    ] {
        let choice = BackendChoice { kind, library };
        let mut backend = select_backend(package, &BackendOptions::default(), &choice)
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"))
            .backend;
        let mut top = Vec::new();
        for input in &inputs {
            let tensor = edge_agent::model::f32_from_le_bytes(&std::fs::read(input).unwrap());
            backend.input_mut().copy_from_slice(&tensor);
            top.push(edge_agent::inference::argmax(backend.run().unwrap()));
        }
        tops.push((kind.as_str().to_string(), top));
    }
    let script = r#"
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1])
interpreter.allocate_tensors()
inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
for path in sys.argv[2:]:
    x = np.fromfile(path, dtype="<f4").reshape(inp["shape"])
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    print(int(np.argmax(interpreter.get_tensor(out["index"])[0])))
"#;
    let python = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&package.model_path)
        .args(&inputs)
        .output()
        .unwrap();
    assert!(python.status.success(), "python: {}", stderr(&python));
    let py: Vec<usize> = String::from_utf8_lossy(&python.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    tops.push(("python".into(), py));
    for (name, top) in &tops[1..] {
        assert_eq!(top, &tops[0].1, "{name} vs tflite on {inputs:?}");
    }
    // The self-test input now shows a reviewed class, not its old top-1, or the
    // check above compares nothing new.
    assert!(tops[0].1.iter().any(|&i| i >= 19), "{tops:?}");
}

#[test]
fn the_gate_keeps_the_parent_when_a_holdout_set_gets_worse() {
    let s = scenario();
    // A held-out set labelled with the parent's own answers for the reviewed photos:
    // the parent is right on all of it by construction, the candidate cannot be.
    let parent_says = s.dir.path().join("parent-says");
    let mut rows = Vec::new();
    for (photo, _) in REVIEWED {
        let files = write_variants(&parent_says, photo, 500, 3);
        for (file, label) in files
            .iter()
            .zip(top1(None, &files, &["--backend", "tflite"]))
        {
            rows.push(manifest_row(file.to_str().unwrap(), &label, "label"));
        }
    }
    let holdout = s.dir.path().join("parent-says.manifest");
    std::fs::write(&holdout, rows.join("\n")).unwrap();
    let out = s.dir.path().join("kept");
    let run = retrain(&s, &out, &["--holdout", holdout.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    let report = stdout_json(&run);
    assert_eq!(report["gate"]["decision"], "keep parent");
    let reason = report["gate"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("parent-says.manifest") && reason.contains("--max-regression"),
        "{reason}"
    );
    let lineage = ModelPackage::load(&out.join("dogs_mobilenetv2.toml"))
        .unwrap()
        .manifest
        .lineage
        .unwrap();
    assert_eq!(lineage.decision, "keep parent");
}

/// `retrain --backend tflite --data DATA --out OUT`, which must be refused.
fn refuse_retrain(data: &str, out: &str) -> String {
    refusal(&[
        "retrain",
        "--backend",
        "tflite",
        "--data",
        data,
        "--out",
        out,
    ])
}

fn refusal(args: &[&str]) -> String {
    let out = edge_agent(args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn retrain_refuses_bad_data_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = write_variants(&d.join("img"), "chelsea.jpg", 1, 2);
    std::fs::write(d.join("img/broken.jpg"), b"\xff\xd8 not really a JPEG").unwrap();
    let good = manifest_row(images[0].to_str().unwrap(), "cat", "label");
    let missing = manifest_row(d.join("img/gone.jpg").to_str().unwrap(), "cat", "label");
    let broken = manifest_row(d.join("img/broken.jpg").to_str().unwrap(), "cat", "label");
    let write = |name: &str, rows: &[&str]| {
        let p = d.join(name);
        std::fs::write(&p, rows.join("\n")).unwrap();
        p.to_str().unwrap().to_string()
    };
    let out = |name: &str| d.join(name).to_str().unwrap().to_string();

    // A row whose image is missing: named, with its line; --skip-bad goes on.
    let m = write("missing.manifest", &[&good, &missing]);
    let e = refuse_retrain(&m, &out("o1"));
    assert!(
        e.contains("missing.manifest:2")
            && e.contains("gone.jpg")
            && e.contains("is missing")
            && e.contains("--skip-bad"),
        "{e}"
    );
    assert!(!d.join("o1").exists(), "nothing written after a refusal");
    let run = edge_agent(&[
        "retrain",
        "--json",
        "--backend",
        "tflite",
        "--skip-bad",
        "--data",
        &m,
        "--out",
        &out("o2"),
    ]);
    // One frame left: nothing to hold out, so promoted ungated, which says so (4).
    assert_eq!(run.status.code(), Some(4), "{}", stderr(&run));
    let report = stdout_json(&run);
    assert_eq!(report["frames_skipped"], 1);
    assert_eq!(report["gate"]["gated"], false);

    // An undecodable image.
    let m = write("broken.manifest", &[&broken]);
    let e = refuse_retrain(&m, &out("o3"));
    assert!(
        e.contains("broken.manifest:1")
            && e.contains("broken.jpg")
            && e.contains("cannot be decoded"),
        "{e}"
    );

    // A label attribute the rows do not have.
    let m = write("good.manifest", &[&good]);
    let e = refusal(&[
        "retrain",
        "--label-attribute",
        "breed",
        "--data",
        &m,
        "--out",
        &out("o4"),
    ]);
    assert!(
        e.contains("good.manifest:1") && e.contains("`breed`") && e.contains("--label-attribute"),
        "{e}"
    );

    // An empty training set.
    std::fs::create_dir_all(d.join("empty/cat")).unwrap();
    let e = refusal(&[
        "retrain",
        "--data",
        d.join("empty").to_str().unwrap(),
        "--out",
        &out("o5"),
    ]);
    assert!(e.contains("the training set is empty"), "{e}");

    // An --out that holds something is never overwritten.
    std::fs::create_dir_all(d.join("taken")).unwrap();
    std::fs::write(d.join("taken/keep.txt"), "mine").unwrap();
    let e = refuse_retrain(&m, &out("taken"));
    assert!(e.contains("exists and is not empty"), "{e}");
    assert_eq!(
        std::fs::read_to_string(d.join("taken/keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn retrain_refuses_a_model_whose_last_layer_it_cannot_retrain() {
    let dir = tempfile::tempdir().unwrap();
    let parent = ModelPackage::load(&default_manifest()).unwrap();
    // The same model cut at its embedding: its output comes from MEAN, not a
    // FULLY_CONNECTED + SOFTMAX.
    let (cut, _) = edge_agent::model::head::embedding_model(&parent.read_model().unwrap()).unwrap();
    std::fs::write(dir.path().join("cut.tflite"), &cut).unwrap();
    std::fs::copy(
        parent.manifest_path.parent().unwrap().join("labels.txt"),
        dir.path().join("labels.txt"),
    )
    .unwrap();
    let mut manifest = parent.manifest.clone();
    manifest.model.file = "cut.tflite".into();
    manifest.model.sha256 = protocol::sha256_hex(&cut);
    manifest.self_test = None;
    let path = dir.path().join("cut.toml");
    std::fs::write(&path, toml::to_string(&manifest).unwrap()).unwrap();
    let data = dir.path().join("data");
    write_variants(&data.join("cat"), "chelsea.jpg", 1, 1);
    let e = refusal(&[
        "retrain",
        "--model",
        path.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert!(
        e.contains("not a FULLY_CONNECTED (+ SOFTMAX) layer this build can retrain")
            && e.contains("builtin operator 40"),
        "{e}"
    );
}

#[test]
fn both_backends_give_the_same_embedding() {
    let package = ModelPackage::load(&default_manifest()).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut embeddings = Vec::new();
    for (kind, library) in [
        (BackendKind::Tflite, None),
        (BackendKind::Litert, Some(common::litert_library())),
    ] {
        let choice = BackendChoice { kind, library };
        let mut embedder = edge_agent::finetune::embed::Embedder::load(
            &package,
            &BackendOptions::default(),
            &choice,
        )
        .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(embedder.backend_name(), kind.as_str());
        let mut per_backend = Vec::new();
        for name in ["chelsea", "hubble", "rocket"] {
            let tensor = edge_agent::model::f32_from_le_bytes(
                &std::fs::read(fixtures.join(format!("{name}.input.f32"))).unwrap(),
            );
            per_backend.push(embedder.embed(&tensor).unwrap());
        }
        embeddings.push(per_backend);
    }
    for (a, b) in embeddings[0].iter().zip(&embeddings[1]) {
        assert_eq!(a.len(), 1280);
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-3,
            "tflite and litert embeddings differ by {worst}"
        );
    }
}

#[test]
fn the_same_data_and_seed_give_the_same_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_variants(&d.join("data/cat"), "chelsea.jpg", 1, 3);
    write_variants(&d.join("data/Samoyed"), "astronaut.jpg", 1, 3);
    let mut shas = Vec::new();
    for out in ["a", "b"] {
        let run = edge_agent(&[
            "retrain",
            "--json",
            "--backend",
            "tflite",
            "--seed",
            "7",
            "--data",
            d.join("data").to_str().unwrap(),
            "--out",
            d.join(out).to_str().unwrap(),
        ]);
        assert!(matches!(run.status.code(), Some(0 | 4)), "{}", stderr(&run));
        shas.push(
            ModelPackage::load(&d.join(out).join("dogs_mobilenetv2.toml"))
                .unwrap()
                .manifest
                .model
                .sha256,
        );
    }
    assert_eq!(shas[0], shas[1]);
}
