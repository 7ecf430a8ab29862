//! `edge-agent classify` as a user runs it: the real binary, the real model, real
//! files — good ones, broken ones, and models that do not fit their manifest.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use protocol::sha256_hex;
use serde_json::Value;

mod jpeg_variants;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn samples() -> PathBuf {
    root().join("models/samples")
}

fn classify(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("classify")
        .args(args)
        .output()
        .expect("edge-agent runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_sample_is_classified_with_the_golden_top1() {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["classify", "--json", "--top-k", "5", "--backend", "tflite"])
        .arg(samples())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden_scores.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for case in golden["cases"].as_array().unwrap() {
        let name = case["image"].as_str().unwrap();
        let line = lines
            .iter()
            .find(|l| l["file"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no result for {name}"));
        assert_eq!(line["top_k"].as_array().unwrap().len(), 5);
        assert_eq!(line["top_k"][0]["label"], case["top1_label"], "{name}");
        assert_eq!(line["backend"], "tflite");
    }
}

#[test]
fn table_output_names_the_model_and_each_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["classify", "--backend", "tflite"])
        .arg(samples().join("chelsea.jpg"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("model: dogs-mobilenetv2 1.0.0 (backend tflite)"),
        "{text}"
    );
    assert!(
        text.contains("chelsea.jpg") && text.contains("Chihuahua"),
        "{text}"
    );
}

#[test]
fn broken_files_get_one_line_each_and_the_good_ones_are_still_classified() {
    let dir = tempfile::tempdir().unwrap();
    let good = samples().join("rocket.jpg");
    let chelsea = std::fs::read(samples().join("chelsea.jpg")).unwrap();
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let truncated = dir.path().join("truncated.jpg");
    std::fs::write(&truncated, &chelsea[..chelsea.len() / 3]).unwrap();
    let text = dir.path().join("notes.png");
    std::fs::write(&text, b"these are not pixels\n").unwrap();
    let mut garbage = chelsea.clone();
    garbage[2..2000]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 7) as u8);
    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, &garbage).unwrap();
    let missing = dir.path().join("missing.jpg");

    let out = classify(&[&empty, &good, &truncated, &text, &corrupt, &missing]);
    assert_eq!(out.status.code(), Some(1), "some files failed: exit 1");
    let err = stderr(&out);
    let line_for = |p: &Path| {
        err.lines()
            .find(|l| l.contains(&*p.display().to_string()))
            .unwrap_or_else(|| panic!("no error line for {}: {err}", p.display()))
            .to_string()
    };
    assert!(line_for(&empty).ends_with("empty file (0 bytes)"));
    assert!(line_for(&truncated).ends_with("truncated JPEG file: the image data ends early"));
    assert!(line_for(&text).contains("not an image: no JPEG or PNG signature"));
    assert!(
        line_for(&corrupt).contains("corrupt JPEG file"),
        "{}",
        line_for(&corrupt)
    );
    assert!(line_for(&missing).contains("cannot read: No such file"));
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        5,
        "{err}"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("rocket.jpg"),
        "the good file is classified: {stdout}"
    );
}

#[test]
fn hidden_files_in_a_folder_are_skipped_as_the_daemon_skips_them() {
    // A card written on a Mac: every photo has a `._` metadata twin that is no image.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(samples().join("rocket.jpg"), dir.path().join("photo.jpg")).unwrap();
    std::fs::write(dir.path().join("._photo.jpg"), b"\0\x05\x16\x07AppleDouble").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["classify", "--json", "--backend", "tflite"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let files: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["file"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(files.len(), 1, "{stdout}");
    assert!(files[0].ends_with("/photo.jpg"), "{stdout}");
}

#[test]
fn a_file_that_fails_is_one_json_line_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["classify", "--json", "--backend", "tflite"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["file"], empty.display().to_string());
    assert_eq!(line["error"], "empty file (0 bytes)");
}

/// A copy of the default model package in a temp dir, with the manifest edited.
fn model_copy(edit: impl Fn(&Path, String) -> String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "dogs_mobilenetv2.tflite",
        "labels.txt",
        "dogs_mobilenetv2.selftest.f32",
    ] {
        std::fs::copy(root().join("models").join(f), dir.path().join(f)).unwrap();
    }
    let manifest = std::fs::read_to_string(root().join("models/dogs_mobilenetv2.toml")).unwrap();
    let path = dir.path().join("model.toml");
    std::fs::write(&path, edit(dir.path(), manifest)).unwrap();
    (dir, path)
}

fn without_self_test(manifest: String) -> String {
    manifest.split("[self_test]").next().unwrap().to_string()
}

