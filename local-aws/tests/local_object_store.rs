//! The local object store driven by the real `aws-sdk-s3` client over HTTP on
//! 127.0.0.1:0, configured as the relay configures it for local mode: endpoint URL,
//! path-style addressing, static credentials. Objects land as plain files under
//! `<root>/<bucket>/<key>`.

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use local_aws::object_store::{self, DirStore};
use test_support::{http, InProcessServer};

struct Running {
    addr: SocketAddr,
    /// The only key pair the store takes (fresh random, as local mode makes).
    key: local_aws::credentials::Credentials,
    root: tempfile::TempDir,
    server: InProcessServer<std::io::Error>,
}

async fn start() -> Running {
    let root = tempfile::tempdir().unwrap();
    let store = DirStore::open(root.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let key = local_aws::credentials::Credentials::generate();
    let service = object_store::s3_service(store, &key);
    let server =
        InProcessServer::spawn(|shutdown| object_store::serve(listener, service, shutdown));
    Running {
        addr,
        key,
        root,
        server,
    }
}

impl Running {
    async fn stop(self) {
        self.server.stop().await;
    }
}

/// The SDK's client signing with `key_id` and `secret`.
fn client_with(addr: SocketAddr, key_id: &str, secret: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(daemon_support::sdk_http::client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(key_id, secret, None, None, "test"))
        .endpoint_url(format!("http://{addr}"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The SDK's client signing with the store's key pair.
fn client(r: &Running) -> aws_sdk_s3::Client {
    client_with(r.addr, &r.key.access_key_id, &r.key.secret_access_key)
}

/// A plain GET, as a browser or `curl` would fetch a presigned URL.
async fn http_get(url: &str) -> (u16, Vec<u8>) {
    let response = http::get(url).await.unwrap();
    (response.status, response.body)
}

#[tokio::test]
async fn the_s3_sdk_stores_objects_as_plain_files_and_reads_them_back() {
    let running = start().await;
    let s3 = client(&running);
    s3.create_bucket().bucket("frames").send().await.unwrap();
    s3.head_bucket().bucket("frames").send().await.unwrap();
    let jpeg = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/samples/chelsea.jpg"
    ))
    .unwrap();
    let put = s3
        .put_object()
        .bucket("frames")
        .key("events/pi-kitchen/01936f0e.jpg")
        .body(ByteStream::from(jpeg.clone()))
        .send()
        .await
        .unwrap();
    assert!(put.e_tag().is_some());
    assert_eq!(
        std::fs::read(
            running
                .root
                .path()
                .join("frames/events/pi-kitchen/01936f0e.jpg")
        )
        .unwrap(),
        jpeg,
        "the object is a plain file at <root>/<bucket>/<key>"
    );

    let got = s3
        .get_object()
        .bucket("frames")
        .key("events/pi-kitchen/01936f0e.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("image/jpeg"));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        jpeg
    );

    let head = s3
        .head_object()
        .bucket("frames")
        .key("events/pi-kitchen/01936f0e.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(jpeg.len() as i64));
    assert_eq!(head.e_tag(), put.e_tag());

    let ranged = s3
        .get_object()
        .bucket("frames")
        .key("events/pi-kitchen/01936f0e.jpg")
        .range("bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ranged.body.collect().await.unwrap().into_bytes().as_ref(),
        &jpeg[..4]
    );
    running.stop().await;
}

#[tokio::test]
async fn if_none_match_star_creates_once_and_then_answers_precondition_failed() {
    let running = start().await;
    let s3 = client(&running);
    s3.create_bucket().bucket("frames").send().await.unwrap();
    let put = |body: &'static [u8]| {
        s3.put_object()
            .bucket("frames")
            .key("events/e1.jpg")
            .if_none_match("*")
            .body(ByteStream::from_static(body))
            .send()
    };
    put(b"first").await.unwrap();
    let err = put(b"second").await.unwrap_err();
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(412), "{err:?}");
    let got = s3
        .get_object()
        .bucket("frames")
        .key("events/e1.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"first"
    );
    running.stop().await;
}

#[tokio::test]
async fn listing_pages_with_prefix_and_continuation_tokens() {
    let running = start().await;
    let s3 = client(&running);
    s3.create_bucket().bucket("out").send().await.unwrap();
    let keys: Vec<String> = (0..7)
        .map(|i| format!("flow/2026/11/25/09/00/0{i}/loop-{i}/output.json"))
        .collect();
    for k in &keys {
        s3.put_object()
            .bucket("out")
            .key(k)
            .body(ByteStream::from_static(b"{}"))
            .send()
            .await
            .unwrap();
    }
    s3.put_object()
        .bucket("out")
        .key("other/x.json")
        .body(ByteStream::from_static(b"{}"))
        .send()
        .await
        .unwrap();
    let mut listed = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("out")
            .prefix("flow/")
            .max_keys(3)
            .set_continuation_token(token.take())
            .send()
            .await
            .unwrap();
        pages += 1;
        listed.extend(page.contents().iter().map(|o| o.key().unwrap().to_owned()));
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, keys);
    assert_eq!(pages, 3);

    let top = s3
        .list_objects_v2()
        .bucket("out")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = top
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(prefixes, ["flow/", "other/"]);

    s3.delete_object()
        .bucket("out")
        .key("other/x.json")
        .send()
        .await
        .unwrap();
    assert!(!running.root.path().join("out/other").exists());
    let err = s3
        .get_object()
        .bucket("out")
        .key("other/x.json")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_no_such_key());
    running.stop().await;
}

