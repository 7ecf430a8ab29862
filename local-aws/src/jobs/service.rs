//! The Jobs service's I/O: [`Jobs`], the shared handle that applies operations to the
//! [`JobsState`] and persists it, and [`run_mqtt`], the MQTT adapter that serves the
//! Jobs device MQTT API (AWS IoT Developer Guide, "Jobs device MQTT API operations").
//!
//! Persistence: the whole state is one JSON file, `<state_dir>/jobs.json`, rewritten
//! (temp file, fsync, rename, directory fsync) after every change and before the
//! answer goes out, so an accepted update survives a crash. An operation runs on a
//! copy of the state; if the write fails, the copy is dropped and nothing changed. The
//! state is bounded (see [`super::state`]), so the rewrite stays small.
//!
//! MQTT: one rumqttc client (MQTT 3.1.1, client id [`CLIENT_ID`]) subscribed to
//! `$aws/things/+/jobs/start-next` and `$aws/things/+/jobs/+/update`; answers go to
//! the request topic plus `/accepted` or `/rejected`, and `notify-next` messages to
//! each thing whose next pending execution changed. The rollout is driven by a tick
//! every second. The broker's reading side and the answering side are two tasks joined
//! by a bounded channel, so a slow answer holds back reading (and with it the broker)
//! instead of growing memory; undelivered `notify-next` messages are bounded too (a
//! device asks with `start-next` whenever it connects, so dropping old ones loses
//! nothing).

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protocol::jobs::{JobsErrorResponse, JobsTopic, JobsTopics, StartNextRequest, UpdateRequest};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use super::state::{JobsState, NextChange};
use crate::review_service::persist::write_atomically;

/// The service's MQTT client id.
pub const CLIENT_ID: &str = "local-aws-jobs";
const STATE_FILE: &str = "jobs.json";
const STATE_VERSION: u32 = 1;
/// `notify-next` messages kept while the broker is unreachable.
const MAX_UNSENT: usize = 10_000;
const TICK: Duration = Duration::from_secs(1);
/// Device requests waiting for an answer; more are dropped (and logged).
const MAX_QUEUED_REQUESTS: usize = 1024;
/// The filters the service subscribes to.
pub const FILTERS: [&str; 2] = [
    "$aws/things/+/jobs/start-next",
    "$aws/things/+/jobs/+/update",
];

#[derive(Debug, thiserror::Error)]
pub enum JobsStoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a Jobs state file: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: state version {found} is not supported (expected {STATE_VERSION})")]
    Version { path: PathBuf, found: u32 },
}

