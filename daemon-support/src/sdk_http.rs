//! The HTTPS client of every AWS SDK client in the workspace: the SDK's own (hyper 1
//! with rustls, the system's root certificates; `aws-smithy-http-client`) with rustls'
//! `ring` crypto provider instead of the SDK's default aws-lc-rs.
//!
//! Why: `ring` is the one provider in the build (the MQTT TLS of both daemons uses
//! it), so `rustls::ClientConfig::builder()` always finds it, and aws-lc-rs's C
//! library, two minutes of every target's cold build, is not compiled at all. The
//! SDK's `default-https-client` feature is off in the workspace: an SDK client built
//! without [`client`] has no HTTP client and fails its first call saying so.

use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
pub use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// A new HTTPS (and plain HTTP, for local endpoints) client for
/// `aws_config::ConfigLoader::http_client` or an SDK `Config::builder().http_client`.
/// Connections are pooled per client; cloning the returned handle shares them.
pub fn client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}
