//! The relay's S3 client as the review service's [`OutputSink`], so the local review
//! service writes `output.json` into an S3-compatible server (tests run it against
//! moto) exactly where A2I would. It lives here, not in the relay, because only the
//! stand-in writes `output.json`; A2I does that itself in production.

use cloud_relay::relay::s3::S3Store;

use crate::review_service::output::{OutputKey, OutputSink, OutputSinkError, PutFuture};

impl OutputSink for S3Store {
    fn put_output<'a>(&'a self, key: &'a OutputKey, bytes: Vec<u8>) -> PutFuture<'a> {
        Box::pin(async move {
            self.put_in(&key.bucket, &key.key, bytes, "application/json", false)
                .await
                .map(|_| ())
                .map_err(|e| OutputSinkError::Store {
                    key: key.to_string(),
                    message: e.to_string(),
                })
        })
    }
}
