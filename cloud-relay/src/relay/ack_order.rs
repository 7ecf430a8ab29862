//! Acknowledgements in arrival order, with a bound on how long one message may hold
//! back the others. MQTT (3.1.1 and 5, section 4.6 "Message ordering") requires a
//! receiver to send PUBACKs in the order the PUBLISHes arrived, but the relay finishes
//! messages in any order (a small event overtakes a chunked one, one event's S3 put is
//! retried while others go through). [`AckOrder`] holds a finished message's ack until
//! every message received before it has been acknowledged too. Mosquitto tolerates
//! acks out of order; rumqttd (local mode's broker) drops the connection on them,
//! which made the relay reconnect every few events.
//!
//! In-order acking lets one slow message stall every later one: the broker sends at
//! most the receive maximum (`max_in_flight`) of unacknowledged messages, so once that
//! window is full of finished messages waiting behind an open one, nothing more
//! arrives. Hence the bound: when `max_held_back` finished messages wait behind open
//! ones, the oldest open messages are acknowledged early. That is safe because an ack
//! never makes an event safe (the agent keeps each event until the relay's receipt and
//! resends it otherwise); the early-acked message's work goes on, and its own later
//! "done" finds nothing left to ack. When nothing finishes (the store is down for
//! every event) nothing is released early, and the full window is the back-pressure.
//!
//! Each message gets a [`Ticket`] on arrival; the broker reuses packet ids once acked,
//! so tickets, not packet ids, say which message is meant.

use std::collections::VecDeque;

/// One received message's place in the queue (or none, for QoS 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

impl Ticket {
    /// A ticket for a message that needs no ack (QoS 0).
    pub const NONE: Ticket = Ticket(u64::MAX);
}

#[derive(Debug)]
struct Entry<T> {
    ticket: u64,
    pkid: u16,
    token: T,
    done: bool,
}

/// QoS 1 messages in arrival order, each with its ack token.
#[derive(Debug)]
pub struct AckOrder<T> {
    queue: VecDeque<Entry<T>>,
    next: u64,
    max_held_back: usize,
    /// Finished entries waiting behind an open one.
    held_back: usize,
    released_early: u64,
}

impl<T> AckOrder<T> {
    /// At most `max_held_back` finished messages wait behind open ones (at least 1).
    pub fn new(max_held_back: usize) -> Self {
        AckOrder {
            queue: VecDeque::new(),
            next: 0,
            max_held_back: max_held_back.max(1),
            held_back: 0,
            released_early: 0,
        }
    }

    /// A QoS 1 message `pkid` arrived. A redelivery of a message still waiting here
    /// (same packet id, after a reconnect) shares its place and its ticket.
    pub fn received(&mut self, pkid: u16, token: T) -> Ticket {
        if let Some(e) = self.queue.iter().find(|e| e.pkid == pkid) {
            return Ticket(e.ticket);
        }
        let ticket = self.next;
        self.next += 1;
        self.queue.push_back(Entry {
            ticket,
            pkid,
            token,
            done: false,
        });
        Ticket(ticket)
    }

    /// The message with `ticket` is done: the acks that may go out now, in arrival
    /// order. A ticket acknowledged already (early, or done twice) or [`Ticket::NONE`]
    /// gives nothing.
    pub fn ready(&mut self, ticket: Ticket) -> Vec<T> {
        let Some(entry) = self
            .queue
            .iter_mut()
            .find(|e| e.ticket == ticket.0 && !e.done)
        else {
            return Vec::new();
        };
        entry.done = true;
        self.held_back += 1;
        let mut out = self.pop_done();
        // Too many finished messages wait: acknowledge the oldest open ones early.
        while self.held_back > self.max_held_back {
            let Some(open) = self.queue.pop_front() else {
                break;
            };
            debug_assert!(!open.done, "pop_done leaves an open entry in front");
            self.released_early += 1;
            out.push(open.token);
            out.extend(self.pop_done());
        }
        out
    }

