//! Specification of the A2I formats and of answer consolidation.

use super::*;
use crate::event::tests::meta_for;
use serde_json::json;

const LOOP: &str = "ea2i-01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f";

fn answer(label: &str, worker: &str, submitted: &str) -> Value {
    json!({
        "acceptanceTime": "2026-11-25T09:01:04.436Z",
        "answerContent": {"annotatedResult": {"label": label}},
        "submissionTime": submitted,
        "timeSpentInSeconds": 12.031,
        "workerId": worker,
        "workerMetadata": {"identityData": {"identityProviderType": "Cognito",
            "issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_123456789",
            "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}}
    })
}

fn output(answers: Vec<Value>) -> Vec<u8> {
    let meta = meta_for(b"img");
    let input = InputContent::for_event(
        &meta,
        "s3://bucket/events/a.jpg",
        vec!["beagle".into(), NONE_OF_THESE.into()],
    );
    json!({
        "awsManagedHumanLoopRequestSource": "AWS/Textract/AnalyzeDocument/Forms/V1",
        "flowDefinitionArn": "arn:aws:sagemaker:eu-west-1:111122223333:flow-definition/dogs",
        "humanAnswers": answers,
        "humanLoopName": LOOP,
        "inputContent": serde_json::from_str::<Value>(&input.to_json_string()).unwrap()
    })
    .to_string()
    .into_bytes()
}

fn label(l: &str, at: Option<&str>) -> LabelAnswer {
    LabelAnswer {
        label: l.into(),
        worker_id: None,
        submission_time: at.map(Into::into),
    }
}

#[test]
fn reads_output_json_as_a2i_writes_it_ignoring_unknown_fields() {
    let out = HumanLoopOutput::from_json(&output(vec![answer(
        "beagle",
        "w1",
        "2026-11-25T09:01:16.467Z",
    )]))
    .unwrap();
    assert_eq!(out.human_loop_name, LOOP);
    assert_eq!(out.human_answers[0].worker_id.as_deref(), Some("w1"));
    assert_eq!(out.human_answers[0].time_spent_in_seconds, Some(12.031));
    let answers = out.label_answers(DEFAULT_ANSWER_FIELD).unwrap();
    assert_eq!(
        answers,
        vec![LabelAnswer {
            label: "beagle".into(),
            worker_id: Some("w1".into()),
            submission_time: Some("2026-11-25T09:01:16.467Z".into()),
        }]
    );
    assert_eq!(
        HumanLoopOutput::from_json(&out.to_json()).unwrap(),
        out,
        "the local service can write it back"
    );
}

#[test]
fn worker_details_are_optional() {
    let bare = json!({"answerContent": {"annotatedResult": {"label": "pug"}}});
    let out = HumanLoopOutput::from_json(&output(vec![bare])).unwrap();
    assert_eq!(
        out.label_answers(DEFAULT_ANSWER_FIELD).unwrap()[0].label,
        "pug"
    );
    assert_eq!(out.human_answers[0].worker_id, None);
}

#[test]
fn an_answer_without_a_label_is_an_error_naming_loop_answer_and_field() {
    let odd = json!({"answerContent": {"somethingElse": {"label": "pug"}}});
    let out = HumanLoopOutput::from_json(&output(vec![
        answer("pug", "w1", "2026-11-25T09:01:16Z"),
        odd,
    ]))
    .unwrap();
    let e = out
        .label_answers(DEFAULT_ANSWER_FIELD)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("human loop {LOOP}: answer 1 has no string at answerContent.annotatedResult.label")
    );
}

#[test]
fn output_json_missing_a_required_field_says_which() {
    let e = HumanLoopOutput::from_json(
        br#"{"flowDefinitionArn":"arn","humanAnswers":[],"inputContent":{}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("missing field `humanLoopName`"), "{e}");
    assert!(HumanLoopOutput::from_json(b"\x00garbage").is_err());
}

#[test]
fn input_content_carries_the_image_uri_initial_value_and_event_details() {
    let meta = meta_for(b"img");
    let input = InputContent::for_event(
        &meta,
        "s3://bucket/events/a.jpg",
        vec!["beagle".into(), "basset".into()],
    );
    let json: Value = serde_json::from_str(&input.to_json_string()).unwrap();
    assert_eq!(json["taskObject"], "s3://bucket/events/a.jpg");
    assert_eq!(json["initialValue"], "beagle");
    assert_eq!(json["labels"], json!(["beagle", "basset"]));
    assert_eq!(json["scores"][1]["label"], "basset");
    assert_eq!(json["device_id"], "pi-kitchen");
    assert_eq!(json["model_version"], "3");
    assert_eq!(json["event_id"], meta.event_id.to_string());
    let out = HumanLoopOutput::from_json(&output(vec![])).unwrap();
    assert_eq!(out.input().unwrap().event_id, meta.event_id);
}

#[test]
fn foreign_input_content_is_reported() {
    let mut out = HumanLoopOutput::from_json(&output(vec![])).unwrap();
    out.input_content
        .as_object_mut()
        .unwrap()
        .remove("event_id");
    let e = out.input().unwrap_err().to_string();
    assert!(
        e.contains("inputContent is not ours") && e.contains("event_id"),
        "{e}"
    );
}

#[test]
fn one_answer_is_taken_as_is() {
    let c = consolidate(&[label("beagle", None)]);
    assert_eq!(
        c,
        Consolidated {
            label: Some("beagle".into()),
            votes: 1,
            answers: 1,
            agreement: 1.0,
            tie: false
        }
    );
}

#[test]
fn the_majority_wins_and_agreement_is_its_share() {
    let c = consolidate(&[
        label("pug", None),
        label("beagle", None),
        label("beagle", None),
    ]);
    assert_eq!(
        (c.label.as_deref(), c.votes, c.answers, c.tie),
        (Some("beagle"), 2, 3, false)
    );
    assert!((c.agreement - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn a_tie_is_flagged_and_goes_to_the_label_submitted_first() {
    let answers = [
        label("pug", Some("2026-11-25T09:05:00Z")),
        label("beagle", Some("2026-11-25T09:01:00Z")),
        label("pug", Some("2026-11-25T09:02:00Z")),
        label("beagle", Some("2026-11-25T09:03:00Z")),
    ];
    let c = consolidate(&answers);
    assert_eq!(
        (c.label.as_deref(), c.votes, c.tie, c.agreement),
        (Some("beagle"), 2, true, 0.5)
    );
    let mut reversed = answers.clone();
    reversed.reverse();
    assert_eq!(
        consolidate(&reversed),
        c,
        "the input order does not matter when times are known"
    );
}

#[test]
fn answers_without_a_time_count_after_timed_ones_in_their_given_order() {
    let c = consolidate(&[
        label("pug", None),
        label("beagle", Some("2026-11-25T09:01:00Z")),
    ]);
    assert_eq!((c.label.as_deref(), c.tie), (Some("beagle"), true));
    let c = consolidate(&[label("pug", None), label("beagle", Some("not a time"))]);
    assert_eq!((c.label.as_deref(), c.tie), (Some("pug"), true));
}

#[test]
fn none_of_these_is_a_valid_answer() {
    let c = consolidate(&[
        label(NONE_OF_THESE, None),
        label(NONE_OF_THESE, None),
        label("pug", None),
    ]);
    assert!(c.is_none_of_these());
    assert_eq!(c.votes, 2);
}

#[test]
fn no_answers_give_no_label() {
    let c = consolidate(&[]);
    assert_eq!(
        c,
        Consolidated {
            label: None,
            votes: 0,
            answers: 0,
            agreement: 0.0,
            tie: false
        }
    );
}

#[test]
fn a_classification_answer_is_written_with_the_a2i_field_names() {
    let answer = HumanAnswer::classification(
        DEFAULT_ANSWER_FIELD,
        "beagle",
        "w1",
        1_714_564_800_000,
        1_714_564_802_500,
        None,
    );
    let out = HumanLoopOutput {
        flow_definition_arn: "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/f".into(),
        human_answers: vec![answer],
        human_loop_name: "l1".into(),
        input_content: json!({"taskObject": "s3://b/i.jpg"}),
    };
    let v: Value = serde_json::from_slice(&out.to_json()).unwrap();
    assert_eq!(v["humanLoopName"], "l1");
    assert_eq!(v["inputContent"]["taskObject"], "s3://b/i.jpg");
    let a = &v["humanAnswers"][0];
    assert_eq!(a["answerContent"]["annotatedResult"]["label"], "beagle");
    assert_eq!(a["workerId"], "w1");
    assert_eq!(a["acceptanceTime"], "2024-05-01T12:00:00.000Z");
    assert_eq!(a["submissionTime"], "2024-05-01T12:00:02.500Z");
    assert_eq!(a["timeSpentInSeconds"], 2.5);
    assert!(a.get("workerMetadata").is_none());
    let back = HumanLoopOutput::from_json(&out.to_json()).unwrap();
    assert_eq!(
        back.label_answers(DEFAULT_ANSWER_FIELD).unwrap()[0].label,
        "beagle"
    );
}
