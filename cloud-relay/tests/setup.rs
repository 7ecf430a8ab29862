//! `cloud-relay setup` against the real `local-aws review-service` process (the
//! SageMaker control-plane subset, JSON 1.1, signed requests): the first run creates
//! the task UI and the flow definition and prints their ARNs, a second run creates
//! nothing and prints the same ARNs, the task UI's template offers every label and
//! "none of these", and a flow definition that exists with another task UI is
//! reported, not changed. Then the relay's start-up check: a flow definition that does
//! not exist stops `cloud-relay run` with a clear error, one that does passes
//! `check-config --online`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use cloud_relay::aws_http::SignedClient;
use cloud_relay::sagemaker_control::SageMakerControl;
use cloud_relay::setup::template::escape;
use test_support::{create_bucket, s3_client, spawn_with_log, wait_for, ChildGuard, MotoS3};

const LABELS: [&str; 3] = ["beagle", "say \"cheese\"", "<pug> & co"];
const ACCOUNT: &str = "000000000000";
/// Nothing listens here (setup does not use S3).
const NO_S3: &str = "http://127.0.0.1:1";

struct ReviewService {
    _child: ChildGuard,
    url: String,
    _dir: tempfile::TempDir,
}

/// `local-aws review-service` on a free loopback port, its credentials (made at its
/// start) kept in `config_dir/credentials`, where [`cloud_relay`] finds them.
fn start_review_service(config_dir: &Path) -> ReviewService {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("review-service.log");
    let child = spawn_with_log(
        Command::new(test_support::workspace_bin("local-aws"))
            .arg("review-service")
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--credentials")
            .arg(config_dir.join("credentials"))
            .arg("--output-dir")
            .arg(dir.path().join("objects"))
            .args(["--review-token", "t0k3n-for-the-setup-test-0123456789"]),
        &log,
    )
    .unwrap();
    let url = wait_for(
        Duration::from_secs(20),
        "the review service's address",
        || {
            let text = std::fs::read_to_string(&log).ok()?;
            let line = text.lines().find(|l| l.starts_with("listening on "))?;
            Some(line.trim_start_matches("listening on ").trim().to_owned())
        },
    );
    ReviewService {
        _child: child,
        url,
        _dir: dir,
    }
}

/// Where a test's relay config points: the review service, and S3 (only `run` and
/// `check-config --online` use it).
struct Endpoints<'a> {
    review: &'a str,
    s3: &'a str,
}

