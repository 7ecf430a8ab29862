//! An `aws-sdk-s3` client for a local S3 endpoint such as [`MotoS3`](crate::MotoS3)
//! (feature `s3`).

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::Client;

/// A client for the S3-compatible server at `endpoint_url`: static credentials
/// `test`/`test`, region `us-east-1`, path-style addressing (no bucket subdomains
/// on 127.0.0.1).
pub fn s3_client(endpoint_url: &str) -> Client {
    s3_client_signing(endpoint_url, "test", "test")
}

/// [`s3_client`] signing with the given key pair (a server that checks signatures,
/// such as local mode's object store).
pub fn s3_client_signing(endpoint_url: &str, access_key_id: &str, secret: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(daemon_support::sdk_http::client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            access_key_id,
            secret,
            None,
            None,
            "test-support",
        ))
        .endpoint_url(endpoint_url)
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

/// Creates bucket `name` (in us-east-1, so without a location constraint).
///
/// # Panics
/// When the bucket cannot be created, with the SDK's error chain.
pub async fn create_bucket(client: &Client, name: &str) {
    if let Err(e) = client.create_bucket().bucket(name).send().await {
        panic!(
            "create bucket {name:?}: {}",
            aws_sdk_s3::error::DisplayErrorContext(e)
        );
    }
}
