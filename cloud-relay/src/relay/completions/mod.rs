//! Completed human loops as events, the driver: relays are competing consumers of one
//! SQS queue that an EventBridge rule fills with A2I's human loop status changes (see
//! [`event`] for the event and the decision, [`queue`] for the SQS calls). The cost of
//! collecting results grows with the loops that complete, not with those still open,
//! and N relays share it: each message goes to one relay at a time.
//!
//! A message's life: received (hidden from the other relays for the visibility
//! timeout) -> decided ([`event::decide`]) -> the row or the not-reviewed record is
//! written through the same code as the listing collector ([`super::collector`]: put
//! only if absent, so exactly one row per loop however often the event comes) ->
//! deleted. A relay killed before the delete loses nothing: the message comes back
//! after the visibility timeout and another relay (or this one, restarted) finds the
//! row there already or writes it. A failure leaves the message for that redelivery
//! too. A message that cannot be read (poison) is never deleted: it is released at
//! once, so it reaches the queue's `maxReceiveCount` quickly and SQS moves it to the
//! dead-letter queue; the relay that receives it the last time counts and logs it.
//! Whatever the queue loses or dead-letters, the slow listing sweep still finds.

pub mod event;
pub mod queue;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use event::{decide, Disposition};
use queue::{CompletionQueue, Received, MAX_BATCH};

use super::a2i::LoopState;
use super::collector::Collector;
use super::metrics::inc;
use super::retry::backoff;
use protocol::backoff::{jitter_sample, Retries};

/// Takes completion events from the queue until shutdown.
pub struct Consumer {
    pub queue: CompletionQueue,
    pub collector: Arc<Collector>,
    /// The queue's redrive policy (`None`: it has none; poison messages stay).
    pub max_receive_count: Option<u32>,
}

impl Consumer {
    /// Receives and handles batches until `shutdown`. A batch being handled is
    /// finished first; messages not handled come back after the visibility timeout.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        if self.max_receive_count.is_none() {
            tracing::warn!(
                queue = %self.queue.url(),
                "the completions queue has no redrive policy: unreadable messages stay in it \
                 (run `cloud-relay setup` to add the dead-letter queue)"
            );
        }
        let mut delays = Retries::new(backoff(&self.collector.config.retry));
        tokio::pin!(shutdown);
        loop {
            let batch = tokio::select! {
                _ = &mut shutdown => return,
                batch = self.queue.receive(MAX_BATCH) => batch,
            };
            match batch {
                Ok(messages) => {
                    delays.reset();
                    futures_util::future::join_all(messages.iter().map(|m| self.handle(m))).await;
                }
                Err(e) => {
                    let delay = delays.next_delay(jitter_sample());
                    tracing::warn!(queue = %self.queue.url(), error = %e, ?delay, "receiving completion events failed");
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// One message: decide, act, delete when done.
    pub async fn handle(&self, m: &Received) {
        let c = &self.collector;
        let metrics = &c.metrics.c;
        inc(&metrics.completion_events_received_total);
        let flow = c.a2i.flow_definition_arn();
        let done = match decide(&m.body, m.receive_count, self.max_receive_count, flow) {
            Disposition::Collect(change) => {
                let s = &change.loop_summary;
                c.collect(&s.name, s.creation_ms, change.output_uri.as_deref())
                    .await
                    .map_err(|e| (s.name.clone(), e))
            }
            Disposition::Ended(change) => {
                let s = &change.loop_summary;
                let LoopState::Ended { status, reason } = s.state.clone() else {
                    unreachable!("decide gives Ended for ended loops only")
                };
                c.record_not_reviewed(s, status, reason)
                    .await
                    .map_err(|e| (s.name.clone(), e))
            }
            Disposition::Skip(why) => {
                inc(&metrics.completion_events_skipped_total);
                tracing::debug!(message_id = %m.message_id, ?why, "completion event is not this relay's work");
                Ok(())
            }
            Disposition::Poison {
                error,
                last_receive,
            } => {
                inc(&metrics.completion_events_poison_total);
                if last_receive {
                    inc(&metrics.completion_events_dead_lettered_total);
                    tracing::error!(
                        message_id = %m.message_id, receives = m.receive_count, %error,
                        "unreadable message in the completions queue: it goes to the dead-letter queue"
                    );
                } else {
                    tracing::warn!(
                        message_id = %m.message_id, receives = m.receive_count, %error,
                        "unreadable message in the completions queue; left for the dead-letter queue"
                    );
                }
                if let Err(e) = self.queue.release(&m.receipt_handle, Duration::ZERO).await {
                    tracing::debug!(error = %e, "could not release a poison message early");
                }
                return;
            }
        };
        match done {
            Ok(()) => match self.queue.delete(&m.receipt_handle).await {
                Ok(()) => inc(&metrics.completion_events_deleted_total),
                // Redelivered after the visibility timeout; the row is there by then.
                Err(e) => {
                    tracing::warn!(message_id = %m.message_id, error = %e, "deleting a handled completion event failed")
                }
            },
            Err((loop_name, e)) => {
                inc(&metrics.completion_events_failed_total);
                tracing::warn!(
                    %loop_name, message_id = %m.message_id, error = %e,
                    "collecting a completed loop failed; its event comes back after the visibility timeout"
                );
            }
        }
    }
}
