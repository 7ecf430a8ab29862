//! Wire and file formats shared by edge-agent and cloud-relay. Pure types and
//! encode/decode, no I/O, no async, no clock (time is passed in): one module per
//! message, each versioned. See `protocol/README.md` for the messages side by side.
//!
//! | module | message |
//! |---|---|
//! | [`topics`] | MQTT topic layout and device ids |
//! | [`event`] | `EventMeta`, event ids, human loop names |
//! | [`envelope`] | the binary MQTT payload: whole events and chunks |
//! | [`assembler`] | chunk reassembly and image verification (relay side) |
//! | [`receipt`] | relay -> agent: stored / rejected |
//! | [`status`] | agent's retained status and last will |
//! | [`review`] | relay -> agent: the reviewed label |
//! | [`a2i`] | A2I `InputContent`, `output.json`, answer consolidation |
//! | [`manifest`] | Ground Truth augmented-manifest rows |
//! | [`package`] | signed model packages (tar + minisign), anti-rollback |
//! | [`jobs`] | AWS IoT Jobs device MQTT API, the model-update job document |
//! | [`reason`] | why a frame was sent for review |
//! | [`reencode`] | stored payloads re-encoded for another device id or size limit (agent side) |
//! | [`timestamp`], [`json`], [`file_name`] | shared conventions: timestamps, JSON checks, file names shown escaped |

pub mod a2i;
pub mod assembler;
pub mod atomic_file;
pub mod backoff;
pub mod envelope;
pub mod event;
pub mod file_name;
pub mod jobs;
pub mod json;
pub mod manifest;
pub mod mqtt_login;
pub mod mqtt_tls;
pub mod package;
pub mod reason;
pub mod receipt;
pub mod reencode;
pub mod renamed;
pub mod review;
pub mod status;
pub mod timestamp;
pub mod topics;

pub use assembler::{verify_whole, AssemblerLimits, AssemblyError, ChunkAssembler, CompleteEvent};
pub use envelope::{
    decode, encode_event, Chunk, ChunkHeader, DecodeError, EncodeError, Limits, Message, WholeEvent,
};
pub use event::{human_loop_name, ContentType, EventId, EventMeta, ImageInfo, ModelInfo, TopK};
pub use json::{sha256_hex, MessageError};
pub use reason::ReviewReason;
pub use receipt::{Receipt, ReceiptStatus, RejectCode};
pub use review::ReviewResult;
pub use status::Status;
pub use topics::{DeviceId, TopicKind, Topics};
