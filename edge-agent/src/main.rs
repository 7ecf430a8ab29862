//! edge-agent: parse the command line, run the command, report errors with their
//! whole cause chain and a meaningful exit status (0 ok, 1 some input failed,
//! 2 could not run at all).

use clap::Parser;
use edge_agent::cli::{bench, classify, daemon, Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(args) => classify::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Run(args) => daemon::run(args),
        Command::CheckConfig(args) => daemon::check_config(args),
        Command::PrintDefaultConfig => daemon::print_default_config(),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("edge-agent: error: {err:#}");
            std::process::exit(2);
        }
    }
}
