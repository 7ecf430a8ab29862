//! The reviewer page of local mode, served with the A2I API on 127.0.0.1:0 over a
//! local object store holding real photos (models/samples):
//! - its access token guards every /review route;
//! - a flow that asks for two reviewers completes only with two distinct ones;
//! - in headless Chromium (local-aws/tests/web), three frames are labelled (one by
//!   click, two by keyboard) and one skipped; the output.json files hold exactly those
//!   labels in A2I's layout, and the manifest rows built from them match.
//!
//! The browser test needs `npm ci` in local-aws/tests/web and /usr/bin/chromium;
//! without them it says so and passes, unless EDGE_A2I_REQUIRE_BROWSER=1 (scripts/test.sh).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use local_aws::credentials::Credentials;
use local_aws::object_store::{DirStore, PutMode};
use local_aws::review_page::{self, ReviewPageConfig};
use local_aws::review_service::service::NewFlowDefinition;
use local_aws::review_service::store::StartRequest;
use local_aws::review_service::{HumanLoopStatus, OutputKey, ReviewService, ServiceIdentity};
use local_aws::sigv4::Verifier;
use protocol::a2i::{consolidate, HumanLoopOutput, DEFAULT_ANSWER_FIELD, NONE_OF_THESE};
use protocol::manifest::{ClassificationMetadata, ManifestRow};
use serde_json::{json, Value};
use test_support::{http, InProcessServer};

mod common;

