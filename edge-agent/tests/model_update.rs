//! Model updates on a running agent, through the device owner's drop folder
//! (`<state_dir>/updates/`): the real `edge-agent` binary, a Mosquitto configured like
//! IoT Core, packages made and signed with `edge-agent model keygen|sign`. The same
//! process (same PID) shadows, switches and watches the new model; bad packages are
//! refused with the reason and the old model keeps serving; a bad model rolls back by
//! itself; a kill in the middle of an update leaves a working model and a report.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::updates::{edge_agent, model_copy, models, sign, updating_agent};
use support::{drop_frame, Agent, Receiver};
use test_support::{wait_until, Mosquitto};

const LONG: Duration = Duration::from_secs(90);

/// Copies a package and its signature into the agent's updates folder, signature last.
fn drop_package(agent: &Agent, package: &Path) {
    let dir = agent.dir.join("state/updates");
    std::fs::create_dir_all(&dir).unwrap();
    let name = package.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::copy(package, dir.join(&name)).unwrap();
    std::fs::copy(
        format!("{}.minisig", package.display()),
        dir.join(format!("{name}.minisig")),
    )
    .unwrap();
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    _broker: Mosquitto,
    receiver: Receiver,
    agent: Agent,
    key: PathBuf,
}

fn setup(update: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let agent = updating_agent(&root, &broker, update);
    Setup {
        _dir: dir,
        _broker: broker,
        receiver,
        agent,
        key: root.join("fleet.key"),
        root,
    }
}

fn status_version(r: &Receiver) -> Option<String> {
    r.status().and_then(|s| s.model).map(|m| m.version)
}

fn update_outcome(r: &Receiver) -> Option<(String, String, String)> {
    r.status()
        .and_then(|s| s.update)
        .map(|u| (u.version, u.outcome, u.detail.unwrap_or_default()))
}

/// Drops frames, one per poll, until `done` holds.
fn feed_until(s: &Setup, what: &str, done: impl Fn() -> bool) {
    let mut n = 0;
    wait_until(LONG, what, || {
        if done() {
            return true;
        }
        n += 1;
        let sample = ["hubble.jpg", "chelsea.jpg", "rocket.jpg"][n % 3];
        drop_frame(&s.agent.inbox, &format!("f{n}-{sample}"), sample);
        std::thread::sleep(Duration::from_millis(150));
        false
    });
}

