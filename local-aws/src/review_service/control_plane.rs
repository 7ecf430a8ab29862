//! `ControlPlane`: the SageMaker resources a human loop needs (human task UIs and flow
//! definitions), as a plain state machine with no I/O, in the same check/apply style as
//! the loop store. Local resources become `Active` at once (the real service passes
//! through `Initializing`, which no client has to wait for here).
//!
//! Fields the service only stores and echoes back (`HumanLoopConfig`, activation
//! config, request source, tags) are kept as raw JSON so that Describe returns what
//! Create received, whatever SDK version sent it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HumanTaskUi {
    pub name: String,
    pub arn: String,
    #[serde(with = "time::serde::rfc3339")]
    pub creation_time: OffsetDateTime,
    /// The Liquid/HTML worker template (`UiTemplate.Content`).
    pub template: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowDefinition {
    pub name: String,
    pub arn: String,
    #[serde(with = "time::serde::rfc3339")]
    pub creation_time: OffsetDateTime,
    /// `OutputConfig` as sent; `S3OutputPath` is checked to be an `s3://` URI.
    pub output_config: serde_json::Value,
    pub role_arn: String,
    pub human_loop_config: Option<serde_json::Value>,
    pub activation_config: Option<serde_json::Value>,
    pub request_source: Option<serde_json::Value>,
}

impl FlowDefinition {
    pub fn output_path(&self) -> &str {
        self.output_config
            .get("S3OutputPath")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    }

    /// The task UI this flow shows reviewers, if it names one.
    pub fn human_task_ui_arn(&self) -> Option<&str> {
        self.human_loop_config
            .as_ref()?
            .get("HumanTaskUiArn")?
            .as_str()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControlEvent {
    TaskUiCreated(HumanTaskUi),
    TaskUiDeleted { name: String },
    FlowDefinitionCreated(Box<FlowDefinition>),
    FlowDefinitionDeleted { name: String },
}

/// Errors named after the SageMaker error codes they become.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Validation(String),
    #[error("{kind} {name:?} already exists")]
    ResourceInUse { kind: &'static str, name: String },
    #[error("{kind} {name:?} is still used by {by}")]
    StillUsed {
        kind: &'static str,
        name: String,
        by: String,
    },
    #[error("{kind} {name:?} does not exist")]
    ResourceNotFound { kind: &'static str, name: String },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlPlane {
    task_uis: BTreeMap<String, HumanTaskUi>,
    flow_definitions: BTreeMap<String, FlowDefinition>,
}

/// Task UI and flow definition names: `[a-z0-9](-*[a-z0-9])*`, 1 to 63 characters.
pub fn validate_resource_name(field: &str, name: &str) -> Result<(), ControlError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ControlError::Validation(format!(
            "{field} {name:?} must be 1 to 63 lowercase letters, digits or hyphens, \
             starting and ending with a letter or digit"
        )))
    }
}

/// The resource name at the end of `arn:aws:sagemaker:<region>:<account>:<kind>/<name>`.
pub fn name_from_arn<'a>(arn: &'a str, kind: &str) -> Option<&'a str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sagemaker"), Some(_region), Some(account), Some(res)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if !partition.starts_with("aws")
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let name = res.strip_prefix(kind)?.strip_prefix('/')?;
    (!name.is_empty()).then_some(name)
}

impl ControlPlane {
    pub fn task_ui(&self, name: &str) -> Result<&HumanTaskUi, ControlError> {
        self.task_uis
            .get(name)
            .ok_or_else(|| ControlError::ResourceNotFound {
                kind: "human task UI",
                name: name.to_owned(),
            })
    }

    pub fn flow_definition(&self, name: &str) -> Result<&FlowDefinition, ControlError> {
        self.flow_definitions
            .get(name)
            .ok_or_else(|| ControlError::ResourceNotFound {
                kind: "flow definition",
                name: name.to_owned(),
            })
    }

