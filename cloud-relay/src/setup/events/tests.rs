use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

use super::*;

const FLOW: &str = "arn:aws:sagemaker:eu-west-1:111122223333:flow-definition/dogs";
const QUEUE_ARN: &str = "arn:aws:sqs:eu-west-1:111122223333:completions";
const DLQ_ARN: &str = "arn:aws:sqs:eu-west-1:111122223333:completions-dlq";
const RULE_ARN: &str = "arn:aws:events:eu-west-1:111122223333:rule/completions";

fn queue() -> QueueConfig {
    QueueConfig {
        name: "completions".into(),
        endpoint_url: None,
        events_endpoint_url: None,
        visibility_timeout: Duration::from_secs(60),
        wait_time: Duration::from_secs(20),
        max_receive_count: 5,
    }
}

#[test]
fn the_rule_matches_the_ends_of_this_flows_loops_as_a2i_describes_the_event() {
    let plan = EventsPlan::new(&queue(), FLOW);
    assert_eq!(
        plan.event_pattern(),
        json!({
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker A2I HumanLoop Status Change"],
            "detail": {"flowDefinitionArn": [FLOW],
                "humanLoopStatus": ["Completed", "Failed", "Stopped"]},
        })
    );
    assert_eq!(
        (
            plan.dead_letter_queue_name.as_str(),
            plan.rule_name.as_str()
        ),
        ("completions-dlq", "completions")
    );
}

#[test]
fn only_the_rule_may_send_to_the_queue() {
    let plan = EventsPlan::new(&queue(), FLOW);
    let p = plan.queue_policy(QUEUE_ARN, RULE_ARN);
    let s = &p["Statement"][0];
    assert_eq!(s["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(s["Action"], "sqs:SendMessage");
    assert_eq!(s["Resource"], QUEUE_ARN);
    assert_eq!(s["Condition"]["ArnEquals"]["aws:SourceArn"], RULE_ARN);
}

fn as_created(plan: &EventsPlan) -> HashMap<QueueAttributeName, String> {
    plan.queue_attributes(QUEUE_ARN, RULE_ARN, DLQ_ARN)
        .into_iter()
        .collect()
}

#[test]
fn a_queue_as_setup_creates_it_matches_and_each_difference_is_named() {
    let plan = EventsPlan::new(&queue(), FLOW);
    let attrs = as_created(&plan);
    assert!(queue_differences(&plan, &attrs, QUEUE_ARN, RULE_ARN, DLQ_ARN).is_empty());

    // A server that writes maxReceiveCount as a string still matches.
    let mut s = attrs.clone();
    s.insert(
        QueueAttributeName::RedrivePolicy,
        format!(r#"{{"deadLetterTargetArn":"{DLQ_ARN}","maxReceiveCount":"5"}}"#),
    );
    assert!(queue_differences(&plan, &s, QUEUE_ARN, RULE_ARN, DLQ_ARN).is_empty());

    let mut other = attrs.clone();
    other.remove(&QueueAttributeName::Policy);
    other.insert(QueueAttributeName::VisibilityTimeout, "30".into());
    let d = queue_differences(&plan, &other, QUEUE_ARN, RULE_ARN, DLQ_ARN);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[0].starts_with("queue policy is (none)"), "{d:?}");
    assert!(d[1].contains("Some(30) s, the config says 60 s"), "{d:?}");
    let d = queue_differences(&plan, &HashMap::new(), QUEUE_ARN, RULE_ARN, DLQ_ARN);
    assert!(d[0].starts_with("redrive policy is \"(none)\""), "{d:?}");
}

#[test]
fn printing_fills_in_the_account_and_region_from_the_flow_definition() {
    let mut config = crate::config::Config::parse(
        r#"
[mqtt]
host = "h"
client_id = "c"
[s3]
bucket = "b"
[a2i]
flow_definition_arn = "arn:aws:sagemaker:eu-west-1:111122223333:flow-definition/dogs"
[model]
labels = ["a"]
[results.queue]
name = "completions"
"#,
    )
    .unwrap();
    let text = print(&config).unwrap().join("\n");
    assert!(text.contains(RULE_ARN), "{text}");
    assert!(text.contains(DLQ_ARN), "{text}");
    assert!(text.contains("\"maxReceiveCount\": 5"), "{text}");
    config.results.queue = None;
    assert!(print(&config).is_none());
}
