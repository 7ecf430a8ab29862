//! cloud-relay binary: argument parsing, logging, signals. The work is in the library.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

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
    /// `[a2i.setup]` if missing, wait until the flow is Active, print both ARNs; with
    /// `[results.queue]`, also the completions queue, its dead-letter queue and the
    /// EventBridge rule that fills it.
    Setup {
        #[command(flatten)]
        config: ConfigPath,
        /// How long to wait for the flow definition to become Active.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
        /// Create nothing: print the completion-event resources of `[results.queue]`
        /// (queues, policies, EventBridge rule and target) for provisioning by other
        /// tools.
        #[arg(long)]
        print_events: bool,
    },
    /// Print the annotated default configuration.
    PrintDefaultConfig,
    /// Augmented-manifest rows.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Human loops that ended (Stopped, Failed) without answers.
    #[command(subcommand)]
    Loops(LoopsCommand),
    /// Model rollouts to devices: publish, rollback, status (AWS IoT Jobs).
    #[command(subcommand)]
    Fleet(cloud_relay::fleet::FleetCommand),
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
    if let Some(moved) = moved_to_local_aws(std::env::args().nth(1).as_deref()) {
        eprintln!("cloud-relay: `{moved}` moved to the local-aws binary: run `{}` (scripts/demo.sh runs local mode)",
            if moved == "local" { "local-aws run".to_owned() } else { format!("local-aws {moved}") });
        return std::process::ExitCode::from(2);
    }
    let cli = Cli::parse();
    cloud_relay::process::init_tracing("info");
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain, each cause once: which file, which field, and why.
            eprintln!("cloud-relay: error: {}", daemon_support::report(&*e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config } => {
            let config = cloud_relay::config::Config::load(&config.path)?;
            cloud_relay::relay::run(config, daemon_support::shutdown_signal()).await?;
            Ok(())
        }
        Command::CheckConfig {
            config: ConfigPath { path },
            online,
        } => {
            let config = cloud_relay::config::Config::load(&path)?;
            // The TLS files as the relay reads them at start: PEM, the key the
            // certificate's.
            cloud_relay::relay::mqtt::options(&config)
                .with_context(|| format!("config {}", path.display()))?;
            if online {
                cloud_relay::relay::check(&config).await?;
            }
            println!("{}: ok", path.display());
            Ok(())
        }
        Command::Setup {
            config,
            wait,
            print_events: false,
        } => cloud_relay::setup::cli(&config.path, wait).await,
        Command::Setup {
            config,
            print_events: true,
            ..
        } => cloud_relay::setup::print_events(&config.path),
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
        Command::Fleet(command) => cloud_relay::fleet::run(command).await,
        Command::Loops(LoopsCommand::Restart { config, all, names }) => {
            let config = cloud_relay::config::Config::load(&config.path)?;
            loops_restart(&config, all, names).await
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

/// Local mode's subcommands left this binary for `local-aws`, which holds local mode
/// (the relay's crate holds only what runs against AWS); their old names get a hint.
fn moved_to_local_aws(arg: Option<&str>) -> Option<&str> {
    arg.filter(|a| ["local", "review-service", "object-store", "broker"].contains(a))
}
