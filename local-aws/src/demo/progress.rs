//! Local mode's `progress:` line: how many frames were copied, classified, refused,
//! let pass by the review policy and sent for review (each with why), reviewed, and
//! turned into manifest rows. Copies and the inbox are counted here; the review
//! service and the object store give loops and rows; the frames' outcomes come from
//! the agent's retained status (`outcomes`, counted since the agent started), which
//! [`watch_status`] follows on the embedded broker.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::status::FrameOutcomes;
use protocol::{DeviceId, Status, Topics};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use super::BUCKET;
use crate::object_store::{DirStore, ListRequest};

/// The counts of one progress line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Progress {
    pub copied: usize,
    pub new: usize,
    pub classified: usize,
    pub loops: usize,
    pub reviewed: usize,
    pub rows: usize,
    /// The agent's frame outcomes since it started.
    pub outcomes: FrameOutcomes,
}

fn total(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

/// `3 selected for review (audit 1, low_confidence 2)`; `0 selected for review` when
/// there is nothing to say why about.
fn with_why(m: &BTreeMap<String, u64>, what: &str) -> String {
    if m.is_empty() {
        return format!("0 {what}");
    }
    let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{} {what} ({})", total(m), parts.join(", "))
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.outcomes;
        write!(
            f,
            "progress: {} frames copied ({} new), {} classified, {} sent for review, {} reviewed, \
             {} manifest rows; this agent run: {}, {}, {}",
            self.copied,
            self.new,
            self.classified,
            self.loops,
            self.reviewed,
            self.rows,
            with_why(&o.refused, "refused"),
            with_why(&o.passed, "passed by the policy"),
            with_why(&o.selected, "selected for review"),
        )
    }
}

impl Progress {
    /// Frames the agent took from the inbox and classified: taken, minus the ones it
    /// refused (this agent run's count; refusals of earlier runs are not known here).
    pub(super) fn set_classified(&mut self, pending_in_inbox: usize) {
        let taken = self.copied.saturating_sub(pending_in_inbox);
        self.classified = taken.saturating_sub(total(&self.outcomes.refused) as usize);
    }
}

/// Objects under `prefix` in local mode's bucket.
pub(super) fn count_rows(store: &DirStore, prefix: &str) -> usize {
    let req = ListRequest {
        prefix: prefix.to_owned(),
        max_keys: usize::MAX,
        ..ListRequest::default()
    };
    store.list(BUCKET, &req).map_or(0, |p| p.objects.len())
}

/// Frames in the inbox the agent has not taken yet (hidden files are partial copies).
pub(super) fn pending_in_inbox(inbox: &Path) -> usize {
    // Files only: the agent sets refused frames aside in the `rejected/` folder.
    std::fs::read_dir(inbox).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
            .count()
    })
}

/// The agent's latest status outcomes, kept up to date by [`watch_status`].
pub(super) type LatestOutcomes = Arc<Mutex<FrameOutcomes>>;

/// Follows `device`'s retained status on the broker at `broker` until `shutdown`,
/// keeping its `outcomes` in `latest`, logged in as local mode (the broker takes no
/// one else). An `offline` status (the agent's last will) keeps the last counts.
pub(super) async fn watch_status(
    broker: SocketAddr,
    login: crate::credentials::MqttLogin,
    device: &str,
    latest: LatestOutcomes,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let topic = match (
        Topics::new(protocol::topics::DEFAULT_PREFIX),
        DeviceId::new(device),
    ) {
        (Ok(t), Ok(d)) => t.status(&d),
        _ => return,
    };
    let mut options = MqttOptions::new("local-progress", broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_credentials(login.username, login.password);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            polled = eventloop.poll() => match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe(&topic, QoS::AtMostOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(status) = Status::from_json(&p.payload) {
                        if !status.outcomes.is_empty() {
                            *latest.lock().unwrap() = status.outcomes;
                        }
                    }
                }
                Ok(_) => {}
                // The broker is in this process: an error is a stop or a moment's hiccup.
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    let _ = client.try_disconnect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_what_was_refused_passed_and_selected_and_why() {
        let mut p = Progress {
            copied: 6,
            new: 6,
            loops: 3,
            ..Progress::default()
        };
        p.outcomes.refused.insert("truncated".into(), 1);
        p.outcomes.passed.insert("confident".into(), 2);
        p.outcomes.selected.insert("low_confidence".into(), 2);
        p.outcomes.selected.insert("audit".into(), 1);
        p.set_classified(0);
        assert_eq!(
            p.to_string(),
            "progress: 6 frames copied (6 new), 5 classified, 3 sent for review, 0 reviewed, \
             0 manifest rows; this agent run: 1 refused (truncated 1), 2 passed by the policy \
             (confident 2), 3 selected for review (audit 1, low_confidence 2)"
        );
    }
}
