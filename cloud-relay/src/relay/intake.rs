//! The intake state machine: what to do with each MQTT message on the events topics.
//! No I/O and no clock (the driver in [`super::mqtt`] passes `now_ms` and carries out
//! the returned [`Action`]s). Generic over the ack token `A`, so tests use numbers.
//!
//! Per message: parse topic -> decode envelope -> (memory mode) reassemble and verify,
//! or (shared mode) stage the chunk in S3 -> `Process` the complete event -> the driver
//! stores it, starts its loop, sends the receipt -> [`Intake::on_done`] releases the
//! event's message for acknowledgement.
//!
//! What is held unacknowledged, and why: acknowledging is never what makes an event
//! safe (the agent keeps an event until its receipt arrives and resends it otherwise),
//! so a message is held only as back-pressure, and the broker's receive window is
//! shared by every device. Therefore an event being stored holds exactly one message:
//! the one that made it complete (a whole event, or the chunk that completed its set);
//! a chunk being staged (shared mode) holds its own until staged. Everything else is
//! acknowledged as soon as the intake has dealt with it: a chunk accepted into the
//! assembler while its set is incomplete, a duplicate of an event in flight or done,
//! anything rejected. An incomplete set thus holds nothing, however long its last
//! chunk takes. (The driver's [`super::ack_order::AckOrder`] bounds how long one held
//! message may delay the acks of later ones.)
//!
//! Events in flight are known by [`EventKey`], the id *and* a digest of the whole
//! meta: a copy of an event in flight is acknowledged and answered by that event's
//! receipt, but other content under the same id (another image, or the same image
//! under another device, date or type) is another event, processed in its own right
//! (the event handler then answers it `conflict` from S3). Dropping it as a "resend"
//! left it without a receipt until its agent's next resend.

use std::collections::{HashMap, VecDeque};

use protocol::envelope::Chunk;
use protocol::{
    decode, AssemblerLimits, AssemblyError, ChunkAssembler, CompleteEvent, DecodeError, DeviceId,
    EventId, EventMeta, Message, MessageError, Receipt, RejectCode, TopicKind, Topics,
};

/// Receipts of recently finished events kept to answer resends without redoing work.
pub const RECENT_RECEIPTS: usize = 4096;

/// One event's content under its id: two messages with the same key are copies of one
/// event (a resend, or chunks of one set); other content under an id is another event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventKey {
    pub event_id: EventId,
    /// SHA-256 of the meta's JSON, 64 hex digits: the meta names the image (its
    /// sha256, size, type) and everything the event's keys derive from (device,
    /// capture date), so equal digests mean one event, sent again.
    pub meta_sha256: String,
}

impl EventKey {
    pub fn of(meta: &EventMeta) -> Self {
        EventKey {
            event_id: meta.event_id,
            meta_sha256: protocol::json::sha256_hex(&meta.to_json()),
        }
    }
}

// Actions live for one step of the driver, never in bulk: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Action<A> {
    /// Acknowledge this MQTT message.
    Ack(A),
    /// Store the event, start its loop, then call [`Intake::on_done`].
    Process {
        device: DeviceId,
        event: CompleteEvent,
    },
    /// Shared mode: stage the chunk in S3, then call [`Intake::on_staged`].
    Stage {
        device: DeviceId,
        chunk: Chunk,
        ack: A,
    },
    /// Publish this receipt to the device.
    Receipt { device: DeviceId, receipt: Receipt },
    /// Log and count a rejection (`reason` is the metric label).
    Rejected {
        reason: &'static str,
        detail: String,
    },
    /// Incomplete chunk sets dropped (timeout or bounds); their agents resend.
    Dropped { event_ids: Vec<EventId> },
}

/// What staging a chunk in S3 found.
#[allow(clippy::large_enum_variant)] // one per staged chunk, consumed at once
#[derive(Debug)]
pub enum Staged {
    /// Other chunks are still missing (they may reach another relay).
    Incomplete,
    Complete(CompleteEvent),
    Rejected(AssemblyError),
}

