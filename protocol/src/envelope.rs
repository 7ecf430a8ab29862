//! The binary MQTT payload on `{prefix}/{device}/events`: a JSON header followed by
//! the raw image bytes (never base64). Layout, all integers big-endian:
//!
//! ```text
//! offset 0   4 bytes  magic "EA2I"
//! offset 4   u8       envelope version (1)
//! offset 5   u8       kind: 1 = whole event, 2 = chunk
//! offset 6   u32      header length N (at most 64 KiB)
//! offset 10  N bytes  header JSON (UTF-8): EventMeta (kind 1) or ChunkHeader (kind 2)
//! offset 10+N         body: the whole image (kind 1) or this chunk's slice (kind 2)
//! ```
//!
//! An image that fits in one MQTT message travels whole; a larger one travels as
//! chunks, each carrying the full meta so chunks may arrive in any order and any one
//! of them tells the relay what the set is. The size limit applies to the whole MQTT
//! PUBLISH packet, topic included (see [`Limits`]). This module owns the layout and
//! per-message checks; [`crate::assembler`] owns reassembly and digest verification.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::{EventId, EventMeta, EVENT_VERSION};
use crate::json::{sha256_hex, MessageError};

pub const MAGIC: [u8; 4] = *b"EA2I";
pub const ENVELOPE_VERSION: u8 = 1;
pub const KIND_EVENT: u8 = 1;
pub const KIND_CHUNK: u8 = 2;
/// Magic, version, kind and header length.
pub const PREAMBLE_LEN: usize = 10;
/// Largest header accepted, so a forged length cannot make a reader allocate.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// AWS IoT Core's message size limit (128 KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 131_072;
/// PUBLISH bytes that are not topic, properties or payload: fixed header (1 byte
/// type + at most 4 bytes remaining length), 2-byte topic length, 2-byte packet id.
pub const PUBLISH_FIXED_OVERHEAD: usize = 5 + 2 + 2;
/// Room left for MQTT 5 properties (their length varint, message expiry, a content
/// type, ...). The agent sends none today; the margin keeps a future property or a
/// broker that counts differently from pushing a message over the limit.
pub const DEFAULT_PROPERTY_MARGIN: usize = 64;

/// How large one MQTT message may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Limit on the whole PUBLISH packet, default [`DEFAULT_MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
    /// Bytes kept free for MQTT 5 properties, default [`DEFAULT_PROPERTY_MARGIN`].
    pub property_margin: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            property_margin: DEFAULT_PROPERTY_MARGIN,
        }
    }
}

impl Limits {
    /// Payload bytes left in one PUBLISH on a topic of `topic_len` bytes.
    pub fn payload_budget(&self, topic_len: usize) -> usize {
        self.max_message_bytes
            .saturating_sub(PUBLISH_FIXED_OVERHEAD + self.property_margin)
            .saturating_sub(topic_len)
    }
}

/// Header of one chunk. The chunks of an image tile it in index order:
/// chunk `i` holds bytes `offset..offset + size` of the `total_size`-byte image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkHeader {
    pub event_id: EventId,
    /// 0-based position of this chunk.
    pub index: u32,
    /// Number of chunks in the set.
    pub count: u32,
    /// Where this chunk's bytes start in the image.
    pub offset: u64,
    /// Length of this chunk's body; lets a reader catch a truncated payload at once.
    pub size: u64,
    /// Size of the whole image (= `meta.image.size`).
    pub total_size: u64,
    /// SHA-256 of the whole image (= `meta.image.sha256`).
    pub image_sha256: String,
    pub meta: EventMeta,
}

/// A decoded chunk: its header and its slice of the image.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub header: ChunkHeader,
    pub body: Vec<u8>,
}

/// A decoded whole event: the meta and the whole image (not yet digest-checked; see
/// [`crate::assembler::verify_whole`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WholeEvent {
    pub meta: EventMeta,
    pub image: Vec<u8>,
}

/// One decoded MQTT payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Event(WholeEvent),
    Chunk(Chunk),
}

impl Message {
    pub fn event_id(&self) -> &EventId {
        match self {
            Message::Event(e) => &e.meta.event_id,
            Message::Chunk(c) => &c.header.event_id,
        }
    }

    /// The payload bytes for this message (what [`decode`] reads back).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        match self {
            Message::Event(e) => frame(KIND_EVENT, &e.meta.to_json(), &e.image),
            Message::Chunk(c) => frame(KIND_CHUNK, &json(&c.header), &c.body),
        }
    }
}

