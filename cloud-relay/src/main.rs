//! cloud-relay binary: argument parsing, logging, signals. The work is in the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cloud_relay::review_service::{self, ReviewServiceConfig};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--config FILE`, shared by the subcommands that read the relay's config.
#[derive(clap::Args)]
struct ConfigPath {
    /// The relay's TOML config.
    #[arg(
        long = "config",
        short = 'c',
        default_value = "/etc/cloud-relay/config.toml",
        env = "CLOUD_RELAY_CONFIG"
    )]
    path: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay daemon: MQTT events into S3 and A2I human loops, results into
    /// the augmented manifest.
    Run {
        #[command(flatten)]
        config: ConfigPath,
    },
    /// Parse and validate a config file, then exit.
    CheckConfig {
        #[command(flatten)]
        config: ConfigPath,
        /// Also run the start-up checks against AWS: the bucket, and the flow
        /// definition (exists, Active, known to the A2I runtime). Not the broker: that
        /// would take over a running relay's session.
        #[arg(long)]
        online: bool,
    },
    /// Create the human task UI (from the model's labels) and the flow definition of
    /// `[a2i.setup]` if missing, wait until the flow is Active, print both ARNs.
    Setup {
        #[command(flatten)]
        config: ConfigPath,
        /// How long to wait for the flow definition to become Active.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Print the annotated default configuration.
    PrintDefaultConfig,
    /// Augmented-manifest rows.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Human loops that ended (Stopped, Failed) without answers.
    #[command(subcommand)]
    Loops(LoopsCommand),
    /// Serve the local A2I-compatible review service (A2I runtime + SageMaker
    /// flow-definition API). Prints `listening on http://ADDR` as its first stdout line.
    ReviewService {
        /// Address to listen on; port 0 picks a free one. Keep it on loopback:
        /// requests are not authenticated (SigV4 signatures are not verified).
        #[arg(long, default_value_t = review_service::default_listen())]
        listen: SocketAddr,
        /// Directory for the service's durable state (created if missing).
        #[arg(long)]
        state_dir: PathBuf,
        /// Local object store root: output.json goes to OUTPUT_DIR/<bucket>/<key>.
        #[arg(long)]
        output_dir: PathBuf,
        #[arg(long, default_value_t = review_service::default_region())]
        region: String,
        #[arg(long, default_value_t = review_service::default_account_id())]
        account_id: String,
        /// Most human loops in progress at once (ServiceQuotaExceededException beyond).
        #[arg(long, default_value_t = review_service::store::default_max_in_progress())]
        max_in_progress_loops: usize,
        /// Access token of the reviewer page (default: a fresh random one). The page's
        /// URL, token included, is printed as the second stdout line.
        #[arg(long, env = "EDGE_A2I_REVIEW_TOKEN", hide_env_values = true)]
        review_token: Option<String>,
    },
    /// Serve a directory as S3 on loopback: local mode's object store. Prints
    /// `listening on http://ADDR` as its first stdout line.
    ObjectStore(cloud_relay::local::cli::ObjectStoreArgs),
    /// Run the embedded MQTT broker on loopback (keeps nothing across restarts).
    /// Prints `listening on mqtt://ADDR ...` as its first stdout line.
    Broker(cloud_relay::local::cli::BrokerArgs),
    /// Local mode in one command: broker, object store, review service and relay in
    /// this process, edge-agent as a child, over a folder of frames. Prints
    /// `reviewer page: URL` as its first stdout line, then progress; Ctrl-C stops it.
    Local(cloud_relay::local::demo::LocalArgs),
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Write the reviewed rows as one JSON-lines file (oldest review first).
    Export {
        #[command(flatten)]
        config: ConfigPath,
        /// Output file; `-` for stdout.
        #[arg(long, short, default_value = "-")]
        output: PathBuf,
        /// Reviewed at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// Reviewed before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// Keep only rows with this class name (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Instead of rows: the frames whose human loop ended Stopped or Failed and
        /// that have no row yet, one JSON line each (source-ref, event_id, device_id,
        /// human_loop_name, status, failure_reason, loop_created_at, noticed_at).
        #[arg(long, conflicts_with_all = ["from", "to", "labels"])]
        not_reviewed: bool,
    },
}

