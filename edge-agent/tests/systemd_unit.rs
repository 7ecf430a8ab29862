//! The systemd unit, sysusers and tmpfiles snippets, checked by systemd's own tools:
//! `systemd-analyze verify` (syntax, known keys, an executable ExecStart),
//! `systemd-analyze security --offline` (the hardening adds up), and
//! `systemd-sysusers` / `systemd-tmpfiles` applied to a scratch root directory.

use std::path::{Path, PathBuf};
use std::process::Command;

fn systemd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

fn unit_text() -> String {
    std::fs::read_to_string(systemd_dir().join("edge-agent.service")).unwrap()
}

/// The unit with ExecStart pointing at the binary this test run built: verify checks
/// that the program exists, and /usr/bin/edge-agent is not installed here.
fn unit_for_verify(dir: &Path) -> PathBuf {
    let text = unit_text();
    assert!(text.contains("ExecStart=/usr/bin/edge-agent run --config /etc/edge-agent/config.toml"));
    let text = text.replace("/usr/bin/edge-agent", env!("CARGO_BIN_EXE_edge-agent"));
    let path = dir.join("edge-agent.service");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (is systemd installed?)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_unit_passes_systemd_analyze_verify_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_verify(dir.path());
    let (ok, out) = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    assert!(ok, "systemd-analyze verify failed:\n{out}");
    // Unknown keys and bad values are only warnings (exit 0): none may mention the unit.
    let about_unit: Vec<&str> = out.lines().filter(|l| l.contains("edge-agent")).collect();
    assert!(
        about_unit.is_empty(),
        "warnings:\n{}",
        about_unit.join("\n")
    );
}

#[test]
fn a_misspelt_key_would_be_caught() {
    // Guards the check above: verify does report what the assertion looks for.
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_verify(dir.path());
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("ProtectHome=", "ProtectHmoe=");
    std::fs::write(&unit, text).unwrap();
    let (_, out) = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    assert!(
        out.lines()
            .any(|l| l.contains("edge-agent") && l.contains("ProtectHmoe")),
        "{out}"
    );
}

#[test]
fn the_hardening_scores_as_well_exposed_as_at_most_2_of_10() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_verify(dir.path());
    let (ok, out) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit));
    assert!(ok, "exposure above 2.0:\n{out}");
}

#[test]
fn the_unit_has_the_service_contract_and_hardening_we_rely_on() {
    let text = unit_text();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for want in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "Restart=on-failure",
        "RestartSec=5",
        "TimeoutStopSec=20",
        "User=edge-agent",
        "DynamicUser=no",
        "SupplementaryGroups=video",
        "StateDirectory=edge-agent",
        "ConfigurationDirectory=edge-agent",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "DevicePolicy=closed",
        "DeviceAllow=char-video4linux rw",
        "CapabilityBoundingSet=",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
        "RestrictRealtime=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    ] {
        assert!(lines.contains(&want), "the unit lacks {want:?}");
    }
    // No write access anywhere but the state directory unless a drop-in adds it, and
    // no device node hidden from the camera.
    assert!(!lines.iter().any(|l| l.starts_with("ReadWritePaths=")));
    assert!(!lines.iter().any(|l| l.starts_with("PrivateDevices=yes")));
}

#[test]
fn sysusers_and_tmpfiles_create_the_user_and_the_inbox() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    let (ok, out) = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", r.display()))
        .arg(systemd_dir().join("edge-agent.sysusers.conf")));
    assert!(ok, "{out}");
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("edge-agent:"))
        .expect("user created");
    assert!(
        user.ends_with(":/var/lib/edge-agent:/usr/sbin/nologin"),
        "{user}"
    );

    let (ok, out) = run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", r.display()))
        .arg("--create")
        .arg(systemd_dir().join("edge-agent.tmpfiles.conf")));
    assert!(ok, "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(r.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("var/lib/edge-agent"), 0o750);
    assert_eq!(mode("var/lib/edge-agent/inbox"), 0o2770);
}
