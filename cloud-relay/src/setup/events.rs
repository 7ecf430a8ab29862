//! `cloud-relay setup`, completion events: the SQS queue `[results.queue]` names, its
//! dead-letter queue, the queue policy that lets EventBridge send to it, and the
//! EventBridge rule (with the queue as its target) that matches A2I's human loop
//! status changes of the relay's flow definition. Idempotent like the rest of setup:
//! each is looked up first and created only when missing; one that exists and
//! differs from the plan is reported and left as it is. [`print`] writes the same
//! documents for operators who provision with their own tools.
//!
//! The documents follow AWS's pages: the event (AWS, "Use Amazon CloudWatch Events in
//! Amazon Augmented AI"), the queue policy for an EventBridge target (AWS, "Using
//! resource-based policies for Amazon EventBridge", Amazon SQS permissions), and the
//! redrive policy (AWS, "Using dead-letter queues in Amazon SQS").

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};

use super::Found;
use crate::config::{Config, QueueConfig};
use crate::eventbridge::{EventBridge, EventBridgeError, Target};
use crate::relay::completions::event::{DETAIL_TYPE, SOURCE};
use crate::relay::completions::queue::parse_max_receive_count;

/// The rule's target id.
pub const TARGET_ID: &str = "edge-a2i-completions";
/// How long the dead-letter queue keeps a message: SQS's maximum, 14 days.
const DLQ_RETENTION_SECS: u32 = 14 * 24 * 3600;

/// What setup makes for completion events, resolved from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsPlan {
    pub queue_name: String,
    pub dead_letter_queue_name: String,
    pub rule_name: String,
    pub flow_definition_arn: String,
    pub visibility_timeout_secs: u64,
    pub max_receive_count: u32,
}

impl EventsPlan {
    pub fn new(queue: &QueueConfig, flow_definition_arn: &str) -> Self {
        EventsPlan {
            queue_name: queue.name.clone(),
            dead_letter_queue_name: queue.dead_letter_queue_name(),
            rule_name: queue.rule_name().to_owned(),
            flow_definition_arn: flow_definition_arn.to_owned(),
            visibility_timeout_secs: queue.visibility_timeout.as_secs(),
            max_receive_count: queue.max_receive_count,
        }
    }

    /// A2I's status changes of this flow's loops that end them.
    pub fn event_pattern(&self) -> Value {
        json!({
            "source": [SOURCE],
            "detail-type": [DETAIL_TYPE],
            "detail": {
                "flowDefinitionArn": [self.flow_definition_arn],
                "humanLoopStatus": ["Completed", "Failed", "Stopped"],
            }
        })
    }

    /// Lets the rule, and only it, send to the queue.
    pub fn queue_policy(&self, queue_arn: &str, rule_arn: &str) -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "completion-events-from-eventbridge",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }]
        })
    }

    pub fn redrive_policy(&self, dead_letter_queue_arn: &str) -> Value {
        json!({"deadLetterTargetArn": dead_letter_queue_arn,
            "maxReceiveCount": self.max_receive_count})
    }

    /// The queue's attributes as setup creates them.
    pub fn queue_attributes(
        &self,
        queue_arn: &str,
        rule_arn: &str,
        dead_letter_queue_arn: &str,
    ) -> Vec<(QueueAttributeName, String)> {
        vec![
            (
                QueueAttributeName::VisibilityTimeout,
                self.visibility_timeout_secs.to_string(),
            ),
            (
                QueueAttributeName::ReceiveMessageWaitTimeSeconds,
                "20".to_owned(),
            ),
            (
                QueueAttributeName::RedrivePolicy,
                self.redrive_policy(dead_letter_queue_arn).to_string(),
            ),
            (
                QueueAttributeName::Policy,
                self.queue_policy(queue_arn, rule_arn).to_string(),
            ),
        ]
    }
}

/// How an existing queue differs from the plan (empty: it matches). Policies are
/// compared as JSON documents, the redrive policy by its two fields.
pub fn queue_differences(
    plan: &EventsPlan,
    existing: &HashMap<QueueAttributeName, String>,
    queue_arn: &str,
    rule_arn: &str,
    dead_letter_queue_arn: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let get = |k: &QueueAttributeName| existing.get(k).map(String::as_str);
    let redrive =
        get(&QueueAttributeName::RedrivePolicy).and_then(|p| serde_json::from_str::<Value>(p).ok());
    let target = redrive
        .as_ref()
        .and_then(|r| r["deadLetterTargetArn"].as_str().map(str::to_owned));
    let max = get(&QueueAttributeName::RedrivePolicy).and_then(parse_max_receive_count);
    if target.as_deref() != Some(dead_letter_queue_arn) || max != Some(plan.max_receive_count) {
        out.push(format!(
            "redrive policy is {:?}, not {} receives into {dead_letter_queue_arn}",
            get(&QueueAttributeName::RedrivePolicy).unwrap_or("(none)"),
            plan.max_receive_count
        ));
    }
    let policy =
        get(&QueueAttributeName::Policy).and_then(|p| serde_json::from_str::<Value>(p).ok());
    if policy.as_ref() != Some(&plan.queue_policy(queue_arn, rule_arn)) {
        out.push(format!(
            "queue policy is {}, not the one that lets rule {rule_arn} send to it",
            get(&QueueAttributeName::Policy).unwrap_or("(none)")
        ));
    }
    let visibility =
        get(&QueueAttributeName::VisibilityTimeout).and_then(|v| v.parse::<u64>().ok());
    if visibility != Some(plan.visibility_timeout_secs) {
        out.push(format!(
            "visibility timeout is {visibility:?} s, the config says {} s (the relay asks for its own on each receive)",
            plan.visibility_timeout_secs
        ));
    }
    out
}

