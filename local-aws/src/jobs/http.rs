//! The Jobs control API on loopback HTTP, in the request and response shapes of the
//! AWS IoT API Reference (REST-JSON, timestamps as epoch seconds):
//!
//! | method + path | operation |
//! |---|---|
//! | `PUT /jobs/{jobId}` | CreateJob: `targets`, `document`, `description`, `jobExecutionsRolloutConfig`, `abortConfig` |
//! | `GET /jobs` | ListJobs |
//! | `GET /jobs/{jobId}` | DescribeJob |
//! | `GET /jobs/{jobId}/things?status=&maxResults=&nextToken=` | ListJobExecutionsForJob |
//! | `PUT /jobs/{jobId}/cancel?force=` | CancelJob: `reasonCode`, `comment` |
//! | `GET /things/{thingName}/jobs/{jobId}` | DescribeJobExecution |
//!
//! Targets are thing ARNs (`arn:aws:iot:REGION:ACCOUNT:thing/NAME`) or plain thing
//! names; `document` is the job document as a JSON string (as IoT takes it) or as a
//! JSON object. Local additions: each summary of ListJobExecutionsForJob carries the
//! execution's `statusDetails` (IoT shows them only per execution), so one call shows
//! why devices FAILED or REJECTED; DescribeJob's `comment` says why an abort fired.
//!
//! Requests must be signed (SigV4) with local mode's key pair ([`crate::sigv4`]), as
//! IoT's API requires: `cloud-relay fleet` signs with the SDK's credentials chain, curl
//! with `--aws-sigv4 aws:amz:us-east-1:iot --user KEY:SECRET`. The
//! [`crate::http_guard`] in front of it refuses foreign `Host`s and `Origin`s.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::{AbortConfig, RolloutConfig};
use super::service::{now_ms, Jobs};
use super::state::{Execution, Job, JobsError, NewJob};
use crate::review_service::wire::{parse_body, ApiError};
use crate::sigv4::Verifier;

/// What ARNs are made of.
#[derive(Debug, Clone)]
pub struct ApiIdentity {
    pub region: String,
    pub account_id: String,
}

#[derive(Clone)]
struct Api {
    jobs: Jobs,
    id: ApiIdentity,
}

pub fn router(jobs: Jobs, id: ApiIdentity, verifier: std::sync::Arc<Verifier>) -> Router {
    Router::new()
        .route("/jobs", get(list_jobs))
        .route("/jobs/{job_id}", put(create_job).get(describe_job))
        .route("/jobs/{job_id}/things", get(list_executions))
        .route("/jobs/{job_id}/cancel", put(cancel_job))
        .route("/things/{thing}/jobs/{job_id}", get(describe_execution))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                "no such operation",
            )
        })
        .layer(middleware::from_fn_with_state(
            verifier,
            crate::sigv4::require_signature,
        ))
        .with_state(Api { jobs, id })
}

fn api_error(e: JobsError) -> ApiError {
    let (status, code) = match &e {
        JobsError::AlreadyExists(_) => (StatusCode::CONFLICT, "ResourceAlreadyExistsException"),
        JobsError::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
        JobsError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "InvalidRequestException"),
        JobsError::LimitExceeded(_) => (StatusCode::GONE, "LimitExceededException"),
    };
    ApiError::new(status, code, e.to_string())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "jobs control API failure");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalFailureException",
        e.to_string(),
    )
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequestException", m)
}

fn ok(body: Value) -> Response {
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl Api {
    fn job_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:iot:{}:{}:job/{id}",
            self.id.region, self.id.account_id
        )
    }
    fn thing_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:iot:{}:{}:thing/{name}",
            self.id.region, self.id.account_id
        )
    }
    /// A target as given: a thing ARN of this region and account, or a name.
    fn thing_name(&self, target: &str) -> Result<String, ApiError> {
        if let Some(rest) = target.strip_prefix("arn:") {
            let prefix = format!("aws:iot:{}:{}:thing/", self.id.region, self.id.account_id);
            return rest
                .strip_prefix(&prefix)
                .map(str::to_owned)
                .ok_or_else(|| {
                    invalid(format!(
                        "target {target:?} is not a thing ARN of arn:aws:iot:{}:{}",
                        self.id.region, self.id.account_id
                    ))
                });
        }
        Ok(target.to_owned())
    }
}