pub struct Intake<A> {
    topics: Topics,
    stage_chunks: bool,
    assembler: ChunkAssembler,
    /// Events being stored, each with the one message it holds unacknowledged and
    /// its meta.
    in_flight: HashMap<EventKey, (A, EventMeta)>,
    /// Finished events: device, meta, receipt. Answers only true resends (the same
    /// meta, so the same image sha256 and key); any other event under the id goes to
    /// the event handler, which decides from S3 (first stored wins, the rest `conflict`).
    recent: HashMap<EventId, (DeviceId, EventMeta, Receipt)>,
    recent_order: VecDeque<EventId>,
}

/// The metric label for a decode failure.
pub fn decode_reason(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::UnsupportedVersion { .. }
        | DecodeError::Header(MessageError::UnsupportedVersion { .. }) => "unsupported_version",
        DecodeError::TooShort { .. } | DecodeError::HeaderBeyondPayload { .. } => "truncated",
        DecodeError::BodySizeMismatch { .. } | DecodeError::Chunk(_) => "invalid_chunk_or_size",
        _ => "malformed",
    }
}

fn assembly_reason(e: &AssemblyError) -> &'static str {
    match e {
        AssemblyError::ChecksumMismatch { .. } => "checksum_mismatch",
        AssemblyError::SizeMismatch { .. } => "size_mismatch",
        AssemblyError::TooLarge { .. } => "too_large",
        _ => "inconsistent_chunk",
    }
}

/// Whether the error condemns the whole event (the agent should stop resending it).
fn is_final(e: &AssemblyError) -> bool {
    matches!(
        e,
        AssemblyError::ChecksumMismatch { .. }
            | AssemblyError::SizeMismatch { .. }
            | AssemblyError::TooLarge { .. }
    )
}

impl<A> Intake<A> {
    pub fn new(topics: Topics, stage_chunks: bool, limits: AssemblerLimits) -> Self {
        Intake {
            topics,
            stage_chunks,
            assembler: ChunkAssembler::new(limits),
            in_flight: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
        }
    }

    pub fn pending_sets(&self) -> usize {
        self.assembler.pending_sets()
    }

    pub fn pending_bytes(&self) -> u64 {
        self.assembler.pending_bytes()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Messages held unacknowledged now: one per event in flight.
    pub fn held(&self) -> usize {
        self.in_flight.len()
    }

    fn reject(&self, out: &mut Vec<Action<A>>, ack: A, reason: &'static str, detail: String) {
        out.push(Action::Ack(ack));
        out.push(Action::Rejected { reason, detail });
    }

    pub fn on_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        ack: A,
        now_ms: u64,
    ) -> Vec<Action<A>> {
        let mut out = Vec::new();
        let device = match self.topics.parse(topic) {
            Ok((device, TopicKind::Events)) => device,
            Ok((_, kind)) => {
                self.reject(
                    &mut out,
                    ack,
                    "bad_topic",
                    format!("{topic}: {kind} is not an events topic"),
                );
                return out;
            }
            Err(e) => {
                self.reject(&mut out, ack, "bad_topic", e.to_string());
                return out;
            }
        };
        if payload.len() > protocol::envelope::DEFAULT_MAX_MESSAGE_BYTES {
            let detail = format!(
                "{topic}: {} bytes exceed the {}-byte message limit",
                payload.len(),
                protocol::envelope::DEFAULT_MAX_MESSAGE_BYTES
            );
            self.reject(&mut out, ack, "oversized", detail);
            return out;
        }
        let message = match decode(payload) {
            Ok(m) => m,
            Err(e) => {
                self.reject(&mut out, ack, decode_reason(&e), format!("{topic}: {e}"));
                return out;
            }
        };
        let incoming = match &message {
            Message::Event(e) => &e.meta,
            Message::Chunk(c) => &c.header.meta,
        };
        let (event_id, claimed) = (incoming.event_id, &incoming.device_id);
        if *claimed != device {
            let detail = format!("{topic}: event {event_id} claims device {claimed}");
            out.push(Action::Receipt {
                device: device.clone(),
                receipt: Receipt::rejected(
                    event_id,
                    RejectCode::DeviceMismatch,
                    format!("event names device {claimed} but was published by {device}"),
                ),
            });
            self.reject(&mut out, ack, "device_mismatch", detail);
            return out;
        }
        if let Some((device, _, receipt)) = self
            .recent
            .get(&event_id)
            .filter(|(_, done, _)| done == incoming)
        {
            // Done already: the receipt was lost or is still on its way. Say it again.
            out.push(Action::Receipt {
                device: device.clone(),
                receipt: receipt.clone(),
            });
            out.push(Action::Ack(ack));
            return out;
        }
        if self.in_flight.contains_key(&EventKey::of(incoming)) {
            // A resend, or a chunk of it: the copy in flight sends the receipt (or
            // fails, and the agent resends). Holding this one would only block others.
            out.push(Action::Ack(ack));
            return out;
        }
        match message {
            Message::Chunk(chunk) if self.stage_chunks => {
                out.push(Action::Stage { device, chunk, ack });
            }
            message => {
                let result = self.assembler.offer_message(message, now_ms);
                self.after_assembly(&mut out, device, event_id, ack, result);
                self.release_evicted(&mut out);
            }
        }
        out
    }

