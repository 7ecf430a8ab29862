//! Why the broker ended a connection, in words an operator can act on. Today one
//! case: MQTT 5 DISCONNECT with reason code 0x8E, Session taken over (spec 3.14.2.1),
//! which a broker sends when another client connects with the same client id. The
//! agent's client id is its device id, so two devices configured with one id take
//! the session from each other in turns; the log line says that, not a reason code.

/// The words for a connection the broker closed because another client connected
/// with the same client id (MQTT 5 DISCONNECT reason code 0x8E, Session taken over,
/// spec 3.14.2.1); `None` for any other end of a connection.
pub fn session_taken_over(e: &rumqttc::v5::ConnectionError, client_id: &str) -> Option<String> {
    use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
    use rumqttc::v5::{ConnectionError, StateError};
    match e {
        ConnectionError::MqttState(StateError::ServerDisconnect {
            reason_code: DisconnectReasonCode::SessionTakenOver,
            ..
        }) => Some(format!(
            "session taken over (MQTT reason 0x8E): another client connected with this device \
             id (client id {client_id}); two devices share an id?"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
    use rumqttc::v5::{ConnectionError, StateError};

    fn disconnect(reason_code: DisconnectReasonCode) -> ConnectionError {
        ConnectionError::MqttState(StateError::ServerDisconnect {
            reason_code,
            reason_string: None,
        })
    }

    #[test]
    fn a_session_taken_over_names_the_shared_device_id() {
        let why = session_taken_over(
            &disconnect(DisconnectReasonCode::SessionTakenOver),
            "pi-kitchen",
        )
        .unwrap();
        assert!(
            why.contains("another client connected with this device id (client id pi-kitchen); two devices share an id?"),
            "{why}"
        );
        assert_eq!(
            session_taken_over(&disconnect(DisconnectReasonCode::ServerShuttingDown), "pi"),
            None
        );
    }
}
