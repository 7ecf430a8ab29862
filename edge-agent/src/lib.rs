//! edge-agent: classifies frames with a TFLite model and sends the ones the model is
//! unsure about for human review. `main.rs` only parses arguments; everything lives
//! here so tests can drive it in-process.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod evaluate;
pub mod finetune;
pub mod inference;
pub mod model;
pub mod outbox;
pub mod phash;
pub mod pipeline;
pub mod policy;
pub mod preprocess;
pub mod source;
pub mod systemd;
pub mod update;
