//! The Jobs state machine's specification, time driven by hand.

use super::*;
use crate::jobs::config::{
    AbortAction, AbortConfig, AbortCriteria, ExponentialRate, FailureType, RateIncreaseCriteria,
    RolloutConfig,
};
use protocol::jobs::JobExecutionStatus as S;
use serde_json::json;

const MIN: u64 = 60_000;

fn job(id: &str, targets: &[&str]) -> NewJob {
    NewJob {
        job_id: id.to_owned(),
        description: None,
        document: json!({"operation": "edge-a2i.model-update", "v": 1}),
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        rollout: RolloutConfig::default(),
        abort: None,
    }
}

fn status_of(s: &JobsState, job: &str, thing: &str) -> Option<S> {
    s.jobs[job].executions.get(thing).map(|e| e.status)
}

fn queued_count(s: &JobsState, job: &str) -> usize {
    s.jobs[job].executions.len()
}

fn update(status: S) -> UpdateRequest {
    UpdateRequest {
        status,
        status_details: StatusDetails::new(),
        expected_version: None,
        client_token: None,
    }
}

fn update_with(status: S, key: &str, value: &str) -> UpdateRequest {
    let mut u = update(status);
    u.status_details.insert(key.to_owned(), value.to_owned());
    u
}

fn started(s: &mut JobsState, thing: &str, now: u64) -> Option<String> {
    s.start_next(thing, StartNextRequest::default(), now)
        .unwrap()
        .execution
        .map(|e| e.job_id)
}

fn abort_at(failure_type: FailureType, threshold: f64, min: u32) -> AbortConfig {
    AbortConfig {
        criteria_list: vec![AbortCriteria {
            failure_type,
            action: AbortAction::Cancel,
            threshold_percentage: threshold,
            min_number_of_executed_things: min,
        }],
    }
}

#[test]
fn a_job_reaches_every_target_and_completes_when_all_succeeded() {
    let mut s = JobsState::default();
    s.create_job(job("j1", &["pi-1", "pi-2"]), 1_000).unwrap();
    assert_eq!(queued_count(&s, "j1"), 0, "nothing is queued before a tick");
    assert!(s.tick(1_000));
    assert_eq!(status_of(&s, "j1", "pi-1"), Some(S::Queued));
    assert_eq!(status_of(&s, "j1", "pi-2"), Some(S::Queued));

    let a = s
        .start_next("pi-1", StartNextRequest::default(), 2_000)
        .unwrap();
    let e = a.execution.unwrap();
    assert_eq!((e.job_id.as_str(), e.status), ("j1", S::InProgress));
    assert_eq!(
        (e.queued_at, e.started_at, e.version_number),
        (1, Some(2), 2)
    );
    assert_eq!(
        e.job_document.unwrap()["operation"],
        "edge-a2i.model-update"
    );

    s.update("pi-1", "j1", update(S::Succeeded), 3_000).unwrap();
    assert_eq!(s.jobs["j1"].status, JobStatus::InProgress);
    s.update("pi-2", "j1", update(S::Succeeded), 4_000).unwrap();
    assert_eq!(s.jobs["j1"].status, JobStatus::Completed);
    assert_eq!(s.jobs["j1"].completed_at_ms, Some(4_000));
    assert_eq!(started(&mut s, "pi-1", 5_000), None, "nothing pending");
}

#[test]
fn notify_next_goes_out_when_a_things_next_execution_changes() {
    let mut s = JobsState::default();
    s.create_job(job("j1", &["pi-1"]), 0).unwrap();
    s.tick(0);
    let n = s.drain_notifications();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].thing, "pi-1");
    let e = n[0].message.execution.as_ref().unwrap();
    assert_eq!((e.job_id.as_str(), e.status), ("j1", S::Queued));
    assert!(e.job_document.is_some());

    // Starting it does not change which execution is next: no message.
    started(&mut s, "pi-1", 1_000);
    assert!(s.drain_notifications().is_empty());
    // A second job queued behind the first is not next either.
    s.create_job(job("j2", &["pi-1"]), 2_000).unwrap();
    s.tick(2_000);
    assert!(s.drain_notifications().is_empty());
    // Finishing the first makes the second next.
    s.update("pi-1", "j1", update(S::Succeeded), 3_000).unwrap();
    let n = s.drain_notifications();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].message.execution.as_ref().unwrap().job_id, "j2");
    // Finishing the last leaves nothing: a message without an execution.
    s.update("pi-1", "j2", update(S::Succeeded), 4_000).unwrap();
    let n = s.drain_notifications();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].message.execution, None);
    assert_eq!(n[0].message.timestamp, 4);
}

