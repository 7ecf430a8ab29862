//! A client for the four Amazon EventBridge operations `cloud-relay setup` needs to
//! route A2I's human loop status changes into the completions queue: `PutRule`,
//! `DescribeRule`, `PutTargets` and `ListTargetsByRule` (AWS, Amazon EventBridge API
//! Reference, <https://docs.aws.amazon.com/eventbridge/latest/APIReference/>).
//!
//! Hand-written for the reason `sagemaker_control` is: the protocol is AWS JSON 1.1
//! (`POST /`, `X-Amz-Target: AWSEvents.<Operation>`, signing name `events`), four
//! calls, over crates the SDK already compiles ([`crate::aws_http`]); a whole SDK
//! crate for setup alone is minutes of compile time on every build. Error responses
//! are the same JSON 1.1 shape, so they become the same typed error
//! ([`SageMakerError`], whose kinds are the protocol's, not SageMaker's).
//!
//! Endpoint: `results.queue.events_endpoint_url`, else `AWS_ENDPOINT_URL_EVENTS`, else
//! `AWS_ENDPOINT_URL`, else `https://events.<region>.amazonaws.com`.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::aws_http::SignedClient;
use crate::config::QueueConfig;
pub use crate::sagemaker_control::SageMakerError as EventBridgeError;

const SERVICE: &str = "events";

#[derive(Clone, Debug)]
pub struct EventBridge {
    http: SignedClient,
}

/// `DescribeRule`'s answer, as far as setup reads it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RuleDescription {
    pub arn: String,
    #[serde(default)]
    pub event_pattern: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

/// One target of a rule.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    pub id: String,
    pub arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRuleOut {
    rule_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TargetsOut {
    #[serde(default)]
    targets: Vec<Target>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutTargetsOut {
    #[serde(default)]
    failed_entry_count: u32,
    #[serde(default)]
    failed_entries: Vec<serde_json::Value>,
}

impl EventBridge {
    /// Credentials from the AWS default chain; endpoint as in the module doc.
    pub async fn connect(queue: &QueueConfig, region: &str) -> Result<Self, EventBridgeError> {
        let shared = crate::aws_http::sdk_config(region).await;
        let endpoint = queue
            .events_endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_EVENTS").ok())
            .or_else(|| shared.endpoint_url().map(str::to_owned))
            .unwrap_or_else(|| crate::aws_http::regional_endpoint("events", region));
        Self::new(&endpoint, region, shared.credentials_provider())
    }

    /// A client for `endpoint` signing with `credentials`.
    pub fn new(
        endpoint: &str,
        region: &str,
        credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    ) -> Result<Self, EventBridgeError> {
        Ok(EventBridge {
            http: SignedClient::new(endpoint, region, SERVICE, credentials)?,
        })
    }

    pub fn endpoint(&self) -> String {
        self.http.endpoint()
    }

    /// `PutRule` on the default event bus, enabled; returns the rule's ARN. It creates
    /// or replaces: setup calls it only for a rule `describe_rule` did not find.
    pub async fn put_rule(
        &self,
        name: &str,
        event_pattern: &str,
        description: &str,
    ) -> Result<String, EventBridgeError> {
        let body = json!({"Name": name, "EventPattern": event_pattern,
            "State": "ENABLED", "Description": description});
        let out: PutRuleOut = self.call("PutRule", &body).await?;
        Ok(out.rule_arn)
    }

    /// `DescribeRule`; a missing rule is [`EventBridgeError::NotFound`].
    pub async fn describe_rule(&self, name: &str) -> Result<RuleDescription, EventBridgeError> {
        self.call("DescribeRule", &json!({ "Name": name })).await
    }

    pub async fn list_targets_by_rule(&self, rule: &str) -> Result<Vec<Target>, EventBridgeError> {
        let out: TargetsOut = self
            .call("ListTargetsByRule", &json!({ "Rule": rule }))
            .await?;
        Ok(out.targets)
    }

    /// `PutTargets` with one target; a failed entry is an error.
    pub async fn put_target(&self, rule: &str, target: &Target) -> Result<(), EventBridgeError> {
        let body = json!({"Rule": rule, "Targets": [{"Id": target.id, "Arn": target.arn}]});
        let out: PutTargetsOut = self.call("PutTargets", &body).await?;
        if out.failed_entry_count > 0 {
            return Err(EventBridgeError::BadResponse(format!(
                "PutTargets: {}",
                serde_json::Value::from(out.failed_entries)
            )));
        }
        Ok(())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        operation: &str,
        body: &serde_json::Value,
    ) -> Result<T, EventBridgeError> {
        crate::sagemaker_control::json_1_1_call(&self.http, "AWSEvents", operation, body).await
    }
}