/// What setup found or did for each resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsOutcome {
    pub queue_url: String,
    pub queue: Found,
    pub dead_letter_queue: Found,
    pub rule_arn: String,
    pub rule: Found,
    pub target: Found,
}

#[derive(Debug, thiserror::Error)]
pub enum EventsSetupError {
    #[error("SQS {operation} {queue:?}: {message}")]
    Sqs {
        operation: &'static str,
        queue: String,
        message: String,
    },
    #[error("EventBridge {operation} {rule:?}: {source}")]
    EventBridge {
        operation: &'static str,
        rule: String,
        #[source]
        source: EventBridgeError,
    },
}

fn sqs_error<E>(operation: &'static str, queue: &str) -> impl FnOnce(E) -> EventsSetupError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let queue = queue.to_owned();
    move |e| EventsSetupError::Sqs {
        operation,
        queue,
        message: daemon_support::report(&e),
    }
}

fn eb_error(
    operation: &'static str,
    rule: &str,
) -> impl FnOnce(EventBridgeError) -> EventsSetupError {
    let rule = rule.to_owned();
    move |source| EventsSetupError::EventBridge {
        operation,
        rule,
        source,
    }
}

/// The URL of queue `name`, or `None` when SQS says it does not exist.
async fn queue_url(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
) -> Result<Option<String>, EventsSetupError> {
    match sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_queue_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(sqs_error("GetQueueUrl", name)(e)),
    }
}

async fn attributes(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    url: &str,
) -> Result<HashMap<QueueAttributeName, String>, EventsSetupError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(sqs_error("GetQueueAttributes", name))?;
    Ok(out.attributes.unwrap_or_default())
}

fn arn_of(
    name: &str,
    attrs: &HashMap<QueueAttributeName, String>,
) -> Result<String, EventsSetupError> {
    attrs
        .get(&QueueAttributeName::QueueArn)
        .cloned()
        .ok_or_else(|| EventsSetupError::Sqs {
            operation: "GetQueueAttributes",
            queue: name.to_owned(),
            message: "no QueueArn in the answer".into(),
        })
}

