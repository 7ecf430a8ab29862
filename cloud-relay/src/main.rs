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

#[derive(Subcommand)]
enum Command {
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
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()).await {
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
        Command::ReviewService {
            listen,
            state_dir,
            output_dir,
            region,
            account_id,
            max_in_progress_loops,
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
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{addr}")?;
            out.flush()?;
            drop(out);
            tracing::info!(%addr, "review service started");
            review_service::serve(listener, service, shutdown_signal()).await?;
            tracing::info!("review service stopped");
            Ok(())
        }
    }
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
