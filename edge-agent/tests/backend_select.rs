//! Choosing the inference backend, as an operator meets it: `edge-agent classify` with
//! `--backend` and `--litert-library`. `auto` uses LiteRT when the library loads and
//! passes the model's self-test, and otherwise falls back to tflite with one line
//! saying why; an explicit `litert` that cannot be used stops with a clear error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{litert_library, root};
use serde_json::Value;

fn chelsea() -> PathBuf {
    root().join("models/samples/chelsea.jpg")
}

/// `classify --json` on one photo with the given backend flags, with no LiteRT from
/// the environment (so only the flags decide).
fn classify(backend: &str, library: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
    cmd.env_remove("EDGE_AGENT_LITERT_LIB")
        .args(["classify", "--json", "--backend", backend]);
    if let Some(lib) = library {
        cmd.arg("--litert-library").arg(lib);
    }
    cmd.arg(chelsea()).output().expect("edge-agent runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_line(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().next().expect("one result line")).unwrap()
}

/// The one backend log line.
fn backend_line(out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("edge-agent: inference backend"))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one backend line: {err}");
    lines[0].to_string()
}

/// A file with a library's name that is not a shared object.
fn not_a_library(dir: &Path) -> PathBuf {
    let path = dir.join("libLiteRt.so");
    // Long enough for the loader to read an ELF header's worth and reject it.
    std::fs::write(&path, "this is not a shared object\n".repeat(100)).unwrap();
    path
}

/// A real shared object that exports the LiteRT C API but computes wrong scores
/// (tests/fixtures/fake_litert.c), built with the system C compiler.
fn library_with_wrong_results(dir: &Path) -> PathBuf {
    fake_library(dir, "libFakeLiteRt.so", &[])
}

/// The same stand-in, segfaulting when LiteRT's environment is created.
fn library_that_crashes(dir: &Path) -> PathBuf {
    fake_library(dir, "libCrashingLiteRt.so", &["-DCRASH_ON_CREATE"])
}

fn fake_library(dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_litert.c");
    let path = dir.join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O1"])
        .args(defines)
        .arg("-o")
        .arg(&path)
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc}: {e}"));
    assert!(status.success(), "{cc} failed on {}", source.display());
    path
}

fn assert_fell_back(out: &Output, why: &str) {
    assert!(
        out.status.success(),
        "auto still classifies: {}",
        stderr(out)
    );
    let line = backend_line(out);
    assert!(
        line.starts_with("edge-agent: inference backend tflite: LiteRT not used: "),
        "{line}"
    );
    assert!(line.contains(why), "the line says why ({why:?}): {line}");
    let result = json_line(out);
    assert_eq!(result["backend"], "tflite");
    assert_eq!(result["top_k"][0]["label"], "Chihuahua");
}

fn assert_refused(out: &Output, why: &str) {
    assert_eq!(
        out.status.code(),
        Some(2),
        "explicit litert stops: {}",
        stderr(out)
    );
    assert!(out.stdout.is_empty(), "nothing is classified");
    let err = stderr(out);
    assert!(
        err.contains("the litert backend was requested but cannot be used: "),
        "{err}"
    );
    assert!(err.contains(why), "the error says why ({why:?}): {err}");
}

#[test]
fn auto_uses_litert_when_the_library_loads_and_passes_the_self_test() {
    let lib = litert_library();
    let out = classify("auto", Some(&lib));
    assert!(out.status.success(), "{}", stderr(&out));
    let line = backend_line(&out);
    assert!(
        line.starts_with("edge-agent: inference backend litert: "),
        "{line}"
    );
    assert!(line.contains(&*lib.display().to_string()), "{line}");
    assert_eq!(json_line(&out)["backend"], "litert");
}

#[test]
fn auto_finds_the_library_through_the_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .env("EDGE_AGENT_LITERT_LIB", litert_library())
        .args(["classify", "--json"])
        .arg(chelsea())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_line(&out)["backend"], "litert");
}

#[test]
fn explicit_litert_uses_litert() {
    let out = classify("litert", Some(&litert_library()));
    assert!(out.status.success(), "{}", stderr(&out));
    let result = json_line(&out);
    assert_eq!(result["backend"], "litert");
    assert_eq!(result["top_k"][0]["label"], "Chihuahua");
}

