//! The end-to-end tests' cast: where the workspace's binaries are, the servers as
//! processes (object store, review service), the two daemons that get killed and
//! restarted, their configs, a reviewer on the reviewer page, a monitoring client for
//! the agent's status, and the operator's manifest export.

// Each test file uses its own part of the cast.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{DeviceId, Status, Topics};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use test_support::{http, log_tail, spawn_with_log, wait_for, wait_until, ChildGuard, Mosquitto};

/// The agent's thing name and the relay's client id: also their certificates' CNs.
pub const DEVICE: &str = "pi-e2e";
pub const RELAY: &str = "relay-e2e";
pub const BUCKET: &str = "frames";
/// The flow definition `cloud-relay setup` creates; the review service's account.
pub const FLOW: &str = "e2e-dogs";
pub const ACCOUNT: &str = "000000000000";
/// Who answers on the reviewer page, and the page's access token.
pub const REVIEWER: &str = "ann";
pub const TOKEN: &str = "e2e-reviewer-page-token-0123456789";
/// The repository's sample photos; copies of them are the frames. Three of them are
/// over 128 KiB and travel as several chunks.
pub const SAMPLES: [&str; 6] = [
    "astronaut.jpg",
    "camera_gray.png",
    "chelsea.jpg",
    "coffee.png",
    "hubble.jpg",
    "rocket.jpg",
];
/// Frames arrive in this many batches of one copy of each sample (see the test).
pub const BATCHES: usize = 4;
pub const FRAMES: usize = BATCHES * SAMPLES.len();
/// Every wait for the system's progress; generous for 2 busy cores, never slept.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The repository's root (the e2e package is its `tests/`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Local mode's credentials file for this test process (one test per binary): the
/// object store makes it at its start (fresh random keys), the review service reads
/// it, and every command signs with it.
pub fn credentials_file() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn credentials_path() -> PathBuf {
    credentials_file().join("credentials")
}

/// An S3 client of the local object store, signing with its key pair.
pub fn local_s3_client(s3_url: &str) -> aws_sdk_s3::Client {
    let key = local_aws::credentials::LocalSecrets::load(&credentials_path())
        .unwrap()
        .aws;
    test_support::s3_client_signing(s3_url, &key.access_key_id, &key.secret_access_key)
}

/// `name ARGS` with the AWS variables the relay's SDK clients need pointed at the
/// local servers' credentials file, as a user's shell would
/// (`AWS_SHARED_CREDENTIALS_FILE`; the servers check the signatures).
pub fn command(name: &str) -> Command {
    let mut c = Command::new(test_support::workspace_bin(name));
    c.env("AWS_SHARED_CREDENTIALS_FILE", credentials_path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("RUST_LOG", "info");
    c
}

/// The `host:port` a server prints as `listening on http://ADDR` (its log has stdout).
pub fn listening_addr(child: &mut ChildGuard, log: &Path) -> String {
    wait_for(
        DEADLINE,
        &format!("`listening on` in {}", log.display()),
        || {
            assert!(child.is_running(), "exited:\n{}", log_tail(log, 40));
            let text = std::fs::read_to_string(log).ok()?;
            let line = text
                .lines()
                .find(|l| l.starts_with("listening on http://"))?;
            Some(line.trim_start_matches("listening on http://").to_owned())
        },
    )
}

/// The S3 server: a directory served over the S3 API, bucket [`BUCKET`].
pub fn start_object_store(root: &Path, log: &Path) -> (ChildGuard, String) {
    let mut child = spawn_with_log(
        command("local-aws")
            .args([
                "object-store",
                "--listen",
                "127.0.0.1:0",
                "--bucket",
                BUCKET,
            ])
            .arg("--root")
            .arg(root)
            .arg("--credentials")
            .arg(credentials_path()),
        log,
    )
    .unwrap();
    let addr = listening_addr(&mut child, log);
    (child, format!("http://{addr}"))
}

/// The review service (A2I runtime API, flow definitions, reviewer page with
/// [`TOKEN`]), writing `output.json` into the object store's directory `objects`.
/// The one place that knows which binary serves it.
pub fn start_review_service(state: &Path, objects: &Path, log: &Path) -> (ChildGuard, String) {
    let mut child = spawn_with_log(
        command("local-aws")
            .args(["review-service", "--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state)
            .arg("--output-dir")
            .arg(objects)
            .arg("--credentials")
            .arg(credentials_path())
            .args(["--review-token", TOKEN]),
        log,
    )
    .unwrap();
    let addr = listening_addr(&mut child, log);
    (child, addr)
}

/// A daemon that the test kills and starts again: same command, one log.
pub struct Daemon {
    name: &'static str,
    args: Vec<String>,
    log: PathBuf,
    child: Option<ChildGuard>,
}

impl Daemon {
    pub fn new(name: &'static str, args: &[&str], log: PathBuf) -> Daemon {
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        Daemon {
            name,
            args,
            log,
            child: None,
        }
    }

    /// Starts it and waits until its log says `ready` once more than before.
    pub fn start(&mut self, ready: &str) {
        let before = self.count(ready);
        let child = spawn_with_log(command(self.name).args(&self.args), &self.log).unwrap();
        self.child = Some(child);
        wait_until(DEADLINE, &format!("{} to log {ready:?}", self.name), || {
            let child = self.child.as_mut().unwrap();
            assert!(child.is_running(), "{} exited", self.name);
            self.count(ready) > before
        });
    }

    /// The running process's id (a swap must not change it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no shutdown, nothing flushed.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        assert!(child.is_running(), "{} died before its kill", self.name);
        child.kill();
    }

    fn count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches(needle)
            .count()
    }
}

/// Prints every log's tail when the test fails (Mosquitto prints its own).
pub struct Logs(pub Vec<PathBuf>);

impl Drop for Logs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.0 {
                eprintln!("---- {} ----\n{}", log.display(), log_tail(log, 60));
            }
        }
    }
}

