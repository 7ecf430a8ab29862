//! The device daemon: sources -> frame thread (classify, policy, outbox) -> MQTT.
//!
//! ```text
//! sources ──bounded──> frame thread ──fsync──> outbox (SQLite) <──> MQTT driver <──> broker
//!                       (decode, infer,          ^ receipts remove events   (tokio task)
//!                        policy, encode)
//! ```
//! Classification never waits on the network: the frame thread only writes to the
//! outbox, which absorbs any outage, and pokes the MQTT driver. `run` takes a shutdown
//! future (STYLE.md): on it, intake stops, frames already taken are finished and
//! stored, the status goes `offline`, and the function returns.
//!
//! The frame thread and the MQTT task (on a thread of its own) are supervised
//! ([`supervise`]): the systemd watchdog is pinged only while both make progress or are
//! idle by design, and `run` stops and returns an error when either ends unexpectedly.
//!
//! A corrupt outbox is moved aside and what still reads is salvaged at start-up
//! ([`Outbox::open_or_recover`]). When the outbox cannot be written (disk full, I/O
//! error), the frame thread holds the encoded event and retries (`store.rs`), which
//! stops intake through the bounded channel instead of losing frames.

mod disconnect;
mod frames;
mod jobs;
mod mqtt;
pub mod mqtt_login;
mod prepare;
pub mod serving;
mod sources;
mod stats;
mod store;
mod supervise;
mod tracker;

pub use frames::{event_id_for, FrameProcessor, Outcome, ProcessError};
pub use prepare::{prepare, Prepared};
pub use stats::Stats;
pub use tracker::DeliveryTracker;

use std::future::Future;
use std::sync::{mpsc, Arc, Mutex};

use anyhow::Context;
use protocol::status::OutboxStats;
use protocol::{DeviceId, Status, Topics};
use serving::{SharedIdentity, SwapCommand, SwapEvent, Swapper};
use store::{store_event, FrameStore, StorageHealth, Stored};
use supervise::{Monitor, Task};
use tokio::sync::{watch, Notify};

use crate::config::AgentConfig;
use crate::model::{find_default_manifest, ModelManifest};
use crate::outbox::{Outbox, PutOutcome};
use crate::policy::SkipCause;
use crate::source::SourceFrame;
use crate::systemd;
use crate::update::store::ModelStore;
use crate::update::{self, load_serving, LoadOptions};

pub use crate::source::now_ms;

