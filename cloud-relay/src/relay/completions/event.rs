//! Completion events, the pure half: what one SQS message from the completions queue
//! means and what the relay does about it ([`decide`]), with no I/O.
//!
//! Amazon A2I sends an event to Amazon EventBridge when a human loop's status becomes
//! `Completed`, `Failed` or `Stopped`, delivered at least once (AWS, "Use Amazon
//! CloudWatch Events in Amazon Augmented AI",
//! <https://docs.aws.amazon.com/sagemaker/latest/dg/a2i-cloudwatch-events.html>):
//!
//! ```json
//! {"version": "0", "detail-type": "SageMaker A2I HumanLoop Status Change",
//!  "source": "aws.sagemaker", "resources": ["arn:...:human-loop/NAME"],
//!  "detail": {"creationTime": "2019-11-14T17:37:36.740Z", "failureCode": null,
//!   "failureReason": null, "flowDefinitionArn": "arn:...:flow-definition/F",
//!   "humanLoopArn": "arn:...", "humanLoopName": "NAME",
//!   "humanLoopOutput": {"outputS3Uri": "s3://.../NAME/output.json"},
//!   "humanLoopStatus": "Completed"}}
//! ```
//!
//! An EventBridge rule with an SQS target puts that event, unchanged, as the message
//! body (no input transformer; see `cloud-relay setup`). Because delivery is at least
//! once and relays compete for messages, every action here is idempotent: the row and
//! the not-reviewed record are put only if absent.

use serde::Deserialize;

use crate::relay::a2i::{LoopState, LoopSummary};
use crate::relay::loops::parse_loop_name;

/// The `detail-type` of A2I's event.
pub const DETAIL_TYPE: &str = "SageMaker A2I HumanLoop Status Change";
/// The `source` of A2I's event.
pub const SOURCE: &str = "aws.sagemaker";

/// Why a message is not a completion event the relay can read. A message that gives
/// one of these is poison: reading it again will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not an EventBridge event in JSON: {0}")]
    NotJson(String),
    #[error("event {event_source:?} / {detail_type:?} is not A2I's human loop status change")]
    OtherEvent {
        event_source: String,
        detail_type: String,
    },
    #[error("human loop status change without detail.{0}")]
    Missing(&'static str),
    #[error("detail.creationTime {0:?} is not an RFC 3339 time")]
    BadTime(String),
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    source: String,
    #[serde(rename = "detail-type", default)]
    detail_type: String,
    detail: Option<Detail>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    creation_time: Option<String>,
    failure_reason: Option<String>,
    flow_definition_arn: Option<String>,
    human_loop_name: Option<String>,
    human_loop_output: Option<Output>,
    human_loop_status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    output_s3_uri: Option<String>,
}

/// One human loop status change, as the relay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub flow_definition_arn: String,
    pub loop_summary: LoopSummary,
    /// Where the loop's output.json is (Completed loops).
    pub output_uri: Option<String>,
}

impl StatusChange {
    /// Reads an SQS message body.
    pub fn parse(body: &str) -> Result<StatusChange, EventError> {
        let e: Envelope =
            serde_json::from_str(body).map_err(|e| EventError::NotJson(e.to_string()))?;
        if e.source != SOURCE || e.detail_type != DETAIL_TYPE {
            return Err(EventError::OtherEvent {
                event_source: e.source,
                detail_type: e.detail_type,
            });
        }
        let d = e.detail.ok_or(EventError::Missing("(all)"))?;
        let name = d
            .human_loop_name
            .ok_or(EventError::Missing("humanLoopName"))?;
        let status = d
            .human_loop_status
            .ok_or(EventError::Missing("humanLoopStatus"))?;
        let flow = d
            .flow_definition_arn
            .ok_or(EventError::Missing("flowDefinitionArn"))?;
        let created = d.creation_time.ok_or(EventError::Missing("creationTime"))?;
        let creation_ms = protocol::timestamp::parse_rfc3339_utc(&created)
            .map_err(|_| EventError::BadTime(created.clone()))?;
        let state = match status.as_str() {
            "Completed" => LoopState::Completed,
            // The event is sent for Completed, Failed and Stopped only; anything else
            // (a status added later) is not an end the relay knows.
            "InProgress" | "Stopping" => LoopState::InProgress,
            _ => LoopState::Ended {
                status,
                reason: d.failure_reason,
            },
        };
        Ok(StatusChange {
            flow_definition_arn: flow,
            loop_summary: LoopSummary {
                name,
                state,
                creation_ms,
            },
            output_uri: d.human_loop_output.and_then(|o| o.output_s3_uri),
        })
    }
}

