//! Local mode's commands left `cloud-relay` for the `local-aws` binary (the relay's
//! crate holds only what runs against AWS). Their old names fail with a hint naming
//! the new command, instead of clap's bare "unrecognized subcommand".

use std::process::Command;

#[test]
fn local_modes_old_commands_name_their_new_home() {
    for (old, new) in [
        ("local", "local-aws run"),
        ("review-service", "local-aws review-service"),
        ("object-store", "local-aws object-store"),
        ("broker", "local-aws broker"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cloud-relay"))
            .args([old, "--help"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{old}: {stderr}");
        assert!(stderr.contains(&format!("run `{new}`")), "{old}: {stderr}");
    }
}

#[test]
fn the_relays_own_commands_are_still_there() {
    let out = Command::new(env!("CARGO_BIN_EXE_cloud-relay"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for command in ["run", "check-config", "setup", "manifest", "loops"] {
        assert!(help.contains(command), "{command} missing from: {help}");
    }
    assert!(!help.contains("review-service"), "{help}");
}
