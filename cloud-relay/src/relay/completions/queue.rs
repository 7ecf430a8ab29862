//! The completions queue: `aws-sdk-sqs` against Amazon SQS or an SQS-compatible
//! endpoint, reduced to the four calls the consumer makes, each classified into the
//! relay's [`Failure`]. Standard queues deliver at least once and hide a received
//! message for the visibility timeout, after which any consumer may receive it again
//! (AWS, "Amazon SQS visibility timeout",
//! <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html>);
//! a message is gone only when a consumer deletes it. Long polling (`WaitTimeSeconds`
//! up to 20) keeps an idle relay to about three receives a minute (AWS, "Amazon SQS
//! short and long polling").

use std::time::Duration;

use aws_sdk_sqs::config::BehaviorVersion;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

use crate::config::QueueConfig;
use crate::relay::retry::Failure;
use crate::relay::s3::classify;

/// SQS's most messages per ReceiveMessage.
pub const MAX_BATCH: i32 = 10;

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first receive.
    pub receive_count: u32,
}

#[derive(Debug, Clone)]
pub struct CompletionQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    wait: Duration,
    visibility: Duration,
}

/// The SQS client for `config` in `region` (credentials from the default chain).
pub async fn sqs_client(config: &QueueConfig, region: &str) -> aws_sdk_sqs::Client {
    let shared = crate::aws_http::sdk_config(region).await;
    let mut builder = aws_sdk_sqs::config::Builder::from(&shared)
        .behavior_version(BehaviorVersion::latest())
        // Retries are the consumer's own: a failed receive is tried on the next turn.
        .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled());
    if let Some(url) = &config.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_sqs::Client::from_conf(builder.build())
}

impl CompletionQueue {
    /// Resolves the queue's URL from its name (GetQueueUrl): the start-up check that
    /// the queue exists.
    pub async fn connect(config: &QueueConfig, region: &str) -> Result<Self, Failure> {
        let client = sqs_client(config, region).await;
        let url = client
            .get_queue_url()
            .queue_name(&config.name)
            .send()
            .await
            .map_err(classify)?
            .queue_url
            .ok_or_else(|| Failure::Permanent(format!("queue {}: no URL", config.name)))?;
        Ok(CompletionQueue {
            client,
            url,
            wait: config.wait_time,
            visibility: config.visibility_timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `maxReceiveCount` of the queue's redrive policy; `None` without one.
    pub async fn max_receive_count(&self) -> Result<Option<u32>, Failure> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(classify)?;
        let policy = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy));
        Ok(policy.and_then(|p| parse_max_receive_count(p)))
    }

    /// Up to `max` messages, waiting up to the configured wait time for the first.
    pub async fn receive(&self, max: i32) -> Result<Vec<Received>, Failure> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH))
            .wait_time_seconds(self.wait.as_secs().min(20) as i32)
            .visibility_timeout(self.visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(classify)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Received {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count: count,
                })
            })
            .collect())
    }

    /// The message is dealt with: no consumer receives it again.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), Failure> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Makes the message visible again after `after` (0: at once), so a poison message
    /// reaches its `maxReceiveCount` without waiting out the full timeout each time.
    pub async fn release(&self, receipt_handle: &str, after: Duration) -> Result<(), Failure> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(after.as_secs() as i32)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// `maxReceiveCount` of a RedrivePolicy (`{"deadLetterTargetArn": "...",
/// "maxReceiveCount": 5}`; some servers write the number as a string).
pub fn parse_max_receive_count(policy: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(policy).ok()?;
    match &v["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_receive_count_is_read_as_a_number_or_a_string() {
        let arn = "arn:aws:sqs:us-east-1:000000000000:q-dlq";
        assert_eq!(
            parse_max_receive_count(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":5}}"#
            )),
            Some(5)
        );
        assert_eq!(
            parse_max_receive_count(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"3"}}"#
            )),
            Some(3)
        );
        assert_eq!(parse_max_receive_count("{}"), None);
    }
}