/// Checks that the TLS files named in the config can be read and hold what a
/// connection needs: PEM certificates, a PEM key that is the certificate's.
pub fn check_tls_files(
    tls: &crate::config::TlsSection,
) -> Result<(), protocol::mqtt_tls::TlsFileError> {
    mqtt::tls_configuration(tls).map(|_| ())
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let device = DeviceId::new(config.device.id.clone()).expect("validated");
    let topics = Topics::new(config.mqtt.topic_prefix.clone()).expect("validated");

    std::fs::create_dir_all(&config.device.state_dir).with_context(|| {
        format!(
            "cannot create state_dir {}",
            config.device.state_dir.display()
        )
    })?;
    // One agent per state directory (outbox, models, update drop folder): a second one
    // is refused and told which process holds it. Held until `run` returns.
    let _state_lock =
        daemon_support::StateLock::acquire(&config.device.state_dir, "device.state_dir")?;
    // Model, backend and policy: any mismatch stops here, before intake starts. An
    // installed package serves if one is current (an update interrupted by a kill is
    // settled first), else the configured model.
    let config_manifest = match &config.model.manifest {
        Some(p) => p.clone(),
        None => find_default_manifest()?,
    };
    let store = ModelStore::open(&config.device.state_dir).with_context(|| {
        format!(
            "cannot open the model store in {}",
            config.device.state_dir.display()
        )
    })?;
    let drop_dir = config.updates_dir();
    std::fs::create_dir_all(&drop_dir)
        .with_context(|| format!("cannot create {}", drop_dir.display()))?;
    let pending_report = update::worker::recover(&store, &drop_dir)
        .context("cannot settle the interrupted model update")?;
    let trusted_keys = config.update.load_keys().map_err(anyhow::Error::msg)?;
    let mut load = LoadOptions {
        threads: config.model.threads,
        top_k: config.model.top_k,
        backend: config.model.backend,
        litert_library: config.model.litert_library.clone(),
        policy: config.policy.clone(),
        config_version: None,
    };
    // Only its version (the anti-rollback floor) is needed here: the manifest, not a
    // second load and sha256 of the model file, which the fallback below may do.
    let config_text = std::fs::read_to_string(&config_manifest)
        .with_context(|| format!("cannot read model manifest {}", config_manifest.display()))?;
    load.config_version = Some(
        ModelManifest::parse(&config_text, &config_manifest)?
            .model
            .version,
    );
    let (serving, selection) = load_installed_or_configured(&store, &config_manifest, &load)?;
    tracing::info!(
        backend = selection.backend,
        requested = selection.requested.as_str(),
        reason = %selection.reason,
        "inference backend"
    );
    let model = serving.info.clone();
    let backend_name = selection.backend;
    let identity: SharedIdentity = Arc::new(Mutex::new((model.clone(), backend_name)));
    let (swap_tx, swap_rx) = mpsc::channel::<SwapCommand>();
    let (event_tx, event_rx) = mpsc::channel::<SwapEvent>();
    let mut processor = FrameProcessor::from_serving(
        serving,
        device.clone(),
        &topics,
        config.mqtt.max_message_bytes,
        config.image.clone(),
    );
    processor.set_swapper(Swapper::new(swap_rx, event_tx, identity.clone()));
    tracing::info!(model = %format!("{} {}", model.name, model.version), backend = backend_name, "model loaded");

    let opened = Outbox::open_or_recover(config.outbox_path(), config.outbox_config(), now_ms())?;
    if let Some(r) = &opened.recovery {
        tracing::error!(
            path = %config.outbox_path().display(),
            quarantined = %r.quarantined.display(),
            cause = %r.cause,
            salvaged = r.salvaged,
            lost = r.lost,
            header_rebuilt = r.header_rebuilt,
            "outbox was corrupt: moved it aside and started a new one with the events that still read"
        );
    }
    let outbox = opened.outbox;
    let depths = outbox.depths()?;
    tracing::info!(
        path = %config.outbox_path().display(),
        to_send = depths.to_send,
        awaiting_receipt = depths.awaiting_receipt,
        set_aside = depths.set_aside,
        "outbox opened"
    );
    let outbox = Arc::new(Mutex::new(outbox));
    let stats = Arc::new(Stats::default());
    let wake = Arc::new(Notify::new());

    // Sources feed a bounded channel: a slow frame thread slows capture, never memory.
    let (frame_tx, frame_rx) = mpsc::sync_channel::<SourceFrame>(4);
    // Besides the configured sources, the review-requests folder: frames an operator
    // wants reviewed whatever the policy says (`eval --review`), deleted once stored.
    let requests_dir = config.review_requests_dir();
    std::fs::create_dir_all(&requests_dir)
        .with_context(|| format!("cannot create {}", requests_dir.display()))?;
    let mut source_configs = config.sources.clone();
    source_configs.push(crate::config::SourceConfig::Folder(
        crate::source::folder::FolderSourceConfig {
            after: crate::source::folder::AfterProcessing::Delete,
            ..crate::source::folder::FolderSourceConfig::new(&requests_dir)
        },
    ));
    let sources = sources::start(&source_configs, frame_tx).context("cannot start sources")?;

    let monitor = Monitor::new(systemd::watchdog_interval());
    let health = Arc::new(StorageHealth::default());
    // Dropped at shutdown: ends a frame thread that waits for disk space.
    let (halt_tx, halt_rx) = mpsc::channel::<()>();
    let frame_thread = {
        let store = FrameStore {
            outbox: outbox.clone(),
            stats: stats.clone(),
            wake: wake.clone(),
            health: health.clone(),
            halt: halt_rx,
            heartbeat: monitor.heartbeat(Task::Frames),
        };
        let requests = requests_dir.clone();
        let mut end = monitor.end_guard(Task::Frames);
        std::thread::Builder::new()
            .name("frames".into())
            .spawn(move || {
                end.set_cause(frame_loop(
                    processor,
                    frame_rx,
                    store,
                    source_configs,
                    requests,
                ))
            })?
    };

    // Model updates: their own thread, so a download or a model load never holds up
    // a frame. Job requests come from the MQTT driver, reports go back to it.
    let update_status = Arc::new(Mutex::new(None));
    let (job_tx, job_rx) = mpsc::channel::<update::worker::JobRequest>();
    let (report_tx, report_rx) = tokio::sync::mpsc::unbounded_channel::<update::worker::Report>();
    let stop_updates = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let update_thread = {
        load.backend = update::kind_of(backend_name);
        let worker = update::worker::Worker {
            store,
            config: config.update.clone(),
            keys: trusted_keys,
            load,
            config_manifest,
            drop_dir,
            swap: swap_tx,
            events: event_rx,
            jobs: job_rx,
            report: Box::new(move |r| {
                let _ = report_tx.send(r);
            }),
            status: update_status.clone(),
            stop: stop_updates.clone(),
        };
        std::thread::Builder::new()
            .name("updates".into())
            .spawn(move || worker.run(pending_report))?
    };

    let started = protocol::timestamp::format_rfc3339_utc(now_ms() as i64);
    let status: Arc<dyn Fn() -> Status + Send + Sync> = {
        let (outbox, stats, device) = (outbox.clone(), stats.clone(), device.clone());
        let (health, identity, update_status) =
            (health.clone(), identity.clone(), update_status.clone());
        Arc::new(move || {
            let (model, backend) = identity.lock().unwrap().clone();
            let mut s = Status::online(device.clone(), model, backend, started.clone());
            s.update = update_status.lock().unwrap().clone();
            s.counters = stats.counters();
            s.outcomes = stats.outcomes.lock().unwrap().clone();
            s.storage = health.get();
            if let Ok(d) = outbox.lock().unwrap().depths() {
                s.outbox = OutboxStats {
                    to_send: d.to_send,
                    awaiting_receipt: d.awaiting_receipt,
                    bytes: d.bytes,
                    dropped: d.dropped,
                    set_aside: d.set_aside,
                    salvaged: d.salvaged,
                    lost: d.lost,
                };
            }
            s
        })
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let device_name = device.as_str().to_string();
    let login = mqtt_login::load(&config.mqtt)?;
    let driver = mqtt::MqttDriver {
        config: config.mqtt.clone(),
        device,
        topics,
        outbox: outbox.clone(),
        wake,
        stats: stats.clone(),
        status: status.clone(),
        status_interval: config.device.status_interval,
        heartbeat: monitor.heartbeat(Task::Mqtt),
        login,
        jobs: match protocol::jobs::JobsTopics::new(device_name.as_str()) {
            Ok(t) => Some(jobs::JobsClient::new(t, job_tx, report_rx)),
            Err(e) => {
                tracing::warn!(error = %e, "model updates by IoT Jobs are off: the device id is not a valid thing name");
                None
            }
        },
    };
    // A thread of its own: a call that blocks it cannot block the supervisor, and the
    // supervisor can tell which worker stalled.
    let mqtt_thread = {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("mqtt-blocking")
            .build()?;
        let mut end = monitor.end_guard(Task::Mqtt);
        std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                let result = runtime.block_on(driver.run(stop_rx));
                if let Err(e) = &result {
                    end.set_cause(format!("{e}"));
                }
                result
            })?
    };

    let _ = systemd::notify_ready();
    let death = monitor.watch(shutdown).await;
    match &death {
        None => tracing::info!("shutting down: stopping intake"),
        Some(d) => tracing::error!(task = %d.task, cause = %d.cause,
            "the {} ended unexpectedly; stopping, to exit non-zero for systemd to restart the agent", d.task),
    }
    let _ = systemd::notify_stopping();
    sources.stop();
    drop(halt_tx);
    // The frame thread ends when every source's sender is gone and the channel is
    // drained: frames already captured are classified and stored, not dropped.
    let frames = tokio::task::spawn_blocking(move || frame_thread.join()).await?;
    let _ = stop_tx.send(true);
    let mqtt = tokio::task::spawn_blocking(move || mqtt_thread.join()).await?;
    stop_updates.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || update_thread.join()).await?;
    if let Some(d) = death {
        anyhow::bail!("the {} ended unexpectedly: {}", d.task, d.cause);
    }
    frames.map_err(|_| anyhow::anyhow!("the frame thread panicked"))?;
    mqtt.map_err(|_| anyhow::anyhow!("the MQTT task panicked"))??;
    let s = status();
    tracing::info!(
        frames = s.counters.frames,
        selected = s.counters.selected,
        to_send = s.outbox.to_send,
        awaiting_receipt = s.outbox.awaiting_receipt,
        "stopped"
    );
    Ok(())
}

