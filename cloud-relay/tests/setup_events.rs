//! `cloud-relay setup`'s completion-event resources against moto's server (SQS and
//! EventBridge, one process) with the real `aws-sdk-sqs` client and the relay's
//! EventBridge client: the first run creates the dead-letter queue, the rule, the
//! queue (redrive and queue policy) and the rule's target; a second run creates
//! nothing; a queue changed behind setup's back is reported, not overwritten. Then an
//! A2I event put on the bus reaches the queue through the rule, and the relay reads
//! the message as the loop's status change. `--print-events` prints the same plan
//! without any server.

use std::process::Command;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use cloud_relay::aws_http::SignedClient;
use cloud_relay::config::QueueConfig;
use cloud_relay::eventbridge::EventBridge;
use cloud_relay::relay::a2i::LoopState;
use cloud_relay::relay::completions::event::StatusChange;
use cloud_relay::setup::events::{ensure, EventsOutcome, EventsPlan};
use cloud_relay::setup::Found;
use test_support::MotoS3;

const FLOW: &str = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/dogs";
const LOOP: &str = "ea2i-01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f";

fn credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "test")
}

fn sqs(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(daemon_support::sdk_http::client())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials())
            .endpoint_url(endpoint)
            .build(),
    )
}

fn queue_config(endpoint: &str) -> QueueConfig {
    QueueConfig {
        name: "completions".into(),
        endpoint_url: Some(endpoint.into()),
        events_endpoint_url: Some(endpoint.into()),
        visibility_timeout: Duration::from_secs(60),
        wait_time: Duration::from_secs(1),
        max_receive_count: 4,
    }
}

async fn run_setup(
    sqs: &aws_sdk_sqs::Client,
    bridge: &EventBridge,
    plan: &EventsPlan,
) -> (EventsOutcome, Vec<String>) {
    let mut lines = Vec::new();
    let outcome = ensure(sqs, bridge, plan, &mut |l: &str| lines.push(l.to_owned()))
        .await
        .unwrap();
    (outcome, lines)
}

/// `PutEvents` as A2I's service would: the event of a completed loop of `FLOW`.
async fn put_a2i_event(endpoint: &str, status: &str) {
    let client = SignedClient::new(
        endpoint,
        "us-east-1",
        "events",
        Some(SharedCredentialsProvider::new(credentials())),
    )
    .unwrap();
    let detail = serde_json::json!({
        "creationTime": "2026-11-25T09:00:00.000Z", "failureCode": null, "failureReason": null,
        "flowDefinitionArn": FLOW,
        "humanLoopArn": format!("arn:aws:sagemaker:us-east-1:123456789012:human-loop/{LOOP}"),
        "humanLoopName": LOOP,
        "humanLoopOutput": {"outputS3Uri": format!("s3://out/dogs/2026/11/25/09/00/00/{LOOP}/output.json")},
        "humanLoopStatus": status,
    });
    let body = serde_json::json!({"Entries": [{
        "Source": "aws.sagemaker", "DetailType": "SageMaker A2I HumanLoop Status Change",
        "Detail": detail.to_string(),
        "Resources": [format!("arn:aws:sagemaker:us-east-1:123456789012:human-loop/{LOOP}")],
    }]});
    let (parts, bytes) = client
        .send(
            http::Method::POST,
            "/",
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", "AWSEvents.PutEvents"),
            ],
            body.to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert!(
        parts.status.is_success(),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let out: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(out["FailedEntryCount"], 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_creates_the_queues_rule_and_target_once_and_events_flow_through_them() {
    let moto = MotoS3::builder().start();
    let endpoint = moto.endpoint_url();
    let sqs = sqs(&endpoint);
    let queue = queue_config(&endpoint);
    let bridge = EventBridge::new(
        &endpoint,
        "us-east-1",
        Some(SharedCredentialsProvider::new(credentials())),
    )
    .unwrap();
    let plan = EventsPlan::new(&queue, FLOW);

    let (first, lines) = run_setup(&sqs, &bridge, &plan).await;
    for found in [
        &first.dead_letter_queue,
        &first.rule,
        &first.queue,
        &first.target,
    ] {
        assert_eq!(found, &Found::Created, "{lines:?}");
    }
    assert_eq!(lines.len(), 4, "{lines:?}");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&first.queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let redrive: serde_json::Value =
        serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert!(
        redrive["deadLetterTargetArn"]
            .as_str()
            .unwrap()
            .ends_with(":completions-dlq"),
        "{redrive}"
    );
    let policy: serde_json::Value =
        serde_json::from_str(&attrs[&QueueAttributeName::Policy]).unwrap();
    assert_eq!(
        policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"],
        first.rule_arn.as_str()
    );

    let (second, lines) = run_setup(&sqs, &bridge, &plan).await;
    for found in [
        &second.dead_letter_queue,
        &second.rule,
        &second.queue,
        &second.target,
    ] {
        assert_eq!(found, &Found::Existed, "{lines:?}");
    }
    assert_eq!(
        (&second.queue_url, &second.rule_arn),
        (&first.queue_url, &first.rule_arn)
    );

    // The rule routes A2I's event, unchanged, into the queue; the relay reads it.
    put_a2i_event(&endpoint, "Completed").await;
    let message = test_support::wait_for_async(
        Duration::from_secs(20),
        "the event in the queue",
        || async {
            let out = sqs
                .receive_message()
                .queue_url(&first.queue_url)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            out.messages.unwrap_or_default().into_iter().next()
        },
    )
    .await;
    let change = StatusChange::parse(message.body().unwrap()).unwrap();
    assert_eq!(change.flow_definition_arn, FLOW);
    assert_eq!(change.loop_summary.name, LOOP);
    assert_eq!(change.loop_summary.state, LoopState::Completed);

    // Changed behind setup's back: reported, left as it is.
    sqs.set_queue_attributes()
        .queue_url(&first.queue_url)
        .attributes(QueueAttributeName::VisibilityTimeout, "7")
        .send()
        .await
        .unwrap();
    let (third, lines) = run_setup(&sqs, &bridge, &plan).await;
    let Found::ExistedDiffering(d) = &third.queue else {
        panic!("{lines:?}")
    };
    // (moto's SetQueueAttributes also drops the queue policy: reported as well.)
    assert!(
        d.iter()
            .any(|d| d.contains("visibility timeout is Some(7) s")),
        "{d:?}"
    );
    let visibility = sqs
        .get_queue_attributes()
        .queue_url(&first.queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::VisibilityTimeout);
    assert_eq!(visibility.as_deref(), Some("7"), "left as it was");
}

#[test]
fn print_events_prints_the_plan_without_any_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"[mqtt]
host = "127.0.0.1"
client_id = "relay-1"
[s3]
bucket = "frames"
[a2i]
flow_definition_arn = "{FLOW}"
[model]
labels = ["beagle", "pug"]
[results.queue]
name = "completions"
max_receive_count = 4
"#
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cloud-relay"))
        .args(["setup", "--print-events", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "\"SageMaker A2I HumanLoop Status Change\"",
        FLOW,
        "arn:aws:sqs:us-east-1:123456789012:completions-dlq",
        "\"aws:SourceArn\": \"arn:aws:events:us-east-1:123456789012:rule/completions\"",
        "\"maxReceiveCount\": 4",
        "VisibilityTimeout: 60",
    ] {
        assert!(stdout.contains(needle), "{needle} missing:\n{stdout}");
    }
}
