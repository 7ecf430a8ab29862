//! An MQTT username and password (MQTT 5 spec 3.1.3.5-3.1.3.6), as brokers that take a
//! login want it: local mode's embedded broker makes one, the agent reads one from its
//! config. Its `Debug` never shows the password.

/// A username and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttLogin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for MqttLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttLogin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}
