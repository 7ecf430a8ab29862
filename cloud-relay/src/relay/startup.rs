//! The start-up health check, before any message is taken: the bucket (exists, we
//! may use it), the flow definition (exists and is `Active`, asked of the SageMaker
//! control plane; known to the A2I runtime), each failure its own [`RelayError`].
//! A check that cannot be made for a transient reason (throttling, 5xx, no
//! connection) is logged and skipped: the relay retries those calls anyway.
//! `cloud-relay check-config --online` runs the same checks.

use super::{a2i, retry, s3, RelayError};
use crate::config::Config;
use crate::sagemaker_control::{SageMakerControl, SageMakerError};

/// Checks the bucket and the flow definition; returns the clients for the relay.
pub async fn check(config: &Config) -> Result<(s3::S3Store, a2i::A2iClient), RelayError> {
    let store = s3::S3Store::connect(&config.s3).await;
    store.check_bucket().await?;
    check_flow_definition(config).await?;
    let a2i = a2i::A2iClient::connect(&config.a2i).await;
    if let Err(e) = a2i.check_flow().await {
        if !matches!(e, retry::Failure::Transient(_)) {
            return Err(RelayError::FlowDefinition {
                arn: config.a2i.flow_definition_arn.clone(),
                message: format!("the A2I runtime: {e}"),
            });
        }
        tracing::warn!(error = %e, "could not check the flow definition with the A2I runtime now; going on");
    }
    Ok((store, a2i))
}

/// DescribeFlowDefinition: missing, or not `Active` (with the failure reason), is fatal.
pub async fn check_flow_definition(config: &Config) -> Result<(), RelayError> {
    let arn = config.a2i.flow_definition_arn.clone();
    let name = config
        .a2i
        .flow_definition_name()
        .expect("validated: a2i.flow_definition_arn");
    let unusable = |message: String| RelayError::FlowDefinition {
        arn: arn.clone(),
        message,
    };
    let client = SageMakerControl::connect(&config.a2i)
        .await
        .map_err(|e| unusable(format!("SageMaker control plane: {e}")))?;
    match client.describe_flow_definition(name).await {
        Ok(flow) => {
            flow.ensure_active()?;
            tracing::info!(%arn, "flow definition is Active");
            Ok(())
        }
        Err(SageMakerError::NotFound { message }) => {
            Err(RelayError::FlowDefinitionMissing { arn, message })
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, endpoint = %client.endpoint(), "could not check the flow definition's status now; going on");
            Ok(())
        }
        Err(e @ SageMakerError::AccessDenied { .. }) => Err(unusable(format!(
            "DescribeFlowDefinition: {e} (the relay needs sagemaker:DescribeFlowDefinition on it)"
        ))),
        Err(e) => Err(unusable(format!("DescribeFlowDefinition: {e}"))),
    }
}
