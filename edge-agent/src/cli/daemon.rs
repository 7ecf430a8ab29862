//! `edge-agent run`, `check-config` and `print-default-config`.

use std::path::PathBuf;

use clap::Args;

use crate::config::{AgentConfig, DEFAULT_CONFIG};

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The daemon's config file.
    #[arg(long, short, default_value = "/etc/edge-agent/config.toml")]
    pub config: PathBuf,
}

/// Logs for journald when started by systemd (no timestamps or colours: journald adds
/// its own), readable text on a terminal; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .init();
    } else {
        use std::io::IsTerminal;
        builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
}

pub fn run(args: ConfigArgs) -> anyhow::Result<i32> {
    init_logging();
    let config = AgentConfig::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(crate::daemon::run(config, shutdown_signal()))?;
    Ok(0)
}

/// SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

pub fn check_config(args: ConfigArgs) -> anyhow::Result<i32> {
    let config = AgentConfig::load(&args.config)?;
    // The policy's labels are checked against the model too.
    let manifest = match &config.model.manifest {
        Some(p) => p.clone(),
        None => crate::model::find_default_manifest()?,
    };
    let package = crate::model::ModelPackage::load(&manifest)?;
    crate::policy::ReviewPolicy::new(config.policy.clone(), package.labels.clone())
        .map_err(|e| anyhow::anyhow!("config {}: [policy]: {e}", args.config.display()))?;
    if let Some(tls) = &config.mqtt.tls {
        crate::daemon::check_tls_files(tls)?;
    }
    crate::daemon::mqtt_login::load(&config.mqtt)?;
    println!("{}: ok", args.config.display());
    Ok(0)
}

pub fn print_default_config() -> anyhow::Result<i32> {
    print!("{DEFAULT_CONFIG}");
    Ok(0)
}
