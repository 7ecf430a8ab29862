//! The S3 operations local mode uses, over a [`DirStore`], behind `s3s`'s `S3` trait:
//! s3s parses requests, verifies SigV4 (headers and presigned query strings) and
//! aws-chunked bodies, and writes S3's XML; this file maps operations to the store.
//!
//! Served: CreateBucket, HeadBucket, DeleteBucket, ListBuckets, GetBucketLocation,
//! PutObject (with `If-None-Match: *`, Content-MD5 and the x-amz-checksum-* family,
//! all verified *before* the object becomes visible), GetObject (with Range),
//! HeadObject, DeleteObject, ListObjectsV2 (prefix, delimiter, continuation, StartAfter,
//! `encoding-type=url`). Everything else answers NotImplemented.
//!
//! Why not `s3s-fs`: it renames uploads into place without fsync, checks
//! If-None-Match and then writes (two racing creators both win), verifies checksums
//! after the object is already visible, and keeps metadata in side files written
//! separately from the object. Objects here carry no metadata, and a PutObject that
//! sends `x-amz-meta-*` is refused rather than silently losing it.

use futures_util::StreamExt;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

use super::dir::{self, DirStore, ListRequest, PutMode, StoreError};

/// The `s3s` face of a [`DirStore`].
#[derive(Debug, Clone)]
pub struct DirS3 {
    store: DirStore,
}

impl DirS3 {
    pub fn new(store: DirStore) -> Self {
        Self { store }
    }
}

fn s3_err(e: StoreError) -> S3Error {
    let code = match &e {
        StoreError::NoSuchBucket(_) => S3ErrorCode::NoSuchBucket,
        StoreError::NoSuchKey { .. } => S3ErrorCode::NoSuchKey,
        StoreError::InvalidBucketName { .. } => S3ErrorCode::InvalidBucketName,
        StoreError::InvalidKey { .. } | StoreError::KeyConflict { .. } => {
            S3ErrorCode::InvalidArgument
        }
        StoreError::BucketExists(_) => S3ErrorCode::BucketAlreadyOwnedByYou,
        StoreError::BucketNotEmpty(_) => S3ErrorCode::BucketNotEmpty,
        StoreError::AlreadyExists { .. } => S3ErrorCode::PreconditionFailed,
        StoreError::TooLarge => S3ErrorCode::EntityTooLarge,
        StoreError::Io { .. } => {
            tracing::error!(error = %e, "object store I/O failure");
            S3ErrorCode::InternalError
        }
    };
    S3Error::with_message(code, e.to_string())
}

/// Runs blocking file-system work off the async threads.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> S3Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| s3_error!(InternalError, "object store task failed: {e}"))?
        .map_err(s3_err)
}

fn md5_hex(bytes: &[u8]) -> String {
    let mut h = Md5::new();
    h.update(bytes);
    hex::encode(h.finalize())
}

