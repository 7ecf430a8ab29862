//! `cloud-relay fleet`: a fleet admin's commands for model rollouts.
//!
//! - `publish PACKAGE --devices a,b | --group G`: checks the package (format, and its
//!   signature when `--key` is given), puts it in the relay's bucket
//!   (`models/NAME-VERSION.tar`), presigns a GET URL, and creates an AWS IoT job whose
//!   document is the model-update document of [`protocol::jobs`], with a staged rate
//!   (`--rate-per-minute`, or `--base-rate-per-minute` growing by
//!   `--increment-factor` after `--increase-after-succeeded` devices) and an abort
//!   threshold (`--abort-failed-percent` once `--abort-min-executed` finished).
//! - `rollback PACKAGE ...`: the same for a package signed with `--rollback-of`
//!   (devices take it although it is older).
//! - `status [--job ID]`: every device's retained status (model version, backend, the
//!   last update's outcome) read from the broker, and the job's executions.
//!
//! The relay's config gives the bucket, region and broker; the Jobs endpoint is
//! AWS IoT's, or local mode's (`local-aws run` prints `jobs API: URL`).

pub mod jobs_api;
mod status;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use protocol::jobs::{
    ModelUpdateDocument, PackageLocation, MODEL_UPDATE_OPERATION, MODEL_UPDATE_VERSION,
};
use protocol::package::{self, TrustedKey};
use serde_json::{json, Value};

use crate::config::Config;
use crate::relay::s3::S3Store;
use jobs_api::JobsApi;

#[derive(Debug, clap::Subcommand)]
pub enum FleetCommand {
    /// Upload a signed model package and start a rollout (an IoT job) to devices.
    Publish(PublishArgs),
    /// Roll back: publish a package signed with `edge-agent model sign --rollback-of V`.
    Rollback(PublishArgs),
    /// Every device's model, backend and last update; a job's executions with --job.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// The relay's TOML config (bucket, region, broker).
    #[arg(
        long = "config",
        short = 'c',
        default_value = "/etc/cloud-relay/config.toml",
        env = "CLOUD_RELAY_CONFIG"
    )]
    pub config: PathBuf,
    /// The IoT control-plane endpoint (default: $AWS_ENDPOINT_URL_IOT, else AWS IoT's
    /// regional one); local mode prints its `jobs API` URL.
    #[arg(long, value_name = "URL")]
    pub jobs_endpoint_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The package (.tar); its signature is PACKAGE.minisig.
    pub package: PathBuf,
    #[command(flatten)]
    pub common: Common,
    /// Thing names (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', required_unless_present = "group")]
    pub devices: Vec<String>,
    /// A thing group (needs --account-id to form its ARN).
    #[arg(long, conflicts_with = "devices")]
    pub group: Option<String>,
    /// The AWS account id, for thing and thing-group ARNs (local mode takes names).
    #[arg(long)]
    pub account_id: Option<String>,
    /// A public key to check the signature with before anything is uploaded.
    #[arg(long = "key", value_name = "PUB")]
    pub keys: Vec<PathBuf>,
    /// The job id (default: model-NAME-VERSION-<unix seconds>).
    #[arg(long)]
    pub job_id: Option<String>,
    /// Key prefix of the package in the bucket.
    #[arg(long, default_value = "models/")]
    pub prefix: String,
    /// How long the presigned URL works.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub url_expires: Duration,
    /// Staged rollout: at most this many devices notified per minute.
    #[arg(long)]
    pub rate_per_minute: Option<u32>,
    /// Staged rollout that grows: the starting rate per minute...
    #[arg(
        long,
        conflicts_with = "rate_per_minute",
        requires = "increment_factor"
    )]
    pub base_rate_per_minute: Option<u32>,
    /// ...multiplied by this (1.1 to 5)...
    #[arg(long)]
    pub increment_factor: Option<f64>,
    /// ...each time this many more devices succeeded.
    #[arg(long, default_value_t = 1)]
    pub increase_after_succeeded: u32,
    /// Abort (cancel the rest) once this share of finished devices failed or refused.
    #[arg(long)]
    pub abort_failed_percent: Option<f64>,
    /// ...counted only once this many devices finished.
    #[arg(long, default_value_t = 1)]
    pub abort_min_executed: u32,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
    /// Also list this job's executions.
    #[arg(long)]
    pub job: Option<String>,
    /// How long to collect retained statuses from the broker.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub listen: Duration,
}

pub async fn run(command: FleetCommand) -> anyhow::Result<()> {
    match command {
        FleetCommand::Publish(args) => publish(args, false).await,
        FleetCommand::Rollback(args) => publish(args, true).await,
        FleetCommand::Status(args) => status::run(args).await,
    }
}

