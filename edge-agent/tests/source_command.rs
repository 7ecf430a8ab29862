//! The command source against real processes: a program writing JPEGs to its standard
//! output (here `sh` and `cat` over the sample photos, saved as a webcam sends them;
//! ffmpeg's test source and a video made from the samples where ffmpeg is installed),
//! rate limiting, a program that dies mid-stream and is started again with back-off,
//! its stderr in the log, and a stop that leaves no process behind. Every wait has a
//! deadline.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_agent::source::command::{spawn_command_source, CommandSourceConfig};
use edge_agent::source::mjpeg::{normalize_frame, strip_huffman_tables};
use edge_agent::source::{SourceError, SourceFrame, SourceHandle};
use test_support::wait_until;

const DEADLINE: Duration = Duration::from_secs(20);

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/samples")
}

/// The JPEG samples saved as a webcam sends them (no Huffman tables), in `dir`.
fn webcam_frames(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    ["chelsea.jpg", "hubble.jpg", "rocket.jpg", "astronaut.jpg"]
        .iter()
        .map(|name| {
            let bytes = std::fs::read(samples().join(name)).unwrap();
            let frame = strip_huffman_tables(&bytes).unwrap();
            let path = dir.join(name);
            std::fs::write(&path, &frame).unwrap();
            (path, frame)
        })
        .collect()
}

fn sh(script: &str) -> CommandSourceConfig {
    CommandSourceConfig {
        fps: 60.0,
        restart_min: Duration::from_millis(100),
        restart_max: Duration::from_millis(400),
        ..CommandSourceConfig::new(&["sh", "-c", script])
    }
}

fn start(config: CommandSourceConfig) -> (SourceHandle, Receiver<SourceFrame>) {
    config.validate().unwrap();
    let (tx, rx) = sync_channel(4);
    (spawn_command_source(config, tx).unwrap(), rx)
}

fn next(rx: &Receiver<SourceFrame>) -> SourceFrame {
    rx.recv_timeout(DEADLINE)
        .expect("a frame within the deadline")
}

/// The log lines of this test process, shared by its tests (one per process under
/// nextest, all of them under `cargo test`: each looks for lines only it causes).
fn capture_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOG.get_or_init(install_log_capture).clone()
}

fn install_log_capture() -> Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .try_init();
    buf
}

fn log_text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

/// Alive: exists and is not a zombie waiting for a parent that is not us.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[test]
fn frames_written_to_stdout_arrive_whole_with_their_tables_restored() {
    let dir = tempfile::tempdir().unwrap();
    let frames = webcam_frames(dir.path());
    let script: String = frames
        .iter()
        .map(|(p, _)| format!("cat '{}'; sleep 0.1; ", p.display()))
        .collect::<String>()
        + "sleep 100";
    let (handle, rx) = start(CommandSourceConfig {
        name: Some("pi-cam".into()),
        ..sh(&script)
    });
    for (path, raw) in &frames {
        let f = next(&rx);
        assert!(f.name.starts_with("pi-cam-"), "{}", f.name);
        assert_eq!(f.bytes, normalize_frame(raw).unwrap(), "{}", path.display());
        edge_agent::preprocess::decode(&f.bytes).unwrap();
    }
    let t0 = Instant::now();
    handle.stop().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[test]
fn frames_beyond_the_rate_are_read_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = webcam_frames(dir.path()).remove(0);
    // About 50 frames a second, taken at 5.
    let script = format!("while :; do cat '{}'; sleep 0.02; done", path.display());
    let (handle, rx) = start(CommandSourceConfig {
        fps: 5.0,
        ..sh(&script)
    });
    let first = next(&rx);
    let times: Vec<u64> = (0..5).map(|_| next(&rx).captured_at_ms).collect();
    let span = times[4] - first.captured_at_ms;
    assert!(span >= 900, "5 intervals of 200 ms took {span} ms");
    handle.stop().unwrap();
}

