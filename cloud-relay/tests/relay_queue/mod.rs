//! The completions queue for the relay's tests: a queue and its dead-letter queue on
//! moto's SQS server (the same process as the bench's S3), the real `aws-sdk-sqs`
//! client, relays configured to consume it, and the test in A2I's and EventBridge's
//! place: for each loop the review service finished, the event body A2I documents
//! (AWS, "Use Amazon CloudWatch Events in Amazon Augmented AI"), put into the queue
//! unchanged, as an EventBridge rule with an SQS target does.
#![allow(dead_code)]

use std::time::Duration;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use local_aws::review_service::store::HumanLoop;
use local_aws::review_service::HumanAnswer;

use crate::relay_common::{wait_relay_ready, Bench, RunningRelay};

pub fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(daemon_support::sdk_http::client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

pub struct Queues {
    pub sqs: aws_sdk_sqs::Client,
    pub endpoint: String,
    pub name: String,
    pub url: String,
    pub dlq_url: String,
}

impl Queues {
    /// `name` and `{name}-dlq` on the bench's moto, with a redrive policy of
    /// `max_receive_count`.
    pub async fn create(bench: &Bench, name: &str, max_receive_count: u32) -> Queues {
        let endpoint = bench.moto.endpoint_url();
        let sqs = sqs_client(&endpoint);
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()
            .remove(&QueueAttributeName::QueueArn)
            .unwrap();
        let policy = serde_json::json!({
            "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count,
        });
        let url = sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        Queues {
            sqs,
            endpoint,
            name: name.to_owned(),
            url,
            dlq_url,
        }
    }

    /// The `[results.queue]` table for this queue, and a sweep that is never due.
    pub fn config_extra(&self, visibility_timeout: &str) -> String {
        format!(
            "\n[results.queue]\nname = \"{}\"\nendpoint_url = \"{}\"\nvisibility_timeout = \"{visibility_timeout}\"\nwait_time = \"1s\"\n",
            self.name, self.endpoint
        )
    }

    /// Starts `cloud-relay run` consuming this queue and waits until it is ready;
    /// its reconciliation sweep is not due within a test.
    pub async fn start_relay(&self, bench: &Bench, id: &str, visibility: &str) -> RunningRelay {
        self.start_relay_sweeping(bench, id, visibility, "1h").await
    }

    /// [`Queues::start_relay`] with a `sweep_interval`.
    pub async fn start_relay_sweeping(
        &self,
        bench: &Bench,
        id: &str,
        visibility: &str,
        sweep: &str,
    ) -> RunningRelay {
        start_relay_with(bench, id, &self.config_extra(visibility), sweep).await
    }
}

/// Starts `cloud-relay run` with `queue_table` (a `[results.queue]` table) and a
/// `sweep_interval`, and waits until it is ready.
pub async fn start_relay_with(
    bench: &Bench,
    id: &str,
    queue_table: &str,
    sweep: &str,
) -> RunningRelay {
    let port = test_support::free_port();
    let config = bench.relay_config(id, None, port, queue_table);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[results]\n",
        &format!("[results]\nsweep_interval = \"{sweep}\"\n"),
    );
    std::fs::write(&config, text).unwrap();
    let log = bench.dir.path().join(format!("{id}.log"));
    let mut process = bench.spawn_relay(&config, &log);
    wait_relay_ready(port, &mut process, &log).await;
    RunningRelay {
        process,
        port,
        config,
        log,
    }
}

impl Queues {
    pub async fn send_body(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// A2I's status-change event for each named loop, in batches of ten.
    pub async fn send_events(&self, bench: &Bench, names: &[String]) {
        for chunk in names.chunks(10) {
            let mut batch = self.sqs.send_message_batch().queue_url(&self.url);
            for (i, name) in chunk.iter().enumerate() {
                let l = bench.review.describe_human_loop(name).unwrap();
                let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(a2i_event(&l))
                    .build()
                    .unwrap();
                batch = batch.entries(entry);
            }
            let out = batch.send().await.unwrap();
            assert!(out.failed.is_empty(), "{:?}", out.failed);
        }
    }

    /// (visible, in flight) messages of the queue.
    pub async fn counts(&self) -> (u64, u64) {
        counts(&self.sqs, &self.url).await
    }

    /// Messages in the dead-letter queue.
    pub async fn dead_letters(&self) -> u64 {
        counts(&self.sqs, &self.dlq_url).await.0
    }

    /// Waits until the queue holds nothing, visible or in flight.
    pub async fn wait_drained(&self, deadline: Duration) {
        test_support::wait_until_async(deadline, "the completions queue drained", || async {
            self.counts().await == (0, 0)
        })
        .await;
    }
}

async fn counts(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let a = out.attributes.unwrap_or_default();
    let n = |k: QueueAttributeName| a.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// The event A2I sends to EventBridge when `l`'s status becomes Completed, Failed
/// or Stopped (the example on the AWS page, filled in from the loop).
pub fn a2i_event(l: &HumanLoop) -> String {
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let status = format!("{:?}", l.status);
    serde_json::json!({
        "version": "0",
        "id": format!("{}-{status}", l.name),
        "detail-type": "SageMaker A2I HumanLoop Status Change",
        "source": "aws.sagemaker",
        "account": "000000000000",
        "time": rfc3339(time::OffsetDateTime::now_utc()),
        "region": "us-east-1",
        "resources": [l.arn],
        "detail": {
            "creationTime": rfc3339(l.creation_time),
            "failureCode": l.failure_code,
            "failureReason": l.failure_reason,
            "flowDefinitionArn": l.flow_definition_arn,
            "humanLoopArn": l.arn,
            "humanLoopName": l.name,
            "humanLoopOutput": {"outputS3Uri": l.output_s3_uri},
            "humanLoopStatus": status,
        }
    })
    .to_string()
}

/// Answers every loop waiting for a reviewer with `label`; returns their names.
pub async fn answer_all(bench: &Bench, label: &str) -> Vec<String> {
    let mut names = Vec::new();
    for l in bench.review.in_progress_loops() {
        let now = protocol::timestamp::now_ms() as i64;
        let answer =
            HumanAnswer::classification("annotatedResult", label, "w1", now - 1000, now, None);
        bench
            .review
            .complete_loop(&l.name, vec![answer])
            .await
            .unwrap();
        names.push(l.name);
    }
    names
}

/// Local mode's completions queue, served in this process with the bench's key pair,
/// and fed by the bench's review service (no test code sends an event).
pub async fn local_queue(bench: &Bench) -> (local_aws::queue::LocalQueue, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let queue = local_aws::queue::LocalQueue::new("completions", &url, 3);
    assert!(local_aws::queue::emit_loop_ends(
        &bench.review,
        queue.clone()
    ));
    let verifier = local_aws::sigv4::Verifier::new(bench.credentials.clone(), "the bench's");
    let q = queue.clone();
    tokio::spawn(async move {
        local_aws::queue::serve(listener, q, verifier, std::future::pending())
            .await
            .unwrap();
    });
    (queue, url)
}
