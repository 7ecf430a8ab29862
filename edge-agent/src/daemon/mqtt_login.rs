//! The agent's MQTT login (`[mqtt] username` and `password_file`): for brokers that take
//! a username and password, such as local mode's embedded one. IoT Core authenticates
//! devices by their TLS certificate instead and ignores both. The password is kept in a
//! file of its own (first line; the config file may be world-readable, the password file
//! should not be) and read once at start, so a missing or unreadable file stops the
//! agent with an error naming it, before anything is sent.

use std::path::{Path, PathBuf};

use crate::config::MqttSection;

pub use protocol::mqtt_login::MqttLogin;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("mqtt.password_file {path}: cannot read it: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mqtt.password_file {path}: its first line (the password) is empty")]
    Empty { path: PathBuf },
}

fn read_password(path: &Path) -> Result<String, LoginError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoginError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let password = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if password.is_empty() {
        return Err(LoginError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(password.to_owned())
}

/// The login the config asks for: `None` without `username`; with `username` and no
/// `password_file`, an empty password.
pub fn load(mqtt: &MqttSection) -> Result<Option<MqttLogin>, LoginError> {
    let Some(username) = &mqtt.username else {
        return Ok(None);
    };
    let password = match &mqtt.password_file {
        Some(p) => read_password(p)?,
        None => String::new(),
    };
    Ok(Some(MqttLogin {
        username: username.clone(),
        password,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(username: Option<&str>, password_file: Option<PathBuf>) -> MqttSection {
        let mut s: MqttSection = toml::from_str("host = \"127.0.0.1\"").unwrap();
        s.username = username.map(str::to_owned);
        s.password_file = password_file;
        s
    }

    #[test]
    fn the_password_is_the_first_line_of_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let login = load(&section(Some("dev"), Some(file))).unwrap().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("dev", "s3cret")
        );
        assert_eq!(load(&section(None, None)).unwrap(), None);
        assert!(!format!("{login:?}").contains("s3cret"));
    }

    #[test]
    fn an_unreadable_or_empty_password_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = load(&section(Some("dev"), Some(missing.clone()))).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "mqtt.password_file {}: cannot read it: ",
                missing.display()
            )),
            "{text}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = load(&section(Some("dev"), Some(empty))).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
    }
}
