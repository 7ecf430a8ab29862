//! The comparisons that decide "exists and matches" vs "exists and differs".

use super::*;
use crate::sagemaker_control::UiTemplateInfo;

fn wanted() -> CreateFlowDefinition {
    CreateFlowDefinition {
        flow_definition_name: "dogs".into(),
        human_loop_config: HumanLoopConfig {
            workteam_arn: "arn:aws:sagemaker:us-east-1:111122223333:workteam/private-crowd/t"
                .into(),
            human_task_ui_arn: "arn:aws:sagemaker:us-east-1:111122223333:human-task-ui/dogs".into(),
            task_title: "Classify".into(),
            task_description: "Pick one".into(),
            task_count: 1,
            task_availability_lifetime_in_seconds: Some(86400),
            task_time_limit_in_seconds: Some(3600),
        },
        output_config: OutputConfig {
            s3_output_path: "s3://frames/a2i-output".into(),
            kms_key_id: None,
        },
        role_arn: "arn:aws:iam::111122223333:role/a2i".into(),
    }
}

fn described(w: &CreateFlowDefinition) -> FlowDefinitionDescription {
    FlowDefinitionDescription {
        flow_definition_arn: "arn:aws:sagemaker:us-east-1:111122223333:flow-definition/dogs".into(),
        flow_definition_name: w.flow_definition_name.clone(),
        flow_definition_status: FlowStatus::Active,
        failure_reason: None,
        role_arn: Some(w.role_arn.clone()),
        output_config: Some(w.output_config.clone()),
        human_loop_config: Some(w.human_loop_config.clone()),
    }
}

#[test]
fn a_flow_definition_made_from_the_same_config_does_not_differ() {
    let w = wanted();
    assert_eq!(flow_differences(&described(&w), &w), Vec::<String>::new());
    // Settings the service does not report are not counted as differences.
    let mut d = described(&w);
    d.human_loop_config
        .as_mut()
        .unwrap()
        .task_time_limit_in_seconds = None;
    d.role_arn = None;
    assert!(flow_differences(&d, &w).is_empty());
}

#[test]
fn each_difference_is_named_with_both_values() {
    let w = wanted();
    let mut d = described(&w);
    let h = d.human_loop_config.as_mut().unwrap();
    h.human_task_ui_arn = "arn:aws:sagemaker:us-east-1:111122223333:human-task-ui/old".into();
    h.task_count = 3;
    d.output_config.as_mut().unwrap().s3_output_path = "s3://elsewhere".into();
    let diffs = flow_differences(&d, &w);
    assert_eq!(diffs.len(), 3, "{diffs:?}");
    assert!(diffs[0].starts_with("HumanTaskUiArn is \"arn:aws:sagemaker:us-east-1:111122223333:human-task-ui/old\", the config gives"), "{diffs:?}");
    assert_eq!(diffs[1], "TaskCount is \"3\", the config gives \"1\"");
    assert!(diffs[2].starts_with("OutputConfig.S3OutputPath is \"s3://elsewhere\""));
}

#[test]
fn a_task_ui_is_compared_by_the_sha256_of_its_template() {
    let template = "<crowd-form></crowd-form>";
    let ui = |sha: Option<String>| TaskUiDescription {
        human_task_ui_arn: "arn".into(),
        human_task_ui_name: "dogs".into(),
        human_task_ui_status: Some("Active".into()),
        ui_template: Some(UiTemplateInfo {
            url: None,
            content_sha256: sha,
        }),
    };
    let sha = protocol::sha256_hex(template.as_bytes());
    assert_eq!(task_ui_difference(&ui(Some(sha.clone())), template), None);
    assert_eq!(
        task_ui_difference(&ui(Some(sha.to_uppercase())), template),
        None
    );
    // The same digest in base64 (the form is not documented).
    let base64 = "NuGC8hwze/0nKHL3+pOezs59BiFUFv9S6H7HzrrvSfk=";
    assert_eq!(task_ui_difference(&ui(Some(base64.into())), template), None);
    let d = task_ui_difference(&ui(Some("00".repeat(32))), template).unwrap();
    assert!(d.contains("not the one generated from model.labels"), "{d}");
    assert!(task_ui_difference(&ui(None), template).is_some());
}
