//! Local mode's own AWS credentials: an access key pair made from the OS random source
//! at the first start and kept in a file (mode 0600) in the AWS shared-credentials
//! format, profile `default`. Every AWS-compatible local API (A2I runtime, SageMaker
//! control plane, S3, IoT Jobs) accepts only requests signed (SigV4) with this pair, so
//! a process that cannot read the file cannot drive them.
//!
//! Clients pick the pair up the way they pick up any AWS credentials (AWS SDKs and CLI
//! reference guide, "Shared config and credentials files"): the relay and `cloud-relay
//! setup` (aws-config's default chain), boto3 and the AWS CLI all read
//! `AWS_SHARED_CREDENTIALS_FILE=<file>`, or `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
//! from the environment ([`Credentials::export_line`] prints them).
//!
//! The same file also holds the embedded MQTT broker's username and password (keys
//! `mqtt_username`, `mqtt_password`, which the AWS tools ignore): see [`MqttLogin`].

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;

/// The file's name in a state directory.
pub const FILE_NAME: &str = "credentials";

/// An access key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

pub use protocol::mqtt_login::MqttLogin;

/// Everything the credentials file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSecrets {
    pub aws: Credentials,
    pub mqtt: MqttLogin,
    /// Where they are kept.
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("reading the credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the credentials file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the credentials file {path} has no `{key} = ...` line (delete it to have a new one made)"
    )]
    Missing { path: PathBuf, key: &'static str },
}

/// Whether two secrets are equal, in time that depends on their lengths only.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `n` random bytes from the OS.
fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random source works");
    b
}

impl Credentials {
    /// A fresh pair: a 20-character key id (`LOCAL` and 15 random base32 characters,
    /// so it is never mistaken for an AWS `AKIA...` key) and a 40-character secret
    /// (240 random bits).
    pub fn generate() -> Self {
        const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let id: String = random(15)
            .iter()
            .map(|b| BASE32[usize::from(b % 32)] as char)
            .collect();
        Self {
            access_key_id: format!("LOCAL{id}"),
            secret_access_key: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random(30)),
        }
    }

    /// The environment a client process needs to sign with this pair.
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// `export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...`, for a shell.
    pub fn export_line(&self) -> String {
        format!(
            "export AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={}",
            self.access_key_id, self.secret_access_key
        )
    }
}

/// A fresh broker login: username `edge-a2i-local`, a 128-bit random password.
pub fn generate_login() -> MqttLogin {
    MqttLogin {
        username: "edge-a2i-local".to_owned(),
        password: hex::encode(random(16)),
    }
}

fn file_text(aws: &Credentials, mqtt: &MqttLogin) -> String {
    format!(
        "# Local mode's credentials, made at its first start (edge-a2i local-aws).\n\
         # AWS tools: AWS_SHARED_CREDENTIALS_FILE=<this file> (profile default).\n\
         # The local S3, A2I, SageMaker and IoT Jobs APIs take requests signed with\n\
         # this key pair only; the MQTT broker takes the mqtt_ login only.\n\
         [default]\n\
         aws_access_key_id = {}\n\
         aws_secret_access_key = {}\n\
         mqtt_username = {}\n\
         mqtt_password = {}\n",
        aws.access_key_id, aws.secret_access_key, mqtt.username, mqtt.password
    )
}

fn value<'a>(text: &'a str, path: &Path, key: &'static str) -> Result<&'a str, CredentialsError> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| CredentialsError::Missing {
            path: path.to_owned(),
            key,
        })
}

impl LocalSecrets {
    /// Reads `path`, or, when it does not exist, makes fresh secrets and writes them
    /// there (0600). Two processes starting together agree: the file appears whole
    /// (written aside, then linked into place, which fails if it exists) and the one
    /// that loses the race reads the winner's.
    pub fn load_or_create(path: &Path) -> Result<Self, CredentialsError> {
        match Self::load(path) {
            Err(CredentialsError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
        let aws = Credentials::generate();
        let mqtt = generate_login();
        let write_err = |source| CredentialsError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(FILE_NAME),
            hex::encode(random(6))
        ));
        let result = (|| {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let mut f = o.open(&tmp)?;
            f.write_all(file_text(&aws, &mqtt).as_bytes())?;
            f.sync_all()?;
            std::fs::hard_link(&tmp, path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match result {
            Ok(()) => Ok(Self {
                aws,
                mqtt,
                path: path.to_owned(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(e) => Err(write_err(e)),
        }
    }

    /// Reads an existing file.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            aws: Credentials {
                access_key_id: value(&text, path, "aws_access_key_id")?.to_owned(),
                secret_access_key: value(&text, path, "aws_secret_access_key")?.to_owned(),
            },
            mqtt: MqttLogin {
                username: value(&text, path, "mqtt_username")?.to_owned(),
                password: value(&text, path, "mqtt_password")?.to_owned(),
            },
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_makes_private_random_secrets_and_later_starts_read_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(FILE_NAME);
        let first = LocalSecrets::load_or_create(&path).unwrap();
        assert_eq!(first.aws.access_key_id.len(), 20);
        assert!(first.aws.access_key_id.starts_with("LOCAL"));
        assert_eq!(first.aws.secret_access_key.len(), 40);
        assert_eq!(LocalSecrets::load_or_create(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = LocalSecrets::load_or_create(&dir.path().join("other")).unwrap();
        assert_ne!(other.aws, first.aws);
        assert_ne!(other.mqtt.password, first.mqtt.password);
        // Nothing left aside.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_file_without_a_key_is_an_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "[default]\naws_access_key_id = X\n").unwrap();
        let e = LocalSecrets::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("aws_secret_access_key"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
    }
}
