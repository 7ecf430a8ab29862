//! local-aws binary: argument parsing, logging, signals. The work is in the library.

use clap::{Parser, Subcommand};
use cloud_relay::process::init_tracing;
use daemon_support::shutdown_signal;
use local_aws::cli;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Local mode in one command: broker, object store, review service and relay in
    /// this process, edge-agent as a child, over a folder of frames. Prints
    /// `reviewer page: URL` as its first stdout line, then progress; Ctrl-C stops it.
    Run(local_aws::demo::LocalArgs),
    /// Serve the local A2I-compatible review service (A2I runtime + SageMaker
    /// flow-definition API + reviewer page). Prints `listening on http://ADDR` as its
    /// first stdout line.
    ReviewService(cli::ReviewServiceArgs),
    /// Serve a directory as S3 on loopback: local mode's object store. Prints
    /// `listening on http://ADDR` as its first stdout line.
    ObjectStore(cli::ObjectStoreArgs),
    /// Run the embedded MQTT broker on loopback (keeps nothing across restarts).
    /// Prints `listening on mqtt://ADDR ...` as its first stdout line.
    Broker(cli::BrokerArgs),
    /// Serve the local AWS IoT Jobs service: the Jobs device MQTT API through a broker
    /// and the control API (CreateJob, DescribeJob, ...) on loopback HTTP. Prints
    /// `listening on http://ADDR` as its first stdout line.
    Jobs(cli::JobsArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The embedded broker logs every probe and disconnect as an error: keep it quiet.
    init_tracing(match cli.command {
        Command::Run(_) => "info,rumqttd=off",
        _ => "info",
    });
    let result = match cli.command {
        Command::Run(args) => local_aws::demo::run(args, shutdown_signal()).await,
        Command::ReviewService(args) => cli::review_service(args, shutdown_signal()).await,
        Command::ObjectStore(args) => cli::object_store(args, shutdown_signal()).await,
        Command::Broker(args) => cli::broker(args, shutdown_signal()).await,
        Command::Jobs(args) => cli::jobs(args, shutdown_signal()).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain, each cause once: which file, which field, and why.
            eprintln!("local-aws: error: {}", daemon_support::report(&*e));
            std::process::ExitCode::FAILURE
        }
    }
}