/// Creates what is missing, in dependency order: the dead-letter queue, the rule, the
/// queue (its policy names the rule, its redrive policy the dead-letter queue), the
/// rule's target. `progress` gets one line per resource.
pub async fn ensure(
    sqs: &aws_sdk_sqs::Client,
    events: &EventBridge,
    plan: &EventsPlan,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<EventsOutcome, EventsSetupError> {
    let dlq_name = &plan.dead_letter_queue_name;
    let (dlq_url, dead_letter_queue) = match queue_url(sqs, dlq_name).await? {
        Some(url) => (url, Found::Existed),
        None => {
            let out = sqs
                .create_queue()
                .queue_name(dlq_name)
                .attributes(
                    QueueAttributeName::MessageRetentionPeriod,
                    DLQ_RETENTION_SECS.to_string(),
                )
                .send()
                .await
                .map_err(sqs_error("CreateQueue", dlq_name))?;
            (out.queue_url.unwrap_or_default(), Found::Created)
        }
    };
    progress(&format!(
        "dead-letter queue {dlq_name:?}: {}",
        said(&dead_letter_queue)
    ));
    let dlq_arn = arn_of(dlq_name, &attributes(sqs, dlq_name, &dlq_url).await?)?;
    // Same account and region as the dead-letter queue.
    let queue_arn = match dlq_arn.rsplit_once(':') {
        Some((prefix, _)) => format!("{prefix}:{}", plan.queue_name),
        None => dlq_arn.clone(),
    };

    let pattern = plan.event_pattern();
    let rule = &plan.rule_name;
    let (rule_arn, rule_found) = match events.describe_rule(rule).await {
        Ok(existing) => {
            let same = existing
                .event_pattern
                .as_deref()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
                .is_some_and(|p| p == pattern);
            let found = if same {
                Found::Existed
            } else {
                Found::ExistedDiffering(vec![format!(
                    "event pattern is {}, not {pattern}",
                    existing.event_pattern.as_deref().unwrap_or("(none)")
                )])
            };
            (existing.arn, found)
        }
        Err(EventBridgeError::NotFound { .. }) => {
            let arn = events
                .put_rule(
                    rule,
                    &pattern.to_string(),
                    "A2I human loops of the edge-a2i flow that completed, failed or stopped",
                )
                .await
                .map_err(eb_error("PutRule", rule))?;
            (arn, Found::Created)
        }
        Err(e) => return Err(eb_error("DescribeRule", rule)(e)),
    };
    progress(&format!("EventBridge rule {rule:?}: {}", said(&rule_found)));

    let name = &plan.queue_name;
    let (queue_url, queue) = match queue_url(sqs, name).await? {
        Some(url) => {
            let attrs = attributes(sqs, name, &url).await?;
            let queue_arn = arn_of(name, &attrs)?;
            let diffs = queue_differences(plan, &attrs, &queue_arn, &rule_arn, &dlq_arn);
            let found = if diffs.is_empty() {
                Found::Existed
            } else {
                Found::ExistedDiffering(diffs)
            };
            (url, found)
        }
        None => {
            let mut create = sqs.create_queue().queue_name(name);
            for (k, v) in plan.queue_attributes(&queue_arn, &rule_arn, &dlq_arn) {
                create = create.attributes(k, v);
            }
            let out = create
                .send()
                .await
                .map_err(sqs_error("CreateQueue", name))?;
            (out.queue_url.unwrap_or_default(), Found::Created)
        }
    };
    progress(&format!("queue {name:?}: {}", said(&queue)));
    let queue_arn = arn_of(name, &attributes(sqs, name, &queue_url).await?)?;

    let targets = events
        .list_targets_by_rule(rule)
        .await
        .map_err(eb_error("ListTargetsByRule", rule))?;
    let target = match targets.iter().find(|t| t.id == TARGET_ID) {
        Some(t) if t.arn == queue_arn => Found::Existed,
        Some(t) => Found::ExistedDiffering(vec![format!(
            "target {TARGET_ID:?} sends to {}, not {queue_arn}",
            t.arn
        )]),
        None => {
            let t = Target {
                id: TARGET_ID.to_owned(),
                arn: queue_arn.clone(),
            };
            events
                .put_target(rule, &t)
                .await
                .map_err(eb_error("PutTargets", rule))?;
            Found::Created
        }
    };
    progress(&format!(
        "rule target {TARGET_ID:?} -> {queue_arn}: {}",
        said(&target)
    ));
    Ok(EventsOutcome {
        queue_url,
        queue,
        dead_letter_queue,
        rule_arn,
        rule: rule_found,
        target,
    })
}

fn said(found: &Found) -> String {
    match found {
        Found::Created => "created".to_owned(),
        Found::Existed => "exists, as configured".to_owned(),
        Found::ExistedDiffering(d) => {
            format!("exists and differs (left as it is): {}", d.join("; "))
        }
    }
}

/// The documents to provision by other means, for `setup --print-events`. The
/// account and region come from the flow definition's ARN where it has them.
pub fn print(config: &Config) -> Option<Vec<String>> {
    let queue = config.results.queue.as_ref()?;
    let flow = &config.a2i.flow_definition_arn;
    let mut parts = flow.split(':');
    let (region, account) = match (parts.nth(3), parts.next()) {
        (Some(r), Some(a)) if !r.is_empty() && !a.is_empty() => (r.to_owned(), a.to_owned()),
        _ => (config.a2i.region.clone(), "ACCOUNT_ID".to_owned()),
    };
    let flow = if flow.is_empty() {
        format!("arn:aws:sagemaker:{region}:{account}:flow-definition/FLOW_DEFINITION_NAME")
    } else {
        flow.clone()
    };
    let plan = EventsPlan::new(queue, &flow);
    let arn =
        |service: &str, resource: &str| format!("arn:aws:{service}:{region}:{account}:{resource}");
    let queue_arn = arn("sqs", &plan.queue_name);
    let dlq_arn = arn("sqs", &plan.dead_letter_queue_name);
    let rule_arn = arn("events", &format!("rule/{}", plan.rule_name));
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("JSON values print");
    let mut out = vec![
        format!("# 1. SQS queue {:?} (the dead-letter queue), MessageRetentionPeriod {DLQ_RETENTION_SECS}", plan.dead_letter_queue_name),
        format!("# 2. EventBridge rule {:?} on the default bus, ENABLED, event pattern:", plan.rule_name),
        pretty(&plan.event_pattern()),
        format!("# 3. SQS queue {:?} with these attributes:", plan.queue_name),
    ];
    for (k, v) in plan.queue_attributes(&queue_arn, &rule_arn, &dlq_arn) {
        let v = serde_json::from_str::<Value>(&v)
            .ok()
            .filter(Value::is_object)
            .map(|v| pretty(&v))
            .unwrap_or(v);
        out.push(format!("{}: {v}", k.as_str()));
    }
    out.push(format!(
        "# 4. Target {TARGET_ID:?} of rule {:?}: {queue_arn} (no input transformer: the event as it is)",
        plan.rule_name
    ));
    Some(out)
}

#[cfg(test)]
mod tests;