/// What to do with one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// A completed loop of the relay's flow: write its row, then delete the message.
    Collect(StatusChange),
    /// Stopped or Failed: record it as not reviewed, then delete the message.
    Ended(StatusChange),
    /// Readable but not the relay's work: delete the message at once.
    Skip(Skip),
    /// Unreadable: leave it (never delete). SQS moves it to the dead-letter queue
    /// when its receive count passes the queue's `maxReceiveCount` (AWS, "Using
    /// dead-letter queues in Amazon SQS"); `last_receive` says this receive is the
    /// one that passes it, so the relay counts and reports each poison message once.
    Poison {
        error: EventError,
        last_receive: bool,
    },
}

/// Why a readable event is not the relay's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Another flow definition's loop (a rule shared with other workflows).
    OtherFlow,
    /// A loop name the relay did not make.
    NotRelayLoop,
    /// A status that is not an end.
    NotFinished,
}

/// Decides what a message means. `receive_count` is SQS's
/// `ApproximateReceiveCount` (1 on the first receive), `max_receive_count` the
/// queue's redrive policy (`None`: the queue has none).
pub fn decide(
    body: &str,
    receive_count: u32,
    max_receive_count: Option<u32>,
    flow_definition_arn: &str,
) -> Disposition {
    let change = match StatusChange::parse(body) {
        Ok(change) => change,
        Err(error) => {
            return Disposition::Poison {
                error,
                last_receive: max_receive_count.is_some_and(|max| receive_count >= max),
            }
        }
    };
    if change.flow_definition_arn != flow_definition_arn {
        return Disposition::Skip(Skip::OtherFlow);
    }
    if parse_loop_name(&change.loop_summary.name).is_none() {
        return Disposition::Skip(Skip::NotRelayLoop);
    }
    match change.loop_summary.state {
        LoopState::Completed => Disposition::Collect(change),
        LoopState::Ended { .. } => Disposition::Ended(change),
        LoopState::InProgress => Disposition::Skip(Skip::NotFinished),
    }
}