fn refused(manifest: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("classify")
        .arg("--model")
        .arg(manifest)
        .arg(samples().join("chelsea.jpg"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad model stops the command: {}",
        stderr(&out)
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is classified with a bad model"
    );
    stderr(&out)
}

#[test]
fn model_with_another_sha256_is_refused() {
    let (_d, m) = model_copy(|_, t| t.replace("a64f55ab1d968f8c", "0000000000000000"));
    let err = refused(&m);
    assert!(
        err.contains("does not match its manifest: sha256 is a64f55ab1d968f8c"),
        "{err}"
    );
}

#[test]
fn empty_model_file_is_refused() {
    let (_d, m) = model_copy(|dir, t| {
        std::fs::write(dir.join("dogs_mobilenetv2.tflite"), b"").unwrap();
        t
    });
    let err = refused(&m);
    assert!(
        err.contains("is not a TFLite model: only 0 bytes long"),
        "{err}"
    );
}

#[test]
fn file_that_is_not_tflite_is_refused() {
    let (_d, m) = model_copy(|dir, t| {
        let png = std::fs::read(samples().join("coffee.png")).unwrap();
        std::fs::write(dir.join("dogs_mobilenetv2.tflite"), &png).unwrap();
        t.replace(
            "a64f55ab1d968f8c5deeb5550634d044f7b6fee50baf49dc300df5a84998f32a",
            &sha256_hex(&png),
        )
    });
    let err = refused(&m);
    assert!(
        err.contains("is not a TFLite model: no TFL3 FlatBuffer identifier"),
        "{err}"
    );
}

#[test]
fn damaged_tflite_file_is_refused_not_crashed_on() {
    let (_d, m) = model_copy(|dir, t| {
        let mut model = std::fs::read(dir.join("dogs_mobilenetv2.tflite")).unwrap();
        // Keep the header; scramble the tables that follow it.
        for (i, b) in model[8..4096].iter_mut().enumerate() {
            *b ^= 0x5a ^ (i as u8);
        }
        std::fs::write(dir.join("dogs_mobilenetv2.tflite"), &model).unwrap();
        t.replace(
            "a64f55ab1d968f8c5deeb5550634d044f7b6fee50baf49dc300df5a84998f32a",
            &sha256_hex(&model),
        )
    });
    let err = refused(&m);
    assert!(
        err.contains("is not a TFLite model: the FlatBuffer verifier rejected it"),
        "{err}"
    );
}

#[test]
fn manifest_with_another_input_size_is_refused() {
    let (_d, m) = model_copy(|_, t| {
        without_self_test(t.replace("width = 160\nheight = 160", "width = 224\nheight = 224"))
    });
    let err = refused(&m);
    assert!(
        err.contains("input shape is [1, 160, 160, 3], the manifest says [1, 224, 224, 3]"),
        "{err}"
    );
}

#[test]
fn labels_that_do_not_match_the_outputs_are_refused() {
    let (_d, m) = model_copy(|dir, t| {
        let labels = std::fs::read_to_string(dir.join("labels.txt")).unwrap();
        let fewer: Vec<&str> = labels.lines().take(18).collect();
        std::fs::write(dir.join("labels.txt"), fewer.join("\n")).unwrap();
        without_self_test(t)
    });
    let err = refused(&m);
    assert!(
        err.contains("has 19 scores but there are 18 labels"),
        "{err}"
    );
}

#[test]
fn model_failing_its_self_test_is_refused() {
    let (_d, m) = model_copy(|_, t| t.replace("0.4955238401889801", "0.2955238401889801"));
    let err = refused(&m);
    assert!(
        err.contains("failed its self-test on the tflite backend: score 0 (Chihuahua)"),
        "{err}"
    );
}

#[test]
fn missing_model_manifest_is_named() {
    let err = refused(Path::new("/nonexistent/model.toml"));
    assert!(
        err.contains("cannot read model manifest /nonexistent/model.toml"),
        "{err}"
    );
}

/// Runs `classify --json` on `paths`; the JSON line of each, by file name as shown.
fn classify_json(paths: &[&Path]) -> (Output, Vec<Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["classify", "--json", "--backend", "tflite"])
        .args(paths)
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, lines)
}

#[test]
fn jpegs_with_trailing_data_or_without_huffman_tables_are_classified_as_the_photo() {
    use jpeg_variants::*;
    let dir = tempfile::tempdir().unwrap();
    let photo = sample("hubble.jpg");
    let trailer = dir.path().join("motion-photo.jpg");
    std::fs::write(&trailer, with_trailer(&photo)).unwrap();
    let webcam = dir.path().join("webcam.jpg");
    std::fs::write(&webcam, webcam_frame(&photo)).unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, cut_and_padded(&photo)).unwrap();
    let original = samples().join("hubble.jpg");
    let (out, lines) = classify_json(&[&original, &trailer, &webcam, &cut]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the cut file fails: {}",
        stderr(&out)
    );
    let want = &lines[0]["top_k"];
    for (i, name) in [(1, "motion-photo.jpg"), (2, "webcam.jpg")] {
        assert!(lines[i]["file"].as_str().unwrap().ends_with(name));
        assert_eq!(
            &lines[i]["top_k"], want,
            "{name}: the same scores as the photo"
        );
    }
    assert_eq!(
        lines[3]["error"], "truncated JPEG file: the image data ends early",
        "a scan that really ends early is still refused"
    );
}

#[test]
fn a_file_name_that_is_not_utf8_or_holds_a_newline_is_classified_and_shown_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9.jpg"));
    std::fs::copy(samples().join("chelsea.jpg"), &latin1).unwrap();
    let newline = dir.path().join("two\nlines.jpg");
    std::fs::write(&newline, b"not a picture").unwrap();
    let (out, lines) = classify_json(&[&latin1, &newline]);
    assert_eq!(lines.len(), 2, "{}", stderr(&out));
    let shown = format!("{}/caf\\xe9.jpg", dir.path().display());
    assert_eq!(lines[0]["file"], shown.as_str());
    assert!(lines[0]["top_k"].is_array());
    assert!(lines[1]["file"]
        .as_str()
        .unwrap()
        .ends_with("two\\nlines.jpg"));
    // The error line on stderr is one line, naming the file escaped.
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: ") && l.contains("two\\nlines.jpg: not an image")),
        "{err}"
    );
}
