//! The AWS provisioning files in `deploy/aws/` against what the code calls.
//!
//! Each policy is parsed, and every AWS operation the relay's code makes is found in
//! its source (the SDK clients' fluent calls, `.client.put_object()`, and the signed
//! JSON/REST calls, `.call("CreateJob", ...)`), mapped to its IAM action and to the
//! resource it touches with the default configuration, and checked against the
//! policy: a new call the policy does not allow fails here, and so does an action the
//! policy grants that no code calls any more (least privilege). The device's IoT
//! policy is checked with the topics the agent really uses (`protocol::Topics`,
//! `protocol::jobs::JobsTopics`): its own allowed, another thing's refused.
//!
//! IAM matching: `*` matches any run of characters and `?` one (IAM JSON policy
//! reference, "Resource" and "Action" elements); in IoT policies MQTT's `+`/`#` are
//! plain characters of a `topicfilter` resource (AWS IoT Core developer guide,
//! "Publish/Subscribe policy examples").

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use protocol::jobs::JobsTopics;
use protocol::{DeviceId, Topics};
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/aws")
}

fn policy(name: &str) -> Value {
    let path = deploy().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
        other => panic!("not a string or list: {other}"),
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The Allow statements of a policy as (actions, resources), with `${var}` replaced.
fn statements(doc: &Value, vars: &[(&str, &str)]) -> Vec<(Vec<String>, Vec<String>)> {
    assert_eq!(doc["Version"], "2012-10-17");
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["Effect"], "Allow", "{s}");
            let resources = list(&s["Resource"])
                .into_iter()
                .map(|r| vars.iter().fold(r, |r, (k, v)| r.replace(k, v)))
                .collect();
            (list(&s["Action"]), resources)
        })
        .collect()
}

fn allows(statements: &[(Vec<String>, Vec<String>)], action: &str, resource: &str) -> bool {
    statements.iter().any(|(actions, resources)| {
        actions.iter().any(|a| glob(a, action)) && resources.iter().any(|r| glob(r, resource))
    })
}

/// Every `.rs` file of the relay's production code.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let name = p.file_name().unwrap().to_str().unwrap();
            if !name.contains("tests") && name != "testing.rs" {
                out.push(p);
            }
        }
    }
}

/// The identifiers `text` has right after each `marker`, up to the first `end` char.
fn after(text: &str, marker: &str, end: char) -> Vec<String> {
    text.match_indices(marker)
        .filter_map(|(i, _)| {
            let rest = &text[i + marker.len()..];
            let id: String = rest.chars().take_while(|&c| c != end).collect();
            (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .then_some(id)
        })
        .collect()
}

/// `put_object` -> `PutObject`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| {
                f.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect()
}

/// The IAM action of each AWS operation the relay's code makes.
fn called_actions() -> BTreeSet<String> {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut actions = BTreeSet::new();
    for f in files {
        let text: String = std::fs::read_to_string(&f)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("");
        let path = f.to_string_lossy().into_owned();
        // SDK fluent calls on a client, `.client.op()`, `.client().op()` or `sqs.op()`, in the
        // files that use an AWS SDK (elsewhere `client` is the MQTT client).
        let sdk_ops: Vec<String> = if text.contains("aws_sdk_") {
            after(&text, ".client.", '(')
                .into_iter()
                .chain(after(&text, ".client().", '('))
                .chain(after(&text, "sqs.", '('))
                .collect()
        } else {
            Vec::new()
        };
        for op in sdk_ops {
            let action = match op.as_str() {
                // S3's actions for these operations (Amazon S3 API reference, each
                // operation's "Permissions" section).
                "head_object" => "s3:GetObject".to_owned(),
                "head_bucket" | "list_objects_v2" => "s3:ListBucket".to_owned(),
                "put_object" | "get_object" | "delete_object" => format!("s3:{}", pascal(&op)),
                // The A2I runtime's operations are authorized as `sagemaker:<Operation>`.
                "start_human_loop" | "describe_human_loop" | "list_human_loops"
                | "stop_human_loop" | "delete_human_loop" => format!("sagemaker:{}", pascal(&op)),
                // SQS's actions are named after its operations.
                "get_queue_url" | "get_queue_attributes" | "receive_message" | "delete_message"
                | "change_message_visibility" | "create_queue" => format!("sqs:{}", pascal(&op)),
                other => panic!("{path} calls {other}: map it to its IAM action here and allow it in deploy/aws"),
            };
            actions.insert(action);
        }
        // Signed calls named by their operation.
        for op in after(&text, ".call(\"", '"')
            .into_iter()
            .chain(after(&text, "self.call(\"", '"'))
        {
            let service = if path.contains("sagemaker_control") {
                "sagemaker"
            } else if path.contains("fleet") {
                "iot"
            } else if path.ends_with("eventbridge.rs") {
                "events"
            } else {
                panic!("{path} makes a signed call {op}: say which service it goes to here")
            };
            actions.insert(format!("{service}:{op}"));
        }
    }
    actions
}

