//! The SageMaker control-plane subset, JSON 1.1 style: `POST /` with
//! `X-Amz-Target: SageMaker.<Operation>` and a JSON body (shapes from botocore's
//! `sagemaker` 2017-07-24 model). Timestamps are epoch seconds, as that protocol sends
//! them; errors are HTTP 400 with `__type` `ResourceInUse` / `ResourceNotFound` /
//! `ValidationException`, like the real service.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::control_plane::ControlError;
use super::service::{NewFlowDefinition, ReviewService, ServiceError};
use super::wire::{blocking, parse_body, request_id, required, ApiError};

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

pub async fn dispatch(
    State(service): State<ReviewService>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let result = match target.strip_prefix("SageMaker.") {
        Some(op) => call(op, service, &host, &body).await,
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} is not a SageMaker operation"),
        )),
    };
    let mut resp = match result {
        Ok(v) => (StatusCode::OK, v.to_string()).into_response(),
        Err(e) => e.into_response(),
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert("x-amzn-RequestId", request_id());
    resp
}

/// The control plane's error for a service error.
fn control_error(e: ServiceError) -> ApiError {
    let code = match &e {
        ServiceError::Control(
            ControlError::ResourceInUse { .. } | ControlError::StillUsed { .. },
        ) => "ResourceInUse",
        ServiceError::Control(ControlError::ResourceNotFound { .. }) => "ResourceNotFound",
        ServiceError::Persist(_) | ServiceError::Output(_) | ServiceError::Internal(_) => {
            tracing::error!(error = %e, "review service failure");
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                e.to_string(),
            );
        }
        _ => "ValidationException",
    };
    ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
}

fn epoch_seconds(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskUiName {
    human_task_ui_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateTaskUi {
    human_task_ui_name: Option<String>,
    ui_template: Option<UiTemplate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UiTemplate {
    content: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FlowName {
    flow_definition_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateFlow {
    flow_definition_name: Option<String>,
    output_config: Option<Value>,
    role_arn: Option<String>,
    human_loop_config: Option<Value>,
    human_loop_activation_config: Option<Value>,
    human_loop_request_source: Option<Value>,
}

async fn call(
    op: &str,
    service: ReviewService,
    host: &str,
    bytes: &[u8],
) -> Result<Value, ApiError> {
    match op {
        "CreateHumanTaskUi" => {
            let b: CreateTaskUi = parse_body(bytes)?;
            let name = required("HumanTaskUiName", b.human_task_ui_name)?;
            let content = required(
                "UiTemplate.Content",
                required("UiTemplate", b.ui_template)?.content,
            )?;
            let arn = blocking(service, move |s| s.create_human_task_ui(&name, content))
                .await
                .map_err(control_error)?;
            Ok(json!({ "HumanTaskUiArn": arn }))
        }
        "DescribeHumanTaskUi" => {
            let b: TaskUiName = parse_body(bytes)?;
            let name = required("HumanTaskUiName", b.human_task_ui_name)?;
            let ui = service
                .describe_human_task_ui(&name)
                .map_err(control_error)?;
            let sha = hex::encode(Sha256::digest(ui.template.as_bytes()));
            Ok(json!({
                "HumanTaskUiArn": ui.arn,
                "HumanTaskUiName": ui.name,
                "HumanTaskUiStatus": "Active",
                "CreationTime": epoch_seconds(ui.creation_time),
                "UiTemplate": {
                    "Url": format!("http://{host}/human-task-uis/{}/template", ui.name),
                    "ContentSha256": sha,
                },
            }))
        }
        "DeleteHumanTaskUi" => {
            let b: TaskUiName = parse_body(bytes)?;
            let name = required("HumanTaskUiName", b.human_task_ui_name)?;
            blocking(service, move |s| s.delete_human_task_ui(&name))
                .await
                .map_err(control_error)?;
            Ok(json!({}))
        }
        "CreateFlowDefinition" => {
            let b: CreateFlow = parse_body(bytes)?;
            let new = NewFlowDefinition {
                name: required("FlowDefinitionName", b.flow_definition_name)?,
                output_config: required("OutputConfig", b.output_config)?,
                role_arn: required("RoleArn", b.role_arn)?,
                human_loop_config: b.human_loop_config,
                activation_config: b.human_loop_activation_config,
                request_source: b.human_loop_request_source,
            };
            let arn = blocking(service, move |s| s.create_flow_definition(new))
                .await
                .map_err(control_error)?;
            Ok(json!({ "FlowDefinitionArn": arn }))
        }
        "DescribeFlowDefinition" => {
            let b: FlowName = parse_body(bytes)?;
            let name = required("FlowDefinitionName", b.flow_definition_name)?;
            let f = service
                .describe_flow_definition(&name)
                .map_err(control_error)?;
            let mut v = json!({
                "FlowDefinitionArn": f.arn,
                "FlowDefinitionName": f.name,
                "FlowDefinitionStatus": "Active",
                "CreationTime": epoch_seconds(f.creation_time),
                "OutputConfig": f.output_config,
                "RoleArn": f.role_arn,
            });
            if let Some(c) = f.human_loop_config {
                v["HumanLoopConfig"] = c;
            }
            if let Some(c) = f.activation_config {
                v["HumanLoopActivationConfig"] = c;
            }
            if let Some(c) = f.request_source {
                v["HumanLoopRequestSource"] = c;
            }
            Ok(v)
        }
        "DeleteFlowDefinition" => {
            let b: FlowName = parse_body(bytes)?;
            let name = required("FlowDefinitionName", b.flow_definition_name)?;
            blocking(service, move |s| s.delete_flow_definition(&name))
                .await
                .map_err(control_error)?;
            Ok(json!({}))
        }
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("SageMaker.{other} is not implemented by the local review service"),
        )),
    }
}