async fn publish(args: PublishArgs, rollback: bool) -> anyhow::Result<()> {
    let config = Config::load_for(&args.common.config, crate::config::Purpose::Fleet)?;
    let bytes = std::fs::read(&args.package)
        .with_context(|| format!("cannot read {}", args.package.display()))?;
    let sig_path = package::signature_path(&args.package);
    let signature = std::fs::read_to_string(&sig_path)
        .with_context(|| format!("cannot read the signature {}", sig_path.display()))?;
    let contents = package::parse(&bytes, u64::MAX)
        .with_context(|| format!("{} is not a model package", args.package.display()))?;
    let m = &contents.manifest;
    if !args.keys.is_empty() {
        let keys = args
            .keys
            .iter()
            .map(|p| {
                TrustedKey::parse(
                    &std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read {}", p.display()))?,
                )
                .with_context(|| p.display().to_string())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        package::verify(&bytes, &signature, &keys)?;
    }
    match (rollback, &m.rollback_of) {
        (true, None) => bail!(
            "{} {} is not a rollback package: sign the older model with `edge-agent model sign --rollback-of VERSION` (devices refuse an older version otherwise)",
            m.name, m.version
        ),
        (false, Some(v)) => bail!(
            "{} {} is a rollback of {v}: publish it with `cloud-relay fleet rollback`",
            m.name, m.version
        ),
        _ => {}
    }

    let store = S3Store::connect(&config.s3).await;
    let key = format!("{}{}-{}.tar", args.prefix, m.name, m.version);
    let sha256 = protocol::sha256_hex(&bytes);
    let size = bytes.len() as u64;
    store
        .put(&key, bytes, "application/x-tar", false)
        .await
        .map_err(|e| anyhow::anyhow!("cannot upload s3://{}/{key}: {e}", store.bucket()))?;
    let url = store
        .client()
        .get_object()
        .bucket(store.bucket())
        .key(&key)
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(args.url_expires)
                .context("--url-expires")?,
        )
        .await
        .context("cannot presign the package URL")?
        .uri()
        .to_string();
    let document = ModelUpdateDocument {
        operation: MODEL_UPDATE_OPERATION.into(),
        v: MODEL_UPDATE_VERSION,
        name: m.name.clone(),
        version: m.version.clone(),
        package: PackageLocation {
            url,
            size,
            sha256,
            signature,
        },
    };
    let region = config.s3.region.clone();
    let targets = targets(&args, &region)?;
    let job_id = args.job_id.clone().unwrap_or_else(|| {
        let secs = protocol::timestamp::now_ms() / 1000;
        format!("model-{}-{}-{secs}", m.name, m.version)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect()
    });
    let mut request = json!({
        "targets": targets,
        "document": serde_json::to_string(&document).expect("serializes"),
        "description": format!("edge-a2i model {} {}{}", m.name, m.version, if rollback { " (rollback)" } else { "" }),
        "targetSelection": "SNAPSHOT",
    });
    if let Some(rollout) = rollout_config(&args) {
        request["jobExecutionsRolloutConfig"] = rollout;
    }
    if let Some(p) = args.abort_failed_percent {
        request["abortConfig"] = json!({"criteriaList": [{
            "failureType": "ALL", "action": "CANCEL",
            "thresholdPercentage": p, "minNumberOfExecutedThings": args.abort_min_executed
        }]});
    }
    let api = JobsApi::connect(args.common.jobs_endpoint_url.clone(), &region).await?;
    api.create_job(&job_id, &request).await?;
    println!("package:  s3://{}/{key} ({size} bytes)", store.bucket());
    println!(
        "job:      {job_id} ({} targets) at {}",
        request["targets"].as_array().map_or(0, Vec::len),
        api.endpoint()
    );
    println!("follow:   cloud-relay fleet status --job {job_id}");
    Ok(())
}

fn targets(args: &PublishArgs, region: &str) -> anyhow::Result<Vec<String>> {
    let arn = |kind: &str, name: &str| -> anyhow::Result<String> {
        Ok(match &args.account_id {
            Some(account) => format!("arn:aws:iot:{region}:{account}:{kind}/{name}"),
            None if kind == "thing" => name.to_owned(),
            None => bail!("--group needs --account-id to form the thing group's ARN"),
        })
    };
    match &args.group {
        Some(group) => Ok(vec![arn("thinggroup", group)?]),
        None => args.devices.iter().map(|d| arn("thing", d)).collect(),
    }
}

fn rollout_config(args: &PublishArgs) -> Option<Value> {
    if let Some(n) = args.rate_per_minute {
        return Some(json!({"maximumPerMinute": n}));
    }
    let base = args.base_rate_per_minute?;
    Some(json!({"exponentialRate": {
        "baseRatePerMinute": base,
        "incrementFactor": args.increment_factor.unwrap_or(2.0),
        "rateIncreaseCriteria": {"numberOfSucceededThings": args.increase_after_succeeded}
    }}))
}
