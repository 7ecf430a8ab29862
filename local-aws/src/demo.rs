//! `local-aws run`: local mode in one command. In this process: the embedded MQTT
//! broker, the object store (S3 API over `<state>/objects`), the review service with
//! its reviewer page, the completions queue it feeds ([`crate::queue`]), the Jobs
//! service (state in `<state>/jobs`, control API on loopback HTTP) and the relay; as a child process: `edge-agent run` with a
//! generated config whose folder source is `<state>/agent/inbox`. Frames are copied
//! from the frames folder into that inbox (each content once, recorded in
//! `<state>/copied.jsonl`, so a second run sends nothing again: [`intake`]), and the
//! augmented manifest is exported to `<state>/manifest.jsonl` whenever its rows change.
//!
//! Local mode's credentials (`<state>/credentials`, [`crate::credentials`]) are made at
//! the first start: the AWS APIs take only requests signed with its key pair, the
//! broker only its login, which the relay, the Jobs service and the agent are given
//! (the agent through `<state>/agent/mqtt-password`).
//!
//! stdout, line by line (tests and scripts read it): `reviewer page: URL`, then
//! `jobs API: URL`, `credentials: PATH (...)`, `fleet: ...`, then `manifest: PATH` and
//! `progress: ...` lines; logs go to stderr, the agent's to
//! `<state>/agent.log`. SIGINT, SIGTERM or SIGHUP stops intake, the agent, the relay,
//! the services and the broker, in that order; every piece keeps its state on disk
//! except the broker (the agent's outbox resends what was not receipted).
//!
//! One local mode per state directory: the directory and each service's part of it are
//! locked ([`daemon_support::StateLock`]); a second `local-aws run` on them is refused
//! and told which process holds them. The agent child dies with this process, even when
//! it is killed with SIGKILL (`PR_SET_PDEATHSIG`), and a restart waits for a previous
//! agent that is still stopping, so one agent at a time works on the outbox.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::watch;

use super::broker::{BrokerConfig, EmbeddedBroker};
use super::credentials::{self, LocalSecrets};
use super::object_store::{self, ObjectStoreConfig};
use super::review_page::{self, ReviewPageConfig};
use super::sigv4::Verifier;
use crate::review_service::{self, ReviewService, ServiceIdentity};
use cloud_relay::config::Config;
use cloud_relay::relay;
use daemon_support::StateLock;

mod agent;
mod generated;
mod intake;
mod keys;
mod paths;
mod progress;

use intake::Copied;
use keys::{fleet_key, page_token, use_local_credentials, write_private};
use paths::{default_agent_bin, default_frames, model_labels, model_manifest};
use progress::{count_rows, pending_in_inbox, Progress};

/// The bucket of local mode's object store (frames, A2I output, manifest rows).
pub const BUCKET: &str = "edge-a2i-local";
/// The review service's flow definition and task UI.
pub const FLOW: &str = "edge-a2i-local";
/// The agent's device id (its MQTT client id, and the frames' S3 prefix).
pub const DEVICE_ID: &str = "local-camera";
const RELAY_CLIENT_ID: &str = "local-relay";
const MODEL_MANIFEST: &str = "dogs_mobilenetv2.toml";
/// How often intake, progress and the manifest are refreshed.
const TICK: Duration = Duration::from_secs(2);

/// `local-aws run`.
#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// Folder of image files (jpg, png) to classify. Default: ./models/samples, else
    /// the source tree's models/samples.
    #[arg(long)]
    pub frames: Option<PathBuf>,
    /// Where everything is kept between runs (created if missing).
    #[arg(long, default_value = "local-mode")]
    pub state_dir: PathBuf,
    /// Address of the reviewer page (and the A2I API); port 0 picks a free one.
    #[arg(long, default_value_t = review_service::default_listen())]
    pub review_listen: SocketAddr,
    /// The edge-agent binary. Default: `edge-agent` next to this executable.
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Address of the Jobs control API (CreateJob, DescribeJob, ...); port 0 picks a
    /// free one.
    #[arg(long, default_value_t = crate::jobs::default_listen())]
    pub jobs_listen: SocketAddr,
}

/// The paths of one state directory.
struct Layout {
    root: PathBuf,
    objects: PathBuf,
    review: PathBuf,
    jobs: PathBuf,
    agent: PathBuf,
    inbox: PathBuf,
    manifest: PathBuf,
}