fn secs(ms: u64) -> u64 {
    ms / 1000
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    targets: Option<Vec<String>>,
    document: Option<Value>,
    document_source: Option<String>,
    description: Option<String>,
    target_selection: Option<String>,
    job_executions_rollout_config: Option<RolloutConfig>,
    abort_config: Option<AbortConfig>,
}

async fn create_job(
    State(api): State<Api>,
    Path(job_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: CreateBody = parse_body(&body).map_err(|e| invalid(e.message))?;
    if b.document_source.is_some() {
        return Err(invalid(
            "documentSource is not supported locally; give the document inline",
        ));
    }
    if b.target_selection
        .as_deref()
        .is_some_and(|t| t != "SNAPSHOT")
    {
        return Err(invalid(
            "only targetSelection SNAPSHOT is supported locally",
        ));
    }
    let document = match b.document {
        Some(Value::String(text)) => serde_json::from_str(&text)
            .map_err(|e| invalid(format!("document is not JSON: {e}")))?,
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(invalid("document must be a JSON string or object")),
        None => return Err(invalid("document is required")),
    };
    let targets = b
        .targets
        .ok_or_else(|| invalid("targets is required"))?
        .iter()
        .map(|t| api.thing_name(t))
        .collect::<Result<Vec<_>, _>>()?;
    let new = NewJob {
        job_id: job_id.clone(),
        description: b.description.clone(),
        document,
        targets,
        rollout: b.job_executions_rollout_config.unwrap_or_default(),
        abort: b.abort_config,
    };
    let now = now_ms();
    api.jobs
        .apply(move |s| {
            s.create_job(new, now)?;
            // The first targets are notified now, not at the next tick.
            s.tick(now);
            Ok::<_, JobsError>(())
        })
        .await
        .map_err(internal)?
        .map_err(api_error)?;
    let mut body = json!({"jobArn": api.job_arn(&job_id), "jobId": job_id});
    if let Some(d) = b.description {
        body["description"] = json!(d);
    }
    Ok(ok(body))
}

fn job_json(api: &Api, j: &Job) -> Value {
    use protocol::jobs::JobExecutionStatus as S;
    let mut v = json!({
        "jobArn": api.job_arn(&j.job_id),
        "jobId": j.job_id,
        "targetSelection": "SNAPSHOT",
        "status": j.status,
        "targets": j.targets.iter().map(|t| api.thing_arn(t)).collect::<Vec<_>>(),
        "forceCanceled": j.force_canceled,
        "createdAt": secs(j.created_at_ms),
        "lastUpdatedAt": secs(j.last_updated_at_ms),
        "jobExecutionsRolloutConfig": j.rollout,
        "jobProcessDetails": {
            "processingTargets": j.pending.iter().map(|t| api.thing_arn(t)).collect::<Vec<_>>(),
            "numberOfQueuedThings": j.count(S::Queued),
            "numberOfInProgressThings": j.count(S::InProgress),
            "numberOfSucceededThings": j.count(S::Succeeded),
            "numberOfFailedThings": j.count(S::Failed),
            "numberOfRejectedThings": j.count(S::Rejected),
            "numberOfCanceledThings": j.count(S::Canceled),
            "numberOfRemovedThings": j.count(S::Removed),
            "numberOfTimedOutThings": j.count(S::TimedOut),
        },
    });
    let optional = [
        ("description", j.description.clone().map(Value::from)),
        ("completedAt", j.completed_at_ms.map(|t| json!(secs(t)))),
        ("reasonCode", j.reason_code.clone().map(Value::from)),
        ("comment", j.comment.clone().map(Value::from)),
        ("abortConfig", j.abort.as_ref().map(|a| json!(a))),
    ];
    for (k, val) in optional {
        if let Some(val) = val {
            v[k] = val;
        }
    }
    v
}

async fn describe_job(
    State(api): State<Api>,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let job = api
        .jobs
        .read(|s| s.jobs.get(&job_id).map(|j| job_json(&api, j)))
        .ok_or_else(|| {
            api_error(JobsError::NotFound(format!(
                "job {job_id:?} does not exist"
            )))
        })?;
    Ok(ok(json!({ "job": job })))
}

async fn list_jobs(State(api): State<Api>) -> Response {
    let jobs: Vec<Value> = api.jobs.read(|s| {
        s.list_jobs()
            .into_iter()
            .map(|j| {
                let mut v = json!({
                    "jobArn": api.job_arn(&j.job_id),
                    "jobId": j.job_id,
                    "targetSelection": "SNAPSHOT",
                    "status": j.status,
                    "createdAt": secs(j.created_at_ms),
                    "lastUpdatedAt": secs(j.last_updated_at_ms),
                });
                if let Some(t) = j.completed_at_ms {
                    v["completedAt"] = json!(secs(t));
                }
                v
            })
            .collect()
    });
    ok(json!({ "jobs": jobs }))
}

fn execution_summary(e: &Execution) -> Value {
    let mut v = json!({
        "status": e.status,
        "queuedAt": secs(e.queued_at_ms),
        "lastUpdatedAt": secs(e.last_updated_at_ms),
        "executionNumber": e.execution_number,
        "retryAttempt": 0,
    });
    if let Some(t) = e.started_at_ms {
        v["startedAt"] = json!(secs(t));
    }
    if !e.status_details.is_empty() {
        v["statusDetails"] = json!(e.status_details);
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    status: Option<String>,
    max_results: Option<usize>,
    next_token: Option<String>,
}

async fn list_executions(
    State(api): State<Api>,
    Path(job_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let max = q.max_results.unwrap_or(250);
    if !(1..=250).contains(&max) {
        return Err(invalid("maxResults must be 1 to 250"));
    }
    let start: usize = match &q.next_token {
        Some(t) => t.parse().map_err(|_| invalid("nextToken is not valid"))?,
        None => 0,
    };
    let status = match &q.status {
        Some(s) => Some(
            serde_json::from_value::<protocol::jobs::JobExecutionStatus>(json!(s))
                .map_err(|_| invalid(format!("status {s:?} is not a job execution status")))?,
        ),
        None => None,
    };
    let rows = api.jobs.read(|s| {
        s.jobs.get(&job_id).map(|j| {
            j.executions
                .iter()
                .filter(|(_, e)| status.is_none_or(|st| e.status == st))
                .map(|(thing, e)| {
                    json!({"thingArn": api.thing_arn(thing), "jobExecutionSummary": execution_summary(e)})
                })
                .collect::<Vec<_>>()
        })
    });
    let rows = rows.ok_or_else(|| {
        api_error(JobsError::NotFound(format!(
            "job {job_id:?} does not exist"
        )))
    })?;
    let page: Vec<Value> = rows.iter().skip(start).take(max).cloned().collect();
    let mut body = json!({ "executionSummaries": page });
    if start + max < rows.len() {
        body["nextToken"] = json!((start + max).to_string());
    }
    Ok(ok(body))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelBody {
    reason_code: Option<String>,
    comment: Option<String>,
}

#[derive(Deserialize)]
struct CancelQuery {
    force: Option<bool>,
}

async fn cancel_job(
    State(api): State<Api>,
    Path(job_id): Path<String>,
    Query(q): Query<CancelQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: CancelBody = parse_body(&body).map_err(|e| invalid(e.message))?;
    let force = q.force.unwrap_or(false);
    let now = now_ms();
    let id = job_id.clone();
    let description = api
        .jobs
        .apply(move |s| {
            s.cancel_job(&id, force, b.reason_code, b.comment, now)?;
            Ok::<_, JobsError>(s.jobs[&id].description.clone())
        })
        .await
        .map_err(internal)?
        .map_err(api_error)?;
    let mut body = json!({"jobArn": api.job_arn(&job_id), "jobId": job_id});
    if let Some(d) = description {
        body["description"] = json!(d);
    }
    Ok(ok(body))
}

async fn describe_execution(
    State(api): State<Api>,
    Path((thing, job_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let found = api.jobs.read(|s| {
        let j = s.jobs.get(&job_id)?;
        let e = j.executions.get(&thing)?;
        let mut v = execution_summary(e);
        v["jobId"] = json!(job_id);
        v["thingArn"] = json!(api.thing_arn(&thing));
        v["versionNumber"] = json!(e.version_number);
        v["forceCanceled"] = json!(j.force_canceled);
        v["statusDetails"] = json!({ "detailsMap": e.status_details });
        Some(v)
    });
    let execution = found.ok_or_else(|| {
        api_error(JobsError::NotFound(format!(
            "no execution of job {job_id:?} for thing {thing:?}"
        )))
    })?;
    Ok(ok(json!({ "execution": execution })))
}
