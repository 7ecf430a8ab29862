//! `cloud-relay setup`: the human task UI (generated from the model's labels, see
//! [`template`]) and the flow definition the relay starts human loops with, created
//! through the SageMaker control plane, idempotently: each is described first and
//! created only when missing; one that exists under the configured name is reused,
//! and where it differs from what the config asks for, the differences are reported
//! and nothing is overwritten (SageMaker has no update for either). Then it waits,
//! with a deadline, until the flow definition is `Active`.
//!
//! [`ensure`] is the procedure (reporting progress through a callback, so local mode
//! can log it while the CLI prints it); [`cli`] is the command, in [`report`].

pub mod events;
mod report;
pub mod template;

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::sagemaker_control::{
    CreateFlowDefinition, FlowDefinitionDescription, FlowNotActive, FlowStatus, HumanLoopConfig,
    OutputConfig, SageMakerControl, SageMakerError, TaskUiDescription,
};

pub use report::{cli, print_events};

/// Everything `setup` creates, resolved from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub task_ui_name: String,
    pub template: String,
    pub flow_definition_name: String,
    pub role_arn: String,
    pub output_path: String,
    /// `human_task_ui_arn` is filled in once the task UI is known.
    pub human_loop: HumanLoopConfig,
}

impl Plan {
    /// The plan for a config validated for setup (`Config::load_for(_, Purpose::Setup)`).
    /// `None` when it has no `[a2i.setup]`.
    pub fn from_config(config: &Config) -> Option<Plan> {
        let setup = config.a2i.setup.as_ref()?;
        let text = template::TemplateText {
            question: &setup.question,
            title: &setup.task_title,
            description: &setup.task_description,
        };
        Some(Plan {
            task_ui_name: setup.task_ui_name(config).to_owned(),
            template: template::task_ui_template(
                &config.model.labels,
                &config.a2i.answer_field,
                &text,
            ),
            flow_definition_name: setup.flow_definition_name(config).to_owned(),
            role_arn: setup.role_arn.clone(),
            output_path: setup.output_path(config),
            human_loop: HumanLoopConfig {
                workteam_arn: setup.workteam_arn.clone(),
                human_task_ui_arn: String::new(),
                task_title: setup.task_title.clone(),
                task_description: setup.task_description.clone(),
                task_count: setup.task_count,
                task_availability_lifetime_in_seconds: Some(setup.task_availability.as_secs()),
                task_time_limit_in_seconds: Some(setup.task_time_limit.as_secs()),
            },
        })
    }
}

/// What `setup` found or did for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Created,
    /// It existed and matches the config.
    Existed,
    /// It existed and differs from the config in these ways; it was left as it is.
    ExistedDiffering(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub task_ui_arn: String,
    pub task_ui: Found,
    pub flow_definition_arn: String,
    pub flow_definition: Found,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{operation} {name:?}: {source}")]
    Call {
        operation: &'static str,
        name: String,
        #[source]
        source: SageMakerError,
    },
    #[error("human task UI {name:?} is {status}, not Active")]
    TaskUiNotActive { name: String, status: String },
    #[error(transparent)]
    NotActive(#[from] FlowNotActive),
    #[error(
        "flow definition {arn} is still {status} after {waited:?}; run setup again to keep waiting"
    )]
    StillNotActive {
        arn: String,
        status: String,
        waited: Duration,
    },
}

fn call_error(operation: &'static str, name: &str) -> impl FnOnce(SageMakerError) -> SetupError {
    let name = name.to_owned();
    move |source| SetupError::Call {
        operation,
        name,
        source,
    }
}

/// How long [`ensure`] waits for `Active`, and how often it asks.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub deadline: Duration,
    pub poll: Duration,
}

