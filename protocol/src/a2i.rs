//! Amazon A2I, as the relay meets it: the `InputContent` it sends with
//! StartHumanLoop, the `output.json` A2I writes to
//! `s3://<bucket>/<flow-definition>/YYYY/MM/DD/hh/mm/ss/<human-loop-name>/output.json`,
//! and [`consolidate`], which turns several reviewers' answers into one label.
//! `output.json` is read tolerantly (unknown fields ignored, optional worker details)
//! because A2I owns that format; the local review service writes the same shape.
//!
//! ```json
//! {"flowDefinitionArn":"arn:aws:sagemaker:eu-west-1:111122223333:flow-definition/dogs",
//!  "humanAnswers":[{"acceptanceTime":"2026-11-25T09:01:04.436Z",
//!    "answerContent":{"annotatedResult":{"label":"beagle"}},
//!    "submissionTime":"2026-11-25T09:01:16.467Z","timeSpentInSeconds":12.031,
//!    "workerId":"a12b3cdefg4h5i67","workerMetadata":{"identityData":{"sub":"..."}}}],
//!  "humanLoopName":"ea2i-01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f",
//!  "inputContent":{"taskObject":"s3://bucket/events/a.jpg","initialValue":"beagle", ...}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::event::{EventId, EventMeta, TopK};
use crate::timestamp::{format_rfc3339_utc, parse_rfc3339_utc};
use crate::topics::DeviceId;

/// The answer reviewers give when the frame shows none of the model's classes. A
/// valid answer like any other label.
pub const NONE_OF_THESE: &str = "none of these";
/// The `name` of the `<crowd-image-classifier>` in our worker task template.
pub const DEFAULT_ANSWER_FIELD: &str = "annotatedResult";

#[derive(Debug, Error)]
pub enum A2iError {
    #[error("A2I output.json does not parse: {0}")]
    Json(#[source] serde_json::Error),
    #[error("human loop {human_loop_name}: answer {answer} has no string at answerContent.{field}.label")]
    MissingLabel {
        human_loop_name: String,
        answer: usize,
        field: String,
    },
    #[error("human loop {human_loop_name}: inputContent is not ours: {source}")]
    InputContent {
        human_loop_name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The `output.json` of one human loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HumanLoopOutput {
    pub flow_definition_arn: String,
    pub human_answers: Vec<HumanAnswer>,
    pub human_loop_name: String,
    /// `InputContent` of the loop, parsed (A2I embeds it as JSON, not as a string).
    pub input_content: Value,
}

/// One reviewer's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HumanAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance_time: Option<String>,
    /// The worker's form, keyed by element name, e.g.
    /// `{"annotatedResult": {"label": "beagle"}}`.
    pub answer_content: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_spent_in_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_metadata: Option<Value>,
}

impl HumanAnswer {
    /// A `<crowd-image-classifier name=field>` answer as A2I records it: times in
    /// milliseconds since the Unix epoch (UTC), written as RFC 3339 with milliseconds;
    /// `time_spent_in_seconds` is `submitted_ms - accepted_ms`.
    pub fn classification(
        field: &str,
        label: &str,
        worker_id: &str,
        accepted_ms: i64,
        submitted_ms: i64,
        worker_metadata: Option<Value>,
    ) -> Self {
        let mut content = Map::new();
        content.insert(field.to_owned(), serde_json::json!({ "label": label }));
        HumanAnswer {
            acceptance_time: Some(format_rfc3339_utc(accepted_ms)),
            answer_content: Value::Object(content),
            submission_time: Some(format_rfc3339_utc(submitted_ms)),
            time_spent_in_seconds: Some((submitted_ms - accepted_ms) as f64 / 1000.0),
            worker_id: Some(worker_id.to_owned()),
            worker_metadata,
        }
    }

    /// `answerContent.<field>.label`, what a `<crowd-image-classifier name=field>` submits.
    pub fn label(&self, field: &str) -> Option<&str> {
        self.answer_content.get(field)?.get("label")?.as_str()
    }
}

/// One label answer, as [`consolidate`] weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelAnswer {
    pub label: String,
    pub worker_id: Option<String>,
    /// RFC 3339; orders answers for the tie-break.
    pub submission_time: Option<String>,
}

impl HumanLoopOutput {
    pub fn from_json(bytes: &[u8]) -> Result<Self, A2iError> {
        serde_json::from_slice(bytes).map_err(A2iError::Json)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("HumanLoopOutput serializes: string keys")
    }

