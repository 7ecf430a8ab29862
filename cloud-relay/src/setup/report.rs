//! `cloud-relay setup --config FILE` as a command: progress, then the two ARNs and
//! the exact line the relay's config needs, on stdout (one fact per line, so scripts
//! and tests can read it).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::events::{self, EventsOutcome, EventsPlan};
use super::{ensure, Found, Outcome, Plan, Wait};
use crate::config::{Config, Purpose};
use crate::eventbridge::EventBridge;
use crate::sagemaker_control::SageMakerControl;

/// How often the flow definition's status is asked while it initializes.
const POLL: Duration = Duration::from_secs(2);

pub async fn cli(config_path: &Path, wait: Duration) -> anyhow::Result<()> {
    let config = Config::load_for(config_path, Purpose::Setup)?;
    let plan = Plan::from_config(&config).context("[a2i.setup] is missing")?;
    let client = SageMakerControl::connect(&config.a2i)
        .await
        .context("SageMaker control plane")?;
    println!(
        "setup: task UI {:?} and flow definition {:?} at {} ({}); categories: {} labels from model.labels + \"{}\"",
        plan.task_ui_name,
        plan.flow_definition_name,
        client.endpoint(),
        config.a2i.region,
        config.model.labels.len(),
        protocol::a2i::NONE_OF_THESE,
    );
    let outcome = ensure(
        &client,
        &plan,
        Wait {
            deadline: wait,
            poll: POLL,
        },
        &mut |line: &str| println!("{line}"),
    )
    .await?;
    for line in summary(&config, &outcome) {
        println!("{line}");
    }
    let events = match &config.results.queue {
        Some(queue) => {
            let plan = EventsPlan::new(queue, &outcome.flow_definition_arn);
            let sqs = crate::relay::completions::queue::sqs_client(queue, &config.a2i.region).await;
            let bridge = EventBridge::connect(queue, &config.a2i.region)
                .await
                .context("EventBridge")?;
            println!();
            println!(
                "setup: completion events: queue {:?} (dead-letter queue {:?}) and rule {:?} at {}",
                plan.queue_name,
                plan.dead_letter_queue_name,
                plan.rule_name,
                bridge.endpoint()
            );
            let out =
                events::ensure(&sqs, &bridge, &plan, &mut |line: &str| println!("{line}")).await?;
            println!("completions queue: {}", out.queue_url);
            Some(out)
        }
        None => {
            println!();
            println!(
                "no [results.queue]: the relay lists loops every results.poll_interval; add the \
                 table and run setup again for completion events"
            );
            None
        }
    };
    if differs(&outcome) {
        eprintln!(
            "cloud-relay: warning: an existing task UI or flow definition differs from the \
             config (see above) and was not changed; to apply the config, give \
             [a2i.setup] new names (task_ui_name, flow_definition_name) and run setup again"
        );
    }
    if events.as_ref().is_some_and(events_differ) {
        eprintln!(
            "cloud-relay: warning: an existing completions queue or rule differs from the \
             config (see above) and was not changed; correct it with your own tools, or give \
             [results.queue] a new name and run setup again"
        );
    }
    Ok(())
}

fn events_differ(o: &EventsOutcome) -> bool {
    [&o.queue, &o.dead_letter_queue, &o.rule, &o.target]
        .iter()
        .any(|f| matches!(f, Found::ExistedDiffering(_)))
}

/// `setup --print-events`: the completion-event resources, printed, nothing created.
/// Loaded as `fleet` commands load it: no `[a2i.setup]` needed.
pub fn print_events(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load_for(config_path, Purpose::Fleet)?;
    let lines = events::print(&config).context("[results.queue] is missing")?;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

fn differs(outcome: &Outcome) -> bool {
    [&outcome.task_ui, &outcome.flow_definition]
        .iter()
        .any(|f| matches!(f, Found::ExistedDiffering(_)))
}

/// The closing lines: both ARNs and what to put in the config.
pub fn summary(config: &Config, outcome: &Outcome) -> Vec<String> {
    let arn = &outcome.flow_definition_arn;
    let line = format!("flow_definition_arn = {}", toml::Value::String(arn.clone()));
    let mut out = vec![
        String::new(),
        format!("human task UI: {}", outcome.task_ui_arn),
        format!("flow definition: {arn}"),
        String::new(),
    ];
    let current = &config.a2i.flow_definition_arn;
    if current == arn {
        out.push(format!("the config's [a2i] has it already: {line}"));
    } else {
        if !current.is_empty() {
            out.push(format!(
                "the config's [a2i] names another flow definition ({current}); replace that line."
            ));
        }
        out.push("put this line in the [a2i] table of the relay's config:".to_owned());
        out.push(line);
    }
    out
}
