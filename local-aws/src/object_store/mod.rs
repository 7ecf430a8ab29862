//! The local object store: a directory laid out like buckets and keys ([`DirStore`]),
//! served over the S3 HTTP API on loopback ([`DirS3`] behind `s3s`). The relay talks to
//! it with the same `aws-sdk-s3` code it uses against S3, only with an endpoint URL
//! (and path-style addressing), and presigned GET URLs work as they do on S3.
//!
//! Requests must be signed (SigV4, headers or presigned query) with local mode's key
//! pair ([`crate::credentials`]); `s3s` verifies the signatures, with AWS's 15-minute
//! clock-skew window, and answers S3's own errors (`AccessDenied` "Signature is
//! required", `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `RequestTimeTooSkewed`).
//! The [`crate::http_guard`] in front refuses foreign `Host`s and `Origin`s. In-process users (the reviewer page
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

use crate::credentials::Credentials;
use crate::review_service::output::{OutputKey, OutputSink, OutputSinkError, PutFuture};

/// Everything `local-aws object-store` needs.
#[derive(Debug, Clone)]
pub struct ObjectStoreConfig {
    pub root: PathBuf,
    /// Loopback by default; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The only key pair requests may be signed with.
    pub credentials: Credentials,
    /// Buckets created at start if missing.
    pub buckets: Vec<String>,
}

pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000))
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

/// The S3 service over `store`, accepting requests signed with `credentials` only.
pub fn s3_service(store: DirStore, credentials: &Credentials) -> s3s::service::S3Service {
    let mut b = s3s::service::S3ServiceBuilder::new(DirS3::new(store));
    b.set_auth(OneKey(credentials.clone()));
    b.build()
}

/// The one key pair `s3s` verifies signatures against. (`s3s::auth::SimpleAuth` answers
/// an unknown key id with `NotSignedUp`; S3 says `InvalidAccessKeyId`, as here.)
struct OneKey(Credentials);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for OneKey {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        if crate::credentials::constant_time_eq(access_key, &self.0.access_key_id) {
            Ok(s3s::auth::SecretKey::from(
                self.0.secret_access_key.as_str(),
            ))
        } else {
            Err(s3s::s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records: {access_key:?} is not local mode's"
            ))
        }
    }
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

/// Serves the S3 API on `listener`, behind the [`crate::http_guard`], until `shutdown`
/// completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: s3s::service::S3Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    axum::serve(listener, crate::http_guard::protect(router(service), port))
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