/// The resource each action touches with the default configuration (bucket
/// `BUCKET`, default prefixes, flow definition `FLOW_DEFINITION_NAME`).
fn resources_of(action: &str) -> Vec<&'static str> {
    match action {
        "s3:PutObject" => vec![
            "arn:aws:s3:::BUCKET/events/dev-1/2024/05/01/e1.jpg",
            "arn:aws:s3:::BUCKET/manifest/rows/e1.json",
            "arn:aws:s3:::BUCKET/staging/e1/a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2/000000",
            "arn:aws:s3:::BUCKET/models/dogs-1.1.0.tar",
        ],
        // The relay deletes a set's staged chunks and corrects an event index entry
        // (relay/event_handler.rs clean_staging, event_store.rs undo_claim): nothing else.
        "s3:DeleteObject" => vec![
            "arn:aws:s3:::BUCKET/staging/e1/a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2/000000",
            "arn:aws:s3:::BUCKET/manifest/events/e1.json",
        ],
        "s3:GetObject" => vec![
            "arn:aws:s3:::BUCKET/events/dev-1/2024/05/01/e1.json",
            "arn:aws:s3:::BUCKET/manifest/rows/e1.json",
            "arn:aws:s3:::BUCKET/staging/e1/a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2a1b2/000000",
            "arn:aws:s3:::BUCKET/models/dogs-1.1.0.tar",
            "arn:aws:s3:::BUCKET/a2i-output/edge-a2i-dogs/2024/05/01/12/00/00/l1/output.json",
        ],
        "s3:ListBucket" => vec!["arn:aws:s3:::BUCKET"],
        "sagemaker:StartHumanLoop" => vec![
            "arn:aws:sagemaker:REGION:ACCOUNT_ID:flow-definition/FLOW_DEFINITION_NAME",
            "arn:aws:sagemaker:REGION:ACCOUNT_ID:human-loop/l1",
        ],
        "sagemaker:DescribeHumanLoop" => vec!["arn:aws:sagemaker:REGION:ACCOUNT_ID:human-loop/l1"],
        "sagemaker:ListHumanLoops" => vec!["*"],
        "sagemaker:CreateFlowDefinition" | "sagemaker:DescribeFlowDefinition" => {
            vec!["arn:aws:sagemaker:REGION:ACCOUNT_ID:flow-definition/FLOW_DEFINITION_NAME"]
        }
        "sagemaker:CreateHumanTaskUi" | "sagemaker:DescribeHumanTaskUi" => {
            vec!["arn:aws:sagemaker:REGION:ACCOUNT_ID:human-task-ui/FLOW_DEFINITION_NAME"]
        }
        "iot:CreateJob" => vec![
            "arn:aws:iot:REGION:ACCOUNT_ID:job/dogs-1-1-0",
            "arn:aws:iot:REGION:ACCOUNT_ID:thing/dev-1",
            "arn:aws:iot:REGION:ACCOUNT_ID:thinggroup/all",
        ],
        "iot:DescribeJob" | "iot:ListJobExecutionsForJob" => {
            vec!["arn:aws:iot:REGION:ACCOUNT_ID:job/dogs-1-1-0"]
        }
        a if a.starts_with("sqs:") => vec![
            "arn:aws:sqs:REGION:ACCOUNT_ID:edge-a2i-completions",
            "arn:aws:sqs:REGION:ACCOUNT_ID:edge-a2i-completions-dlq",
        ],
        a if a.starts_with("events:") => {
            vec!["arn:aws:events:REGION:ACCOUNT_ID:rule/edge-a2i-completions"]
        }
        other => panic!("the code calls {other}: say here which resources it touches"),
    }
}