#[test]
fn a_signed_package_is_shadowed_then_served_by_the_same_process() {
    let s = setup("shadow_frames = 3\nwatch_frames = 3\n");
    let pid = s.agent.pid();
    wait_until(LONG, "the agent's first status", || {
        status_version(&s.receiver).is_some()
    });
    assert_eq!(status_version(&s.receiver).as_deref(), Some("1.0.0"));

    // Same weights, labels reversed: every top-1 label changes, nothing else.
    let manifest = model_copy(&s.root, "1.0.1", |t| t, |m| m);
    let labels = std::fs::read_to_string(models().join("labels.txt")).unwrap();
    let reversed: Vec<&str> = labels.lines().rev().collect();
    std::fs::write(manifest.with_file_name("labels.txt"), reversed.join("\n")).unwrap();
    let package = sign(&manifest, &s.key, &s.root.join("out"), &[]);
    drop_package(&s.agent, &package);

    feed_until(&s, "version 1.0.1 serving and its update succeeded", || {
        update_outcome(&s.receiver).is_some_and(|(v, o, _)| v == "1.0.1" && o == "succeeded")
    });
    assert_eq!(status_version(&s.receiver).as_deref(), Some("1.0.1"));
    assert_eq!(s.agent.pid(), pid, "no restart");
    let log = s.agent.log();
    assert!(log.contains("switched after 3 shadow frames"), "{log}");
    // The dropped package is gone once installed; the store serves it from now on.
    assert!(!s
        .agent
        .dir
        .join("state/updates/dogs-mobilenetv2-1.0.1.tar")
        .exists());
    let st = String::from_utf8(
        edge_agent(&[
            "model",
            "status",
            "--config",
            s.agent.config.to_str().unwrap(),
        ])
        .stdout,
    )
    .unwrap();
    assert!(st.contains("serving:  1.0.1"), "{st}");
    assert!(st.contains("previous: the configured model"), "{st}");

    // Events classified after the switch name the new model and its labels.
    let before = s.receiver.event_count();
    feed_until(&s, "an event from the new model", || {
        s.receiver.event_count() > before
            && s.receiver
                .received
                .lock()
                .unwrap()
                .events
                .values()
                .any(|(m, _)| m.model.version == "1.0.1")
    });

    // The owner's rollback: the running agent serves the configured model again.
    let out = edge_agent(&[
        "model",
        "rollback",
        "--config",
        s.agent.config.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("rolled back from 1.0.1"));
    wait_until(LONG, "status back on 1.0.0", || {
        status_version(&s.receiver).as_deref() == Some("1.0.0")
    });
    assert_eq!(s.agent.pid(), pid);
}

#[test]
fn bad_packages_are_refused_with_the_reason_and_the_old_model_serves_on() {
    let s = setup("shadow_frames = 1\nwatch_frames = 0\n");
    wait_until(LONG, "the agent's first status", || {
        status_version(&s.receiver).is_some()
    });
    let out = s.root.join("out");
    let other_key = s.root.join("other");
    edge_agent(&["model", "keygen", "--out", other_key.to_str().unwrap()]);

    // (package, what the refusal must say)
    let mut cases: Vec<(PathBuf, &str)> = Vec::new();
    let flipped = {
        let p = sign(
            &model_copy(&s.root, "2.0.0", |t| t, |m| m),
            &s.key,
            &out.join("flip"),
            &[],
        );
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&p, bytes).unwrap();
        p
    };
    cases.push((flipped, "does not match the package"));
    cases.push((
        sign(
            &model_copy(&s.root, "2.0.1", |t| t, |m| m),
            &other_key.with_extension("key"),
            &out.join("other"),
            &[],
        ),
        "not among the trusted keys",
    ));
    cases.push((
        sign(
            &model_copy(&s.root, "0.9.0", |t| t, |m| m),
            &s.key,
            &out.join("old"),
            &[],
        ),
        "not newer than the installed 1.0.0",
    ));
    // A manifest that says 224x224 for a 160x160 model (its self-test input sized to
    // match the manifest, so only the model itself can tell).
    let wrong_shape = model_copy(
        &s.root,
        "2.0.2",
        |t| {
            t.replace("width = 160", "width = 224")
                .replace("height = 160", "height = 224")
        },
        |m| m,
    );
    std::fs::write(
        wrong_shape.with_file_name("dogs_mobilenetv2.selftest.f32"),
        vec![0u8; 224 * 224 * 3 * 4],
    )
    .unwrap();
    cases.push((
        sign(&wrong_shape, &s.key, &out.join("shape"), &[]),
        "does not match its manifest",
    ));
    cases.push((
        sign(
            &model_copy(&s.root, "2.0.3", |t| t, |m| m),
            &s.key,
            &out.join("expired"),
            &["--expires", "2020-01-01T00:00:00Z"],
        ),
        "expired at 2020-01-01",
    ));
    for (package, why) in cases {
        drop_package(&s.agent, &package);
        let name = package.file_name().unwrap().to_str().unwrap().to_string();
        let reason = s
            .agent
            .dir
            .join(format!("state/updates/rejected/{name}.reason"));
        wait_until(LONG, &format!("{name} refused"), || reason.exists());
        let text = std::fs::read_to_string(&reason).unwrap();
        assert!(
            text.contains("REJECTED") && text.contains(why),
            "{name}: {text}"
        );
        // Kept for the operator, not deleted.
        assert!(s
            .agent
            .dir
            .join("state/updates/rejected")
            .join(&name)
            .exists());
        assert_eq!(status_version(&s.receiver).as_deref(), Some("1.0.0"));
    }
    wait_until(LONG, "the last refusal in the status", || {
        update_outcome(&s.receiver)
            .is_some_and(|(_, o, d)| o == "rejected" && d.contains("expired"))
    });
    // Frames are still classified and sent by the old model.
    let before = s.receiver.event_count();
    feed_until(&s, "frames still classified", || {
        s.receiver.event_count() > before
    });
}