/// `encoding-type=url`: keys as S3 then sends them (everything but unreserved and '/').
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait::async_trait]
impl S3 for DirS3 {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let store = self.store.clone();
        let bucket = req.input.bucket;
        let location = format!("/{bucket}");
        blocking(move || store.create_bucket(&bucket)).await?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(location),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let store = self.store.clone();
        let bucket = req.input.bucket;
        let exists = blocking(move || store.bucket_exists(&bucket)).await?;
        if !exists {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let store = self.store.clone();
        let bucket = req.input.bucket;
        blocking(move || store.delete_bucket(&bucket)).await?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let store = self.store.clone();
        let buckets = blocking(move || store.list_buckets()).await?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(
                buckets
                    .into_iter()
                    .map(|(name, created)| Bucket {
                        name: Some(name),
                        creation_date: Some(Timestamp::from(created)),
                        bucket_region: None,
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let store = self.store.clone();
        let bucket = req.input.bucket;
        if !blocking(move || store.bucket_exists(&bucket)).await? {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let trailers = req.trailing_headers;
        let mut input = req.input;
        if input.metadata.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(s3_error!(
                NotImplemented,
                "the local object store keeps no user metadata (x-amz-meta-*)"
            ));
        }
        if input.key.ends_with('/') {
            return Err(s3_error!(
                NotImplemented,
                "the local object store does not hold directory objects (keys ending in '/')"
            ));
        }
        let mode = match &input.if_none_match {
            Some(c) if c.is_any() => PutMode::IfAbsent,
            Some(_) => {
                return Err(s3_error!(
                    NotImplemented,
                    "If-None-Match is supported only as '*'"
                ))
            }
            None => PutMode::Overwrite,
        };
        if input.if_match.is_some() {
            return Err(s3_error!(NotImplemented, "If-Match is not supported"));
        }
        let Some(mut body) = input.body.take() else {
            return Err(s3_error!(IncompleteBody));
        };
        // Fail fast on bad names before reading the body.
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        {
            let store = self.store.clone();
            let (b, k) = (bucket.clone(), key.clone());
            blocking(move || store.object_path(&b, &k).map(drop)).await?;
        }

        let mut hasher = s3s::checksum::ChecksumHasher::default();
        if input.checksum_crc32.is_some() {
            hasher.crc32 = Some(Default::default());
        }
        if input.checksum_crc32c.is_some() {
            hasher.crc32c = Some(Default::default());
        }
        if input.checksum_sha1.is_some() {
            hasher.sha1 = Some(Default::default());
        }
        if input.checksum_sha256.is_some() {
            hasher.sha256 = Some(Default::default());
        }
        if input.checksum_crc64nvme.is_some() {
            hasher.crc64nvme = Some(Default::default());
        }
        if let Some(alg) = &input.checksum_algorithm {
            match alg.as_str() {
                ChecksumAlgorithm::CRC32 => hasher.crc32 = Some(Default::default()),
                ChecksumAlgorithm::CRC32C => hasher.crc32c = Some(Default::default()),
                ChecksumAlgorithm::SHA1 => hasher.sha1 = Some(Default::default()),
                ChecksumAlgorithm::SHA256 => hasher.sha256 = Some(Default::default()),
                ChecksumAlgorithm::CRC64NVME => hasher.crc64nvme = Some(Default::default()),
                other => {
                    return Err(s3_error!(
                        NotImplemented,
                        "checksum algorithm {other} is not supported"
                    ))
                }
            }
        }

        let store = self.store.clone();
        let mut tmp = blocking(move || store.temp_object()).await?;
        let mut md5 = Md5::new();
        // Chunks are small (tens of KiB); writing them inline keeps ordering simple.
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| s3_error!(IncompleteBody, "reading the body: {e}"))?;
            md5.update(&chunk);
            hasher.update(&chunk);
            tmp = blocking(move || tmp.write(&chunk).map(|()| tmp)).await?;
        }
        if let Some(len) = input.content_length {
            if u64::try_from(len).ok() != Some(tmp.size()) {
                return Err(s3_error!(
                    IncompleteBody,
                    "got {} bytes, Content-Length said {len}",
                    tmp.size()
                ));
            }
        }
        let md5 = md5.finalize();
        if let Some(content_md5) = &input.content_md5 {
            let expected = base64_decode(content_md5)
                .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not base64"))?;
            if expected != md5.as_ref() {
                return Err(s3_error!(BadDigest, "Content-MD5 does not match the body"));
            }
        }
        // Checksums sent as trailers (aws-chunked uploads) are known only now.
        if let Some(trailers) = trailers.and_then(|t| t.take()) {
            let get = |name: &str| -> S3Result<Option<String>> {
                trailers
                    .get(name)
                    .map(|v| {
                        v.to_str()
                            .map(str::to_owned)
                            .map_err(|_| s3_error!(InvalidArgument, "bad trailer {name}"))
                    })
                    .transpose()
            };
            for (name, slot) in [
                ("x-amz-checksum-crc32", &mut input.checksum_crc32),
                ("x-amz-checksum-crc32c", &mut input.checksum_crc32c),
                ("x-amz-checksum-sha1", &mut input.checksum_sha1),
                ("x-amz-checksum-sha256", &mut input.checksum_sha256),
                ("x-amz-checksum-crc64nvme", &mut input.checksum_crc64nvme),
            ] {
                if let Some(v) = get(name)? {
                    *slot = Some(v);
                }
            }
        }
        let sums = hasher.finalize();
        for (name, sent, computed) in [
            ("CRC32", &input.checksum_crc32, &sums.checksum_crc32),
            ("CRC32C", &input.checksum_crc32c, &sums.checksum_crc32c),
            ("SHA1", &input.checksum_sha1, &sums.checksum_sha1),
            ("SHA256", &input.checksum_sha256, &sums.checksum_sha256),
            (
                "CRC64NVME",
                &input.checksum_crc64nvme,
                &sums.checksum_crc64nvme,
            ),
        ] {
            if sent.is_some() && sent != computed {
                return Err(s3_error!(
                    BadDigest,
                    "the {name} checksum you sent does not match the body"
                ));
            }
        }

        let store = self.store.clone();
        blocking(move || store.commit(tmp, &bucket, &key, mode)).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(hex::encode(md5.as_ref()))),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let store = self.store.clone();
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let (bytes, info) = blocking(move || store.get(&bucket, &key)).await?;
        let e_tag = md5_hex(&bytes);
        let len = bytes.len() as u64;
        let (body, content_range) = match input.range {
            None => (bytes::Bytes::from(bytes), None),
            Some(range) => {
                let r = range
                    .check(len)
                    .map_err(|_| s3_error!(InvalidRange, "the range is outside the object"))?;
                let content_range = format!("bytes {}-{}/{len}", r.start, r.end - 1);
                let body = bytes::Bytes::from(bytes).slice(r.start as usize..r.end as usize);
                (body, Some(content_range))
            }
        };
        Ok(S3Response::new(GetObjectOutput {
            content_length: Some(body.len() as i64),
            body: Some(StreamingBlob::from(s3s::Body::from(body))),
            content_range,
            accept_ranges: Some("bytes".into()),
            content_type: Some(dir::content_type_for(&input.key).to_owned()),
            last_modified: Some(Timestamp::from(info.last_modified)),
            e_tag: Some(ETag::Strong(e_tag)),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let store = self.store.clone();
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        // The ETag needs the bytes; local objects are small enough to read.
        let (bytes, info) = blocking(move || store.get(&bucket, &key)).await?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(info.size as i64),
            content_type: Some(dir::content_type_for(&input.key).to_owned()),
            last_modified: Some(Timestamp::from(info.last_modified)),
            e_tag: Some(ETag::Strong(md5_hex(&bytes))),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let store = self.store.clone();
        let (bucket, key) = (req.input.bucket, req.input.key);
        blocking(move || store.delete(&bucket, &key)).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000);
        let after = match (&input.continuation_token, &input.start_after) {
            (Some(t), Some(s)) => Some(t.max(s).clone()),
            (Some(t), None) => Some(t.clone()),
            (None, s) => s.clone(),
        };
        let list = ListRequest {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            after,
            max_keys: max_keys as usize,
        };
        let store = self.store.clone();
        let bucket = input.bucket.clone();
        let page = blocking(move || store.list(&bucket, &list)).await?;
        let url = input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        let contents: Vec<Object> = page
            .objects
            .into_iter()
            .map(|o| Object {
                key: Some(enc(o.key)),
                size: Some(o.size as i64),
                last_modified: Some(Timestamp::from(o.last_modified)),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                ..Default::default()
            })
            .collect();
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(input.prefix.map(enc).unwrap_or_default()),
            delimiter: input.delimiter.map(enc),
            max_keys: Some(max_keys),
            key_count: Some(key_count),
            is_truncated: Some(page.next.is_some()),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next,
            start_after: input.start_after.map(enc),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

/// A `Content-MD5` header's value (RFC 1864: standard, padded base64).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_content_md5_base64() {
        assert_eq!(
            base64_decode("1B2M2Y8AsgTpgAmY7PhCfg==").unwrap(),
            [
                0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
                0x42, 0x7e
            ]
        );
        assert!(base64_decode("not base64!").is_none());
    }

    #[test]
    fn url_encoding_keeps_slashes_and_unreserved_characters() {
        assert_eq!(url_encode("a b/c+d~e.jpg"), "a%20b/c%2Bd~e.jpg");
    }
}