#[test]
fn the_relays_iam_policy_allows_every_call_the_code_makes_and_nothing_else() {
    let actions = called_actions();
    assert!(
        actions.contains("s3:PutObject") && actions.contains("sagemaker:StartHumanLoop"),
        "{actions:?}"
    );
    let st = statements(&policy("relay-iam-policy.json"), &[]);
    for action in &actions {
        for resource in resources_of(action) {
            assert!(
                allows(&st, action, resource),
                "relay-iam-policy.json does not allow {action} on {resource}"
            );
        }
    }
    // Least privilege: each granted action is one the code calls (iam:PassRole goes
    // with CreateFlowDefinition, whose RoleArn A2I assumes).
    for (granted, resources) in &st {
        for a in granted {
            assert!(!a.contains('*'), "wildcard action {a}");
            assert!(
                actions.contains(a)
                    || (a == "iam:PassRole" && actions.contains("sagemaker:CreateFlowDefinition")),
                "relay-iam-policy.json grants {a}, which no code calls"
            );
            if a != "sagemaker:ListHumanLoops" {
                assert!(
                    !resources.contains(&"*".to_owned()),
                    "{a} on every resource"
                );
            }
        }
    }
    // Stored frames, manifest rows and model packages are never deleted.
    for kept in [
        "arn:aws:s3:::BUCKET/events/dev-1/2024/05/01/e1.jpg",
        "arn:aws:s3:::BUCKET/manifest/rows/e1.json",
        "arn:aws:s3:::BUCKET/models/dogs-1.1.0.tar",
    ] {
        assert!(!allows(&st, "s3:DeleteObject", kept), "may delete {kept}");
    }
    // Nothing outside the relay's prefixes.
    assert!(!allows(
        &st,
        "s3:PutObject",
        "arn:aws:s3:::BUCKET/a2i-output/x/output.json"
    ));
    assert!(!allows(
        &st,
        "s3:GetObject",
        "arn:aws:s3:::OTHER-BUCKET/events/x.jpg"
    ));
    assert!(!allows(
        &st,
        "sagemaker:StartHumanLoop",
        "arn:aws:sagemaker:REGION:ACCOUNT_ID:flow-definition/other"
    ));
}

#[test]
fn the_a2i_role_reads_the_frames_and_writes_only_the_answers() {
    let st = statements(&policy("a2i-role-policy.json"), &[]);
    assert!(allows(
        &st,
        "s3:GetObject",
        "arn:aws:s3:::BUCKET/events/dev-1/2024/05/01/e1.jpg"
    ));
    assert!(allows(
        &st,
        "s3:PutObject",
        "arn:aws:s3:::BUCKET/a2i-output/f/2024/05/01/12/00/00/l1/output.json"
    ));
    assert!(!allows(
        &st,
        "s3:PutObject",
        "arn:aws:s3:::BUCKET/events/dev-1/x.jpg"
    ));
    assert!(!allows(
        &st,
        "s3:GetObject",
        "arn:aws:s3:::BUCKET/manifest/rows/e1.json"
    ));
    let trust = policy("a2i-role-trust-policy.json");
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "sagemaker.amazonaws.com"
    );
    // The confused-deputy guard: only SageMaker acting for this account.
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"],
        "ACCOUNT_ID"
    );
    // The worker portal reads the frames from the browser: GET only.
    let cors = policy("s3-cors.json");
    assert_eq!(
        cors["CORSRules"][0]["AllowedMethods"],
        serde_json::json!(["GET"])
    );
    // Chunks of split events are staged; the lifecycle rule cleans up after a relay
    // that died before it could.
    let lc = policy("s3-lifecycle.json");
    assert_eq!(lc["Rules"][0]["Filter"]["Prefix"], "staging/");
    assert_eq!(lc["Rules"][0]["Status"], "Enabled");
}

