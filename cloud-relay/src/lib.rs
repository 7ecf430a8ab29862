//! cloud-relay: the cloud half of edge-a2i (relay daemon, local review service,
//! fleet/model CLI). See docs/DESIGN.md.

pub mod config;
pub mod local;
pub mod relay;
pub mod review_service;
pub mod sagemaker_control;
pub mod setup;
