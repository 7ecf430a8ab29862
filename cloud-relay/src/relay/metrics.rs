//! Counters for operators, rendered in the Prometheus text format and served on
//! `GET /metrics` (loopback by default). Plain atomics: cheap to bump from any task.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        /// What the relay has done since it started.
        #[derive(Debug, Default)]
        pub struct Counters { $(pub $name: AtomicU64,)* }

        impl Counters {
            fn render(&self, out: &mut String) {
                $(
                    let _ = writeln!(out, "# HELP cloud_relay_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE cloud_relay_{} counter", stringify!($name));
                    let _ = writeln!(out, "cloud_relay_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
            }
        }
    };
}

counters! {
    messages_in_total: "MQTT messages received on the events topics (whole events and chunks)",
    events_in_total: "events complete and verified (whole or reassembled)",
    events_rejected_total: "messages or events rejected (see rejected_total by reason)",
    images_uploaded_total: "images stored in S3 (including re-puts of redelivered events)",
    loops_started_total: "human loops started",
    loops_existing_total: "StartHumanLoop answered ConflictException: the loop existed",
    receipts_sent_total: "stored receipts published to devices",
    messages_acked_total: "MQTT messages acknowledged",
    acks_released_early_total: "messages acknowledged while their event was still being stored, so one slow event does not hold back the acks of later ones",
    chunks_staged_total: "chunks written to the S3 staging area (shared mode)",
    chunk_sets_expired_total: "incomplete chunk sets dropped after the timeout or to stay in bounds",
    event_failures_total: "events that failed permanently (left unacknowledged for redelivery)",
    loops_completed_total: "completed human loops whose result was collected",
    manifest_rows_written_total: "augmented-manifest rows written",
    manifest_rows_existing_total: "manifest rows found already written (another relay or an earlier run)",
    manifest_rows_invalid_total: "completed loops whose output could not become a row",
    reviews_published_total: "review results published to devices",
    loops_not_reviewed_total: "human loops that ended Stopped or Failed without answers (recorded once each; see manifest export --not-reviewed)",
    completion_events_received_total: "messages received from the completions queue (redeliveries included)",
    completion_events_deleted_total: "completion events dealt with and deleted from the queue",
    completion_events_skipped_total: "completion events of another flow, a foreign loop name or an unfinished status (deleted)",
    completion_events_failed_total: "completion events left in the queue after a failure, for redelivery",
    completion_events_poison_total: "receives of messages that are not A2I status-change events (left for the dead-letter queue)",
    completion_events_dead_lettered_total: "poison messages on their last receive: the queue's redrive policy moves each to the dead-letter queue (counted once each)",
    loop_listings_total: "ListHumanLoops pages read (the polling collector, or the reconciliation sweep)",
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub c: Counters,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    retries: Mutex<BTreeMap<&'static str, u64>>,
    pub pending_sets: AtomicU64,
    pub pending_bytes: AtomicU64,
    pub paused: AtomicU64,
}

pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn reject(&self, reason: &'static str) {
        inc(&self.c.events_rejected_total);
        *self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn retry(&self, what: &'static str) {
        *self
            .retries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(what)
            .or_default() += 1;
    }

    pub fn retries_total(&self) -> u64 {
        self.retries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.c.render(&mut out);
        let labelled = |out: &mut String,
                        name: &str,
                        help: &str,
                        label: &str,
                        map: &Mutex<BTreeMap<&'static str, u64>>| {
            let _ = writeln!(out, "# HELP cloud_relay_{name} {help}");
            let _ = writeln!(out, "# TYPE cloud_relay_{name} counter");
            for (k, v) in map.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = writeln!(out, "cloud_relay_{name}{{{label}=\"{k}\"}} {v}");
            }
        };
        labelled(
            &mut out,
            "rejected_total",
            "rejections by reason",
            "reason",
            &self.rejected,
        );
        labelled(
            &mut out,
            "retries_total",
            "retried calls by operation",
            "operation",
            &self.retries,
        );
        for (name, help, v) in [
            (
                "pending_chunk_sets",
                "incomplete chunk sets held in memory",
                &self.pending_sets,
            ),
            (
                "pending_chunk_bytes",
                "bytes held by incomplete chunk sets",
                &self.pending_bytes,
            ),
            (
                "intake_paused",
                "1 while a quota error pauses intake",
                &self.paused,
            ),
        ] {
            let _ = writeln!(out, "# HELP cloud_relay_{name} {help}");
            let _ = writeln!(out, "# TYPE cloud_relay_{name} gauge");
            let _ = writeln!(out, "cloud_relay_{name} {}", v.load(Ordering::Relaxed));
        }
        out
    }
}

/// Serves `GET /metrics` until `shutdown`.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics on /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move { ([("content-type", "text/plain; version=0.0.4")], m.render()) }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Reads one sample (`name` or `name{label="value"}`) from rendered metrics.
pub fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_labelled_rejections_in_prometheus_text() {
        let m = Metrics::default();
        inc(&m.c.events_in_total);
        m.reject("checksum");
        m.reject("checksum");
        m.retry("s3_put");
        let text = m.render();
        assert_eq!(sample(&text, "cloud_relay_events_in_total"), Some(1));
        assert_eq!(sample(&text, "cloud_relay_events_rejected_total"), Some(2));
        assert_eq!(
            sample(&text, "cloud_relay_rejected_total{reason=\"checksum\"}"),
            Some(2)
        );
        assert_eq!(
            sample(&text, "cloud_relay_retries_total{operation=\"s3_put\"}"),
            Some(1)
        );
        assert!(text.contains("# TYPE cloud_relay_intake_paused gauge"));
    }
}