/// The body A2I's event would have for `summary` (local mode and tests emit it; the
/// shape is the one on the AWS page above).
pub fn event_body(
    flow_definition_arn: &str,
    summary: &LoopSummary,
    output_uri: Option<&str>,
) -> String {
    let (status, reason) = match &summary.state {
        LoopState::Completed => ("Completed", None),
        LoopState::InProgress => ("InProgress", None),
        LoopState::Ended { status, reason } => (status.as_str(), reason.as_deref()),
    };
    let prefix = flow_definition_arn
        .split_once(":flow-definition/")
        .map(|(p, _)| p)
        .unwrap_or("arn:aws:sagemaker:us-east-1:000000000000");
    let loop_arn = format!("{prefix}:human-loop/{}", summary.name);
    serde_json::json!({
        "version": "0",
        "id": format!("{}-{status}", summary.name),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": prefix.rsplit(':').next().unwrap_or(""),
        "time": protocol::timestamp::format_rfc3339_utc(protocol::timestamp::now_ms() as i64),
        "region": prefix.split(':').nth(3).unwrap_or(""),
        "resources": [loop_arn],
        "detail": {
            "creationTime": protocol::timestamp::format_rfc3339_utc(summary.creation_ms),
            "failureCode": null,
            "failureReason": reason,
            "flowDefinitionArn": flow_definition_arn,
            "humanLoopArn": loop_arn,
            "humanLoopName": summary.name,
            "humanLoopOutput": output_uri.map(|u| serde_json::json!({"outputS3Uri": u})),
            "humanLoopStatus": status,
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW: &str = "arn:aws:sagemaker:us-east-1:111111111111:flow-definition/dogs";
    const LOOP: &str = "ea2i-01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f";

    /// The example on the AWS page, with our flow and one of our loop names.
    fn aws_example(status: &str, flow: &str, name: &str) -> String {
        format!(
            r#"{{"version":"0","id":"12345678-1111-2222-3333-12345EXAMPLE",
            "detail-type":"SageMaker A2I HumanLoop Status Change","source":"aws.sagemaker",
            "account":"1111111111111","time":"2019-11-14T17:49:25Z","region":"us-east-1",
            "resources":["arn:aws:sagemaker:us-east-1:111111111111:human-loop/{name}"],
            "detail":{{"creationTime":"2019-11-14T17:37:36.740Z","failureCode":null,
            "failureReason":null,"flowDefinitionArn":"{flow}",
            "humanLoopArn":"arn:aws:sagemaker:us-east-1:111111111111:human-loop/{name}",
            "humanLoopName":"{name}","humanLoopOutput":{{"outputS3Uri":
            "s3://out/dogs/2019/11/14/17/37/36/{name}/output.json"}},
            "humanLoopStatus":"{status}"}}}}"#
        )
    }

    #[test]
    fn a_completed_loop_of_our_flow_is_collected_from_the_uri_in_the_event() {
        let d = decide(&aws_example("Completed", FLOW, LOOP), 1, Some(5), FLOW);
        let Disposition::Collect(c) = d else {
            panic!("{d:?}")
        };
        assert_eq!(c.loop_summary.name, LOOP);
        assert_eq!(c.loop_summary.creation_ms, 1_573_753_056_740);
        assert_eq!(
            c.output_uri.as_deref(),
            Some(format!("s3://out/dogs/2019/11/14/17/37/36/{LOOP}/output.json").as_str())
        );
    }

    #[test]
    fn stopped_and_failed_loops_are_recorded_as_not_reviewed() {
        for status in ["Stopped", "Failed"] {
            let d = decide(&aws_example(status, FLOW, LOOP), 1, Some(5), FLOW);
            assert!(
                matches!(&d, Disposition::Ended(c)
                    if c.loop_summary.state == LoopState::Ended { status: status.into(), reason: None }),
                "{d:?}"
            );
        }
    }

    #[test]
    fn other_flows_foreign_loop_names_and_unfinished_loops_are_skipped() {
        let other = "arn:aws:sagemaker:us-east-1:111111111111:flow-definition/cats";
        assert_eq!(
            decide(&aws_example("Completed", other, LOOP), 1, Some(5), FLOW),
            Disposition::Skip(Skip::OtherFlow)
        );
        assert_eq!(
            decide(
                &aws_example("Completed", FLOW, "humanloop-nov-14-1"),
                1,
                None,
                FLOW
            ),
            Disposition::Skip(Skip::NotRelayLoop)
        );
        assert_eq!(
            decide(&aws_example("InProgress", FLOW, LOOP), 1, None, FLOW),
            Disposition::Skip(Skip::NotFinished)
        );
    }

    #[test]
    fn unreadable_messages_are_poison_and_reported_on_the_receive_that_dead_letters_them() {
        let d = decide("not json", 1, Some(3), FLOW);
        assert!(
            matches!(
                d,
                Disposition::Poison {
                    error: EventError::NotJson(_),
                    last_receive: false
                }
            ),
            "{d:?}"
        );
        assert!(matches!(
            decide("not json", 3, Some(3), FLOW),
            Disposition::Poison {
                last_receive: true,
                ..
            }
        ));
        assert!(
            matches!(
                decide("not json", 99, None, FLOW),
                Disposition::Poison {
                    last_receive: false,
                    ..
                }
            ),
            "no redrive policy: never dead-lettered"
        );
        let s3_event = r#"{"source":"aws.s3","detail-type":"Object Created","detail":{}}"#;
        assert!(matches!(
            decide(s3_event, 1, Some(3), FLOW),
            Disposition::Poison {
                error: EventError::OtherEvent { .. },
                ..
            }
        ));
        let no_name = aws_example("Completed", FLOW, LOOP).replace("humanLoopName", "x");
        assert!(matches!(
            decide(&no_name, 1, Some(3), FLOW),
            Disposition::Poison {
                error: EventError::Missing("humanLoopName"),
                ..
            }
        ));
    }

    #[test]
    fn the_body_local_mode_emits_reads_back_as_the_same_change() {
        let summary = LoopSummary {
            name: LOOP.into(),
            state: LoopState::Ended {
                status: "Failed".into(),
                reason: Some("expired".into()),
            },
            creation_ms: 1_700_000_000_123,
        };
        let body = event_body(FLOW, &summary, None);
        let change = StatusChange::parse(&body).unwrap();
        assert_eq!(change.loop_summary, summary);
        assert_eq!(change.flow_definition_arn, FLOW);
        assert_eq!(change.output_uri, None);
    }
}
