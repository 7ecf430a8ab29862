//! What the local-mode tests that drive the operator commands share: the workspace's
//! binaries, signed copies of the shipped model, and local mode's S3 credentials.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The environment the operator commands need for local mode's object store.
pub const LOCAL_CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "edge-a2i-local"),
    ("AWS_SECRET_ACCESS_KEY", "edge-a2i-local-secret"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Runs a workspace binary; panics with its output unless it succeeds.
pub fn run_bin(name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(test_support::workspace_bin(name))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The shipped model as `version` (in `dir/model-VERSION`), signed with `key` by
/// `edge-agent model sign` into `out`, as a rollback of `rollback_of` if given.
/// Returns the package's path.
pub fn signed_model(
    dir: &Path,
    version: &str,
    key: &Path,
    out: &Path,
    rollback_of: Option<&str>,
) -> PathBuf {
    let model = dir.join(format!("model-{version}"));
    std::fs::create_dir_all(&model).unwrap();
    for f in [
        "labels.txt",
        "dogs_mobilenetv2.selftest.f32",
        "dogs_mobilenetv2.tflite",
    ] {
        std::fs::copy(repo().join("models").join(f), model.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(repo().join("models/dogs_mobilenetv2.toml"))
        .unwrap()
        .replace("version = \"1.0.0\"", &format!("version = \"{version}\""));
    std::fs::write(model.join("dogs_mobilenetv2.toml"), text).unwrap();
    let manifest = model.join("dogs_mobilenetv2.toml");
    let mut args = vec![
        "model",
        "sign",
        "--model",
        manifest.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(v) = rollback_of {
        args.extend(["--rollback-of", v]);
    }
    run_bin("edge-agent", &args, &[]);
    out.join(format!("dogs-mobilenetv2-{version}.tar"))
}
