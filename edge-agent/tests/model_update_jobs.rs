//! Model updates carried by AWS IoT Jobs: the real `edge-agent` over Mosquitto
//! configured like IoT Core, the package in an S3 server (moto) behind a presigned
//! URL, and the test playing the Jobs service on the reserved topics
//! (`$aws/things/{thing}/jobs/...`, JSON of `protocol::jobs`), as the relay tests'
//! receiver plays the relay. A proxy between the agent and S3 cuts the first download
//! halfway: the agent resumes it with an HTTP Range request.

mod support;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::jobs::{
    JobExecution, JobExecutionStatus, JobsTopic, JobsTopics, NextJobExecutionChanged,
    StartNextAccepted, UpdateAccepted, UpdateRequest,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use support::updates::{model_copy, sign, updating_agent};
use support::{drop_frame, Receiver, DEVICE};
use test_support::{wait_until, Mosquitto, MotoS3};

const LONG: Duration = Duration::from_secs(120);

/// The default model as `version`, signed with `key`: (tar bytes, signature text).
fn signed_package(dir: &Path, version: &str, key: &Path) -> (Vec<u8>, String) {
    let manifest = model_copy(dir, version, |t| t, |m| m);
    let tar = sign(&manifest, key, &dir.join(format!("out-{version}")), &[]);
    (
        std::fs::read(&tar).unwrap(),
        std::fs::read_to_string(format!("{}.minisig", tar.display())).unwrap(),
    )
}

/// The Jobs service's part on the reserved topics, for one thing.
struct JobsService {
    runtime: tokio::runtime::Runtime,
    client: AsyncClient,
    topics: JobsTopics,
    /// Executions not yet terminal, oldest first.
    pending: Arc<Mutex<VecDeque<JobExecution>>>,
    /// Every update request received: (job id, request).
    updates: Arc<Mutex<Vec<(String, UpdateRequest)>>>,
}

impl JobsService {
    fn start(broker: &Mosquitto) -> JobsService {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cert = broker.certs().client("jobs-service");
        let mut options = MqttOptions::new("jobs-service", broker.host(), broker.port());
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca: broker.certs().ca_pem.clone().into_bytes(),
                alpn: None,
                client_auth: Some((cert.cert_pem.into_bytes(), cert.key_pem.into_bytes())),
            }));
        let topics = JobsTopics::new(DEVICE).unwrap();
        let pending: Arc<Mutex<VecDeque<JobExecution>>> = Default::default();
        let updates: Arc<Mutex<Vec<(String, UpdateRequest)>>> = Default::default();
        let (client, mut eventloop) = {
            let _guard = runtime.enter();
            AsyncClient::new(options, 64)
        };
        let subscribed = Arc::new(AtomicUsize::new(0));
        {
            let (client, topics, pending, updates, subscribed) = (
                client.clone(),
                topics.clone(),
                pending.clone(),
                updates.clone(),
                subscribed.clone(),
            );
            runtime.spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            for t in [
                                topics.start_next(),
                                format!("$aws/things/{DEVICE}/jobs/+/update"),
                            ] {
                                client.subscribe(t, QoS::AtLeastOnce).await.unwrap();
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            subscribed.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let topic = p.topic.clone();
                            match topics.classify(&topic) {
                                Some(JobsTopic::Update(job)) => {
                                    let request: UpdateRequest =
                                        serde_json::from_slice(&p.payload).unwrap();
                                    if request.status.is_terminal() {
                                        pending.lock().unwrap().retain(|e| e.job_id != job);
                                    }
                                    updates.lock().unwrap().push((job.to_string(), request));
                                    let accepted = UpdateAccepted {
                                        timestamp: 0,
                                        execution_state: None,
                                        client_token: None,
                                    };
                                    client
                                        .publish(
                                            format!("{topic}/accepted"),
                                            QoS::AtLeastOnce,
                                            false,
                                            serde_json::to_vec(&accepted).unwrap(),
                                        )
                                        .await
                                        .unwrap();
                                }
                                None if topic == topics.start_next() => {
                                    let execution =
                                        pending.lock().unwrap().front().cloned().map(|mut e| {
                                            e.status = JobExecutionStatus::InProgress;
                                            e
                                        });
                                    let reply = StartNextAccepted {
                                        timestamp: 0,
                                        execution,
                                        client_token: None,
                                    };
                                    client
                                        .publish(
                                            topics.start_next_accepted(),
                                            QoS::AtLeastOnce,
                                            false,
                                            serde_json::to_vec(&reply).unwrap(),
                                        )
                                        .await
                                        .unwrap();
                                }
                                _ => {}
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            });
        }
        wait_until(LONG, "the jobs service subscribed", || {
            subscribed.load(Ordering::SeqCst) >= 2
        });
        JobsService {
            runtime,
            client,
            topics,
            pending,
            updates,
        }
    }

    /// Queues a job for the thing and says so on `notify-next`.
    fn add_job(&self, job_id: &str, document: serde_json::Value) {
        let execution = JobExecution {
            job_id: job_id.into(),
            thing_name: Some(DEVICE.into()),
            status: JobExecutionStatus::Queued,
            status_details: Default::default(),
            queued_at: 0,
            started_at: None,
            last_updated_at: 0,
            version_number: 1,
            execution_number: 1,
            job_document: Some(document),
        };
        self.pending.lock().unwrap().push_back(execution.clone());
        let note = NextJobExecutionChanged {
            timestamp: 0,
            execution: Some(execution),
        };
        let (client, topic) = (self.client.clone(), self.topics.notify_next());
        self.runtime.block_on(async move {
            client
                .publish(
                    topic,
                    QoS::AtLeastOnce,
                    false,
                    serde_json::to_vec(&note).unwrap(),
                )
                .await
                .unwrap();
        });
    }

    fn terminal(&self, job_id: &str) -> Option<UpdateRequest> {
        self.updates
            .lock()
            .unwrap()
            .iter()
            .find(|(j, r)| j == job_id && r.status.is_terminal())
            .map(|(_, r)| r.clone())
    }

    fn steps(&self, job_id: &str) -> Vec<String> {
        self.updates
            .lock()
            .unwrap()
            .iter()
            .filter(|(j, _)| j == job_id)
            .filter_map(|(_, r)| r.status_details.get("step").cloned())
            .collect()
    }
}

