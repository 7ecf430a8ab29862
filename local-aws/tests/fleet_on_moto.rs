//! `cloud-relay fleet` against the AWS API shapes as a third party implements them:
//! moto's server mode plays S3 and the AWS IoT control plane (CreateJob, DescribeJob,
//! GetJobDocument, ListJobExecutionsForJob), so the cloud path is checked against
//! something other than local mode's own Jobs service. Thing ARNs (`--account-id`),
//! the staged rate and the abort threshold go into the job as IoT Jobs takes them; the
//! job document's presigned URL serves the very package that was published.

use std::path::Path;

use common::{run_bin, signed_model};
use serde_json::Value;
use test_support::http::{get_blocking, Request};
use test_support::{Mosquitto, MotoS3};

mod common;

const ACCOUNT: &str = "123456789012";
const ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// A request to moto's `service` (moto routes by the credential scope of the
/// Authorization header; it checks no signature).
fn call(service: &str, method: &str, url: &str, body: &str) -> Value {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    );
    let r = Request::new(method, url)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body.as_bytes().to_vec())
        .send_blocking()
        .unwrap();
    assert!(
        r.status < 300,
        "{method} {url}: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

#[test]
fn fleet_publish_and_rollback_create_iot_jobs_on_moto_with_a_working_presigned_url() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let moto = MotoS3::builder().start();
    let broker = Mosquitto::builder().start();
    let url = moto.endpoint_url();
    call("s3", "PUT", &format!("{url}/models"), "");
    for thing in ["pi-1", "pi-2"] {
        call("iot", "POST", &format!("{url}/things/{thing}"), "{}");
    }
    run_bin(
        "edge-agent",
        &[
            "model",
            "keygen",
            "--out",
            d.join("fleet").to_str().unwrap(),
        ],
        &ENV,
    );
    let key = d.join("fleet.key");
    let package = signed_model(d, "1.0.1", &key, &d.join("dist"), None);
    // The broker as IoT Core has it: TLS with client certificates.
    let client = broker.certs().client("fleet-admin");
    let config = d.join("relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"[mqtt]
host = "127.0.0.1"
port = {port}
client_id = "fleet-admin"

[mqtt.tls]
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"

[s3]
bucket = "models"
region = "us-east-1"
endpoint_url = "{url}"

[a2i]
endpoint_url = "{url}"

[model]
labels = []
"#,
            port = broker.port(),
            ca = broker.certs().ca_cert.display(),
            cert = client.cert.display(),
            key = client.key.display(),
        ),
    )
    .unwrap();
    let publish = |command: &str, package: &Path, job: &str| {
        run_bin(
            "cloud-relay",
            &[
                "fleet",
                command,
                package.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "--jobs-endpoint-url",
                &url,
                "--devices",
                "pi-1,pi-2",
                "--account-id",
                ACCOUNT,
                "--job-id",
                job,
                "--key",
                d.join("fleet.pub").to_str().unwrap(),
                "--base-rate-per-minute",
                "2",
                "--increment-factor",
                "2",
                "--abort-failed-percent",
                "20",
            ],
            &ENV,
        )
    };
    let out = publish("publish", &package, "rollout-1");
    assert!(out.contains("rollout-1"), "{out}");

    // The job as IoT holds it: both things by ARN, the staged rate, the abort rule.
    let job = &call("iot", "GET", &format!("{url}/jobs/rollout-1"), "")["job"];
    let targets: Vec<&str> = job["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        targets,
        [
            format!("arn:aws:iot:us-east-1:{ACCOUNT}:thing/pi-1"),
            format!("arn:aws:iot:us-east-1:{ACCOUNT}:thing/pi-2")
        ],
        "{job}"
    );
    let rate = &job["jobExecutionsRolloutConfig"]["exponentialRate"];
    assert_eq!(rate["baseRatePerMinute"], 2, "{job}");
    let abort = &job["abortConfig"]["criteriaList"][0];
    assert_eq!(abort["thresholdPercentage"], 20.0, "{job}");

    // The document a device gets: its presigned URL serves the package, byte for byte.
    let document = call(
        "iot",
        "GET",
        &format!("{url}/jobs/rollout-1/job-document"),
        "",
    );
    let document: Value = serde_json::from_str(document["document"].as_str().unwrap()).unwrap();
    let parsed = protocol::jobs::ModelUpdateDocument::from_value(&document).unwrap();
    assert_eq!(parsed.version, "1.0.1");
    let bytes = std::fs::read(&package).unwrap();
    let served = get_blocking(&parsed.package.url).unwrap();
    assert_eq!(served.status, 200, "{}", parsed.package.url);
    assert_eq!(served.body, bytes);
    assert_eq!(parsed.package.size, bytes.len() as u64);

    // `fleet status` lists the executions moto holds (no device has answered).
    let status = run_bin(
        "cloud-relay",
        &[
            "fleet",
            "status",
            "--config",
            config.to_str().unwrap(),
            "--jobs-endpoint-url",
            &url,
            "--job",
            "rollout-1",
            "--listen",
            "300ms",
        ],
        &ENV,
    );
    for thing in ["pi-1", "pi-2"] {
        assert!(
            status
                .lines()
                .any(|l| l.contains(thing) && l.contains("QUEUED")),
            "{status}"
        );
    }

    // A rollback is a job of its own, for the package signed as one.
    let back = signed_model(
        &d.join("old"),
        "1.0.0",
        &key,
        &d.join("dist"),
        Some("1.0.1"),
    );
    publish("rollback", &back, "rollback-1");
    let job = &call("iot", "GET", &format!("{url}/jobs/rollback-1"), "")["job"];
    assert_eq!(job["jobId"], "rollback-1", "{job}");
}
