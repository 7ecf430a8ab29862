//! A client for the four SageMaker control-plane operations this project needs:
//! `CreateHumanTaskUi`, `DescribeHumanTaskUi`, `CreateFlowDefinition` and
//! `DescribeFlowDefinition` (`cloud-relay setup` and the relay's start-up check).
//!
//! Hand-written on purpose: `aws-sdk-sagemaker` covers hundreds of operations and
//! takes more than seven minutes to compile on a 2-core machine, which every CI run
//! and release build would pay for four calls. The protocol is small: AWS JSON 1.1
//! (`POST /`, `X-Amz-Target: SageMaker.<Operation>`, a JSON body), signed with SigV4
//! by `aws-sigv4`, with credentials and region from `aws-config` (the same chain as
//! the relay's S3 and A2I clients), over hyper with rustls, all of which the other
//! AWS SDK crates already compile. Errors become a typed [`SageMakerError`].
//!
//! Endpoint: `a2i.sagemaker_endpoint_url`, else `AWS_ENDPOINT_URL_SAGEMAKER`, else
//! `AWS_ENDPOINT_URL`, else `https://api.sagemaker.<region>.amazonaws.com`.

mod error;
mod types;

use aws_credential_types::provider::SharedCredentialsProvider;
use serde::de::DeserializeOwned;
use serde_json::json;

pub use error::SageMakerError;
pub use types::{
    CreateFlowDefinition, FlowDefinitionDescription, FlowNotActive, FlowStatus, HumanLoopConfig,
    OutputConfig, TaskUiDescription, UiTemplateInfo,
};

use crate::aws_http::SignedClient;
use crate::config::A2iConfig;

/// The signing name of the SageMaker API.
const SERVICE: &str = "sagemaker";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

#[derive(Clone, Debug)]
pub struct SageMakerControl {
    http: SignedClient,
}

/// The regional endpoint.
pub fn default_endpoint(region: &str) -> String {
    crate::aws_http::regional_endpoint("api.sagemaker", region)
}

impl SageMakerControl {
    /// Credentials from the AWS default chain; region and endpoint from `config`.
    pub async fn connect(config: &A2iConfig) -> Result<Self, SageMakerError> {
        let shared = crate::aws_http::sdk_config(&config.region).await;
        let endpoint = config
            .sagemaker_endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_SAGEMAKER").ok())
            .or_else(|| shared.endpoint_url().map(str::to_owned))
            .unwrap_or_else(|| default_endpoint(&config.region));
        Self::new(&endpoint, &config.region, shared.credentials_provider())
    }

    /// A client for `endpoint` signing with `credentials` (none: unsigned requests,
    /// which only the local review service accepts).
    pub fn new(
        endpoint: &str,
        region: &str,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Result<Self, SageMakerError> {
        Ok(SageMakerControl {
            http: SignedClient::new(endpoint, region, SERVICE, credentials)?,
        })
    }

    pub fn endpoint(&self) -> String {
        self.http.endpoint()
    }

    pub async fn create_human_task_ui(
        &self,
        name: &str,
        template: &str,
    ) -> Result<String, SageMakerError> {
        let body = json!({ "HumanTaskUiName": name, "UiTemplate": { "Content": template } });
        let out: types::CreatedTaskUi = self.call("CreateHumanTaskUi", &body).await?;
        Ok(out.human_task_ui_arn)
    }

    pub async fn describe_human_task_ui(
        &self,
        name: &str,
    ) -> Result<TaskUiDescription, SageMakerError> {
        self.call("DescribeHumanTaskUi", &json!({ "HumanTaskUiName": name }))
            .await
    }

    pub async fn create_flow_definition(
        &self,
        request: &CreateFlowDefinition,
    ) -> Result<String, SageMakerError> {
        let out: types::CreatedFlow = self.call("CreateFlowDefinition", request).await?;
        Ok(out.flow_definition_arn)
    }

    pub async fn describe_flow_definition(
        &self,
        name: &str,
    ) -> Result<FlowDefinitionDescription, SageMakerError> {
        self.call(
            "DescribeFlowDefinition",
            &json!({ "FlowDefinitionName": name }),
        )
        .await
    }

    /// One signed JSON 1.1 call.
    async fn call<T: DeserializeOwned>(
        &self,
        operation: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, SageMakerError> {
        json_1_1_call(&self.http, "SageMaker", operation, body).await
    }
}

/// One signed AWS JSON 1.1 call (`X-Amz-Target: <target_prefix>.<operation>`), as the
/// SageMaker control plane and EventBridge take them: the response body parsed as `T`
/// (an empty body as `{}`), or the service's error from its `x-amzn-errortype` and body.
pub(crate) async fn json_1_1_call<T: DeserializeOwned>(
    http: &SignedClient,
    target_prefix: &str,
    operation: &str,
    body: &impl serde::Serialize,
) -> Result<T, SageMakerError> {
    let body = serde_json::to_vec(body).expect("request bodies serialize");
    let target = format!("{target_prefix}.{operation}");
    let (parts, bytes) = http
        .send(
            http::Method::POST,
            "/",
            &[
                (http::header::CONTENT_TYPE.as_str(), CONTENT_TYPE),
                ("x-amz-target", &target),
            ],
            body,
        )
        .await?;
    if !parts.status.is_success() {
        let header = parts
            .headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok());
        return Err(SageMakerError::from_response(parts.status, header, &bytes));
    }
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
    serde_json::from_slice(bytes)
        .map_err(|e| SageMakerError::BadResponse(format!("{operation}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_endpoint_is_regional() {
        assert_eq!(
            default_endpoint("eu-west-1"),
            "https://api.sagemaker.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            default_endpoint("cn-north-1"),
            "https://api.sagemaker.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn requests_are_signed_for_sagemaker_in_the_region_with_the_target_header() {
        let mut request = http::Request::builder()
            .method("POST")
            .uri("https://api.sagemaker.eu-west-1.amazonaws.com/")
            .header("host", "api.sagemaker.eu-west-1.amazonaws.com")
            .header("x-amz-target", "SageMaker.DescribeFlowDefinition")
            .body(b"{}".to_vec())
            .unwrap();
        let credentials = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session".into()),
            None,
            "test",
        );
        crate::aws_http::sign(&mut request, credentials, "eu-west-1", SERVICE).unwrap();
        let auth = request.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-1/sagemaker/aws4_request"), "{auth}");
        assert!(auth.contains("x-amz-target"), "{auth}");
        assert!(request.headers().contains_key("x-amz-date"));
        assert_eq!(request.headers()["x-amz-security-token"], "session");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transient_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = SageMakerControl::new(&format!("http://{addr}"), "us-east-1", None).unwrap();
        let e = client.describe_flow_definition("dogs").await.unwrap_err();
        assert!(matches!(e, SageMakerError::Transport { .. }), "{e:?}");
        assert!(e.is_transient());
    }
}
