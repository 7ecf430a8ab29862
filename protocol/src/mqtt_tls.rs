//! Mutual TLS to the broker (AWS IoT Core authenticates devices and the relay by
//! X.509 client certificate): the one loader both daemons use to read the PEM files a
//! config names into rumqttc's settings, with an error that names the setting and file.
//! IoT Core on port 443 needs the ALPN protocol `x-amzn-mqtt-ca`
//! (<https://docs.aws.amazon.com/iot/latest/developerguide/protocols.html>).

use std::path::{Path, PathBuf};

use rumqttc::TlsConfiguration;

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

/// A PEM file that could not be read: which setting named it, the path, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {setting} {path}: {source}")]
pub struct TlsFileError {
    /// The config key, e.g. `mqtt.tls.ca_file`.
    pub setting: String,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl TlsFiles<'_> {
    /// Reads the three files. `prefix` is the config section the errors name (e.g.
    /// `mqtt.tls`, giving `mqtt.tls.ca_file`). The certificates themselves are
    /// checked by rustls when connecting.
    pub fn load(&self, prefix: &str) -> Result<TlsConfiguration, TlsFileError> {
        let read = |name: &str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsFileError {
                setting: format!("{prefix}.{name}"),
                path: path.to_path_buf(),
                source,
            })
        };
        let alpn = (!self.alpn.is_empty())
            .then(|| self.alpn.iter().map(|a| a.as_bytes().to_vec()).collect());
        Ok(TlsConfiguration::Simple {
            ca: read("ca_file", self.ca)?,
            alpn,
            client_auth: Some((read("cert_file", self.cert)?, read("key_file", self.key)?)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_files_and_offers_the_alpn_protocols() {
        let dir = std::env::temp_dir().join(format!("mqtt-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, body) in [("ca.pem", "CA"), ("c.pem", "CERT"), ("k.pem", "KEY")] {
            std::fs::write(dir.join(name), body).unwrap();
        }
        let alpn = [IOT_CORE_ALPN.to_owned()];
        let files = TlsFiles {
            ca: &dir.join("ca.pem"),
            cert: &dir.join("c.pem"),
            key: &dir.join("k.pem"),
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
        assert_eq!(ca, b"CA");
        assert_eq!(alpn, Some(vec![b"x-amzn-mqtt-ca".to_vec()]));
        assert_eq!(client_auth, Some((b"CERT".to_vec(), b"KEY".to_vec())));

        let missing = TlsFiles {
            key: &dir.join("nope.pem"),
            alpn: &[],
            ..files
        };
        let err = missing.load("mqtt.tls").unwrap_err();
        assert_eq!(err.setting, "mqtt.tls.key_file");
        assert!(err.to_string().contains("nope.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