/// A relay config; `a2i_extra` goes into `[a2i]`, `setup_extra` into `[a2i.setup]`.
fn write_config(
    dir: &Path,
    name: &str,
    at: &Endpoints<'_>,
    a2i_extra: &str,
    setup_extra: &str,
) -> PathBuf {
    let labels: Vec<String> = LABELS
        .iter()
        .map(|l| toml::Value::String((*l).to_owned()).to_string())
        .collect();
    let text = format!(
        r#"[mqtt]
host = "127.0.0.1"
port = 1
client_id = "setup-test"

[s3]
bucket = "frames"
endpoint_url = "{s3}"

[a2i]
endpoint_url = "{review}"
sagemaker_endpoint_url = "{review}"
{a2i_extra}

[a2i.setup]
workteam_arn = "arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/reviewers"
role_arn = "arn:aws:iam::{ACCOUNT}:role/a2i"
{setup_extra}

[model]
labels = [{labels}]
"#,
        review = at.review,
        s3 = at.s3,
        labels = labels.join(", "),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `cloud-relay ARGS --config CONFIG`, signing with the review service's credentials
/// file beside CONFIG the way a user's shell would: `AWS_SHARED_CREDENTIALS_FILE`.
fn cloud_relay(args: &[&str], config: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cloud-relay"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            config.with_file_name("credentials"),
        )
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    eprintln!(
        "$ cloud-relay {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value after `prefix` on the line that starts with it.
fn line_value(text: &str, prefix: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
        .to_owned()
}

/// The review service's key pair (its credentials file in `config_dir`).
fn provider(config_dir: &Path) -> SharedCredentialsProvider {
    let path = config_dir.join("credentials");
    let c = local_aws::credentials::LocalSecrets::load(&path)
        .unwrap()
        .aws;
    SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        None,
        None,
        "test",
    ))
}

/// GET `url` signed (SigV4, service `sagemaker`): the body of its 200 response.
async fn signed_get(url: &str, credentials: SharedCredentialsProvider) -> String {
    let uri: ::http::Uri = url.parse().unwrap();
    let endpoint = format!("http://{}", uri.authority().unwrap());
    let client = SignedClient::new(&endpoint, "us-east-1", "sagemaker", Some(credentials)).unwrap();
    let (parts, body) = client
        .send(::http::Method::GET, uri.path(), &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(parts.status, 200, "{parts:?}");
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_creates_once_then_reuses_and_reports_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let service = start_review_service(dir.path());
    let at = Endpoints {
        review: &service.url,
        s3: NO_S3,
    };
    let config = write_config(
        dir.path(),
        "relay.toml",
        &at,
        "",
        "flow_definition_name = \"dogs\"",
    );

    // First run: both created, Active, ARNs and the config line printed.
    let first = cloud_relay(&["setup"], &config);
    assert!(first.status.success());
    let text = stdout(&first);
    assert!(text.contains("human task UI dogs: created"), "{text}");
    assert!(text.contains("flow definition dogs: created"), "{text}");
    assert!(text.contains("flow definition dogs: Active"), "{text}");
    let ui_arn = line_value(&text, "human task UI: ");
    let flow_arn = line_value(&text, "flow definition: ");
    assert_eq!(
        ui_arn,
        format!("arn:aws:sagemaker:us-east-1:{ACCOUNT}:human-task-ui/dogs")
    );
    assert_eq!(
        flow_arn,
        format!("arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/dogs")
    );
    assert!(
        text.contains(&format!("\nflow_definition_arn = \"{flow_arn}\"\n")),
        "{text}"
    );

    // Second run: nothing created, the same ARNs.
    let second = cloud_relay(&["setup"], &config);
    assert!(second.status.success());
    let text = stdout(&second);
    assert!(!text.contains("created"), "{text}");
    assert!(
        text.contains("human task UI dogs: exists, same template"),
        "{text}"
    );
    assert!(
        text.contains("flow definition dogs: exists, same settings"),
        "{text}"
    );
    assert_eq!(line_value(&text, "human task UI: "), ui_arn);
    assert_eq!(line_value(&text, "flow definition: "), flow_arn);

    // The stored template offers exactly the labels and "none of these", escaped,
    // under the answer field the results collector reads.
    let key = provider(dir.path());
    let client = SageMakerControl::new(&service.url, "us-east-1", Some(key.clone())).unwrap();
    let ui = client.describe_human_task_ui("dogs").await.unwrap();
    let template = signed_get(ui.ui_template.unwrap().url.as_deref().unwrap(), key).await;
    let mut categories: Vec<&str> = LABELS.to_vec();
    categories.push("none of these");
    let attribute = escape(&serde_json::to_string(&categories).unwrap());
    assert!(
        template.contains(&format!("categories=\"{attribute}\"")),
        "{template}"
    );
    assert!(template.contains("name=\"annotatedResult\""), "{template}");
    assert!(
        template.contains("say &quot;cheese&quot;") && template.contains("&lt;pug&gt; &amp; co")
    );
    assert!(template.contains("none of these"));

    // With the ARN in the config, setup says so instead of asking for it.
    let with_arn = write_config(
        dir.path(),
        "relay-with-arn.toml",
        &at,
        &format!("flow_definition_arn = \"{flow_arn}\""),
        "",
    );
    let text = stdout(&cloud_relay(&["setup"], &with_arn));
    assert!(text.contains("the config's [a2i] has it already"), "{text}");

    // A flow definition of that name with another task UI: reported, not changed.
    let other = write_config(
        dir.path(),
        "other.toml",
        &at,
        "",
        "flow_definition_name = \"dogs\"\ntask_ui_name = \"dogs-v2\"",
    );
    let out = cloud_relay(&["setup"], &other);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("human task UI dogs-v2: created"), "{text}");
    assert!(
        text.contains(&format!(
            "flow definition dogs: exists, DIFFERS: HumanTaskUiArn is \"{ui_arn}\", the config gives \"arn:aws:sagemaker:us-east-1:{ACCOUNT}:human-task-ui/dogs-v2\""
        )),
        "{text}"
    );
    assert_eq!(line_value(&text, "flow definition: "), flow_arn);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("warning: an existing task UI or flow definition differs"));
    let flow = client.describe_flow_definition("dogs").await.unwrap();
    assert_eq!(
        flow.human_loop_config.unwrap().human_task_ui_arn,
        ui_arn,
        "unchanged"
    );

    // A task UI of that name with another template: reported too.
    let relabelled = write_config(
        dir.path(),
        "relabelled.toml",
        &at,
        "",
        "flow_definition_name = \"dogs\"",
    );
    let text = std::fs::read_to_string(&relabelled)
        .unwrap()
        .replace("\"beagle\", ", "");
    std::fs::write(&relabelled, text).unwrap();
    let text = stdout(&cloud_relay(&["setup"], &relabelled));
    assert!(
        text.contains("human task UI dogs: exists, DIFFERS: its template"),
        "{text}"
    );
}

#[test]
fn setup_without_its_table_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let at = Endpoints {
        review: NO_S3,
        s3: NO_S3,
    };
    let config = write_config(dir.path(), "relay.toml", &at, "", "");
    let text = std::fs::read_to_string(&config).unwrap();
    let cut = text
        .replace("[a2i.setup]\n", "")
        .replace("workteam_arn", "# workteam_arn")
        .replace("role_arn", "# role_arn");
    std::fs::write(&config, cut).unwrap();
    let out = cloud_relay(&["setup"], &config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a2i.setup: is missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_refuses_to_start_on_a_missing_flow_definition() {
    let moto = MotoS3::builder().start();
    create_bucket(&s3_client(&moto.endpoint_url()), "frames").await;
    let dir = tempfile::tempdir().unwrap();
    let service = start_review_service(dir.path());
    let s3 = moto.endpoint_url();
    let at = Endpoints {
        review: &service.url,
        s3: &s3,
    };
    let missing = write_config(
        dir.path(),
        "missing.toml",
        &at,
        &format!(
            "flow_definition_arn = \"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/nope\""
        ),
        "",
    );
    for command in [&["run"][..], &["check-config", "--online"][..]] {
        let out = cloud_relay(command, &missing);
        assert!(!out.status.success(), "{command:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("flow definition arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/nope does not exist (create it with `cloud-relay setup`")),
            "{command:?}: {err}"
        );
    }

    // Once setup made it, the check passes.
    let ok = write_config(
        dir.path(),
        "ok.toml",
        &at,
        &format!(
            "flow_definition_arn = \"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/dogs\""
        ),
        "",
    );
    assert!(cloud_relay(&["setup"], &ok).status.success());
    let out = cloud_relay(&["check-config", "--online"], &ok);
    assert!(out.status.success());
    assert!(stdout(&out).ends_with(": ok\n"));
}