/// A chunk whose header contradicts itself, its body or its meta.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    #[error("chunk count is 0")]
    ZeroCount,
    #[error("chunk index {index} is not below the chunk count {count}")]
    IndexOutOfRange { index: u32, count: u32 },
    #[error("chunk count {count} exceeds the image size {total_size} (every chunk holds at least one byte)")]
    TooManyChunks { count: u32, total_size: u64 },
    #[error("chunk header says size {declared} but the body has {actual} bytes")]
    BodySizeMismatch { declared: u64, actual: u64 },
    #[error(
        "chunk at offset {offset} with size {size} reaches beyond the image size {total_size}"
    )]
    BeyondImage {
        offset: u64,
        size: u64,
        total_size: u64,
    },
    #[error("chunk {index} is empty although the image is not")]
    Empty { index: u32 },
    #[error("first chunk starts at offset {offset}, not 0")]
    FirstNotAtStart { offset: u64 },
    #[error("last chunk ends at {end}, not at the image size {total_size}")]
    LastNotAtEnd { end: u64, total_size: u64 },
    #[error("chunk header field `{field}` disagrees with its meta")]
    MetaMismatch { field: &'static str },
}

impl Chunk {
    /// Checks everything one chunk can say about itself.
    pub fn validate(&self) -> Result<(), ChunkError> {
        let h = &self.header;
        if h.count == 0 {
            return Err(ChunkError::ZeroCount);
        }
        if h.index >= h.count {
            return Err(ChunkError::IndexOutOfRange {
                index: h.index,
                count: h.count,
            });
        }
        if u64::from(h.count) > h.total_size.max(1) {
            return Err(ChunkError::TooManyChunks {
                count: h.count,
                total_size: h.total_size,
            });
        }
        if h.size != self.body.len() as u64 {
            return Err(ChunkError::BodySizeMismatch {
                declared: h.size,
                actual: self.body.len() as u64,
            });
        }
        let end = h
            .offset
            .checked_add(h.size)
            .filter(|&end| end <= h.total_size);
        let Some(end) = end else {
            return Err(ChunkError::BeyondImage {
                offset: h.offset,
                size: h.size,
                total_size: h.total_size,
            });
        };
        if h.size == 0 && h.total_size > 0 {
            return Err(ChunkError::Empty { index: h.index });
        }
        if h.index == 0 && h.offset != 0 {
            return Err(ChunkError::FirstNotAtStart { offset: h.offset });
        }
        if h.index + 1 == h.count && end != h.total_size {
            return Err(ChunkError::LastNotAtEnd {
                end,
                total_size: h.total_size,
            });
        }
        let mismatch = |field| Err(ChunkError::MetaMismatch { field });
        if h.event_id != h.meta.event_id {
            return mismatch("event_id");
        }
        if h.total_size != h.meta.image.size {
            return mismatch("total_size");
        }
        if h.image_sha256 != h.meta.image.sha256 {
            return mismatch("image_sha256");
        }
        Ok(())
    }
}

/// Why an event could not be encoded. All are caller faults.
#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("cannot encode event: {0}")]
    InvalidMeta(#[from] MessageError),
    #[error("meta says the image has {declared} bytes but it has {actual}")]
    ImageSizeMismatch { declared: u64, actual: u64 },
    #[error("meta says the image sha256 is {declared} but it is {actual}")]
    ImageChecksumMismatch { declared: String, actual: String },
    #[error("header is {len} bytes, more than the {max}-byte maximum")]
    HeaderTooLarge { len: usize, max: usize },
    #[error("a message may carry {budget} payload bytes but a chunk needs at least {needed} (raise max_message_bytes or shorten the topic)")]
    BudgetTooSmall { budget: usize, needed: usize },
}

/// Why a payload could not be decoded. Each names what was wrong.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("payload is {len} bytes, shorter than the {PREAMBLE_LEN}-byte envelope preamble")]
    TooShort { len: usize },
    #[error("payload does not start with the magic \"EA2I\" (found {found:02x?})")]
    BadMagic { found: [u8; 4] },
    #[error(
        "envelope version {version} is not supported (this build reads version {ENVELOPE_VERSION})"
    )]
    UnsupportedVersion { version: u8 },
    #[error("envelope kind {kind} is unknown (1 = whole event, 2 = chunk)")]
    UnknownKind { kind: u8 },
    #[error("header length {len} exceeds the {MAX_HEADER_BYTES}-byte maximum")]
    HeaderTooLarge { len: u32 },
    #[error(
        "header length {len} reaches beyond the payload ({available} bytes follow the preamble)"
    )]
    HeaderBeyondPayload { len: u32, available: usize },
    #[error("invalid envelope header: {0}")]
    Header(#[from] MessageError),
    #[error("event meta says the image has {declared} bytes but the body has {actual}")]
    BodySizeMismatch { declared: u64, actual: u64 },
    #[error("invalid chunk: {0}")]
    Chunk(#[from] ChunkError),
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("envelope headers serialize: plain fields and string keys")
}

fn frame(kind: u8, header: &[u8], body: &[u8]) -> Result<Vec<u8>, EncodeError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(EncodeError::HeaderTooLarge {
            len: header.len(),
            max: MAX_HEADER_BYTES,
        });
    }
    let mut out = Vec::with_capacity(PREAMBLE_LEN + header.len() + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(ENVELOPE_VERSION);
    out.push(kind);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    Ok(out)
}

