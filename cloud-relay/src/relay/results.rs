//! Results, the pure half: which human loops still need collecting ([`LoopTracker`])
//! and how a completed loop's `output.json` becomes an augmented-manifest row
//! ([`build_row`]). Rows are deterministic (every relay builds the same bytes from the
//! same output.json), so "written once per loop" holds even when two relays race:
//! each puts the row at its fixed key only if absent, and identical bytes either way.

use std::collections::HashMap;

use protocol::a2i::{consolidate, HumanLoopOutput, NONE_OF_THESE};
use protocol::manifest::{ClassificationMetadata, ManifestRow};
use protocol::timestamp::{format_manifest_date, parse_rfc3339_utc};
use protocol::{DeviceId, EventId, ReviewResult};

use super::a2i::{LoopState, LoopSummary};

/// What to do about a listed loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Todo {
    Nothing,
    Collect,
    /// Stopped or failed: no answers will come. The driver records it as not reviewed,
    /// then calls [`LoopTracker::mark_done`] (until then it is returned each poll).
    Ended {
        status: String,
        reason: Option<String>,
    },
}

/// Tracks loops between listings, so each poll lists only from a watermark: the
/// oldest loop still open (or the newest seen), less a margin, and never further back
/// than the lookback. Losing this state (a restart) costs one listing of the lookback
/// window and a HEAD per completed loop, nothing more.
#[derive(Debug)]
pub struct LoopTracker {
    lookback_ms: i64,
    margin_ms: i64,
    open: HashMap<String, i64>,
    done: HashMap<String, i64>,
    newest_seen: Option<i64>,
    /// Where listing starts before any loop was seen (a resumed sweep's checkpoint).
    start: Option<i64>,
}

impl LoopTracker {
    pub fn new(lookback_ms: i64, margin_ms: i64) -> Self {
        LoopTracker {
            lookback_ms,
            margin_ms,
            open: HashMap::new(),
            done: HashMap::new(),
            newest_seen: None,
            start: None,
        }
    }

    /// A tracker that resumes listing at `start_ms` (a sweep checkpoint's watermark)
    /// rather than at the lookback, until it has seen a loop.
    pub fn resuming_at(lookback_ms: i64, margin_ms: i64, start_ms: i64) -> Self {
        LoopTracker {
            start: Some(start_ms),
            ..LoopTracker::new(lookback_ms, margin_ms)
        }
    }

    /// Where the next listing starts (creation time, ms).
    pub fn list_from(&self, now_ms: i64) -> i64 {
        let floor = now_ms - self.lookback_ms;
        let Some(newest) = self.newest_seen else {
            return self.start.map_or(floor, |s| s.max(floor));
        };
        let oldest_open = self.open.values().copied().min().unwrap_or(newest);
        (oldest_open.min(newest) - self.margin_ms).max(floor)
    }

    pub fn observe(&mut self, s: &LoopSummary) -> Todo {
        self.newest_seen = Some(self.newest_seen.unwrap_or(i64::MIN).max(s.creation_ms));
        if self.done.contains_key(&s.name) {
            return Todo::Nothing;
        }
        match &s.state {
            LoopState::InProgress => {
                self.open.insert(s.name.clone(), s.creation_ms);
                Todo::Nothing
            }
            LoopState::Completed => Todo::Collect,
            LoopState::Ended { status, reason } => Todo::Ended {
                status: status.clone(),
                reason: reason.clone(),
            },
        }
    }

    pub fn mark_done(&mut self, name: &str, creation_ms: i64) {
        self.open.remove(name);
        self.done.insert(name.to_owned(), creation_ms);
    }

    /// Forgets finished loops that the next listing will not return any more.
    pub fn prune(&mut self, now_ms: i64) {
        let from = self.list_from(now_ms);
        self.done.retain(|_, created| *created >= from);
    }

    pub fn open_loops(&self) -> usize {
        self.open.len()
    }
}

/// A completed loop, consolidated.
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    pub event_id: EventId,
    pub device: DeviceId,
    pub row: ManifestRow,
    pub review: ReviewResult,
}

