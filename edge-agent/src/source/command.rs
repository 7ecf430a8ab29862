//! The command source: frames from a program that writes an MJPEG stream to its
//! standard output, the way most cameras are reached today: the Raspberry Pi camera
//! through libcamera (`rpicam-vid --codec mjpeg -o -`), an IP camera over RTSP
//! (`ffmpeg -i rtsp://... -f mjpeg -`), anything GStreamer can open
//! (`gst-launch-1.0 -q ... ! jpegenc ! fdsink`), a USB webcam through ffmpeg's v4l2 input.
//!
//! The program is started without a shell (`command` is its argv), in a process group
//! of its own, with its standard input closed. Its output is cut into frames by
//! [`MjpegSplitter`]; frames are kept at `fps` by the camera's [`RateLimiter`] (after
//! `warmup_frames`), made standalone by [`normalize_frame`] (standard Huffman tables
//! inserted when missing) and sent with back-pressure. Each line it writes to stderr
//! goes to the agent's log, escaped, under the source's name. When it exits (or closes
//! its output), or writes nothing for `stall_timeout` (killed then), it is started
//! again after a back-off (`restart_min` doubling to `restart_max`, reset once a run
//! has produced a frame: `protocol::backoff`, the one helper). On stop, the whole
//! process group gets SIGTERM, then SIGKILL after
//! [`KILL_GRACE`], and is reaped; if the agent itself dies, the kernel sends the
//! program SIGTERM (`PR_SET_PDEATHSIG`), so no orphan keeps a camera open.

use std::io::{self, BufRead, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use protocol::backoff::{jitter_sample, Backoff, Retries};
use serde::{Deserialize, Serialize};

use super::camera::{RateLimiter, MAX_FPS};
use super::mjpeg::normalize_frame;
use super::mjpeg_stream::MjpegSplitter;
use super::{now_ms, send_frame, Sent, SourceError, SourceFrame, SourceHandle, StopSignal, Wake};

/// A `[[source]]` table with `kind = "command"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSourceConfig {
    /// The program and its arguments, run without a shell (for a pipeline, write
    /// `["sh", "-c", "..."]`). It must write JPEG frames to its standard output.
    pub command: Vec<String>,
    /// Names the source in logs and its frames (`<name>-<ms>-<n>.jpg`); default: the
    /// program's file name.
    #[serde(default)]
    pub name: Option<String>,
    /// Frames taken per second; the ones in between are read and dropped.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Frames dropped after each start, while the camera's exposure settles.
    #[serde(default)]
    pub warmup_frames: u32,
    /// The first wait before starting the program again after it exited.
    #[serde(default = "default_restart_min", with = "humantime_serde")]
    pub restart_min: Duration,
    /// The longest such wait (each failed run doubles it).
    #[serde(default = "default_restart_max", with = "humantime_serde")]
    pub restart_max: Duration,
    /// A frame larger than this without an end is dropped (bounded memory).
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// A program that writes nothing for this long is taken for hung (an RTSP camera
    /// that went silent while ffmpeg waits on its socket) and started again; `"0s"`:
    /// never. Raise it for a script that writes one frame a minute.
    #[serde(default = "default_stall_timeout", with = "humantime_serde")]
    pub stall_timeout: Duration,
}

pub fn default_fps() -> f64 {
    1.0
}
pub fn default_restart_min() -> Duration {
    Duration::from_secs(1)
}
pub fn default_restart_max() -> Duration {
    Duration::from_secs(30)
}
pub fn default_max_frame_bytes() -> usize {
    16 * 1024 * 1024
}
pub fn default_stall_timeout() -> Duration {
    Duration::from_secs(60)
}

/// How long a stopped program has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// A command source setting that cannot work; displayed as `field: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CommandConfigError {
    pub field: &'static str,
    pub message: String,
}

impl CommandSourceConfig {
    /// A config with every default, running `argv`.
    pub fn new(argv: &[&str]) -> Self {
        CommandSourceConfig {
            command: argv.iter().map(|s| s.to_string()).collect(),
            name: None,
            fps: default_fps(),
            warmup_frames: 0,
            restart_min: default_restart_min(),
            restart_max: default_restart_max(),
            max_frame_bytes: default_max_frame_bytes(),
            stall_timeout: default_stall_timeout(),
        }
    }