#[tokio::test]
async fn presigned_get_urls_work_over_plain_http_and_tampering_is_refused() {
    let running = start().await;
    let s3 = client(&running);
    s3.create_bucket().bucket("models").send().await.unwrap();
    s3.put_object()
        .bucket("models")
        .key("dogs/v4/model.tflite")
        .body(ByteStream::from_static(b"TFL3 model bytes"))
        .send()
        .await
        .unwrap();
    let presigned = s3
        .get_object()
        .bucket("models")
        .key("dogs/v4/model.tflite")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let url = presigned.uri().to_owned();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let (status, body) = http_get(&url).await;
    assert_eq!(
        (status, body.as_slice()),
        (200, b"TFL3 model bytes".as_slice())
    );

    let tampered = url.replace("model.tflite", "model.tflitX");
    assert_eq!(http_get(&tampered).await.0, 403);
    let unsigned = format!("http://{}/models/dogs/v4/model.tflite", running.addr);
    assert_eq!(http_get(&unsigned).await.0, 403);
    running.stop().await;
}

#[tokio::test]
async fn unsigned_requests_and_other_keys_are_refused_with_s3_errors() {
    let running = start().await;
    let err = client_with(running.addr, &running.key.access_key_id, "not-the-secret")
        .create_bucket()
        .bucket("frames")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err:?}");
    let other = local_aws::credentials::Credentials::generate();
    let err = client_with(running.addr, &other.access_key_id, &other.secret_access_key)
        .create_bucket()
        .bucket("frames")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidAccessKeyId"), "{err:?}");
    let unsigned = http::Request::new("PUT", format!("http://{}/frames", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status, 403);
    assert!(
        unsigned.text().contains("AccessDenied"),
        "{}",
        unsigned.text()
    );
    assert!(!running.root.path().join("frames").exists());
    running.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_match_its_checksum_is_never_stored() {
    let running = start().await;
    let s3 = client(&running);
    s3.create_bucket().bucket("frames").send().await.unwrap();
    let err = s3
        .put_object()
        .bucket("frames")
        .key("bad.jpg")
        .checksum_sha256("n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=") // sha256("test")
        .body(ByteStream::from_static(b"not test"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(400),
        "{err:?}"
    );
    assert!(!running.root.path().join("frames/bad.jpg").exists());
    assert_eq!(
        std::fs::read_dir(running.root.path().join(".tmp"))
            .unwrap()
            .count(),
        0,
        "the rejected upload is removed"
    );
    running.stop().await;
}

#[tokio::test]
async fn other_sites_and_rebound_names_are_refused_and_nothing_is_sniffed() {
    let running = start().await;
    let s3 = client(&running);
    s3.create_bucket().bucket("frames").send().await.unwrap();
    let url = format!("http://{}/frames/x.html", running.addr);
    for (header, value) in [
        ("Host", "rebind.evil.example"),
        ("Origin", "https://evil.example"),
    ] {
        let r = http::Request::new("PUT", &url)
            .header(header, value)
            .body("<script>alert(1)</script>")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status, 403, "{header}: {}", r.text());
        assert!(r.text().contains(value), "{}", r.text());
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    assert!(!running.root.path().join("frames/x.html").exists());
    // An unsigned request from this machine: S3's refusal, with the same headers.
    let head = http::get(&format!("http://{}/", running.addr))
        .await
        .unwrap();
    assert_eq!(head.status, 403);
    assert_eq!(head.header("x-content-type-options"), Some("nosniff"));
    assert!(head
        .header("content-security-policy")
        .is_some_and(|c| c.starts_with("default-src 'none'")));
    running.stop().await;
}
