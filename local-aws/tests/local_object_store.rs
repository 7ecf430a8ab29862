//! The local object store driven by the real `aws-sdk-s3` client over HTTP on
//! 127.0.0.1:0, configured as the relay configures it for local mode: endpoint URL,
//! path-style addressing, static credentials. Objects land as plain files under
//! `<root>/<bucket>/<key>`.

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use local_aws::object_store::{self, DirStore};
use test_support::{http, InProcessServer};

const AK: &str = "test-access-key";
const SK: &str = "test-secret-key";

struct Running {
    addr: SocketAddr,
    root: tempfile::TempDir,
    server: InProcessServer<std::io::Error>,
}

async fn start() -> Running {
    let root = tempfile::tempdir().unwrap();
    let store = DirStore::open(root.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = InProcessServer::spawn(|shutdown| {
        object_store::serve(listener, object_store::s3_service(store, AK, SK), shutdown)
    });
    Running { addr, root, server }
}

impl Running {
    async fn stop(self) {
        self.server.stop().await;
    }
}

fn client(addr: SocketAddr, secret: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(AK, secret, None, None, "test"))
        .endpoint_url(format!("http://{addr}"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A plain GET, as a browser or `curl` would fetch a presigned URL.
async fn http_get(url: &str) -> (u16, Vec<u8>) {
    let response = http::get(url).await.unwrap();
    (response.status, response.body)
}

#[tokio::test]
async fn the_s3_sdk_stores_objects_as_plain_files_and_reads_them_back() {
    let running = start().await;
    let s3 = client(running.addr, SK);
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
    let s3 = client(running.addr, SK);
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
    let s3 = client(running.addr, SK);
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
    let s3 = client(running.addr, SK);
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
async fn requests_signed_with_the_wrong_secret_are_refused() {
    let running = start().await;
    let err = client(running.addr, "not-the-secret")
        .create_bucket()
        .bucket("frames")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert!(!running.root.path().join("frames").exists());
    running.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_match_its_checksum_is_never_stored() {
    let running = start().await;
    let s3 = client(running.addr, SK);
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
