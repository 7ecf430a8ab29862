//! Which published MQTT messages belong to which outbox event, and when an event is
//! wholly acknowledged by the broker. A pure state machine (no I/O, time passed in).
//!
//! rumqttc reports an outgoing PUBLISH's packet id (`Outgoing::Publish(pkid)`) in the
//! order the publish requests were made, and later its PUBACK. So requests are queued
//! in order, matched to packet ids as they go out, and an event counts as published
//! when every one of its messages (one, or one per chunk) has its PUBACK. Anything the
//! tracker gets wrong costs only time: an event the broker never acknowledged stays in
//! the outbox and is sent again after its resend timeout.

use std::collections::{HashMap, HashSet, VecDeque};

/// What a publish request carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Message `index` of an outbox event.
    Event { event_id: String, index: usize },
    /// Anything else (the status message).
    Other,
}

#[derive(Debug)]
struct Progress {
    messages: usize,
    acked: HashSet<usize>,
    started_ms: u64,
}

#[derive(Debug, Default)]
pub struct DeliveryTracker {
    requested: VecDeque<Sent>,
    in_flight: HashMap<u16, Sent>,
    events: HashMap<String, Progress>,
}

impl DeliveryTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// True while the event has messages requested but not all acknowledged.
    pub fn is_in_progress(&self, event_id: &str) -> bool {
        self.events.contains_key(event_id)
    }

    /// Events in progress.
    pub fn events_in_progress(&self) -> usize {
        self.events.len()
    }

    /// An event's messages are about to be requested, in order.
    pub fn start_event(&mut self, event_id: &str, messages: usize, now_ms: u64) {
        self.events.insert(
            event_id.to_string(),
            Progress {
                messages,
                acked: HashSet::new(),
                started_ms: now_ms,
            },
        );
    }

    /// A publish request was handed to the client.
    pub fn requested(&mut self, sent: Sent) {
        self.requested.push_back(sent);
    }

    /// The request could not be handed over after all (client queue full): forget the
    /// event's attempt; it stays due in the outbox.
    pub fn abandon_event(&mut self, event_id: &str) {
        self.events.remove(event_id);
        self.requested
            .retain(|s| !matches!(s, Sent::Event { event_id: id, .. } if id == event_id));
    }

    /// The client sent the oldest requested PUBLISH with this packet id.
    pub fn outgoing(&mut self, pkid: u16) {
        if let Some(sent) = self.requested.pop_front() {
            if pkid != 0 {
                self.in_flight.insert(pkid, sent);
            }
        }
    }

    /// A PUBACK arrived; returns the event id if that completed an event.
    pub fn acked(&mut self, pkid: u16) -> Option<String> {
        let Sent::Event { event_id, index } = self.in_flight.remove(&pkid)? else {
            return None;
        };
        let progress = self.events.get_mut(&event_id)?;
        progress.acked.insert(index);
        if progress.acked.len() == progress.messages {
            self.events.remove(&event_id);
            return Some(event_id);
        }
        None
    }

    /// The broker refused a PUBLISH (a PUBACK with an error reason code, MQTT 5 spec
    /// 3.4.2.1): the event it belongs to is no longer in progress. Returns its id, or
    /// `None` for a message that was not part of an event.
    pub fn refused(&mut self, pkid: u16) -> Option<String> {
        let Sent::Event { event_id, .. } = self.in_flight.remove(&pkid)? else {
            return None;
        };
        self.events.remove(&event_id)?;
        self.in_flight
            .retain(|_, s| !matches!(s, Sent::Event { event_id: id, .. } if *id == event_id));
        Some(event_id)
    }

    /// The event in progress that started first: when a connection drops, the one
    /// most likely to have caused it.
    pub fn oldest_event(&self) -> Option<String> {
        self.events
            .iter()
            .min_by_key(|(id, p)| (p.started_ms, (*id).clone()))
            .map(|(id, _)| id.clone())
    }

    /// Events started longer ago than `timeout_ms` without all their PUBACKs are
    /// forgotten (they stay due in the outbox); returns how many.
    pub fn expire(&mut self, now_ms: u64, timeout_ms: u64) -> usize {
        let stale: Vec<String> = self
            .events
            .iter()
            .filter(|(_, p)| now_ms.saturating_sub(p.started_ms) > timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            self.abandon_event(id);
            self.in_flight
                .retain(|_, s| !matches!(s, Sent::Event { event_id, .. } if event_id == id));
        }
        stale.len()
    }

    /// The connection is gone (and with it the client and its queue): start afresh.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, index: usize) -> Sent {
        Sent::Event {
            event_id: id.into(),
            index,
        }
    }

    #[test]
    fn a_single_message_event_completes_on_its_puback() {
        let mut t = DeliveryTracker::new();
        t.start_event("a", 1, 0);
        t.requested(ev("a", 0));
        t.outgoing(7);
        assert!(t.is_in_progress("a"));
        assert_eq!(t.acked(7), Some("a".into()));
        assert!(!t.is_in_progress("a"));
    }

    #[test]
    fn a_chunked_event_completes_only_when_every_chunk_is_acked_in_any_order() {
        let mut t = DeliveryTracker::new();
        t.start_event("a", 3, 0);
        for i in 0..3 {
            t.requested(ev("a", i));
        }
        t.outgoing(1);
        t.outgoing(2);
        t.outgoing(3);
        assert_eq!(t.acked(3), None);
        assert_eq!(t.acked(1), None);
        assert_eq!(t.acked(2), Some("a".into()));
    }

    #[test]
    fn status_messages_in_between_do_not_shift_the_matching() {
        let mut t = DeliveryTracker::new();
        t.start_event("a", 1, 0);
        t.requested(Sent::Other);
        t.requested(ev("a", 0));
        t.outgoing(10);
        t.outgoing(11);
        assert_eq!(t.acked(10), None);
        assert_eq!(t.acked(11), Some("a".into()));
    }

    #[test]
    fn unknown_and_duplicate_pubacks_are_ignored() {
        let mut t = DeliveryTracker::new();
        assert_eq!(t.acked(5), None);
        t.start_event("a", 1, 0);
        t.requested(ev("a", 0));
        t.outgoing(5);
        assert_eq!(t.acked(5), Some("a".into()));
        assert_eq!(t.acked(5), None);
    }

    #[test]
    fn an_event_without_all_pubacks_expires_and_can_start_again() {
        let mut t = DeliveryTracker::new();
        t.start_event("a", 2, 1_000);
        t.requested(ev("a", 0));
        t.requested(ev("a", 1));
        t.outgoing(1);
        assert_eq!(t.expire(20_000, 30_000), 0);
        assert_eq!(t.expire(40_000, 30_000), 1);
        assert!(!t.is_in_progress("a"));
        assert_eq!(
            t.acked(1),
            None,
            "a late PUBACK of the expired attempt is ignored"
        );
    }

    #[test]
    fn a_refused_chunk_ends_its_whole_event_and_later_pubacks_of_it_are_ignored() {
        let mut t = DeliveryTracker::new();
        t.start_event("a", 2, 0);
        t.requested(ev("a", 0));
        t.requested(ev("a", 1));
        t.outgoing(1);
        t.outgoing(2);
        assert_eq!(t.refused(1), Some("a".into()));
        assert!(!t.is_in_progress("a"));
        assert_eq!(t.acked(2), None);
        assert_eq!(t.refused(9), None);
    }

    #[test]
    fn the_oldest_event_in_progress_is_the_first_started() {
        let mut t = DeliveryTracker::new();
        assert_eq!(t.oldest_event(), None);
        t.start_event("b", 1, 20);
        t.start_event("a", 1, 10);
        t.start_event("c", 1, 30);
        assert_eq!(t.oldest_event(), Some("a".into()));
    }

    #[test]
    fn abandoning_an_event_removes_its_queued_requests() {
        let mut t = DeliveryTracker::new();
        t.start_event("a", 2, 0);
        t.requested(ev("a", 0));
        t.start_event("b", 1, 0);
        t.requested(ev("b", 0));
        t.abandon_event("a");
        t.outgoing(4);
        assert_eq!(t.acked(4), Some("b".into()));
    }

    #[test]
    fn reset_forgets_everything() {
        let mut t = DeliveryTracker::new();
        t.start_event("a", 1, 0);
        t.requested(ev("a", 0));
        t.outgoing(1);
        t.reset();
        assert_eq!(t.events_in_progress(), 0);
        assert_eq!(t.acked(1), None);
    }
}
