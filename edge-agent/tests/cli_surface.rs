//! What the device binary offers: the benchmark is not in it (it is `cargo bench -p
//! edge-agent --bench peer`), and asking for it says where it went; `check-config`
//! names an MQTT password file it cannot read.

use std::process::Command;

#[test]
fn bench_is_an_unknown_subcommand_that_points_to_the_bench_target() {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("bench")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unrecognized subcommand 'bench'"), "{err}");
    assert!(
        err.contains("cargo bench -p edge-agent --bench peer"),
        "{err}"
    );
}

#[test]
fn the_help_lists_no_bench_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("classify"), "{help}");
    assert!(!help.contains("bench"), "{help}");
}

#[test]
fn check_config_names_an_unreadable_mqtt_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let missing = dir.path().join("no-such-password");
    let config = dir.path().join("agent.toml");
    let q = |p: &std::path::Path| toml::Value::String(p.display().to_string()).to_string();
    std::fs::write(
        &config,
        format!(
            "[device]\nid = \"pi-1\"\nstate_dir = {}\n\n[model]\nmanifest = {}\n\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = 1884\nusername = \"edge-a2i-local\"\n\
             password_file = {}\n\n[[source]]\nkind = \"folder\"\npath = {}\n",
            q(&dir.path().join("state")),
            q(&repo.join("models/dogs_mobilenetv2.toml")),
            q(&missing),
            q(dir.path()),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "mqtt.password_file {}: cannot read it",
            missing.display()
        )),
        "{err}"
    );
    std::fs::write(&missing, "s3cret\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