/// A model whose last layer is all zeros: every score is 1/19, every frame goes to
/// review. Its self-test expects exactly that, so it loads; the watch must catch it.
fn flat_model(bytes: Vec<u8>) -> Vec<u8> {
    let mut head = edge_agent::model::head::read_head(&bytes).unwrap();
    head.weights.iter_mut().for_each(|w| *w = 0.0);
    head.bias.iter_mut().for_each(|b| *b = 0.0);
    edge_agent::model::head::replace_head(&bytes, &head).unwrap()
}

fn flat_self_test(text: String) -> String {
    let start = text.find("scores = [").unwrap();
    let end = start + text[start..].find(']').unwrap() + 1;
    let uniform = vec![format!("{}", 1.0f32 / 19.0); 19].join(", ");
    format!("{}scores = [{uniform}]{}", &text[..start], &text[end..])
}

#[test]
fn a_model_that_sends_every_frame_to_review_is_rolled_back_by_the_watch() {
    let s = setup("shadow_frames = 4\nwatch_frames = 6\nmax_selected_increase = 0.2\n");
    let pid = s.agent.pid();
    wait_until(LONG, "the agent's first status", || {
        status_version(&s.receiver).is_some()
    });
    let package = sign(
        &model_copy(&s.root, "1.1.0", flat_self_test, flat_model),
        &s.key,
        &s.root.join("out"),
        &[],
    );
    drop_package(&s.agent, &package);
    feed_until(&s, "the update failed by an automatic rollback", || {
        update_outcome(&s.receiver).is_some_and(|(v, o, _)| v == "1.1.0" && o == "failed")
    });
    let (_, _, detail) = update_outcome(&s.receiver).unwrap();
    assert!(detail.contains("rolled back automatically"), "{detail}");
    assert!(detail.contains("selected for review"), "{detail}");
    assert_eq!(status_version(&s.receiver).as_deref(), Some("1.0.0"));
    assert_eq!(s.agent.pid(), pid);
    // The package is kept aside with the reason; anti-rollback remembers 1.1.0, so the
    // same package dropped again is refused without being loaded.
    let reason = s
        .agent
        .dir
        .join("state/updates/rejected/dogs-mobilenetv2-1.1.0.tar.reason");
    let first = std::fs::read_to_string(&reason).unwrap();
    assert!(
        first.contains("FAILED at watch: rolled back automatically"),
        "{first}"
    );
    std::fs::remove_file(&reason).unwrap();
    drop_package(&s.agent, &package);
    wait_until(LONG, "the bad version refused", || reason.exists());
    let second = std::fs::read_to_string(&reason).unwrap();
    assert!(
        second.contains("REJECTED at verify") && second.contains("not newer"),
        "{second}"
    );
}

