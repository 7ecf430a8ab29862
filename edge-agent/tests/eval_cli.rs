//! `edge-agent eval` on a labelled set of real photos: its numbers checked against
//! scikit-learn over the same predictions (`sklearn_check.py`), the review-budget
//! lines, the HTML report, and its refusals.

mod finetune_support;

use std::path::Path;
use std::process::Command;

use finetune_support::*;

/// Class folders of photo variants, labelled so that the model is right on some
/// (the labels it gives them) and wrong on others, with one label it does not have.
fn labelled_set(dir: &Path) {
    for (photo, label, seed) in [
        ("hubble.jpg", "Yorkshire_terrier", 10),
        ("camera_gray.png", "German_shepherd", 20),
        ("chelsea.jpg", "Chihuahua", 30),
        ("coffee.png", "pug", 40),
        ("rocket.jpg", "rocket", 50),
        ("astronaut.jpg", "Samoyed", 60),
    ] {
        write_variants(&dir.join(label), photo, seed, 5);
    }
}

#[test]
fn eval_numbers_match_scikit_learn_and_the_report_has_every_plot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    labelled_set(&data);
    let report_dir = dir.path().join("report");
    let out = edge_agent(&[
        "eval",
        "--json",
        "--backend",
        "tflite",
        "--catch",
        "0.8",
        "--data",
        data.to_str().unwrap(),
        "--report",
        report_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let eval = stdout_json(&out);
    let m = &eval["metrics"];
    assert_eq!(m["frames"], 30);
    let labels = m["labels"].clone();
    assert_eq!(
        labels.as_array().unwrap().len(),
        20,
        "19 model labels + rocket"
    );

    // scikit-learn over the very predictions eval made.
    let predictions = eval["predictions"].as_array().unwrap();
    let input = serde_json::json!({
        "labels": labels,
        "truth": predictions.iter().map(|p| p["truth"].clone()).collect::<Vec<_>>(),
        "scores": predictions.iter().map(|p| p["scores"].clone()).collect::<Vec<_>>(),
    });
    let input_path = dir.path().join("predictions.json");
    std::fs::write(&input_path, input.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sklearn_check.py");
    let py = Command::new("python3")
        .arg(&script)
        .arg(&input_path)
        .output()
        .unwrap();
    assert!(py.status.success(), "sklearn_check.py: {}", stderr(&py));
    let sk: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    let close =
        |what: &str, a: &serde_json::Value, b: &serde_json::Value| match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9, "{what}: eval {x}, sklearn {y}"),
            _ => assert!(a.is_null() && b.is_null(), "{what}: eval {a}, sklearn {b}"),
        };
    close("accuracy", &m["accuracy"], &sk["accuracy"]);
    for k in [
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "macro_auroc",
        "macro_auprc",
    ] {
        close(k, &m[k], &sk[k]);
    }
    let ours = m["per_class"].as_array().unwrap();
    let theirs = sk["per_class"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (o, t) in ours.iter().zip(theirs) {
        for k in ["precision", "recall", "f1", "support", "auroc", "auprc"] {
            close(&format!("{} {k}", o["label"]), &o[k], &t[k]);
        }
    }
    assert_eq!(m["confusion"], sk["confusion"]);
    // Not a vacuous check: the model is right on some frames and wrong on others.
    let accuracy = m["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.0 && accuracy < 1.0, "{accuracy}");

    // The review-budget answer for --catch 0.8 catches at least 80% of the mistakes.
    let target = &eval["target_point"];
    assert!(target["catch_share"].as_f64().unwrap() >= 0.8, "{target}");
    assert!(eval["policy_point"]["review_share"].as_f64().is_some());

    let page = std::fs::read_to_string(report_dir.join("index.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 5);
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("src="));
}

#[test]
fn eval_prints_a_readable_report_with_the_review_budget() {
    let dir = tempfile::tempdir().unwrap();
    labelled_set(dir.path());
    let out = edge_agent(&[
        "eval",
        "--backend",
        "tflite",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "accuracy",
        "Samoyed",
        "to catch 90% of mistakes",
        "current policy",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn eval_refuses_a_set_with_nothing_in_it_and_a_bad_catch_target() {
    let dir = tempfile::tempdir().unwrap();
    let out = edge_agent(&["eval", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no class folders"),
        "{}",
        stderr(&out)
    );
    let out = edge_agent(&[
        "eval",
        "--catch",
        "1.5",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("1.5 is not within 0..=1"),
        "{}",
        stderr(&out)
    );
}
