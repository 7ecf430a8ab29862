//! cloud-relay: the cloud half of edge-a2i (relay daemon, local review service,
//! fleet/model CLI). See docs/DESIGN.md.

pub mod review_service;