#[test]
fn a_kill_during_the_shadow_or_the_watch_leaves_a_working_model_and_a_report() {
    // A shadow window that never ends within the test: the kill lands in it.
    let mut s = setup("shadow_frames = 1000\nwatch_frames = 1000\n");
    wait_until(LONG, "the agent's first status", || {
        status_version(&s.receiver).is_some()
    });
    let package = sign(
        &model_copy(&s.root, "1.0.1", |t| t, |m| m),
        &s.key,
        &s.root.join("out"),
        &[],
    );
    drop_package(&s.agent, &package);
    feed_until(&s, "the update in its shadow step", || {
        update_outcome(&s.receiver).is_some_and(|(_, o, _)| o == "in_progress")
            && s.receiver
                .status()
                .and_then(|st| st.update)
                .is_some_and(|u| u.step == "shadow")
    });
    s.agent.kill();
    s.agent.start();
    wait_until(
        LONG,
        "the interrupted update reported after the restart",
        || {
            update_outcome(&s.receiver).is_some_and(|(v, o, d)| {
                v == "1.0.1" && o == "failed" && d.contains("restarted during the shadow step")
            })
        },
    );
    assert_eq!(status_version(&s.receiver).as_deref(), Some("1.0.0"));
    let before = s.receiver.event_count();
    feed_until(&s, "frames classified after the restart", || {
        s.receiver.event_count() > before
    });

    // Past the switch: a kill in the watch window rolls back at the next start.
    std::fs::write(
        &s.agent.config,
        std::fs::read_to_string(&s.agent.config)
            .unwrap()
            .replace("shadow_frames = 1000", "shadow_frames = 1"),
    )
    .unwrap();
    s.agent.stop();
    s.agent.start();
    let package = sign(
        &model_copy(&s.root, "1.0.2", |t| t, |m| m),
        &s.key,
        &s.root.join("out2"),
        &[],
    );
    drop_package(&s.agent, &package);
    feed_until(&s, "1.0.2 serving under watch", || {
        status_version(&s.receiver).as_deref() == Some("1.0.2")
    });
    s.agent.kill();
    s.agent.start();
    wait_until(
        LONG,
        "the watch interrupted, rolled back and reported",
        || {
            update_outcome(&s.receiver).is_some_and(|(v, o, d)| {
                v == "1.0.2"
                    && o == "failed"
                    && d.contains("restarted during the watch step; rolled back")
            })
        },
    );
    assert_eq!(status_version(&s.receiver).as_deref(), Some("1.0.0"));
}

/// The step `models/update.json` says an update is at, if one is under way.
fn recorded_step(agent: &Agent) -> Option<String> {
    let text = std::fs::read_to_string(agent.dir.join("state/models/update.json")).ok()?;
    let record: serde_json::Value = serde_json::from_str(&text).ok()?;
    record["step"].as_str().map(String::from)
}

#[test]
fn a_kill_at_the_verify_load_or_switch_step_leaves_a_working_model_and_a_report() {
    let mut s = setup("shadow_frames = 1\nwatch_frames = 1000\n");
    wait_until(LONG, "the agent's first status", || {
        status_version(&s.receiver).is_some()
    });
    for (n, step) in ["verify", "load", "switch"].into_iter().enumerate() {
        // The agent stops at the step's failpoint (it sleeps there), and is killed there.
        s.agent.stop();
        let failpoint = format!("update-{step}=sleep(600000)");
        s.agent
            .start_with_env(&[("FAILPOINTS", failpoint.as_str())]);
        let version = format!("1.0.{}", n + 1);
        let package = sign(
            &model_copy(&s.root, &version, |t| t, |m| m),
            &s.key,
            &s.root.join(format!("out-{step}")),
            &[],
        );
        drop_package(&s.agent, &package);
        feed_until(
            &s,
            &format!("the update stopped at its {step} step"),
            || recorded_step(&s.agent).as_deref() == Some(step),
        );
        s.agent.kill();
        s.agent.start();
        wait_until(LONG, &format!("the kill at {step} reported"), || {
            // Before its signature is checked, a dropped package has no version to trust.
            update_outcome(&s.receiver).is_some_and(|(v, o, d)| {
                (v == version || (step == "verify" && v == "?"))
                    && o == "failed"
                    && d.contains(&format!("restarted during the {step} step"))
            })
        });
        assert_eq!(
            status_version(&s.receiver).as_deref(),
            Some("1.0.0"),
            "after a kill at {step}"
        );
        let before = s.receiver.event_count();
        feed_until(
            &s,
            &format!("frames classified after the kill at {step}"),
            || s.receiver.event_count() > before,
        );
        assert_eq!(recorded_step(&s.agent), None, "update.json cleared");
        let processing = s.agent.dir.join("state/updates/processing");
        let left: Vec<_> = std::fs::read_dir(&processing)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "packages left in processing/: {left:?}");
    }
}