    pub fn check_create_task_ui(&self, ui: HumanTaskUi) -> Result<ControlEvent, ControlError> {
        validate_resource_name("HumanTaskUiName", &ui.name)?;
        if ui.template.is_empty() {
            return Err(ControlError::Validation(
                "UiTemplate.Content must not be empty".into(),
            ));
        }
        if self.task_uis.contains_key(&ui.name) {
            return Err(ControlError::ResourceInUse {
                kind: "human task UI",
                name: ui.name,
            });
        }
        Ok(ControlEvent::TaskUiCreated(ui))
    }

    pub fn check_delete_task_ui(&self, name: &str) -> Result<ControlEvent, ControlError> {
        self.task_ui(name)?;
        Ok(ControlEvent::TaskUiDeleted {
            name: name.to_owned(),
        })
    }

    pub fn check_create_flow_definition(
        &self,
        flow: FlowDefinition,
    ) -> Result<ControlEvent, ControlError> {
        validate_resource_name("FlowDefinitionName", &flow.name)?;
        let path = flow.output_path();
        if protocol::json::parse_s3_prefix_uri(path).is_none() {
            return Err(ControlError::Validation(format!(
                "OutputConfig.S3OutputPath {path:?} must be an s3://bucket[/prefix] URI"
            )));
        }
        if let Some(ui_arn) = flow.human_task_ui_arn() {
            let ui = name_from_arn(ui_arn, "human-task-ui").ok_or_else(|| {
                ControlError::Validation(format!(
                    "HumanLoopConfig.HumanTaskUiArn {ui_arn:?} is not a human task UI ARN"
                ))
            })?;
            if !self.task_uis.contains_key(ui) {
                return Err(ControlError::Validation(format!(
                    "HumanLoopConfig.HumanTaskUiArn {ui_arn:?}: no such human task UI"
                )));
            }
        }
        if self.flow_definitions.contains_key(&flow.name) {
            return Err(ControlError::ResourceInUse {
                kind: "flow definition",
                name: flow.name,
            });
        }
        Ok(ControlEvent::FlowDefinitionCreated(Box::new(flow)))
    }

    /// `has_active_loops`: whether human loops of this flow still wait for reviewers;
    /// such a flow definition is in use and cannot be deleted.
    pub fn check_delete_flow_definition(
        &self,
        name: &str,
        has_active_loops: bool,
    ) -> Result<ControlEvent, ControlError> {
        self.flow_definition(name)?;
        if has_active_loops {
            return Err(ControlError::StillUsed {
                kind: "flow definition",
                name: name.to_owned(),
                by: "human loops in progress".into(),
            });
        }
        Ok(ControlEvent::FlowDefinitionDeleted {
            name: name.to_owned(),
        })
    }

