//! Every way a file arrives in the watched folder, against real inotify: the writers
//! people use (run for real where installed here), hard links, symlinks, names that
//! are not UTF-8, and what becomes of a refused file. Every wait has a deadline; an
//! absence is observed over a bounded quiet period.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use edge_agent::source::folder::{
    finish, reject, spawn_folder_source, AfterProcessing, FolderSourceConfig, REJECTED_DIR,
};
use edge_agent::source::{SourceFrame, SourceHandle};

const DEADLINE: Duration = Duration::from_secs(10);
/// Longer than the settle time used here, so "nothing yet" means something.
const QUIET: Duration = Duration::from_millis(700);
const SETTLE: Duration = Duration::from_millis(400);

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    inbox: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let inbox = root.join("inbox");
    fs::create_dir(&inbox).unwrap();
    Fixture {
        _dir: dir,
        root,
        inbox,
    }
}

fn config(inbox: &Path) -> FolderSourceConfig {
    FolderSourceConfig {
        settle: SETTLE,
        ..FolderSourceConfig::new(inbox)
    }
}

fn start(config: FolderSourceConfig) -> (SourceHandle, Receiver<SourceFrame>) {
    config.validate().unwrap();
    let (tx, rx) = sync_channel(4);
    (spawn_folder_source(config, tx).unwrap(), rx)
}

fn next(rx: &Receiver<SourceFrame>) -> SourceFrame {
    rx.recv_timeout(DEADLINE)
        .expect("a frame within the deadline")
}

