//! The relay's test bench, on loopback: Mosquitto configured like IoT Core (TLS with
//! client certificates, 128 KiB limit), moto's S3 server (a separate process; or
//! `local-aws object-store` with [`Bench::start_with`] and [`S3Server::Local`]), the
//! project's review service in this process (driven by the relay through the real
//! `aws-sdk-sagemakera2iruntime` client, optionally answering 429/503 first), relays
//! as real `cloud-relay run` processes, and a test agent that publishes real envelopes
//! and resends what was not receipted, the way edge-agent does.
#![allow(dead_code)]

// The unit tests' builders (crate-private in the library), compiled in here too, so
// both kinds of tests make the same deterministic images.
#[path = "../../src/relay/testing.rs"]
mod unit_builders;
pub use unit_builders::image;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use cloud_relay::relay::s3::S3Store;
use local_aws::review_service::service::NewFlowDefinition;
use local_aws::review_service::{self, HumanAnswer, ReviewService, ServiceIdentity};
use protocol::event::EVENT_VERSION;
use protocol::reason::ReviewReason;
use protocol::{
    encode_event, ContentType, DeviceId, EventId, EventMeta, ImageInfo, Limits, ModelInfo, Receipt,
    TopK, Topics,
};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use test_support::{
    create_bucket, s3_client_signing, spawn_with_log, ChildGuard, Mosquitto, MotoS3,
};

pub const BUCKET: &str = "frames";
pub const FLOW: &str = "dogs";
pub const LABELS: [&str; 3] = ["beagle", "basset", "pug"];

/// Which S3-compatible server a [`Bench`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3Server {
    /// moto's S3 server (Python, one process).
    Moto,
    /// `local-aws object-store` over a directory of the bench (a child process).
    Local,
}

/// Answers the next `remaining` A2I requests with `status` instead of serving them.
#[derive(Clone, Default)]
pub struct Faults {
    pub remaining: Arc<AtomicU32>,
    pub status: Arc<AtomicU32>,
    pub injected: Arc<AtomicU32>,
}

impl Faults {
    pub fn fail_next(&self, n: u32, status: u16) {
        self.status.store(u32::from(status), Ordering::SeqCst);
        self.remaining.store(n, Ordering::SeqCst);
    }
}

pub struct Bench {
    pub dir: tempfile::TempDir,
    pub broker: Mosquitto,
    /// Stopped when the bench runs on [`S3Server::Local`].
    pub moto: MotoS3,
    /// `local-aws object-store` with [`S3Server::Local`].
    pub object_store: Option<ChildGuard>,
    /// The S3 endpoint the relays and `s3` use.
    pub s3_url: String,
    pub s3: aws_sdk_s3::Client,
    pub review: ReviewService,
    pub review_url: String,
    pub flow_arn: String,
    pub faults: Faults,
    /// The key pair the review service takes (fresh random, as local mode makes); the
    /// relays sign with it (moto takes any).
    pub credentials: local_aws::credentials::Credentials,
    _review_task: tokio::task::JoinHandle<()>,
}

impl Bench {
    pub async fn start(broker: Mosquitto, max_in_progress: usize) -> Bench {
        Bench::start_with(broker, max_in_progress, S3Server::Moto).await
    }

