//! The local review service driven by the real AWS SDK client
//! (`aws-sdk-sagemakera2iruntime`) over HTTP on 127.0.0.1:0, with nothing but an
//! endpoint URL override: what the relay does in local mode.
//!
//! The SageMaker control plane (task UIs, flow definitions) is exercised here with raw
//! JSON 1.1 requests, and with boto3's `sagemaker` client in tests/a2i_boto3:
//! `aws-sdk-sagemaker` took more than 7 minutes to compile on the 2-core build machine
//! (53 MB of generated code at the workspace's opt-level 3 for dependencies).

use std::net::SocketAddr;
use std::path::Path;

use aws_sdk_sagemakera2iruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sagemakera2iruntime::primitives::DateTime;
use aws_sdk_sagemakera2iruntime::types::{HumanLoopInput, HumanLoopStatus, SortOrder};
use local_aws::credentials::LocalSecrets;
use local_aws::review_service::{self, HumanAnswer, ReviewService, ReviewServiceConfig};
use local_aws::sigv4::Verifier;
use serde_json::{json, Value};
use test_support::InProcessServer;

const ROLE: &str = "arn:aws:iam::000000000000:role/a2i-local";
const WORKTEAM: &str = "arn:aws:sagemaker:us-east-1:000000000000:workteam/private-crowd/local";
const TEMPLATE: &str = r#"<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form><crowd-image-classifier name="annotatedResult" src="{{ task.input.taskObject | grant_read_access }}"
 header="Which breed?" categories="['beagle', 'pug']"></crowd-image-classifier></crowd-form>"#;

mod common;

/// Where the service listens and the key pair it made in its state directory.
#[derive(Clone)]
struct Endpoint {
    addr: SocketAddr,
    credentials: local_aws::credentials::Credentials,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// The service in this process, serving on a fresh loopback port.
struct Running {
    addr: Endpoint,
    service: ReviewService,
    server: InProcessServer<std::io::Error>,
}

async fn start_service(state_dir: &Path, output_dir: &Path) -> Running {
    let config = ReviewServiceConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: state_dir.to_owned(),
        output_dir: output_dir.to_owned(),
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
        max_in_progress_loops: 1000,
    };
    let service = config.open_service().unwrap();
    // As `local-aws review-service` does: the key pair kept in its state directory.
    let secrets = LocalSecrets::load_or_create(&state_dir.join("credentials")).unwrap();
    let verifier = Verifier::new(secrets.aws.clone(), "the test's");
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = InProcessServer::spawn({
        let service = service.clone();
        |shutdown| review_service::serve(listener, service, verifier, shutdown)
    });
    Running {
        addr: Endpoint {
            addr,
            credentials: secrets.aws,
        },
        service,
        server,
    }
}

impl Running {
    async fn stop(self) {
        self.server.stop().await;
    }
}

/// The SDK's client, signing with `credentials`.
fn a2i_signing_with(
    addr: &Endpoint,
    credentials: &local_aws::credentials::Credentials,
) -> aws_sdk_sagemakera2iruntime::Client {
    let conf = aws_sdk_sagemakera2iruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(daemon_support::sdk_http::client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key,
            None,
            None,
            "test",
        ))
        .endpoint_url(format!("http://{addr}"))
        .build();
    aws_sdk_sagemakera2iruntime::Client::from_conf(conf)
}

/// The SDK's client with the service's own key pair.
fn a2i(addr: &Endpoint) -> aws_sdk_sagemakera2iruntime::Client {
    a2i_signing_with(addr, &addr.credentials)
}

/// One SageMaker JSON 1.1 call (`X-Amz-Target: SageMaker.<op>`), signed as the SDKs
/// sign it: status, error type, body.
async fn sagemaker(addr: &Endpoint, op: &str, body: Value) -> (u16, Option<String>, Value) {
    let client = common::signed_client(&format!("http://{addr}"), "sagemaker", &addr.credentials);
    let target = format!("SageMaker.{op}");
    let (parts, bytes) = client
        .send(
            http::Method::POST,
            "/",
            &[
                ("x-amz-target", target.as_str()),
                ("content-type", "application/x-amz-json-1.1"),
            ],
            body.to_string().into_bytes(),
        )
        .await
        .unwrap();
    let error_type = parts
        .headers
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        parts.status.as_u16(),
        error_type,
        serde_json::from_slice(&bytes).unwrap(),
    )
}

