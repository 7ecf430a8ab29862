//! Chunk reassembly for the relay: `ChunkAssembler` collects the chunks of each event
//! in any order, rejects chunks that contradict their set, and hands back the image
//! only once its size and sha256 match both the chunk headers and `meta.image`. A
//! plain state machine: no I/O, no clock (callers pass `now_ms`), bounded memory.
//! Whole events go through the same verification ([`verify_whole`]), so the relay has
//! one definition of "this image is what the device sent".

use std::collections::{BTreeMap, HashMap, VecDeque};

use thiserror::Error;

use crate::envelope::{Chunk, ChunkError, Message, WholeEvent};
use crate::event::{EventId, EventMeta};
use crate::json::sha256_hex;

/// Bytes charged per held chunk on top of its body, for the map entry and vector
/// header. Keeps a flood of one-byte chunks from hiding behind a small byte count.
pub const CHUNK_OVERHEAD_BYTES: u64 = 64;
/// How many evicted event ids [`ChunkAssembler::take_evicted`] remembers.
pub const MAX_EVICTED_REMEMBERED: usize = 1024;

/// Bounds on what incomplete sets may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerLimits {
    /// Body bytes (plus [`CHUNK_OVERHEAD_BYTES`] per chunk) across all incomplete sets.
    pub max_pending_bytes: u64,
    /// Incomplete sets held at once (at least 1).
    pub max_pending_sets: usize,
    /// An incomplete set that has received no chunk for this long is dropped.
    pub timeout_ms: u64,
}

impl Default for AssemblerLimits {
    fn default() -> Self {
        AssemblerLimits {
            max_pending_bytes: 64 * 1024 * 1024,
            max_pending_sets: 256,
            timeout_ms: 5 * 60 * 1000,
        }
    }
}

/// A verified event: the image is exactly the bytes the meta describes.
#[derive(Debug, Clone, PartialEq)]
pub struct CompleteEvent {
    pub meta: EventMeta,
    pub image: Vec<u8>,
}

/// Why a chunk or event was refused. Nothing is returned for it; the sender resends
/// (until then the relay sends no receipt, or a "rejected" one for a forged checksum).
#[derive(Debug, Error)]
pub enum AssemblyError {
    #[error("event {event_id}: invalid chunk: {source}")]
    InvalidChunk {
        event_id: EventId,
        #[source]
        source: ChunkError,
    },
    #[error("event {event_id}: a {total_size}-byte image in chunks would hold {footprint} bytes, more than the {max}-byte pending limit")]
    TooLarge {
        event_id: EventId,
        total_size: u64,
        footprint: u64,
        max: u64,
    },
    #[error(
        "event {event_id}: chunk {index} disagrees with the chunks already received on `{field}`"
    )]
    Inconsistent {
        event_id: EventId,
        index: u32,
        field: &'static str,
    },
    #[error("event {event_id}: chunk {index} (bytes {offset}..{end}) does not line up with chunk {neighbour}")]
    Overlap {
        event_id: EventId,
        index: u32,
        offset: u64,
        end: u64,
        neighbour: u32,
    },
    #[error("event {event_id}: chunk {index} arrived again with different contents")]
    ConflictingDuplicate { event_id: EventId, index: u32 },
    #[error("event {event_id}: meta says the image has {expected} bytes but {actual} arrived")]
    SizeMismatch {
        event_id: EventId,
        expected: u64,
        actual: u64,
    },
    #[error("event {event_id}: image sha256 is {actual}, not the {expected} its sender declared")]
    ChecksumMismatch {
        event_id: EventId,
        expected: String,
        actual: String,
    },
}

impl AssemblyError {
    pub fn event_id(&self) -> &EventId {
        match self {
            AssemblyError::InvalidChunk { event_id, .. }
            | AssemblyError::TooLarge { event_id, .. }
            | AssemblyError::Inconsistent { event_id, .. }
            | AssemblyError::Overlap { event_id, .. }
            | AssemblyError::ConflictingDuplicate { event_id, .. }
            | AssemblyError::SizeMismatch { event_id, .. }
            | AssemblyError::ChecksumMismatch { event_id, .. } => event_id,
        }
    }
}

