//! `retrain` and `eval` against what a careless operator or an attacker feeds them:
//! manifests that point outside their package, duplicate and re-exported rows, labels
//! a labels file cannot hold, odd `--l2` and `--out` values, a killed run's leftovers,
//! byte-order marks and hidden files. Each case failed (or did harm) before its fix.

mod finetune_support;

use std::path::Path;

use edge_agent::model::ModelPackage;
use finetune_support::*;

fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

/// A class folder set of chelsea (cat) and astronaut (Samoyed) variants.
fn small_set(dir: &Path, per_class: u64) {
    write_variants(&dir.join("cat"), "chelsea.jpg", 1, per_class);
    write_variants(&dir.join("Samoyed"), "astronaut.jpg", 1, per_class);
}

#[test]
fn a_parent_manifest_pointing_outside_its_folder_is_never_written_to() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    // The parent's model file lives elsewhere, named by an absolute path; its labels
    // through "..".
    std::fs::create_dir_all(d.join("parent")).unwrap();
    std::fs::copy(
        models.join("dogs_mobilenetv2.tflite"),
        d.join("elsewhere.tflite"),
    )
    .unwrap();
    std::fs::copy(models.join("labels.txt"), d.join("shared-labels.txt")).unwrap();
    std::fs::copy(
        models.join("dogs_mobilenetv2.selftest.f32"),
        d.join("parent/st.f32"),
    )
    .unwrap();
    let mut manifest = ModelPackage::load(&default_manifest()).unwrap().manifest;
    manifest.model.file = d.join("elsewhere.tflite").display().to_string();
    manifest.model.labels = "../shared-labels.txt".into();
    manifest.self_test.as_mut().unwrap().input = "st.f32".into();
    let parent = d.join("parent/m.toml");
    std::fs::write(&parent, toml::to_string(&manifest).unwrap()).unwrap();
    let before = (
        std::fs::read(d.join("elsewhere.tflite")).unwrap(),
        std::fs::read(d.join("shared-labels.txt")).unwrap(),
    );
    small_set(&d.join("data"), 3);
    let run = edge_agent(&[
        "retrain",
        "--json",
        "--backend",
        "tflite",
        "--model",
        parent.to_str().unwrap(),
        "--data",
        d.join("data").to_str().unwrap(),
        "--out",
        d.join("v2").to_str().unwrap(),
    ]);
    assert!(matches!(code(&run), Some(0 | 4)), "{}", stderr(&run));
    assert_eq!(
        std::fs::read(d.join("elsewhere.tflite")).unwrap(),
        before.0,
        "the parent's model was overwritten"
    );
    assert_eq!(
        std::fs::read(d.join("shared-labels.txt")).unwrap(),
        before.1,
        "the shared labels were overwritten"
    );
    // The new package holds its own files and loads.
    let package = ModelPackage::load(&d.join("v2/m.toml")).unwrap();
    assert_eq!(package.manifest.model.file, "elsewhere.tflite");
    assert!(d.join("v2/elsewhere.tflite").is_file() && d.join("v2/shared-labels.txt").is_file());
}

