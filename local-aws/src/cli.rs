//! The stand-ins' subcommands of `local-aws`: `review-service`, `object-store`,
//! `broker` and `jobs`, each printing `listening on ...` as its first stdout line (tests and
//! scripts read it), then serving until the shutdown future completes. Each service
//! with a state directory locks it first: a second one on it refuses to start.
//!
//! Each takes local mode's credentials file (`--credentials FILE`, made with fresh
//! random secrets at the first start; `review-service` and `jobs` default to
//! `STATE_DIR/credentials`): the AWS APIs take only requests signed with its key pair,
//! the broker only its MQTT login. Give several services the same file to share them.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::broker::{self, BrokerConfig, EmbeddedBroker};
use super::credentials::{self, LocalSecrets};
use super::jobs;
use super::object_store::{self, ObjectStoreConfig};
use super::review_page;
use super::review_service::{self, ReviewServiceConfig};
use super::sigv4::Verifier;

/// `local-aws review-service`: the A2I runtime and SageMaker flow-definition API with
/// the reviewer page.
#[derive(Debug, clap::Args)]
pub struct ReviewServiceArgs {
    /// Address to listen on (loopback: only loopback `Host`s are served); port 0
    /// picks a free one.
    #[arg(long, default_value_t = review_service::default_listen())]
    pub listen: SocketAddr,
    /// Directory for the service's durable state (created if missing).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Credentials file whose key pair requests must be signed with (SigV4); made
    /// if missing. Default: STATE_DIR/credentials.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Local object store root: output.json goes to OUTPUT_DIR/<bucket>/<key>.
    #[arg(long)]
    pub output_dir: PathBuf,
    #[arg(long, default_value_t = review_service::default_region())]
    pub region: String,
    #[arg(long, default_value_t = review_service::default_account_id())]
    pub account_id: String,
    /// Most human loops in progress at once (ServiceQuotaExceededException beyond).
    #[arg(long, default_value_t = review_service::store::default_max_in_progress())]
    pub max_in_progress_loops: usize,
    /// Access token of the reviewer page (default: a fresh random one). The page's
    /// URL, token included, is printed as the second stdout line.
    #[arg(long, env = "EDGE_A2I_REVIEW_TOKEN", hide_env_values = true)]
    pub review_token: Option<String>,
}

