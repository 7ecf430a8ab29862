//! The one-command local mode end to end: `local-aws run` over three sample
//! photos (real edge-agent child, embedded broker, object store, review service,
//! relay); every frame answered through the reviewer page's JSON endpoints; the
//! augmented manifest checked; then a second run over the same state directory
//! sends nothing again. Needs the edge-agent binary of the same profile (scripts/test.sh
//! builds the workspace first).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{credentials_env, repo, run_bin, signed_model, state_credentials};
use serde_json::{json, Value};
use test_support::http;

mod common;

const SAMPLES: [&str; 3] = ["astronaut.jpg", "chelsea.jpg", "coffee.png"];
const BUCKET: &str = "edge-a2i-local";

fn agent_bin() -> PathBuf {
    test_support::workspace_bin("edge-agent")
}

/// A running `local-aws run`; its stdout lines are collected as they come.
struct Local {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    state: PathBuf,
}

impl Local {
    fn start(frames: &Path, state: &Path) -> Local {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.with_extension("log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_local-aws"))
            .arg("run")
            .arg("--frames")
            .arg(frames)
            .arg("--state-dir")
            .arg(state)
            .args(["--review-listen", "127.0.0.1:0"])
            .args(["--jobs-listen", "127.0.0.1:0"])
            .arg("--agent-bin")
            .arg(agent_bin())
            .env("RUST_LOG", "info,rumqttd=off")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Local {
            child,
            lines,
            state: state.to_owned(),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (up to `secs`) until `f` gives something; panics with `what` and the
    /// output so far otherwise.
    fn until<T>(&mut self, secs: u64, what: &str, mut f: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(t) = f(self) {
                return t;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("local-aws run exited ({status}) while waiting for {what}; stdout: {:#?}\nstderr: {}", self.lines(), self.stderr());
            }
            if Instant::now() > deadline {
                panic!(
                    "no {what} within {secs} s; stdout: {:#?}\nstderr: {}\nagent log: {}",
                    self.lines(),
                    self.stderr(),
                    std::fs::read_to_string(self.state.join("agent.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stderr(&self) -> String {
        let text = std::fs::read_to_string(self.state.with_extension("log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The reviewer page's address and token, from the first stdout line (the Jobs
    /// API's address follows it).
    fn page(&mut self) -> (String, String) {
        self.until(60, "reviewer page and jobs API lines", |s| {
            let lines = s.lines();
            let first = lines.first()?;
            lines.get(1)?.strip_prefix("jobs API: http://127.0.0.1:")?;
            let url = first.strip_prefix("reviewer page: http://")?.to_owned();
            let (addr, token) = url.split_once("/review?token=")?;
            Some((addr.to_owned(), token.to_owned()))
        })
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM and waits for the exit status (within 60 s).
fn terminate(mut local: Local) -> Vec<String> {
    let pid = i32::try_from(local.child.id()).unwrap();
    // SAFETY: signalling our own, not yet reaped, child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = local.child.try_wait().unwrap() {
            assert!(
                status.success(),
                "exit status {status}; stderr: {}",
                local.stderr()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no exit within 60 s of SIGTERM; stderr: {}",
            local.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The reader thread sees EOF once the process is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !local.lines().iter().any(|l| l == "stopped") {
        std::thread::sleep(Duration::from_millis(50));
    }
    local.lines()
}

/// One request with the page's token; returns status and JSON body.
fn api(addr: &str, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = http::Request::new(method, format!("http://{addr}{path}"))
        .header("Authorization", format!("Bearer {token}"))
        .timeout(Duration::from_secs(20));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send_blocking().unwrap();
    (
        response.status,
        serde_json::from_slice(&response.body).unwrap_or(Value::Null),
    )
}

fn queue(addr: &str, token: &str) -> Value {
    let (status, q) = api(
        addr,
        token,
        "GET",
        "/review/api/queue?reviewer=tester",
        None,
    );
    assert_eq!(status, 200, "{q}");
    q
}

/// The manifest's rows as source-ref -> class-name.
fn manifest(state: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(state.join("manifest.jsonl")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["source-ref"].as_str().unwrap().to_owned(),
                v["label-metadata"]["class-name"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

/// Frame images the relay stored (under the bucket's events/ prefix).
fn stored_images(state: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p
                .extension()
                .is_some_and(|x| x == "jpg" || x == "png" || x == "jpeg")
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&state.join("objects").join(BUCKET).join("events"), &mut out);
    out
}

#[test]
fn one_command_local_mode_labels_frames_into_the_manifest_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/samples");
    for s in SAMPLES {
        std::fs::copy(samples.join(s), frames.join(s)).unwrap();
    }
    let state = dir.path().join("state");

    // First run: three frames classified, sent, each answered on the page.
    let mut local = Local::start(&frames, &state);
    let (addr, token) = local.page();
    let items = local.until(180, "three loops in the review queue", |_| {
        let q = queue(&addr, &token);
        let items = q["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 3).then_some(items)
    });
    let mut answered = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let name = item["name"].as_str().unwrap();
        let choices = item["choices"].as_array().unwrap();
        // Different answers, so the rows are told apart.
        let label = choices[(i + 1) % choices.len()]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, r) = api(
            &addr,
            &token,
            "POST",
            &format!("/review/api/loops/{name}/answer"),
            Some(json!({"reviewer": "tester", "label": label, "time_spent_seconds": 2.5})),
        );
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["status"], "completed", "{r}");
        let event_id = item["event_id"].as_str().unwrap().to_owned();
        answered.insert(event_id, label);
    }
    let rows = local.until(120, "three manifest rows", |s| {
        let rows = manifest(&s.state);
        (rows.len() == 3).then_some(rows)
    });
    let by_event: BTreeMap<String, String> = rows
        .iter()
        .map(|(src, class)| {
            let file = src.rsplit('/').next().unwrap();
            (file.split('.').next().unwrap().to_owned(), class.clone())
        })
        .collect();
    assert_eq!(by_event, answered);
    assert!(rows
        .keys()
        .all(|r| r.starts_with(&format!("s3://{BUCKET}/events/local-camera/"))));
    let manifest_line = format!(
        "manifest: {} (3 rows)",
        state
            .canonicalize()
            .unwrap()
            .join("manifest.jsonl")
            .display()
    );
    local.until(30, "the manifest path printed", |s| {
        s.lines().contains(&manifest_line).then_some(())
    });
    let out = terminate(local);
    assert!(out.iter().any(|l| l == "stopped"), "{out:#?}");
    assert_eq!(stored_images(&state).len(), 3);

    // Second run over the same state: nothing is copied, sent or reviewed again.
    let mut local = Local::start(&frames, &state);
    let (addr, token) = local.page();
    local.until(60, "a settled progress line", |s| {
        s.lines().iter().find(|l| {
            l.starts_with("progress: 3 frames copied (0 new), 3 classified, 3 sent for review, 3 reviewed, 3 manifest rows")
        }).cloned()
    });
    // The agent is up (connected) and had nothing to send.
    let agent_log = state.join("agent.log");
    local.until(60, "the second agent's connection", |_| {
        let log = std::fs::read_to_string(&agent_log).unwrap_or_default();
        (log.matches("mqtt: connected").count() >= 2).then_some(())
    });
    let q = queue(&addr, &token);
    assert_eq!(q["items"].as_array().unwrap().len(), 0, "{q}");
    assert_eq!(q["progress"]["done"], 3, "{q}");
    let out = terminate(local);
    let progress: BTreeSet<&String> = out.iter().filter(|l| l.starts_with("progress:")).collect();
    assert!(
        progress
            .iter()
            .all(|l| l.contains("(0 new)") && l.contains("3 sent for review")),
        "{out:#?}"
    );
    assert_eq!(manifest(&state).len(), 3);
    assert_eq!(stored_images(&state).len(), 3);
    // Each frame recorded once, by content.
    let copied = std::fs::read_to_string(state.join("copied.jsonl")).unwrap();
    assert_eq!(copied.lines().count(), 3, "{copied}");
    for line in copied.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["sha256"].as_str().unwrap().len(), 64, "{line}");
    }
}

/// The fleet admin's path in local mode: a model package signed with local mode's
/// fleet key, `cloud-relay fleet publish` (S3 upload, presigned URL, a job on the
/// local Jobs service), and the running agent (no restart: one "model loaded" in its
/// log) shadows, switches and watches it; `fleet status` shows the new version and
/// the job SUCCEEDED. Prints the time from publish to SUCCEEDED.
#[test]
fn fleet_publish_reaches_the_local_agent_which_swaps_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::copy(
        repo().join("models/samples/chelsea.jpg"),
        frames.join("chelsea.jpg"),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut local = Local::start(&frames, &state);
    local.page();
    let jobs_url = local.until(60, "the jobs API line", |s| {
        s.lines()
            .iter()
            .find_map(|l| l.strip_prefix("jobs API: ").map(String::from))
    });
    local.until(60, "the fleet line", |s| {
        s.lines()
            .iter()
            .any(|l| l.starts_with("fleet: "))
            .then_some(())
    });

    // Version 1.0.1 of the shipped model, signed with local mode's key.
    let dist = dir.path().join("dist");
    let package = signed_model(dir.path(), "1.0.1", &state.join("fleet.key"), &dist, None);
    // The key pair local mode made at its first start, as its `credentials:` line says.
    let key_pair = state_credentials(&state);
    let credentials_line = local.until(60, "the credentials line", |s| {
        s.lines()
            .iter()
            .find(|l| l.starts_with("credentials: "))
            .cloned()
    });
    assert!(
        credentials_line.contains(&key_pair.export_line()),
        "{credentials_line}"
    );
    let creds = credentials_env(&key_pair);
    let relay_toml = state.join("relay.toml");
    let published = Instant::now();
    let out = run_bin(
        "cloud-relay",
        &[
            "fleet",
            "publish",
            package.to_str().unwrap(),
            "--config",
            relay_toml.to_str().unwrap(),
            "--jobs-endpoint-url",
            &jobs_url,
            "--devices",
            "local-camera",
            "--job-id",
            "rollout-1",
            "--key",
            state.join("fleet.pub").to_str().unwrap(),
        ],
        &creds,
    );
    assert!(out.contains("job:      rollout-1 (1 targets)"), "{out}");

    // Frames keep coming (the shadow and watch windows count frames).
    let inbox = state.join("agent/inbox");
    let status_args = [
        "fleet",
        "status",
        "--config",
        relay_toml.to_str().unwrap(),
        "--jobs-endpoint-url",
        &jobs_url,
        "--job",
        "rollout-1",
        "--listen",
        "300ms",
    ];
    let mut n = 0;
    let (mut serving_after, mut succeeded_after) = (None, None);
    local.until(120, "rollout-1 SUCCEEDED and 1.0.1 serving", |_| {
        n += 1;
        let tmp = inbox.join(format!(".f{n}.part"));
        std::fs::copy(repo().join("models/samples/hubble.jpg"), &tmp).unwrap();
        std::fs::rename(&tmp, inbox.join(format!("f{n}.jpg"))).unwrap();
        let status = run_bin("cloud-relay", &status_args, &creds);
        if serving_after.is_none() && status.contains("dogs-mobilenetv2 1.0.1") {
            serving_after = Some(published.elapsed());
        }
        if succeeded_after.is_none() && status.contains("local-camera             SUCCEEDED") {
            succeeded_after = Some(published.elapsed());
        }
        // The job's SUCCEEDED and the device's retained status arrive separately.
        (status.contains("dogs-mobilenetv2 1.0.1")
            && status.contains("1.0.1 succeeded at done")
            && status.contains("SUCCEEDED"))
        .then_some(())
    });
    let log = std::fs::read_to_string(state.join("agent.log")).unwrap();
    assert_eq!(log.matches("model loaded").count(), 1, "no restart: {log}");
    assert!(log.contains("model update succeeded"), "{log}");
    // The way back: the shipped model signed as a rollback of 1.0.1, published with
    // `fleet rollback`; the device takes it although it is older (anti-rollback lets
    // a signed rollback of exactly its highest version through).
    let rollback_pkg = signed_model(
        &dir.path().join("old"),
        "1.0.0",
        &state.join("fleet.key"),
        &dist,
        Some("1.0.1"),
    );
    let publish_args = |cmd: &'static str, pkg: &Path, job: &'static str| -> Vec<String> {
        [
            "fleet",
            cmd,
            pkg.to_str().unwrap(),
            "--config",
            relay_toml.to_str().unwrap(),
            "--jobs-endpoint-url",
            &jobs_url,
            "--devices",
            "local-camera",
            "--job-id",
            job,
        ]
        .map(String::from)
        .to_vec()
    };
    // `publish` refuses a rollback package, naming the command to use.
    let refused = Command::new(test_support::workspace_bin("cloud-relay"))
        .args(publish_args("publish", &rollback_pkg, "wrong"))
        .envs(creds.clone())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("fleet rollback"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let args = publish_args("rollback", &rollback_pkg, "rollback-1");
    run_bin(
        "cloud-relay",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &creds,
    );
    let status_back: Vec<&str> = status_args
        .iter()
        .map(|a| if *a == "rollout-1" { "rollback-1" } else { a })
        .collect();
    local.until(120, "rollback-1 SUCCEEDED and 1.0.0 serving again", |_| {
        n += 1;
        let tmp = inbox.join(format!(".f{n}.part"));
        std::fs::copy(repo().join("models/samples/hubble.jpg"), &tmp).unwrap();
        std::fs::rename(&tmp, inbox.join(format!("f{n}.jpg"))).unwrap();
        let status = run_bin("cloud-relay", &status_back, &creds);
        (status.contains("dogs-mobilenetv2 1.0.0")
            && status.contains("1.0.0 succeeded at done")
            && status.contains("local-camera             SUCCEEDED"))
        .then_some(())
    });
    let log = std::fs::read_to_string(state.join("agent.log")).unwrap();
    assert_eq!(
        log.matches("model loaded").count(),
        1,
        "still no restart: {log}"
    );

    let secs = |d: Option<Duration>| d.unwrap_or_else(|| published.elapsed()).as_secs_f64();
    eprintln!(
        "fleet publish -> serving 1.0.1: {:.1} s (3 shadow frames); -> SUCCEEDED: {:.1} s (+10 watched frames); one frame every ~0.7 s",
        secs(serving_after),
        secs(succeeded_after)
    );
    terminate(local);
}
