//! `fleet status`: what every device says about itself in its retained status
//! (model version, backend, last update) — read from the broker with the relay's
//! settings under a client id of its own, so no state is kept anywhere else — and,
//! with `--job`, the job's executions as the Jobs service reports them.

use std::collections::BTreeMap;
use std::time::Duration;

use protocol::{Status, Topics};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};

use super::jobs_api::JobsApi;
use super::StatusArgs;
use crate::config::Config;

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let config = Config::load_for(&args.common.config, crate::config::Purpose::Fleet)?;
    let statuses = retained_statuses(&config, args.listen).await?;
    println!(
        "{:<24} {:<8} {:<26} {:<8} last update",
        "device", "state", "model", "backend"
    );
    for (device, s) in &statuses {
        let model = s
            .model
            .as_ref()
            .map(|m| format!("{} {}", m.name, m.version))
            .unwrap_or_else(|| "-".into());
        let update = s
            .update
            .as_ref()
            .map(|u| {
                format!(
                    "{} {} at {}{}",
                    u.version,
                    u.outcome,
                    u.step,
                    u.detail
                        .as_ref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "{device:<24} {:<8} {model:<26} {:<8} {update}",
            format!("{:?}", s.state).to_lowercase(),
            s.backend.as_deref().unwrap_or("-"),
        );
    }
    if statuses.is_empty() {
        println!("(no device status on the broker)");
    }
    if let Some(job) = &args.job {
        let api =
            JobsApi::connect(args.common.jobs_endpoint_url.clone(), &config.s3.region).await?;
        let described = api.describe_job(job).await?;
        let j = &described["job"];
        println!(
            "\njob {job}: {}{}",
            j["status"].as_str().unwrap_or("?"),
            j["comment"]
                .as_str()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        );
        for e in api.list_executions(job).await? {
            let thing = e["thingArn"].as_str().unwrap_or("?");
            let thing = thing.rsplit('/').next().unwrap_or(thing);
            let summary = &e["jobExecutionSummary"];
            let reason = summary["statusDetails"]["detailsMap"]["reason"]
                .as_str()
                .or_else(|| e["statusDetails"]["reason"].as_str())
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            println!(
                "  {thing:<24} {}{reason}",
                summary["status"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

/// The retained statuses under `{prefix}/+/status`: collected until `listen` has
/// passed since the subscription was acknowledged (the broker sends retained
/// messages right after SUBACK).
async fn retained_statuses(
    config: &Config,
    listen: Duration,
) -> anyhow::Result<BTreeMap<String, Status>> {
    let mut options = crate::relay::mqtt::options(config)?;
    options
        .set_client_id(format!("{}-fleet-status", config.mqtt.client_id))
        .set_clean_start(true)
        .set_session_expiry_interval(None)
        .set_manual_acks(false);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let topics = Topics::new(config.mqtt.topic_prefix.clone())?;
    let filter = topics.filter(protocol::TopicKind::Status);
    let mut out = BTreeMap::new();
    let mut until: Option<tokio::time::Instant> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15) + listen;
    loop {
        let wait = until.unwrap_or(deadline).min(deadline);
        let event = match tokio::time::timeout_at(wait, eventloop.poll()).await {
            Err(_) if until.is_some() => break,
            Err(_) => anyhow::bail!(
                "no subscription to {filter} acknowledged by {}:{} within 15 s",
                config.mqtt.host,
                config.mqtt.port
            ),
            Ok(e) => e,
        };
        match event.map_err(|e| crate::relay::mqtt::connect_error(config, &e))? {
            Event::Incoming(Packet::ConnAck(_)) => {
                client.subscribe(filter.clone(), QoS::AtLeastOnce).await?;
            }
            Event::Incoming(Packet::SubAck(_)) => {
                until = Some(tokio::time::Instant::now() + listen);
            }
            Event::Incoming(Packet::Publish(p)) => {
                if let Ok(s) = Status::from_json(&p.payload) {
                    out.insert(s.device_id.as_str().to_owned(), s);
                }
            }
            _ => {}
        }
    }
    let _ = client.disconnect().await;
    Ok(out)
}
