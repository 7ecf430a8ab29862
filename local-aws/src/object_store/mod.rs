//! The local object store: a directory laid out like buckets and keys ([`DirStore`]),
//! served over the S3 HTTP API on loopback ([`DirS3`] behind `s3s`). The relay talks to
//! it with the same `aws-sdk-s3` code it uses against S3, only with an endpoint URL
//! (and path-style addressing), and presigned GET URLs work as they do on S3.
//!
//! Requests must be signed (SigV4, headers or presigned query) with the configured
//! access key; `s3s` verifies the signatures. In-process users (the reviewer page
//! reading frames, [`OutputSink`] writing output.json) use the [`DirStore`] directly:
//! same files, same atomic writes.

mod dir;
mod s3;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;

pub use dir::{
    content_type_for, key_segments, validate_bucket, DirStore, ListPage, ListRequest, ObjectInfo,
    PutMode, StoreError, TempObject, MAX_OBJECT_SIZE,
};
pub use s3::DirS3;

use crate::review_service::output::{OutputKey, OutputSink, OutputSinkError, PutFuture};

/// Everything `local-aws object-store` needs.
#[derive(Debug, Clone)]
pub struct ObjectStoreConfig {
    pub root: PathBuf,
    /// Loopback by default; port 0 picks a free one.
    pub listen: SocketAddr,
    pub access_key: String,
    pub secret_key: String,
    /// Buckets created at start if missing.
    pub buckets: Vec<String>,
}

pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000))
}

/// Local mode's well-known credentials: the store listens on loopback only, and the
/// relay's local configuration names the same pair.
pub fn default_access_key() -> String {
    "edge-a2i-local".to_owned()
}

pub fn default_secret_key() -> String {
    "edge-a2i-local-secret".to_owned()
}

impl ObjectStoreConfig {
    /// Opens the directory and creates the configured buckets.
    pub fn open(&self) -> Result<DirStore, StoreError> {
        let store = DirStore::open(&self.root)?;
        for b in &self.buckets {
            store.ensure_bucket(b)?;
        }
        Ok(store)
    }
}

/// The S3 service over `store`, accepting requests signed with the given key pair.
pub fn s3_service(store: DirStore, access_key: &str, secret_key: &str) -> s3s::service::S3Service {
    let mut b = s3s::service::S3ServiceBuilder::new(DirS3::new(store));
    b.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
    b.build()
}

/// An axum router that hands every request to `service`.
pub fn router(service: s3s::service::S3Service) -> axum::Router {
    axum::Router::new().fallback(move |req: Request| {
        let service = service.clone();
        async move {
            match service.call(req.map(s3s::Body::http_body_unsync)).await {
                Ok(resp) => resp.map(axum::body::Body::new).into_response(),
                Err(e) => {
                    tracing::error!(error = ?e, "S3 request failed");
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
                }
            }
        }
    })
}

/// Serves the S3 API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: s3s::service::S3Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the local object store listens beyond loopback");
        }
    }
    axum::serve(listener, router(service))
        .with_graceful_shutdown(shutdown)
        .await
}

/// output.json written straight into the store (local mode's review service).
impl OutputSink for DirStore {
    fn put_output<'a>(&'a self, key: &'a OutputKey, bytes: Vec<u8>) -> PutFuture<'a> {
        Box::pin(async move {
            let store = self.clone();
            let (b, k) = (key.bucket.clone(), key.key.clone());
            let result =
                tokio::task::spawn_blocking(move || store.put(&b, &k, &bytes, PutMode::Overwrite))
                    .await;
            match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(StoreError::Io { path, source })) => {
                    Err(OutputSinkError::Io { path, source })
                }
                Ok(Err(e)) => Err(OutputSinkError::Store {
                    key: key.to_string(),
                    message: e.to_string(),
                }),
                Err(e) => Err(OutputSinkError::Store {
                    key: key.to_string(),
                    message: e.to_string(),
                }),
            }
        })
    }
}