pub async fn review_service(
    args: ReviewServiceArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = ReviewServiceConfig {
        listen: args.listen,
        state_dir: args.state_dir,
        output_dir: args.output_dir,
        region: args.region,
        account_id: args.account_id,
        max_in_progress_loops: args.max_in_progress_loops,
    };
    let _lock = lock(&config.state_dir, "review service state directory")?;
    let service = config
        .open_service()
        .with_context(|| format!("opening state directory {}", config.state_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let secrets = load_secrets(
        args.credentials.as_deref(),
        Some(config.state_dir.as_path()),
    )?;
    let verifier = Verifier::new(secrets.aws.clone(), secrets.path.display().to_string());
    let token = args
        .review_token
        .unwrap_or_else(review_page::generate_token);
    let page = review_page::ReviewPageConfig {
        token: token.clone(),
        store: object_store::DirStore::open(&config.output_dir)
            .with_context(|| format!("opening object store {}", config.output_dir.display()))?,
        answers_file: config.state_dir.join("review-page-answers.json"),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    writeln!(
        out,
        "reviewer page: {}",
        review_page::page_url(addr, &token)
    )?;
    writeln!(out, "credentials: {}", secrets.path.display())?;
    out.flush()?;
    drop(out);
    tracing::info!(%addr, "review service started");
    review_page::serve(listener, service, verifier, page, shutdown).await?;
    tracing::info!("review service stopped");
    Ok(())
}

/// `local-aws object-store`: a directory served over the S3 API.
#[derive(Debug, clap::Args)]
pub struct ObjectStoreArgs {
    /// Directory holding the buckets (`ROOT/<bucket>/<key>`); created if missing.
    #[arg(long)]
    pub root: PathBuf,
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value_t = object_store::default_listen())]
    pub listen: SocketAddr,
    /// Credentials file whose key pair requests must be signed with (SigV4); made
    /// if missing.
    #[arg(long, value_name = "FILE")]
    pub credentials: PathBuf,
    /// Bucket to create at start if missing (repeatable).
    #[arg(long = "bucket")]
    pub buckets: Vec<String>,
}

pub async fn object_store(
    args: ObjectStoreArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let secrets = load_secrets(Some(args.credentials.as_path()), None)?;
    let config = ObjectStoreConfig {
        root: args.root,
        listen: args.listen,
        credentials: secrets.aws,
        buckets: args.buckets,
    };
    let _lock = lock(&config.root, "object store")?;
    let store = config
        .open()
        .with_context(|| format!("opening object store {}", config.root.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    print_lines(&[
        format!("listening on http://{addr}"),
        format!("credentials: {}", secrets.path.display()),
    ])?;
    tracing::info!(%addr, root = %config.root.display(), "local object store started");
    let service = object_store::s3_service(store, &config.credentials);
    object_store::serve(listener, service, shutdown).await?;
    tracing::info!("local object store stopped");
    Ok(())
}

/// `local-aws broker`: the embedded MQTT broker on its own.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// MQTT 3.1.1 address; port 0 picks a free one.
    #[arg(long, default_value_t = broker::default_listen_v4())]
    pub listen: SocketAddr,
    /// MQTT 5 address; port 0 picks a free one.
    #[arg(long, default_value_t = broker::default_listen_v5())]
    pub listen_v5: SocketAddr,
    /// Serve MQTT 3.1.1 only.
    #[arg(long)]
    pub no_v5: bool,
    /// Largest packet accepted, in bytes (IoT Core's limit by default).
    #[arg(long, default_value_t = broker::DEFAULT_MAX_PACKET_SIZE)]
    pub max_packet_size: usize,
    /// Credentials file holding the only MQTT login accepted (`mqtt_username`,
    /// `mqtt_password`); made if missing.
    #[arg(long, value_name = "FILE")]
    pub credentials: PathBuf,
}

pub async fn broker(
    args: BrokerArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let secrets = load_secrets(Some(args.credentials.as_path()), None)?;
    let config = BrokerConfig {
        listen_v4: args.listen,
        listen_v5: (!args.no_v5).then_some(args.listen_v5),
        max_packet_size: args.max_packet_size,
        login: secrets.mqtt,
        ..BrokerConfig::default()
    };
    let b = EmbeddedBroker::start(config).await?;
    let mut line = format!("listening on mqtt://{}", b.v4_addr());
    if let Some(v5) = b.v5_addr() {
        line.push_str(&format!(" (MQTT 5: mqtt://{v5})"));
    }
    print_lines(&[line, format!("credentials: {}", secrets.path.display())])?;
    shutdown.await;
    b.stop().await;
    Ok(())
}

/// `local-aws jobs`: the AWS IoT Jobs stand-in (device MQTT API + control API).
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    /// Directory for the jobs state (`jobs.json`; created if missing).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// The MQTT broker's 3.1.1 listener (HOST:PORT), e.g. `local-aws broker`'s.
    #[arg(long, default_value_t = broker::default_listen_v4().to_string())]
    pub broker: String,
    /// Address of the control API (loopback: only loopback `Host`s are served); port
    /// 0 picks a free one.
    #[arg(long, default_value_t = jobs::default_listen())]
    pub listen: SocketAddr,
    /// Credentials file: requests to the control API must be signed (SigV4) with its
    /// key pair, and its MQTT login is used with the broker (give the broker's file).
    /// Made if missing. Default: STATE_DIR/credentials.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    #[arg(long, default_value_t = super::review_service::default_region())]
    pub region: String,
    #[arg(long, default_value_t = super::review_service::default_account_id())]
    pub account_id: String,
}

pub async fn jobs(
    args: JobsArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let broker_addr = tokio::net::lookup_host(&args.broker)
        .await
        .with_context(|| format!("resolving the broker address {}", args.broker))?
        .next()
        .with_context(|| format!("the broker address {} resolves to nothing", args.broker))?;
    let _lock = lock(&args.state_dir, "jobs service state directory")?;
    let secrets = load_secrets(args.credentials.as_deref(), Some(args.state_dir.as_path()))?;
    let service = jobs::Jobs::open(&args.state_dir)
        .with_context(|| format!("opening state directory {}", args.state_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    print_lines(&[
        format!("listening on http://{addr}"),
        format!("credentials: {}", secrets.path.display()),
    ])?;
    tracing::info!(%addr, broker = %broker_addr, "jobs service started");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mqtt = tokio::spawn(jobs::run_mqtt(
        service.clone(),
        broker_addr,
        secrets.mqtt.clone(),
        wait(stopped.clone()),
    ));
    let id = jobs::ApiIdentity {
        region: args.region,
        account_id: args.account_id,
    };
    let verifier = Verifier::new(secrets.aws.clone(), secrets.path.display().to_string());
    let http = tokio::spawn(jobs::serve(listener, service, id, verifier, wait(stopped)));
    shutdown.await;
    let _ = stop.send(true);
    let _ = mqtt.await;
    http.await??;
    tracing::info!("jobs service stopped");
    Ok(())
}

/// Creates `dir` if missing and locks it for this process: one service per state
/// directory (see [`daemon_support::StateLock`]).
fn lock(dir: &std::path::Path, what: &str) -> anyhow::Result<daemon_support::StateLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(daemon_support::StateLock::acquire(dir, what)?)
}

fn print_lines(lines: &[String]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// The credentials file named, else `STATE_DIR/credentials`; made if missing.
fn load_secrets(file: Option<&Path>, state_dir: Option<&Path>) -> anyhow::Result<LocalSecrets> {
    let path = match (file, state_dir) {
        (Some(f), _) => f.to_owned(),
        (None, Some(d)) => d.join(credentials::FILE_NAME),
        (None, None) => anyhow::bail!("--credentials FILE is required"),
    };
    Ok(LocalSecrets::load_or_create(&path)?)
}
