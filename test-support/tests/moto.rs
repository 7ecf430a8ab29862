//! The moto S3 helper against the real moto server.
#![cfg(feature = "s3")]

use test_support::MotoS3;

#[test]
fn moto_answers_http_and_restart_keeps_the_endpoint() {
    let mut moto = MotoS3::builder().start();
    let endpoint = moto.endpoint_url();
    assert!(moto.is_running());

    moto.kill();
    assert!(!moto.is_running());
    moto.start();

    assert_eq!(moto.endpoint_url(), endpoint);
    assert!(moto.is_running());
}

mod s3 {
    use aws_sdk_s3::primitives::ByteStream;
    use test_support::{create_bucket, s3_client, MotoS3};

    #[tokio::test]
    async fn put_then_get_round_trips_an_object() {
        let moto = MotoS3::builder().start();
        let s3 = s3_client(&moto.endpoint_url());
        create_bucket(&s3, "frames").await;

        s3.put_object()
            .bucket("frames")
            .key("thing-1/event-1.jpg")
            .body(ByteStream::from_static(b"\xff\xd8 not really a jpeg"))
            .send()
            .await
            .expect("put_object");
        let object = s3
            .get_object()
            .bucket("frames")
            .key("thing-1/event-1.jpg")
            .send()
            .await
            .expect("get_object");
        let body = object.body.collect().await.unwrap().into_bytes();
        assert_eq!(&body[..], b"\xff\xd8 not really a jpeg");
    }

    #[tokio::test]
    async fn restart_loses_every_bucket_because_moto_keeps_state_in_memory() {
        let mut moto = MotoS3::builder().start();
        let s3 = s3_client(&moto.endpoint_url());
        create_bucket(&s3, "frames").await;

        moto.stop();
        let during_outage = s3.list_buckets().send().await;
        assert!(during_outage.is_err(), "S3 answered while stopped");
        moto.start();

        let buckets = s3.list_buckets().send().await.expect("list_buckets");
        assert!(buckets.buckets().is_empty(), "{buckets:?}");
    }
}