#[test]
fn explicit_tflite_never_looks_for_litert() {
    let out = classify("tflite", Some(Path::new("/nonexistent/libLiteRt.so")));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        backend_line(&out),
        "edge-agent: inference backend tflite: backend = \"tflite\" was requested"
    );
    assert_eq!(json_line(&out)["backend"], "tflite");
}

#[test]
fn auto_with_the_library_missing_falls_back_to_tflite_and_says_why() {
    let out = classify("auto", Some(Path::new("/nonexistent/libLiteRt.so")));
    assert_fell_back(
        &out,
        "the configured litert_library /nonexistent/libLiteRt.so does not exist",
    );
}

#[test]
fn auto_with_a_file_that_is_not_a_shared_object_falls_back_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let lib = not_a_library(dir.path());
    let out = classify("auto", Some(&lib));
    assert_fell_back(&out, &format!("cannot load {}: ", lib.display()));
    assert!(
        backend_line(&out).contains("invalid ELF header"),
        "{}",
        backend_line(&out)
    );
}

#[test]
fn auto_with_a_library_that_fails_the_self_test_falls_back_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library_with_wrong_results(dir.path());
    let out = classify("auto", Some(&lib));
    assert_fell_back(
        &out,
        "failed its self-test on the litert backend: score 0 (Chihuahua) is 0.05263",
    );
}

#[test]
fn auto_survives_a_library_that_crashes_and_falls_back_to_tflite() {
    // LiteRT's first load and self-test run in a child process: the crash ends the
    // child, and the agent goes on with tflite, saying so.
    let dir = tempfile::tempdir().unwrap();
    let lib = library_that_crashes(dir.path());
    let out = classify("auto", Some(&lib));
    assert_fell_back(&out, "crashed (signal 11, SIGSEGV) while loading");
    assert!(backend_line(&out).contains(&lib.display().to_string()));
}

#[test]
fn explicit_litert_with_the_library_missing_is_a_clear_error() {
    let out = classify("litert", Some(Path::new("/nonexistent/libLiteRt.so")));
    assert_refused(
        &out,
        "the configured litert_library /nonexistent/libLiteRt.so does not exist",
    );
}

#[test]
fn explicit_litert_with_a_file_that_is_not_a_shared_object_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let lib = not_a_library(dir.path());
    let out = classify("litert", Some(&lib));
    assert_refused(&out, "invalid ELF header");
}

#[test]
fn explicit_litert_with_a_library_that_fails_the_self_test_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library_with_wrong_results(dir.path());
    let out = classify("litert", Some(&lib));
    assert_refused(&out, "failed its self-test on the litert backend");
}

#[test]
fn a_shared_object_that_is_not_litert_is_named() {
    // libc is a shared object everywhere these tests run, and has no LiteRT in it.
    let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    let libc = if libc.is_file() {
        libc.to_path_buf()
    } else {
        PathBuf::from(format!(
            "/lib/{}-linux-gnu/libc.so.6",
            std::env::consts::ARCH
        ))
    };
    let out = classify("litert", Some(&libc));
    assert_refused(&out, "is not LiteRT >= 2.1.6");
}

/// `classify --json --backend auto` with LiteRT looked for only in the default places,
/// the fetch script's install directory being `fetched`.
fn classify_auto_with_fetch_dir(fetched: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .env_remove("EDGE_AGENT_LITERT_LIB")
        .env("EDGE_A2I_LITERT_DIR", fetched)
        .args(["classify", "--json", "--backend", "auto"])
        .arg(chelsea())
        .output()
        .expect("edge-agent runs")
}

#[test]
fn auto_finds_the_library_where_the_fetch_script_installs_it() {
    // scripts/fetch-litert.sh puts it in <dir>/<version>-<arch>/libLiteRt.so.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join(format!("2.3.0-{}", std::env::consts::ARCH));
    std::fs::create_dir(&folder).unwrap();
    std::os::unix::fs::symlink(litert_library(), folder.join("libLiteRt.so")).unwrap();
    let out = classify_auto_with_fetch_dir(dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_line(&out)["backend"], "litert", "{}", stderr(&out));
}

#[test]
fn auto_without_litert_installed_says_so_in_one_short_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = classify_auto_with_fetch_dir(dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        backend_line(&out),
        "edge-agent: inference backend tflite: LiteRT not installed (scripts/fetch-litert.sh installs it)"
    );
    assert_eq!(json_line(&out)["backend"], "tflite");
}
