//! The object store: `aws-sdk-s3` against AWS or any S3-compatible server (an
//! endpoint URL in the config), one code path for both. Calls return classified
//! [`Failure`]s for [`super::retry`]; "put only if absent" uses `If-None-Match: *`
//! (a 412 means another relay, or an earlier run, wrote it first).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::BehaviorVersion;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use super::retry::Failure;
use crate::config::S3Config;

/// Classifies any AWS SDK error: throttling, 5xx and transport trouble are transient.
pub fn classify<E>(err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let text = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("");
            if code == "ServiceQuotaExceededException" {
                Failure::Quota(text)
            } else if status >= 500
                || status == 429
                // Checked at start-up; missing later means the store is being
                // restored: wait for it rather than give the event up.
                || code == "NoSuchBucket"
                || code.contains("Throttl")
                || code == "SlowDown"
                || code == "RequestTimeout"
            {
                Failure::Transient(text)
            } else {
                Failure::Permanent(text)
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Transient(text)
        }
        _ => Failure::Permanent(text),
    }
}

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(ctx) => Some(ctx.raw().status().as_u16()),
        _ => None,
    }
}

/// Whether a conditional put created the object or found it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Existed,
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

/// Why the bucket cannot be used (start-up health check).
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("bucket {0:?} does not exist")]
    Missing(String),
    #[error("access to bucket {0:?} is forbidden (check the credentials and the bucket policy)")]
    Forbidden(String),
    #[error("bucket {bucket:?} cannot be reached: {message}")]
    Unreachable { bucket: String, message: String },
}

impl S3Store {
    pub async fn connect(config: &S3Config) -> Self {
        let shared = crate::aws_http::sdk_config(&config.region).await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .behavior_version(BehaviorVersion::latest())
            // Retries are the relay's own (super::retry): unlimited for transient
            // faults, counted in the retries metric, paced by the config.
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            // S3-compatible servers do not all understand the default CRC trailers.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        if let Some(url) = &config.endpoint_url {
            builder = builder
                .endpoint_url(url)
                .force_path_style(config.force_path_style.unwrap_or(true));
        } else if let Some(path_style) = config.force_path_style {
            builder = builder.force_path_style(path_style);
        }
        S3Store {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
        }
    }

    /// A store over an already configured client (tests, local mode).
    pub fn from_client(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Store {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub async fn check_bucket(&self) -> Result<(), BucketError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(match status_of(&e) {
                Some(404) => BucketError::Missing(self.bucket.clone()),
                Some(403) => BucketError::Forbidden(self.bucket.clone()),
                _ => BucketError::Unreachable {
                    bucket: self.bucket.clone(),
                    message: DisplayErrorContext(&e).to_string(),
                },
            }),
        }
    }

    /// Stores `body` at `key`; with `if_absent`, only when nothing is there yet.
    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        if_absent: bool,
    ) -> Result<Put, Failure> {
        self.put_in(&self.bucket, key, body, content_type, if_absent)
            .await
    }

    /// [`S3Store::put`] into another bucket (A2I writes `output.json` to the flow
    /// definition's output bucket, which need not be the frames bucket).
    pub async fn put_in(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        if_absent: bool,
    ) -> Result<Put, Failure> {
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        if if_absent {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(Put::Created),
            // 412: the object exists. 409: a concurrent conditional write is in progress
            // (S3's ConditionalRequestConflict); retrying then finds it there.
            Err(e) if if_absent && status_of(&e) == Some(412) => Ok(Put::Existed),
            Err(e) if if_absent && status_of(&e) == Some(409) => {
                Err(Failure::Transient(DisplayErrorContext(&e).to_string()))
            }
            Err(e) => Err(classify(e)),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Failure> {
        self.get_in(&self.bucket, key).await
    }

    pub async fn get_in(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, Failure> {
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(classify(e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| Failure::Transient(format!("reading s3://{bucket}/{key}: {e}")))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    pub async fn exists(&self, key: &str) -> Result<bool, Failure> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }

    /// Every key under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, Failure> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(classify)?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            token = out.next_continuation_token().map(str::to_owned);
            if token.is_none() || out.is_truncated() != Some(true) {
                return Ok(keys);
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), Failure> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}
