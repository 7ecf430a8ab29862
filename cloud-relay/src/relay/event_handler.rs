//! What the relay does with one verified event, in this order: put the image and its
//! metadata in S3 (put-if-absent: a redelivered event writes nothing new; another
//! event's content under a stored id is rejected, see [`super::event_store`]), start the
//! human loop (name derived from the event id: `ConflictException` = already there),
//! and only then hand back the receipt for the driver to send before it acknowledges.
//! Also the S3 side of chunk staging for relays on a shared subscription.
//!
//! Transient failures are retried here without limit; quota errors close the intake
//! [`Gate`]; an outage of S3 or A2I is logged once when it starts and once when it
//! ends ([`Outages`]). Nothing in this module remembers anything: S3 and A2I are the
//! record.

use std::sync::Arc;

use protocol::a2i::InputContent;
use protocol::envelope::Chunk;
use protocol::{decode, AssemblerLimits, ChunkAssembler, CompleteEvent, Message, Receipt};

use super::a2i::{A2iClient, LoopStart};
use super::event_store::{store_event, Stored};
use super::intake::{EventKey, Staged};
use super::keys::KeyLayout;
use super::metrics::{inc, Metrics};
use super::retry::{retry_logged, Gate, OutageLog, PermanentFailure};
use super::s3::S3Store;
use crate::config::{Config, RetryConfig};

#[derive(Clone)]
pub struct EventHandler {
    pub store: S3Store,
    pub a2i: A2iClient,
    pub layout: KeyLayout,
    /// What reviewers choose from: the model's labels and "none of these".
    pub labels: Vec<String>,
    pub retry: RetryConfig,
    pub metrics: Arc<Metrics>,
    pub gate: Gate,
    pub outages: Outages,
}

/// The outage logs of the handler's two dependencies, shared by all its calls.
#[derive(Clone, Debug)]
pub struct Outages {
    pub store: OutageLog,
    pub a2i: OutageLog,
}

impl Outages {
    /// Named after the bucket and endpoints in `config`, as operators know them.
    pub fn new(config: &Config) -> Self {
        let store = match &config.s3.endpoint_url {
            Some(url) => format!("the object store (bucket {} at {url})", config.s3.bucket),
            None => format!("S3 (bucket {} in {})", config.s3.bucket, config.s3.region),
        };
        let a2i = match &config.a2i.endpoint_url {
            Some(url) => format!("the A2I runtime at {url}"),
            None => format!("the A2I runtime in {}", config.a2i.region),
        };
        Outages {
            store: OutageLog::new(store),
            a2i: OutageLog::new(a2i),
        }
    }
}

/// Why an event (or a staged chunk) was not handled. The message stays unacknowledged
/// or unreceipted, so its agent resends it; the error is logged with the event id.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// An S3 call failed for good: what was being done, to which object, and why.
    #[error("{action} {uri}: {source}")]
    Store {
        action: &'static str,
        uri: String,
        #[source]
        source: PermanentFailure,
    },
    /// An object that was just there is gone (a relay undoing a wrong claim).
    #[error("{uri} vanished; the agent will resend")]
    Vanished { uri: String },
    /// The event index holds something that is not an event's metadata.
    #[error("{uri} does not parse: {source}")]
    UnreadableIndex {
        uri: String,
        #[source]
        source: protocol::MessageError,
    },
    /// StartHumanLoop failed for good.
    #[error("starting human loop {name}: {source}")]
    StartLoop {
        name: String,
        #[source]
        source: PermanentFailure,
    },
}

impl HandleError {
    pub fn store(action: &'static str, uri: String, source: PermanentFailure) -> Self {
        HandleError::Store {
            action,
            uri,
            source,
        }
    }
}

impl EventHandler {
    /// Calls the object store with retries, reporting an outage once ([`OutageLog`]).
    pub(super) async fn retry_store<T, F, Fut>(
        &self,
        what: &'static str,
        call: F,
    ) -> Result<T, PermanentFailure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, super::retry::Failure>>,
    {
        let outage = Some(&self.outages.store);
        retry_logged(what, &self.retry, &self.metrics, None, outage, call).await
    }

