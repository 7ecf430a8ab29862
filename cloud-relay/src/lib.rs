//! cloud-relay: the cloud half of edge-a2i as it runs against AWS: the relay daemon
//! (IoT Core → S3 → Amazon A2I human loops → Ground Truth augmented manifest), the
//! SageMaker control-plane client and `setup`. Local mode's stand-ins for those
//! services live in the `local-aws` crate. See docs/DESIGN.md.

pub mod aws_http;
pub mod config;
pub mod eventbridge;
pub mod fleet;
pub mod process;
pub mod relay;
pub mod sagemaker_control;
pub mod setup;