    fn after_assembly(
        &mut self,
        out: &mut Vec<Action<A>>,
        device: DeviceId,
        event_id: EventId,
        ack: A,
        result: Result<Option<CompleteEvent>, AssemblyError>,
    ) {
        match result {
            // Accepted into the set: the assembler has it; nothing to wait for here.
            Ok(None) => out.push(Action::Ack(ack)),
            Ok(Some(event)) => {
                // (Never a second copy of `key`: copies are acknowledged on arrival.)
                self.in_flight
                    .insert(EventKey::of(&event.meta), (ack, event.meta.clone()));
                out.push(Action::Process { device, event });
            }
            Err(e) => {
                if is_final(&e) {
                    out.push(Action::Receipt {
                        device,
                        receipt: Receipt::rejected(event_id, RejectCode::Invalid, e.to_string()),
                    });
                }
                self.reject(out, ack, assembly_reason(&e), e.to_string());
            }
        }
    }

    fn release_evicted(&mut self, out: &mut Vec<Action<A>>) {
        let evicted = self.assembler.take_evicted();
        if !evicted.is_empty() {
            out.push(Action::Dropped { event_ids: evicted });
        }
    }

    /// Shared mode: the driver staged a chunk of the set `key`.
    pub fn on_staged(
        &mut self,
        device: DeviceId,
        key: EventKey,
        ack: A,
        staged: Staged,
    ) -> Vec<Action<A>> {
        let mut out = Vec::new();
        let event_id = key.event_id;
        if self.in_flight.contains_key(&key) {
            // Completed by another chunk meanwhile. (A set completing again after its
            // event was stored goes to the event handler, which answers a true resend with
            // `stored` and other content under the id with `conflict`.)
            out.push(Action::Ack(ack));
            return out;
        }
        match staged {
            Staged::Incomplete => out.push(Action::Ack(ack)),
            Staged::Complete(event) => {
                self.after_assembly(&mut out, device, event_id, ack, Ok(Some(event)))
            }
            Staged::Rejected(e) => self.after_assembly(&mut out, device, event_id, ack, Err(e)),
        }
        out
    }

    /// The driver finished an event: with `Some(receipt)` it is stored, its loop
    /// exists and the receipt was sent; with `None` it failed (the agent resends).
    /// Either way its message is acknowledged now.
    pub fn on_done(
        &mut self,
        device: DeviceId,
        key: EventKey,
        receipt: Option<Receipt>,
    ) -> Vec<Action<A>> {
        let event_id = key.event_id;
        let (out, meta) = match self.in_flight.remove(&key) {
            Some((ack, meta)) => (vec![Action::Ack(ack)], Some(meta)),
            None => (Vec::new(), None),
        };
        if let (Some(receipt), Some(meta)) = (receipt, meta) {
            if self.recent_order.len() == RECENT_RECEIPTS {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
            if self
                .recent
                .insert(event_id, (device, meta, receipt))
                .is_none()
            {
                self.recent_order.push_back(event_id);
            }
        }
        out
    }

    /// Drops incomplete sets idle past the timeout (their chunks were acknowledged
    /// when accepted; the agents resend them).
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Action<A>> {
        let mut out = Vec::new();
        let expired = self.assembler.expire(now_ms);
        if !expired.is_empty() {
            out.push(Action::Dropped { event_ids: expired });
        }
        out
    }
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
