//! The local AWS IoT Jobs service: what a model rollout rides on in local mode.
//!
//! It speaks the Jobs device MQTT API (the reserved topics under
//! `$aws/things/{thingName}/jobs/` and the JSON of [`protocol::jobs`]) to devices over
//! the embedded broker, so `edge-agent` has one code path for IoT Core and local mode;
//! and a loopback HTTP control API shaped like IoT's CreateJob, DescribeJob,
//! ListJobExecutionsForJob and CancelJob for whoever starts rollouts. Layers, inside
//! out:
//! - [`config`]: rollout and abort configuration, and the rollout's pace;
//! - [`model`]: the records (job, execution) and the input rules;
//! - [`state`]: the service as a pure state machine (time passed in), unit-tested;
//! - [`service`]: the shared handle that persists the state (JSON, write-rename-fsync)
//!   and the MQTT adapter (a rumqttc client of the broker, a tick every second);
//! - [`http`]: the axum control API, SigV4-signed requests only (what `cloud-relay
//!   fleet` sends, signing for service `iot`).

pub mod config;
pub mod http;
pub mod model;
pub mod service;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;

pub use http::ApiIdentity;
pub use service::{run_mqtt, Jobs};

/// The control API's default address.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8091))
}

/// Serves the control API on `listener`, behind the [`crate::http_guard`] and taking
/// requests signed for `verifier`, until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    jobs: Jobs,
    id: ApiIdentity,
    verifier: std::sync::Arc<crate::sigv4::Verifier>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let app = crate::http_guard::protect(http::router(jobs, id, verifier), port);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
