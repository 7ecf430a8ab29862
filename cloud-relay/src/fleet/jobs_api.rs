//! A client for the AWS IoT control-plane operations a rollout needs, REST-JSON
//! signed with SigV4 (signing name `iot`), over the transport of [`crate::aws_http`]
//! (written by hand for the reason `sagemaker_control` gives: `aws-sdk-iot` covers
//! hundreds of operations for the three used here). Shapes from the AWS IoT API
//! Reference: CreateJob (`PUT /jobs/{jobId}`), DescribeJob (`GET /jobs/{jobId}`),
//! ListJobExecutionsForJob (`GET /jobs/{jobId}/things`). Local mode's Jobs service
//! (`local-aws jobs`) answers the same requests.
//!
//! Endpoint: `--jobs-endpoint-url`, else `AWS_ENDPOINT_URL_IOT`, else
//! `https://iot.<region>.amazonaws.com`.

use serde_json::Value;

use crate::aws_http::{HttpError, SignedClient};

#[derive(Debug, thiserror::Error)]
pub enum JobsApiError {
    #[error("{0}")]
    Http(#[from] HttpError),
    /// An error response: the service's `code`/`__type` (or the HTTP status) and message.
    #[error("{operation}: HTTP {status} {code}: {message}")]
    Service {
        operation: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{operation}: the answer is not the JSON expected: {message}")]
    BadResponse {
        operation: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct JobsApi {
    http: SignedClient,
}

/// The regional IoT control-plane endpoint.
pub fn default_endpoint(region: &str) -> String {
    crate::aws_http::regional_endpoint("iot", region)
}

impl JobsApi {
    /// Credentials from the AWS default chain (unsigned for a local endpoint).
    pub async fn connect(endpoint: Option<String>, region: &str) -> Result<Self, JobsApiError> {
        let shared = crate::aws_http::sdk_config(region).await;
        let endpoint = endpoint
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_IOT").ok())
            .unwrap_or_else(|| default_endpoint(region));
        Ok(JobsApi {
            http: SignedClient::new(&endpoint, region, "iot", shared.credentials_provider())?,
        })
    }

    pub fn endpoint(&self) -> String {
        self.http.endpoint()
    }

    /// CreateJob; `request` is the body (targets, document as a string, configs).
    pub async fn create_job(&self, job_id: &str, request: &Value) -> Result<Value, JobsApiError> {
        self.call(
            "CreateJob",
            http::Method::PUT,
            &format!("/jobs/{job_id}"),
            Some(request),
        )
        .await
    }

    pub async fn describe_job(&self, job_id: &str) -> Result<Value, JobsApiError> {
        self.call(
            "DescribeJob",
            http::Method::GET,
            &format!("/jobs/{job_id}"),
            None,
        )
        .await
    }

    /// Every page of ListJobExecutionsForJob's `executionSummaries`.
    pub async fn list_executions(&self, job_id: &str) -> Result<Vec<Value>, JobsApiError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/jobs/{job_id}/things?maxResults=250");
            if let Some(t) = &token {
                path.push_str(&format!("&nextToken={t}"));
            }
            let page = self
                .call("ListJobExecutionsForJob", http::Method::GET, &path, None)
                .await?;
            if let Some(items) = page["executionSummaries"].as_array() {
                out.extend(items.iter().cloned());
            }
            token = page["nextToken"].as_str().map(String::from);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn call(
        &self,
        operation: &'static str,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, JobsApiError> {
        let bytes = body
            .map(|b| serde_json::to_vec(b).expect("serializes"))
            .unwrap_or_default();
        let (parts, answer) = self
            .http
            .send(
                method,
                path,
                &[(http::header::CONTENT_TYPE.as_str(), "application/json")],
                bytes,
            )
            .await?;
        let json: Value = if answer.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&answer).map_err(|e| JobsApiError::BadResponse {
                operation,
                message: e.to_string(),
            })?
        };
        if !parts.status.is_success() {
            let code = parts
                .headers
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(|c| c.split(':').next().unwrap_or(c).to_owned())
                .or_else(|| json["code"].as_str().map(String::from))
                .or_else(|| json["__type"].as_str().map(String::from))
                .unwrap_or_else(|| parts.status.as_str().to_owned());
            let message = json["message"]
                .as_str()
                .or_else(|| json["Message"].as_str())
                .unwrap_or("")
                .to_owned();
            return Err(JobsApiError::Service {
                operation,
                status: parts.status.as_u16(),
                code,
                message,
            });
        }
        Ok(json)
    }
}