/// Creates what is missing, reuses what exists, waits for `Active`. `progress` gets
/// one line per step.
pub async fn ensure(
    client: &SageMakerControl,
    plan: &Plan,
    wait: Wait,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Outcome, SetupError> {
    let (task_ui_arn, task_ui) = ensure_task_ui(client, plan, progress).await?;
    let mut human_loop = plan.human_loop.clone();
    human_loop.human_task_ui_arn = task_ui_arn.clone();
    let request = CreateFlowDefinition {
        flow_definition_name: plan.flow_definition_name.clone(),
        human_loop_config: human_loop,
        output_config: OutputConfig {
            s3_output_path: plan.output_path.clone(),
            kms_key_id: None,
        },
        role_arn: plan.role_arn.clone(),
    };
    let (flow_definition_arn, flow_definition) = ensure_flow(client, &request, progress).await?;
    wait_active(client, &plan.flow_definition_name, wait, progress).await?;
    Ok(Outcome {
        task_ui_arn,
        task_ui,
        flow_definition_arn,
        flow_definition,
    })
}

async fn ensure_task_ui(
    client: &SageMakerControl,
    plan: &Plan,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(String, Found), SetupError> {
    let name = &plan.task_ui_name;
    let describe = || async {
        client
            .describe_human_task_ui(name)
            .await
            .map_err(call_error("DescribeHumanTaskUi", name))
    };
    let existing = match client.describe_human_task_ui(name).await {
        Ok(d) => d,
        Err(SageMakerError::NotFound { .. }) => {
            match client.create_human_task_ui(name, &plan.template).await {
                Ok(arn) => {
                    progress(&format!("human task UI {name}: created"));
                    return Ok((arn, Found::Created));
                }
                // Created by someone else since we looked.
                Err(SageMakerError::InUse { .. }) => describe().await?,
                Err(e) => return Err(call_error("CreateHumanTaskUi", name)(e)),
            }
        }
        Err(e) => return Err(call_error("DescribeHumanTaskUi", name)(e)),
    };
    if let Some(status) = existing
        .human_task_ui_status
        .as_deref()
        .filter(|s| *s != "Active")
    {
        return Err(SetupError::TaskUiNotActive {
            name: name.clone(),
            status: status.to_owned(),
        });
    }
    let found = match task_ui_difference(&existing, &plan.template) {
        None => {
            progress(&format!("human task UI {name}: exists, same template"));
            Found::Existed
        }
        Some(d) => {
            progress(&format!("human task UI {name}: exists, DIFFERS: {d}"));
            Found::ExistedDiffering(vec![d])
        }
    };
    Ok((existing.human_task_ui_arn, found))
}

/// How an existing task UI differs from the generated template (by SHA-256, which
/// is all DescribeHumanTaskUi tells about its content). The API reference does not
/// say how the digest is written, so hex and base64 both count as the same.
pub fn task_ui_difference(existing: &TaskUiDescription, template: &str) -> Option<String> {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(template.as_bytes());
    let generated = protocol::sha256_hex(template.as_bytes());
    let generated_base64 = base64::engine::general_purpose::STANDARD.encode(digest);
    match existing
        .ui_template
        .as_ref()
        .and_then(|t| t.content_sha256.as_deref())
    {
        Some(sha) if sha.eq_ignore_ascii_case(&generated) || sha == generated_base64 => None,
        Some(sha) => Some(format!(
            "its template (sha256 {sha}) is not the one generated from model.labels \
             (sha256 {generated}); kept as it is"
        )),
        None => Some("its template's sha256 is not reported; cannot compare".into()),
    }
}

async fn ensure_flow(
    client: &SageMakerControl,
    request: &CreateFlowDefinition,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(String, Found), SetupError> {
    let name = &request.flow_definition_name;
    let existing = match client.describe_flow_definition(name).await {
        Ok(d) => d,
        Err(SageMakerError::NotFound { .. }) => {
            match client.create_flow_definition(request).await {
                Ok(arn) => {
                    progress(&format!("flow definition {name}: created"));
                    return Ok((arn, Found::Created));
                }
                Err(SageMakerError::InUse { .. }) => client
                    .describe_flow_definition(name)
                    .await
                    .map_err(call_error("DescribeFlowDefinition", name))?,
                Err(e) => return Err(call_error("CreateFlowDefinition", name)(e)),
            }
        }
        Err(e) => return Err(call_error("DescribeFlowDefinition", name)(e)),
    };
    let differences = flow_differences(&existing, request);
    let found = if differences.is_empty() {
        progress(&format!("flow definition {name}: exists, same settings"));
        Found::Existed
    } else {
        progress(&format!(
            "flow definition {name}: exists, DIFFERS: {}; kept as it is",
            differences.join("; ")
        ));
        Found::ExistedDiffering(differences)
    };
    Ok((existing.flow_definition_arn, found))
}

/// Where an existing flow definition differs from what setup would create.
pub fn flow_differences(
    existing: &FlowDefinitionDescription,
    wanted: &CreateFlowDefinition,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |field: &str, have: Option<String>, want: String| {
        if let Some(have) = have {
            if have != want {
                out.push(format!("{field} is {have:?}, the config gives {want:?}"));
            }
        }
    };
    let w = &wanted.human_loop_config;
    match &existing.human_loop_config {
        None => {
            check("HumanLoopConfig", Some("absent".into()), "present".into());
        }
        Some(h) => {
            check(
                "HumanTaskUiArn",
                Some(h.human_task_ui_arn.clone()),
                w.human_task_ui_arn.clone(),
            );
            check(
                "WorkteamArn",
                Some(h.workteam_arn.clone()),
                w.workteam_arn.clone(),
            );
            check(
                "TaskTitle",
                Some(h.task_title.clone()),
                w.task_title.clone(),
            );
            check(
                "TaskDescription",
                Some(h.task_description.clone()),
                w.task_description.clone(),
            );
            check(
                "TaskCount",
                Some(h.task_count.to_string()),
                w.task_count.to_string(),
            );
            let secs = |v: Option<u64>| v.map(|s| format!("{s}s"));
            if let Some(want) = secs(w.task_time_limit_in_seconds) {
                check(
                    "TaskTimeLimitInSeconds",
                    secs(h.task_time_limit_in_seconds),
                    want,
                );
            }
            if let Some(want) = secs(w.task_availability_lifetime_in_seconds) {
                check(
                    "TaskAvailabilityLifetimeInSeconds",
                    secs(h.task_availability_lifetime_in_seconds),
                    want,
                );
            }
        }
    }
    check(
        "RoleArn",
        existing.role_arn.clone(),
        wanted.role_arn.clone(),
    );
    check(
        "OutputConfig.S3OutputPath",
        existing
            .output_config
            .as_ref()
            .map(|o| o.s3_output_path.clone()),
        wanted.output_config.s3_output_path.clone(),
    );
    out
}

/// Asks until the flow definition is `Active`; `Failed`/`Deleting` end it at once.
async fn wait_active(
    client: &SageMakerControl,
    name: &str,
    wait: Wait,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), SetupError> {
    let start = Instant::now();
    let mut said = None;
    loop {
        let status = match client.describe_flow_definition(name).await {
            Ok(d) => match d.ensure_active() {
                Ok(()) => {
                    progress(&format!("flow definition {name}: Active"));
                    return Ok(());
                }
                Err(e) if e.status == FlowStatus::Initializing => {
                    (d.flow_definition_arn, e.status.to_string())
                }
                Err(e) => return Err(e.into()),
            },
            // Just created: not visible everywhere yet.
            Err(SageMakerError::NotFound { .. }) => (name.to_owned(), "not visible yet".to_owned()),
            Err(e) if e.is_transient() => (name.to_owned(), format!("unknown ({e})")),
            Err(e) => return Err(call_error("DescribeFlowDefinition", name)(e)),
        };
        let waited = start.elapsed();
        if waited >= wait.deadline {
            return Err(SetupError::StillNotActive {
                arn: status.0,
                status: status.1,
                waited,
            });
        }
        if said.as_ref() != Some(&status.1) {
            progress(&format!(
                "flow definition {name}: {}, waiting for Active (up to {}s)",
                status.1,
                wait.deadline.saturating_sub(waited).as_secs()
            ));
            said = Some(status.1);
        }
        tokio::time::sleep(wait.poll.min(wait.deadline.saturating_sub(waited))).await;
    }
}

#[cfg(test)]
mod tests;