impl Reviewed {
    /// The row as stored: one JSON line (a tie is flagged in the metadata).
    pub fn row_line(&self) -> String {
        self.row.to_json_line() + "\n"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("{0}")]
    Output(#[from] protocol::a2i::A2iError),
    #[error("human loop {0}: no answers")]
    NoAnswers(String),
    #[error("human loop {name}: label {label:?} is not one of the loop's labels")]
    UnknownLabel { name: String, label: String },
}

/// Builds the manifest row of a completed loop from its output.json.
/// `completed_ms` dates the row when no answer carries a submission time.
pub fn build_row(
    output_json: &[u8],
    answer_field: &str,
    attribute: &str,
    job_name: &str,
    completed_ms: i64,
) -> Result<Reviewed, RowError> {
    let output = HumanLoopOutput::from_json(output_json)?;
    let input = output.input()?;
    let answers = output.label_answers(answer_field)?;
    let verdict = consolidate(&answers);
    let label = verdict
        .label
        .clone()
        .ok_or_else(|| RowError::NoAnswers(output.human_loop_name.clone()))?;
    let class_index = input
        .labels
        .iter()
        .position(|l| *l == label)
        .ok_or_else(|| RowError::UnknownLabel {
            name: output.human_loop_name.clone(),
            label: label.clone(),
        })? as u32;
    let submitted = answers
        .iter()
        .filter_map(|a| parse_rfc3339_utc(a.submission_time.as_deref()?).ok())
        .max()
        .unwrap_or(completed_ms);
    let row = ManifestRow {
        source_ref: input.task_object.clone(),
        attribute: attribute.to_owned(),
        class_index,
        metadata: ClassificationMetadata {
            class_name: label.clone(),
            confidence: verdict.agreement,
            human_annotated: true,
            creation_date: format_manifest_date(submitted),
            job_name: job_name.to_owned(),
            tie: verdict.tie,
        },
    };
    let review = ReviewResult {
        v: protocol::review::REVIEW_VERSION,
        event_id: input.event_id,
        class_index: (label != NONE_OF_THESE).then_some(class_index),
        label,
        agreement: verdict.agreement,
        human_loop_name: output.human_loop_name.clone(),
    };
    Ok(Reviewed {
        event_id: input.event_id,
        device: input.device_id,
        row,
        review,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(name: &str, state: LoopState, creation_ms: i64) -> LoopSummary {
        LoopSummary {
            name: name.into(),
            state,
            creation_ms,
        }
    }

    #[test]
    fn the_watermark_follows_the_oldest_open_loop_within_the_lookback() {
        let mut t = LoopTracker::new(10_000, 100);
        assert_eq!(t.list_from(50_000), 40_000, "first listing: the lookback");
        assert_eq!(
            t.observe(&summary("a", LoopState::InProgress, 45_000)),
            Todo::Nothing
        );
        assert_eq!(
            t.observe(&summary("b", LoopState::Completed, 46_000)),
            Todo::Collect
        );
        assert_eq!(t.list_from(50_000), 44_900);
        t.mark_done("b", 46_000);
        assert_eq!(
            t.observe(&summary("b", LoopState::Completed, 46_000)),
            Todo::Nothing
        );
        assert_eq!(
            t.observe(&summary("a", LoopState::Completed, 45_000)),
            Todo::Collect
        );
        t.mark_done("a", 45_000);
        assert_eq!(
            t.list_from(50_000),
            45_900,
            "nothing open: from the newest seen"
        );
        assert_eq!(t.list_from(70_000), 60_000, "never beyond the lookback");
        t.prune(50_000);
        assert_eq!(t.open_loops(), 0);
    }

    #[test]
    fn a_resumed_tracker_lists_from_its_checkpoint_until_it_sees_a_loop() {
        let mut t = LoopTracker::resuming_at(10_000, 100, 45_000);
        assert_eq!(t.list_from(50_000), 45_000, "nothing seen: the checkpoint");
        assert_eq!(t.list_from(60_000), 50_000, "but never beyond the lookback");
        t.observe(&summary("a", LoopState::InProgress, 47_000));
        assert_eq!(t.list_from(50_000), 46_900, "then the oldest open loop");
    }

    fn ended(status: &str, reason: Option<&str>) -> LoopState {
        LoopState::Ended {
            status: status.into(),
            reason: reason.map(Into::into),
        }
    }

    #[test]
    fn stopped_and_failed_loops_are_reported_until_recorded_then_never_again() {
        let mut t = LoopTracker::new(10_000, 100);
        let s = summary("c", ended("Stopped", None), 1);
        let todo = Todo::Ended {
            status: "Stopped".into(),
            reason: None,
        };
        assert_eq!(t.observe(&s), todo);
        assert_eq!(t.observe(&s), todo, "recording failed: again next poll");
        t.mark_done("c", 1);
        assert_eq!(t.observe(&s), Todo::Nothing);
        let f = summary("d", ended("Failed", Some("quota")), 2);
        assert!(matches!(t.observe(&f), Todo::Ended { reason: Some(r), .. } if r == "quota"));
    }

    fn output(answers: &[(&str, &str)]) -> Vec<u8> {
        let id = "01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f";
        json!({
            "flowDefinitionArn": "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/dogs",
            "humanLoopName": format!("ea2i-{id}"),
            "inputContent": {"taskObject": "s3://b/events/pi-1/2026/11/25/x.jpg", "initialValue": "pug",
                "labels": ["beagle", "pug", "none of these"], "scores": [], "device_id": "pi-1",
                "model_version": "3", "event_id": id},
            "humanAnswers": answers.iter().map(|(label, at)| json!({
                "answerContent": {"annotatedResult": {"label": label}},
                "submissionTime": at, "workerId": "w"})).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn one_answer_becomes_a_row_with_its_class_index_and_submission_date() {
        let r = build_row(
            &output(&[("pug", "2026-11-25T10:00:00.000Z")]),
            "annotatedResult",
            "label",
            "job",
            0,
        )
        .unwrap();
        let line = r.row_line();
        let row = ManifestRow::parse(line.trim_end(), "label").unwrap();
        assert_eq!(row.class_index, 1);
        assert_eq!(row.metadata.class_name, "pug");
        assert_eq!(row.metadata.confidence, 1.0);
        assert_eq!(row.metadata.creation_date, "2026-11-25T10:00:00.000000");
        assert_eq!(row.source_ref, "s3://b/events/pi-1/2026/11/25/x.jpg");
        assert!(!line.contains("tie"));
        assert_eq!(r.review.class_index, Some(1));
        assert_eq!(r.device.as_str(), "pi-1");
    }

    #[test]
    fn several_answers_go_by_majority_and_ties_are_flagged() {
        let r = build_row(
            &output(&[
                ("pug", "2026-11-25T10:00:01Z"),
                ("beagle", "2026-11-25T10:00:00Z"),
                ("pug", "2026-11-25T10:00:02Z"),
            ]),
            "annotatedResult",
            "label",
            "job",
            0,
        )
        .unwrap();
        assert_eq!((r.row.class_index, r.row.metadata.tie), (1, false));
        assert!((r.row.metadata.confidence - 2.0 / 3.0).abs() < 1e-9);
        let r = build_row(
            &output(&[
                ("pug", "2026-11-25T10:00:01Z"),
                ("beagle", "2026-11-25T10:00:00Z"),
            ]),
            "annotatedResult",
            "label",
            "job",
            0,
        )
        .unwrap();
        assert!(r.row.metadata.tie);
        assert_eq!(
            r.row.metadata.class_name, "beagle",
            "tie goes to the first submitted"
        );
        assert!(r.row_line().contains("\"tie\":true"));
    }

    #[test]
    fn none_of_these_is_the_class_after_the_models_and_unknown_labels_are_refused() {
        let r = build_row(
            &output(&[("none of these", "2026-11-25T10:00:00Z")]),
            "annotatedResult",
            "label",
            "job",
            0,
        )
        .unwrap();
        assert_eq!(r.row.class_index, 2);
        assert_eq!(r.review.class_index, None);
        let e = build_row(
            &output(&[("corgi", "2026-11-25T10:00:00Z")]),
            "annotatedResult",
            "label",
            "job",
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"corgi\""), "{e}");
    }

    #[test]
    fn rows_are_byte_identical_whoever_builds_them() {
        let o = output(&[("pug", "2026-11-25T10:00:00Z")]);
        let a = build_row(&o, "annotatedResult", "label", "job", 1).unwrap();
        let b = build_row(&o, "annotatedResult", "label", "job", 2).unwrap();
        assert_eq!(a.row_line(), b.row_line());
    }
}
