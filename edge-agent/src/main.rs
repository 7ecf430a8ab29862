//! edge-agent: parse the command line, run the command, report errors with their
//! whole cause chain and a meaningful exit status (0 ok, 1 some input failed,
//! 2 could not run at all).

use clap::Parser;
use edge_agent::cli::{classify, daemon, eval, litert_probe, model, outbox, retrain, Cli, Command};

fn main() {
    tune_malloc();
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        // The benchmark is no longer part of the device binary: say where it went.
        if e.kind() == clap::error::ErrorKind::InvalidSubcommand
            && std::env::args().nth(1).as_deref() == Some("bench")
        {
            eprintln!("{e}\nThe benchmark is run from the source tree: cargo bench -p edge-agent --bench peer -- --help");
            std::process::exit(2);
        }
        e.exit()
    });
    let result = match cli.command {
        Command::Classify(args) => classify::run(args),
        Command::Run(args) => daemon::run(args),
        Command::CheckConfig(args) => daemon::check_config(args),
        Command::PrintDefaultConfig => daemon::print_default_config(),
        Command::Outbox(args) => outbox::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Retrain(args) => retrain::run(args),
        Command::Model(args) => model::run(args),
        Command::LitertProbe(args) => litert_probe(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("edge-agent: error: {}", daemon_support::report(&*err));
            std::process::exit(2);
        }
    }
}

/// Two glibc malloc settings for a small, steady resident set on a small device:
/// - glibc raises its mmap threshold after large blocks are freed, after which the
///   big per-frame buffers (decoded images) stay in the heap and peak RSS creeps up.
///   A fixed 1 MiB threshold hands them back to the kernel at every free (measured
///   on the samples: 37 -> 33 MiB peak with the same frames/s).
/// - Every thread that allocates (frame preparers, the JPEG decoder's per-component
///   threads, tokio workers) otherwise gets its own arena, each holding freed memory
///   of its own. One arena: 47 -> 41 MiB peak on 1920x1080 frames, frames/s the same
///   (the per-thread caches serve small allocations without the arena lock).
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