fn assert_quiet(rx: &Receiver<SourceFrame>) {
    match rx.recv_timeout(QUIET) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok(f) => panic!("unexpected frame {} ({} bytes)", f.name, f.bytes.len()),
        Err(e) => panic!("{e}"),
    }
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn a_file_finished_by_a_hard_link_is_taken_without_a_restart() {
    let fx = fixture();
    let (handle, rx) = start(config(&fx.inbox));
    // As an SFTP client finishes an upload: a temporary name, then link(2).
    fs::write(fx.inbox.join("upload.jpg.filepart"), b"linked in").unwrap();
    fs::hard_link(fx.inbox.join("upload.jpg.filepart"), fx.inbox.join("x.jpg")).unwrap();
    let f = next(&rx);
    assert_eq!(
        (f.name.as_str(), &f.bytes[..]),
        ("x.jpg", &b"linked in"[..])
    );
    fs::remove_file(fx.inbox.join("upload.jpg.filepart")).unwrap();
    // The temporary name elsewhere, removed at once: the link is the only name left.
    fs::write(fx.root.join("tmp"), b"linked, other name gone").unwrap();
    fs::hard_link(fx.root.join("tmp"), fx.inbox.join("y.jpg")).unwrap();
    fs::remove_file(fx.root.join("tmp")).unwrap();
    let f = next(&rx);
    assert_eq!(
        (f.name.as_str(), &f.bytes[..]),
        ("y.jpg", &b"linked, other name gone"[..])
    );
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn a_symlink_dropped_in_is_followed_and_after_removes_the_link_not_the_target() {
    let fx = fixture();
    let target = fx.root.join("frames").join("photo.jpg");
    fs::create_dir(target.parent().unwrap()).unwrap();
    fs::write(&target, b"the target's bytes").unwrap();
    let mut cfg = config(&fx.inbox);
    cfg.after = AfterProcessing::Delete;
    let (handle, rx) = start(cfg.clone());
    // Links to nothing and to a directory are skipped (with a warning), not taken.
    std::os::unix::fs::symlink(fx.root.join("missing.jpg"), fx.inbox.join("dangling.jpg")).unwrap();
    std::os::unix::fs::symlink(fx.root.join("frames"), fx.inbox.join("dir.jpg")).unwrap();
    std::os::unix::fs::symlink(&target, fx.inbox.join("link.jpg")).unwrap();
    let f = next(&rx);
    assert_eq!(
        (f.name.as_str(), &f.bytes[..]),
        ("link.jpg", &b"the target's bytes"[..])
    );
    finish(&cfg, f.path.as_deref().unwrap()).unwrap();
    assert!(fs::symlink_metadata(fx.inbox.join("link.jpg")).is_err());
    assert_eq!(fs::read(&target).unwrap(), b"the target's bytes");
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn a_symlink_already_there_at_start_is_followed_too() {
    let fx = fixture();
    fs::write(fx.root.join("photo.jpg"), b"linked before start").unwrap();
    std::os::unix::fs::symlink(fx.root.join("photo.jpg"), fx.inbox.join("l.jpg")).unwrap();
    let (handle, rx) = start(config(&fx.inbox));
    assert_eq!(next(&rx).bytes, b"linked before start");
    handle.stop().unwrap();
}

#[test]
fn names_that_are_not_utf8_or_hold_newlines_are_taken_kept_and_shown_escaped() {
    let fx = fixture();
    let latin1 = OsStr::from_bytes(b"caf\xe9.jpg");
    fs::write(fx.inbox.join(latin1), b"present at start").unwrap();
    let mut cfg = config(&fx.inbox);
    cfg.after = AfterProcessing::Move {
        to: fx.root.join("done"),
    };
    let (handle, rx) = start(cfg.clone());
    let f = next(&rx);
    assert_eq!(f.name, "caf\\xe9.jpg");
    assert_eq!(f.path.as_deref(), Some(fx.inbox.join(latin1).as_path()));
    finish(&cfg, f.path.as_deref().unwrap()).unwrap();
    // Written while running; and a second one whose moved name must get a suffix.
    fs::write(fx.inbox.join(latin1), b"written while running").unwrap();
    let f = next(&rx);
    assert_eq!(
        (f.name.as_str(), &f.bytes[..]),
        ("caf\\xe9.jpg", &b"written while running"[..])
    );
    finish(&cfg, f.path.as_deref().unwrap()).unwrap();
    assert_eq!(
        fs::read(
            fx.root
                .join("done")
                .join(OsStr::from_bytes(b"caf\xe9-1.jpg"))
        )
        .unwrap(),
        b"written while running"
    );
    let newline = OsStr::from_bytes(b"two\nlines.jpg");
    fs::write(fx.inbox.join(newline), b"nl").unwrap();
    let f = next(&rx);
    assert_eq!(f.name, "two\\nlines.jpg");
    assert_eq!(f.path.as_deref(), Some(fx.inbox.join(newline).as_path()));
    handle.stop().unwrap();
}

#[test]
fn a_writer_that_closes_reopens_and_appends_is_taken_once_whole() {
    let fx = fixture();
    let (handle, rx) = start(config(&fx.inbox));
    let path = fx.inbox.join("appended.jpg");
    let whole = payload(30_000);
    fs::write(&path, &whole[..10_000]).unwrap(); // first close
    std::thread::sleep(SETTLE / 4); // the writer comes back well within settle
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&whole[10_000..20_000]).unwrap();
    // Open past the first close's due time, writing nothing: still not taken.
    assert_quiet(&rx);
    f.write_all(&whole[20_000..]).unwrap();
    drop(f);
    let got = next(&rx);
    assert_eq!(got.bytes.len(), whole.len());
    assert!(got.bytes == whole);
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn cp_is_taken_once_whole() {
    let fx = fixture();
    let (handle, rx) = start(config(&fx.inbox));
    let src = fx.root.join("src.jpg");
    fs::write(&src, payload(200_000)).unwrap();
    let status = Command::new("cp")
        .arg(&src)
        .arg(fx.inbox.join("cp.jpg"))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(next(&rx).bytes == payload(200_000));
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn curl_output_is_taken_once_whole() {
    if !test_support::tool_available("curl") {
        return;
    }
    let fx = fixture();
    let (handle, rx) = start(config(&fx.inbox));
    let src = fx.root.join("served.jpg");
    fs::write(&src, payload(300_000)).unwrap();
    let status = Command::new("curl")
        .args(["-sS", "--limit-rate", "200k", "-o"])
        .arg(fx.inbox.join("curl.jpg"))
        .arg(format!("file://{}", src.display()))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(next(&rx).bytes == payload(300_000));
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn rsync_is_taken_once_whole_and_its_temporary_name_never() {
    if !test_support::tool_available("rsync") {
        return;
    }
    let fx = fixture();
    let (handle, rx) = start(config(&fx.inbox));
    let src = fx.root.join("r.jpg");
    fs::write(&src, payload(100_000)).unwrap();
    let status = Command::new("rsync")
        .arg(&src)
        .arg(fx.inbox.join("r.jpg"))
        .status()
        .unwrap();
    assert!(status.success());
    let f = next(&rx);
    assert_eq!(f.name, "r.jpg");
    assert!(f.bytes == payload(100_000));
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn ffmpeg_image2_frames_are_each_taken_once_whole() {
    if !test_support::tool_available("ffmpeg") {
        return;
    }
    let fx = fixture();
    let (handle, rx) = start(config(&fx.inbox));
    let status = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=5",
        ])
        .args(["-frames:v", "5"])
        .arg(fx.inbox.join("f-%03d.jpg"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut names: Vec<String> = (0..5).map(|_| next(&rx)).map(|f| f.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "f-001.jpg",
            "f-002.jpg",
            "f-003.jpg",
            "f-004.jpg",
            "f-005.jpg"
        ]
    );
    assert_quiet(&rx);
    // With -atomic_writing (a temporary name, then a rename): each taken at once.
    let status = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=5",
        ])
        .args(["-frames:v", "3", "-atomic_writing", "1"])
        .arg(fx.inbox.join("a-%03d.jpg"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut names: Vec<String> = (0..3).map(|_| next(&rx)).map(|f| f.name).collect();
    names.sort();
    assert_eq!(names, ["a-001.jpg", "a-002.jpg", "a-003.jpg"]);
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn a_refused_file_is_moved_aside_with_its_reason_and_never_deleted() {
    let fx = fixture();
    let name = OsStr::from_bytes(b"bad\xe9.jpg");
    for after in [
        AfterProcessing::Delete,
        AfterProcessing::Move {
            to: fx.root.join("done"),
        },
    ] {
        let cfg = FolderSourceConfig {
            after,
            ..config(&fx.inbox)
        };
        let path = fx.inbox.join(name);
        fs::write(&path, b"not a jpeg").unwrap();
        let to = reject(
            &cfg,
            &path,
            "truncated JPEG file: the image data ends early",
            0,
        )
        .unwrap()
        .expect("moved");
        assert!(!path.exists());
        assert_eq!(to.parent(), Some(fx.inbox.join(REJECTED_DIR).as_path()));
        assert_eq!(fs::read(&to).unwrap(), b"not a jpeg");
        let mut why = to.into_os_string();
        why.push(".reason");
        let why = fs::read_to_string(&why).unwrap();
        assert!(
            why.starts_with(
                "truncated JPEG file: the image data ends early\nrefused at 1970-01-01T00:00:00"
            ),
            "{why}"
        );
    }
    // The second got a free name beside the first.
    let kept = fs::read_dir(fx.inbox.join(REJECTED_DIR)).unwrap().count();
    assert_eq!(kept, 4, "two files and their reasons");
    // With leave, the file stays where it is.
    let path = fx.inbox.join("left.jpg");
    fs::write(&path, b"x").unwrap();
    assert_eq!(reject(&config(&fx.inbox), &path, "why", 0).unwrap(), None);
    assert!(path.exists());
}