impl Layout {
    fn create(dir: &Path) -> anyhow::Result<Layout> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let root = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let l = Layout {
            objects: root.join("objects"),
            review: root.join("review"),
            jobs: root.join("jobs"),
            agent: root.join("agent"),
            inbox: root.join("agent").join("inbox"),
            manifest: root.join("manifest.jsonl"),
            root,
        };
        for d in [&l.objects, &l.review, &l.jobs, &l.agent, &l.inbox] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(l)
    }

    /// Locks the state directory and each service's directory in it (the agent locks
    /// its own), so neither a second local mode nor a stand-alone service started on
    /// them can run beside this one.
    fn lock(&self) -> anyhow::Result<Vec<StateLock>> {
        [
            (&self.root, "local mode's state directory"),
            (&self.objects, "object store"),
            (&self.review, "review service state directory"),
            (&self.jobs, "jobs service state directory"),
        ]
        .into_iter()
        .map(|(dir, what)| StateLock::acquire(dir, what).map_err(anyhow::Error::from))
        .collect()
    }
}

/// A stop signal many tasks can wait on.
fn stopped(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Exports the manifest to `path` (write, then rename). Returns the rows written.
async fn export_manifest(config: &Config, path: &Path) -> anyhow::Result<usize> {
    let store = relay::s3::S3Store::connect(&config.s3).await;
    let mut buf = Vec::new();
    let n = relay::collector::export(
        config,
        &store,
        &relay::collector::ExportFilter::default(),
        &mut buf,
    )
    .await?;
    crate::review_service::persist::write_atomically(path, &buf)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(n)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs local mode until `shutdown` completes.
pub async fn run(
    args: LocalArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let frames = match args.frames {
        Some(f) => f,
        None => default_frames()?,
    };
    if !frames.is_dir() {
        bail!("frames folder {} is not a directory", frames.display());
    }
    let agent_bin = match args.agent_bin {
        Some(b) => b,
        None => default_agent_bin()?,
    };
    let manifest = model_manifest()?;
    let labels = model_labels(&manifest)?;
    let layout = Layout::create(&args.state_dir)?;
    let _locks = layout.lock()?;
    let mut copied = Copied::open(&layout.root, &frames)?;
    let secrets = LocalSecrets::load_or_create(&layout.root.join(credentials::FILE_NAME))?;
    use_local_credentials(&secrets.aws);
    let verifier = Verifier::new(secrets.aws.clone(), secrets.path.display().to_string());

    let (stop_services, services_rx) = watch::channel(false);
    let (stop_relay, relay_rx) = watch::channel(false);

    // The broker: MQTT 5 for the agent and the relay (the 3.1.1 listener stays for
    // other clients, e.g. mosquitto_sub).
    let broker = EmbeddedBroker::start(BrokerConfig {
        listen_v4: SocketAddr::from(([127, 0, 0, 1], 0)),
        listen_v5: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        login: secrets.mqtt.clone(),
        ..BrokerConfig::default()
    })
    .await?;
    let v5 = broker.v5_addr().expect("configured");

    // The Jobs service: a client of the broker, and its control API.
    let jobs = crate::jobs::Jobs::open(&layout.jobs)
        .with_context(|| format!("opening jobs state {}", layout.jobs.display()))?;
    let jobs_listener = tokio::net::TcpListener::bind(args.jobs_listen)
        .await
        .with_context(|| format!("binding the Jobs API to {}", args.jobs_listen))?;
    let jobs_addr = jobs_listener.local_addr()?;
    let jobs_mqtt = tokio::spawn(crate::jobs::run_mqtt(
        jobs.clone(),
        broker.v4_addr(),
        secrets.mqtt.clone(),
        stopped(&services_rx),
    ));
    let jobs_identity = crate::jobs::ApiIdentity {
        region: review_service::default_region(),
        account_id: review_service::default_account_id(),
    };
    let jobs_task = tokio::spawn(crate::jobs::serve(
        jobs_listener,
        jobs,
        jobs_identity,
        verifier.clone(),
        stopped(&services_rx),
    ));

    // The object store.
    let store_config = ObjectStoreConfig {
        root: layout.objects.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        credentials: secrets.aws.clone(),
        buckets: vec![BUCKET.to_owned()],
    };
    let store = store_config
        .open()
        .with_context(|| format!("opening object store {}", layout.objects.display()))?;
    let s3_listener = tokio::net::TcpListener::bind(store_config.listen).await?;
    let s3_addr = s3_listener.local_addr()?;
    let s3_service = object_store::s3_service(store.clone(), &store_config.credentials);
    let s3_task = tokio::spawn(object_store::serve(
        s3_listener,
        s3_service,
        stopped(&services_rx),
    ));

    // The review service and its page.
    let identity = ServiceIdentity {
        region: review_service::default_region(),
        account_id: review_service::default_account_id(),
    };
    let service = ReviewService::open(
        identity,
        &layout.review,
        review_service::store::default_max_in_progress(),
        Arc::new(store.clone()),
    )
    .with_context(|| format!("opening review state {}", layout.review.display()))?;
    let token = page_token(&layout)?;
    let review_listener = tokio::net::TcpListener::bind(args.review_listen)
        .await
        .with_context(|| format!("binding the reviewer page to {}", args.review_listen))?;
    let review_addr = review_listener.local_addr()?;
    let page = ReviewPageConfig {
        token: token.clone(),
        store: store.clone(),
        answers_file: layout.root.join("review-page-answers.json"),
    };
    // Completed loops reach the relay as A2I's events through a queue, as in AWS.
    let (queue_config, queue_task) =
        crate::queue::start_local(&service, verifier.clone(), stopped(&services_rx)).await?;
    let review_task = tokio::spawn(review_page::serve(
        review_listener,
        service.clone(),
        verifier,
        page,
        stopped(&services_rx),
    ));

    // The task UI and flow definition, as `cloud-relay setup` makes them, through the
    // service's control-plane API; then the relay.
    let mut config = generated::relay_config(v5, s3_addr, review_addr, labels, &secrets.mqtt)?;
    config.a2i.flow_definition_arn = generated::ensure_flow(&config).await?;
    // The queue is in memory: events pending at a stop are found by the sweep.
    config.results.queue = Some(queue_config);
    config.results.sweep_interval = Duration::from_secs(30);
    config.validate()?;
    let mut relay_task = tokio::spawn(relay::run(config.clone(), stopped(&relay_rx)));

    // The agent.
    let agent_toml = layout.root.join("agent.toml");
    let fleet_pub = fleet_key(&layout)?;
    // The agent's broker password, alone in a file its config names.
    let mqtt_password = layout.agent.join("mqtt-password");
    write_private(&mqtt_password, &format!("{}\n", secrets.mqtt.password))?;
    std::fs::write(
        &agent_toml,
        generated::agent_config(
            &layout,
            v5.port(),
            &manifest,
            &fleet_pub,
            (&secrets.mqtt.username, &mqtt_password),
        ),
    )
    .with_context(|| format!("writing {}", agent_toml.display()))?;
    // It holds the broker login: this user's only.
    let relay_toml = layout.root.join("relay.toml");
    write_private(
        &relay_toml,
        &generated::relay_config_file(
            v5,
            s3_addr,
            review_addr,
            &config.a2i.flow_definition_arn,
            &secrets,
        ),
    )?;
    let agent_log_path = layout.root.join("agent.log");
    let agent_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&agent_log_path)
        .with_context(|| format!("opening {}", agent_log_path.display()))?;
    let mut agent_cmd = tokio::process::Command::new(&agent_bin);
    agent_cmd
        .arg("run")
        .arg("--config")
        .arg(&agent_toml)
        .stdin(std::process::Stdio::null())
        .stdout(agent_log.try_clone()?)
        .stderr(agent_log)
        .kill_on_drop(true);
    // Its own process group: Ctrl-C (and a closed terminal's SIGHUP) reaches this
    // process only, which stops the agent in turn (after intake, before the relay).
    agent_cmd.process_group(0);
    // SIGTERM from the kernel when this process dies, even by SIGKILL. Spawned from
    // the main thread (`#[tokio::main]` runs this future on it), which the kernel
    // watches for the death signal.
    daemon_support::stop_with_parent(agent_cmd.as_std_mut());
    agent::wait_for_previous(&layout.agent).await?;
    let mut agent = agent_cmd
        .spawn()
        .with_context(|| format!("starting {}", agent_bin.display()))?;

    say(&format!(
        "reviewer page: {}",
        review_page::page_url(review_addr, &token)
    ));
    say(&format!("jobs API: http://{jobs_addr}"));
    say(&format!(
        "credentials: {} (AWS_SHARED_CREDENTIALS_FILE for boto3, the AWS CLI and cloud-relay; or: {})",
        secrets.path.display(),
        secrets.aws.export_line()
    ));
    say(&format!(
        "fleet: edge-agent model sign --key {} ...; AWS_SHARED_CREDENTIALS_FILE={} cloud-relay fleet publish PACKAGE --config {} --jobs-endpoint-url http://{jobs_addr} --devices {DEVICE_ID}",
        layout.root.join("fleet.key").display(),
        secrets.path.display(),
        relay_toml.display()
    ));
    say(&format!(
        "local mode: frames from {}, state in {} (agent log: {})",
        frames.display(),
        layout.root.display(),
        agent_log_path.display()
    ));

    // Intake, progress and the manifest, until a stop (or a part fails).
    let rows_prefix = relay::keys::KeyLayout::new(&config.s3).rows_prefix();
    let outcomes = progress::LatestOutcomes::default();
    let status_task = tokio::spawn(progress::watch_status(
        broker.v4_addr(),
        secrets.mqtt.clone(),
        DEVICE_ID,
        outcomes.clone(),
        stopped(&services_rx),
    ));
    let mut progress = Progress::default();
    let mut printed: Option<Progress> = None;
    let mut exported: Option<usize> = None;
    let mut failure: Option<anyhow::Error> = None;
    let mut relay_done = false;
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = &mut relay_task => {
                relay_done = true;
                failure = Some(match r {
                    Ok(Err(e)) => anyhow::Error::from(e).context("the relay stopped"),
                    Ok(Ok(())) => anyhow::anyhow!("the relay stopped unexpectedly"),
                    Err(e) => anyhow::anyhow!("the relay task failed: {e}"),
                });
                break;
            }
            status = agent.wait() => {
                failure = Some(anyhow::anyhow!(
                    "edge-agent exited ({}); see {}",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                    agent_log_path.display()
                ));
                break;
            }
            _ = tick.tick() => {}
        }
        match tokio::task::block_in_place(|| copied.intake(&frames, &layout.inbox)) {
            Ok(n) => progress.new += n,
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "copying frames failed"),
        }
        progress.copied = copied.len();
        progress.outcomes = outcomes.lock().unwrap().clone();
        progress.set_classified(pending_in_inbox(&layout.inbox));
        (progress.loops, progress.reviewed) = service.read(|s| {
            let done = s.loops.count(review_service::HumanLoopStatus::Completed);
            (s.loops.len(), done)
        });
        progress.rows = count_rows(&store, &rows_prefix);
        if printed.as_ref() != Some(&progress) {
            say(&progress.to_string());
            printed = Some(progress.clone());
        }
        if progress.rows > 0 && exported != Some(progress.rows) {
            match export_manifest(&config, &layout.manifest).await {
                Ok(n) => {
                    say(&format!(
                        "manifest: {} ({n} rows)",
                        layout.manifest.display()
                    ));
                    exported = Some(progress.rows);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "exporting the manifest failed")
                }
            }
        }
    }

    // Stop: intake has stopped; then the agent, the relay, the services, the broker.
    say("stopping");
    agent::stop(&mut agent).await;
    let _ = stop_relay.send(true);
    if !relay_done {
        match tokio::time::timeout(relay::DRAIN + Duration::from_secs(5), &mut relay_task).await {
            Ok(Ok(Err(e))) if failure.is_none() => {
                failure = Some(anyhow::Error::from(e).context("the relay"));
            }
            Ok(_) => {}
            Err(_) => {
                relay_task.abort();
                tracing::warn!("the relay did not stop in time");
            }
        }
    }
    if failure.is_none() {
        let rows = count_rows(&store, &rows_prefix);
        if rows > 0 && exported != Some(rows) {
            match export_manifest(&config, &layout.manifest).await {
                Ok(n) => say(&format!(
                    "manifest: {} ({n} rows)",
                    layout.manifest.display()
                )),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "exporting the manifest failed")
                }
            }
        }
    }
    let _ = stop_services.send(true);
    let _ = status_task.await;
    let s3_task = tokio::spawn(async move { Ok(s3_task.await??) });
    let jobs_task = tokio::spawn(async move {
        let _ = jobs_mqtt.await;
        Ok(jobs_task.await??)
    });
    let tasks: [(&str, tokio::task::JoinHandle<anyhow::Result<()>>); 4] = [
        ("reviewer page", review_task),
        ("completions queue", queue_task),
        ("object store", s3_task),
        ("jobs service", jobs_task),
    ];
    for (name, task) in tasks {
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %format!("{e:#}"), "{name} failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "{name} task failed"),
            Err(_) => tracing::warn!("{name} did not stop in time"),
        }
    }
    broker.stop().await;
    match failure {
        Some(e) => Err(e),
        None => {
            say("stopped");
            Ok(())
        }
    }
}
