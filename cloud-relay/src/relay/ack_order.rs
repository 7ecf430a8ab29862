//! Acknowledgements in arrival order. MQTT (3.1.1 and 5, section 4.6 "Message
//! ordering") requires a receiver to send PUBACKs in the order the PUBLISHes arrived,
//! but the relay finishes events in any order (a small event overtakes a chunked one).
//! [`AckOrder`] holds a finished message's ack until every message received before it
//! has been acknowledged too. Mosquitto tolerates acks out of order; rumqttd (local
//! mode's broker) drops the connection on them, which made the relay reconnect every
//! few events.

use std::collections::VecDeque;

/// Packet ids in arrival order, each with its ack token once its message is done.
#[derive(Debug)]
pub struct AckOrder<T> {
    queue: VecDeque<(u16, Option<T>)>,
}

impl<T> Default for AckOrder<T> {
    fn default() -> Self {
        AckOrder {
            queue: VecDeque::new(),
        }
    }
}

impl<T> AckOrder<T> {
    /// A QoS 1 message arrived with `pkid`. Packet id 0 (QoS 0: nothing to ack) and a
    /// redelivery of a message still waiting here take no new place.
    pub fn received(&mut self, pkid: u16) {
        if pkid != 0 && !self.queue.iter().any(|(p, _)| *p == pkid) {
            self.queue.push_back((pkid, None));
        }
    }

    /// The message `pkid` is done: the acks that may go out now, in order (none while
    /// an earlier message is still open). A pkid not waiting here is acked at once.
    pub fn ready(&mut self, pkid: u16, token: T) -> Vec<T> {
        let Some(slot) = self
            .queue
            .iter_mut()
            .find(|(p, t)| *p == pkid && t.is_none())
        else {
            return vec![token];
        };
        slot.1 = Some(token);
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|(_, t)| t.is_some()) {
            let (_, token) = self.queue.pop_front().expect("front exists");
            out.push(token.expect("checked"));
        }
        out
    }

    /// Messages received and not acknowledged yet (open or held back).
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_go_out_in_arrival_order_whatever_order_messages_finish_in() {
        let mut order = AckOrder::default();
        for pkid in [4, 5, 6] {
            order.received(pkid);
        }
        assert!(order.ready(6, "six").is_empty());
        assert!(order.ready(5, "five").is_empty());
        assert_eq!(order.ready(4, "four"), ["four", "five", "six"]);
        assert_eq!(order.waiting(), 0);
    }

    #[test]
    fn the_head_goes_at_once_and_later_ones_wait_for_it() {
        let mut order = AckOrder::default();
        order.received(1);
        order.received(2);
        order.received(3);
        assert_eq!(order.ready(1, 'a'), ['a']);
        assert!(order.ready(3, 'c').is_empty());
        assert_eq!(order.waiting(), 2);
        assert_eq!(order.ready(2, 'b'), ['b', 'c']);
    }

    #[test]
    fn qos0_unknown_and_redelivered_ids_take_no_place() {
        let mut order = AckOrder::default();
        order.received(0);
        order.received(7);
        order.received(7); // redelivered while still open
        assert_eq!(order.waiting(), 1);
        // Not waiting here (QoS 0, or acked before a reconnect): out at once.
        assert_eq!(order.ready(0, "qos0"), ["qos0"]);
        assert_eq!(order.ready(9, "nine"), ["nine"]);
        assert_eq!(order.ready(7, "seven"), ["seven"]);
        // A packet id is reused by the broker once acked: a new place.
        order.received(7);
        assert_eq!(order.waiting(), 1);
    }
}
