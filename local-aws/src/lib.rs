//! local-aws: local mode, the whole loop on one machine with no AWS account.
//!
//! Stand-ins for the AWS services the relay talks to, each speaking that service's
//! API so production code runs against it unchanged, by endpoint alone:
//! - [`broker`]: an embedded MQTT broker in place of IoT Core;
//! - [`object_store`]: a directory served as S3;
//! - [`review_service`]: the A2I runtime and SageMaker flow-definition API, with
//!   [`review_page`], the reviewer web page in front of it.
//!
//! [`demo`] runs them all with the real relay in one process and the edge agent as a
//! child (`local-aws run`). Nothing here is linked into `cloud-relay` or `edge-agent`.

pub mod broker;
pub mod cli;
pub mod demo;
pub mod jobs;
pub mod object_store;
pub mod review_page;
pub mod review_service;
pub mod s3_sink;
