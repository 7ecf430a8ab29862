//! The relay daemon: MQTT in, S3 and Amazon A2I out, review results into an
//! augmented manifest. See cloud-relay/README.md for the guarantees and key layout.
//!
//! | module | owns |
//! |---|---|
//! | [`intake`] | per-message state machine: decode, reassemble, what to ack when (pure) |
//! | [`mqtt`] | broker connection and the intake driver |
//! | [`event_handler`] | per event: S3 put, StartHumanLoop, receipt; chunk staging |
//! | [`event_store`] | storing an event's objects, first stored wins (id conflicts) |
//! | [`results`] / [`collector`] | loop tracking and manifest rows (pure / driver), export |
//! | [`completions`] | completed loops as A2I's events from an SQS queue (pure decision / consumer) |
//! | [`sweep`] | with events, listing as a slow reconciliation sweep from a checkpoint in S3 |
//! | [`s3`] / [`a2i`] | the two AWS clients and their error classification |
//! | [`retry`] | backoff, the quota gate |
//! | [`keys`] | the S3 key layout |
//! | [`loops`] / [`restart`] | loops ended without answers: names of restarts, the not-reviewed record (pure / export, `loops restart`) |
//! | [`metrics`] | counters and the Prometheus endpoint |
//! | [`startup`] | the start-up health check (bucket, flow definition Active) |

pub mod a2i;
mod ack_order;
pub mod collector;
pub mod completions;
pub mod event_handler;
pub mod event_store;
pub mod intake;
pub mod keys;
pub mod loops;
pub mod metrics;
pub mod mqtt;
pub mod restart;
pub mod results;
pub mod retry;
pub mod s3;
pub mod startup;
pub mod sweep;
#[cfg(test)]
pub(crate) mod testing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;

/// Why the relay could not start (the start-up health check) or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Certificates(#[from] protocol::mqtt_tls::TlsFileError),
    #[error("broker {broker} is unreachable: {message}")]
    BrokerUnreachable { broker: String, message: String },
    #[error("TLS with broker {broker} failed (check ca_file, cert_file and key_file): {message}")]
    BrokerTls { broker: String, message: String },
    #[error("broker {broker} refused the connection: {message}")]
    BrokerRefused { broker: String, message: String },
    #[error(transparent)]
    Bucket(#[from] s3::BucketError),
    #[error("flow definition {arn} does not exist (create it with `cloud-relay setup`, or correct a2i.flow_definition_arn): {message}")]
    FlowDefinitionMissing { arn: String, message: String },
    #[error(transparent)]
    FlowDefinitionNotActive(#[from] crate::sagemaker_control::FlowNotActive),
    #[error("flow definition {arn} is not usable: {message}")]
    FlowDefinition { arn: String, message: String },
    #[error("completions queue {name:?} is not usable (create it with `cloud-relay setup`, or correct results.queue): {message}")]
    Queue { name: String, message: String },
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How long events in flight may take to finish after a stop request (systemd's
/// TimeoutStopSec is 30 s in the shipped unit).
pub const DRAIN: Duration = Duration::from_secs(15);

pub use startup::check;

/// The completions consumer when `[results.queue]` is set (the queue must exist);
/// otherwise says at start-up that results come from listing.
async fn completions_consumer(
    config: &Config,
    collector: &collector::Collector,
) -> Result<Option<completions::Consumer>, RelayError> {
    let r = &config.results;
    let Some(q) = &r.queue else {
        tracing::info!(
            poll_interval = ?r.poll_interval,
            "results: no [results.queue]; listing the flow's human loops every poll_interval \
             (its cost grows with the loops open; see `cloud-relay setup` for completion events)"
        );
        return Ok(None);
    };
    let queue = completions::queue::CompletionQueue::connect(q, &config.a2i.region)
        .await
        .map_err(|e| RelayError::Queue {
            name: q.name.clone(),
            message: e.to_string(),
        })?;
    let max_receive_count = queue
        .max_receive_count()
        .await
        .map_err(|e| RelayError::Queue {
            name: q.name.clone(),
            message: e.to_string(),
        })?;
    tracing::info!(
        queue = %queue.url(),
        ?max_receive_count,
        sweep_interval = ?r.sweep_interval,
        "results: completion events from the queue; listing only as a sweep every sweep_interval"
    );
    Ok(Some(completions::Consumer {
        queue,
        collector: Arc::new(collector.clone()),
        max_receive_count,
    }))
}

/// Checks the bucket, the flow definition ([`startup::check`]) and the broker, then
/// runs until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    let metrics = Arc::new(metrics::Metrics::default());
    let (store, a2i) = startup::check(&config).await?;
    let (client, eventloop) = mqtt::connect(&config).await?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = Vec::new();
    if let Some(addr) = config.metrics.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RelayError::Metrics { addr, source })?;
        drop(listener);
        let (m, stop) = (metrics.clone(), stopped());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, m, stop).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        }));
    }
    let layout = keys::KeyLayout::new(&config.s3);
    if config.results.enabled {
        let collector = collector::Collector {
            config: config.clone(),
            store: store.clone(),
            a2i: a2i.clone(),
            layout: layout.clone(),
            metrics: metrics.clone(),
            mqtt: Some(client.clone()),
        };
        if let Some(consumer) = completions_consumer(&config, &collector).await? {
            tasks.push(tokio::spawn(consumer.run(stopped())));
        }
        tasks.push(tokio::spawn(collector.run(stopped())));
    }
    let handler = event_handler::EventHandler {
        store,
        a2i,
        layout,
        labels: config.review_labels(),
        retry: config.retry.clone(),
        metrics: metrics.clone(),
        gate: retry::Gate::default(),
        outages: event_handler::Outages::new(&config),
    };
    tracing::info!(
        client_id = %config.mqtt.client_id,
        shared = config.mqtt.share_group.is_some(),
        staged_chunks = config.stages_chunks(),
        "relay running"
    );
    mqtt::run_intake(config, client, eventloop, handler, metrics, shutdown, DRAIN).await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    tracing::info!("relay stopped");
    Ok(())
}