/// Encodes an event for a topic of `topic_len` bytes: one message when it fits,
/// otherwise chunks, each within `limits` (topic and PUBLISH overhead included).
/// Checks first that the meta is valid and describes `image` (size and sha256).
pub fn encode_event(
    meta: &EventMeta,
    image: &[u8],
    topic_len: usize,
    limits: &Limits,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    meta.validate()?;
    if meta.image.size != image.len() as u64 {
        return Err(EncodeError::ImageSizeMismatch {
            declared: meta.image.size,
            actual: image.len() as u64,
        });
    }
    let actual = sha256_hex(image);
    if actual != meta.image.sha256 {
        return Err(EncodeError::ImageChecksumMismatch {
            declared: meta.image.sha256.clone(),
            actual,
        });
    }
    let budget = limits.payload_budget(topic_len);
    let whole = frame(KIND_EVENT, &meta.to_json(), image)?;
    if whole.len() <= budget {
        return Ok(vec![whole]);
    }
    // The header grows with the digits of index, count, offset and size, each at most
    // total_size; a header with all four set to it bounds every real one.
    let total = image.len() as u64;
    let widest = ChunkHeader {
        event_id: meta.event_id,
        index: u32::try_from(total.max(1)).unwrap_or(u32::MAX),
        count: u32::try_from(total.max(1)).unwrap_or(u32::MAX),
        offset: total,
        size: total,
        total_size: total,
        image_sha256: meta.image.sha256.clone(),
        meta: meta.clone(),
    };
    let header_bound = json(&widest).len();
    if header_bound > MAX_HEADER_BYTES {
        return Err(EncodeError::HeaderTooLarge {
            len: header_bound,
            max: MAX_HEADER_BYTES,
        });
    }
    let needed = PREAMBLE_LEN + header_bound + 1;
    if budget < needed || image.is_empty() {
        return Err(EncodeError::BudgetTooSmall {
            budget,
            needed: needed.max(whole.len()),
        });
    }
    let chunk_len = budget - PREAMBLE_LEN - header_bound;
    let count = image.len().div_ceil(chunk_len) as u32;
    let mut messages = Vec::with_capacity(count as usize);
    for (index, body) in image.chunks(chunk_len).enumerate() {
        let header = ChunkHeader {
            event_id: meta.event_id,
            index: index as u32,
            count,
            offset: (index * chunk_len) as u64,
            size: body.len() as u64,
            total_size: total,
            image_sha256: meta.image.sha256.clone(),
            meta: meta.clone(),
        };
        messages.push(frame(KIND_CHUNK, &json(&header), body)?);
    }
    Ok(messages)
}

/// Decodes one payload, checking the layout, the header and everything a single
/// message can say about itself. Never panics, whatever the bytes.
pub fn decode(payload: &[u8]) -> Result<Message, DecodeError> {
    if payload.len() < PREAMBLE_LEN {
        return Err(DecodeError::TooShort { len: payload.len() });
    }
    let found: [u8; 4] = payload[0..4].try_into().expect("4-byte slice");
    if found != MAGIC {
        return Err(DecodeError::BadMagic { found });
    }
    if payload[4] != ENVELOPE_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            version: payload[4],
        });
    }
    let kind = payload[5];
    if kind != KIND_EVENT && kind != KIND_CHUNK {
        return Err(DecodeError::UnknownKind { kind });
    }
    let len = u32::from_be_bytes(payload[6..10].try_into().expect("4-byte slice"));
    if len as usize > MAX_HEADER_BYTES {
        return Err(DecodeError::HeaderTooLarge { len });
    }
    let rest = &payload[PREAMBLE_LEN..];
    if len as usize > rest.len() {
        return Err(DecodeError::HeaderBeyondPayload {
            len,
            available: rest.len(),
        });
    }
    let (header, body) = rest.split_at(len as usize);
    if kind == KIND_EVENT {
        let meta = EventMeta::from_json(header)?;
        if meta.image.size != body.len() as u64 {
            return Err(DecodeError::BodySizeMismatch {
                declared: meta.image.size,
                actual: body.len() as u64,
            });
        }
        return Ok(Message::Event(WholeEvent {
            meta,
            image: body.to_vec(),
        }));
    }
    let message = "chunk header";
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|source| MessageError::Json { message, source })?;
    // A newer meta inside a chunk must say "version N", not "missing field".
    if let Some(found) = value.pointer("/meta/v").and_then(serde_json::Value::as_u64) {
        if found != u64::from(EVENT_VERSION) {
            let (message, supported) = ("event meta", EVENT_VERSION);
            return Err(MessageError::UnsupportedVersion {
                message,
                found,
                supported,
            }
            .into());
        }
    }
    let header: ChunkHeader =
        serde_json::from_value(value).map_err(|source| MessageError::Json { message, source })?;
    header.meta.validate()?;
    let chunk = Chunk {
        header,
        body: body.to_vec(),
    };
    chunk.validate()?;
    Ok(Message::Chunk(chunk))
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;