pub fn relay_config(dir: &Path, broker: &Mosquitto, s3_url: &str, review_url: &str) -> PathBuf {
    let certs = broker.certs();
    let client = certs.client(RELAY);
    let text = format!(
        r#"[mqtt]
host = "127.0.0.1"
port = {port}
client_id = "{RELAY}"
keep_alive = "5s"
session_expiry = "1h"

[mqtt.tls]
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"

[s3]
bucket = "{BUCKET}"
endpoint_url = "{s3_url}"

[a2i]
flow_definition_arn = "arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/{FLOW}"
endpoint_url = "{review_url}"
sagemaker_endpoint_url = "{review_url}"

[a2i.setup]
workteam_arn = "arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/reviewers"
role_arn = "arn:aws:iam::{ACCOUNT}:role/a2i"

[model]
labels_file = "{labels}"

[intake]
chunk_timeout = "20s"

[results]
poll_interval = "300ms"
publish_reviews = true

[retry]
initial_backoff = "50ms"
max_backoff = "1s"

[metrics]
listen = "127.0.0.1:{metrics}"
"#,
        port = broker.port(),
        ca = certs.ca_cert.display(),
        cert = client.cert.display(),
        key = client.key.display(),
        labels = repo().join("models/labels.txt").display(),
        metrics = test_support::free_port(),
    );
    let path = dir.join("relay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every frame is sent for review: a frame the thresholds find confident is still
/// picked by the audit (rate 1), and no rate limit or near-duplicate check holds the
/// identical copies back.
pub fn agent_config(dir: &Path, broker: &Mosquitto, inbox: &Path) -> PathBuf {
    agent_config_with(dir, broker, inbox, "")
}

/// [`agent_config`] with `extra` TOML (whole tables) appended.
pub fn agent_config_with(dir: &Path, broker: &Mosquitto, inbox: &Path, extra: &str) -> PathBuf {
    let client = broker.certs().client(DEVICE);
    let text = format!(
        r#"[device]
id = "{DEVICE}"
state_dir = "{state}"
status_interval = "1s"

[model]
manifest = "{model}"
backend = "tflite"

[mqtt]
host = "127.0.0.1"
port = {port}
keep_alive = "5s"
reconnect_min = "100ms"
reconnect_max = "1s"

[mqtt.tls]
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"

[outbox]
resend_after = "3s"
resend_max = "6s"

[policy]
min_confidence = 0.35
min_margin = "off"
audit_rate = 1.0
max_reviews_per_hour = "off"
[policy.near_duplicate]
enabled = false

[[source]]
kind = "folder"
path = "{inbox}"
after = "delete"

{extra}
"#,
        state = dir.join("agent-state").display(),
        model = repo().join("models/dogs_mobilenetv2.toml").display(),
        port = broker.port(),
        ca = broker.certs().ca_cert.display(),
        cert = client.cert.display(),
        key = client.key.display(),
        inbox = inbox.display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Drops batch `b` into the inbox the way a camera tool should: write, then rename.
pub fn drop_batch(inbox: &Path, b: usize) -> Vec<String> {
    SAMPLES
        .iter()
        .map(|sample| {
            let name = format!("b{b}-{sample}");
            let tmp = inbox.join(format!(".{name}.part"));
            std::fs::copy(repo().join("models/samples").join(sample), &tmp).unwrap();
            std::fs::rename(&tmp, inbox.join(&name)).unwrap();
            name
        })
        .collect()
}

/// The reviewer's side of the reviewer page (its JSON API, token as a bearer).
pub struct Reviewer {
    pub addr: String,
    /// Event id -> the label given.
    pub answered: BTreeMap<String, String>,
}

impl Reviewer {
    pub fn new(addr: String) -> Reviewer {
        Reviewer {
            addr,
            answered: BTreeMap::new(),
        }
    }

    fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut request = http::Request::new(method, format!("http://{}{path}", self.addr))
            .header("Authorization", format!("Bearer {TOKEN}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send_blocking().unwrap();
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    pub fn queue(&self) -> Value {
        self.api(
            "GET",
            &format!("/review/api/queue?reviewer={REVIEWER}"),
            None,
        )
    }

    /// Human loops the review service has seen: waiting for an answer or completed.
    pub fn loops(&self) -> usize {
        let q = self.queue();
        q["items"].as_array().unwrap().len() + q["progress"]["done"].as_u64().unwrap() as usize
    }

    /// Answers every loop waiting, cycling through each loop's choices so the rows
    /// differ; returns how many.
    pub fn answer_all(&mut self) -> usize {
        let items = self.queue()["items"].as_array().unwrap().clone();
        for item in &items {
            let choices = item["choices"].as_array().unwrap();
            let label = choices[self.answered.len() % choices.len()]
                .as_str()
                .unwrap()
                .to_owned();
            self.answer(item, &label);
        }
        items.len()
    }

    /// Answers one queue item with `label`, as the reviewer page's button does.
    pub fn answer(&mut self, item: &Value, label: &str) {
        let name = item["name"].as_str().unwrap();
        let r = self.api(
            "POST",
            &format!("/review/api/loops/{name}/answer"),
            Some(json!({"reviewer": REVIEWER, "label": label, "time_spent_seconds": 1.5})),
        );
        assert_eq!(r["status"], "completed", "{r}");
        let event_id = item["event_id"].as_str().unwrap().to_owned();
        assert!(
            self.answered.insert(event_id, label.to_owned()).is_none(),
            "a second loop for one event: {item}"
        );
    }
}

/// The agent's retained status messages, as a monitoring client sees them: (how many
/// arrived, the latest).
pub type Statuses = Arc<Mutex<(usize, Option<Status>)>>;

pub fn watch_status(broker: &Mosquitto) -> Statuses {
    let cert = broker.certs().client("e2e-monitor");
    let mut options = MqttOptions::new("e2e-monitor", broker.host(), broker.port());
    options
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(64 * 1024, 64 * 1024)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: broker.certs().ca_pem.clone().into_bytes(),
            alpn: None,
            client_auth: Some((cert.cert_pem.into_bytes(), cert.key_pem.into_bytes())),
        }));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let topic = Topics::default().status(&DeviceId::new(DEVICE).unwrap());
    let statuses = Statuses::default();
    let seen = statuses.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client.subscribe(&topic, QoS::AtLeastOnce).await.unwrap();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let status = Status::from_json(&p.payload).expect("a valid status");
                    let mut s = seen.lock().unwrap();
                    *s = (s.0 + 1, Some(status));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    statuses
}

/// `cloud-relay manifest export`: the rows, one JSON line each.
pub fn export_manifest(config: &Path) -> Vec<String> {
    let out = command("cloud-relay")
        .args(["manifest", "export", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "manifest export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every key under `prefix` in [`BUCKET`], through the S3 API.
pub async fn keys(s3: &aws_sdk_s3::Client, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("listing {prefix}: {e}"));
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .map(str::to_owned),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return keys;
        }
    }
}

/// The frame (source file name) event `event_id` was made from, from the relay's event
/// index in S3.
pub async fn event_source(s3: &aws_sdk_s3::Client, event_id: &str) -> String {
    let key = format!("manifest/events/{event_id}.json");
    let object = s3
        .get_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    let bytes = object.body.collect().await.unwrap().into_bytes();
    let meta: Value = serde_json::from_slice(&bytes).unwrap();
    meta["source"]
        .as_str()
        .unwrap_or_else(|| panic!("{key} names no source: {meta}"))
        .to_owned()
}

/// The model's labels in class-index order.
pub fn labels() -> Vec<String> {
    std::fs::read_to_string(repo().join("models/labels.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
