//! The daemon tests' cast: the real `edge-agent run` binary with a generated config,
//! and a receiver that plays the relay's part (reassembles and verifies events, keeps
//! them, sends receipts) over a real Mosquitto configured like IoT Core.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{decode, ChunkAssembler, EventMeta, Receipt, Status, Topics};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use test_support::{spawn_with_log, ChildGuard, Mosquitto};

pub mod updates;

pub const DEVICE: &str = "pi-test";

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/samples")
}

/// (file name, top-1 below 0.35?) for the six samples with the default model.
pub const SAMPLES: [(&str, bool); 6] = [
    ("astronaut.jpg", false),
    ("camera_gray.png", true),
    ("chelsea.jpg", false),
    ("coffee.png", true),
    ("hubble.jpg", true),
    ("rocket.jpg", true),
];

/// Drops one copy of every sample as `{prefix}-{name}`; returns the names the policy
/// should select.
pub fn drop_samples(agent: &Agent, prefix: &str) -> BTreeSet<String> {
    let mut selected = BTreeSet::new();
    for (sample, unsure) in SAMPLES {
        let name = format!("{prefix}-{sample}");
        drop_frame(&agent.inbox, &name, sample);
        if unsure {
            selected.insert(name);
        }
    }
    selected
}

/// The source file names of the events the receiver holds.
pub fn names(receiver: &Receiver) -> BTreeSet<String> {
    receiver.sources().into_iter().collect()
}

/// Writes a frame into the inbox the way a camera tool should: write, then rename.
pub fn drop_frame(inbox: &Path, name: &str, sample: &str) {
    let tmp = inbox.join(format!(".{name}.part"));
    std::fs::copy(samples().join(sample), &tmp).unwrap();
    std::fs::rename(&tmp, inbox.join(name)).unwrap();
}

pub struct Agent {
    pub dir: PathBuf,
    pub inbox: PathBuf,
    pub config: PathBuf,
    child: Option<ChildGuard>,
}

impl Agent {
    /// Config for a broker at `port`, with `extra` TOML appended to `[outbox]`.
    pub fn new(dir: &Path, broker: &Mosquitto, outbox_extra: &str) -> Agent {
        Agent::configure(dir, broker, DEVICE, "", outbox_extra)
    }

    /// Config as device `device` (its client certificate names it), with `mqtt_extra`
    /// appended to `[mqtt]` and `outbox_extra` to `[outbox]`. Writing it again over
    /// an earlier agent's directory keeps its state (outbox) and inbox.
    pub fn configure(
        dir: &Path,
        broker: &Mosquitto,
        device: &str,
        mqtt_extra: &str,
        outbox_extra: &str,
    ) -> Agent {
        let inbox = dir.join("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        let client = broker.certs().client(device);
        let config = format!(
            r#"
[device]
id = "{device}"
state_dir = "{state}"
status_interval = "1s"

[mqtt]
host = "127.0.0.1"
port = {port}
keep_alive = "5s"
reconnect_min = "100ms"
reconnect_max = "1s"
{mqtt_extra}

[mqtt.tls]
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"

[outbox]
resend_after = "2s"
resend_max = "4s"
{outbox_extra}

[policy]
min_confidence = 0.35
min_margin = "off"
max_reviews_per_hour = "off"
[policy.near_duplicate]
enabled = false

[[source]]
kind = "folder"
path = "{inbox}"
after = "delete"
"#,
            state = dir.join("state").display(),
            port = broker.port(),
            ca = broker.certs().ca_cert.display(),
            cert = client.cert.display(),
            key = client.key.display(),
            inbox = inbox.display(),
        );
        let path = dir.join("agent.toml");
        std::fs::write(&path, config).unwrap();
        Agent {
            dir: dir.to_path_buf(),
            inbox,
            config: path,
            child: None,
        }
    }

    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// Starts it with these environment variables added (e.g. systemd's).
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        let log = self.dir.join("agent.log");
        let child = spawn_with_log(
            Command::new(env!("CARGO_BIN_EXE_edge-agent"))
                .arg("run")
                .arg("--config")
                .arg(&self.config)
                .env("RUST_LOG", "info")
                .envs(env.iter().copied()),
            &log,
        )
        .unwrap();
        self.child = Some(child);
    }

    /// The running agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("started").id()
    }

    /// Waits up to `deadline` for the agent to exit by itself.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        self.child.as_mut().expect("started").wait_timeout(deadline)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// SIGTERM and wait: returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => c.terminate(Duration::from_secs(20)).success(),
            None => true,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// As [`Agent::inbox_is_empty`], with the `rejected/` folder of refused frames.
    pub fn inbox_is_empty_but_rejected(&self) -> bool {
        std::fs::read_dir(&self.inbox)
            .map(|d| {
                d.filter_map(|e| e.ok()).all(|e| {
                    let name = e.file_name();
                    name == "rejected" || name.as_encoded_bytes().first() == Some(&b'.')
                })
            })
            .unwrap_or(false)
    }

    pub fn inbox_is_empty(&self) -> bool {
        std::fs::read_dir(&self.inbox)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .all(|e| e.file_name().to_string_lossy().starts_with('.'))
            })
            .unwrap_or(false)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- agent log ----\n{}",
                test_support::log_tail(&self.dir.join("agent.log"), 60)
            );
        }
    }
}

