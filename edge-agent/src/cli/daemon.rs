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
    // The update steps' failpoints, from `FAILPOINTS` (the kill tests); none when unset.
    let _failpoints = fail::FailScenario::setup();
    let config = AgentConfig::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // SIGTERM (systemd), SIGINT (Ctrl-C) and SIGHUP (terminal closed) stop it cleanly;
    // the handlers are in place before any work starts.
    let stop = {
        let _runtime = runtime.enter();
        daemon_support::shutdown_signal()
    };
    runtime.block_on(crate::daemon::run(config, stop))?;
    Ok(0)
}

/// Checks everything `run` will need before it starts: the config, the model and
/// the policy's labels against it, the TLS files (PEM, key matching certificate), the
/// update keys and the sources' folders and devices. Each fault is one error naming
/// the setting and the file.
pub fn check_config(args: ConfigArgs) -> anyhow::Result<i32> {
    let config = AgentConfig::load(&args.config)?;
    let at = |what: String| anyhow::anyhow!("config {}: {what}", args.config.display());
    // The policy's labels are checked against the model too.
    let manifest = match &config.model.manifest {
        Some(p) => p.clone(),
        None => crate::model::find_default_manifest()?,
    };
    let package = crate::model::ModelPackage::load(&manifest)?;
    crate::policy::ReviewPolicy::new(config.policy.clone(), package.labels.clone())
        .map_err(|e| at(format!("[policy]: {e}")))?;
    if let Some(tls) = &config.mqtt.tls {
        crate::daemon::check_tls_files(tls).map_err(|e| at(e.to_string()))?;
    }
    config
        .update
        .load_keys()
        .map_err(|e| at(format!("[update]: {e}")))?;
    for (i, source) in config.sources.iter().enumerate() {
        check_source_paths(source).map_err(|e| at(format!("[[source]] #{}: {e}", i + 1)))?;
    }
    crate::daemon::mqtt_login::load(&config.mqtt)?;
    println!("{}: ok", args.config.display());
    Ok(0)
}

/// The paths a source opens at start: a folder source's folder must be a directory
/// (its `after.move.to` is created if missing, but must not be a file); a camera's
/// device must exist; a command's program must be found.
fn check_source_paths(source: &crate::config::SourceConfig) -> Result<(), String> {
    use crate::config::SourceConfig;
    use crate::source::folder::AfterProcessing;
    let dir = |setting: &str, path: &std::path::Path| match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{setting} {} is not a directory", path.display())),
        Err(e) => Err(format!("{setting} {}: {e}", path.display())),
    };
    match source {
        SourceConfig::Folder(c) => {
            dir("path", &c.path)?;
            if let AfterProcessing::Move { to } = &c.after {
                if to.exists() {
                    dir("after.move.to", to)?;
                }
            }
            Ok(())
        }
        SourceConfig::Camera(c) => std::fs::metadata(&c.device)
            .map(|_| ())
            .map_err(|e| format!("device {}: {e}", c.device.display())),
        SourceConfig::Command(c) => crate::source::command::find_program(&c.command[0])
            .map(|_| ())
            .map_err(|e| format!("command {e}")),
    }
}

pub fn print_default_config() -> anyhow::Result<i32> {
    print!("{DEFAULT_CONFIG}");
    Ok(0)
}