/// The model to serve at start: the installed package `state.json` names, else the
/// previous one, else the configured model; a package that no longer loads is
/// logged and passed over, so the device always starts with a working model.
fn load_installed_or_configured(
    store: &ModelStore,
    config_manifest: &std::path::Path,
    load: &LoadOptions,
) -> anyhow::Result<(serving::ServingModel, crate::inference::BackendSelection)> {
    let state = store
        .state()
        .context("cannot read the model store's state")?;
    for version in [&state.current, &state.previous].into_iter().flatten() {
        let loaded = store
            .model_manifest(version)
            .map_err(|e| e.to_string())
            .and_then(|m| load_serving(&m, load));
        match loaded {
            Ok(l) => return Ok(l),
            Err(e) => tracing::error!(version = %version, error = %e,
                "the installed model package does not load; trying the one before it"),
        }
    }
    load_serving(config_manifest, load).map_err(anyhow::Error::msg)
}

/// Longest wait for a frame before the frame loop looks at swap commands again.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Classifies and stores frames until the sources' channel closes or shutdown comes
/// while the outbox cannot be written; returns which of the two it was. Beats after
/// every frame and every [`supervise::Heartbeat::every`] while no frame comes.
fn frame_loop(
    mut processor: FrameProcessor,
    frames: mpsc::Receiver<SourceFrame>,
    store: FrameStore,
    sources: Vec<crate::config::SourceConfig>,
    requests_dir: std::path::PathBuf,
) -> &'static str {
    let (stats, wake) = (&store.stats, &store.wake);
    loop {
        store.heartbeat.beat();
        // Woken at least every IDLE_POLL without frames, so a model swap (or an
        // operator's rollback) on an idle device takes effect at once.
        let mut frame = match frames.recv_timeout(store.heartbeat.every().min(IDLE_POLL)) {
            Ok(frame) => frame,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // No frame: a model update (an operator's rollback) still takes effect.
                processor.between_frames();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return "every frame source has ended (their errors are logged at shutdown)"
            }
        };
        store.heartbeat.beat();
        let now = now_ms();
        Stats::inc(&stats.frames);
        let bytes = std::mem::take(&mut frame.bytes);
        let requested =
            frame.path.as_deref().and_then(std::path::Path::parent) == Some(requests_dir.as_path());
        let outcome = if requested {
            processor.process_requested(&frame.name, bytes, frame.captured_at_ms, now)
        } else {
            processor.process(&frame.name, bytes, frame.captured_at_ms, now)
        };
        let handled = match outcome {
            Ok(Outcome::Skipped(cause)) => {
                if matches!(
                    cause,
                    SkipCause::RateLimited | SkipCause::NearDuplicate { .. }
                ) {
                    Stats::inc(&stats.suppressed);
                }
                stats.count_outcome(|o| &mut o.passed, cause.key());
                tracing::debug!(frame = %frame.name, ?cause, "not sent for review");
                true
            }
            Ok(Outcome::Selected { meta, messages }) => {
                Stats::inc(&stats.selected);
                let why = meta.reasons.first().map_or("unknown", |r| r.kind());
                stats.count_outcome(|o| &mut o.selected, why);
                let id = meta.event_id.to_string();
                match store_event(&store, &frame.name, &id, &messages, now) {
                    Stored::Yes(PutOutcome::Stored { dropped, .. }) => {
                        if !dropped.is_empty() {
                            tracing::warn!(
                                count = dropped.len(),
                                "outbox full: dropped the oldest events"
                            );
                        }
                        tracing::info!(frame = %frame.name, event_id = %id, label = %meta.top_k[0].label,
                            score = meta.top_k[0].score, messages = messages.len(), "selected for review");
                        wake.notify_one();
                        true
                    }
                    Stored::Yes(PutOutcome::AlreadyPresent) => true,
                    Stored::Refused(e) => {
                        // Can never be stored as it is: keep the source file for an
                        // operator, and go on with the next frame.
                        Stats::inc(&stats.errors);
                        tracing::error!(frame = %frame.name, error = %e, "cannot store the event");
                        false
                    }
                    Stored::ShuttingDown => {
                        // Not stored: the file stays and is taken again at the next
                        // start; frames still queued behind it likewise.
                        tracing::warn!(frame = %frame.name, "shutting down while the outbox cannot be written; the frame stays for the next start");
                        return "shut down while the outbox could not be written";
                    }
                }
            }
            Err(e) => {
                Stats::inc(&stats.errors);
                stats.count_outcome(|o| &mut o.refused, e.key());
                // Refused, so never deleted (a decoder's limit must not destroy a frame):
                // its file is moved aside with the reason.
                match sources::reject(&sources, &frame, &e.to_string(), now) {
                    Ok(Some(to)) => {
                        tracing::warn!(frame = %frame.name, error = %e, moved_to = %crate::source::names::escaped_path(&to), "frame refused; its file is set aside")
                    }
                    Ok(None) => tracing::warn!(frame = %frame.name, error = %e, "frame refused"),
                    Err(io) => {
                        tracing::warn!(frame = %frame.name, error = %e, "frame refused; cannot set its file aside ({io}), so it stays")
                    }
                }
                false
            }
        };
        if handled {
            if let Err(e) = sources::finish(&sources, &frame) {
                tracing::warn!(frame = %frame.name, error = %e, "cannot apply the source's after-processing action");
            }
        }
    }
}