/// What the receiver has seen.
#[derive(Default)]
pub struct Received {
    /// Event id -> (meta, image bytes), each verified by the assembler.
    pub events: HashMap<String, (EventMeta, Vec<u8>)>,
    /// Event messages received in all (duplicates and resends included).
    pub messages: usize,
    pub last_status: Option<Status>,
    /// Rejections sent (events answered `rejected`, resends included).
    pub rejected: usize,
}

/// How the receiver answers a verified event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Like the relay: `stored`, unless the meta names another device than the topic
    /// (`rejected`, `device_mismatch`).
    Relay,
    /// `rejected` with this code, whatever the event.
    Reject(protocol::RejectCode),
}

/// Plays the relay: subscribes to events and status, verifies, stores, receipts.
pub struct Receiver {
    pub received: Arc<Mutex<Received>>,
    /// How events are answered from now on.
    pub answer: Arc<Mutex<Answer>>,
    runtime: tokio::runtime::Runtime,
    task: Option<tokio::task::JoinHandle<()>>,
    name: String,
}

impl Receiver {
    pub fn start(broker: &Mosquitto, name: &str) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut r = Receiver {
            received: Arc::new(Mutex::new(Received::default())),
            answer: Arc::new(Mutex::new(Answer::Relay)),
            runtime,
            task: None,
            name: name.to_string(),
        };
        r.resume(broker);
        r
    }

    /// (Re)connects; what was received before is kept.
    pub fn resume(&mut self, broker: &Mosquitto) {
        let client_cert = broker.certs().client(&self.name);
        let mut options = MqttOptions::new(self.name.clone(), broker.host(), broker.port());
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(256 * 1024, 256 * 1024)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca: broker.certs().ca_pem.clone().into_bytes(),
                alpn: None,
                client_auth: Some((
                    client_cert.cert_pem.into_bytes(),
                    client_cert.key_pem.into_bytes(),
                )),
            }));
        let received = self.received.clone();
        let answer = self.answer.clone();
        let topics = Topics::default();
        self.task = Some(self.runtime.spawn(async move {
            let (client, mut eventloop) = AsyncClient::new(options, 64);
            let mut assembler = ChunkAssembler::new(Default::default());
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        client
                            .subscribe(topics.events_filter(), QoS::AtLeastOnce)
                            .await
                            .unwrap();
                        client
                            .subscribe(topics.filter(protocol::TopicKind::Status), QoS::AtLeastOnce)
                            .await
                            .unwrap();
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let (device, kind) = match topics.parse(&p.topic) {
                            Ok(x) => x,
                            Err(_) => continue,
                        };
                        if kind == protocol::TopicKind::Status {
                            if let Ok(s) = Status::from_json(&p.payload) {
                                received.lock().unwrap().last_status = Some(s);
                            }
                            continue;
                        }
                        received.lock().unwrap().messages += 1;
                        let message = decode(&p.payload).expect("the agent sends valid envelopes");
                        if let Some(done) = assembler.offer_message(message, 0).expect("verifies") {
                            let id = done.meta.event_id;
                            let answer = *answer.lock().unwrap();
                            let receipt = match answer {
                                Answer::Relay if done.meta.device_id != device => {
                                    Receipt::rejected(
                                        id,
                                        protocol::RejectCode::DeviceMismatch,
                                        format!(
                                            "event names device {} but was published by {device}",
                                            done.meta.device_id
                                        ),
                                    )
                                }
                                Answer::Relay => {
                                    received.lock().unwrap().events.insert(
                                        id.to_string(),
                                        (done.meta.clone(), done.image.clone()),
                                    );
                                    Receipt::stored(id, "s3://test/image")
                                }
                                Answer::Reject(code) => {
                                    received.lock().unwrap().rejected += 1;
                                    Receipt::rejected(id, code, "rejected by the test")
                                }
                            };
                            client
                                .publish(
                                    topics.receipts(&device),
                                    QoS::AtLeastOnce,
                                    false,
                                    receipt.to_json(),
                                )
                                .await
                                .unwrap();
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
    }

    /// Disconnects (abruptly); nothing more is received until `resume`.
    pub fn pause(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub fn event_count(&self) -> usize {
        self.received.lock().unwrap().events.len()
    }

    pub fn status(&self) -> Option<Status> {
        self.received.lock().unwrap().last_status.clone()
    }

    /// The source file names of the events received.
    pub fn sources(&self) -> Vec<String> {
        let r = self.received.lock().unwrap();
        let mut v: Vec<String> = r
            .events
            .values()
            .filter_map(|(m, _)| m.source.clone())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.pause();
    }
}