#[derive(Subcommand)]
enum LoopsCommand {
    /// Start a fresh human loop for the same stored image as a Stopped or Failed loop,
    /// named `<loop of the event>-r<n>`; its answers become the event's one manifest
    /// row. Restarting a loop twice starts nothing the second time.
    Restart {
        #[command(flatten)]
        config: ConfigPath,
        /// Every loop `manifest export --not-reviewed` lists.
        #[arg(long, conflicts_with = "names", required_unless_present = "names")]
        all: bool,
        /// Loops to restart, by name.
        names: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Local mode's broker logs every probe and disconnect as an error: keep it quiet.
    let default_filter = match cli.command {
        Command::Local(_) => "info,rumqttd=off",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain: which file, which field, and why.
            eprintln!("cloud-relay: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config } => {
            let config = cloud_relay::config::Config::load(&config.path)?;
            cloud_relay::relay::run(config, shutdown_signal()).await?;
            Ok(())
        }
        Command::CheckConfig {
            config: ConfigPath { path },
            online,
        } => {
            let config = cloud_relay::config::Config::load(&path)?;
            if online {
                cloud_relay::relay::check(&config).await?;
            }
            println!("{}: ok", path.display());
            Ok(())
        }
        Command::Setup { config, wait } => cloud_relay::setup::cli(&config.path, wait).await,
        Command::PrintDefaultConfig => {
            print!("{}", cloud_relay::config::DEFAULT_CONFIG);
            Ok(())
        }
        Command::Manifest(ManifestCommand::Export {
            config,
            output,
            from,
            to,
            labels,
            not_reviewed,
        }) => {
            let config = cloud_relay::config::Config::load(&config.path)?;
            let ms = |t: Option<String>| -> anyhow::Result<Option<i64>> {
                t.map(|t| protocol::timestamp::parse_rfc3339_utc(&t).map_err(anyhow::Error::from))
                    .transpose()
            };
            let filter = cloud_relay::relay::collector::ExportFilter {
                from_ms: ms(from)?,
                to_ms: ms(to)?,
                labels,
            };
            let store = cloud_relay::relay::s3::S3Store::connect(&config.s3).await;
            let mut out: Box<dyn Write + Send> = if output.as_os_str() == "-" {
                Box::new(std::io::stdout())
            } else {
                Box::new(
                    std::fs::File::create(&output)
                        .with_context(|| format!("creating {}", output.display()))?,
                )
            };
            if not_reviewed {
                let n = cloud_relay::relay::restart::export_not_reviewed(&config, &store, &mut out)
                    .await?;
                tracing::info!(loops = n, "not-reviewed frames exported");
                return Ok(());
            }
            let n =
                cloud_relay::relay::collector::export(&config, &store, &filter, &mut out).await?;
            tracing::info!(rows = n, "manifest exported");
            Ok(())
        }
        Command::Loops(LoopsCommand::Restart { config, all, names }) => {
            let config = cloud_relay::config::Config::load(&config.path)?;
            loops_restart(&config, all, names).await
        }
        Command::ObjectStore(args) => {
            cloud_relay::local::cli::object_store(args, shutdown_signal()).await
        }
        Command::Broker(args) => cloud_relay::local::cli::broker(args, shutdown_signal()).await,
        Command::Local(args) => cloud_relay::local::demo::run(args, shutdown_signal()).await,
        Command::ReviewService {
            listen,
            state_dir,
            output_dir,
            region,
            account_id,
            max_in_progress_loops,
            review_token,
        } => {
            let config = ReviewServiceConfig {
                listen,
                state_dir,
                output_dir,
                region,
                account_id,
                max_in_progress_loops,
            };
            let service = config.open_service().with_context(|| {
                format!("opening state directory {}", config.state_dir.display())
            })?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            let addr = listener.local_addr()?;
            let token =
                review_token.unwrap_or_else(cloud_relay::local::review_page::generate_token);
            let page = cloud_relay::local::review_page::ReviewPageConfig {
                token: token.clone(),
                store: cloud_relay::local::object_store::DirStore::open(&config.output_dir)
                    .with_context(|| {
                        format!("opening object store {}", config.output_dir.display())
                    })?,
                answers_file: config.state_dir.join("review-page-answers.json"),
            };
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{addr}")?;
            writeln!(
                out,
                "reviewer page: {}",
                cloud_relay::local::review_page::page_url(addr, &token)
            )?;
            out.flush()?;
            drop(out);
            tracing::info!(%addr, "review service started");
            cloud_relay::local::review_page::serve(listener, service, page, shutdown_signal())
                .await?;
            tracing::info!("review service stopped");
            Ok(())
        }
    }
}

/// `loops restart`: one stdout line per loop; fails if any loop could not be restarted.
async fn loops_restart(
    config: &cloud_relay::config::Config,
    all: bool,
    names: Vec<String>,
) -> anyhow::Result<()> {
    use cloud_relay::relay::restart::{restart_all, restart_one, Restarted};
    let store = cloud_relay::relay::s3::S3Store::connect(&config.s3).await;
    let a2i = cloud_relay::relay::a2i::A2iClient::connect(&config.a2i).await;
    let outcomes = if all {
        restart_all(config, &store, &a2i).await?
    } else {
        let mut out = Vec::new();
        for name in names {
            let result = restart_one(config, &store, &a2i, &name, None).await;
            out.push((name, result));
        }
        out
    };
    let mut failed = 0;
    for (name, result) in &outcomes {
        match result {
            Ok(Restarted::Started { to, .. }) => println!("{name}: restarted as {to}"),
            Ok(Restarted::Existed { to, .. }) => println!("{name}: already restarted as {to}"),
            Err(e) => {
                failed += 1;
                eprintln!("{name}: not restarted: {e}");
            }
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} loops not restarted",
        outcomes.len()
    );
    Ok(())
}

/// SIGINT or SIGTERM (systemd's stop).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