    pub async fn start_with(broker: Mosquitto, max_in_progress: usize, server: S3Server) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        // Local mode's credentials file: the object store and the review service take
        // its key pair only (moto takes any).
        let credentials_file = dir.path().join("credentials");
        let credentials = local_aws::credentials::LocalSecrets::load_or_create(&credentials_file)
            .unwrap()
            .aws;
        let mut moto = MotoS3::builder().start();
        let (s3_url, object_store) = match server {
            S3Server::Moto => (moto.endpoint_url(), None),
            S3Server::Local => {
                moto.stop();
                let (url, guard) = start_object_store(dir.path(), &credentials_file);
                (url, Some(guard))
            }
        };
        let s3 = s3_client_signing(
            &s3_url,
            &credentials.access_key_id,
            &credentials.secret_access_key,
        );
        if server == S3Server::Moto {
            create_bucket(&s3, BUCKET).await;
        }
        let sink = Arc::new(S3Store::from_client(s3.clone(), BUCKET));
        let identity = ServiceIdentity {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        };
        let review =
            ReviewService::open(identity, &dir.path().join("review"), max_in_progress, sink)
                .unwrap();
        let flow_arn = review
            .create_flow_definition(NewFlowDefinition {
                name: FLOW.into(),
                output_config: serde_json::json!({"S3OutputPath": format!("s3://{BUCKET}/a2i")}),
                role_arn: "arn:aws:iam::000000000000:role/a2i".into(),
                human_loop_config: None,
                activation_config: None,
                request_source: None,
            })
            .unwrap();
        let faults = Faults::default();
        let f = faults.clone();
        let verifier = local_aws::sigv4::Verifier::new(credentials.clone(), "the bench's");
        let app = review_service::http::router(review.clone(), verifier).layer(
            axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let f = f.clone();
                    async move {
                        let take = f
                            .remaining
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        if take {
                            f.injected.fetch_add(1, Ordering::SeqCst);
                            let status =
                                StatusCode::from_u16(f.status.load(Ordering::SeqCst) as u16)
                                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                            let code = if status == StatusCode::TOO_MANY_REQUESTS {
                                "ThrottlingException"
                            } else {
                                "ServiceUnavailable"
                            };
                            return (
                                status,
                                [
                                    ("x-amzn-ErrorType", code),
                                    ("content-type", "application/json"),
                                ],
                                format!("{{\"__type\":\"{code}\",\"message\":\"injected\"}}"),
                            )
                                .into_response();
                        }
                        next.run(req).await
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let review_url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Bench {
            dir,
            broker,
            moto,
            object_store,
            s3_url,
            s3,
            review,
            review_url,
            flow_arn,
            faults,
            credentials,
            _review_task: task,
        }
    }

    /// Writes a relay config (client id `relay_id`) and returns its path.
    pub fn relay_config(
        &self,
        relay_id: &str,
        share_group: Option<&str>,
        metrics_port: u16,
        extra: &str,
    ) -> PathBuf {
        let certs = self.broker.certs();
        let client = certs.client(relay_id);
        let share = share_group
            .map(|g| format!("share_group = \"{g}\"\n"))
            .unwrap_or_default();
        let text = format!(
            r#"[mqtt]
host = "127.0.0.1"
port = {port}
client_id = "{relay_id}"
{share}keep_alive = "10s"
session_expiry = "1h"
max_in_flight = 64

[mqtt.tls]
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"

[s3]
bucket = "{BUCKET}"
endpoint_url = "{s3}"

[a2i]
flow_definition_arn = "{flow}"
endpoint_url = "{a2i}"
sagemaker_endpoint_url = "{a2i}"

[model]
labels = ["beagle", "basset", "pug"]

[intake]
chunk_timeout = "20s"

[results]
poll_interval = "300ms"
publish_reviews = true

[retry]
initial_backoff = "50ms"
max_backoff = "1s"

[metrics]
listen = "127.0.0.1:{metrics_port}"
{extra}
"#,
            port = self.broker.port(),
            ca = certs.ca_cert.display(),
            cert = client.cert.display(),
            key = client.key.display(),
            s3 = self.s3_url,
            flow = self.flow_arn,
            a2i = self.review_url,
        );
        let path = self.dir.path().join(format!("{relay_id}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes relay `id`'s config (on a shared subscription when `share` is set),
    /// starts `cloud-relay run` and waits until it is ready.
    pub async fn start_relay(&self, id: &str, share: Option<&str>) -> RunningRelay {
        let port = test_support::free_port();
        let config = self.relay_config(id, share, port, "");
        let log = self.dir.path().join(format!("{id}.log"));
        let mut process = self.spawn_relay(&config, &log);
        wait_relay_ready(port, &mut process, &log).await;
        RunningRelay {
            process,
            port,
            config,
            log,
        }
    }

    pub fn spawn_relay(&self, config: &Path, log: &Path) -> ChildGuard {
        self.spawn_relay_logging(config, log, Some("info,cloud_relay=debug"))
    }

    /// [`Bench::spawn_relay`] with `RUST_LOG` set to `filter`, or, with `None`, unset:
    /// the relay logs at its default level, as an operator's would.
    pub fn spawn_relay_logging(
        &self,
        config: &Path,
        log: &Path,
        filter: Option<&str>,
    ) -> ChildGuard {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cloud-relay"));
        command
            .args(["run", "--config"])
            .arg(config)
            .envs(self.credentials.env())
            .env_remove("RUST_LOG");
        if let Some(filter) = filter {
            command.env("RUST_LOG", filter);
        }
        spawn_with_log(&mut command, log).unwrap()
    }

    /// How many times client `id` connected to the broker (from Mosquitto's log).
    pub fn broker_connections(&self, id: &str) -> usize {
        let needle = format!(" as {id} (");
        self.broker
            .log()
            .lines()
            .filter(|l| l.contains("New client connected") && l.contains(&needle))
            .count()
    }

    /// Keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = vec![];
        let mut token = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap();
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            token = out.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return keys;
            }
        }
    }

    pub async fn get(&self, key: &str) -> Vec<u8> {
        let out = self
            .s3
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap();
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }

    pub fn loop_count(&self) -> usize {
        self.review.read(|s| s.loops.len())
    }

    /// Answers every loop waiting for a reviewer with `label`; returns how many.
    pub async fn answer_all(&self, label: &str) -> usize {
        let mut n = 0;
        for l in self.review.in_progress_loops() {
            let now = protocol::timestamp::now_ms() as i64;
            let answer =
                HumanAnswer::classification("annotatedResult", label, "w1", now - 1000, now, None);
            self.review
                .complete_loop(&l.name, vec![answer])
                .await
                .unwrap();
            n += 1;
        }
        n
    }
}

/// Starts `local-aws object-store` on a free port over `dir/objects`, with bucket
/// [`BUCKET`] and the key pair of `credentials` (the one the bench's clients sign with).
/// (It was `cloud-relay object-store`, which moved to local-aws.)
fn start_object_store(dir: &Path, credentials: &Path) -> (String, ChildGuard) {
    let port = test_support::free_port();
    let log = dir.join("object-store.log");
    let mut guard = spawn_with_log(
        Command::new(test_support::workspace_bin("local-aws"))
            .args(["object-store", "--bucket", BUCKET, "--root"])
            .arg(dir.join("objects"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--credentials")
            .arg(credentials),
        &log,
    )
    .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            guard.is_running() && start.elapsed() < Duration::from_secs(20),
            "object store did not start:\n{}",
            test_support::log_tail(&log, 40)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (format!("http://127.0.0.1:{port}"), guard)
}

/// Fetches `/metrics` from a relay and reads one sample.
pub async fn metric(port: u16, name: &str) -> Option<u64> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let response = test_support::http::get(&url).await.ok()?;
    cloud_relay::relay::metrics::sample(&response.text(), name)
}

#[derive(Clone)]
pub struct TestEvent {
    pub meta: EventMeta,
    pub image: Vec<u8>,
}

/// `count` events from 10 devices; every 8th is 300 KB (3 chunks), the rest 4-20 KB.
pub fn events(count: u64, seed: u64) -> Vec<TestEvent> {
    (0..count)
        .map(|n| {
            let size = if n % 8 == 3 {
                300_000
            } else {
                4_000 + (n as usize * 797) % 16_000
            };
            let image = image(seed * 100_000 + n, size);
            let mut random = [0u8; 10];
            random[..8].copy_from_slice(&(seed * 100_000 + n).to_be_bytes());
            let meta = EventMeta {
                v: EVENT_VERSION,
                event_id: EventId::from_unix_ms(1_795_597_200_000 + n, random),
                device_id: DeviceId::new(format!("pi-{}", n % 10)).unwrap(),
                captured_at: "2026-11-25T09:00:00.000Z".into(),
                model: ModelInfo {
                    name: "dogs".into(),
                    version: "3".into(),
                    sha256: "ab".repeat(32),
                },
                top_k: vec![TopK {
                    index: 2,
                    label: "pug".into(),
                    score: 0.41,
                }],
                reasons: vec![ReviewReason::LowConfidence {
                    score: 0.41,
                    threshold: 0.6,
                }],
                image: ImageInfo::describe(ContentType::Jpeg, 640, 480, &image),
                source: Some(format!("frame-{n}.jpg")),
            };
            TestEvent { meta, image }
        })
        .collect()
}

/// Plays the agents: publishes events over MQTT (QoS 1, TLS, one client per device
/// would do too; one client serves all here) and keeps every event until a stored
/// receipt for it arrives, resending it after `resend_after`, like edge-agent's outbox.
pub struct Agent {
    pub client: AsyncClient,
    pub receipts: Arc<Mutex<HashMap<EventId, Receipt>>>,
    pub rejected: Arc<Mutex<HashSet<EventId>>>,
    pub reviews: Arc<Mutex<HashSet<EventId>>>,
    /// Every receipt, stored or rejected, in the order they came.
    pub all_receipts: Arc<Mutex<Vec<Receipt>>>,
    /// Events published more than once (resends after no receipt came).
    pub resends: Arc<AtomicU32>,
    topics: Topics,
    _task: tokio::task::JoinHandle<()>,
}

/// A relay started by [`Bench::start_relay`], with what a test needs to restart,
/// query or read it.
pub struct RunningRelay {
    pub process: ChildGuard,
    /// Its metrics port.
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    /// [`Agent::deliver`] on a task of its own, so the test can disturb the relay
    /// meanwhile.
    pub fn deliver_in_background(
        self: &Arc<Self>,
        events: &[TestEvent],
        resend_after: Duration,
        deadline: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let (agent, events) = (self.clone(), events.to_vec());
        tokio::spawn(async move { agent.deliver(&events, resend_after, deadline).await })
    }

    pub async fn connect(broker: &Mosquitto, id: &str) -> Agent {
        let thing = broker.certs().client(id);
        let mut o = MqttOptions::new(id, broker.host(), broker.port());
        o.set_keep_alive(Duration::from_secs(10));
        o.set_max_packet_size(Some(128 * 1024 + 1024));
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(3600));
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: broker.certs().ca_pem.clone().into_bytes(),
            alpn: None,
            client_auth: Some((thing.cert_pem.into_bytes(), thing.key_pem.into_bytes())),
        }));
        let (client, mut eventloop) = AsyncClient::new(o, 1024);
        let receipts: Arc<Mutex<HashMap<EventId, Receipt>>> = Arc::default();
        let rejected: Arc<Mutex<HashSet<EventId>>> = Arc::default();
        let reviews: Arc<Mutex<HashSet<EventId>>> = Arc::default();
        let subscribed = Arc::new(AtomicU32::new(0));
        let all_receipts: Arc<Mutex<Vec<Receipt>>> = Arc::default();
        let all = all_receipts.clone();
        let (r, j, v, c, sub) = (
            receipts.clone(),
            rejected.clone(),
            reviews.clone(),
            client.clone(),
            subscribed.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = c.try_subscribe("edge-a2i/+/receipts", QoS::AtLeastOnce);
                        let _ = c.try_subscribe("edge-a2i/+/reviews", QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        sub.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if p.topic.ends_with(b"/reviews") {
                            if let Ok(review) = protocol::ReviewResult::from_json(&p.payload) {
                                v.lock().unwrap().insert(review.event_id);
                            }
                        } else if let Ok(receipt) = Receipt::from_json(&p.payload) {
                            all.lock().unwrap().push(receipt.clone());
                            if receipt.is_stored() {
                                r.lock().unwrap().insert(receipt.event_id, receipt);
                            } else {
                                j.lock().unwrap().insert(receipt.event_id);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        test_support::wait_until_async(
            Duration::from_secs(20),
            "the agent's subscriptions",
            || {
                let sub = subscribed.clone();
                async move { sub.load(Ordering::SeqCst) >= 2 }
            },
        )
        .await;
        Agent {
            client,
            receipts,
            rejected,
            reviews,
            all_receipts,
            resends: Arc::default(),
            topics: Topics::default(),
            _task: task,
        }
    }

    pub async fn publish(&self, e: &TestEvent) {
        let topic = self.topics.events(&e.meta.device_id);
        for message in encode_event(&e.meta, &e.image, topic.len(), &Limits::default()).unwrap() {
            self.client
                .publish(topic.clone(), QoS::AtLeastOnce, false, message)
                .await
                .unwrap();
        }
    }

    pub async fn publish_raw(&self, device: &str, payload: Vec<u8>) {
        let topic = format!("edge-a2i/{device}/events");
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    pub fn receipted(&self) -> usize {
        self.receipts.lock().unwrap().len()
    }

    /// Publishes all events, then resends those without a receipt every
    /// `resend_after` until all are receipted; panics at `deadline`.
    pub async fn deliver(&self, events: &[TestEvent], resend_after: Duration, deadline: Duration) {
        let start = Instant::now();
        let mut sent_at: HashMap<EventId, Instant> = HashMap::new();
        for e in events {
            self.publish(e).await;
            sent_at.insert(e.meta.event_id, Instant::now());
        }
        loop {
            let missing: Vec<&TestEvent> = {
                let r = self.receipts.lock().unwrap();
                events
                    .iter()
                    .filter(|e| !r.contains_key(&e.meta.event_id))
                    .collect()
            };
            if missing.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < deadline,
                "{} of {} events still without a receipt after {deadline:?}",
                missing.len(),
                events.len()
            );
            for e in missing {
                if sent_at[&e.meta.event_id].elapsed() >= resend_after {
                    self.resends.fetch_add(1, Ordering::SeqCst);
                    self.publish(e).await;
                    sent_at.insert(e.meta.event_id, Instant::now());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Checks the end state: exactly the events' images (byte-identical) with their
/// metadata, and exactly one loop per event.
pub async fn assert_stored_exactly(bench: &Bench, events: &[TestEvent]) {
    let images: Vec<String> = bench
        .keys("events/")
        .await
        .into_iter()
        .filter(|k| k.ends_with(".jpg"))
        .collect();
    let metas: Vec<String> = bench
        .keys("events/")
        .await
        .into_iter()
        .filter(|k| k.ends_with(".json"))
        .collect();
    assert_eq!(images.len(), events.len(), "one image object per event");
    assert_eq!(metas.len(), events.len(), "one metadata object per event");
    let by_id: HashMap<String, &TestEvent> = events
        .iter()
        .map(|e| (e.meta.event_id.to_string(), e))
        .collect();
    for key in &images {
        let id = key.rsplit('/').next().unwrap().trim_end_matches(".jpg");
        let e = by_id
            .get(id)
            .unwrap_or_else(|| panic!("unexpected image {key}"));
        assert_eq!(bench.get(key).await, e.image, "{key} is byte-identical");
        let head = bench
            .s3
            .head_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_type(), Some("image/jpeg"));
    }
    assert_eq!(bench.loop_count(), events.len(), "one human loop per event");
}

/// Waits until there is one manifest row per event, and checks they parse.
pub async fn assert_rows_exactly(bench: &Bench, events: &[TestEvent], deadline: Duration) {
    let want = events.len();
    test_support::wait_until_async(deadline, "one manifest row per event", || async {
        bench.keys("manifest/rows/").await.len() >= want
    })
    .await;
    let rows = bench.keys("manifest/rows/").await;
    assert_eq!(rows.len(), want, "exactly one row per event");
    let ids: HashSet<String> = events
        .iter()
        .map(|e| format!("manifest/rows/{}.json", e.meta.event_id))
        .collect();
    for key in &rows {
        assert!(ids.contains(key), "unexpected row {key}");
        let line = String::from_utf8(bench.get(key).await).unwrap();
        let row = protocol::manifest::ManifestRow::parse(line.trim_end(), "label").unwrap();
        assert_eq!(row.metadata.class_name, "pug");
        assert_eq!(row.class_index, 2);
    }
}

/// Waits until a relay's metrics endpoint answers (it is up after its health check
/// and its subscription).
pub async fn wait_relay_ready(port: u16, relay: &mut ChildGuard, log: &Path) {
    let start = Instant::now();
    while metric(port, "cloud_relay_messages_in_total")
        .await
        .is_none()
    {
        assert!(
            relay.is_running(),
            "relay exited:\n{}",
            test_support::log_tail(log, 40)
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "relay not ready:\n{}",
            test_support::log_tail(log, 40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
