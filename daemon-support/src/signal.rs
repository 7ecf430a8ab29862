//! The stop signals of every daemon: SIGINT (Ctrl-C), SIGTERM (systemd's stop,
//! `kill`) and SIGHUP (the controlling terminal closed, or an ssh session dropped).
//! SIGHUP's default action ends the process on the spot, skipping the clean stop
//! (the agent's offline status, local mode stopping its child first): here it asks
//! for the same clean stop as the other two.

use std::future::Future;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The three stop signals' handlers, installed together.
#[derive(Debug)]
pub struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Installs the handlers now (from then on none of the three ends the process by
    /// itself). Must be called within a tokio runtime.
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next stop signal; returns its name for the log.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP (terminal closed)",
        }
    }
}

/// Installs the handlers at once (call it first thing, within the runtime) and returns
/// the future that completes, logging which signal came, at the first of them.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let installed = StopSignals::install();
    async move {
        match installed {
            Ok(mut signals) => {
                let name = signals.recv().await;
                tracing::info!("{name} received: stopping");
            }
            Err(e) => {
                // The default actions stay: the signals still end the process.
                tracing::warn!(error = %e, "cannot install the stop-signal handlers");
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sighup_asks_for_a_clean_stop_instead_of_ending_the_process() {
        let stop = shutdown_signal();
        // SAFETY: raise(3) on this process; the handler installed above takes SIGHUP.
        unsafe {
            libc::raise(libc::SIGHUP);
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), stop)
            .await
            .expect("the stop future completes on SIGHUP");
    }
}
