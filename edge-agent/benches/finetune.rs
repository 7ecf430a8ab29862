//! Fine-tuning and evaluation benchmark (`cargo bench -p edge-agent --bench
//! finetune`), on the real model and photo variants, through the real binary:
//!
//! - `retrain` on 50 reviewed frames on top of a parent that carries a 500-frame
//!   replay set: wall time, the embedding / fit split, peak RSS;
//! - `eval` on 1,000 frames against `classify` on the same frames.
//!
//! Prints a table; no target is asserted here (timed tests are flaky, the table is
//! read by a person).

#[path = "../tests/finetune_support/mod.rs"]
mod finetune_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use finetune_support::write_variants;

const PHOTOS: [(&str, &str); 6] = [
    ("chelsea.jpg", "cat"),
    ("coffee.png", "coffee_cup"),
    ("rocket.jpg", "rocket"),
    ("astronaut.jpg", "Samoyed"),
    ("hubble.jpg", "Yorkshire_terrier"),
    ("camera_gray.png", "German_shepherd"),
];

/// `total` variants spread over the six photos, as class folders under `dir`.
fn labelled_set(dir: &Path, total: u64, first_seed: u64) -> Vec<PathBuf> {
    let per = total / PHOTOS.len() as u64;
    let mut class_dirs = Vec::new();
    for (i, (photo, label)) in PHOTOS.iter().enumerate() {
        let extra = u64::from((i as u64) < total % PHOTOS.len() as u64);
        let class = dir.join(label);
        write_variants(&class, photo, first_seed + i as u64 * 10_000, per + extra);
        class_dirs.push(class);
    }
    class_dirs
}

struct Run {
    seconds: f64,
    peak_rss_mib: f64,
    stdout: String,
}

/// Runs the binary and measures its wall time and peak RSS (`wait4`'s rusage).
// The child is reaped by `wait4` (for its own rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run(args: &[&str]) -> Run {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let output = std::thread::spawn(move || {
        use std::io::Read;
        let mut s = String::new();
        child.stdout.unwrap().read_to_string(&mut s).unwrap();
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be filled in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid out-pointers.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    // 3 and 4: retrain's "keep parent" and "promoted ungated", verdicts, not failures.
    assert!(
        libc::WIFEXITED(status) && matches!(libc::WEXITSTATUS(status), 0 | 3 | 4),
        "{args:?} failed"
    );
    Run {
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        stdout: output.join().unwrap(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    eprintln!("making 1,550 photo variants ...");
    labelled_set(&d.join("replay500"), 500, 1);
    labelled_set(&d.join("reviewed50"), 50, 100_000);
    let eval_dirs = labelled_set(&d.join("eval1000"), 1000, 200_000);

    eprintln!("parent with a 500-frame replay set ...");
    run(&[
        "retrain",
        "--json",
        "--holdout-fraction",
        "0",
        "--data",
        s(&d.join("replay500")),
        "--out",
        s(&d.join("parent")),
    ]);
    let parent = d.join("parent/dogs_mobilenetv2.toml");

    eprintln!("retrain: 50 reviewed frames + the replay ...");
    let retrain = run(&[
        "retrain",
        "--json",
        "--model",
        s(&parent),
        "--data",
        s(&d.join("reviewed50")),
        "--out",
        s(&d.join("child")),
    ]);
    let report: serde_json::Value = serde_json::from_str(retrain.stdout.trim()).unwrap();

    eprintln!("classify and eval on 1,000 frames ...");
    let mut classify_args = vec!["classify", "--json"];
    classify_args.extend(eval_dirs.iter().map(|p| s(p)));
    let classify = run(&classify_args);
    let eval = run(&["eval", "--json", "--data", s(&d.join("eval1000"))]);
    let eval_report: serde_json::Value = serde_json::from_str(eval.stdout.trim()).unwrap();

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| retrain backend | {} |",
        report["backend"].as_str().unwrap_or("?")
    );
    println!(
        "| retrain frames | {} from the replay set + 50 new: {} trained, {} held out |",
        report["frames_replayed"], report["frames_trained"], report["frames_held_out"]
    );
    println!(
        "| retrain wall time, whole process | {:.2} s |",
        retrain.seconds
    );
    println!(
        "| of which embedding / fit | {:.2} s / {:.2} s ({} iterations) |",
        report["embedding_seconds"].as_f64().unwrap(),
        report["fit_seconds"].as_f64().unwrap(),
        report["fit"]["iterations"]
    );
    println!("| retrain peak RSS | {:.0} MiB |", retrain.peak_rss_mib);
    println!(
        "| eval backend | {} |",
        eval_report["backend"].as_str().unwrap_or("?")
    );
    println!(
        "| classify 1,000 frames | {:.2} s, {:.0} MiB peak |",
        classify.seconds, classify.peak_rss_mib
    );
    println!(
        "| eval 1,000 frames | {:.2} s, {:.0} MiB peak |",
        eval.seconds, eval.peak_rss_mib
    );
    println!(
        "| eval / classify | {:.2}x |",
        eval.seconds / classify.seconds
    );
}
