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

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde::de::DeserializeOwned;
use serde_json::json;

pub use error::SageMakerError;
pub use types::{
    CreateFlowDefinition, FlowDefinitionDescription, FlowNotActive, FlowStatus, HumanLoopConfig,
    OutputConfig, TaskUiDescription, UiTemplateInfo,
};

use crate::config::A2iConfig;

/// The signing name of the SageMaker API.
const SERVICE: &str = "sagemaker";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Per call, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Clone)]
pub struct SageMakerControl {
    http: HttpsClient,
    endpoint: http::Uri,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
}

impl std::fmt::Debug for SageMakerControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SageMakerControl")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The regional endpoint (China's regions live under `amazonaws.com.cn`).
pub fn default_endpoint(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://api.sagemaker.{region}.{suffix}")
}

fn connector(
    endpoint: &str,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, SageMakerError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        // Without system roots only plain HTTP (a local endpoint) can work.
        Err(e) if endpoint.starts_with("http://") => {
            tracing::debug!(error = %e, "no system root certificates; plain HTTP only");
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| SageMakerError::Transport {
                    endpoint: endpoint.to_owned(),
                    message: e.to_string(),
                })?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
        Err(e) => {
            return Err(SageMakerError::Transport {
                endpoint: endpoint.to_owned(),
                message: format!("no root certificates: {e}"),
            })
        }
    };
    Ok(builder.https_or_http().enable_http1().build())
}

impl SageMakerControl {
    /// Credentials from the AWS default chain; region and endpoint from `config`.
    pub async fn connect(config: &A2iConfig) -> Result<Self, SageMakerError> {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .load()
            .await;
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
        let uri: http::Uri = endpoint.parse().map_err(|e| SageMakerError::Transport {
            endpoint: endpoint.to_owned(),
            message: format!("not a URL: {e}"),
        })?;
        if uri.authority().is_none() {
            return Err(SageMakerError::Transport {
                endpoint: endpoint.to_owned(),
                message: "not an absolute URL".into(),
            });
        }
        let http =
            Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector(endpoint)?);
        Ok(SageMakerControl {
            http,
            endpoint: uri,
            region: region.to_owned(),
            credentials,
        })
    }

    pub fn endpoint(&self) -> String {
        self.endpoint.to_string()
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
        let body = serde_json::to_vec(body).expect("request bodies serialize");
        let authority = self.endpoint.authority().expect("checked in new").as_str();
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(self.endpoint.clone())
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("x-amz-target", format!("SageMaker.{operation}"))
            .body(body)
            .expect("a request from valid parts");
        if let Some(provider) = &self.credentials {
            let credentials = provider
                .provide_credentials()
                .await
                .map_err(|e| SageMakerError::Credentials(error_chain(&e)))?;
            sign(&mut request, credentials, &self.region)?;
        }
        let transport = |message: String| SageMakerError::Transport {
            endpoint: self.endpoint.to_string(),
            message,
        };
        let exchange = async {
            let response = self
                .http
                .request(request.map(|b| Full::new(Bytes::from(b))))
                .await
                .map_err(|e| transport(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| transport(error_chain(&e)))?
                .to_bytes();
            Ok::<_, SageMakerError>((parts, bytes))
        };
        let (parts, bytes) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| transport(format!("no answer within {CALL_TIMEOUT:?}")))??;
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
}

/// Adds the SigV4 headers (`authorization`, `x-amz-date`, session token) to `request`.
fn sign(
    request: &mut http::Request<Vec<u8>>,
    credentials: aws_credential_types::Credentials,
    region: &str,
) -> Result<(), SageMakerError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SageMakerError::Credentials(e.to_string()))?
        .into();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(|e| SageMakerError::Credentials(format!("cannot sign the request: {e}")))?;
    let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| SageMakerError::Credentials(format!("cannot sign the request: {e}")))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

/// `e` and its sources, `: `-separated (hyper's top-level messages say little).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
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
        sign(&mut request, credentials, "eu-west-1").unwrap();
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
