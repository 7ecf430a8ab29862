//! A throw-away PKI for mutual-TLS tests: one CA, a server certificate for the
//! loopback addresses, and client certificates on demand, all as PEM files.
//!
//! Generated in pure Rust with `rcgen` (ECDSA P-256), so tests need no `openssl` CLI.
//! A client certificate's Common Name is the name given to [`TestCerts::client`]; a
//! broker with `use_identity_as_username` sees that name as the MQTT username, the
//! way AWS IoT Core sees a thing's certificate.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::error::{Error, Result};

/// A CA, a server certificate and key for `localhost`, `127.0.0.1` and `::1`, and the
/// CA's signing key for making client certificates; all paths are inside [`dir`](Self::dir).
///
/// Cloning is cheap and shares the CA.
#[derive(Clone)]
pub struct TestCerts {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// `ca.crt`: the CA certificate (PEM). Brokers and clients trust this.
    pub ca_cert: PathBuf,
    /// `ca.key`: the CA private key (PEM), for tools that sign their own certificates.
    pub ca_key: PathBuf,
    /// `server.crt`: the server certificate (PEM), CN `localhost`.
    pub server_cert: PathBuf,
    /// `server.key`: the server private key (PEM, PKCS#8).
    pub server_key: PathBuf,
    /// The CA certificate as PEM text (what rumqttc's `TlsConfiguration::Simple { ca }` takes).
    pub ca_pem: String,
    issuer: Arc<Issuer<'static, KeyPair>>,
}

impl std::fmt::Debug for TestCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCerts")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A client certificate and key signed by the test CA.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The Common Name (with IoT Core: the thing name; with Mosquitto here: the username).
    pub name: String,
    /// `<name>.crt`: the certificate (PEM).
    pub cert: PathBuf,
    /// `<name>.key`: the private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// The certificate as PEM text.
    pub cert_pem: String,
    /// The private key as PEM text.
    pub key_pem: String,
}

impl TestCerts {
    /// Generates the CA and the server certificate into `dir` (created if missing).
    ///
    /// # Panics
    /// When generation or writing fails; see [`try_generate`](Self::try_generate).
    pub fn generate(dir: impl AsRef<Path>) -> TestCerts {
        Self::try_generate(dir).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Generates the CA and the server certificate into `dir` (created if missing).
    pub fn try_generate(dir: impl AsRef<Path>) -> Result<TestCerts> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {dir:?}"), e))?;

        let ca_key = KeyPair::generate().map_err(|e| cert_error("the CA key", e))?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = name_with_cn("edge-a2i test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params
            .self_signed(&ca_key)
            .map_err(|e| cert_error("the CA certificate", e))?;
        let ca_pem = ca.pem();
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().map_err(|e| cert_error("the server key", e))?;
        let mut server_params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .map_err(|e| cert_error("the server certificate", e))?;
        server_params.distinguished_name = name_with_cn("localhost");
        server_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.use_authority_key_identifier_extension = true;
        let server = server_params
            .signed_by(&server_key, &issuer)
            .map_err(|e| cert_error("the server certificate", e))?;

        let certs = TestCerts {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            dir,
            ca_pem,
            issuer: Arc::new(issuer),
        };
        write(&certs.ca_cert, &certs.ca_pem)?;
        write(&certs.ca_key, &ca_key_pem)?;
        write(&certs.server_cert, &server.pem())?;
        write(&certs.server_key, &server_key.serialize_pem())?;
        Ok(certs)
    }

    /// Makes a client certificate with Common Name `name`, written as `<name>.crt` and
    /// `<name>.key` (characters other than `A-Za-z0-9._-` become `_` in the file names).
    /// Calling it again with the same name makes a new key and overwrites the files.
    ///
    /// # Panics
    /// When generation or writing fails; see [`try_client`](Self::try_client).
    pub fn client(&self, name: &str) -> ClientCert {
        self.try_client(name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Makes a client certificate with Common Name `name`; see [`client`](Self::client).
    pub fn try_client(&self, name: &str) -> Result<ClientCert> {
        let what = format!("the client certificate {name:?}");
        let key = KeyPair::generate().map_err(|e| cert_error(&what, e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name_with_cn(name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| cert_error(&what, e))?;

        let file_stem: String = name
            .chars()
            .map(|c| match c {
                'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
                _ => '_',
            })
            .collect();
        let client = ClientCert {
            name: name.to_string(),
            cert: self.dir.join(format!("{file_stem}.crt")),
            key: self.dir.join(format!("{file_stem}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        write(&client.cert, &client.cert_pem)?;
        write(&client.key, &client.key_pem)?;
        Ok(client)
    }
}

fn name_with_cn(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

fn cert_error(what: &str, e: rcgen::Error) -> Error {
    Error::Cert {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn write(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).map_err(|e| Error::io(format!("write {path:?}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_writes_pem_files_for_ca_server_and_clients() {
        let dir = tempfile::tempdir().unwrap();
        let certs = TestCerts::generate(dir.path().join("pki"));
        let client = certs.client("thing/one");
        for path in [
            &certs.ca_cert,
            &certs.ca_key,
            &certs.server_cert,
            &certs.server_key,
            &client.cert,
            &client.key,
        ] {
            let text = fs::read_to_string(path).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{path:?} is not PEM");
        }
        assert_eq!(client.cert, certs.dir.join("thing_one.crt"));
        assert_eq!(client.name, "thing/one");
    }
}