#[test]
fn a_device_may_use_only_its_own_topics_and_connect_only_as_its_own_thing() {
    let st = statements(
        &policy("device-iot-policy.json"),
        &[
            ("${iot:Connection.Thing.ThingName}", "dev-1"),
            ("REGION", "r"),
            ("ACCOUNT_ID", "1"),
        ],
    );
    let arn = |kind: &str, name: &str| format!("arn:aws:iot:r:1:{kind}/{name}");
    let topics = Topics::default();
    let jobs = |thing: &str| JobsTopics::new(thing).unwrap();
    for (thing, own) in [("dev-1", true), ("dev-2", false)] {
        let device = DeviceId::new(thing).unwrap();
        let check = |action: &str, kind: &str, name: String| {
            assert_eq!(
                allows(&st, action, &arn(kind, &name)),
                own,
                "{action} {kind}/{name} as dev-1"
            );
        };
        check("iot:Connect", "client", thing.to_owned());
        check("iot:Publish", "topic", topics.events(&device));
        check("iot:Publish", "topic", topics.status(&device));
        // The status (and its Last Will) is published retained (daemon/mqtt.rs): IoT
        // Core refuses a retained message without iot:RetainPublish as well.
        check("iot:RetainPublish", "topic", topics.status(&device));
        check("iot:Publish", "topic", jobs(thing).start_next());
        check("iot:Publish", "topic", jobs(thing).update("job-1"));
        check("iot:Subscribe", "topicfilter", topics.receipts(&device));
        for filter in [
            jobs(thing).notify_next(),
            jobs(thing).start_next_accepted(),
            jobs(thing).start_next_rejected(),
            jobs(thing).update_accepted_all(),
            jobs(thing).update_rejected_all(),
        ] {
            check("iot:Subscribe", "topicfilter", filter);
        }
        check("iot:Receive", "topic", topics.receipts(&device));
        check("iot:Receive", "topic", jobs(thing).start_next_accepted());
        check(
            "iot:Receive",
            "topic",
            format!("{}/accepted", jobs(thing).update("job-1")),
        );
    }
    let me = DeviceId::new("dev-1").unwrap();
    // Only the status is retained; the agent does not subscribe to `reviews`.
    assert!(!allows(
        &st,
        "iot:RetainPublish",
        &arn("topic", &topics.events(&me))
    ));
    assert!(!allows(
        &st,
        "iot:Subscribe",
        &arn("topicfilter", &topics.reviews(&me))
    ));
    // Not the relay's side of its own topics, and no wildcard subscriptions.
    assert!(!allows(
        &st,
        "iot:Publish",
        &arn("topic", &topics.receipts(&me))
    ));
    assert!(!allows(
        &st,
        "iot:Subscribe",
        &arn("topicfilter", &topics.events_filter())
    ));
    assert!(!allows(
        &st,
        "iot:Receive",
        &arn("topic", &topics.events(&me))
    ));
}

#[test]
fn the_relays_iot_policy_covers_its_subscriptions_and_publishes() {
    let st = statements(
        &policy("relay-iot-policy.json"),
        &[("REGION", "r"), ("ACCOUNT_ID", "1")],
    );
    let arn = |kind: &str, name: &str| format!("arn:aws:iot:r:1:{kind}/{name}");
    let topics = Topics::default();
    let dev = DeviceId::new("dev-7").unwrap();
    assert!(allows(&st, "iot:Connect", &arn("client", "cloud-relay-1")));
    assert!(allows(
        &st,
        "iot:Connect",
        &arn("client", "cloud-relay-1-fleet-status")
    ));
    assert!(!allows(&st, "iot:Connect", &arn("client", "dev-7")));
    for filter in [
        topics.events_filter(),
        topics.shared_events_filter("cloud-relay").unwrap(),
        topics.filter(protocol::TopicKind::Status),
    ] {
        assert!(
            allows(&st, "iot:Subscribe", &arn("topicfilter", &filter)),
            "{filter}"
        );
    }
    assert!(allows(
        &st,
        "iot:Receive",
        &arn("topic", &topics.events(&dev))
    ));
    assert!(allows(
        &st,
        "iot:Receive",
        &arn("topic", &topics.status(&dev))
    ));
    assert!(allows(
        &st,
        "iot:Publish",
        &arn("topic", &topics.receipts(&dev))
    ));
    assert!(allows(
        &st,
        "iot:Publish",
        &arn("topic", &topics.reviews(&dev))
    ));
    assert!(!allows(
        &st,
        "iot:Publish",
        &arn("topic", &topics.events(&dev))
    ));
}

#[test]
fn the_wildcard_matcher_reads_iam_patterns() {
    assert!(glob(
        "arn:aws:s3:::b/events/*",
        "arn:aws:s3:::b/events/d/1.jpg"
    ));
    assert!(!glob(
        "arn:aws:s3:::b/events/*",
        "arn:aws:s3:::b/manifest/1.json"
    ));
    assert!(glob("s3:Get*", "s3:GetObject"));
    assert!(glob("a?c", "abc") && !glob("a?c", "ac"));
    assert!(glob("*", ""));
}
