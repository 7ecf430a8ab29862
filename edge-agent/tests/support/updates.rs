//! The model update tests' part of the cast: the CLI (`edge-agent model ...`),
//! copies of the default model made into new versions, and an agent that trusts a
//! fresh fleet key.

use std::path::{Path, PathBuf};
use std::process::Command;

use test_support::Mosquitto;

use super::Agent;

pub fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

pub fn edge_agent(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .env_remove("EDGE_AGENT_LITERT_LIB")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "edge-agent {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A copy of the default model with another version; `edit` changes its manifest
/// text, `labels` its labels and `model` its .tflite bytes.
pub fn model_copy(
    dir: &Path,
    version: &str,
    edit: impl Fn(String) -> String,
    model: impl Fn(Vec<u8>) -> Vec<u8>,
) -> PathBuf {
    let out = dir.join(format!("model-{version}"));
    std::fs::create_dir_all(&out).unwrap();
    for f in ["labels.txt", "dogs_mobilenetv2.selftest.f32"] {
        std::fs::copy(models().join(f), out.join(f)).unwrap();
    }
    let tflite = model(std::fs::read(models().join("dogs_mobilenetv2.tflite")).unwrap());
    let sha = protocol::sha256_hex(&tflite);
    std::fs::write(out.join("dogs_mobilenetv2.tflite"), tflite).unwrap();
    let text = std::fs::read_to_string(models().join("dogs_mobilenetv2.toml"))
        .unwrap()
        .replace("version = \"1.0.0\"", &format!("version = \"{version}\""))
        .replace(
            "a64f55ab1d968f8c5deeb5550634d044f7b6fee50baf49dc300df5a84998f32a",
            &sha,
        );
    let manifest = out.join("dogs_mobilenetv2.toml");
    std::fs::write(&manifest, edit(text)).unwrap();
    manifest
}

/// Signs `manifest` with `key` into `out`; returns the package path.
pub fn sign(manifest: &Path, key: &Path, out: &Path, extra: &[&str]) -> PathBuf {
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
    args.extend_from_slice(extra);
    let stdout = String::from_utf8(edge_agent(&args).stdout).unwrap();
    let line = stdout.lines().find(|l| l.starts_with("package:")).unwrap();
    PathBuf::from(line.split_whitespace().nth(1).unwrap())
}

/// Makes the fleet key pair `root/fleet.{key,pub}` and starts an agent in
/// `root/agent` that trusts it, with `update` (TOML lines) in its `[update]`.
pub fn updating_agent(root: &Path, broker: &Mosquitto, update: &str) -> Agent {
    edge_agent(&[
        "model",
        "keygen",
        "--out",
        root.join("fleet").to_str().unwrap(),
    ]);
    let extra = format!(
        "\n[update]\ntrusted_keys = [\"{}\"]\n{update}\n",
        root.join("fleet.pub").display()
    );
    let mut agent = Agent::new(&root.join("agent"), broker, &extra);
    agent.start();
    agent
}
