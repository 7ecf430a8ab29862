//! Test support for edge-a2i: real servers on loopback, started and stopped by the
//! tests themselves, and deadlines instead of sleeps.
//!
//! - [`wait_until`], [`wait_for`], [`wait_until_async`], [`wait_for_async`]: poll a
//!   condition under a deadline; panic with what was awaited.
//! - [`free_port`]: a free TCP port on 127.0.0.1.
//! - [`TestCerts`]: a CA, a server certificate for the loopback addresses and client
//!   certificates, as PEM files (pure Rust, `rcgen`).
//! - [`Mosquitto`]: a real Mosquitto 2 broker configured like AWS IoT Core (mutual
//!   TLS, 128 KiB payloads, QoS <= 1), with stop/kill/start/restart on the same port.
//! - [`MotoS3`] (feature `http`): a moto S3 server process; [`s3_client`] and
//!   [`create_bucket`].
//! - [`http`] (feature `http`): the one HTTP/1.1 client of the tests, on hyper.
//! - [`ChildGuard`], [`spawn_with_log`]: child processes killed on drop, output in a log;
//!   [`workspace_bin`]: another package's binary from the same target directory.
//!
//! See README.md for examples, including the rumqttc TLS settings for the broker.

mod certs;
mod error;
#[cfg(feature = "http")]
pub mod http;
mod in_process;
mod mosquitto;
#[cfg(feature = "http")]
mod moto;
mod port;
mod process;
#[cfg(feature = "s3")]
mod s3;
mod server;
mod wait;

pub use certs::{ClientCert, TestCerts};
pub use error::{Error, Result};
pub use in_process::{InProcessServer, Shutdown};
pub use mosquitto::{Mosquitto, MosquittoBuilder, IOT_CORE_MAX_PAYLOAD};
#[cfg(feature = "http")]
pub use moto::{MotoS3, MotoS3Builder};
pub use port::free_port;
pub use process::{log_tail, rss_kib, spawn_with_log, tool_available, workspace_bin, ChildGuard};
#[cfg(feature = "s3")]
pub use s3::{create_bucket, s3_client, s3_client_signing};
pub use wait::{poll_for, poll_until, wait_for, wait_for_async, wait_until, wait_until_async};
