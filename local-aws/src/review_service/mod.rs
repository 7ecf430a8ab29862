//! The local review service: an Amazon A2I stand-in for local mode.
//!
//! It speaks the A2I runtime API and the SageMaker control-plane calls a flow needs
//! (see [`http`] for the routes), so the relay's A2I code and the AWS SDKs run against
//! it unchanged with only an endpoint URL override. Layers, inside out:
//! - [`store`] / [`control_plane`]: plain state machines, no I/O, unit-tested;
//! - [`persist`]: snapshot + journal in a state directory, so state survives restarts;
//! - [`service`]: [`ReviewService`], the handle that journals and applies changes, and
//!   [`ReviewService::complete_loop`], the reviewer page's entry point, which writes
//!   `output.json` through an [`OutputSink`];
//! - [`http`] / [`control_api`]: axum, mapping HTTP to service calls and back, with
//!   what both share (the AWS error shape, request ids) in [`wire`]; every request
//!   signed with local mode's key pair ([`crate::sigv4`]), behind
//!   [`crate::http_guard`].
//!
//! [`http_guard`]: crate::http_guard

pub mod control_api;
pub mod control_plane;
pub mod http;
mod loop_record;
pub mod output;
mod page_token;
pub mod persist;
pub mod service;
pub mod store;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use output::{DirOutputSink, OutputKey, OutputSink, OutputSinkError};
pub use protocol::a2i::{HumanAnswer, HumanLoopOutput};
pub use service::{ReviewService, ServiceError, ServiceIdentity};
pub use store::{HumanLoop, HumanLoopStatus, HumanLoopStore};

/// Everything `local-aws review-service` needs.
#[derive(Debug, Clone)]
pub struct ReviewServiceConfig {
    /// Loopback by default (the `Host` guard admits loopback names only).
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    /// Root of the local object store: output.json goes to `<output_dir>/<bucket>/<key>`.
    pub output_dir: PathBuf,
    pub region: String,
    pub account_id: String,
    pub max_in_progress_loops: usize,
}

pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8089))
}

pub fn default_region() -> String {
    "us-east-1".to_owned()
}

/// A made-up account: ARNs need twelve digits.
pub fn default_account_id() -> String {
    "000000000000".to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("account id {0:?} must be twelve digits")]
    AccountId(String),
    #[error("region {0:?} must be lowercase letters, digits and hyphens")]
    Region(String),
    #[error("max in-progress loops must be at least 1")]
    MaxInProgress,
}

impl ReviewServiceConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::AccountId(self.account_id.clone()));
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError::Region(self.region.clone()));
        }
        if self.max_in_progress_loops == 0 {
            return Err(ConfigError::MaxInProgress);
        }
        Ok(())
    }

    /// Opens the state directory with a [`DirOutputSink`] over `output_dir`.
    pub fn open_service(&self) -> anyhow::Result<ReviewService> {
        self.validate()?;
        let identity = ServiceIdentity {
            region: self.region.clone(),
            account_id: self.account_id.clone(),
        };
        let sink: Arc<dyn OutputSink> = Arc::new(DirOutputSink::new(&self.output_dir));
        let service =
            ReviewService::open(identity, &self.state_dir, self.max_in_progress_loops, sink)?;
        Ok(service)
    }
}

/// Serves the A2I + control-plane API on `listener`, behind the [`http_guard`] and
/// taking requests signed for `verifier`, until `shutdown` completes; then finishes the
/// requests in flight. Every accepted change is already on disk.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: ReviewService,
    verifier: Arc<crate::sigv4::Verifier>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let app = crate::http_guard::protect(http::router(service, verifier), port);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