/// Creates a task UI (once) and a flow definition writing to s3://review-bucket/a2i.
async fn create_flow(addr: &Endpoint, flow: &str) -> String {
    let (status, _, ui) = sagemaker(
        addr,
        "DescribeHumanTaskUi",
        json!({"HumanTaskUiName": "dog-breed-ui"}),
    )
    .await;
    let ui_arn = if status == 200 {
        ui["HumanTaskUiArn"].as_str().unwrap().to_owned()
    } else {
        let (status, _, ui) = sagemaker(
            addr,
            "CreateHumanTaskUi",
            json!({"HumanTaskUiName": "dog-breed-ui", "UiTemplate": {"Content": TEMPLATE}}),
        )
        .await;
        assert_eq!(status, 200, "{ui}");
        ui["HumanTaskUiArn"].as_str().unwrap().to_owned()
    };
    let (status, _, f) = sagemaker(
        addr,
        "CreateFlowDefinition",
        json!({
            "FlowDefinitionName": flow,
            "RoleArn": ROLE,
            "OutputConfig": {"S3OutputPath": "s3://review-bucket/a2i"},
            "HumanLoopConfig": {
                "WorkteamArn": WORKTEAM,
                "HumanTaskUiArn": ui_arn,
                "TaskTitle": "Dog breed",
                "TaskDescription": "Pick the breed",
                "TaskCount": 1,
            },
        }),
    )
    .await;
    assert_eq!(status, 200, "{f}");
    f["FlowDefinitionArn"].as_str().unwrap().to_owned()
}

fn input(label: &str) -> HumanLoopInput {
    let content = json!({"taskObject": "s3://frames/dev-1/e1.jpg", "initialValue": label});
    HumanLoopInput::builder()
        .input_content(content.to_string())
        .build()
}

async fn start_loop(
    client: &aws_sdk_sagemakera2iruntime::Client,
    flow_arn: &str,
    name: &str,
) -> String {
    client
        .start_human_loop()
        .human_loop_name(name)
        .flow_definition_arn(flow_arn)
        .human_loop_input(input("beagle"))
        .send()
        .await
        .unwrap()
        .human_loop_arn()
        .unwrap()
        .to_owned()
}

