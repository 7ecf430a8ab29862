//! Request and response shapes of the four operations (the fields this project uses;
//! others in a response are ignored), and the flow definition's status with the
//! "is it Active" check the relay runs at start-up.

use serde::{Deserialize, Serialize};

/// `FlowDefinitionStatus`. Only `Active` flow definitions accept human loops.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum FlowStatus {
    Initializing,
    Active,
    Failed,
    Deleting,
    /// A status this client does not know (kept as sent).
    Other(String),
}

impl From<String> for FlowStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Initializing" => FlowStatus::Initializing,
            "Active" => FlowStatus::Active,
            "Failed" => FlowStatus::Failed,
            "Deleting" => FlowStatus::Deleting,
            _ => FlowStatus::Other(s),
        }
    }
}

impl std::fmt::Display for FlowStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FlowStatus::Initializing => "Initializing",
            FlowStatus::Active => "Active",
            FlowStatus::Failed => "Failed",
            FlowStatus::Deleting => "Deleting",
            FlowStatus::Other(s) => s,
        })
    }
}

/// A flow definition that exists but cannot take human loops (yet, or any more).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flow definition {arn} is {status}, not Active{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
pub struct FlowNotActive {
    pub arn: String,
    pub status: FlowStatus,
    /// `FailureReason`, when the service gives one (a `Failed` flow).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OutputConfig {
    #[serde(rename = "S3OutputPath")]
    pub s3_output_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// `HumanLoopConfig`: who reviews, with which task UI, how many of them, how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HumanLoopConfig {
    pub workteam_arn: String,
    pub human_task_ui_arn: String,
    pub task_title: String,
    pub task_description: String,
    pub task_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_availability_lifetime_in_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_time_limit_in_seconds: Option<u64>,
}

/// `CreateFlowDefinition`'s request (the fields `setup` sends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateFlowDefinition {
    pub flow_definition_name: String,
    pub human_loop_config: HumanLoopConfig,
    pub output_config: OutputConfig,
    pub role_arn: String,
}

/// `DescribeFlowDefinition`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlowDefinitionDescription {
    pub flow_definition_arn: String,
    pub flow_definition_name: String,
    pub flow_definition_status: FlowStatus,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
    #[serde(default)]
    pub human_loop_config: Option<HumanLoopConfig>,
}

impl FlowDefinitionDescription {
    /// `Ok` when the flow definition takes human loops; otherwise its status and why.
    pub fn ensure_active(&self) -> Result<(), FlowNotActive> {
        if self.flow_definition_status == FlowStatus::Active {
            return Ok(());
        }
        Err(FlowNotActive {
            arn: self.flow_definition_arn.clone(),
            status: self.flow_definition_status.clone(),
            reason: self.failure_reason.clone(),
        })
    }
}

/// `DescribeHumanTaskUi`'s answer. The template itself is not returned, only its
/// SHA-256 (and a URL to fetch it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskUiDescription {
    pub human_task_ui_arn: String,
    pub human_task_ui_name: String,
    #[serde(default)]
    pub human_task_ui_status: Option<String>,
    #[serde(default)]
    pub ui_template: Option<UiTemplateInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UiTemplateInfo {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub content_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CreatedTaskUi {
    pub human_task_ui_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CreatedFlow {
    pub flow_definition_arn: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(status: &str, reason: Option<&str>) -> FlowDefinitionDescription {
        let mut v = serde_json::json!({
            "FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:111122223333:flow-definition/dogs",
            "FlowDefinitionName": "dogs",
            "FlowDefinitionStatus": status,
            "CreationTime": 1.7e9,
            "OutputConfig": {"S3OutputPath": "s3://b/a2i"},
            "RoleArn": "arn:aws:iam::111122223333:role/a2i",
        });
        if let Some(r) = reason {
            v["FailureReason"] = r.into();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_an_active_flow_definition_passes_the_check() {
        assert_eq!(described("Active", None).ensure_active(), Ok(()));
        let e = described("Initializing", None).ensure_active().unwrap_err();
        assert_eq!(e.status, FlowStatus::Initializing);
        assert_eq!(
            e.to_string(),
            "flow definition arn:aws:sagemaker:us-east-1:111122223333:flow-definition/dogs is Initializing, not Active"
        );
        let e = described("Failed", Some("Workteam arn:... does not exist"))
            .ensure_active()
            .unwrap_err();
        assert_eq!(e.status, FlowStatus::Failed);
        assert!(
            e.to_string()
                .ends_with("is Failed, not Active: Workteam arn:... does not exist"),
            "{e}"
        );
        assert_eq!(
            described("Deleting", None)
                .ensure_active()
                .unwrap_err()
                .status,
            FlowStatus::Deleting
        );
        assert_eq!(
            described("Paused", None)
                .ensure_active()
                .unwrap_err()
                .status,
            FlowStatus::Other("Paused".into())
        );
    }

    #[test]
    fn a_create_request_serializes_with_the_services_field_names() {
        let req = CreateFlowDefinition {
            flow_definition_name: "dogs".into(),
            human_loop_config: HumanLoopConfig {
                workteam_arn: "w".into(),
                human_task_ui_arn: "u".into(),
                task_title: "t".into(),
                task_description: "d".into(),
                task_count: 1,
                task_availability_lifetime_in_seconds: Some(86400),
                task_time_limit_in_seconds: None,
            },
            output_config: OutputConfig {
                s3_output_path: "s3://b/a2i".into(),
                kms_key_id: None,
            },
            role_arn: "r".into(),
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "FlowDefinitionName": "dogs",
                "HumanLoopConfig": {"WorkteamArn": "w", "HumanTaskUiArn": "u", "TaskTitle": "t",
                    "TaskDescription": "d", "TaskCount": 1, "TaskAvailabilityLifetimeInSeconds": 86400},
                "OutputConfig": {"S3OutputPath": "s3://b/a2i"},
                "RoleArn": "r",
            })
        );
    }
}