#[test]
fn a_command_that_dies_mid_stream_is_started_again_and_its_cut_frame_dropped() {
    let log = capture_log();
    let dir = tempfile::tempdir().unwrap();
    let frames = webcam_frames(dir.path());
    let (a, b) = (&frames[0], &frames[1]);
    // One whole frame, then half of the next, then the program dies.
    let script = format!(
        "cat '{}'; head -c {} '{}'; exit 3",
        a.0.display(),
        b.1.len() / 2,
        b.0.display()
    );
    let (handle, rx) = start(sh(&script));
    let want = normalize_frame(&a.1).unwrap();
    for run in 0..3 {
        assert!(next(&rx).bytes == want, "run {run}: the whole frame only");
    }
    handle.stop().unwrap();
    let text = log_text(&log);
    assert!(
        text.contains("the command exited (exit status: 3) after 1 frames; starting it again"),
        "{text}"
    );
    assert!(text.contains("ended in the middle of a frame"), "{text}");
}

#[test]
fn the_commands_stderr_goes_to_the_log_escaped_line_by_line() {
    let log = capture_log();
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = webcam_frames(dir.path()).remove(0);
    let script = format!(
        "echo 'hello from stderr' >&2; printf 'frame=1\\rframe=2\\n\\033[31mred\\n' >&2; cat '{}'; sleep 100",
        path.display()
    );
    let (handle, rx) = start(CommandSourceConfig {
        name: Some("cam0".into()),
        ..sh(&script)
    });
    next(&rx);
    wait_until(DEADLINE, "stderr in the log", || {
        log_text(&log).contains("\\x1b[31mred")
    });
    handle.stop().unwrap();
    let text = log_text(&log);
    for line in [
        "stderr: hello from stderr",
        "stderr: frame=1",
        "stderr: frame=2",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(text.contains("source=cam0"), "{text}");
}

#[test]
fn stop_kills_the_command_and_what_it_started_and_leaves_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = webcam_frames(dir.path()).remove(0);
    let pids = dir.path().join("pids");
    // A shell that starts a child of its own, as a wrapper script would.
    let script = format!(
        "sleep 1000 & echo $$ $! > '{}'; cat '{}'; wait",
        pids.display(),
        path.display()
    );
    let (handle, rx) = start(sh(&script));
    next(&rx);
    let pids: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.iter().all(|&p| alive(p)), "{pids:?} running");
    let t0 = Instant::now();
    handle.stop().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    wait_until(DEADLINE, "the shell and its sleep gone", || {
        pids.iter().all(|&p| !alive(p))
    });
}

#[test]
fn a_command_that_goes_silent_is_killed_and_started_again() {
    let log = capture_log();
    let dir = tempfile::tempdir().unwrap();
    let (path, raw) = webcam_frames(dir.path()).remove(0);
    // One frame, then silence, as ffmpeg waiting on a camera that stopped sending.
    let script = format!("cat '{}'; exec sleep 1000", path.display());
    let (handle, rx) = start(CommandSourceConfig {
        stall_timeout: Duration::from_millis(500),
        ..sh(&script)
    });
    let want = normalize_frame(&raw).unwrap();
    assert!(next(&rx).bytes == want);
    assert!(next(&rx).bytes == want, "started again");
    handle.stop().unwrap();
    let text = log_text(&log);
    assert!(
        text.contains("the command wrote nothing for 500ms (stall_timeout) after 1 frames"),
        "{text}"
    );
}

#[test]
fn a_command_that_keeps_failing_is_started_again_less_and_less_often() {
    let log = capture_log();
    // Fails at once, every time, and says why on stderr.
    let t0 = Instant::now();
    let (handle, _rx) = start(CommandSourceConfig {
        restart_min: Duration::from_millis(50),
        restart_max: Duration::from_secs(1),
        ..sh("echo 'no camera here (keeps failing)' >&2; exit 1")
    });
    wait_until(DEADLINE, "four runs", || {
        log_text(&log).matches("keeps failing").count() >= 4
    });
    // Waits of 50, 100, 200 ms (less at most 20% jitter) between the four runs; at a
    // fixed 50 ms they would take 150 ms.
    assert!(
        t0.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t0.elapsed()
    );
    handle.stop().unwrap();
    let text = log_text(&log);
    assert!(
        text.contains("the command exited (exit status: 1) after 0 frames; starting it again"),
        "{text}"
    );
}