#[test]
fn start_next_prefers_an_in_progress_execution_over_older_queued_ones() {
    let mut s = JobsState::default();
    s.create_job(job("old", &["pi-1"]), 0).unwrap();
    s.tick(0);
    s.create_job(job("new", &["pi-1"]), 1_000).unwrap();
    s.tick(1_000);
    s.update("pi-1", "new", update(S::InProgress), 2_000)
        .unwrap();
    assert_eq!(started(&mut s, "pi-1", 3_000).as_deref(), Some("new"));
    // Asking again hands back the same execution, unchanged.
    let v = s.jobs["new"].executions["pi-1"].version_number;
    assert_eq!(started(&mut s, "pi-1", 4_000).as_deref(), Some("new"));
    assert_eq!(s.jobs["new"].executions["pi-1"].version_number, v);
}

#[test]
fn maximum_per_minute_holds_back_targets_until_the_next_minute() {
    let mut s = JobsState::default();
    let mut j = job("j", &["a", "b", "c", "d", "e"]);
    j.rollout.maximum_per_minute = Some(2);
    s.create_job(j, 0).unwrap();
    s.tick(0);
    assert_eq!(queued_count(&s, "j"), 2);
    assert!(!s.tick(MIN - 1), "the minute is not over");
    assert_eq!(queued_count(&s, "j"), 2);
    s.tick(MIN);
    assert_eq!(queued_count(&s, "j"), 4);
    s.tick(2 * MIN);
    assert_eq!(queued_count(&s, "j"), 5);
    // Targets are notified in the order given.
    assert!(s.jobs["j"].executions["a"].queue_seq < s.jobs["j"].executions["e"].queue_seq);
}

#[test]
fn exponential_rate_grows_by_the_factor_only_as_executions_succeed() {
    let mut s = JobsState::default();
    let targets: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    let mut j = job("j", &refs);
    j.rollout.exponential_rate = Some(ExponentialRate {
        base_rate_per_minute: 1,
        increment_factor: 2.0,
        rate_increase_criteria: RateIncreaseCriteria {
            number_of_notified_things: None,
            number_of_succeeded_things: Some(1),
        },
    });
    j.rollout.maximum_per_minute = Some(6);
    s.create_job(j, 0).unwrap();
    s.tick(0);
    assert_eq!(queued_count(&s, "j"), 1);
    s.tick(MIN);
    assert_eq!(
        queued_count(&s, "j"),
        2,
        "no success yet: still the base rate"
    );
    s.update("t0", "j", update(S::Succeeded), MIN + 1).unwrap();
    s.tick(2 * MIN);
    assert_eq!(
        queued_count(&s, "j"),
        4,
        "one success doubled the rate to 2"
    );
    s.update("t1", "j", update(S::Succeeded), 2 * MIN + 1)
        .unwrap();
    s.update("t2", "j", update(S::Succeeded), 2 * MIN + 2)
        .unwrap();
    assert_eq!(
        s.jobs["j"].pace.rate_per_minute, 6,
        "8, capped at maximumPerMinute"
    );
    s.tick(3 * MIN);
    assert_eq!(queued_count(&s, "j"), 10);
}

#[test]
fn exponential_rate_on_notified_things_increases_after_each_batch() {
    let mut s = JobsState::default();
    let targets: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    let mut j = job("j", &refs);
    j.rollout.exponential_rate = Some(ExponentialRate {
        base_rate_per_minute: 2,
        increment_factor: 1.5,
        rate_increase_criteria: RateIncreaseCriteria {
            number_of_notified_things: Some(4),
            number_of_succeeded_things: None,
        },
    });
    s.create_job(j, 0).unwrap();
    s.tick(0);
    assert_eq!(queued_count(&s, "j"), 2);
    s.tick(MIN);
    // The fourth notification raised the rate to 3 within this minute: one more.
    assert_eq!(queued_count(&s, "j"), 5);
    assert_eq!(s.jobs["j"].pace.rate_per_minute, 3);
}