/// A TCP proxy to `target` that cuts (or stalls) the first connection after `cut_after` bytes of
/// response; later connections pass whole. Counts connections and records each
/// request's `Range` header.
struct CuttingProxy {
    port: u16,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

impl CuttingProxy {
    fn start(target: std::net::SocketAddr, cut_after: usize) -> CuttingProxy {
        CuttingProxy::start_with(target, cut_after, false)
    }

    /// With `stall`, the first connection is not cut but left hanging after
    /// `cut_after` bytes: the agent sits in its download step.
    fn start_with(target: std::net::SocketAddr, cut_after: usize, stall: bool) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ranges: Arc<Mutex<Vec<Option<String>>>> = Default::default();
        let seen = ranges.clone();
        std::thread::spawn(move || {
            for (n, client) in listener.incoming().enumerate() {
                let Ok(mut client) = client else { continue };
                let mut upstream = TcpStream::connect(target).unwrap();
                let mut head = vec![0u8; 16 * 1024];
                let len = client.read(&mut head).unwrap_or(0);
                let text = String::from_utf8_lossy(&head[..len]).to_ascii_lowercase();
                seen.lock().unwrap().push(
                    text.lines()
                        .find(|l| l.starts_with("range:"))
                        .map(|l| l.trim().to_string()),
                );
                upstream.write_all(&head[..len]).unwrap();
                let limit = if n == 0 { cut_after } else { usize::MAX };
                let mut sent = 0usize;
                let mut buf = vec![0u8; 8192];
                loop {
                    let got = match upstream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(g) => g,
                    };
                    let take = got.min(limit - sent);
                    if client.write_all(&buf[..take]).is_err() {
                        break;
                    }
                    sent += take;
                    if sent >= limit {
                        if stall {
                            std::thread::sleep(Duration::from_secs(600));
                        }
                        break; // the cut: both sockets drop here
                    }
                }
            }
        });
        CuttingProxy { port, ranges }
    }
}

fn document(version: &str, url: &str, tar: &[u8], signature: &str) -> serde_json::Value {
    serde_json::json!({
        "operation": "edge-a2i.model-update", "v": 1,
        "name": "dogs-mobilenetv2", "version": version,
        "package": {"url": url, "size": tar.len(), "sha256": protocol::sha256_hex(tar),
                    "signature": signature}
    })
}

