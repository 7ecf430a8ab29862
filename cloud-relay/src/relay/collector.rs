//! Results, the driver: polls A2I for this flow's loops, and for each completed one
//! whose row is not yet in S3, reads its output.json, builds the row and puts it at
//! `{manifest}/rows/{event_id}.json` if absent; optionally publishes the review to
//! the device. Several relays may do this at once: the conditional put (and the
//! deterministic bytes) keep it to one row per event, whichever of its loops (the
//! first or a restart, see [`super::loops`]) completes. A loop that ends Stopped or
//! Failed gets a not-reviewed record, put only if absent: the relay that creates it
//! logs one warning and counts it, so each such loop is reported once however many
//! relays see it. Also `manifest export`.

use std::future::Future;
use std::sync::Arc;

use protocol::manifest::ManifestRow;
use protocol::timestamp::parse_iso8601_utc;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;

use super::a2i::A2iClient;
use super::a2i::LoopSummary;
use super::keys::KeyLayout;
use super::loops::{parse_loop_name, NotReviewed};
use super::metrics::{inc, Metrics};
use super::results::{build_row, LoopTracker, Todo};
use super::retry::{retry, Failure};
use super::s3::{Put, S3Store};
use crate::config::Config;
use protocol::json::parse_s3_uri;

/// Loops listed this close to a listing's newest are listed again next time, in case
/// one created just before became visible just after.
const WATERMARK_MARGIN_MS: i64 = 5 * 60 * 1000;

#[derive(Clone)]
pub struct Collector {
    pub config: Config,
    pub store: S3Store,
    pub a2i: A2iClient,
    pub layout: KeyLayout,
    pub metrics: Arc<Metrics>,
    pub mqtt: Option<AsyncClient>,
}

fn now_ms() -> i64 {
    protocol::timestamp::now_ms() as i64
}

impl Collector {
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let r = &self.config.results;
        let mut tracker = LoopTracker::new(r.lookback.as_millis() as i64, WATERMARK_MARGIN_MS);
        if r.queue.is_some() {
            // Completions come as events; listing only sweeps up what an event missed.
            return self.sweep_when_due(shutdown).await;
        }
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.poll(&mut tracker).await {
                tracing::warn!(error = %e, "collecting results failed; trying again next poll");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(r.poll_interval) => {}
            }
        }
    }

    /// One pass over the loops from the watermark on.
    pub async fn poll(&self, tracker: &mut LoopTracker) -> Result<(), Failure> {
        let from = tracker.list_from(now_ms());
        let mut token = None;
        loop {
            let (loops, next) = self.a2i.list_page(from, token).await?;
            inc(&self.metrics.c.loop_listings_total);
            for s in &loops {
                match tracker.observe(s) {
                    Todo::Nothing => {}
                    Todo::Ended { status, reason } => {
                        match self.record_not_reviewed(s, status, reason).await {
                            Ok(()) => tracker.mark_done(&s.name, s.creation_ms),
                            Err(e) => {
                                tracing::warn!(loop_name = %s.name, error = %e, "recording an ended loop failed; will retry");
                            }
                        }
                    }
                    Todo::Collect => match self.collect(&s.name, s.creation_ms, None).await {
                        Ok(()) => tracker.mark_done(&s.name, s.creation_ms),
                        Err(e) => {
                            tracing::warn!(loop_name = %s.name, error = %e, "collecting a completed loop failed; will retry");
                        }
                    },
                }
            }
            token = next;
            if token.is_none() {
                break;
            }
        }
        tracker.prune(now_ms());
        Ok(())
    }

    /// Writes the row of one completed loop unless it exists. `Ok` means "done with
    /// this loop" (including a loop that is not ours or whose output cannot be used).
    /// `output_uri` is where its output.json is, when known (a completion event says
    /// so); otherwise DescribeHumanLoop tells.
    pub(crate) async fn collect(
        &self,
        name: &str,
        creation_ms: i64,
        output_uri: Option<&str>,
    ) -> Result<(), Failure> {
        let Some((event_id, _attempt)) = parse_loop_name(name) else {
            tracing::debug!(loop_name = %name, "not a relay loop name; skipped");
            return Ok(());
        };
        let row_key = self.layout.row_key(&event_id);
        if self.store.exists(&row_key).await? {
            inc(&self.metrics.c.manifest_rows_existing_total);
            return Ok(());
        }
        let uri = match output_uri {
            Some(uri) => uri.to_owned(),
            None => self
                .a2i
                .describe(name)
                .await?
                .1
                .ok_or_else(|| Failure::Transient(format!("{name}: no output URI yet")))?,
        };
        let (bucket, key) = parse_s3_uri(&uri).ok_or_else(|| {
            Failure::Permanent(format!("{name}: output {uri:?} is not an s3:// URI"))
        })?;
        let bytes = self
            .store
            .get_in(bucket, key)
            .await?
            .ok_or_else(|| Failure::Transient(format!("{uri} is not there yet")))?;
        let r = &self.config.results;
        let reviewed = match build_row(
            &bytes,
            &self.config.a2i.answer_field,
            &r.label_attribute,
            &r.job_name,
            creation_ms,
        ) {
            Ok(reviewed) => reviewed,
            Err(e) => {
                inc(&self.metrics.c.manifest_rows_invalid_total);
                tracing::error!(loop_name = %name, error = %e, "completed loop gives no manifest row");
                return Ok(());
            }
        };
        if reviewed.row.metadata.tie {
            tracing::info!(loop_name = %name, label = %reviewed.review.label, "reviewers tied; row flagged");
        }
        let line = reviewed.row_line().into_bytes();
        let put = retry(
            "s3_put_row",
            &self.config.retry,
            &self.metrics,
            None,
            || {
                self.store
                    .put(&row_key, line.clone(), "application/x-ndjson", true)
            },
        )
        .await
        .map_err(|e| Failure::Permanent(e.0))?;
        inc(&self.metrics.c.loops_completed_total);
        match put {
            Put::Created => inc(&self.metrics.c.manifest_rows_written_total),
            Put::Existed => inc(&self.metrics.c.manifest_rows_existing_total),
        }
        if let (Some(mqtt), true, Put::Created) = (&self.mqtt, r.publish_reviews, put) {
            let topic = self.config.topics().reviews(&reviewed.device);
            match mqtt
                .publish(topic, QoS::AtLeastOnce, false, reviewed.review.to_json())
                .await
            {
                Ok(()) => inc(&self.metrics.c.reviews_published_total),
                Err(e) => tracing::warn!(error = %e, "could not queue a review result"),
            }
        }
        Ok(())
    }
}