    /// Stores the event and starts its loop; returns the receipt to send.
    pub async fn process(&self, event: &CompleteEvent) -> Result<Receipt, HandleError> {
        let meta = &event.meta;
        // First stored wins: another event's content under this id gets `conflict`.
        let image_uri = match store_event(self, event).await? {
            Stored::Stored { image_uri } => image_uri,
            Stored::Conflict(reason) => {
                self.metrics.reject("conflict");
                tracing::warn!(event_id = %meta.event_id, device = %meta.device_id, %reason, "event rejected: its id is taken");
                let code = protocol::RejectCode::Conflict;
                return Ok(Receipt::rejected(meta.event_id, code, reason));
            }
        };

        let name = meta.human_loop_name();
        let input =
            InputContent::for_event(meta, image_uri.clone(), self.labels.clone()).to_json_string();
        let start = retry_logged(
            "a2i_start_loop",
            &self.retry,
            &self.metrics,
            Some(&self.gate),
            Some(&self.outages.a2i),
            || self.a2i.start_loop(&name, &input),
        )
        .await
        .map_err(|source| HandleError::StartLoop {
            name: name.clone(),
            source,
        })?;
        match start {
            LoopStart::Started => inc(&self.metrics.c.loops_started_total),
            LoopStart::Existed => inc(&self.metrics.c.loops_existing_total),
        }
        Ok(Receipt::stored(meta.event_id, image_uri))
    }

    /// Shared mode: stores the chunk message under the staging prefix, then reads the
    /// set's other chunks. S3 is strongly consistent, so of two relays that stage the
    /// last two chunks at once, at least one reads both.
    ///
    /// The others are read by key, the last one first, and the first one missing ends
    /// the look: agents send a set in order, so an incomplete set usually lacks its
    /// last chunks and costs one GET that finds nothing (no LIST, whose cost grows with
    /// the bucket on some servers, and never a GET of this relay's own chunk).
    pub async fn stage(&self, chunk: &Chunk, payload: Vec<u8>) -> Result<Staged, HandleError> {
        let set = EventKey::of(&chunk.header.meta);
        let key = self.layout.staging_chunk_key(&set, chunk.header.index);
        self.retry_store("s3_put_chunk", || {
            self.store
                .put(&key, payload.clone(), "application/octet-stream", false)
        })
        .await
        .map_err(|source| HandleError::store("staging", self.layout.uri(&key), source))?;
        inc(&self.metrics.c.chunks_staged_total);
        let mut others = Vec::new();
        for index in (0..chunk.header.count).rev() {
            if index == chunk.header.index {
                continue;
            }
            let key = self.layout.staging_chunk_key(&set, index);
            let got = self
                .retry_store("s3_get_chunk", || self.store.get(&key))
                .await
                .map_err(|source| HandleError::store("reading", self.layout.uri(&key), source))?;
            // Not there yet, or gone: the relay that completed the set has cleaned up.
            let Some(bytes) = got else {
                return Ok(Staged::Incomplete);
            };
            let Ok(Message::Chunk(staged)) = decode(&bytes) else {
                return Ok(Staged::Incomplete); // not something a relay staged
            };
            others.push(staged);
        }
        let limits = AssemblerLimits {
            max_pending_bytes: u64::MAX / 2,
            max_pending_sets: 1,
            timeout_ms: u64::MAX,
        };
        let mut assembler = ChunkAssembler::new(limits);
        for staged in std::iter::once(chunk.clone()).chain(others) {
            match assembler.offer(staged, 0) {
                Ok(Some(event)) => return Ok(Staged::Complete(event)),
                Ok(None) => {}
                Err(e) => return Ok(Staged::Rejected(e)),
            }
        }
        Ok(Staged::Incomplete)
    }

    /// Removes a finished set's `count` staged chunks, all at once (best effort: a
    /// lifecycle rule on the staging prefix collects whatever a killed relay leaves
    /// behind). Only that set's: another set under the id has other keys.
    pub async fn clean_staging(&self, set: &EventKey, count: u32) {
        let deletes = (0..count).map(|index| {
            let key = self.layout.staging_chunk_key(set, index);
            async move {
                if let Err(e) = self.store.delete(&key).await {
                    tracing::debug!(%key, error = %e, "could not delete a staged chunk");
                }
            }
        });
        futures_util::future::join_all(deletes).await;
    }
}