    fn pop_done(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|e| e.done) {
            let e = self.queue.pop_front().expect("front exists");
            self.held_back -= 1;
            out.push(e.token);
        }
        out
    }

    /// The broker started a new session: it forgot every message not acknowledged,
    /// and their packet ids mean other messages now. Forget them too.
    pub fn new_session(&mut self) {
        self.queue.clear();
        self.held_back = 0;
    }

    /// Messages received and not acknowledged yet (open or held back).
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Messages acknowledged before they were done, to keep the window open.
    pub fn released_early(&self) -> u64 {
        self.released_early
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_go_out_in_arrival_order_whatever_order_messages_finish_in() {
        let mut order = AckOrder::new(10);
        let t: Vec<Ticket> = [4, 5, 6].map(|p| order.received(p, p)).to_vec();
        assert!(order.ready(t[2]).is_empty());
        assert!(order.ready(t[1]).is_empty());
        assert_eq!(order.ready(t[0]), [4, 5, 6]);
        assert_eq!(order.waiting(), 0);
    }

    #[test]
    fn the_head_goes_at_once_and_later_ones_wait_for_it() {
        let mut order = AckOrder::new(10);
        let (a, b, c) = (
            order.received(1, 'a'),
            order.received(2, 'b'),
            order.received(3, 'c'),
        );
        assert_eq!(order.ready(a), ['a']);
        assert!(order.ready(c).is_empty());
        assert_eq!(order.waiting(), 2);
        assert_eq!(order.ready(b), ['b', 'c']);
    }

    #[test]
    fn an_open_message_holds_back_at_most_the_bound_then_is_acknowledged_early() {
        let mut order = AckOrder::new(3);
        let slow = order.received(1, 1);
        let rest: Vec<Ticket> = (2..=6).map(|p| order.received(p, p)).collect();
        assert!(order.ready(rest[0]).is_empty());
        assert!(order.ready(rest[1]).is_empty());
        assert!(order.ready(rest[2]).is_empty(), "three wait: the bound");
        assert_eq!(
            order.ready(rest[3]),
            [1, 2, 3, 4, 5],
            "the fourth frees them"
        );
        assert_eq!(order.released_early(), 1);
        // The slow message finishes later: its ack went out already.
        assert!(order.ready(slow).is_empty());
        assert_eq!(order.ready(rest[4]), [6]);
        assert_eq!(order.waiting(), 0);
    }

    #[test]
    fn open_messages_alone_are_never_released_early() {
        // The store is down: nothing finishes, and the full window is back-pressure.
        let mut order = AckOrder::new(2);
        for p in 1..=100 {
            order.received(p, p);
        }
        assert_eq!(order.waiting(), 100);
        assert_eq!(order.released_early(), 0);
    }

    #[test]
    fn a_ticket_is_acknowledged_once_and_qos0_takes_no_place() {
        let mut order = AckOrder::new(10);
        let t = order.received(7, 7);
        assert_eq!(order.ready(t), [7]);
        assert!(order.ready(t).is_empty(), "done twice: nothing more");
        assert!(order.ready(Ticket::NONE).is_empty());
        // A packet id is reused by the broker once acked: a new place, a new ticket.
        let again = order.received(7, 70);
        assert_ne!(again, t);
        assert!(
            order.ready(t).is_empty(),
            "the old ticket is not the new message"
        );
        assert_eq!(order.ready(again), [70]);
    }

    #[test]
    fn a_redelivery_shares_the_place_of_its_first_copy() {
        let mut order = AckOrder::new(10);
        let first = order.received(7, 7);
        let redelivered = order.received(7, 7);
        assert_eq!(first, redelivered);
        assert_eq!(order.waiting(), 1);
        assert_eq!(order.ready(redelivered), [7]);
        assert!(order.ready(first).is_empty());
    }

    #[test]
    fn a_new_session_forgets_the_messages_of_the_old_one() {
        let mut order = AckOrder::new(10);
        let old = order.received(3, 3);
        order.new_session();
        assert_eq!(order.waiting(), 0);
        assert!(
            order.ready(old).is_empty(),
            "never ack another session's id"
        );
    }
}