impl Collector {
    /// Records a loop that ended without answers, once: a warning, the
    /// `loops_not_reviewed_total` counter and a not-reviewed record. `Ok` means "done
    /// with this loop" (including one that is not ours, or whose event has a row).
    pub(crate) async fn record_not_reviewed(
        &self,
        s: &LoopSummary,
        status: String,
        reason: Option<String>,
    ) -> Result<(), Failure> {
        let Some((event_id, _attempt)) = parse_loop_name(&s.name) else {
            return Ok(());
        };
        if self.store.exists(&self.layout.row_key(&event_id)).await? {
            // Reviewed through another of its loops (a restart): nothing is missing.
            tracing::debug!(loop_name = %s.name, %status, "ended loop of a reviewed event");
            return Ok(());
        }
        let key = self.layout.not_reviewed_key(&s.name);
        if self.store.exists(&key).await? {
            return Ok(());
        }
        // Which image and device: the event index (absent for events stored by a relay
        // that predates it; the record then lacks them).
        let index = self
            .store
            .get(&self.layout.event_index_key(&event_id))
            .await?;
        let meta = index.and_then(|b| protocol::EventMeta::from_json(&b).ok());
        let record = NotReviewed {
            source_ref: meta
                .as_ref()
                .map(|m| self.layout.uri(&self.layout.image_key(m))),
            event_id,
            device_id: meta.map(|m| m.device_id),
            human_loop_name: s.name.clone(),
            status,
            failure_reason: reason,
            loop_created_at: protocol::timestamp::format_rfc3339_utc(s.creation_ms),
            noticed_at: protocol::timestamp::format_rfc3339_utc(now_ms()),
        };
        let put = self
            .store
            .put(
                &key,
                record.to_line().into_bytes(),
                "application/x-ndjson",
                true,
            )
            .await?;
        if put == Put::Created {
            inc(&self.metrics.c.loops_not_reviewed_total);
            tracing::warn!(
                loop_name = %s.name,
                %event_id,
                device = record.device_id.as_ref().map(|d| d.as_str()).unwrap_or("?"),
                status = %record.status,
                failure_reason = record.failure_reason.as_deref().unwrap_or(""),
                source_ref = record.source_ref.as_deref().unwrap_or("?"),
                "human loop ended without answers: its frame is not reviewed (see `manifest export --not-reviewed`, `loops restart`)"
            );
        }
        Ok(())
    }
}

/// Which rows `manifest export` writes.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Review time (the row's creation-date), inclusive, Unix ms.
    pub from_ms: Option<i64>,
    /// Review time, exclusive, Unix ms.
    pub to_ms: Option<i64>,
    /// Class names to keep (empty: all).
    pub labels: Vec<String>,
}

/// Writes the matching rows as one JSON-lines document, oldest review first.
/// Returns how many rows were written.
pub async fn export(
    config: &Config,
    store: &S3Store,
    filter: &ExportFilter,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<usize> {
    let layout = KeyLayout::new(&config.s3);
    let attribute = &config.results.label_attribute;
    let keys = store.list(&layout.rows_prefix()).await.map_err(|e| {
        anyhow::anyhow!(
            "listing s3://{}/{}: {e}",
            layout.bucket,
            layout.rows_prefix()
        )
    })?;
    let mut rows = Vec::new();
    for key in keys {
        let bytes = store
            .get(&key)
            .await
            .map_err(|e| anyhow::anyhow!("reading s3://{}/{key}: {e}", layout.bucket))?
            .unwrap_or_default();
        let line = String::from_utf8_lossy(&bytes).trim().to_owned();
        if line.is_empty() {
            continue;
        }
        let row = ManifestRow::parse(&line, attribute)
            .map_err(|e| anyhow::anyhow!("s3://{}/{key}: {e}", layout.bucket))?;
        let at = parse_iso8601_utc(&row.metadata.creation_date).unwrap_or(0);
        let in_range =
            filter.from_ms.is_none_or(|f| at >= f) && filter.to_ms.is_none_or(|t| at < t);
        let wanted = filter.labels.is_empty() || filter.labels.contains(&row.metadata.class_name);
        if in_range && wanted {
            rows.push((at, row.source_ref.clone(), line));
        }
    }
    rows.sort();
    for (_, _, line) in &rows {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(rows.len())
}
