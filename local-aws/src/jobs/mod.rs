//! The local AWS IoT Jobs service: what a model rollout rides on in local mode.
//!
//! It speaks the Jobs device MQTT API (the reserved topics under
//! `$aws/things/{thingName}/jobs/` and the JSON of [`protocol::jobs`]) to devices over
//! the embedded broker, so `edge-agent` has one code path for IoT Core and local mode;
//! and a loopback HTTP control API shaped like IoT's CreateJob, DescribeJob,
//! ListJobExecutionsForJob and CancelJob for whoever starts rollouts. Layers, inside
//! out:
//! - [`config`]: rollout and abort configuration, and the rollout's pace;
//! - [`model`]: the records (job, execution) and the input rules;
//! - [`state`]: the service as a pure state machine (time passed in), unit-tested;
//! - [`service`]: the shared handle that persists the state (JSON, write-rename-fsync)
//!   and the MQTT adapter (a rumqttc client of the broker, a tick every second);
//! - [`http`]: the axum control API.

pub mod config;
pub mod model;
pub mod state;