    /// Every answer's label from `answerContent.<field>.label`; an answer without
    /// one is an error naming it (a form that does not match the template).
    pub fn label_answers(&self, field: &str) -> Result<Vec<LabelAnswer>, A2iError> {
        let answers = self.human_answers.iter().enumerate().map(|(answer, a)| {
            let label = a.label(field).ok_or_else(|| A2iError::MissingLabel {
                human_loop_name: self.human_loop_name.clone(),
                answer,
                field: field.to_owned(),
            })?;
            Ok(LabelAnswer {
                label: label.to_owned(),
                worker_id: a.worker_id.clone(),
                submission_time: a.submission_time.clone(),
            })
        });
        answers.collect()
    }

    /// The input we sent, read back from `inputContent`.
    pub fn input(&self) -> Result<InputContent, A2iError> {
        serde_json::from_value(self.input_content.clone()).map_err(|source| {
            A2iError::InputContent {
                human_loop_name: self.human_loop_name.clone(),
                source,
            }
        })
    }
}

/// What we send as the human loop's `InputContent` (a JSON string). `taskObject` and
/// `initialValue` are the names the crowd-image-classifier template reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputContent {
    /// s3:// URI of the image.
    #[serde(rename = "taskObject")]
    pub task_object: String,
    /// The model's top-1 label, preselected for the reviewer.
    #[serde(rename = "initialValue")]
    pub initial_value: String,
    /// The categories the reviewer chooses from.
    pub labels: Vec<String>,
    /// The model's top-k.
    pub scores: Vec<TopK>,
    pub device_id: DeviceId,
    pub model_version: String,
    pub event_id: EventId,
    /// Where the frame came from (its file name in folder mode), shown to reviewers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl InputContent {
    /// The input for `meta`'s event, its image at `image_uri`. `labels` are the
    /// categories offered; add [`NONE_OF_THESE`] to them if reviewers may say so.
    pub fn for_event(meta: &EventMeta, image_uri: impl Into<String>, labels: Vec<String>) -> Self {
        InputContent {
            task_object: image_uri.into(),
            initial_value: meta
                .top_k
                .first()
                .map(|t| t.label.clone())
                .unwrap_or_default(),
            labels,
            scores: meta.top_k.clone(),
            device_id: meta.device_id.clone(),
            model_version: meta.model.version.clone(),
            event_id: meta.event_id,
            source: meta.source.clone(),
        }
    }

    /// The string StartHumanLoop takes as `HumanLoopInput.InputContent`.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).expect("InputContent serializes: string keys")
    }
}

/// Several answers reduced to one label.
#[derive(Debug, Clone, PartialEq)]
pub struct Consolidated {
    /// The majority label; `None` only when there were no answers.
    pub label: Option<String>,
    /// Answers that chose `label`.
    pub votes: u32,
    /// Answers considered.
    pub answers: u32,
    /// `votes / answers` (0 with no answers).
    pub agreement: f64,
    /// Another label had as many votes; `label` is then the tied label that was
    /// submitted first.
    pub tie: bool,
}

impl Consolidated {
    pub fn is_none_of_these(&self) -> bool {
        self.label.as_deref() == Some(NONE_OF_THESE)
    }
}

/// Majority vote. One answer: its label. Several: the label most answers chose; on a
/// tie, the tied label whose first vote was submitted earliest, flagged `tie`.
/// Answers without a parseable submission time count as submitted after all others,
/// in their given order, so the outcome never depends on anything but the input.
pub fn consolidate(answers: &[LabelAnswer]) -> Consolidated {
    let mut order: Vec<(i64, usize)> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let at = a
                .submission_time
                .as_deref()
                .and_then(|t| parse_rfc3339_utc(t).ok());
            (at.unwrap_or(i64::MAX), i)
        })
        .collect();
    order.sort_unstable();
    // (label, votes), in order of first submission
    let mut tally: Vec<(&str, u32)> = Vec::new();
    for (_, i) in order {
        let label = answers[i].label.as_str();
        match tally.iter_mut().find(|(l, _)| *l == label) {
            Some((_, votes)) => *votes += 1,
            None => tally.push((label, 1)),
        }
    }
    let top = tally.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let winner = tally
        .iter()
        .find(|(_, v)| *v == top)
        .map(|(l, _)| (*l).to_owned());
    let n = answers.len() as u32;
    Consolidated {
        label: winner,
        votes: top,
        answers: n,
        agreement: if n == 0 {
            0.0
        } else {
            f64::from(top) / f64::from(n)
        },
        tie: tally.iter().filter(|(_, v)| *v == top).count() > 1,
    }
}

#[cfg(test)]
#[path = "a2i_tests.rs"]
mod tests;