const TOKEN: &str = "test-token-0123456789abcdef";
const FLOW: &str = "dogs";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_labels() -> Vec<String> {
    std::fs::read_to_string(workspace().join("models/labels.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

struct Running {
    addr: SocketAddr,
    /// The key pair the A2I API takes.
    key: Credentials,
    service: ReviewService,
    store: DirStore,
    loops: Vec<String>,
    _dir: tempfile::TempDir,
    server: InProcessServer<anyhow::Error>,
}

/// A frame the model was unsure about: its photo and the model's top-k.
struct Frame {
    sample: &'static str,
    top: [(&'static str, f64); 3],
}

const FRAMES: [Frame; 4] = [
    Frame {
        sample: "chelsea.jpg",
        top: [("pug", 0.41), ("French_bulldog", 0.33), ("Chihuahua", 0.12)],
    },
    Frame {
        sample: "astronaut.jpg",
        top: [("Samoyed", 0.38), ("Maltese_dog", 0.31), ("papillon", 0.09)],
    },
    Frame {
        sample: "coffee.png",
        top: [("toy_poodle", 0.29), ("Pomeranian", 0.27), ("pug", 0.2)],
    },
    Frame {
        sample: "rocket.jpg",
        top: [
            ("Siberian_husky", 0.35),
            ("German_shepherd", 0.3),
            ("Doberman", 0.1),
        ],
    },
];

/// A task UI template that, if it ever ran as a page on the reviewer page's origin,
/// would mark the page and read the token-protected queue.
const XSS_TEMPLATE: &str = "<script>document.title='xss-ran';\
    fetch('/review/api/queue?reviewer=x').then(r=>r.text()).then(t=>{document.title='xss-ran:'+t})\
    </script><crowd-form></crowd-form>";

async fn start(task_count: u64, frames: &[Frame]) -> Running {
    start_with(task_count, frames.iter(), None).await
}

/// `frames` in queue order; `choices`: the labels offered (default: the frame's top-3
/// and golden_retriever).
async fn start_with<'a>(
    task_count: u64,
    frames: impl Iterator<Item = &'a Frame>,
    choices: Option<&[String]>,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path().join("objects")).unwrap();
    store.create_bucket("frames").unwrap();
    store.create_bucket("a2i-out").unwrap();
    let identity = ServiceIdentity {
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
    };
    let service = ReviewService::open(
        identity,
        &dir.path().join("state"),
        100,
        Arc::new(store.clone()),
    )
    .unwrap();
    let ui = service
        .create_human_task_ui("dogs-ui", "<crowd-form></crowd-form>".into())
        .unwrap();
    service
        .create_human_task_ui("evil-ui", XSS_TEMPLATE.into())
        .unwrap();
    let flow_arn = service
        .create_flow_definition(NewFlowDefinition {
            name: FLOW.into(),
            output_config: json!({"S3OutputPath": "s3://a2i-out/reviews"}),
            role_arn: "arn:aws:iam::000000000000:role/a2i".into(),
            human_loop_config: Some(json!({
                "HumanTaskUiArn": ui, "TaskCount": task_count,
                "TaskTitle": "Which breed?", "TaskDescription": "Pick the breed",
                "WorkteamArn": "arn:aws:sagemaker:us-east-1:000000000000:workteam/private-crowd/local"
            })),
            activation_config: None,
            request_source: None,
        })
        .unwrap();
    let labels = model_labels();
    let mut loops = Vec::new();
    for (i, f) in frames.enumerate() {
        let event_id = format!("01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e{i:02x}");
        let ext = f.sample.rsplit_once('.').unwrap().1;
        let key = format!("events/pi-kitchen/{event_id}.{ext}");
        let bytes = std::fs::read(workspace().join("models/samples").join(f.sample)).unwrap();
        store
            .put("frames", &key, &bytes, PutMode::IfAbsent)
            .unwrap();
        let mut choices: Vec<String> = match choices {
            Some(c) => c.to_vec(),
            None => {
                let mut c: Vec<String> = f.top.iter().map(|(l, _)| (*l).to_owned()).collect();
                c.push("golden_retriever".into());
                c
            }
        };
        choices.push(NONE_OF_THESE.into());
        let input = json!({
            "taskObject": format!("s3://frames/{key}"),
            "initialValue": f.top[0].0,
            "labels": choices,
            "scores": f.top.iter().map(|(l, s)| json!({
                "index": labels.iter().position(|x| x == l).unwrap(), "label": l, "score": s
            })).collect::<Vec<_>>(),
            "device_id": "pi-kitchen", "model_version": "3", "event_id": event_id,
            "source": f.sample,
        });
        let name = format!("ea2i-{event_id}");
        service
            .start_human_loop(
                &flow_arn,
                StartRequest {
                    name: name.clone(),
                    input_content: input.to_string(),
                    content_classifiers: vec![],
                },
            )
            .unwrap();
        loops.push(name);
        // Creation times order the queue; keep them distinct.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let page = ReviewPageConfig {
        token: TOKEN.into(),
        store: store.clone(),
        answers_file: dir.path().join("state/review-page-answers.json"),
    };
    let key = Credentials::generate();
    let verifier = Verifier::new(key.clone(), "the test's");
    let server = InProcessServer::spawn({
        let service = service.clone();
        |shutdown| review_page::serve(listener, service, verifier, page, shutdown)
    });
    Running {
        addr,
        key,
        service,
        store,
        loops,
        _dir: dir,
        server,
    }
}

impl Running {
    async fn stop(self) {
        self.server.stop().await;
    }

    fn output(&self, name: &str) -> Option<HumanLoopOutput> {
        let l = self.service.describe_human_loop(name).unwrap();
        let key = OutputKey::from_s3_uri(&l.output_s3_uri).unwrap();
        let (bytes, _) = self.store.get(&key.bucket, &key.key).ok()?;
        Some(HumanLoopOutput::from_json(&bytes).unwrap())
    }

    /// One request to the page's server, with `headers` and an optional JSON body.
    async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> http::Response {
        let mut request =
            http::Request::new(method, format!("http://{}{path}", self.addr)).headers(headers);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bearer = format!("Bearer {TOKEN}");
        let response = self
            .http(method, path, &[("Authorization", &bearer)], body)
            .await;
        (
            response.status,
            serde_json::from_slice(&response.body).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn every_review_route_needs_the_token_which_a_first_visit_swaps_for_a_cookie() {
    let r = start(1, &FRAMES[..1]).await;
    for path in [
        "/review",
        "/review/api/queue?reviewer=ann",
        "/review/assets/review.js",
    ] {
        assert_eq!(r.http("GET", path, &[], None).await.status, 401, "{path}");
        let wrong = [("Authorization", "Bearer test-token-0123456789abcdeX")];
        assert_eq!(
            r.http("GET", path, &wrong, None).await.status,
            401,
            "{path}"
        );
    }
    let first_visit = r
        .http("GET", &format!("/review?token={TOKEN}"), &[], None)
        .await;
    assert_eq!(first_visit.status, 303);
    assert_eq!(
        first_visit.header("location"),
        Some("/review"),
        "{first_visit:?}"
    );
    let set_cookie = first_visit.header("set-cookie").unwrap_or_default();
    assert!(
        set_cookie.starts_with(&format!("ea2i_review_token={TOKEN}")),
        "{set_cookie}"
    );
    let set_cookie = set_cookie.to_ascii_lowercase();
    assert!(
        set_cookie.contains("httponly") && set_cookie.contains("samesite=strict"),
        "{set_cookie}"
    );
    let cookie = format!("ea2i_review_token={TOKEN}");
    let page = r.http("GET", "/review", &[("Cookie", &cookie)], None).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-security-policy")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .starts_with("default-src 'none'"));
    let body = page.body;
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains("/review/assets/review.js") && !html.contains("http"),
        "no external assets"
    );
    // The A2I API next to it takes no token but a SigV4 signature.
    let api = r.http("GET", "/human-loops/x", &[], None).await;
    assert_eq!(
        (api.status, api.header("x-amzn-errortype")),
        (403, Some("MissingAuthenticationTokenException"))
    );
    r.stop().await;
}

#[tokio::test]
async fn the_root_leads_to_the_page_with_its_token() {
    let r = start(1, &FRAMES[..1]).await;
    let root = r.http("GET", "/", &[], None).await;
    assert_eq!(
        (root.status, root.header("location")),
        (303, Some("/review"))
    );
    let root = r.http("GET", &format!("/?token={TOKEN}"), &[], None).await;
    let to = format!("/review?token={TOKEN}");
    assert_eq!(
        (root.status, root.header("location")),
        (303, Some(to.as_str()))
    );
    r.stop().await;
}

/// Every response of the service, whatever its route and status, forbids sniffing and
/// carries the strict CSP.
fn assert_hardened(what: &str, resp: &http::Response) {
    assert_eq!(
        resp.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    let csp = resp.header("content-security-policy").unwrap_or_default();
    assert!(csp.starts_with("default-src 'none'"), "{what}: {csp:?}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp:?}");
}

#[tokio::test]
async fn other_sites_and_rebound_names_cannot_drive_the_a2i_api_or_the_page() {
    let r = start(1, &FRAMES[..1]).await;
    let flow = "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/dogs";
    let start_body = json!({"HumanLoopName": "csrf", "FlowDefinitionArn": flow,
        "HumanLoopInput": {"InputContent": "{\"taskObject\":\"s3://frames/x.jpg\"}"}});
    // A web page's "simple" cross-site POST (text/plain: no CORS preflight).
    let csrf = r
        .http(
            "POST",
            "/human-loops",
            &[
                ("Origin", "https://evil.example"),
                ("Content-Type", "text/plain"),
            ],
            Some(start_body.clone()),
        )
        .await;
    assert_eq!(csrf.status, 403, "{}", csrf.text());
    let message = |r: &http::Response| -> String {
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v["message"].as_str().unwrap().to_owned()
    };
    assert!(
        message(&csrf).contains("cross-origin request from Origin \"https://evil.example\""),
        "{}",
        csrf.text()
    );
    assert_hardened("a refused request", &csrf);
    // DNS rebinding: the page's own name, resolved to 127.0.0.1.
    let cookie = format!("ea2i_review_token={TOKEN}");
    for path in ["/review/api/queue?reviewer=x", "/human-loops/x", "/review"] {
        let rebound = r
            .http(
                "GET",
                path,
                &[("Host", "rebind.evil.example"), ("Cookie", &cookie)],
                None,
            )
            .await;
        assert_eq!(rebound.status, 403, "{path}");
        assert!(
            message(&rebound).contains("Host \"rebind.evil.example\""),
            "{}",
            rebound.text()
        );
    }
    // Same machine, unsigned: no signature, no loop.
    let unsigned = r
        .http(
            "POST",
            "/human-loops",
            &[("Content-Type", "text/plain")],
            Some(start_body),
        )
        .await;
    assert_eq!(unsigned.status, 403, "{}", unsigned.text());
    assert_eq!(
        unsigned.header("x-amzn-errortype"),
        Some("MissingAuthenticationTokenException")
    );
    assert!(
        r.service.describe_human_loop("csrf").is_err(),
        "no loop was started"
    );
    // Every response is hardened: the page, its API, a frame, its assets.
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let image = format!("/review/api/loops/{}/image", r.loops[0]);
    for path in [
        "/review",
        "/review/api/queue?reviewer=x",
        &image,
        "/review/assets/review.js",
        "/nothing",
    ] {
        assert_hardened(path, &r.http("GET", path, &auth, None).await);
    }
    r.stop().await;
}

#[tokio::test]
async fn task_ui_templates_are_served_as_inert_sandboxed_text_to_signed_requests_only() {
    let r = start(1, &FRAMES[..1]).await;
    let path = "/human-task-uis/evil-ui/template";
    let cookie = format!("ea2i_review_token={TOKEN}");
    let unsigned = r.http("GET", path, &[("Cookie", &cookie)], None).await;
    assert_eq!(unsigned.status, 403, "{}", unsigned.text());
    let (parts, body) = common::signed_client(&format!("http://{}", r.addr), "sagemaker", &r.key)
        .send(::http::Method::GET, path, &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], XSS_TEMPLATE.as_bytes());
    let header = |n: &str| parts.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert!(header("content-security-policy")
        .unwrap()
        .contains("sandbox"));
    r.stop().await;
}

#[tokio::test]
async fn a_flow_asking_for_two_reviewers_completes_with_the_second_distinct_one() {
    let r = start(2, &FRAMES[..1]).await;
    let name = r.loops[0].clone();
    let (status, q) = r.api("GET", "/review/api/queue?reviewer=ann", None).await;
    assert_eq!(status, 200);
    assert_eq!(q["items"][0]["needed"], 2);
    assert_eq!(q["items"][0]["choices"][0], "pug");
    assert_eq!(q["items"][0]["scores"][0]["score"], 0.41);
    let image = r
        .http(
            "GET",
            q["items"][0]["image_url"].as_str().unwrap(),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            None,
        )
        .await;
    assert_eq!(image.status, 200);
    assert!(image
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .starts_with("image/jpeg"));
    assert_eq!(
        image.body,
        std::fs::read(workspace().join("models/samples/chelsea.jpg")).unwrap()
    );

    let answer = |who: &str, label: &str| json!({"reviewer": who, "label": label, "time_spent_seconds": 3.5});
    let path = format!("/review/api/loops/{name}/answer");
    let (status, v) = r
        .api("POST", &path, Some(answer("ann", "not a label")))
        .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = r.api("POST", &path, Some(answer("ann", "pug"))).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("recorded")),
        "{v}"
    );
    assert_eq!(
        r.service.describe_human_loop(&name).unwrap().status,
        HumanLoopStatus::InProgress
    );
    let (status, _) = r
        .api("POST", &path, Some(answer("ann", "French_bulldog")))
        .await;
    assert_eq!(status, 409, "one answer per reviewer");
    let (_, q) = r.api("GET", "/review/api/queue?reviewer=ann", None).await;
    assert_eq!(q["items"].as_array().unwrap().len(), 0);
    assert_eq!(q["progress"]["waiting_for_others"], 1);
    let (status, v) = r
        .api("POST", &path, Some(answer("bob", NONE_OF_THESE)))
        .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("completed")),
        "{v}"
    );

    let out = r.output(&name).expect("output.json written");
    let labels: Vec<_> = out
        .label_answers(DEFAULT_ANSWER_FIELD)
        .unwrap()
        .into_iter()
        .map(|a| (a.worker_id.unwrap(), a.label))
        .collect();
    assert_eq!(
        labels,
        [
            ("ann".into(), "pug".into()),
            ("bob".into(), NONE_OF_THESE.to_owned())
        ]
    );
    assert_eq!(out.human_loop_name, name);
    assert_eq!(out.input().unwrap().device_id.as_str(), "pi-kitchen");
    let (status, _) = r.api("POST", &path, Some(answer("cy", "pug"))).await;
    assert_eq!(status, 409, "a completed loop takes no more answers");
    r.stop().await;
}

fn browser_ready() -> Result<PathBuf, String> {
    let web = workspace().join("local-aws/tests/web");
    if !web.join("node_modules/playwright-core").is_dir() {
        return Err(format!("run `npm ci` in {}", web.display()));
    }
    if !Path::new("/usr/bin/chromium").exists() {
        return Err("/usr/bin/chromium is not installed".into());
    }
    Ok(web)
}

#[tokio::test]
async fn a_reviewer_labels_three_frames_by_click_and_keyboard_and_skips_one_in_chromium() {
    let web = match browser_ready() {
        Ok(w) => w,
        Err(why) if std::env::var("EDGE_A2I_REQUIRE_BROWSER").as_deref() != Ok("1") => {
            eprintln!("skipping the Chromium test: {why}");
            return;
        }
        Err(why) => panic!("the Chromium test cannot run: {why}"),
    };
    let r = start(1, &FRAMES).await;
    let target = workspace().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let screenshot = target.join("reviewer-page.png");
    let _ = std::fs::remove_file(&screenshot);
    // Frame 1 by click, frame 2 with key 2 (its second choice), skip frame 3, frame 4 with n.
    let plan = json!([{"click": "pug"}, {"key": "2"}, {"skip": true}, {"key": "n"}]);
    let expected = [
        Some("pug".to_owned()),
        Some(FRAMES[1].top[1].0.to_owned()),
        None,
        Some(NONE_OF_THESE.to_owned()),
    ];
    let steps = run_browser_script(
        &web,
        "review_page.mjs",
        &[
            ("REVIEW_URL", review_page::page_url(r.addr, TOKEN)),
            ("PLAN", plan.to_string()),
            ("SCREENSHOT", screenshot.display().to_string()),
        ],
    )
    .await;
    let steps = steps.as_array().unwrap();
    let seen: Vec<(String, Option<String>)> = steps
        .iter()
        .map(|s| {
            (
                s["loop"].as_str().unwrap().to_owned(),
                s["label"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let want: Vec<(String, Option<String>)> =
        r.loops.iter().cloned().zip(expected.clone()).collect();
    assert_eq!(
        seen, want,
        "the page showed the frames oldest first and picked the planned labels"
    );

    let labels = model_labels();
    let mut rows = Vec::new();
    for (name, label) in r.loops.iter().zip(&expected) {
        let l = r.service.describe_human_loop(name).unwrap();
        match label {
            None => {
                assert_eq!(l.status, HumanLoopStatus::InProgress, "skipped stays open");
                assert!(
                    r.output(name).is_none(),
                    "no output.json for the skipped frame"
                );
            }
            Some(label) => {
                assert_eq!(l.status, HumanLoopStatus::Completed);
                assert!(l
                    .output_s3_uri
                    .starts_with(&format!("s3://a2i-out/reviews/{FLOW}/")));
                assert!(l.output_s3_uri.ends_with(&format!("/{name}/output.json")));
                let out = r.output(name).expect("output.json in the object store");
                let answers = out.label_answers(DEFAULT_ANSWER_FIELD).unwrap();
                assert_eq!(answers.len(), 1);
                assert_eq!(&answers[0].label, label);
                assert_eq!(answers[0].worker_id.as_deref(), Some("reviewer"));
                let c = consolidate(&answers);
                if c.is_none_of_these() {
                    continue;
                }
                let class = c.label.unwrap();
                let row = ManifestRow {
                    source_ref: out.input().unwrap().task_object,
                    attribute: "label".into(),
                    class_index: labels.iter().position(|x| *x == class).unwrap() as u32,
                    metadata: ClassificationMetadata {
                        class_name: class,
                        confidence: c.agreement,
                        human_annotated: true,
                        creation_date: "2026-11-25T09:00:00.000000".into(),
                        job_name: "labeling-job/edge-a2i-dogs".into(),
                        tie: false,
                    },
                };
                rows.push(ManifestRow::parse(&row.to_json_line(), "label").unwrap());
            }
        }
    }
    let got: Vec<(u32, &str)> = rows
        .iter()
        .map(|r| (r.class_index, r.metadata.class_name.as_str()))
        .collect();
    assert_eq!(got, [(14, "pug"), (1, "Maltese_dog")]);
    let png = std::fs::read(&screenshot).expect("screenshot saved");
    assert!(
        png.starts_with(b"\x89PNG"),
        "{} is a PNG",
        screenshot.display()
    );
    r.stop().await;
}

/// Runs `script` (in local-aws/tests/web) under node with `env`; returns its JSON line.
async fn run_browser_script(web: &Path, script: &str, env: &[(&str, String)]) -> Value {
    let mut node = tokio::process::Command::new("node");
    node.arg(web.join(script))
        .current_dir(web)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), node.output())
        .await
        .expect("the browser test finishes within 120 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test {script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[tokio::test]
async fn a_long_queue_nineteen_labels_and_a_phone_fit_the_page_in_chromium() {
    let web = match browser_ready() {
        Ok(w) => w,
        Err(why) if std::env::var("EDGE_A2I_REQUIRE_BROWSER").as_deref() != Ok("1") => {
            eprintln!("skipping the Chromium test: {why}");
            return;
        }
        Err(why) => panic!("the Chromium test cannot run: {why}"),
    };
    let labels = model_labels();
    assert_eq!(labels.len(), 19);
    let r = start_with(1, FRAMES.iter().cycle().take(30), Some(&labels)).await;
    let base = format!("http://{}", r.addr);
    let got = run_browser_script(
        &web,
        "review_layout.mjs",
        &[
            ("BASE_URL", base.clone()),
            ("TOKEN", TOKEN.to_owned()),
            ("FIRST_FILE", FRAMES[0].sample.to_owned()),
            ("XSS_URL", format!("{base}/human-task-uis/evil-ui/template")),
        ],
    )
    .await;
    assert_eq!(
        got["seventeenth"], labels[16],
        "keys 1 then 7 pick label 17"
    );
    assert_eq!(got["filtered"], "Siberian_husky", "/ then husk picks it");
    r.stop().await;
}