#[test]
fn a_job_installs_the_package_resuming_a_cut_download_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let jobs = JobsService::start(&broker);
    let agent = updating_agent(root, &broker, "shadow_frames = 1\nwatch_frames = 1");
    let pid = agent.pid();

    // The package in S3 (moto takes unsigned requests; a device only ever sees the
    // URL the job document gives, presigned or not), reached through the cutting proxy.
    let s3 = MotoS3::builder().start();
    let (tar, sig) = signed_package(root, "1.0.1", &root.join("fleet.key"));
    let put = |path: &str, body: Vec<u8>| {
        let r = test_support::http::Request::new("PUT", format!("{}{path}", s3.endpoint_url()))
            .header("x-amz-acl", "public-read")
            .body(body)
            .send_blocking()
            .unwrap();
        assert!(r.status < 300, "PUT {path}: {} {}", r.status, r.text());
    };
    put("/models", Vec::new());
    put("/models/dogs-1.0.1.tar", tar.clone());
    let url = format!("{}/models/dogs-1.0.1.tar", s3.endpoint_url());
    let s3_addr: std::net::SocketAddr = s3
        .endpoint_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = CuttingProxy::start(s3_addr, tar.len() / 2);
    let via_proxy = url.replace(&s3_addr.to_string(), &format!("127.0.0.1:{}", proxy.port));

    // A wrong sha256 in the job: REJECTED, the model unchanged.
    let mut bad = document("1.0.1", &url, &tar, &sig);
    bad["package"]["sha256"] = "0".repeat(64).into();
    jobs.add_job("bad-sha", bad);
    wait_until(LONG, "bad-sha answered", || {
        jobs.terminal("bad-sha").is_some()
    });
    let r = jobs.terminal("bad-sha").unwrap();
    assert_eq!(r.status, JobExecutionStatus::Rejected);
    assert!(r.status_details["reason"].contains("sha256"), "{r:?}");

    // The good job: downloaded across the cut, verified, shadowed, switched, watched.
    jobs.add_job("rollout-1", document("1.0.1", &via_proxy, &tar, &sig));
    let mut n = 0;
    wait_until(LONG, "rollout-1 SUCCEEDED", || {
        n += 1;
        drop_frame(&agent.inbox, &format!("f{n}.jpg"), "hubble.jpg");
        std::thread::sleep(Duration::from_millis(200));
        jobs.terminal("rollout-1").is_some()
    });
    let r = jobs.terminal("rollout-1").unwrap();
    assert_eq!(r.status, JobExecutionStatus::Succeeded, "{r:?}");
    assert_eq!(
        jobs.steps("rollout-1")
            .into_iter()
            .fold(Vec::<String>::new(), |mut v, s| {
                if v.last() != Some(&s) {
                    v.push(s);
                }
                v
            }),
        ["download", "verify", "load", "shadow", "watch", "done"]
    );
    let ranges = proxy.ranges.lock().unwrap().clone();
    assert!(ranges.len() >= 2, "{ranges:?}");
    assert!(
        ranges[1]
            .as_deref()
            .is_some_and(|r| r.starts_with("range: bytes=") && !r.ends_with("=0-")),
        "the second request resumes: {ranges:?}"
    );
    wait_until(LONG, "status on 1.0.1", || {
        receiver
            .status()
            .and_then(|s| s.model)
            .is_some_and(|m| m.version == "1.0.1")
    });
    assert_eq!(agent.pid(), pid, "no restart");

    // A URL the store refuses (a missing object; an expired presigned URL gets 403):
    // FAILED at once, naming the status, without the retries.
    jobs.add_job(
        "missing",
        document(
            "1.0.3",
            &format!("{}/models/missing.tar", s3.endpoint_url()),
            &tar,
            &sig,
        ),
    );
    wait_until(LONG, "missing answered", || {
        jobs.terminal("missing").is_some()
    });
    let r = jobs.terminal("missing").unwrap();
    assert_eq!(r.status, JobExecutionStatus::Failed);
    assert!(r.status_details["reason"].contains("HTTP 404"), "{r:?}");

    // A download cut for good (nothing listens): FAILED after the retries.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    jobs.add_job(
        "gone",
        document(
            "1.0.2",
            &format!("http://{closed}/models/x.tar"),
            &tar,
            &sig,
        ),
    );
    wait_until(LONG, "gone answered", || jobs.terminal("gone").is_some());
    let r = jobs.terminal("gone").unwrap();
    assert_eq!(r.status, JobExecutionStatus::Failed);
    assert!(r.status_details["reason"].contains("failed after"), "{r:?}");
    assert_eq!(
        receiver
            .status()
            .and_then(|s| s.model)
            .map(|m| m.version)
            .as_deref(),
        Some("1.0.1")
    );
}

#[test]
fn a_kill_during_the_download_is_reported_failed_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let jobs = JobsService::start(&broker);
    let mut agent = updating_agent(root, &broker, "shadow_frames = 1\nwatch_frames = 1");
    let s3 = MotoS3::builder().start();
    let (tar, sig) = signed_package(root, "1.0.1", &root.join("fleet.key"));
    for (path, body) in [("/models", Vec::new()), ("/models/p.tar", tar.clone())] {
        let r = test_support::http::Request::new("PUT", format!("{}{path}", s3.endpoint_url()))
            .header("x-amz-acl", "public-read")
            .body(body)
            .send_blocking()
            .unwrap();
        assert!(r.status < 300, "{}", r.text());
    }
    let s3_addr: std::net::SocketAddr = s3
        .endpoint_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = CuttingProxy::start_with(s3_addr, tar.len() / 2, true);
    let url = format!("http://127.0.0.1:{}/models/p.tar", proxy.port);
    jobs.add_job("stalled", document("1.0.1", &url, &tar, &sig));
    wait_until(LONG, "the agent in its download step", || {
        jobs.steps("stalled").iter().any(|s| s == "download")
            && receiver
                .status()
                .and_then(|s| s.update)
                .is_some_and(|u| u.step == "download")
    });
    agent.kill();
    agent.start();
    wait_until(LONG, "the interrupted download reported FAILED", || {
        jobs.terminal("stalled").is_some()
    });
    let r = jobs.terminal("stalled").unwrap();
    assert_eq!(r.status, JobExecutionStatus::Failed, "{r:?}");
    assert!(
        r.status_details["reason"].contains("restarted during the download step"),
        "{r:?}"
    );
    assert_eq!(
        receiver
            .status()
            .and_then(|s| s.model)
            .map(|m| m.version)
            .as_deref(),
        Some("1.0.0")
    );
}
