//! What the device binary offers: the benchmark is not in it (it is `cargo bench -p
//! edge-agent --bench peer`), and asking for it says where it went.

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
