//! The daemon when its storage misbehaves, end to end with the real `edge-agent run`,
//! a real Mosquitto and a receiver playing the relay (see `support/`):
//! - a corrupt outbox file (SD cards lie about fsync) is moved aside at start-up, what
//!   still reads is salvaged and delivered, and the count is in the status;
//! - a full disk holds frames (and intake) until space is freed, then everything
//!   arrives without a restart; a shutdown meanwhile leaves the frame for next time.

mod support;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use protocol::status::StorageState;
use support::{drop_frame, drop_samples, names, Agent, Receiver};
use test_support::{wait_until, Mosquitto};

const LONG: Duration = Duration::from_secs(60);

fn quarantined_files(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("outbox.sqlite.corrupt-"))
        .collect()
}

#[test]
fn a_corrupt_outbox_is_moved_aside_its_readable_events_delivered_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    broker.kill(); // nothing leaves: every selected event stays in the outbox
    agent.start();
    let mut stored = drop_samples(&agent, "a");
    stored.extend(drop_samples(&agent, "b"));
    let n = stored.len();
    wait_until(LONG, "every selected frame stored", || {
        agent.log().matches("selected for review").count() == n && agent.inbox_is_empty()
    });
    assert!(agent.stop());

    // Three pages of garbage in the middle of the image payloads.
    let state = dir.path().join("state");
    let file = state.join("outbox.sqlite");
    let pages = std::fs::metadata(&file).unwrap().len() / 4096;
    assert!(pages > 100, "{pages} pages");
    let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.seek(SeekFrom::Start(pages / 2 * 4096)).unwrap();
    f.write_all(&vec![0xa5; 3 * 4096]).unwrap();
    f.sync_all().unwrap();
    drop(f);

    broker.start();
    agent.start();
    wait_until(
        LONG,
        "the recovery in the status and an empty outbox",
        || {
            receiver.status().is_some_and(|s| {
                s.outbox.salvaged + s.outbox.lost == n as u64
                    && s.outbox.to_send == 0
                    && s.outbox.awaiting_receipt == 0
            })
        },
    );
    let status = receiver.status().unwrap();
    assert!(status.outbox.lost > 0, "{:?}", status.outbox);
    wait_until(LONG, "every salvaged event delivered", || {
        names(&receiver).len() as u64 == status.outbox.salvaged
    });
    assert!(names(&receiver).is_subset(&stored));
    assert_eq!(
        quarantined_files(&state).len(),
        1,
        "the corrupt file kept aside"
    );
    assert!(
        agent.log().contains("outbox was corrupt"),
        "{}",
        agent.log()
    );

    // And the agent goes on: new frames arrive.
    let more = drop_samples(&agent, "c");
    wait_until(LONG, "frames taken after the recovery", || {
        more.is_subset(&names(&receiver))
    });
    assert!(agent.stop());
}

/// A tmpfs of `mib` MiB mounted at a path; unmounted on drop. Needs root.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, mib: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs at {}", at.display());
        Some(SmallDisk(at.to_path_buf()))
    }

    /// Writes a filler file until the file system says ENOSPC.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 16 * 1024];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn storage_is(receiver: &Receiver, state: StorageState) -> bool {
    receiver.status().is_some_and(|s| s.storage.state == state)
}

#[test]
fn a_full_disk_holds_frames_until_space_is_freed_then_everything_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("state"), 8) else {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    };
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    agent.start();
    wait_until(LONG, "the agent online", || {
        storage_is(&receiver, StorageState::Ok)
    });

    disk.fill();
    let expected = drop_samples(&agent, "a");
    wait_until(LONG, "disk_full in the status", || {
        storage_is(&receiver, StorageState::DiskFull)
    });
    let status = receiver.status().unwrap();
    assert!(status.storage.since.is_some());
    assert!(
        status
            .storage
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("disk is full"),
        "{:?}",
        status.storage
    );
    assert!(
        !agent.inbox_is_empty(),
        "the held frame's file is still there"
    );

    disk.free();
    wait_until(LONG, "every selected frame, without a restart", || {
        names(&receiver) == expected
    });
    wait_until(LONG, "storage ok again", || {
        storage_is(&receiver, StorageState::Ok)
    });
    wait_until(LONG, "the inbox emptied", || agent.inbox_is_empty());
    let log = agent.log();
    assert_eq!(log.matches("holding it and retrying").count(), 1, "{log}");
    assert_eq!(log.matches("outbox writable again").count(), 1, "{log}");

    // Shut down while waiting for space: the frame's file stays for the next start.
    disk.fill();
    drop_frame(&agent.inbox, "b-coffee.png", "coffee.png");
    wait_until(LONG, "disk_full again", || {
        storage_is(&receiver, StorageState::DiskFull)
    });
    assert!(agent.stop(), "a clean exit while waiting");
    assert!(agent.inbox.join("b-coffee.png").exists());
    disk.free();
    agent.start();
    wait_until(LONG, "the held frame delivered after the restart", || {
        names(&receiver).contains("b-coffee.png")
    });
    assert!(agent.stop());
}
