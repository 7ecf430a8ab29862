//! The review runtime: `aws-sdk-sagemakera2iruntime` against Amazon A2I or an
//! A2I-compatible endpoint (the local review service), with the relay's
//! classification of its errors. `ConflictException` on StartHumanLoop means the loop
//! exists already (the name is derived from the event id), which the relay takes as
//! success: that is what makes a redelivered event start no second loop.

use aws_sdk_sagemakera2iruntime::config::BehaviorVersion;
use aws_sdk_sagemakera2iruntime::error::ProvideErrorMetadata;
use aws_sdk_sagemakera2iruntime::primitives::DateTime;
use aws_sdk_sagemakera2iruntime::types::{HumanLoopInput, HumanLoopStatus, SortOrder};

use super::retry::Failure;
use super::s3::classify;
use crate::config::A2iConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopStart {
    Started,
    Existed,
}

/// A loop's state as the relay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopState {
    InProgress,
    Completed,
    /// Failed or Stopped: no answers will come. `status` is A2I's word for it,
    /// `reason` its FailureReason, if any.
    Ended {
        status: String,
        reason: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopSummary {
    pub name: String,
    pub state: LoopState,
    pub creation_ms: i64,
}

#[derive(Debug, Clone)]
pub struct A2iClient {
    client: aws_sdk_sagemakera2iruntime::Client,
    flow_definition_arn: String,
}

fn state_of(status: Option<&HumanLoopStatus>, reason: Option<&str>) -> LoopState {
    match status {
        Some(HumanLoopStatus::Completed) => LoopState::Completed,
        // Stopping: workers who took the task may still submit it, and then A2I
        // stores their answers (AWS, "Delete a Human Loop"); it is not over yet.
        Some(HumanLoopStatus::InProgress | HumanLoopStatus::Stopping) | None => {
            LoopState::InProgress
        }
        Some(other) => LoopState::Ended {
            status: other.as_str().to_owned(),
            reason: reason.map(str::to_owned),
        },
    }
}

fn millis(t: Option<&DateTime>) -> i64 {
    t.and_then(|t| t.to_millis().ok()).unwrap_or(0)
}

impl A2iClient {
    pub async fn connect(config: &A2iConfig) -> Self {
        let shared = crate::aws_http::sdk_config(&config.region).await;
        let mut builder = aws_sdk_sagemakera2iruntime::config::Builder::from(&shared)
            .behavior_version(BehaviorVersion::latest())
            // Retries are the relay's own (see super::retry).
            .retry_config(aws_sdk_sagemakera2iruntime::config::retry::RetryConfig::disabled());
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        A2iClient {
            client: aws_sdk_sagemakera2iruntime::Client::from_conf(builder.build()),
            flow_definition_arn: config.flow_definition_arn.clone(),
        }
    }

    pub fn flow_definition_arn(&self) -> &str {
        &self.flow_definition_arn
    }

    pub async fn start_loop(&self, name: &str, input_content: &str) -> Result<LoopStart, Failure> {
        let input = HumanLoopInput::builder()
            .input_content(input_content)
            .build();
        let result = self
            .client
            .start_human_loop()
            .human_loop_name(name)
            .flow_definition_arn(&self.flow_definition_arn)
            .human_loop_input(input)
            .send()
            .await;
        match result {
            Ok(_) => Ok(LoopStart::Started),
            Err(e) if e.code() == Some("ConflictException") => Ok(LoopStart::Existed),
            Err(e) => Err(classify(e)),
        }
    }

    /// The loop's state and, once completed, the `s3://` URI of its output.json.
    pub async fn describe(&self, name: &str) -> Result<(LoopSummary, Option<String>), Failure> {
        let out = self
            .client
            .describe_human_loop()
            .human_loop_name(name)
            .send()
            .await
            .map_err(classify)?;
        let summary = LoopSummary {
            name: name.to_owned(),
            state: state_of(out.human_loop_status(), out.failure_reason()),
            creation_ms: millis(out.creation_time()),
        };
        let uri = out
            .human_loop_output()
            .and_then(|o| o.output_s3_uri())
            .map(str::to_owned);
        Ok((summary, uri))
    }

    /// One page of this flow's loops created at or after `after_ms`, oldest first.
    pub async fn list_page(
        &self,
        after_ms: i64,
        token: Option<String>,
    ) -> Result<(Vec<LoopSummary>, Option<String>), Failure> {
        let out = self
            .client
            .list_human_loops()
            .flow_definition_arn(&self.flow_definition_arn)
            .creation_time_after(DateTime::from_millis(after_ms))
            .sort_order(SortOrder::Ascending)
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(classify)?;
        let loops = out
            .human_loop_summaries()
            .iter()
            .filter_map(|s| {
                Some(LoopSummary {
                    name: s.human_loop_name()?.to_owned(),
                    state: state_of(s.human_loop_status(), s.failure_reason()),
                    creation_ms: millis(s.creation_time()),
                })
            })
            .collect();
        Ok((loops, out.next_token().map(str::to_owned)))
    }

    /// Start-up check: the flow definition is known to the runtime.
    pub async fn check_flow(&self) -> Result<(), Failure> {
        self.client
            .list_human_loops()
            .flow_definition_arn(&self.flow_definition_arn)
            .max_results(1)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}