#[derive(Serialize, Deserialize)]
struct StateFile<S> {
    version: u32,
    state: S,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Inner {
    state: Mutex<JobsState>,
    path: PathBuf,
    /// `notify-next` messages to publish, oldest first.
    unsent: Mutex<VecDeque<NextChange>>,
    wake: Notify,
    /// Subscribed to the request topics on the current broker connection.
    subscribed: AtomicBool,
}

/// The Jobs service's state, shared by the MQTT adapter and the control API.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Jobs {
    /// Opens (or creates) `<state_dir>/jobs.json`.
    pub fn open(state_dir: &Path) -> Result<Self, JobsStoreError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| JobsStoreError::Io { path, source }
        };
        std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
        let path = state_dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: StateFile<serde_json::Value> =
                    serde_json::from_slice(&bytes).map_err(|source| JobsStoreError::Corrupt {
                        path: path.clone(),
                        source,
                    })?;
                if file.version != STATE_VERSION {
                    return Err(JobsStoreError::Version {
                        path,
                        found: file.version,
                    });
                }
                serde_json::from_value(file.state).map_err(|source| JobsStoreError::Corrupt {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => JobsState::default(),
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(Jobs {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                path,
                unsent: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                subscribed: AtomicBool::new(false),
            }),
        })
    }

    /// Runs `f` on a copy of the state; if the copy changed, writes it to disk and
    /// only then makes it the state. Its `notify-next` messages are queued for the MQTT
    /// adapter. Blocking (disk): call from a blocking context or [`Self::apply`].
    pub fn apply_blocking<R>(
        &self,
        f: impl FnOnce(&mut JobsState) -> R,
    ) -> Result<R, JobsStoreError> {
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = state.clone();
        let r = f(&mut next);
        let changes = next.drain_notifications();
        if next != *state {
            let file = StateFile {
                version: STATE_VERSION,
                state: &next,
            };
            let bytes = serde_json::to_vec(&file).expect("the state serializes");
            write_atomically(&self.inner.path, &bytes).map_err(|source| JobsStoreError::Io {
                path: self.inner.path.clone(),
                source,
            })?;
            *state = next;
        }
        drop(state);
        if !changes.is_empty() {
            let mut unsent = self.inner.unsent.lock().unwrap_or_else(|p| p.into_inner());
            unsent.extend(changes);
            while unsent.len() > MAX_UNSENT {
                unsent.pop_front();
            }
            drop(unsent);
            self.inner.wake.notify_one();
        }
        Ok(r)
    }

    /// [`Self::apply_blocking`] on the blocking pool.
    pub async fn apply<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut JobsState) -> R + Send + 'static,
    ) -> Result<R, JobsStoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.apply_blocking(f))
            .await
            .expect("a Jobs operation does not panic")
    }

    /// Reads the state.
    pub fn read<R>(&self, f: impl FnOnce(&JobsState) -> R) -> R {
        f(&self.inner.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether the MQTT adapter is connected and subscribed (devices' requests reach it).
    pub fn serving_mqtt(&self) -> bool {
        self.inner.subscribed.load(Ordering::SeqCst)
    }

    fn take_unsent(&self) -> Vec<NextChange> {
        let mut unsent = self.inner.unsent.lock().unwrap_or_else(|p| p.into_inner());
        unsent.drain(..).collect()
    }
}

/// A reply to publish: topic and JSON payload.
type Reply = (String, Vec<u8>);

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("messages serialize")
}

fn invalid_json(e: &serde_json::Error, client_token: Option<String>) -> Vec<u8> {
    json(&JobsErrorResponse {
        code: "InvalidJson".into(),
        message: format!("the request is not valid JSON for this topic: {e}"),
        timestamp: (now_ms() / 1000) as i64,
        client_token,
        execution_state: None,
    })
}

/// Answers one device request (`None`: not a request of the Jobs API; ignored).
async fn handle(jobs: &Jobs, topic: &str, payload: &[u8]) -> Result<Option<Reply>, JobsStoreError> {
    let Some(thing) = JobsTopics::thing_of(topic) else {
        return Ok(None);
    };
    let Ok(topics) = JobsTopics::new(thing) else {
        tracing::warn!(topic, "jobs: a request from an invalid thing name; ignored");
        return Ok(None);
    };
    let thing = thing.to_owned();
    let body = if payload.is_empty() {
        b"{}".as_slice()
    } else {
        payload
    };
    if topic == topics.start_next() {
        let reply = match serde_json::from_slice::<StartNextRequest>(body) {
            Ok(req) => {
                let now = now_ms();
                match jobs.apply(move |s| s.start_next(&thing, req, now)).await? {
                    Ok(a) => (topics.start_next_accepted(), json(&a)),
                    Err(e) => (topics.start_next_rejected(), json(&e)),
                }
            }
            Err(e) => (topics.start_next_rejected(), invalid_json(&e, None)),
        };
        return Ok(Some(reply));
    }
    let Some(JobsTopic::Update(job_id)) = topics.classify(topic) else {
        return Ok(None);
    };
    let base = topics.update(job_id);
    let job_id = job_id.to_owned();
    let reply = match serde_json::from_slice::<UpdateRequest>(body) {
        Ok(req) => {
            let now = now_ms();
            match jobs
                .apply(move |s| s.update(&thing, &job_id, req, now))
                .await?
            {
                Ok(a) => (format!("{base}/accepted"), json(&a)),
                Err(e) => (format!("{base}/rejected"), json(&e)),
            }
        }
        Err(e) => (format!("{base}/rejected"), invalid_json(&e, None)),
    };
    Ok(Some(reply))
}

async fn publish_changes(jobs: &Jobs, client: &AsyncClient) {
    for change in jobs.take_unsent() {
        let Ok(topics) = JobsTopics::new(&change.thing) else {
            continue;
        };
        let _ = client
            .publish(
                topics.notify_next(),
                QoS::AtLeastOnce,
                false,
                json(&change.message),
            )
            .await;
    }
}

/// Serves the Jobs device MQTT API through the broker at `broker` (its MQTT 3.1.1
/// listener) until `shutdown` completes. Reconnects by itself when the broker goes
/// away. The client's request channel is drained by the reader task alone, which never
/// waits on the answering side, so publishing answers here cannot deadlock.
pub async fn run_mqtt(
    jobs: Jobs,
    broker: SocketAddr,
    login: crate::credentials::MqttLogin,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut options = MqttOptions::new(CLIENT_ID, broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_credentials(login.username, login.password);
    options.set_max_packet_size(
        crate::broker::DEFAULT_MAX_PACKET_SIZE,
        crate::broker::DEFAULT_MAX_PACKET_SIZE,
    );
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let (requests_tx, mut requests) = mpsc::channel::<(String, bytes::Bytes)>(MAX_QUEUED_REQUESTS);
    let subscriber = client.clone();
    let state = jobs.clone();
    let reader = tokio::spawn(async move {
        let mut failing = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failing = false;
                    tracing::info!(%broker, "jobs service connected to the broker");
                    // One SUBSCRIBE: its SUBACK means every request topic is served.
                    let filters =
                        FILTERS.map(|f| SubscribeFilter::new(f.to_owned(), QoS::AtLeastOnce));
                    let _ = subscriber.try_subscribe_many(filters);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    // Never wait here: this task is also what sends the answers out.
                    match requests_tx.try_send((p.topic, p.payload)) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full((topic, _))) => {
                            tracing::warn!(
                                topic,
                                "jobs service overloaded: request dropped (the device asks again)"
                            );
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    state.inner.subscribed.store(true, Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(e) => {
                    state.inner.subscribed.store(false, Ordering::SeqCst);
                    if !failing {
                        tracing::warn!(%broker, error = %e, "jobs service: broker connection lost; retrying every second");
                        failing = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });

    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some((topic, payload)) = requests.recv() => {
                match handle(&jobs, &topic, &payload).await {
                    Ok(Some((reply_topic, body))) => {
                        let _ = client.publish(reply_topic, QoS::AtLeastOnce, false, body).await;
                    }
                    Ok(None) => {}
                    // No answer: the device asks again when it reconnects.
                    Err(e) => tracing::error!(error = %e, topic, "jobs: cannot persist the change; request not answered"),
                }
            }
            _ = jobs.inner.wake.notified() => {}
            _ = tick.tick() => {
                let now = now_ms();
                if let Err(e) = jobs.apply(move |s| s.tick(now)).await {
                    tracing::error!(error = %e, "jobs: cannot persist the rollout's progress");
                }
            }
        }
        publish_changes(&jobs, &client).await;
    }
    let _ = client.try_disconnect();
    reader.abort();
    jobs.inner.subscribed.store(false, Ordering::SeqCst);
}