    pub fn apply(&mut self, event: &ControlEvent) {
        match event {
            ControlEvent::TaskUiCreated(ui) => {
                self.task_uis
                    .entry(ui.name.clone())
                    .or_insert_with(|| ui.clone());
            }
            ControlEvent::TaskUiDeleted { name } => {
                self.task_uis.remove(name);
            }
            ControlEvent::FlowDefinitionCreated(f) => {
                self.flow_definitions
                    .entry(f.name.clone())
                    .or_insert_with(|| (**f).clone());
            }
            ControlEvent::FlowDefinitionDeleted { name } => {
                self.flow_definitions.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn ui(name: &str) -> HumanTaskUi {
        HumanTaskUi {
            name: name.into(),
            arn: format!("arn:aws:sagemaker:us-east-1:000000000000:human-task-ui/{name}"),
            creation_time: datetime!(2024-01-01 0:00 UTC),
            template: "<crowd-form></crowd-form>".into(),
        }
    }

    fn flow(name: &str, ui_name: &str, path: &str) -> FlowDefinition {
        FlowDefinition {
            name: name.into(),
            arn: format!("arn:aws:sagemaker:us-east-1:000000000000:flow-definition/{name}"),
            creation_time: datetime!(2024-01-01 0:00 UTC),
            output_config: json!({"S3OutputPath": path}),
            role_arn: "arn:aws:iam::000000000000:role/a2i".into(),
            human_loop_config: Some(json!({
                "HumanTaskUiArn": format!("arn:aws:sagemaker:us-east-1:000000000000:human-task-ui/{ui_name}"),
            })),
            activation_config: None,
            request_source: None,
        }
    }

    fn create_ui(cp: &mut ControlPlane, name: &str) {
        let ev = cp.check_create_task_ui(ui(name)).unwrap();
        cp.apply(&ev);
    }

    #[test]
    fn a_task_ui_name_can_be_created_once() {
        let mut cp = ControlPlane::default();
        create_ui(&mut cp, "ui");
        assert_eq!(
            cp.task_ui("ui").unwrap().template,
            "<crowd-form></crowd-form>"
        );
        assert!(matches!(
            cp.check_create_task_ui(ui("ui")),
            Err(ControlError::ResourceInUse { .. })
        ));
    }

    #[test]
    fn invalid_names_and_empty_templates_are_validation_errors() {
        let cp = ControlPlane::default();
        for name in ["", "UI", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(
                matches!(
                    cp.check_create_task_ui(ui(name)),
                    Err(ControlError::Validation(_))
                ),
                "{name}"
            );
        }
        let mut empty = ui("ok");
        empty.template.clear();
        assert!(matches!(
            cp.check_create_task_ui(empty),
            Err(ControlError::Validation(_))
        ));
    }

    #[test]
    fn a_flow_definition_needs_an_s3_output_path_and_an_existing_task_ui() {
        let mut cp = ControlPlane::default();
        assert!(matches!(
            cp.check_create_flow_definition(flow("f", "ui", "s3://bucket/a2i")),
            Err(ControlError::Validation(_))
        ));
        create_ui(&mut cp, "ui");
        for bad in ["https://bucket/a2i", "s3://", "bucket/a2i", ""] {
            assert!(
                matches!(
                    cp.check_create_flow_definition(flow("f", "ui", bad)),
                    Err(ControlError::Validation(_))
                ),
                "{bad}"
            );
        }
        let ev = cp
            .check_create_flow_definition(flow("f", "ui", "s3://bucket/a2i"))
            .unwrap();
        cp.apply(&ev);
        assert_eq!(
            cp.flow_definition("f").unwrap().output_path(),
            "s3://bucket/a2i"
        );
        assert!(matches!(
            cp.check_create_flow_definition(flow("f", "ui", "s3://bucket/a2i")),
            Err(ControlError::ResourceInUse { .. })
        ));
    }

    #[test]
    fn a_flow_definition_with_active_loops_cannot_be_deleted() {
        let mut cp = ControlPlane::default();
        create_ui(&mut cp, "ui");
        let ev = cp
            .check_create_flow_definition(flow("f", "ui", "s3://b"))
            .unwrap();
        cp.apply(&ev);
        assert!(matches!(
            cp.check_delete_flow_definition("f", true),
            Err(ControlError::StillUsed { .. })
        ));
        let ev = cp.check_delete_flow_definition("f", false).unwrap();
        cp.apply(&ev);
        assert!(matches!(
            cp.flow_definition("f"),
            Err(ControlError::ResourceNotFound { .. })
        ));
        assert!(matches!(
            cp.check_delete_flow_definition("f", false),
            Err(ControlError::ResourceNotFound { .. })
        ));
    }

    #[test]
    fn names_are_read_from_sagemaker_arns_of_the_right_kind_only() {
        let arn = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/my-flow";
        assert_eq!(name_from_arn(arn, "flow-definition"), Some("my-flow"));
        assert_eq!(name_from_arn(arn, "human-task-ui"), None);
        assert_eq!(
            name_from_arn(
                "arn:aws:sagemaker:us-east-1:1234:flow-definition/f",
                "flow-definition"
            ),
            None
        );
        assert_eq!(
            name_from_arn(
                "arn:aws:s3:us-east-1:123456789012:flow-definition/f",
                "flow-definition"
            ),
            None
        );
        assert_eq!(
            name_from_arn(
                "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/",
                "flow-definition"
            ),
            None
        );
        assert_eq!(name_from_arn("flow", "flow-definition"), None);
    }
}