    /// Checks the settings without running anything.
    pub fn validate(&self) -> Result<(), CommandConfigError> {
        let err = |field, message: String| Err(CommandConfigError { field, message });
        match self.command.first() {
            None => {
                return err(
                    "command",
                    "must name a program, e.g. [\"rpicam-vid\", ...]".into(),
                )
            }
            Some(p) if p.is_empty() => return err("command", "the program name is empty".into()),
            Some(_) => {}
        }
        if let Some(name) = &self.name {
            let ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
            if name.is_empty() || name.len() > 64 || !name.chars().all(ok) {
                return err(
                    "name",
                    format!("{name:?}: 1-64 letters, digits, '-', '_' or '.'"),
                );
            }
        }
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= MAX_FPS) {
            return err(
                "fps",
                format!("must be > 0 and <= {MAX_FPS}, got {}", self.fps),
            );
        }
        if self.warmup_frames > 1000 {
            return err(
                "warmup_frames",
                format!("must be <= 1000, got {}", self.warmup_frames),
            );
        }
        if let Err(e) = Backoff::new(self.restart_min, self.restart_max).validate() {
            return err("restart_min", e);
        }
        if self.max_frame_bytes < 1024 {
            return err(
                "max_frame_bytes",
                format!("must be at least 1024, got {}", self.max_frame_bytes),
            );
        }
        Ok(())
    }

    /// The name logs and frames use.
    pub fn source_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let program = self
                .command
                .first()
                .map(String::as_str)
                .unwrap_or("command");
            Path::new(program)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "command".into())
        })
    }
}

/// Where `program` would be run from: itself if it names a path, else the first
/// executable file of that name in `$PATH`.
pub fn find_program(program: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return if runnable(Path::new(program)) {
            Ok(PathBuf::from(program))
        } else {
            Err(format!("{program}: not an executable file"))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| runnable(p))
        .ok_or_else(|| format!("{program}: not found in PATH ({})", path.to_string_lossy()))
}

/// Starts the source: the program must exist now (an error at start, naming it); it
/// is run, and run again after it exits, on the source's thread until stopped.
pub fn spawn_command_source(
    config: CommandSourceConfig,
    tx: SyncSender<SourceFrame>,
) -> Result<SourceHandle, SourceError> {
    let name = config.source_name();
    find_program(&config.command[0]).map_err(|message| SourceError::Command {
        name: name.clone(),
        message,
    })?;
    SourceHandle::spawn(format!("command-source:{name}"), move |stop| {
        run_command_source(&config, &tx, &stop);
        Ok(())
    })
}

/// How one run of the program ended.
enum RunEnd {
    Stopped,
    ConsumerGone,
    Exited {
        status: Option<ExitStatus>,
        frames: u64,
    },
    /// Silent for `stall_timeout`: killed.
    Stalled {
        frames: u64,
    },
}

/// Runs the program again and again (with back-off) until stopped or the consumer goes.
fn run_command_source(
    config: &CommandSourceConfig,
    tx: &SyncSender<SourceFrame>,
    stop: &StopSignal,
) {
    let name = config.source_name();
    let mut retries =
        Retries::new(Backoff::new(config.restart_min, config.restart_max).with_jitter(0.2));
    let mut limiter = RateLimiter::new(config.fps);
    let clock = Instant::now();
    let mut seq = 0u64;
    loop {
        let why = match run_once(config, &name, tx, stop, &mut limiter, clock, &mut seq) {
            Ok(RunEnd::Stopped | RunEnd::ConsumerGone) => return,
            Ok(RunEnd::Exited { status, frames }) => {
                if frames > 0 {
                    retries.reset();
                }
                let status = status.map_or("no exit status".into(), |s| s.to_string());
                format!("the command exited ({status}) after {frames} frames")
            }
            Ok(RunEnd::Stalled { frames }) => {
                if frames > 0 {
                    retries.reset();
                }
                format!(
                    "the command wrote nothing for {:?} (stall_timeout) after {frames} frames; killed it",
                    config.stall_timeout
                )
            }
            Err(e) => format!("cannot run the command: {e}"),
        };
        let delay = retries.next_delay(jitter_sample());
        tracing::warn!(source = %name, restart_in = ?delay, "{why}; starting it again");
        if stop.wait(delay) {
            return;
        }
    }
}

