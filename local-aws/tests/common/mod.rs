//! What the local-mode tests share: the workspace's binaries, signed copies of the
//! shipped model, and clients that sign (SigV4) with local mode's credentials.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_credential_types::provider::SharedCredentialsProvider;
use cloud_relay::aws_http::SignedClient;
use local_aws::credentials::{Credentials, LocalSecrets};

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The environment an operator command needs to sign with `credentials` (what
/// `local-aws run` prints on its `credentials:` line).
pub fn credentials_env(credentials: &Credentials) -> Vec<(&'static str, String)> {
    credentials.env().to_vec()
}

/// The key pair local mode made in `state_dir` (`<state_dir>/credentials`).
pub fn state_credentials(state_dir: &Path) -> Credentials {
    LocalSecrets::load(&state_dir.join(local_aws::credentials::FILE_NAME))
        .unwrap()
        .aws
}

/// A client signing (SigV4) for `service` with `credentials`, as the relay does.
pub fn signed_client(
    endpoint: &str,
    service: &'static str,
    credentials: &Credentials,
) -> SignedClient {
    let provider = SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        None,
        None,
        "local-aws test",
    ));
    SignedClient::new(endpoint, "us-east-1", service, Some(provider)).unwrap()
}

/// One signed request: status and body.
pub async fn signed(
    endpoint: &str,
    service: &'static str,
    credentials: &Credentials,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let (parts, body) = signed_client(endpoint, service, credentials)
        .send(method.parse().unwrap(), path, headers, body)
        .await
        .unwrap();
    (parts.status.as_u16(), body.to_vec())
}

/// No extra environment, for [`run_bin`].
pub const NO_ENV: &[(&str, &str)] = &[];

/// Runs a workspace binary; panics with its output unless it succeeds.
pub fn run_bin<V: AsRef<std::ffi::OsStr>>(name: &str, args: &[&str], env: &[(&str, V)]) -> String {
    let out = Command::new(test_support::workspace_bin(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
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
    run_bin("edge-agent", &args, NO_ENV);
    out.join(format!("dogs-mobilenetv2-{version}.tar"))
}
