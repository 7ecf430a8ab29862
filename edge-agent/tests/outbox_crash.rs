//! Crash test of the durable outbox: a writer process puts numbered events as fast
//! as it can and prints each id once the call has returned; the test SIGKILLs it
//! mid-stream after N acknowledged ids, reopens the file and checks that every
//! acknowledged event (and every acknowledged state change) is there, byte for
//! byte, and that the database is intact. Several rounds on the same file.
//!
//! The writer is this very test binary, re-executed with an environment variable
//! that makes the otherwise empty `outbox_writer_process` test do the writing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edge_agent::outbox::{Outbox, OutboxConfig, State};

const WRITER_PATH_ENV: &str = "EDGE_AGENT_OUTBOX_CRASH_WRITER_PATH";
const WRITER_START_ENV: &str = "EDGE_AGENT_OUTBOX_CRASH_WRITER_START";
const ROUND_DEADLINE: Duration = Duration::from_secs(120);

fn event_id(n: u64) -> String {
    format!("ev-{n:010}")
}

/// Deterministic payloads, so the checker can compare bytes: 1-3 chunks of
/// 1..=6000 bytes each.
fn payloads_for(n: u64) -> Vec<Vec<u8>> {
    (0..=(n % 3))
        .map(|c| {
            let len = ((n * 7919 + c * 104_729) % 6000 + 1) as usize;
            (0..len)
                .map(|i| (n as usize + c as usize * 31 + i) as u8)
                .collect()
        })
        .collect()
}

/// Event n is marked published (PUBACK) after its put when n % 3 == 0, and
/// receipted (removed) after that when n % 5 == 0.
fn is_published(n: u64) -> bool {
    n.is_multiple_of(3)
}
fn is_receipted(n: u64) -> bool {
    n.is_multiple_of(5)
}

/// Not a test on its own: does nothing unless re-executed by
/// `sigkilled_writer_loses_no_acknowledged_outbox_event`, then writes until killed.
#[test]
fn outbox_writer_process() {
    let Ok(path) = std::env::var(WRITER_PATH_ENV) else {
        return;
    };
    let start: u64 = std::env::var(WRITER_START_ENV).unwrap().parse().unwrap();
    let mut outbox = Outbox::open(&path, OutboxConfig::default()).unwrap();
    // Straight to the file descriptor, past the test harness's output capture.
    // The harness may have printed "test outbox_writer_process ... " without a
    // newline: start on a fresh line so the first ack is a line of its own.
    let mut out = std::io::stdout().lock();
    writeln!(out).unwrap();
    for n in start.. {
        let id = event_id(n);
        outbox.put(&id, &payloads_for(n), n).unwrap();
        writeln!(out, "ack put {n}").unwrap();
        out.flush().unwrap();
        if is_published(n) {
            outbox.published(&id, n, 0.5).unwrap().unwrap();
            writeln!(out, "ack pub {n}").unwrap();
            out.flush().unwrap();
        }
        if is_receipted(n) {
            assert!(outbox.receipt(&id).unwrap());
            writeln!(out, "ack rcp {n}").unwrap();
            out.flush().unwrap();
        }
    }
}

/// What the writer reported as done, by event number.
#[derive(Default)]
struct Acked {
    put: Vec<u64>,
    published: Vec<u64>,
    receipted: Vec<u64>,
}

impl Acked {
    fn record(&mut self, line: &str) {
        let Some((what, n)) = line.strip_prefix("ack ").and_then(|l| l.split_once(' ')) else {
            return;
        };
        let Ok(n) = n.parse::<u64>() else { return };
        match what {
            "put" => self.put.push(n),
            "pub" => self.published.push(n),
            "rcp" => self.receipted.push(n),
            _ => {}
        }
    }
}

/// Runs one writer from `start`, SIGKILLs it once it has acknowledged `kill_after`
/// puts, and returns everything it acknowledged before dying.
fn run_writer_and_kill(path: &Path, start: u64, kill_after: usize) -> Acked {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "outbox_writer_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_PATH_ENV, path)
        .env(WRITER_START_ENV, start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut acked = Acked::default();
    let deadline = Instant::now() + ROUND_DEADLINE;
    while acked.put.len() < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => acked.record(&line),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!(
                    "writer gave {} of {kill_after} acks before {e:?}; it exited with {status}",
                    acked.put.len()
                );
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the writer must die by SIGKILL mid-stream, not exit: {status}"
    );
    // Lines it printed between our count and its death were acknowledged too.
    reader.join().unwrap();
    for line in rx.try_iter() {
        acked.record(&line);
    }
    acked
}

#[test]
fn sigkilled_writer_loses_no_acknowledged_outbox_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    let mut expected: HashMap<u64, Option<State>> = HashMap::new();
    let mut maybe_receipted: Vec<u64> = Vec::new();

    for (round, kill_after) in [1usize, 17, 60, 150, 300, 500].into_iter().enumerate() {
        let start = round as u64 * 1_000_000;
        let acked = run_writer_and_kill(&path, start, kill_after);
        assert!(acked.put.len() >= kill_after);
        assert_eq!(
            acked.put,
            (start..start + acked.put.len() as u64).collect::<Vec<_>>()
        );
        for &n in &acked.put {
            expected.insert(n, Some(State::ToSend));
            // A receipt may have committed just before the kill without being
            // printed: such an event may be present or gone, nothing else.
            if is_receipted(n) {
                maybe_receipted.push(n);
            }
        }
        for &n in &acked.published {
            expected.insert(n, Some(State::AwaitingReceipt { next_attempt_at: 0 }));
        }
        for &n in &acked.receipted {
            expected.insert(n, None);
        }

        let outbox = Outbox::open(&path, OutboxConfig::default())
            .unwrap_or_else(|e| panic!("round {round}: reopen after SIGKILL failed: {e}"));
        outbox
            .check_integrity()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        for (&n, want) in &expected {
            let got = outbox.get(&event_id(n)).unwrap();
            match (want, got) {
                (None, None) => {}
                (None, Some(_)) => panic!("round {round}: receipted event {n} is back"),
                (Some(_), None) if maybe_receipted.contains(&n) => {}
                (Some(_), None) => panic!("round {round}: acknowledged event {n} was lost"),
                (Some(want), Some(entry)) => {
                    assert_eq!(entry.payloads, payloads_for(n), "event {n} payload");
                    assert_eq!(entry.created_at, n);
                    match want {
                        State::ToSend => {} // published or not: both were possible
                        State::SetAside { .. } => unreachable!("the writer never sets aside"),
                        State::AwaitingReceipt { .. } => {
                            assert!(
                                matches!(entry.state, State::AwaitingReceipt { .. }),
                                "event {n}: acknowledged PUBACK lost: {:?}",
                                entry.state
                            );
                            assert_eq!(entry.attempts, 1);
                        }
                    }
                }
            }
        }
        let depths = outbox.depths().unwrap();
        assert_eq!(depths.dropped, 0);
        eprintln!(
            "round {round}: killed after {} acknowledged puts; outbox holds {} to send, {} \
             awaiting receipt",
            acked.put.len(),
            depths.to_send,
            depths.awaiting_receipt
        );
    }
}
