//! Local mode: the cloud side on one machine with nothing to install; [`demo`] runs
//! it all, the edge agent included, as one command (`cloud-relay local`). An embedded
//! MQTT broker ([`broker`]), a directory served as S3 ([`object_store`]), and the
//! reviewer web page ([`review_page`]) in front of the local A2I-compatible review
//! service. Production swaps each for IoT Core, S3 and A2I by configuration alone.

pub mod broker;
pub mod cli;
pub mod demo;
pub mod object_store;
pub mod review_page;
