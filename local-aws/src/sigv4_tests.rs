//! The verifier against the worked example of the AWS IAM User Guide ("Create a signed
//! AWS API request": IAM ListUsers signed by AKIDEXAMPLE on 2015-08-30), and against
//! requests signed by `aws-sigv4`'s own signer (the AWS SDK for Rust's).

use super::*;

const DOC_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const DOC_SIGNATURE: &str = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

fn doc_verifier() -> Arc<Verifier> {
    Verifier::new(
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: DOC_SECRET.into(),
        },
        "the test's",
    )
}

fn doc_time() -> SystemTime {
    SystemTime::from(time::macros::datetime!(2015-08-30 12:36:00 UTC))
}

fn doc_request(signature: &str, date: &str) -> http::request::Parts {
    http::Request::get("/?Action=ListUsers&Version=2010-05-08")
        .header("host", "iam.amazonaws.com")
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header("x-amz-date", date)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/us-east-1/iam/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature={signature}",
                &date[..8]
            ),
        )
        .body(())
        .unwrap()
        .into_parts()
        .0
}

#[test]
fn the_aws_documentation_example_verifies() {
    let parts = doc_request(DOC_SIGNATURE, "20150830T123600Z");
    assert_eq!(doc_verifier().verify(&parts, b"", doc_time()), Ok(()));
}

#[test]
fn a_changed_request_is_a_mismatch_showing_the_canonical_request() {
    let mut parts = doc_request(DOC_SIGNATURE, "20150830T123600Z");
    parts.uri = "/?Action=DeleteUser&Version=2010-05-08".parse().unwrap();
    let e = doc_verifier().verify(&parts, b"", doc_time()).unwrap_err();
    assert_eq!(e.code(), "InvalidSignatureException");
    assert!(
        e.to_string()
            .contains("Action=DeleteUser&Version=2010-05-08"),
        "{e}"
    );
    // A body the signature did not cover.
    let parts = doc_request(DOC_SIGNATURE, "20150830T123600Z");
    let e = doc_verifier().verify(&parts, b"x", doc_time()).unwrap_err();
    assert_eq!(e.code(), "InvalidSignatureException");
}

#[test]
fn another_secret_or_key_id_is_refused() {
    let parts = doc_request(DOC_SIGNATURE, "20150830T123600Z");
    let other_secret = Verifier::new(
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "another".into(),
        },
        "x",
    );
    assert_eq!(
        other_secret
            .verify(&parts, b"", doc_time())
            .unwrap_err()
            .code(),
        "InvalidSignatureException"
    );
    let other_key = Verifier::new(
        Credentials {
            access_key_id: "LOCALAAAAAAAAAAAAAAA".into(),
            secret_access_key: DOC_SECRET.into(),
        },
        "/state/credentials",
    );
    let e = other_key.verify(&parts, b"", doc_time()).unwrap_err();
    assert_eq!(e.code(), "UnrecognizedClientException");
    assert!(e.to_string().contains("\"AKIDEXAMPLE\""), "{e}");
    assert!(e.to_string().contains("/state/credentials"), "{e}");
}

#[test]
fn signatures_older_or_newer_than_fifteen_minutes_are_refused() {
    let parts = doc_request(DOC_SIGNATURE, "20150830T123600Z");
    let later = doc_time() + Duration::from_secs(15 * 60 + 1);
    let e = doc_verifier().verify(&parts, b"", later).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z"
        ),
        "{e}"
    );
    let earlier = doc_time() - Duration::from_secs(15 * 60 + 1);
    let e = doc_verifier().verify(&parts, b"", earlier).unwrap_err();
    assert!(
        e.to_string().starts_with("Signature not yet current"),
        "{e}"
    );
    // Within the window the signature still holds.
    let within = doc_time() + Duration::from_secs(14 * 60);
    assert_eq!(doc_verifier().verify(&parts, b"", within), Ok(()));
}

#[test]
fn missing_or_malformed_signatures_say_what_is_wrong() {
    let mut parts = doc_request(DOC_SIGNATURE, "20150830T123600Z");
    parts.headers.remove("authorization");
    let e = doc_verifier().verify(&parts, b"", doc_time()).unwrap_err();
    assert_eq!(e.code(), "MissingAuthenticationTokenException");

    for (header, says) in [
        ("Bearer abc", "must start with AWS4-HMAC-SHA256"),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, Signature=ab",
            "'SignedHeaders'",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830, SignedHeaders=host, Signature=ab",
            "KEY/YYYYMMDD/REGION/SERVICE/aws4_request",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=x-amz-date, Signature=ab",
            "must include host",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;x-custom, Signature=ab",
            "\"x-custom\" is listed in SignedHeaders but not sent",
        ),
    ] {
        parts.headers.insert("authorization", header.parse().unwrap());
        let e = doc_verifier().verify(&parts, b"", doc_time()).unwrap_err();
        assert_eq!(e.code(), "IncompleteSignatureException", "{header}");
        assert!(e.to_string().contains(says), "{header}: {e}");
    }
    let presigned: http::request::Parts = http::Request::get("/x?X-Amz-Signature=ab")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let e = doc_verifier()
        .verify(&presigned, b"", doc_time())
        .unwrap_err();
    assert!(e.to_string().contains("presigned"), "{e}");
}

#[test]
fn the_canonical_uri_and_query_follow_the_non_s3_rules() {
    // The path as sent, encoded once more; the query decoded, re-encoded, sorted.
    assert_eq!(canonical_uri("/human-loops/a%3Ab"), "/human-loops/a%253Ab");
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_query("b=2&a=x%3Ay&a=1&c"), "a=1&a=x%3Ay&b=2&c=");
    assert_eq!(canonical_query("t=a b"), "t=a%20b");
}
