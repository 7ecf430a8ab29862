//! LiteRT's first load and self-test in a child process, for `backend = "auto"`.
//!
//! `libLiteRt.so` is foreign code loaded into the agent: one that crashes while it
//! starts (the aarch64 library's CPU detection segfaults under qemu-user, which shows
//! the host's x86 `/proc/cpuinfo`; a library built for a newer CPU dies of SIGILL)
//! would take the agent down with it, and `auto` promises a fall-back to tflite. So
//! before loading it, `auto` runs this executable's hidden `litert-probe` command,
//! which loads the library and runs the model's self-test, and reads how it ended:
//! exit 0 (load it here too), exit 1 with the reason on stderr, killed by a signal
//! (crashed), or still running after [`PROBE_TIMEOUT`] (killed, hung). Only the
//! `edge-agent` binary can probe this way; a program using the library crate loads in
//! process, as before.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden subcommand the child runs.
pub const PROBE_COMMAND: &str = "litert-probe";

/// How long loading LiteRT and one self-test inference may take in the child.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the probe for `library` with the model at `manifest`: `Ok(())` when the child
/// loaded it and passed the self-test (or when this process is not `edge-agent`, which
/// cannot probe), else why not, in one sentence.
pub fn probe(library: &Path, manifest: &Path, threads: usize) -> Result<(), String> {
    let Ok(exe) = std::env::current_exe() else {
        return Ok(());
    };
    if exe.file_name().and_then(|n| n.to_str()) != Some("edge-agent") {
        return Ok(());
    }
    let mut child = Command::new(&exe)
        .arg(PROBE_COMMAND)
        .arg("--litert-library")
        .arg(library)
        .arg("--model")
        .arg(manifest)
        .arg("--threads")
        .arg(threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {} {PROBE_COMMAND}: {e}", exe.display()))?;
    let mut stderr = child.stderr.take().expect("piped");
    // The child writes at most a line or two; read it on a thread so a full pipe can
    // never block the child while we wait for it.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish loading and its self-test within {} s (killed)",
                    library.display(),
                    PROBE_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for {PROBE_COMMAND}: {e}")),
        }
    };
    let said = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        return Err(format!(
            "{} crashed (signal {signal}, {}) while loading or running the self-test, in a child process",
            library.display(),
            signal_name(signal)
        ));
    }
    let reason = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no reason given")
        .trim()
        .trim_start_matches("edge-agent: ")
        .to_owned();
    Err(reason)
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGILL => "SIGILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        _ => "a signal",
    }
}
