//! AWS configuration and signed HTTP. [`sdk_config`] is the one place the relay's
//! SDK clients get their region, credentials and HTTPS client. [`SignedClient`] is for
//! the clients written by hand over crates the SDK already compiles (see
//! `sagemaker_control` for why): hyper with rustls (ring provider, system roots; plain
//! HTTP for a local endpoint), SigV4 by `aws-sigv4` with credentials from the default
//! chain, and a per-call timeout. Protocol details (JSON 1.1 or REST-JSON, error
//! shapes) stay with each client.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

/// Per call, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The shared AWS configuration for `region`: the SDK's default credential chain
/// (environment, profile, web identity, container and instance metadata) and the
/// workspace's HTTPS client ([`daemon_support::sdk_http`]: rustls with ring).
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .http_client(daemon_support::sdk_http::client())
        .load()
        .await
}

/// The regional endpoint of an AWS service: `https://{host_prefix}.{region}.amazonaws.com`
/// (China's regions live under `amazonaws.com.cn`).
pub fn regional_endpoint(host_prefix: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{host_prefix}.{region}.{suffix}")
}

/// Why a call got no answer to interpret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// No answer: connection refused, DNS, TLS, timeout.
    #[error("cannot reach {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    /// The AWS credential chain gave nothing usable, or signing failed.
    #[error("no AWS credentials: {0}")]
    Credentials(String),
}

/// A client of one AWS endpoint that signs for `service` in `region`.
#[derive(Clone)]
pub struct SignedClient {
    http: HttpsClient,
    endpoint: http::Uri,
    region: String,
    service: &'static str,
    credentials: Option<SharedCredentialsProvider>,
}

impl std::fmt::Debug for SignedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedClient")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl SignedClient {
    /// `credentials: None` sends unsigned requests (only local stand-ins take them).
    pub fn new(
        endpoint: &str,
        region: &str,
        service: &'static str,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Result<Self, HttpError> {
        let uri: http::Uri = endpoint.parse().map_err(|e| HttpError::Transport {
            endpoint: endpoint.to_owned(),
            message: format!("not a URL: {e}"),
        })?;
        if uri.authority().is_none() {
            return Err(HttpError::Transport {
                endpoint: endpoint.to_owned(),
                message: "not an absolute URL".into(),
            });
        }
        let http =
            Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector(endpoint)?);
        Ok(SignedClient {
            http,
            endpoint: uri,
            region: region.to_owned(),
            service,
            credentials,
        })
    }

    pub fn endpoint(&self) -> String {
        self.endpoint.to_string()
    }

    /// One signed request to `path_and_query` under the endpoint (`/` for JSON 1.1
    /// APIs); returns the response head and body, whatever the status.
    pub async fn send(
        &self,
        method: http::Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(http::response::Parts, Bytes), HttpError> {
        let authority = self.endpoint.authority().expect("checked in new").as_str();
        let base = self.endpoint.to_string();
        let uri = format!("{}{}", base.trim_end_matches('/'), path_and_query);
        let mut builder = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header(http::header::HOST, authority);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(body).map_err(|e| HttpError::Transport {
            endpoint: uri.clone(),
            message: format!("not a valid request: {e}"),
        })?;
        if let Some(provider) = &self.credentials {
            let credentials = provider
                .provide_credentials()
                .await
                .map_err(|e| HttpError::Credentials(credentials_problem(&e)))?;
            sign(&mut request, credentials, &self.region, self.service)?;
        }
        let transport = |message: String| HttpError::Transport {
            endpoint: self.endpoint.to_string(),
            message,
        };
        let exchange = async {
            let response = self
                .http
                .request(request.map(|b| Full::new(Bytes::from(b))))
                .await
                .map_err(|e| transport(daemon_support::report(&e)))?;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| transport(daemon_support::report(&e)))?
                .to_bytes();
            Ok::<_, HttpError>((parts, bytes))
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| transport(format!("no answer within {CALL_TIMEOUT:?}")))?
    }
}

fn connector(endpoint: &str) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, HttpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        // Without system roots only plain HTTP (a local endpoint) can work.
        Err(e) if endpoint.starts_with("http://") => {
            tracing::debug!(error = %e, "no system root certificates; plain HTTP only");
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| HttpError::Transport {
                    endpoint: endpoint.to_owned(),
                    message: e.to_string(),
                })?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
        Err(e) => {
            return Err(HttpError::Transport {
                endpoint: endpoint.to_owned(),
                message: format!("no root certificates: {e}"),
            })
        }
    };
    Ok(builder.https_or_http().enable_http1().build())
}

/// Adds the SigV4 headers (`authorization`, `x-amz-date`, session token) to `request`.
pub(crate) fn sign(
    request: &mut http::Request<Vec<u8>>,
    credentials: aws_credential_types::Credentials,
    region: &str,
    service: &str,
) -> Result<(), HttpError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| HttpError::Credentials(e.to_string()))?
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
    .map_err(|e| HttpError::Credentials(format!("cannot sign the request: {e}")))?;
    let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| HttpError::Credentials(format!("cannot sign the request: {e}")))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

/// What is wrong with the credentials, in one line. The default chain's "not loaded"
/// error carries a debug dump of every provider it tried; what an operator needs is
/// what to set.
fn credentials_problem(e: &aws_credential_types::provider::error::CredentialsError) -> String {
    use aws_credential_types::provider::error::CredentialsError;
    match e {
        CredentialsError::CredentialsNotLoaded(_) => "none found: set AWS_ACCESS_KEY_ID and \
            AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or run where an instance or task role \
            provides them (local mode: the credentials `local-aws run` prints on its fleet: line)"
            .to_owned(),
        e => daemon_support::report(e),
    }
}
