//! local-aws: local mode, the whole loop on one machine with no AWS account.
//!
//! Stand-ins for the AWS services the relay talks to, each speaking that service's
//! API so production code runs against it unchanged, by endpoint alone:
//! - [`broker`]: an embedded MQTT broker in place of IoT Core;
//! - [`object_store`]: a directory served as S3;
//! - [`review_service`]: the A2I runtime and SageMaker flow-definition API, with
//!   [`review_page`], the reviewer web page in front of it.
//!
//! Every HTTP service sits behind [`http_guard`] (loopback `Host`, same-origin
//! `Origin`, strict CSP and `nosniff` on every response); the AWS-compatible APIs take
//! only requests signed (SigV4, [`sigv4`]) with local mode's own [`credentials`], which
//! also hold the broker's login.
//!
//! [`demo`] runs them all with the real relay in one process and the edge agent as a
//! child (`local-aws run`). Nothing here is linked into `cloud-relay` or `edge-agent`.

pub mod broker;
pub mod cli;
pub mod credentials;
pub mod demo;
pub mod http_guard;
pub mod jobs;
pub mod object_store;
pub mod queue;
pub mod review_page;
pub mod review_service;
pub mod s3_sink;
pub mod sigv4;