#[test]
fn an_abort_at_the_failure_threshold_cancels_the_rest() {
    let mut s = JobsState::default();
    let mut j = job("j", &["a", "b", "c", "d"]);
    j.rollout.maximum_per_minute = Some(3);
    j.abort = Some(abort_at(FailureType::Failed, 50.0, 2));
    s.create_job(j, 0).unwrap();
    s.tick(0);
    s.drain_notifications();
    s.update(
        "a",
        "j",
        update_with(S::Failed, "reason", "self-test failed"),
        1_000,
    )
    .unwrap();
    assert_eq!(s.jobs["j"].status, JobStatus::InProgress, "1 executed < 2");
    started(&mut s, "c", 1_500);
    s.update("b", "j", update(S::Succeeded), 2_000).unwrap();
    let job = &s.jobs["j"];
    assert_eq!(job.status, JobStatus::Canceled, "1 of 2 FAILED = 50%");
    assert_eq!(job.reason_code.as_deref(), Some("ABORTED"));
    assert!(
        job.comment.as_deref().unwrap().contains("1 of 2"),
        "{:?}",
        job.comment
    );
    assert_eq!(
        status_of(&s, "j", "c"),
        Some(S::Canceled),
        "IN_PROGRESS is canceled"
    );
    assert_eq!(status_of(&s, "j", "d"), None, "never notified");
    s.tick(2 * MIN);
    assert_eq!(status_of(&s, "j", "d"), None, "and never will be");
    // c is told it has nothing left to do.
    let n = s.drain_notifications();
    assert!(
        n.iter()
            .any(|n| n.thing == "c" && n.message.execution.is_none()),
        "{n:?}"
    );
    let err = s.update("c", "j", update(S::Succeeded), 3_000).unwrap_err();
    assert_eq!(err.code, "InvalidStateTransition");
}

#[test]
fn rejected_and_failed_keep_their_status_details() {
    let mut s = JobsState::default();
    s.create_job(job("j", &["a", "b"]), 0).unwrap();
    s.tick(0);
    s.update(
        "a",
        "j",
        update_with(S::Rejected, "reason", "signature does not verify"),
        1,
    )
    .unwrap();
    s.update(
        "b",
        "j",
        update_with(S::Failed, "reason", "self-test: top-1 differs"),
        2,
    )
    .unwrap();
    let e = &s.jobs["j"].executions;
    assert_eq!(e["a"].status, S::Rejected);
    assert_eq!(e["a"].status_details["reason"], "signature does not verify");
    assert_eq!(e["b"].status_details["reason"], "self-test: top-1 differs");
    assert_eq!(s.jobs["j"].status, JobStatus::Completed);
}

#[test]
fn updates_are_refused_with_the_jobs_error_codes() {
    let mut s = JobsState::default();
    s.create_job(job("j", &["a"]), 0).unwrap();
    s.tick(0);
    let mut u = update(S::Succeeded);
    u.client_token = Some("tok-1".into());
    let err = s.update("a", "nope", u.clone(), 1_000).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.client_token.as_deref()),
        ("ResourceNotFound", Some("tok-1"))
    );
    assert_eq!(
        s.update("zz", "j", u.clone(), 1_000).unwrap_err().code,
        "ResourceNotFound"
    );

    let err = s.update("a", "j", update(S::Canceled), 1_000).unwrap_err();
    assert_eq!(err.code, "InvalidRequest");

    let mut stale = update(S::InProgress);
    stale.expected_version = Some(7);
    let err = s.update("a", "j", stale, 1_000).unwrap_err();
    assert_eq!(err.code, "VersionMismatch");
    assert_eq!(err.execution_state.unwrap().version_number, 1);

    let mut current = update(S::Succeeded);
    current.expected_version = Some(1);
    let ok = s.update("a", "j", current, 2_000).unwrap();
    assert_eq!(ok.execution_state.unwrap().version_number, 2);

    let err = s.update("a", "j", update(S::Failed), 3_000).unwrap_err();
    assert_eq!(err.code, "InvalidStateTransition");
    assert_eq!(err.execution_state.unwrap().status, S::Succeeded);
    assert_eq!(err.timestamp, 3);
}

