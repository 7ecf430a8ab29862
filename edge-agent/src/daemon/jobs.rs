//! The device side of AWS IoT Jobs over the daemon's MQTT connection (topics and
//! payloads in [`protocol::jobs`]; "Jobs device MQTT API operations" in the AWS IoT
//! Developer Guide). On every connect: the worker's reports queued while offline go
//! out first (so an execution a restart interrupted is FAILED before anything new
//! starts), then `start-next` asks for the next pending execution. `notify-next` asks
//! again whenever the service says the next execution changed. A started execution's
//! document goes to the update worker; its reports come back as `{jobId}/update`
//! messages. One execution at a time: another is asked for only once the worker
//! reported the current one terminal.

use std::collections::VecDeque;
use std::sync::mpsc::Sender;

use protocol::jobs::{
    JobsTopic, JobsTopics, NextJobExecutionChanged, StartNextAccepted, StartNextRequest,
    UpdateRequest,
};
use rumqttc::v5::mqttbytes::v5::Filter;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::update::worker::{JobRequest, Report};

pub struct JobsClient {
    topics: JobsTopics,
    requests: Sender<JobRequest>,
    pub reports: UnboundedReceiver<Report>,
    /// Reports waiting for a connection, oldest first.
    unsent: VecDeque<Report>,
    /// The execution handed to the worker and not yet terminal.
    current: Option<String>,
}

impl JobsClient {
    pub fn new(
        topics: JobsTopics,
        requests: Sender<JobRequest>,
        reports: UnboundedReceiver<Report>,
    ) -> Self {
        JobsClient {
            topics,
            requests,
            reports,
            unsent: VecDeque::new(),
            current: None,
        }
    }

    /// The reserved topics to subscribe to (responses included: IoT Core sends them
    /// to the requester anyway, Mosquitto and the local service only when subscribed).
    pub fn filters(&self) -> Vec<Filter> {
        [
            self.topics.notify_next(),
            self.topics.start_next_accepted(),
            self.topics.start_next_rejected(),
            self.topics.update_accepted_all(),
            self.topics.update_rejected_all(),
        ]
        .into_iter()
        .map(|t| Filter::new(t, QoS::AtLeastOnce))
        .collect()
    }

    /// After CONNACK and the subscriptions: queued reports, then `start-next`.
    pub fn on_connect(&mut self, client: &AsyncClient) {
        while let Some(r) = self.unsent.pop_front() {
            self.publish_report(client, &r);
        }
        if self.current.is_none() {
            self.start_next(client);
        }
    }

    /// A message on one of this thing's jobs topics; false when the topic is not one.
    pub fn on_publish(&mut self, client: &AsyncClient, topic: &str, payload: &[u8]) -> bool {
        let Some(kind) = self.topics.classify(topic) else {
            return false;
        };
        match kind {
            JobsTopic::NotifyNext => {
                match serde_json::from_slice::<NextJobExecutionChanged>(payload) {
                    Ok(n) if n.execution.is_some() && self.current.is_none() => {
                        self.start_next(client)
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "jobs: notify-next does not parse; ignored")
                    }
                }
            }
            JobsTopic::StartNextAccepted => {
                match serde_json::from_slice::<StartNextAccepted>(payload) {
                    Ok(StartNextAccepted {
                        execution: Some(execution),
                        ..
                    }) => {
                        if self.current.as_deref() == Some(execution.job_id.as_str()) {
                            return true;
                        }
                        tracing::info!(job_id = %execution.job_id, "jobs: execution started");
                        self.current = Some(execution.job_id.clone());
                        let _ = self.requests.send(JobRequest {
                            job_id: execution.job_id,
                            document: execution.job_document.unwrap_or_default(),
                        });
                    }
                    Ok(_) => tracing::debug!("jobs: no pending execution"),
                    Err(e) => {
                        tracing::warn!(error = %e, "jobs: start-next/accepted does not parse; ignored")
                    }
                }
            }
            JobsTopic::StartNextRejected | JobsTopic::UpdateRejected(_) => {
                tracing::warn!(topic, payload = %String::from_utf8_lossy(payload), "jobs: request rejected by the service");
            }
            JobsTopic::UpdateAccepted(_) | JobsTopic::Update(_) => {}
        }
        true
    }

    /// A report of the update worker: sent now if connected, else queued. A
    /// terminal one frees the device for the next execution.
    pub fn on_report(&mut self, client: &AsyncClient, connected: bool, report: Report) {
        let terminal = report.status.is_terminal();
        if report.job_id.is_none() {
            return;
        }
        if terminal && report.job_id == self.current {
            self.current = None;
        }
        if connected {
            self.publish_report(client, &report);
            if terminal && self.current.is_none() {
                self.start_next(client);
            }
        } else {
            // Progress reports are superseded by the next one; terminal ones must arrive.
            self.unsent
                .retain(|r| r.job_id != report.job_id || r.status.is_terminal());
            self.unsent.push_back(report);
        }
    }

    fn start_next(&self, client: &AsyncClient) {
        let request = StartNextRequest::default();
        let _ = client.try_publish(
            self.topics.start_next(),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&request).expect("serializes"),
        );
    }

    fn publish_report(&self, client: &AsyncClient, report: &Report) {
        let Some(job_id) = &report.job_id else {
            return;
        };
        let request = UpdateRequest {
            status: report.status,
            status_details: report.details.clone(),
            expected_version: None,
            client_token: None,
        };
        if let Err(e) = client.try_publish(
            self.topics.update(job_id),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&request).expect("serializes"),
        ) {
            tracing::warn!(job_id, error = %e, "jobs: cannot queue the execution update");
        }
    }
}
