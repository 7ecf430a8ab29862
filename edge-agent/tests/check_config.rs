//! `edge-agent check-config` checks everything `run` needs before it starts, and says
//! ok only then: each fault is exit status 2 and one line naming the setting and the
//! file, the same line `run` would stop with.

use std::path::{Path, PathBuf};
use std::process::Output;

use test_support::TestCerts;

struct Setup {
    dir: tempfile::TempDir,
    certs: TestCerts,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let certs = TestCerts::generate(dir.path().join("certs"));
        std::fs::create_dir(dir.path().join("inbox")).unwrap();
        Setup { dir, certs }
    }

    /// A config whose TLS files are `cert` and `key` and whose folder source is `inbox`.
    fn config(&self, cert: &Path, key: &Path, inbox: &Path) -> PathBuf {
        let text = format!(
            r#"
[device]
id = "pi-check"
state_dir = "{state}"

[mqtt]
host = "127.0.0.1"
port = 8883

[mqtt.tls]
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"

[[source]]
kind = "folder"
path = "{inbox}"
"#,
            state = self.dir.path().join("state").display(),
            ca = self.certs.ca_cert.display(),
            cert = cert.display(),
            key = key.display(),
            inbox = inbox.display(),
        );
        let path = self.dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }
}

fn check(config: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["check-config", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// Exit status 2 and exactly one stderr line, which contains every piece of `expected`.
fn assert_refused(out: &Output, expected: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        out.stdout.is_empty(),
        "no ok: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for piece in expected {
        assert!(err.contains(piece), "{piece:?} in: {err}");
    }
}

#[test]
fn a_good_config_is_ok() {
    let s = Setup::new();
    let client = s.certs.client("pi-check");
    let out = check(&s.config(&client.cert, &client.key, &s.inbox()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
}

#[test]
fn a_certificate_that_is_not_pem_is_refused() {
    let s = Setup::new();
    let client = s.certs.client("pi-check");
    let der = s.dir.path().join("cert.der");
    std::fs::write(&der, [0x30u8, 0x82, 0x01, 0x0a, 0x02, 0x82]).unwrap();
    let out = check(&s.config(&der, &client.key, &s.inbox()));
    assert_refused(
        &out,
        &[
            &format!("mqtt.tls.cert_file {}", der.display()),
            "holds no PEM certificate",
        ],
    );
}

#[test]
fn a_key_that_is_not_pem_is_refused() {
    let s = Setup::new();
    let client = s.certs.client("pi-check");
    let out = check(&s.config(&client.cert, &client.cert, &s.inbox()));
    assert_refused(
        &out,
        &[
            &format!("mqtt.tls.key_file {}", client.cert.display()),
            "holds no PEM private key",
        ],
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let s = Setup::new();
    let (mine, other) = (s.certs.client("pi-check"), s.certs.client("pi-other"));
    let out = check(&s.config(&mine.cert, &other.key, &s.inbox()));
    assert_refused(
        &out,
        &[
            &format!("mqtt.tls.key_file {}", other.key.display()),
            &format!(
                "is not the key of the certificate in mqtt.tls.cert_file {}",
                mine.cert.display()
            ),
        ],
    );
}

#[test]
fn a_folder_source_that_does_not_exist_is_refused() {
    let s = Setup::new();
    let client = s.certs.client("pi-check");
    let missing = s.dir.path().join("no-such-inbox");
    let out = check(&s.config(&client.cert, &client.key, &missing));
    assert_refused(
        &out,
        &[
            "[[source]] #1: path",
            &missing.display().to_string(),
            "No such file or directory",
        ],
    );
}

#[test]
fn a_command_source_whose_program_is_not_found_is_refused() {
    let s = Setup::new();
    let client = s.certs.client("pi-check");
    let config = s.config(&client.cert, &client.key, &s.inbox());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[[source]]\nkind = \"command\"\ncommand = [\"no-such-camera-tool\", \"-o\", \"-\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    assert_refused(
        &check(&config),
        &[
            "[[source]] #2",
            "command no-such-camera-tool: not found in PATH",
        ],
    );
}