#[test]
fn a_program_that_does_not_exist_is_an_error_at_start_naming_it() {
    let (tx, _rx) = sync_channel(1);
    let config = CommandSourceConfig::new(&["no-such-camera-tool", "-o", "-"]);
    match spawn_command_source(config, tx) {
        Err(e @ SourceError::Command { .. }) => {
            let text = e.to_string();
            assert!(
                text.starts_with(
                    "command source no-such-camera-tool: no-such-camera-tool: not found in PATH"
                ),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ffmpegs_test_source_gives_frames() {
    if !test_support::tool_available("ffmpeg") {
        return;
    }
    let (handle, rx) = start(CommandSourceConfig {
        fps: 5.0,
        ..CommandSourceConfig::new(&[
            "ffmpeg",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "mjpeg",
            "-",
        ])
    });
    for _ in 0..3 {
        let d = edge_agent::preprocess::decode(&next(&rx).bytes).unwrap();
        assert_eq!((d.width, d.height), (320, 240));
    }
    handle.stop().unwrap();
}

#[test]
fn a_video_made_from_the_samples_plays_and_a_killed_ffmpeg_is_started_again() {
    if !test_support::tool_available("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("samples.avi");
    let status = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-framerate",
            "2",
            "-pattern_type",
            "glob",
            "-i",
        ])
        .arg(samples().join("*.jpg"))
        .args(["-vf", "scale=320:240", "-c:v", "mjpeg"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success());
    // Dies one second in, mid-stream, every run: at most 3 frames a run.
    let log = capture_log();
    let script = format!(
        "timeout -s KILL 1 ffmpeg -loglevel error -re -i '{}' -f mjpeg -",
        video.display()
    );
    let (handle, rx) = start(sh(&script));
    for _ in 0..7 {
        let d = edge_agent::preprocess::decode(&next(&rx).bytes).unwrap();
        assert_eq!((d.width, d.height), (320, 240));
    }
    handle.stop().unwrap();
    let text = log_text(&log);
    assert!(text.matches("command started").count() >= 3, "{text}");
    assert!(
        text.contains("the command exited (exit status: 137)"),
        "{text}"
    );
}

/// The `[[source]]` table: defaults, the example config's commented-out command
/// sources, validation naming the field.
mod settings {
    use std::time::Duration;

    use edge_agent::config::{SourceConfig, DEFAULT_CONFIG};
    use edge_agent::source::command::CommandSourceConfig;

    #[test]
    fn a_minimal_table_gets_the_named_defaults() {
        #[derive(serde::Deserialize)]
        struct File {
            source: Vec<SourceConfig>,
        }
        let f: File = toml::from_str(
            "[[source]]\nkind = \"command\"\ncommand = [\"rpicam-vid\", \"-o\", \"-\"]\n",
        )
        .unwrap();
        let SourceConfig::Command(c) = &f.source[0] else {
            panic!("a command source");
        };
        assert_eq!(c, &CommandSourceConfig::new(&["rpicam-vid", "-o", "-"]));
        assert_eq!(c.source_name(), "rpicam-vid");
        assert_eq!(
            (c.restart_min, c.restart_max),
            (Duration::from_secs(1), Duration::from_secs(30))
        );
    }

    #[test]
    fn the_example_configs_camera_lines_parse_and_validate() {
        // Each commented-out `kind = "command"` table of the example, uncommented.
        let mut found = 0;
        for block in DEFAULT_CONFIG.split("\n\n") {
            if !block.contains("# kind = \"command\"") {
                continue;
            }
            let text: String = block
                .lines()
                .skip_while(|l| *l != "# [[source]]")
                .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
                .collect();
            #[derive(serde::Deserialize)]
            struct File {
                source: Vec<SourceConfig>,
            }
            let f: File = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            f.source[0]
                .validate()
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            found += 1;
        }
        assert!(found >= 3, "the Pi camera, RTSP and USB examples: {found}");
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let field = |c: CommandSourceConfig| c.validate().unwrap_err().field;
        assert_eq!(field(CommandSourceConfig::new(&[])), "command");
        assert_eq!(field(CommandSourceConfig::new(&[""])), "command");
        let ok = CommandSourceConfig::new(&["ffmpeg"]);
        assert_eq!(
            field(CommandSourceConfig {
                fps: 0.0,
                ..ok.clone()
            }),
            "fps"
        );
        assert_eq!(
            field(CommandSourceConfig {
                name: Some("a b".into()),
                ..ok.clone()
            }),
            "name"
        );
        let err = CommandSourceConfig {
            restart_min: Duration::from_secs(10),
            restart_max: Duration::from_secs(1),
            ..ok.clone()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "restart_min");
        assert!(err.message.contains("shorter than the initial"), "{err}");
        assert_eq!(ok.validate(), Ok(()));
    }
}
