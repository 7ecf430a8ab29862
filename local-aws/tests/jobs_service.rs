//! The local Jobs service with real parts: the embedded broker, the service's MQTT
//! adapter and control API, and several device clients (rumqttc, MQTT 5, one per
//! thing) that do what `edge-agent/src/daemon/jobs.rs` does: subscribe to their
//! reserved topics, `start-next` on connect and on `notify-next`, report the outcome
//! with `{jobId}/update`, and ask again once it was accepted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::signed;
use local_aws::credentials::{Credentials, MqttLogin};
use local_aws::sigv4::Verifier;

use local_aws::broker::{BrokerConfig, EmbeddedBroker};
use local_aws::jobs::{self, ApiIdentity, Jobs};
use protocol::jobs::{
    JobExecutionStatus, JobsTopic, JobsTopics, NextJobExecutionChanged, StartNextAccepted,
    StartNextRequest, UpdateRequest,
};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{json, Value};
use test_support::http::Request;
use test_support::{wait_for_async, wait_until_async, InProcessServer};

mod common;

const DEADLINE: Duration = Duration::from_secs(20);

/// This run's key pair and broker login (fresh random ones, as local mode makes).
fn secrets() -> &'static (Credentials, MqttLogin) {
    static SECRETS: OnceLock<(Credentials, MqttLogin)> = OnceLock::new();
    SECRETS.get_or_init(|| {
        (
            Credentials::generate(),
            local_aws::credentials::generate_login(),
        )
    })
}

/// What a device does with a job it starts.
#[derive(Clone, Copy)]
enum Outcome {
    Succeed,
    Fail,
    Reject,
    /// Starts it and never reports.
    Hang,
}