/// Rejections, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectCounters {
    pub invalid_chunk: u64,
    pub too_large: u64,
    pub inconsistent: u64,
    pub overlap: u64,
    pub conflicting_duplicate: u64,
    pub size_mismatch: u64,
    pub checksum_mismatch: u64,
}

impl RejectCounters {
    pub fn total(&self) -> u64 {
        self.invalid_chunk
            + self.too_large
            + self.inconsistent
            + self.overlap
            + self.conflicting_duplicate
            + self.size_mismatch
            + self.checksum_mismatch
    }

    fn count(&mut self, error: &AssemblyError) {
        *match error {
            AssemblyError::InvalidChunk { .. } => &mut self.invalid_chunk,
            AssemblyError::TooLarge { .. } => &mut self.too_large,
            AssemblyError::Inconsistent { .. } => &mut self.inconsistent,
            AssemblyError::Overlap { .. } => &mut self.overlap,
            AssemblyError::ConflictingDuplicate { .. } => &mut self.conflicting_duplicate,
            AssemblyError::SizeMismatch { .. } => &mut self.size_mismatch,
            AssemblyError::ChecksumMismatch { .. } => &mut self.checksum_mismatch,
        } += 1;
    }
}

/// What the assembler has done since it was made, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssemblyCounters {
    /// Events verified and handed back (whole or reassembled).
    pub completed: u64,
    /// Chunks that repeated one already held (ignored).
    pub duplicates: u64,
    pub rejected: RejectCounters,
    /// Incomplete sets dropped to stay within the limits.
    pub evicted: u64,
    /// Incomplete sets dropped by [`ChunkAssembler::expire`].
    pub expired: u64,
}

#[derive(Debug)]
struct PendingSet {
    meta: EventMeta,
    count: u32,
    /// index -> (offset, body)
    chunks: BTreeMap<u32, (u64, Vec<u8>)>,
    held: u64,
    last_seen_ms: u64,
    /// Position in the order of activity; the smallest is the stalest set.
    touched: u64,
}

/// Reassembles chunked events. See the module doc.
#[derive(Debug)]
pub struct ChunkAssembler {
    limits: AssemblerLimits,
    sets: HashMap<EventId, PendingSet>,
    pending_bytes: u64,
    clock: u64,
    counters: AssemblyCounters,
    evicted: VecDeque<EventId>,
}

