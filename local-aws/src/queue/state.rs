//! One local queue with Amazon SQS standard-queue semantics, the pure half (time is
//! passed in, no I/O): a received message is hidden for the visibility timeout and
//! comes back unless deleted with its receipt handle (AWS, "Amazon SQS visibility
//! timeout"); each receive counts (`ApproximateReceiveCount`), and a message received
//! `max_receive_count` times is moved to the dead-letter queue instead of being
//! received again (AWS, "Using dead-letter queues in Amazon SQS"). A receipt handle
//! names one receive: after the message comes back and is received again, the old
//! handle deletes nothing (SQS would accept it or not; the relay never relies on it).

use std::collections::VecDeque;

#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    receive_count: u32,
    visible_at_ms: i64,
    /// The handle of the latest receive.
    receipt: Option<String>,
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub receive_count: u32,
}

#[derive(Debug)]
pub struct QueueState {
    messages: VecDeque<Message>,
    dead_letters: Vec<String>,
    max_receive_count: u32,
    next: u64,
}

impl QueueState {
    pub fn new(max_receive_count: u32) -> Self {
        QueueState {
            messages: VecDeque::new(),
            dead_letters: Vec::new(),
            max_receive_count: max_receive_count.max(1),
            next: 1,
        }
    }

    pub fn max_receive_count(&self) -> u32 {
        self.max_receive_count
    }

    fn id(&mut self, kind: &str) -> String {
        let n = self.next;
        self.next += 1;
        format!("{kind}-{n:016x}")
    }

    /// Adds a message, visible at once; returns its id.
    pub fn send(&mut self, body: String, now_ms: i64) -> String {
        let id = self.id("m");
        self.messages.push_back(Message {
            id: id.clone(),
            body,
            receive_count: 0,
            visible_at_ms: now_ms,
            receipt: None,
        });
        id
    }

    /// Up to `max` visible messages, each hidden for `visibility_ms` from `now_ms`.
    /// Messages received `max_receive_count` times already go to the dead-letter
    /// queue instead.
    pub fn receive(&mut self, max: usize, visibility_ms: i64, now_ms: i64) -> Vec<Delivery> {
        let max_count = self.max_receive_count;
        let (dead, kept): (Vec<Message>, Vec<Message>) = self
            .messages
            .drain(..)
            .partition(|m| m.visible_at_ms <= now_ms && m.receive_count >= max_count);
        self.messages = kept.into();
        self.dead_letters.extend(dead.into_iter().map(|m| m.body));
        let mut out = Vec::new();
        for i in 0..self.messages.len() {
            if out.len() >= max {
                break;
            }
            if self.messages[i].visible_at_ms > now_ms {
                continue;
            }
            let receipt = self.id("r");
            let m = &mut self.messages[i];
            m.receive_count += 1;
            m.visible_at_ms = now_ms + visibility_ms;
            m.receipt = Some(receipt.clone());
            out.push(Delivery {
                message_id: m.id.clone(),
                receipt_handle: receipt,
                body: m.body.clone(),
                receive_count: m.receive_count,
            });
        }
        out
    }

    /// Deletes the message `receipt` was given for; false if it names none (any more).
    pub fn delete(&mut self, receipt: &str) -> bool {
        let before = self.messages.len();
        self.messages
            .retain(|m| m.receipt.as_deref() != Some(receipt));
        self.messages.len() != before
    }

    /// Makes the message visible `visibility_ms` after `now_ms`.
    pub fn change_visibility(&mut self, receipt: &str, visibility_ms: i64, now_ms: i64) -> bool {
        match self
            .messages
            .iter_mut()
            .find(|m| m.receipt.as_deref() == Some(receipt))
        {
            Some(m) => {
                m.visible_at_ms = now_ms + visibility_ms;
                true
            }
            None => false,
        }
    }

    /// When the next hidden message becomes visible (for long polling).
    pub fn next_visible_at(&self) -> Option<i64> {
        self.messages.iter().map(|m| m.visible_at_ms).min()
    }

    /// (visible, in flight) messages at `now_ms`.
    pub fn counts(&self, now_ms: i64) -> (usize, usize) {
        let visible = self
            .messages
            .iter()
            .filter(|m| m.visible_at_ms <= now_ms)
            .count();
        (visible, self.messages.len() - visible)
    }

    /// Bodies of the messages moved to the dead-letter queue.
    pub fn dead_letters(&self) -> &[String] {
        &self.dead_letters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_message_is_hidden_until_its_visibility_timeout_ends() {
        let mut q = QueueState::new(5);
        q.send("a".into(), 0);
        let got = q.receive(10, 1000, 0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].receive_count, 1);
        assert!(q.receive(10, 1000, 999).is_empty(), "hidden");
        assert_eq!(q.counts(999), (0, 1));
        let again = q.receive(10, 1000, 1000);
        assert_eq!(again[0].receive_count, 2, "back after the timeout");
        assert!(
            !q.delete(&got[0].receipt_handle),
            "the old receipt is stale"
        );
        assert!(q.delete(&again[0].receipt_handle));
        assert_eq!(q.counts(5000), (0, 0));
    }

    #[test]
    fn a_message_received_max_receive_count_times_goes_to_the_dead_letter_queue() {
        let mut q = QueueState::new(2);
        q.send("poison".into(), 0);
        for t in [0, 10] {
            let d = q.receive(1, 10, t);
            assert_eq!(d.len(), 1, "receive at {t}");
        }
        assert!(q.receive(1, 10, 20).is_empty());
        assert_eq!(q.dead_letters(), ["poison"]);
        assert_eq!(q.counts(20), (0, 0));
    }

    #[test]
    fn visibility_can_be_changed_and_receives_take_at_most_max() {
        let mut q = QueueState::new(5);
        for b in ["a", "b", "c"] {
            q.send(b.into(), 0);
        }
        let two = q.receive(2, 1000, 0);
        assert_eq!(two.len(), 2);
        assert_eq!(q.next_visible_at(), Some(0), "c is visible");
        assert!(q.change_visibility(&two[0].receipt_handle, 0, 5));
        let next: Vec<String> = q.receive(10, 1000, 5).into_iter().map(|d| d.body).collect();
        assert_eq!(next, ["a", "c"]);
    }
}
