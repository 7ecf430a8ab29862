//! `edge-agent outbox ...`: operator commands on the durable outbox (set-aside
//! events). They open the outbox file named by the daemon's config and need the
//! daemon stopped: the outbox has one owner at a time (a lock), and a running daemon
//! makes them fail with an error that says so.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::AgentConfig;
use crate::outbox::Outbox;

#[derive(Debug, Args)]
pub struct OutboxArgs {
    #[command(subcommand)]
    pub command: OutboxCommand,
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List the events kept aside (rejected by the relay, refused by the broker, or
    /// unsendable): id, code, when, size, reason. The daemon must be stopped.
    ListSetAside {
        /// The daemon's config file (names the outbox's state_dir).
        #[arg(long, short, default_value = "/etc/edge-agent/config.toml")]
        config: PathBuf,
    },
    /// Put set-aside events back into delivery (sent at the daemon's next start).
    /// The daemon must be stopped.
    Requeue {
        /// The daemon's config file (names the outbox's state_dir).
        #[arg(long, short, default_value = "/etc/edge-agent/config.toml")]
        config: PathBuf,
        /// Requeue every set-aside event.
        #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
        all: bool,
        /// The event ids to requeue.
        #[arg(value_name = "ID")]
        ids: Vec<String>,
    },
}

/// Opens the outbox the config names; it must exist (these commands never create
/// one), and the daemon must not hold it.
fn open(config_path: &std::path::Path) -> anyhow::Result<Outbox> {
    let config = AgentConfig::load(config_path)?;
    let path = config.outbox_path();
    if !path.exists() {
        anyhow::bail!(
            "no outbox at {} (state_dir of {}): nothing to do",
            path.display(),
            config_path.display()
        );
    }
    Ok(Outbox::open(&path, config.outbox_config())?)
}

pub fn run(args: OutboxArgs) -> anyhow::Result<i32> {
    match args.command {
        OutboxCommand::ListSetAside { config } => {
            let outbox = open(&config)?;
            let entries = outbox.set_aside_entries()?;
            for e in &entries {
                println!(
                    "{}\t{}\t{}\t{} bytes\t{}",
                    e.event_id,
                    e.code,
                    protocol::timestamp::format_rfc3339_utc(e.set_aside_at as i64),
                    e.size,
                    e.reason
                );
            }
            eprintln!(
                "{} event(s) set aside in {}",
                entries.len(),
                outbox.path().display()
            );
            Ok(0)
        }
        OutboxCommand::Requeue { config, all, ids } => {
            let mut outbox = open(&config)?;
            let ids: Vec<String> = if all {
                outbox
                    .set_aside_entries()?
                    .into_iter()
                    .map(|e| e.event_id)
                    .collect()
            } else {
                ids
            };
            let mut missing = 0;
            for id in &ids {
                if outbox
                    .requeue(id)
                    .with_context(|| format!("requeue {id}"))?
                {
                    println!("{id}\trequeued");
                } else {
                    eprintln!("{id}: not a set-aside event in {}", outbox.path().display());
                    missing += 1;
                }
            }
            eprintln!(
                "{} event(s) requeued; they are sent when edge-agent starts",
                ids.len() - missing
            );
            Ok(if missing > 0 { 1 } else { 0 })
        }
    }
}
