//! `edge-agent run` with a folder source (`after = "delete"`), fed the way devices
//! really get frames: JPEGs with a trailer after EOI and webcam frames without Huffman
//! tables, a file really cut short, files finished by a hard link, symlinks, names
//! that are not UTF-8 or hold a newline, a writer that closes, reopens and appends.
//! Every frame must reach the receiver (playing the relay, over a real Mosquitto)
//! under its escaped name, and the broken one must be set aside, never deleted.

mod jpeg_variants;
mod support;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use jpeg_variants::{cut_and_padded, sample, webcam_frame, with_trailer};
use support::{names, Agent, Receiver};
use test_support::{poll_until, wait_until, Mosquitto};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn frames_as_devices_write_them_all_arrive_and_a_broken_one_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::builder().start();
    let receiver = Receiver::start(&broker, "relay");
    let mut agent = Agent::new(dir.path(), &broker, "");
    agent.start();
    wait_until(LONG, "the agent connected", || {
        agent.log().contains("mqtt: connected")
    });
    let inbox = agent.inbox.clone();
    // Every sample used is one the model is unsure about, so each becomes an event.
    let (hubble, rocket, coffee) = (
        sample("hubble.jpg"),
        sample("rocket.jpg"),
        sample("coffee.png"),
    );

    // A motion photo's trailer, and a webcam frame saved as it came.
    fs::write(inbox.join("motion-hubble.jpg"), with_trailer(&hubble)).unwrap();
    fs::write(inbox.join("webcam-rocket.jpg"), webcam_frame(&rocket)).unwrap();
    // Really cut short: refused, and moved aside rather than deleted.
    fs::write(inbox.join("cut.jpg"), cut_and_padded(&rocket)).unwrap();
    // An SFTP-style finish: a temporary name, a hard link, the temporary name removed.
    fs::write(inbox.join("upload.png.filepart"), &coffee).unwrap();
    fs::hard_link(
        inbox.join("upload.png.filepart"),
        inbox.join("linked-coffee.png"),
    )
    .unwrap();
    fs::remove_file(inbox.join("upload.png.filepart")).unwrap();
    // A symlink to a frame kept elsewhere.
    let kept = dir.path().join("kept-rocket.jpg");
    fs::write(&kept, &rocket).unwrap();
    std::os::unix::fs::symlink(&kept, inbox.join("symlinked-rocket.jpg")).unwrap();
    // Names that are not UTF-8, or hold a newline.
    fs::write(
        inbox.join(OsStr::from_bytes(b"caf\xe9-hubble.jpg")),
        &hubble,
    )
    .unwrap();
    fs::write(
        inbox.join(OsStr::from_bytes(b"two\nlines-rocket.jpg")),
        &rocket,
    )
    .unwrap();
    // A writer that closes after half the file, then reopens and appends the rest.
    let appended = inbox.join("appended-coffee.png");
    fs::write(&appended, &coffee[..coffee.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // (Created again if it was taken and deleted at the first close, as it used to be.)
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&appended)
        .unwrap();
    f.write_all(&coffee[coffee.len() / 2..]).unwrap();
    drop(f);

    let want: BTreeSet<String> = [
        "motion-hubble.jpg",
        "webcam-rocket.jpg",
        "linked-coffee.png",
        "symlinked-rocket.jpg",
        "caf\\xe9-hubble.jpg",
        "two\\nlines-rocket.jpg",
        "appended-coffee.png",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let all = poll_until(LONG, || names(&receiver).is_superset(&want));
    assert!(
        all,
        "no event for {:?}",
        want.difference(&names(&receiver)).collect::<Vec<_>>()
    );
    assert_eq!(names(&receiver), want, "and nothing else");

    let rejected = inbox.join("rejected");
    wait_until(LONG, "the cut file set aside", || {
        rejected.join("cut.jpg.reason").exists()
    });
    assert_eq!(
        fs::read(rejected.join("cut.jpg")).unwrap(),
        cut_and_padded(&rocket),
        "kept whole"
    );
    let reason = fs::read_to_string(rejected.join("cut.jpg.reason")).unwrap();
    assert!(
        reason.starts_with("truncated JPEG file: the image data ends early\nrefused at "),
        "{reason}"
    );
    // Every handled file is gone from the inbox (the symlink, not its target).
    wait_until(LONG, "the inbox emptied", || {
        agent.inbox_is_empty_but_rejected()
    });
    assert_eq!(fs::read(&kept).unwrap(), rocket);
    let log = agent.log();
    assert!(log.contains("symlink arrived"), "{log}");
    assert!(
        log.contains("frame refused; its file is set aside"),
        "{log}"
    );
    // The log shows names escaped: one line per record, whatever the name.
    assert!(log.contains("two\\nlines-rocket.jpg"), "{log}");
    assert!(agent.stop(), "clean stop");
}
