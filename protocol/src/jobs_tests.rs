//! The Jobs MQTT API as the AWS IoT Developer Guide shows it, and the job document.

use super::*;

#[test]
fn topics_are_the_reserved_jobs_topics_of_the_thing() {
    let t = JobsTopics::new("pi-kitchen").unwrap();
    assert_eq!(t.notify_next(), "$aws/things/pi-kitchen/jobs/notify-next");
    assert_eq!(t.start_next(), "$aws/things/pi-kitchen/jobs/start-next");
    assert_eq!(
        t.update("job-1"),
        "$aws/things/pi-kitchen/jobs/job-1/update"
    );
    assert_eq!(
        t.classify("$aws/things/pi-kitchen/jobs/job-1/update/accepted"),
        Some(JobsTopic::UpdateAccepted("job-1"))
    );
    assert_eq!(
        t.classify("$aws/things/pi-kitchen/jobs/start-next/accepted"),
        Some(JobsTopic::StartNextAccepted)
    );
    assert_eq!(t.classify("$aws/things/other/jobs/notify-next"), None);
    assert_eq!(
        JobsTopics::thing_of("$aws/things/pi-1/jobs/start-next"),
        Some("pi-1")
    );
    assert!(JobsTopics::new("a/b").is_err());
    assert!(JobsTopics::new("").is_err());
}

#[test]
fn a_start_next_accepted_message_of_the_service_parses() {
    // The shape of the response example in jobs-mqtt-api.html.
    let json = r#"{"clientToken":"c1","timestamp":1489096425,"execution":{
        "jobId":"rollout-1","status":"IN_PROGRESS","statusDetails":{"step":"download"},
        "queuedAt":1489096123,"startedAt":1489096400,"lastUpdatedAt":1489096400,
        "versionNumber":2,"executionNumber":1,
        "jobDocument":{"operation":"edge-a2i.model-update"}}}"#;
    let m: StartNextAccepted = serde_json::from_str(json).unwrap();
    let e = m.execution.unwrap();
    assert_eq!(e.job_id, "rollout-1");
    assert_eq!(e.status, JobExecutionStatus::InProgress);
    assert_eq!(e.status_details["step"], "download");
    assert_eq!(e.version_number, 2);
}

#[test]
fn an_update_request_serializes_with_the_services_field_names() {
    let mut details = StatusDetails::new();
    details.insert("reason".into(), "sha256 mismatch".into());
    let r = UpdateRequest {
        status: JobExecutionStatus::Rejected,
        status_details: details,
        expected_version: None,
        client_token: Some("t".into()),
    };
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["status"], "REJECTED");
    assert_eq!(v["statusDetails"]["reason"], "sha256 mismatch");
    assert_eq!(v["clientToken"], "t");
    assert!(JobExecutionStatus::Rejected.is_terminal());
    assert!(!JobExecutionStatus::InProgress.is_terminal());
}

fn document() -> serde_json::Value {
    serde_json::json!({
        "operation": "edge-a2i.model-update", "v": 1, "name": "dogs", "version": "1.0.1",
        "package": {"url": "http://127.0.0.1:9000/models/dogs-1.0.1.tar?X-Amz-Signature=ab",
                    "size": 10, "sha256": "a".repeat(64), "signature": "sig"}
    })
}

#[test]
fn a_model_update_document_reads_and_bad_ones_say_which_field() {
    let doc = ModelUpdateDocument::from_value(&document()).unwrap();
    assert_eq!(doc.package.size, 10);
    let mut other = document();
    other["operation"] = "reboot".into();
    let err = ModelUpdateDocument::from_value(&other).unwrap_err();
    assert!(err.to_string().contains("operation"), "{err}");
    let mut bad_sha = document();
    bad_sha["package"]["sha256"] = "xyz".into();
    let err = ModelUpdateDocument::from_value(&bad_sha).unwrap_err();
    assert!(err.to_string().contains("package.sha256"), "{err}");
    let mut file_url = document();
    file_url["package"]["url"] = "file:///etc/shadow".into();
    let err = ModelUpdateDocument::from_value(&file_url).unwrap_err();
    assert!(err.to_string().contains("package.url"), "{err}");
    let mut v2 = document();
    v2["v"] = 2.into();
    assert!(matches!(
        ModelUpdateDocument::from_value(&v2).unwrap_err(),
        MessageError::UnsupportedVersion { .. }
    ));
}
