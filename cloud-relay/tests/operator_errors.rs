//! What an operator reads when something is wrong: one line per cause, each cause said
//! once, naming the setting and the file. `cloud-relay check-config` checks what `run`
//! reads at start (the TLS files: PEM, key matching certificate; Ground Truth's rules
//! for the label attribute), and `setup` without AWS credentials says what to set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use test_support::TestCerts;

const ACCOUNT: &str = "123456789012";

/// A relay config with mutual TLS from `certs` (key `key`) and `extra` appended.
fn config(dir: &Path, certs: &TestCerts, key: &Path, extra: &str) -> PathBuf {
    let client = certs.client("relay-1");
    let text = format!(
        r#"[mqtt]
host = "127.0.0.1"
port = 8883
client_id = "relay-1"

[mqtt.tls]
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"

[s3]
bucket = "frames"

[a2i]
flow_definition_arn = "arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/dogs"

[a2i.setup]
workteam_arn = "arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/reviewers"
role_arn = "arn:aws:iam::{ACCOUNT}:role/a2i"

[model]
labels = ["Chihuahua", "beagle"]
{extra}
"#,
        ca = certs.ca_cert.display(),
        cert = client.cert.display(),
        key = key.display(),
    );
    let path = dir.join("relay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `cloud-relay ARGS --config CONFIG` with no AWS credentials anywhere.
fn cloud_relay(args: &[&str], config: &Path, home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cloud-relay"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // An empty HOME: no ~/.aws files either.
        .env_remove("AWS_CONFIG_FILE")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

struct Setup {
    dir: tempfile::TempDir,
    certs: TestCerts,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::generate(dir.path().join("certs"));
    Setup { dir, certs }
}

impl Setup {
    fn config(&self, extra: &str) -> PathBuf {
        let key = self.certs.client("relay-1").key;
        config(self.dir.path(), &self.certs, &key, extra)
    }
}

#[test]
fn a_good_config_is_ok() {
    let s = setup();
    let out = cloud_relay(&["check-config"], &s.config(""), s.dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_toml_error_is_printed_once() {
    let s = setup();
    let path = s.config("");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("port = 8883", "port = 8883x")).unwrap();
    let out = cloud_relay(&["check-config"], &path, s.dir.path());
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.starts_with("cloud-relay: error: "), "{err}");
    assert_eq!(err.matches("port = 8883x").count(), 1, "{err}");
    assert_eq!(err.matches("TOML parse error").count(), 1, "{err}");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_by_check_config() {
    let s = setup();
    let other = s.certs.client("someone-else").key;
    let path = config(s.dir.path(), &s.certs, &other, "");
    let out = cloud_relay(&["check-config"], &path, s.dir.path());
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("mqtt.tls.key_file {}", other.display()))
            && err.contains("is not the key of the certificate in mqtt.tls.cert_file"),
        "{err}"
    );
}

#[test]
fn a_label_attribute_ending_in_ref_is_refused() {
    let s = setup();
    let path = s.config("\n[results]\nlabel_attribute = \"breed-ref\"\n");
    let out = cloud_relay(&["check-config"], &path, s.dir.path());
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("results.label_attribute") && err.contains("must not end in -ref"),
        "{err}"
    );
}

#[test]
fn setup_without_aws_credentials_says_what_to_set_in_one_line() {
    let s = setup();
    let path = s.config("");
    let text = std::fs::read_to_string(&path).unwrap();
    // Nothing has to answer: the credentials are looked for before any request.
    let text = text.replace(
        "[a2i]\n",
        "[a2i]\nendpoint_url = \"http://127.0.0.1:1\"\nsagemaker_endpoint_url = \"http://127.0.0.1:1\"\n",
    );
    std::fs::write(&path, text).unwrap();
    let out = cloud_relay(&["setup", "--wait", "1s"], &path, s.dir.path());
    let err = stderr(&out);
    assert!(!out.status.success());
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("cloud-relay: error: "), "{err}");
    assert!(
        lines[0].contains("no AWS credentials") && lines[0].contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
}