/// Every loop of a flow, page by page (`page` per call), as (name, creation time).
async fn list_all(
    client: &aws_sdk_sagemakera2iruntime::Client,
    flow_arn: &str,
    page: i32,
    order: SortOrder,
    after: Option<DateTime>,
    before: Option<DateTime>,
) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .list_human_loops()
            .flow_definition_arn(flow_arn)
            .max_results(page)
            .sort_order(order.clone())
            .set_creation_time_after(after)
            .set_creation_time_before(before)
            .set_next_token(token.take())
            .send()
            .await
            .unwrap();
        assert!(out.human_loop_summaries().len() <= page as usize);
        for s in out.human_loop_summaries() {
            assert_eq!(s.flow_definition_arn(), Some(flow_arn));
            names.push(s.human_loop_name().unwrap().to_owned());
        }
        match out.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return names,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_sdks_drive_the_local_review_service_and_state_survives_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let objects = tempfile::tempdir().unwrap();
    let running = start_service(state.path(), objects.path()).await;
    let addr = &running.addr.clone();
    let client = a2i(addr);

    // Control plane: task UI and flow definitions, as the real service answers.
    let flow_arn = create_flow(addr, "dog-review").await;
    assert_eq!(
        flow_arn,
        "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/dog-review"
    );
    let other_flow = create_flow(addr, "paging-flow").await;
    let (status, _, flow) = sagemaker(
        addr,
        "DescribeFlowDefinition",
        json!({"FlowDefinitionName": "dog-review"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(flow["FlowDefinitionStatus"], "Active");
    assert_eq!(
        flow["OutputConfig"]["S3OutputPath"],
        "s3://review-bucket/a2i"
    );
    assert_eq!(flow["RoleArn"], ROLE);
    assert_eq!(flow["HumanLoopConfig"]["TaskCount"], 1);
    assert!(
        flow["CreationTime"].is_f64(),
        "JSON 1.1 timestamps are epoch seconds"
    );
    let (_, _, ui) = sagemaker(
        addr,
        "DescribeHumanTaskUi",
        json!({"HumanTaskUiName": "dog-breed-ui"}),
    )
    .await;
    assert_eq!(ui["HumanTaskUiStatus"], "Active");
    assert_eq!(
        ui["UiTemplate"]["ContentSha256"].as_str().unwrap().len(),
        64
    );
    let dup = json!({"FlowDefinitionName": "dog-review", "RoleArn": ROLE, "OutputConfig": {"S3OutputPath": "s3://x"}});
    let (status, error, body) = sagemaker(addr, "CreateFlowDefinition", dup).await;
    assert_eq!(
        (status, error.as_deref()),
        (400, Some("ResourceInUse")),
        "{body}"
    );
    assert_eq!(body["__type"], "ResourceInUse");
    let (status, error, _) = sagemaker(
        addr,
        "DescribeFlowDefinition",
        json!({"FlowDefinitionName": "no-such-flow"}),
    )
    .await;
    assert_eq!((status, error.as_deref()), (400, Some("ResourceNotFound")));
    let (status, error, _) = sagemaker(
        addr,
        "DescribeHumanTaskUi",
        json!({"HumanTaskUiName": "no-such-ui"}),
    )
    .await;
    assert_eq!((status, error.as_deref()), (400, Some("ResourceNotFound")));

    // Start, and start again: ConflictException means "already started".
    let loop_arn = start_loop(&client, &flow_arn, "event-0001").await;
    assert_eq!(
        loop_arn,
        "arn:aws:sagemaker:us-east-1:000000000000:human-loop/event-0001"
    );
    let again = client
        .start_human_loop()
        .human_loop_name("event-0001")
        .flow_definition_arn(&flow_arn)
        .human_loop_input(input("pug"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(again.is_conflict_exception(), "{again:?}");

    let d = client
        .describe_human_loop()
        .human_loop_name("event-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(d.human_loop_status(), Some(&HumanLoopStatus::InProgress));
    assert_eq!(d.human_loop_name(), Some("event-0001"));
    assert_eq!(d.human_loop_arn(), Some(loop_arn.as_str()));
    assert_eq!(d.flow_definition_arn(), Some(flow_arn.as_str()));
    assert!(d.human_loop_output().is_none());

    // Invalid names and unknown loops.
    let bad = client
        .start_human_loop()
        .human_loop_name("Not_Valid")
        .flow_definition_arn(&flow_arn)
        .human_loop_input(input("pug"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(bad.is_validation_exception(), "{bad:?}");
    let unknown_flow = client
        .start_human_loop()
        .human_loop_name("event-0002")
        .flow_definition_arn("arn:aws:sagemaker:us-east-1:000000000000:flow-definition/nope")
        .human_loop_input(input("pug"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(unknown_flow.is_validation_exception(), "{unknown_flow:?}");
    let missing = client
        .describe_human_loop()
        .human_loop_name("never-started")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(missing.is_resource_not_found_exception(), "{missing:?}");
    // "stop" is a valid loop name even though POST /human-loops/stop is StopHumanLoop.
    let missing = client
        .describe_human_loop()
        .human_loop_name("stop")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(missing.is_resource_not_found_exception(), "{missing:?}");

    // Seven loops in another flow, listed three at a time.
    let mut created = Vec::new();
    for i in 0..7 {
        let name = format!("page-loop-{i}");
        start_loop(&client, &other_flow, &name).await;
        let d = client
            .describe_human_loop()
            .human_loop_name(&name)
            .send()
            .await
            .unwrap();
        created.push((name, *d.creation_time().unwrap()));
    }
    let asc = list_all(&client, &other_flow, 3, SortOrder::Ascending, None, None).await;
    let names: Vec<String> = created.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(asc, names);
    let mut desc = list_all(&client, &other_flow, 3, SortOrder::Descending, None, None).await;
    desc.reverse();
    assert_eq!(desc, names);
    let only_first_flow = list_all(&client, &flow_arn, 100, SortOrder::Ascending, None, None).await;
    assert_eq!(only_first_flow, ["event-0001"]);

    // Creation-time filters are strict bounds; the expectation comes from Describe.
    let (after, before) = (created[1].1, created[5].1);
    let expected: Vec<String> = created
        .iter()
        .filter(|(_, t)| t.as_nanos() > after.as_nanos() && t.as_nanos() < before.as_nanos())
        .map(|(n, _)| n.clone())
        .collect();
    let between = list_all(
        &client,
        &other_flow,
        3,
        SortOrder::Ascending,
        Some(after),
        Some(before),
    )
    .await;
    assert_eq!(between, expected);
    let future = DateTime::from_secs(created[6].1.secs() + 3600);
    assert!(list_all(
        &client,
        &other_flow,
        3,
        SortOrder::Ascending,
        Some(future),
        None
    )
    .await
    .is_empty());
    let past = DateTime::from_secs(created[0].1.secs() - 3600);
    assert!(list_all(
        &client,
        &other_flow,
        3,
        SortOrder::Ascending,
        None,
        Some(past)
    )
    .await
    .is_empty());
    let too_many = client
        .list_human_loops()
        .flow_definition_arn(&other_flow)
        .max_results(101)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(too_many.is_validation_exception(), "{too_many:?}");

    // Delete needs a stopped loop; stop, delete, gone.
    let in_progress = client
        .delete_human_loop()
        .human_loop_name("page-loop-0")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(in_progress.is_validation_exception(), "{in_progress:?}");
    client
        .stop_human_loop()
        .human_loop_name("page-loop-0")
        .send()
        .await
        .unwrap();
    let d = client
        .describe_human_loop()
        .human_loop_name("page-loop-0")
        .send()
        .await
        .unwrap();
    assert_eq!(d.human_loop_status(), Some(&HumanLoopStatus::Stopped));
    client
        .delete_human_loop()
        .human_loop_name("page-loop-0")
        .send()
        .await
        .unwrap();
    let gone = client
        .describe_human_loop()
        .human_loop_name("page-loop-0")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(gone.is_resource_not_found_exception(), "{gone:?}");
    let stop_unknown = client
        .stop_human_loop()
        .human_loop_name("page-loop-0")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        stop_unknown.is_resource_not_found_exception(),
        "{stop_unknown:?}"
    );

    // A flow definition with loops in progress is in use.
    let (status, error, _) = sagemaker(
        addr,
        "DeleteFlowDefinition",
        json!({"FlowDefinitionName": "dog-review"}),
    )
    .await;
    assert_eq!((status, error.as_deref()), (400, Some("ResourceInUse")));

    // The reviewer page completes a loop: output.json lands where A2I puts it.
    let t = protocol::timestamp::now_ms() as i64;
    let answer = HumanAnswer::classification(
        "annotatedResult",
        "pug",
        "local-reviewer",
        t - 1500,
        t,
        None,
    );
    let uri = running
        .service
        .complete_loop("event-0001", vec![answer])
        .await
        .unwrap();
    let d = client
        .describe_human_loop()
        .human_loop_name("event-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(d.human_loop_status(), Some(&HumanLoopStatus::Completed));
    assert_eq!(
        d.human_loop_output().unwrap().output_s3_uri(),
        Some(uri.as_str())
    );
    let key = uri.strip_prefix("s3://review-bucket/").unwrap();
    assert!(key.starts_with("a2i/dog-review/"), "{key}");
    assert!(key.ends_with("/event-0001/output.json"), "{key}");
    assert_eq!(
        key.split('/').count(),
        10,
        "a2i/<flow>/YYYY/MM/DD/hh/mm/ss/<loop>/output.json: {key}"
    );
    let written: serde_json::Value = serde_json::from_slice(
        &std::fs::read(objects.path().join("review-bucket").join(key)).unwrap(),
    )
    .unwrap();
    assert_eq!(written["humanLoopName"], "event-0001");
    assert_eq!(written["flowDefinitionArn"], flow_arn);
    assert_eq!(written["inputContent"]["initialValue"], "beagle");
    assert_eq!(
        written["humanAnswers"][0]["answerContent"]["annotatedResult"]["label"],
        "pug"
    );

    // Restart on the same state directory: everything is still there.
    running.stop().await;
    let running = start_service(state.path(), objects.path()).await;
    let client = a2i(&running.addr);
    let d = client
        .describe_human_loop()
        .human_loop_name("event-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(d.human_loop_status(), Some(&HumanLoopStatus::Completed));
    assert_eq!(
        d.human_loop_output().unwrap().output_s3_uri(),
        Some(uri.as_str())
    );
    let after_restart = list_all(&client, &other_flow, 3, SortOrder::Ascending, None, None).await;
    assert_eq!(after_restart, &names[1..]);
    let (status, _, _) = sagemaker(
        &running.addr,
        "DescribeFlowDefinition",
        json!({"FlowDefinitionName": "paging-flow"}),
    )
    .await;
    assert_eq!(status, 200);
    let dup = client
        .start_human_loop()
        .human_loop_name("page-loop-3")
        .flow_definition_arn(&other_flow)
        .human_loop_input(input("pug"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(dup.is_conflict_exception(), "{dup:?}");
    running.stop().await;
}