#[test]
fn status_details_are_bounded() {
    let mut s = JobsState::default();
    s.create_job(job("j", &["a"]), 0).unwrap();
    s.tick(0);
    let err = s
        .update("a", "j", update_with(S::Failed, "bad key!", "x"), 1)
        .unwrap_err();
    assert_eq!(err.code, "InvalidRequest");
    let mut many = update(S::InProgress);
    for i in 0..=MAX_STATUS_DETAILS {
        many.status_details.insert(format!("k{i}"), "v".into());
    }
    assert_eq!(
        s.update("a", "j", many, 1).unwrap_err().code,
        "InvalidRequest"
    );
    assert_eq!(
        status_of(&s, "j", "a"),
        Some(S::Queued),
        "a refused update changes nothing"
    );
}

#[test]
fn cancel_job_cancels_queued_executions_and_in_progress_ones_only_with_force() {
    let mut s = JobsState::default();
    s.create_job(job("j", &["a", "b"]), 0).unwrap();
    s.tick(0);
    started(&mut s, "a", 1_000);
    s.cancel_job("j", false, None, Some("wrong model".into()), 2_000)
        .unwrap();
    assert_eq!(s.jobs["j"].status, JobStatus::Canceled);
    assert_eq!(status_of(&s, "j", "a"), Some(S::InProgress));
    assert_eq!(status_of(&s, "j", "b"), Some(S::Canceled));
    s.cancel_job("j", true, None, None, 3_000).unwrap();
    assert_eq!(status_of(&s, "j", "a"), Some(S::Canceled));
    assert!(s.jobs["j"].force_canceled);
    assert_eq!(s.jobs["j"].comment.as_deref(), Some("wrong model"));
    assert!(matches!(
        s.cancel_job("x", false, None, None, 0),
        Err(JobsError::NotFound(_))
    ));
}

#[test]
fn create_job_checks_its_input() {
    let mut s = JobsState::default();
    let bad = |s: &mut JobsState, j: NewJob| match s.create_job(j, 0) {
        Err(JobsError::InvalidRequest(m)) => m,
        other => panic!("expected InvalidRequest, got {other:?}"),
    };
    assert!(bad(&mut s, job("has space", &["a"])).contains("jobId"));
    assert!(bad(&mut s, job("j", &[])).contains("targets"));
    assert!(bad(&mut s, job("j", &["a", "a"])).contains("twice"));
    assert!(bad(&mut s, job("j", &["a/b"])).contains("thing name"));
    let mut j = job("j", &["a"]);
    j.rollout.maximum_per_minute = Some(0);
    assert!(bad(&mut s, j).contains("maximumPerMinute"));
    let mut j = job("j", &["a"]);
    j.abort = Some(abort_at(FailureType::All, 100.5, 1));
    assert!(bad(&mut s, j).contains("thresholdPercentage"));
    let mut j = job("j", &["a"]);
    j.document = json!({"blob": "x".repeat(MAX_DOCUMENT_BYTES)});
    assert!(bad(&mut s, j).contains("bytes"));
    s.create_job(job("j", &["a"]), 0).unwrap();
    assert_eq!(
        s.create_job(job("j", &["a"]), 0),
        Err(JobsError::AlreadyExists("j".into()))
    );
}

#[test]
fn finished_jobs_make_room_and_running_ones_are_a_limit() {
    let mut s = JobsState::default();
    for i in 0..MAX_JOBS {
        s.create_job(job(&format!("j{i}"), &["a"]), i as u64)
            .unwrap();
    }
    assert!(matches!(
        s.create_job(job("one-more", &["a"]), 1_000),
        Err(JobsError::LimitExceeded(_))
    ));
    s.cancel_job("j5", false, None, None, 2_000).unwrap();
    s.create_job(job("one-more", &["a"]), 3_000).unwrap();
    assert!(!s.jobs.contains_key("j5"));
    assert_eq!(s.jobs.len(), MAX_JOBS);
}

#[test]
fn the_state_survives_a_json_round_trip_without_its_unsent_notifications() {
    let mut s = JobsState::default();
    let mut j = job("j", &["a", "b"]);
    j.rollout.maximum_per_minute = Some(1);
    j.abort = Some(abort_at(FailureType::Rejected, 10.0, 1));
    s.create_job(j, 0).unwrap();
    s.tick(0);
    let text = serde_json::to_string(&s).unwrap();
    let mut back: JobsState = serde_json::from_str(&text).unwrap();
    assert!(back.drain_notifications().is_empty());
    s.drain_notifications();
    assert_eq!(back, s);
    // The pace carries over: the second target waits for the next minute.
    assert!(!back.tick(1_000));
    assert!(back.tick(MIN));
}