#[test]
fn numbers_that_would_make_the_fit_diverge_are_refused_up_front() {
    for l2 in ["nan", "inf", "-1"] {
        let arg = format!("--l2={l2}");
        let out = edge_agent(&["retrain", &arg, "--data", "x", "--out", "y"]);
        assert_eq!(code(&out), Some(2));
        assert!(
            stderr(&out).contains("is not a finite number >= 0"),
            "{l2}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn labels_a_labels_file_cannot_hold_are_refused_with_their_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = write_variants(&d.join("img"), "coffee.png", 1, 1).remove(0);
    for (label, why) in [
        ("cof\nfee", "control character"),
        (" pug", "whitespace"),
        ("", "empty"),
    ] {
        let m = d.join("m.manifest");
        std::fs::write(&m, manifest_row(image.to_str().unwrap(), label, "label")).unwrap();
        let out = edge_agent(&[
            "retrain",
            "--data",
            m.to_str().unwrap(),
            "--out",
            d.join("o").to_str().unwrap(),
        ]);
        assert_eq!(code(&out), Some(2), "{label:?}");
        let e = stderr(&out);
        assert!(
            e.contains("m.manifest:1") && e.contains("cannot be a class name") && e.contains(why),
            "{e}"
        );
        assert!(!d.join("o").exists());
    }
}

#[test]
fn the_same_image_counts_once_across_rows_and_retrains() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = write_variants(&d.join("img"), "chelsea.jpg", 1, 5);
    let rows: Vec<String> = images
        .iter()
        .chain(&images) // the manifest exported twice
        .map(|p| manifest_row(p.to_str().unwrap(), "cat", "label"))
        .collect();
    let m = d.join("twice.manifest");
    std::fs::write(&m, rows.join("\n")).unwrap();
    let first = edge_agent(&[
        "retrain",
        "--json",
        "--backend",
        "tflite",
        "--data",
        m.to_str().unwrap(),
        "--out",
        d.join("v2").to_str().unwrap(),
    ]);
    let r1 = stdout_json(&first);
    assert_eq!(r1["frames_duplicate"], 5, "{r1}");
    assert_eq!(
        r1["frames_trained"].as_u64().unwrap() + r1["frames_held_out"].as_u64().unwrap(),
        5
    );
    // Again, on the child: its replay set already holds those 5 images.
    let second = edge_agent(&[
        "retrain",
        "--json",
        "--backend",
        "tflite",
        "--model",
        d.join("v2/dogs_mobilenetv2.toml").to_str().unwrap(),
        "--data",
        m.to_str().unwrap(),
        "--out",
        d.join("v3").to_str().unwrap(),
    ]);
    let r2 = stdout_json(&second);
    assert_eq!(
        r2["frames_trained"].as_u64().unwrap() + r2["frames_held_out"].as_u64().unwrap(),
        5,
        "{r2}"
    );
    let replay: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("v3/replay.json")).unwrap()).unwrap();
    assert_eq!(
        replay["frames"].as_array().unwrap().len(),
        5,
        "the replay set did not grow"
    );
}