/// Checks that `body` is the image `meta` describes: its size, then its sha256.
pub fn verify_whole(meta: &EventMeta, body: &[u8]) -> Result<(), AssemblyError> {
    let event_id = meta.event_id;
    if meta.image.size != body.len() as u64 {
        return Err(AssemblyError::SizeMismatch {
            event_id,
            expected: meta.image.size,
            actual: body.len() as u64,
        });
    }
    let actual = sha256_hex(body);
    if actual != meta.image.sha256 {
        return Err(AssemblyError::ChecksumMismatch {
            event_id,
            expected: meta.image.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

impl Default for ChunkAssembler {
    fn default() -> Self {
        ChunkAssembler::new(AssemblerLimits::default())
    }
}

impl ChunkAssembler {
    pub fn new(mut limits: AssemblerLimits) -> Self {
        limits.max_pending_sets = limits.max_pending_sets.max(1);
        ChunkAssembler {
            limits,
            sets: HashMap::new(),
            pending_bytes: 0,
            clock: 0,
            counters: AssemblyCounters::default(),
            evicted: VecDeque::new(),
        }
    }

    pub fn limits(&self) -> &AssemblerLimits {
        &self.limits
    }

    pub fn counters(&self) -> &AssemblyCounters {
        &self.counters
    }

    /// Incomplete sets held now.
    pub fn pending_sets(&self) -> usize {
        self.sets.len()
    }

    /// Bytes charged to incomplete sets now (bodies plus per-chunk overhead).
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    pub fn is_pending(&self, event_id: &EventId) -> bool {
        self.sets.contains_key(event_id)
    }

    /// Ids of sets evicted since the last call (the most recent
    /// [`MAX_EVICTED_REMEMBERED`]), so the relay can log them or release their messages.
    pub fn take_evicted(&mut self) -> Vec<EventId> {
        self.evicted.drain(..).collect()
    }

    /// Verifies or reassembles whatever [`crate::envelope::decode`] returned.
    pub fn offer_message(
        &mut self,
        message: Message,
        now_ms: u64,
    ) -> Result<Option<CompleteEvent>, AssemblyError> {
        match message {
            Message::Event(event) => self.accept_whole(event).map(Some),
            Message::Chunk(chunk) => self.offer(chunk, now_ms),
        }
    }

    /// Verifies a whole (unchunked) event exactly as a reassembled one, and counts it.
    pub fn accept_whole(&mut self, event: WholeEvent) -> Result<CompleteEvent, AssemblyError> {
        let result = self.complete(event.meta, event.image);
        self.tally(result)
    }

    /// Adds one chunk. Returns the event once its last chunk arrives and the image
    /// verifies; `Ok(None)` while chunks are missing or for a duplicate. A rejected
    /// chunk changes nothing, except that a set which completes with a wrong size or
    /// checksum is dropped whole.
    pub fn offer(
        &mut self,
        chunk: Chunk,
        now_ms: u64,
    ) -> Result<Option<CompleteEvent>, AssemblyError> {
        let result = self.offer_inner(chunk, now_ms);
        self.tally(result)
    }

    fn tally<T>(&mut self, result: Result<T, AssemblyError>) -> Result<T, AssemblyError> {
        if let Err(error) = &result {
            self.counters.rejected.count(error);
        }
        result
    }

    fn offer_inner(
        &mut self,
        chunk: Chunk,
        now_ms: u64,
    ) -> Result<Option<CompleteEvent>, AssemblyError> {
        let event_id = chunk.header.event_id;
        chunk
            .validate()
            .map_err(|source| AssemblyError::InvalidChunk { event_id, source })?;
        let Chunk { header, body } = chunk;
        let index = header.index;
        if header.count == 1 && !self.sets.contains_key(&event_id) {
            return self.complete(header.meta, body).map(Some);
        }
        let cost = body.len() as u64 + CHUNK_OVERHEAD_BYTES;
        if let Some(set) = self.sets.get(&event_id) {
            if let Some(field) = disagreement(set, &header.meta, header.count) {
                return Err(AssemblyError::Inconsistent {
                    event_id,
                    index,
                    field,
                });
            }
            if let Some((offset, held)) = set.chunks.get(&index) {
                if *offset != header.offset || *held != body {
                    return Err(AssemblyError::ConflictingDuplicate { event_id, index });
                }
                self.counters.duplicates += 1;
                self.touch(&event_id, now_ms);
                return Ok(None);
            }
            check_neighbours(
                set,
                &event_id,
                index,
                header.offset,
                header.offset + header.size,
            )?;
        } else {
            let footprint = header.total_size + u64::from(header.count) * CHUNK_OVERHEAD_BYTES;
            if footprint > self.limits.max_pending_bytes {
                let (total_size, max) = (header.total_size, self.limits.max_pending_bytes);
                return Err(AssemblyError::TooLarge {
                    event_id,
                    total_size,
                    footprint,
                    max,
                });
            }
            while self.sets.len() >= self.limits.max_pending_sets && self.evict_stalest(&event_id) {
            }
            let set = PendingSet {
                meta: header.meta,
                count: header.count,
                chunks: BTreeMap::new(),
                held: 0,
                last_seen_ms: now_ms,
                touched: 0,
            };
            self.sets.insert(event_id, set);
        }
        while self.pending_bytes + cost > self.limits.max_pending_bytes
            && self.evict_stalest(&event_id)
        {}
        self.touch(&event_id, now_ms);
        let set = self
            .sets
            .get_mut(&event_id)
            .expect("set exists: found or inserted above");
        set.chunks.insert(index, (header.offset, body));
        set.held += cost;
        self.pending_bytes += cost;
        if set.chunks.len() < set.count as usize {
            return Ok(None);
        }
        let set = self
            .sets
            .remove(&event_id)
            .expect("set exists: just updated");
        self.pending_bytes -= set.held;
        let mut image = Vec::with_capacity(set.meta.image.size as usize);
        for (_, (_, body)) in set.chunks {
            image.extend_from_slice(&body);
        }
        self.complete(set.meta, image).map(Some)
    }

    fn complete(
        &mut self,
        meta: EventMeta,
        image: Vec<u8>,
    ) -> Result<CompleteEvent, AssemblyError> {
        verify_whole(&meta, &image)?;
        self.counters.completed += 1;
        Ok(CompleteEvent { meta, image })
    }

    fn touch(&mut self, event_id: &EventId, now_ms: u64) {
        self.clock += 1;
        if let Some(set) = self.sets.get_mut(event_id) {
            set.touched = self.clock;
            set.last_seen_ms = set.last_seen_ms.max(now_ms);
        }
    }

    /// Drops the incomplete set that has gone longest without a chunk, other than
    /// `keep`. Returns false when there is none.
    ///
    /// Why the stalest set: a set stops receiving chunks when its sender died or its
    /// chunks were lost, so the set that has waited longest is the one least likely to
    /// complete, while the newest are usually mid-transfer. Refusing new sets instead
    /// would let a few abandoned sets block every device until they time out. Nothing
    /// is lost: the agent keeps the event until a receipt arrives and sends it again.
    fn evict_stalest(&mut self, keep: &EventId) -> bool {
        let stalest = self
            .sets
            .iter()
            .filter(|(id, _)| *id != keep)
            .min_by_key(|(_, set)| set.touched)
            .map(|(id, _)| *id);
        let Some(id) = stalest else { return false };
        let set = self.sets.remove(&id).expect("id taken from the map");
        self.pending_bytes -= set.held;
        self.counters.evicted += 1;
        if self.evicted.len() == MAX_EVICTED_REMEMBERED {
            self.evicted.pop_front();
        }
        self.evicted.push_back(id);
        true
    }

    /// Drops incomplete sets that have received no chunk for `timeout_ms` and returns
    /// their ids, stalest first.
    pub fn expire(&mut self, now_ms: u64) -> Vec<EventId> {
        let timeout = self.limits.timeout_ms;
        let mut expired: Vec<(u64, EventId)> = self
            .sets
            .iter()
            .filter(|(_, set)| now_ms.saturating_sub(set.last_seen_ms) >= timeout)
            .map(|(id, set)| (set.touched, *id))
            .collect();
        expired.sort_unstable();
        for (_, id) in &expired {
            let set = self.sets.remove(id).expect("id taken from the map");
            self.pending_bytes -= set.held;
        }
        self.counters.expired += expired.len() as u64;
        expired.into_iter().map(|(_, id)| id).collect()
    }
}

/// The first field on which a chunk's header disagrees with its set, if any.
fn disagreement(set: &PendingSet, meta: &EventMeta, count: u32) -> Option<&'static str> {
    if count != set.count {
        Some("count")
    } else if meta.image.size != set.meta.image.size {
        Some("total_size")
    } else if meta.image.sha256 != set.meta.image.sha256 {
        Some("image_sha256")
    } else if *meta != set.meta {
        Some("meta")
    } else {
        None
    }
}

/// Chunks must tile the image in index order: a chunk ends no later than the next
/// held chunk starts, and exactly where it starts when their indices are adjacent.
fn check_neighbours(
    set: &PendingSet,
    event_id: &EventId,
    index: u32,
    offset: u64,
    end: u64,
) -> Result<(), AssemblyError> {
    let overlap = |neighbour| AssemblyError::Overlap {
        event_id: *event_id,
        index,
        offset,
        end,
        neighbour,
    };
    if let Some((&before, (b_offset, b_body))) = set.chunks.range(..index).next_back() {
        let b_end = b_offset + b_body.len() as u64;
        if b_end > offset || (before + 1 == index && b_end != offset) {
            return Err(overlap(before));
        }
    }
    if let Some((&after, (a_offset, _))) = set.chunks.range(index + 1..).next() {
        if end > *a_offset || (index + 1 == after && end != *a_offset) {
            return Err(overlap(after));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "assembler_tests.rs"]
mod tests;
