//! Logging as every daemon binary of the workspace's cloud side does it: to stderr
//! (`RUST_LOG` overrides the default filter). `cloud-relay` and `local-aws` both use
//! it; the stop signals are `daemon_support::shutdown_signal`.

/// Logs to stderr, with colour only on a terminal. `default_filter` applies unless
/// `RUST_LOG` is set (e.g. `"info"`).
pub fn init_tracing(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
