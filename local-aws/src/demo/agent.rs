//! Local mode's edge-agent child: started only once a previous one (stopping after
//! its parent was killed) has let go of the agent's state directory; stopped with
//! SIGTERM and a grace period, then SIGKILL.

use std::time::Duration;

/// SIGTERM, then up to 20 s for the agent to finish what it holds; then SIGKILL.
pub(super) async fn stop(agent: &mut tokio::process::Child) {
    if let Ok(Some(_)) = agent.try_wait() {
        return;
    }
    #[cfg(unix)]
    if let Some(pid) = agent.id() {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    match tokio::time::timeout(Duration::from_secs(20), agent.wait()).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => tracing::warn!(%status, "edge-agent exited with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "waiting for edge-agent"),
        Err(_) => {
            tracing::warn!("edge-agent did not stop within 20 s; killing it");
            let _ = agent.kill().await;
        }
    }
}

/// How long a previous agent may take to release its state directory.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Waits until no earlier agent holds the agent's state directory `dir`: one whose
/// parent was killed gets SIGTERM from the kernel and may still be finishing its frame.
pub(super) async fn wait_for_previous(dir: &std::path::Path) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    let mut said = false;
    while let Some(holder) = daemon_support::StateLock::holder(dir) {
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the agent's state directory {} is still held by {holder} after {} s; stop it first",
                dir.display(),
                STOP_WAIT.as_secs()
            );
        }
        if !said {
            tracing::info!(%holder, "waiting for the previous edge-agent to stop");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
