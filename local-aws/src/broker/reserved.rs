//! AWS IoT's reserved topics (`$aws/...`) through rumqttd.
//!
//! rumqttd 0.20 does not route topics that begin with `$` (MQTT 3.1.1 section 4.7.2
//! and MQTT 5 section 4.7.2 only say a *wildcard* at the first level must not match
//! them; rumqttd goes further): `validate_subscription` in its router refuses any
//! filter starting with `$` other than `$share/...` and *disconnects the client*, and
//! `protocol::matches` never matches a topic starting with `$`, not even against an
//! identical filter. No setting changes either. The Jobs device API lives under
//! `$aws/things/{thingName}/jobs/...` (AWS IoT Developer Guide, "Reserved topics"), so
//! without a fix the agent's first jobs subscription would cost it its connection.
//!
//! The smallest fix that needs no fork: rumqttd reads and writes packets through a
//! [`Protocol`] value given to each listener, and [`AwsReserved`] wraps the stock
//! `V4`/`V5` codecs. Inbound, a topic or filter beginning with `$aws/` is renamed to
//! [`INTERNAL_PREFIX`] (same length, so packet sizes do not change) before the router
//! sees it; outbound, publishes under the internal prefix get their `$aws/` name back.
//! Clients therefore only ever see `$aws/...`, and `+` wildcards inside reserved
//! filters (`$aws/things/+/jobs/start-next`) work like any other.
//!
//! Two consequences, both small for a local stand-in: a client that itself uses the
//! internal prefix is refused (the packet is treated as malformed, which closes its
//! connection), so the renaming stays one-to-one; and a subscriber to `#` or `+/...`
//! also receives `$aws/...` messages, which IoT Core would not deliver to it.

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::{Error, Packet, Protocol};

/// The reserved namespace clients use.
pub const RESERVED_PREFIX: &str = "$aws/";
/// What the router sees instead (not starting with `$`, same length).
pub const INTERNAL_PREFIX: &str = "%aws/";

/// A listener's codec with `$aws/` topics made routable; see the module doc.
#[derive(Debug, Clone)]
pub struct AwsReserved<P>(pub P);

/// `$aws/x` -> `%aws/x`; `Err` for a name already under the internal prefix.
fn inbound(name: &str) -> Result<Option<String>, Error> {
    if name.starts_with(INTERNAL_PREFIX) {
        tracing::warn!(
            topic = name,
            "MQTT client used the broker's internal prefix {INTERNAL_PREFIX:?}; disconnecting it"
        );
        return Err(Error::MalformedPacket);
    }
    Ok(name
        .strip_prefix(RESERVED_PREFIX)
        .map(|rest| format!("{INTERNAL_PREFIX}{rest}")))
}

/// A subscription filter, shared (`$share/{group}/{filter}`) or not.
fn inbound_filter(filter: &str) -> Result<Option<String>, Error> {
    if let Some(rest) = filter.strip_prefix("$share/") {
        if let Some((group, inner)) = rest.split_once('/') {
            return Ok(inbound(inner)?.map(|f| format!("$share/{group}/{f}")));
        }
    }
    inbound(filter)
}

fn rename_inbound(packet: &mut Packet) -> Result<(), Error> {
    match packet {
        Packet::Publish(publish, _) => {
            let topic = std::str::from_utf8(&publish.topic).map_err(|_| Error::TopicNotUtf8)?;
            if let Some(t) = inbound(topic)? {
                publish.topic = Bytes::from(t);
            }
        }
        Packet::Subscribe(subscribe, _) => {
            for f in &mut subscribe.filters {
                if let Some(renamed) = inbound_filter(&f.path)? {
                    f.path = renamed;
                }
            }
        }
        Packet::Unsubscribe(unsubscribe, _) => {
            for f in &mut unsubscribe.filters {
                if let Some(renamed) = inbound_filter(f)? {
                    *f = renamed;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn rename_outbound(packet: &mut Packet) {
    if let Packet::Publish(publish, _) = packet {
        if let Some(rest) = publish.topic.strip_prefix(INTERNAL_PREFIX.as_bytes()) {
            let mut t = Vec::with_capacity(publish.topic.len());
            t.extend_from_slice(RESERVED_PREFIX.as_bytes());
            t.extend_from_slice(rest);
            publish.topic = Bytes::from(t);
        }
    }
}

impl<P: Protocol> Protocol for AwsReserved<P> {
    fn read_mut(&mut self, stream: &mut BytesMut, max_size: usize) -> Result<Packet, Error> {
        let mut packet = self.0.read_mut(stream, max_size)?;
        rename_inbound(&mut packet)?;
        Ok(packet)
    }

    fn write(&self, mut packet: Packet, write: &mut BytesMut) -> Result<usize, Error> {
        rename_outbound(&mut packet);
        self.0.write(packet, write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_renamed_one_to_one_and_back() {
        assert_eq!(
            inbound("$aws/things/pi-1/jobs/start-next")
                .unwrap()
                .as_deref(),
            Some("%aws/things/pi-1/jobs/start-next")
        );
        assert_eq!(inbound("edge-a2i/pi-1/events").unwrap(), None);
        assert_eq!(inbound("$SYS/uptime").unwrap(), None);
        assert!(inbound("%aws/things/x").is_err());
        assert_eq!(
            inbound_filter("$share/jobs/$aws/things/+/jobs/start-next")
                .unwrap()
                .as_deref(),
            Some("$share/jobs/%aws/things/+/jobs/start-next")
        );
        assert_eq!(RESERVED_PREFIX.len(), INTERNAL_PREFIX.len());
    }
}