/// One run of the program: reads its frames until it ends, the source is stopped or
/// the consumer goes away.
fn run_once(
    config: &CommandSourceConfig,
    name: &str,
    tx: &SyncSender<SourceFrame>,
    stop: &StopSignal,
    limiter: &mut RateLimiter,
    clock: Instant,
    seq: &mut u64,
) -> io::Result<RunEnd> {
    let mut child = Running::start(&config.command, name)?;
    tracing::info!(source = %name, pid = child.pid(), "command started");
    let mut splitter = MjpegSplitter::new(config.max_frame_bytes);
    let mut warmup_left = config.warmup_frames;
    let mut frames = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let stall = (!config.stall_timeout.is_zero()).then_some(config.stall_timeout);
    loop {
        match stop.wait_readable(child.stdout.as_raw_fd(), stall) {
            Wake::Stopped => return Ok(RunEnd::Stopped), // `child` is killed as it drops
            Wake::TimedOut => {
                child.kill_and_reap();
                return Ok(RunEnd::Stalled { frames });
            }
            Wake::Ready => {}
        }
        let n = match child.stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(source = %name, error = %e, "reading the command's output");
                break;
            }
        };
        splitter.push(&buf[..n]);
        while let Some(piece) = splitter.next_frame() {
            let raw = match piece {
                Ok(raw) => raw,
                Err(dropped) => {
                    tracing::warn!(source = %name, "{dropped}");
                    continue;
                }
            };
            frames += 1;
            if warmup_left > 0 {
                warmup_left -= 1;
                continue;
            }
            let at = clock.elapsed();
            if !limiter.is_due(at) {
                continue;
            }
            let bytes = match normalize_frame(&raw) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "dropping a bad frame");
                    continue;
                }
            };
            limiter.taken(at);
            *seq += 1;
            let captured_at_ms = now_ms();
            let frame = SourceFrame {
                name: format!("{name}-{captured_at_ms}-{seq}.jpg"),
                path: None,
                bytes,
                captured_at_ms,
            };
            match send_frame(tx, frame, stop) {
                Sent::Delivered => {}
                Sent::Stopped => return Ok(RunEnd::Stopped),
                Sent::Disconnected => return Ok(RunEnd::ConsumerGone),
            }
        }
    }
    if splitter.pending() > 0 {
        tracing::warn!(source = %name, bytes = splitter.pending(), "the command's output ended in the middle of a frame; dropped it");
    }
    let status = child.finish(stop);
    Ok(RunEnd::Exited { status, frames })
}

/// A started program: its stdout to read; killed with its process group and reaped
/// when dropped.
struct Running {
    child: Child,
    stdout: ChildStdout,
    /// Reaped and its group signalled a last time: its ids may be reused now, so no
    /// more signals.
    done: bool,
}

impl Running {
    fn start(argv: &[String], name: &str) -> io::Result<Running> {
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours. The death
        // signal follows the thread that forks: this source thread, which outlives the
        // child (it kills and reaps it before it ends).
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().expect("piped");
        if let Some(stderr) = child.stderr.take() {
            let name = name.to_string();
            // Ends at the end of the pipe, when the program and its children are gone.
            let _ = std::thread::Builder::new()
                .name(format!("command-stderr:{name}"))
                .spawn(move || log_stderr(&name, stderr));
        }
        Ok(Running {
            child,
            stdout,
            done: false,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// After the program closed its output: its exit status, waiting briefly for it
    /// to exit by itself before it is killed.
    fn finish(mut self, stop: &StopSignal) -> Option<ExitStatus> {
        let deadline = Instant::now() + KILL_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.reaped();
                return Some(status);
            }
            if stop.wait(Duration::from_millis(10)) {
                break;
            }
        }
        self.kill_and_reap()
    }

    fn signal_group(&self, signal: libc::c_int) {
        if !self.done {
            // SAFETY: kill(2) on the process group this program leads (process_group(0)),
            // which exists while its leader is not reaped or members remain.
            unsafe {
                libc::kill(-(self.child.id() as libc::pid_t), signal);
            }
        }
    }

    /// The leader is reaped: whatever it left in its group is killed, once.
    fn reaped(&mut self) {
        self.signal_group(libc::SIGKILL);
        self.done = true;
    }

    /// SIGTERM to the group, SIGKILL after the grace period, then reaped.
    fn kill_and_reap(&mut self) -> Option<ExitStatus> {
        if self.done {
            return self.child.try_wait().ok().flatten();
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            self.reaped();
            return Some(status);
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + KILL_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.reaped();
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.signal_group(libc::SIGKILL);
        let status = self.child.wait().ok();
        self.done = true;
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Each line the program writes to stderr (`\n` or `\r`, as ffmpeg's progress line
/// ends), escaped, into the agent's log; very long lines are cut at 4 KiB.
fn log_stderr(name: &str, stderr: impl Read) {
    let mut reader = io::BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let (used, end) = match buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = 4096usize.saturating_sub(line.len());
        line.extend_from_slice(&buf[..used.min(room)]);
        reader.consume(used);
        if end || line.len() >= 4096 {
            emit(name, &line);
            line.clear();
        }
    }
    emit(name, &line);
}

fn emit(name: &str, line: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let text = std::ffi::OsStr::from_bytes(line.trim_ascii());
    if !text.is_empty() {
        tracing::info!(source = %name, "stderr: {}", protocol::file_name::escaped(text));
    }
}