/// One thing's client; `seen` collects what happened to it.
struct Device {
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    async fn connect(broker: &EmbeddedBroker, thing: &str, outcome: Outcome) -> Device {
        let topics = JobsTopics::new(thing).unwrap();
        let mut o = MqttOptions::new(thing, "127.0.0.1", broker.v5_addr().unwrap().port());
        o.set_keep_alive(Duration::from_secs(5));
        let login = &secrets().1;
        o.set_credentials(login.username.as_str(), login.password.as_str());
        let (client, mut ev) = AsyncClient::new(o, 16);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut subscribed = Some(subscribed_tx);
            let start_next = |c: &AsyncClient| {
                let body = serde_json::to_vec(&StartNextRequest::default()).unwrap();
                let _ = c.try_publish(topics.start_next(), QoS::AtLeastOnce, false, body);
            };
            while let Ok(e) = ev.poll().await {
                match e {
                    Event::Incoming(Packet::ConnAck(_)) => {
                        let filters = [
                            topics.notify_next(),
                            topics.start_next_accepted(),
                            topics.start_next_rejected(),
                            topics.update_accepted_all(),
                            topics.update_rejected_all(),
                        ]
                        .map(|t| Filter::new(t, QoS::AtLeastOnce));
                        let _ = client.try_subscribe_many(filters);
                    }
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                        start_next(&client);
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        match topics.classify(&topic) {
                            Some(JobsTopic::NotifyNext) => {
                                let n: NextJobExecutionChanged =
                                    serde_json::from_slice(&p.payload).unwrap();
                                let what = n.execution.as_ref().map_or("none", |e| &e.job_id);
                                log.lock().unwrap().push(format!("notify-next {what}"));
                                if n.execution.is_some() {
                                    start_next(&client);
                                }
                            }
                            Some(JobsTopic::StartNextAccepted) => {
                                let a: StartNextAccepted =
                                    serde_json::from_slice(&p.payload).unwrap();
                                let Some(e) = a.execution else { continue };
                                log.lock().unwrap().push(format!("started {}", e.job_id));
                                let mut details = std::collections::BTreeMap::new();
                                let status = match outcome {
                                    Outcome::Succeed => JobExecutionStatus::Succeeded,
                                    Outcome::Fail => {
                                        details.insert("reason".into(), "self-test failed".into());
                                        JobExecutionStatus::Failed
                                    }
                                    Outcome::Reject => {
                                        details.insert("reason".into(), "bad signature".into());
                                        JobExecutionStatus::Rejected
                                    }
                                    Outcome::Hang => continue,
                                };
                                let u = UpdateRequest {
                                    status,
                                    status_details: details,
                                    expected_version: Some(e.version_number),
                                    client_token: None,
                                };
                                let _ = client.try_publish(
                                    topics.update(&e.job_id),
                                    QoS::AtLeastOnce,
                                    false,
                                    serde_json::to_vec(&u).unwrap(),
                                );
                            }
                            Some(JobsTopic::UpdateAccepted(job)) => {
                                log.lock().unwrap().push(format!("updated {job}"));
                                start_next(&client);
                            }
                            Some(JobsTopic::UpdateRejected(job)) => {
                                log.lock().unwrap().push(format!("update rejected {job}"));
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(DEADLINE, subscribed_rx)
            .await
            .expect("the device subscribes within the deadline")
            .expect("the device task runs");
        Device { seen, task }
    }

    fn saw(&self, what: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|s| s == what)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The service: MQTT adapter and control API over one state directory.
struct Service {
    jobs: Jobs,
    url: String,
    mqtt: InProcessServer<std::io::Error>,
    http: InProcessServer<std::io::Error>,
}

impl Service {
    async fn start(dir: &std::path::Path, broker: SocketAddr) -> Service {
        let jobs = Jobs::open(dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let j = jobs.clone();
        let mqtt = InProcessServer::spawn(move |sd| async move {
            jobs::run_mqtt(j, broker, secrets().1.clone(), sd).await;
            Ok(())
        });
        let id = ApiIdentity {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        };
        let verifier = Verifier::new(secrets().0.clone(), "the test's");
        let http =
            InProcessServer::spawn(|sd| jobs::serve(listener, jobs.clone(), id, verifier, sd));
        let probe = jobs.clone();
        wait_until_async(DEADLINE, "the service to subscribe", || {
            let ok = probe.serving_mqtt();
            async move { ok }
        })
        .await;
        Service {
            jobs,
            url,
            mqtt,
            http,
        }
    }

    async fn stop(self) {
        self.mqtt.stop().await;
        self.http.stop().await;
    }

    /// One control-API call, signed (SigV4, service `iot`) as `cloud-relay fleet` signs.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map_or_else(Vec::new, |b| b.to_string().into_bytes());
        let headers = [("content-type", "application/json")];
        let (status, body) =
            signed(&self.url, "iot", &secrets().0, method, path, &headers, body).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn describe(&self, job: &str) -> Value {
        let (status, v) = self.call("GET", &format!("/jobs/{job}"), None).await;
        assert_eq!(status, 200, "{v}");
        v["job"].clone()
    }

    async fn wait_for_job(&self, job: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for_async(DEADLINE, what, || async {
            Some(self.describe(job).await).filter(&pred)
        })
        .await
    }

    async fn executions(&self, job: &str) -> Vec<Value> {
        let (status, v) = self.call("GET", &format!("/jobs/{job}/things"), None).await;
        assert_eq!(status, 200, "{v}");
        v["executionSummaries"].as_array().unwrap().clone()
    }
}

async fn broker() -> EmbeddedBroker {
    EmbeddedBroker::start(BrokerConfig {
        listen_v4: "127.0.0.1:0".parse().unwrap(),
        listen_v5: Some("127.0.0.1:0".parse().unwrap()),
        login: secrets().1.clone(),
        ..BrokerConfig::default()
    })
    .await
    .unwrap()
}

fn create(targets: &[&str], extra: Value) -> Value {
    let mut body = json!({
        "targets": targets,
        "document": json!({"operation": "edge-a2i.model-update", "v": 1}).to_string(),
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn summary_of<'a>(rows: &'a [Value], thing: &str) -> &'a Value {
    let arn = format!("arn:aws:iot:us-east-1:000000000000:thing/{thing}");
    &rows.iter().find(|r| r["thingArn"] == arn).unwrap()["jobExecutionSummary"]
}

#[tokio::test]
async fn a_job_reaches_every_target_and_failures_carry_their_status_details() {
    let broker = broker().await;
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), broker.v4_addr()).await;
    let ok = Device::connect(&broker, "pi-ok", Outcome::Succeed).await;
    let _failing = Device::connect(&broker, "pi-fail", Outcome::Fail).await;
    let _rejecting = Device::connect(&broker, "pi-reject", Outcome::Reject).await;

    let targets = [
        "arn:aws:iot:us-east-1:000000000000:thing/pi-ok",
        "pi-fail",
        "pi-reject",
    ];
    let (status, v) = svc
        .call("PUT", "/jobs/model-1", Some(create(&targets, json!({}))))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["jobArn"],
        "arn:aws:iot:us-east-1:000000000000:job/model-1"
    );

    let job = svc
        .wait_for_job("model-1", "the job to complete", |j| {
            j["status"] == "COMPLETED"
        })
        .await;
    let d = &job["jobProcessDetails"];
    assert_eq!(
        (
            &d["numberOfSucceededThings"],
            &d["numberOfFailedThings"],
            &d["numberOfRejectedThings"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    let rows = svc.executions("model-1").await;
    assert_eq!(summary_of(&rows, "pi-fail")["status"], "FAILED");
    assert_eq!(
        summary_of(&rows, "pi-fail")["statusDetails"]["reason"],
        "self-test failed"
    );
    assert_eq!(summary_of(&rows, "pi-reject")["status"], "REJECTED");
    assert_eq!(
        summary_of(&rows, "pi-reject")["statusDetails"]["reason"],
        "bad signature"
    );
    let (_, e) = svc.call("GET", "/things/pi-fail/jobs/model-1", None).await;
    assert_eq!(
        e["execution"]["statusDetails"]["detailsMap"]["reason"],
        "self-test failed"
    );
    // The service answered before it said COMPLETED; the answer reaches the device.
    wait_until_async(
        DEADLINE,
        "pi-ok to hear its update was accepted",
        || async { ok.saw("started model-1") && ok.saw("updated model-1") },
    )
    .await;
    assert!(
        ok.saw("notify-next model-1"),
        "the device was told: {:?}",
        ok.seen
    );
    svc.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_staged_rate_holds_back_targets_beyond_maximum_per_minute() {
    let broker = broker().await;
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), broker.v4_addr()).await;
    let mut devices = Vec::new();
    for t in ["pi-1", "pi-2", "pi-3"] {
        devices.push(Device::connect(&broker, t, Outcome::Succeed).await);
    }
    let rollout = json!({"jobExecutionsRolloutConfig": {"maximumPerMinute": 2}});
    let (status, v) = svc
        .call(
            "PUT",
            "/jobs/staged",
            Some(create(&["pi-1", "pi-2", "pi-3"], rollout)),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let job = svc
        .wait_for_job("staged", "two executions to succeed", |j| {
            j["jobProcessDetails"]["numberOfSucceededThings"] == 2
        })
        .await;
    // The minute that started at creation is not over (the test takes well under
    // it): the third target is still held back.
    assert_eq!(job["status"], "IN_PROGRESS");
    assert_eq!(
        job["jobProcessDetails"]["processingTargets"],
        json!(["arn:aws:iot:us-east-1:000000000000:thing/pi-3"])
    );
    assert_eq!(svc.executions("staged").await.len(), 2);
    assert!(!devices[2].saw("started staged"));
    svc.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn an_abort_at_the_failure_threshold_cancels_the_rest() {
    let broker = broker().await;
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), broker.v4_addr()).await;
    let _a = Device::connect(&broker, "pi-a", Outcome::Fail).await;
    let _b = Device::connect(&broker, "pi-b", Outcome::Fail).await;
    let slow = Device::connect(&broker, "pi-slow", Outcome::Hang).await;
    let abort = json!({"abortConfig": {"criteriaList": [{
        "failureType": "FAILED", "action": "CANCEL",
        "thresholdPercentage": 50, "minNumberOfExecutedThings": 2}]}});
    let (status, v) = svc
        .call(
            "PUT",
            "/jobs/bad-model",
            Some(create(&["pi-a", "pi-b", "pi-slow"], abort)),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let job = svc
        .wait_for_job("bad-model", "the abort", |j| j["status"] == "CANCELED")
        .await;
    assert_eq!(job["reasonCode"], "ABORTED");
    assert!(job["comment"].as_str().unwrap().contains("2 of 2"), "{job}");
    let rows = svc.executions("bad-model").await;
    assert_eq!(summary_of(&rows, "pi-slow")["status"], "CANCELED");
    wait_until_async(DEADLINE, "pi-slow to hear it has nothing to do", || async {
        slow.saw("notify-next none")
    })
    .await;
    svc.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_restart_of_the_service_keeps_the_jobs() {
    let broker = broker().await;
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), broker.v4_addr()).await;
    let first = Device::connect(&broker, "pi-1", Outcome::Succeed).await;
    let (status, v) = svc
        .call(
            "PUT",
            "/jobs/kept",
            Some(create(&["pi-1", "pi-2"], json!({}))),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    svc.wait_for_job("kept", "pi-1 to succeed", |j| {
        j["jobProcessDetails"]["numberOfSucceededThings"] == 1
    })
    .await;
    wait_until_async(DEADLINE, "pi-1 to hear its update was accepted", || async {
        first.saw("updated kept")
    })
    .await;
    svc.stop().await;

    let svc = Service::start(dir.path(), broker.v4_addr()).await;
    let job = svc.describe("kept").await;
    assert_eq!(job["status"], "IN_PROGRESS");
    assert_eq!(
        summary_of(&svc.executions("kept").await, "pi-1")["status"],
        "SUCCEEDED"
    );
    // pi-2 was queued before the restart and is served after it.
    let _second = Device::connect(&broker, "pi-2", Outcome::Succeed).await;
    svc.wait_for_job("kept", "the job to complete after the restart", |j| {
        j["status"] == "COMPLETED"
    })
    .await;
    assert!(svc.jobs.read(|s| s.jobs.contains_key("kept")));
    svc.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn the_control_api_answers_only_signed_loopback_requests_and_with_iot_errors() {
    let broker = broker().await;
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), broker.v4_addr()).await;
    let r = Request::get(format!("{}/jobs", svc.url))
        .header("Host", "jobs.evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    let r = Request::new("PUT", format!("{}/jobs/x", svc.url))
        .header("Origin", "https://evil.example")
        .json(&create(&["pi-1"], json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    // Unsigned, or signed with another key pair: refused, saying why.
    let r = Request::new("PUT", format!("{}/jobs/x", svc.url))
        .json(&create(&["pi-1"], json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.header("x-amzn-errortype")),
        (403, Some("MissingAuthenticationTokenException")),
        "{}",
        r.text()
    );
    let (status, body) = signed(
        &svc.url,
        "iot",
        &Credentials::generate(),
        "PUT",
        "/jobs/x",
        &[],
        create(&["pi-1"], json!({})).to_string().into_bytes(),
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("UnrecognizedClientException"), "{body}");
    assert!(
        svc.jobs.read(|s| s.jobs.is_empty()),
        "a refused request changes nothing"
    );

    let (status, _) = svc
        .call("PUT", "/jobs/x", Some(create(&["pi-1"], json!({}))))
        .await;
    assert_eq!(status, 200);
    let (status, v) = svc
        .call("PUT", "/jobs/x", Some(create(&["pi-1"], json!({}))))
        .await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (409, Some("ResourceAlreadyExistsException"))
    );
    let (status, v) = svc.call("GET", "/jobs/nope", None).await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (404, Some("ResourceNotFoundException"))
    );
    let bad_rate = json!({"jobExecutionsRolloutConfig": {"maximumPerMinute": 5000}});
    let (status, v) = svc
        .call("PUT", "/jobs/y", Some(create(&["pi-1"], bad_rate)))
        .await;
    assert_eq!(status, 400);
    assert!(
        v["message"].as_str().unwrap().contains("maximumPerMinute"),
        "{v}"
    );
    let (status, v) = svc
        .call(
            "PUT",
            "/jobs/x/cancel?force=true",
            Some(json!({"comment": "stop"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(svc.describe("x").await["status"], "CANCELED");
    svc.stop().await;
    broker.stop().await;
}
