//! Mutual TLS to the broker (AWS IoT Core authenticates devices and the relay by
//! X.509 client certificate): the one loader both daemons use to read the PEM files a
//! config names into rumqttc's settings, with an error that names the setting and file.
//! IoT Core on port 443 needs the ALPN protocol `x-amzn-mqtt-ca`
//! (<https://docs.aws.amazon.com/iot/latest/developerguide/protocols.html>).

use std::path::{Path, PathBuf};

use rumqttc::TlsConfiguration;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;

/// The ALPN protocol IoT Core expects for MQTT over TLS on port 443.
pub const IOT_CORE_ALPN: &str = "x-amzn-mqtt-ca";

/// The PEM files of one client: the CA bundle that verifies the broker, the client
/// certificate and its private key. `alpn`: protocols to offer (none: plain port 8883).
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    pub alpn: &'a [String],
}

/// A TLS file a config names that cannot serve: which setting named it, the path, and
/// what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file cannot be read.
    #[error("cannot read {setting} {}: {source}", path.display())]
    Read {
        /// The config key, e.g. `mqtt.tls.ca_file`.
        setting: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file reads, but does not hold what the setting needs.
    #[error("{setting} {}: {problem}", path.display())]
    Content {
        setting: String,
        path: PathBuf,
        problem: String,
    },
}

impl TlsFileError {
    /// The config key of the file at fault.
    pub fn setting(&self) -> &str {
        match self {
            TlsFileError::Read { setting, .. } | TlsFileError::Content { setting, .. } => setting,
        }
    }
}

impl TlsFiles<'_> {
    /// Reads the three files and checks what a connection will need of them: the CA
    /// file and the certificate file hold PEM certificates, the key file a PEM private
    /// key of a kind TLS can sign with, and the key is the certificate's (same public
    /// key). `prefix` is the config section the errors name (e.g. `mqtt.tls`, giving
    /// `mqtt.tls.ca_file`). Whether the broker trusts them shows only when connecting.
    pub fn load(&self, prefix: &str) -> Result<TlsConfiguration, TlsFileError> {
        let setting = |name: &str| format!("{prefix}.{name}");
        let read = |name: &str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsFileError::Read {
                setting: setting(name),
                path: path.to_path_buf(),
                source,
            })
        };
        let content = |name: &str, path: &Path, problem: String| TlsFileError::Content {
            setting: setting(name),
            path: path.to_path_buf(),
            problem,
        };
        let ca = read("ca_file", self.ca)?;
        certificates(&ca).map_err(|p| content("ca_file", self.ca, p))?;
        let cert = read("cert_file", self.cert)?;
        let chain = certificates(&cert).map_err(|p| content("cert_file", self.cert, p))?;
        let key = read("key_file", self.key)?;
        check_key(chain, &key).map_err(|p| {
            content(
                "key_file",
                self.key,
                p.replace(
                    "{cert}",
                    &format!("{} {}", setting("cert_file"), self.cert.display()),
                ),
            )
        })?;
        let alpn = (!self.alpn.is_empty())
            .then(|| self.alpn.iter().map(|a| a.as_bytes().to_vec()).collect());
        Ok(TlsConfiguration::Simple {
            ca,
            alpn,
            client_auth: Some((cert, key)),
        })
    }
}

/// The PEM certificates in `pem` (at least one), or what is wrong.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file ({e})"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (a `-----BEGIN CERTIFICATE-----` block)".to_owned());
    }
    Ok(certs)
}

/// Checks that `pem` holds a private key TLS can sign with, and that it is the key of
/// the first certificate of `chain`. `{cert}` in the message stands for the
/// certificate's setting and path.
fn check_key(chain: Vec<CertificateDer<'static>>, pem: &[u8]) -> Result<(), String> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => "holds no PEM private key (a `-----BEGIN PRIVATE KEY-----`, \
             `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)"
            .to_owned(),
        e => format!("not a PEM private key ({e})"),
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("a private key TLS cannot use ({e})"))?;
    match CertifiedKey::new(chain, signer).keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err("is not the key of the certificate in {cert} (their public keys differ)".to_owned())
        }
        // The key type cannot say its public key: the handshake will tell.
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(e) => Err(format!(
            "cannot be checked against the certificate in {{cert}}: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::TestCerts;

    struct Fixture {
        certs: TestCerts,
        dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            certs: TestCerts::generate(dir.path().join("certs")),
            dir,
        }
    }

    fn load(ca: &Path, cert: &Path, key: &Path) -> Result<TlsConfiguration, TlsFileError> {
        TlsFiles {
            ca,
            cert,
            key,
            alpn: &[],
        }
        .load("mqtt.tls")
    }

    #[test]
    fn reads_the_three_files_and_offers_the_alpn_protocols() {
        let f = fixture();
        let client = f.certs.client("pi-1");
        let alpn = [IOT_CORE_ALPN.to_owned()];
        let files = TlsFiles {
            ca: &f.certs.ca_cert,
            cert: &client.cert,
            key: &client.key,
            alpn: &alpn,
        };
        let TlsConfiguration::Simple {
            ca,
            alpn,
            client_auth,
        } = files.load("mqtt.tls").unwrap()
        else {
            panic!("simple TLS settings");
        };
        assert_eq!(ca, std::fs::read(&f.certs.ca_cert).unwrap());
        assert_eq!(alpn, Some(vec![b"x-amzn-mqtt-ca".to_vec()]));
        assert_eq!(client_auth.unwrap().1, std::fs::read(&client.key).unwrap());
    }

    #[test]
    fn a_missing_file_is_named_with_its_setting() {
        let f = fixture();
        let client = f.certs.client("pi-1");
        let err = load(
            &f.certs.ca_cert,
            &client.cert,
            &f.dir.path().join("nope.pem"),
        )
        .unwrap_err();
        assert_eq!(err.setting(), "mqtt.tls.key_file");
        assert!(
            err.to_string()
                .starts_with("cannot read mqtt.tls.key_file "),
            "{err}"
        );
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }

    #[test]
    fn a_certificate_or_key_that_is_not_pem_is_refused_naming_the_setting() {
        let f = fixture();
        let client = f.certs.client("pi-1");
        let junk = f.dir.path().join("junk.pem");
        std::fs::write(&junk, "this is not a certificate\n").unwrap();
        let err = load(&f.certs.ca_cert, &junk, &client.key).unwrap_err();
        assert_eq!(err.setting(), "mqtt.tls.cert_file");
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
        let err = load(&junk, &client.cert, &client.key).unwrap_err();
        assert_eq!(err.setting(), "mqtt.tls.ca_file");
        let err = load(&f.certs.ca_cert, &client.cert, &junk).unwrap_err();
        assert_eq!(err.setting(), "mqtt.tls.key_file");
        assert!(
            err.to_string().contains("holds no PEM private key"),
            "{err}"
        );
        // A certificate where the key should be is no key either.
        let err = load(&f.certs.ca_cert, &client.cert, &client.cert).unwrap_err();
        assert!(
            err.to_string().contains("holds no PEM private key"),
            "{err}"
        );
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let f = fixture();
        let (mine, other) = (f.certs.client("pi-1"), f.certs.client("pi-2"));
        let err = load(&f.certs.ca_cert, &mine.cert, &other.key).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.setting(), "mqtt.tls.key_file");
        assert!(
            text.contains(&format!(
                "is not the key of the certificate in mqtt.tls.cert_file {} (their public keys differ)",
                mine.cert.display()
            )),
            "{text}"
        );
    }
}