#[test]
fn an_out_that_is_a_file_is_refused_before_any_work_and_stale_staging_is_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("file"), "mine").unwrap();
    let out = edge_agent(&[
        "retrain",
        "--data",
        d.join("no-such-data").to_str().unwrap(),
        "--out",
        d.join("file").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), Some(2));
    // Refused for --out, not for the missing data: checked first.
    assert!(
        stderr(&out).contains("exists and is not a directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(d.join("file")).unwrap(), "mine");

    // A killed run's staging directory (its pid long gone) is removed by the next.
    let stale = d.join(".v2.partial-999999999");
    std::fs::create_dir_all(&stale).unwrap();
    small_set(&d.join("data"), 2);
    let run = edge_agent(&[
        "retrain",
        "--backend",
        "tflite",
        "--data",
        d.join("data").to_str().unwrap(),
        "--out",
        d.join("v2").to_str().unwrap(),
    ]);
    assert!(matches!(code(&run), Some(0 | 4)), "{}", stderr(&run));
    assert!(!stale.exists(), "stale staging left behind");
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_s3_bucket_of_dot_dot_cannot_leave_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.manifest");
    std::fs::write(&m, manifest_row("s3://../etc/passwd", "cat", "label")).unwrap();
    let out = edge_agent(&[
        "eval",
        "--data",
        m.to_str().unwrap(),
        "--store",
        dir.path().join("store").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), Some(2));
    assert!(
        stderr(&out).contains("is not an s3://bucket/key URI this store can hold"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_byte_order_mark_and_hidden_files_do_not_stop_eval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = write_variants(&d.join("cat"), "chelsea.jpg", 1, 2);
    std::fs::write(d.join("cat/._chelsea_1.jpg"), b"macOS resource fork").unwrap();
    let rows: Vec<String> = images
        .iter()
        .map(|p| manifest_row(p.to_str().unwrap(), "cat", "label"))
        .collect();
    let m = d.join("bom.manifest");
    std::fs::write(&m, format!("\u{feff}{}\r\n", rows.join("\r\n"))).unwrap();
    for data in [m.as_path(), d] {
        let out = edge_agent(&["eval", "--json", "--data", data.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", data.display(), stderr(&out));
        assert_eq!(stdout_json(&out)["metrics"]["frames"], 2);
    }
}

#[test]
fn eval_refuses_a_policy_that_does_not_fit_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_set(&d.join("data"), 1);
    let config = d.join("agent.toml");
    let mut text = edge_agent_default_config();
    text.push_str("\n[policy.labels.not_a_label]\nmin_confidence = 0.9\n");
    std::fs::write(&config, text).unwrap();
    let out = edge_agent(&[
        "eval",
        "--config",
        config.to_str().unwrap(),
        "--data",
        d.join("data").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("not_a_label"), "{e}");
}

fn edge_agent_default_config() -> String {
    let out = edge_agent(&["print-default-config"]);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn eval_of_only_none_of_these_frames_says_there_is_nothing_to_score() {
    let dir = tempfile::tempdir().unwrap();
    write_variants(&dir.path().join("none of these"), "coffee.png", 1, 2);
    let out = edge_agent(&["eval", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to score: of 2 frames, 2 are \"none of these\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bare_relative_out_works_from_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    small_set(&dir.path().join("data"), 2);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .current_dir(dir.path())
        .env_remove("EDGE_AGENT_LITERT_LIB")
        .args(["retrain", "--model"])
        .arg(default_manifest())
        .args(["--data", "data", "--out", "v2"])
        .output()
        .unwrap();
    assert!(matches!(code(&out), Some(0 | 4)), "{}", stderr(&out));
    assert!(ModelPackage::load(&dir.path().join("v2/dogs_mobilenetv2.toml")).is_ok());
}

#[test]
fn none_of_these_answers_are_negatives_unless_asked_to_be_a_class() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_set(&d.join("data"), 3);
    write_variants(&d.join("data/none of these"), "coffee.png", 1, 3);
    let mut labels = Vec::new();
    for (out, extra) in [("neg", None), ("cls", Some("--none-as-class"))] {
        let mut args = vec!["retrain", "--json", "--backend", "tflite", "--data"];
        let data = d.join("data");
        let out_dir = d.join(out);
        args.push(data.to_str().unwrap());
        args.extend(["--out", out_dir.to_str().unwrap()]);
        args.extend(extra);
        let run = edge_agent(&args);
        assert!(matches!(code(&run), Some(0 | 4)), "{}", stderr(&run));
        let report = stdout_json(&run);
        assert_eq!(
            report["frames_trained"].as_u64().unwrap()
                + report["frames_held_out"].as_u64().unwrap(),
            9
        );
        labels.push(
            ModelPackage::load(&out_dir.join("dogs_mobilenetv2.toml"))
                .unwrap()
                .labels,
        );
    }
    assert!(
        !labels[0].contains(&"none of these".to_string()),
        "a negative, not a class"
    );
    assert_eq!(labels[0].len(), 20, "19 + cat");
    assert_eq!(labels[1].last().map(String::as_str), Some("none of these"));
    assert_eq!(labels[1].len(), 21);
}

#[test]
fn a_data_or_anchor_path_that_does_not_exist_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("o").to_str().unwrap().to_string();
    let nope = d.join("nope").to_str().unwrap().to_string();
    let run = edge_agent(&["retrain", "--data", &nope, "--out", &out]);
    assert_eq!(code(&run), Some(2));
    assert!(
        stderr(&run).contains("nope: no such file or folder"),
        "{}",
        stderr(&run)
    );
    small_set(&d.join("data"), 1);
    let data = d.join("data").to_str().unwrap().to_string();
    let run = edge_agent(&["retrain", "--data", &data, "--anchor", &nope, "--out", &out]);
    assert_eq!(code(&run), Some(2));
    assert!(
        stderr(&run).contains("anchor ") && stderr(&run).contains("nope: no such file or folder"),
        "{}",
        stderr(&run)
    );
}
