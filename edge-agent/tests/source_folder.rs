//! The folder source against real inotify and real files in a temporary directory.
//! Every wait has a deadline; a check that nothing (more) arrives waits a bounded
//! quiet period, which is the only way to observe an absence.

use std::fs::{self, File, FileTimes};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use edge_agent::source::folder::{
    finish, spawn_folder_source, AfterProcessing, FolderSourceConfig,
};
use edge_agent::source::{SourceError, SourceFrame, SourceHandle};

const DEADLINE: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(300);

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
        Ok(f) => panic!(
            "unexpected frame {} ({} bytes, t={})",
            f.name,
            f.bytes.len(),
            f.captured_at_ms
        ),
        Err(e) => panic!("{e}"),
    }
}

fn write_with_mtime(path: &Path, bytes: &[u8], secs_ago: u64) {
    let f = File::create(path).unwrap();
    (&f).write_all(bytes).unwrap();
    let t = SystemTime::now() - Duration::from_secs(secs_ago);
    f.set_times(FileTimes::new().set_modified(t)).unwrap();
}

#[test]
fn files_present_at_start_are_taken_oldest_first() {
    let fx = fixture();
    // Names in the opposite order of age, so a name sort would fail.
    write_with_mtime(&fx.inbox.join("a.jpg"), b"third", 10);
    write_with_mtime(&fx.inbox.join("b.png"), b"second", 20);
    write_with_mtime(&fx.inbox.join("c.JPEG"), b"first", 30);
    let (handle, rx) = start(FolderSourceConfig::new(&fx.inbox));
    let got: Vec<(String, Vec<u8>)> = (0..3)
        .map(|_| next(&rx))
        .map(|f| (f.name, f.bytes))
        .collect();
    assert_eq!(
        got,
        [
            ("c.JPEG".to_string(), b"first".to_vec()),
            ("b.png".to_string(), b"second".to_vec()),
            ("a.jpg".to_string(), b"third".to_vec()),
        ]
    );
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn a_frame_carries_its_path_and_the_file_time() {
    let fx = fixture();
    write_with_mtime(&fx.inbox.join("a.jpg"), b"x", 60);
    let (handle, rx) = start(FolderSourceConfig::new(&fx.inbox));
    let f = next(&rx);
    assert_eq!(f.path.as_deref(), Some(fx.inbox.join("a.jpg").as_path()));
    let age_ms = edge_agent::source::now_ms() - f.captured_at_ms;
    assert!((59_000..70_000).contains(&age_ms), "{age_ms}");
    handle.stop().unwrap();
}

#[test]
fn a_file_written_slowly_is_delivered_once_only_after_it_is_closed() {
    let fx = fixture();
    let (handle, rx) = start(FolderSourceConfig::new(&fx.inbox));
    let mut file = File::create(fx.inbox.join("slow.jpg")).unwrap();
    let mut expected = Vec::new();
    for chunk in 0..5u8 {
        let bytes = vec![chunk; 10_000];
        file.write_all(&bytes).unwrap();
        file.flush().unwrap();
        expected.extend_from_slice(&bytes);
        assert_quiet(&rx); // still open: nothing yet
    }
    drop(file);
    let f = next(&rx);
    assert_eq!(f.name, "slow.jpg");
    assert_eq!(f.bytes.len(), expected.len());
    assert!(f.bytes == expected, "the whole content");
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn a_file_renamed_in_is_delivered_and_its_temporary_name_is_not() {
    let fx = fixture();
    let (handle, rx) = start(FolderSourceConfig::new(&fx.inbox));
    // Written elsewhere on the same filesystem, then moved in.
    let outside = fx.root.join("elsewhere.jpg");
    fs::write(&outside, b"moved in").unwrap();
    fs::rename(&outside, fx.inbox.join("moved.jpg")).unwrap();
    let f = next(&rx);
    assert_eq!(
        (f.name.as_str(), f.bytes.as_slice()),
        ("moved.jpg", &b"moved in"[..])
    );
    // Written in place under a temporary name, then renamed.
    fs::write(fx.inbox.join("frame.jpg.part"), b"renamed").unwrap();
    fs::rename(fx.inbox.join("frame.jpg.part"), fx.inbox.join("frame.jpg")).unwrap();
    let f = next(&rx);
    assert_eq!(
        (f.name.as_str(), f.bytes.as_slice()),
        ("frame.jpg", &b"renamed"[..])
    );
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn files_with_other_extensions_and_hidden_files_are_ignored() {
    let fx = fixture();
    fs::write(fx.inbox.join("old-notes.txt"), b"no").unwrap();
    let (handle, rx) = start(FolderSourceConfig::new(&fx.inbox));
    fs::write(fx.inbox.join("notes.txt"), b"no").unwrap();
    fs::write(fx.inbox.join(".hidden.jpg"), b"no").unwrap();
    fs::create_dir(fx.inbox.join("subdir.jpg")).unwrap();
    fs::write(fx.inbox.join("photo.jpg"), b"yes").unwrap();
    assert_eq!(next(&rx).name, "photo.jpg");
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn a_close_without_a_change_does_not_deliver_the_file_again_but_new_content_does() {
    let fx = fixture();
    fs::write(fx.inbox.join("a.jpg"), b"v1").unwrap();
    let (handle, rx) = start(FolderSourceConfig::new(&fx.inbox));
    assert_eq!(next(&rx).bytes, b"v1");
    // Opened for writing and closed unchanged: IN_CLOSE_WRITE with the same version.
    drop(
        fs::OpenOptions::new()
            .append(true)
            .open(fx.inbox.join("a.jpg"))
            .unwrap(),
    );
    assert_quiet(&rx);
    fs::write(fx.inbox.join("a.jpg"), b"v2, rewritten").unwrap();
    assert_eq!(next(&rx).bytes, b"v2, rewritten");
    handle.stop().unwrap();
}

#[test]
fn after_move_the_file_goes_to_the_target_directory_with_a_suffix_on_collision() {
    let fx = fixture();
    let done = fx.root.join("done").join("nested");
    let mut config = FolderSourceConfig::new(&fx.inbox);
    config.after = AfterProcessing::Move { to: done.clone() };
    let (handle, rx) = start(config.clone());
    fs::write(fx.inbox.join("a.jpg"), b"one").unwrap();
    let f = next(&rx);
    finish(&config, f.path.as_deref().unwrap()).unwrap();
    assert!(!fx.inbox.join("a.jpg").exists());
    assert_eq!(fs::read(done.join("a.jpg")).unwrap(), b"one");
    // The same name again is a new file: delivered, and moved beside the first.
    fs::write(fx.inbox.join("a.jpg"), b"two").unwrap();
    let f = next(&rx);
    assert_eq!(f.bytes, b"two");
    finish(&config, f.path.as_deref().unwrap()).unwrap();
    assert_eq!(fs::read(done.join("a-1.jpg")).unwrap(), b"two");
    assert_quiet(&rx);
    handle.stop().unwrap();
}

#[test]
fn after_delete_the_file_is_gone_and_deleting_twice_is_fine() {
    let fx = fixture();
    let mut config = FolderSourceConfig::new(&fx.inbox);
    config.after = AfterProcessing::Delete;
    let (handle, rx) = start(config.clone());
    fs::write(fx.inbox.join("a.png"), b"png").unwrap();
    let path = next(&rx).path.unwrap();
    finish(&config, &path).unwrap();
    assert!(!path.exists());
    finish(&config, &path).unwrap();
    handle.stop().unwrap();
}

#[test]
fn after_leave_the_file_stays_and_is_taken_again_at_the_next_start() {
    let fx = fixture();
    let config = FolderSourceConfig::new(&fx.inbox);
    fs::write(fx.inbox.join("a.jpg"), b"kept").unwrap();
    let (handle, rx) = start(config.clone());
    let path = next(&rx).path.unwrap();
    finish(&config, &path).unwrap();
    assert!(path.exists());
    handle.stop().unwrap();
    let (handle, rx) = start(config);
    assert_eq!(
        next(&rx).name,
        "a.jpg",
        "documented: leave re-takes files at start-up"
    );
    handle.stop().unwrap();
}

#[test]
fn stop_returns_promptly_while_idle() {
    let fx = fixture();
    let (handle, _rx) = start(FolderSourceConfig::new(&fx.inbox));
    std::thread::sleep(Duration::from_millis(50)); // let it reach its idle wait
    let t0 = Instant::now();
    handle.stop().unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(100), "stop took {took:?}");
}

#[test]
fn stop_returns_promptly_while_the_consumer_is_not_reading() {
    let fx = fixture();
    for i in 0..10 {
        fs::write(fx.inbox.join(format!("{i}.jpg")), b"x").unwrap();
    }
    let (tx, rx) = sync_channel(1);
    let handle = spawn_folder_source(FolderSourceConfig::new(&fx.inbox), tx).unwrap();
    let first = next(&rx); // the source is now blocked on the full channel
    assert_eq!(first.bytes, b"x");
    let t0 = Instant::now();
    handle.stop().unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn a_missing_folder_is_an_error_at_start_naming_it() {
    let fx = fixture();
    let (tx, _rx) = sync_channel(1);
    let missing = fx.root.join("no-such-dir");
    let err = spawn_folder_source(FolderSourceConfig::new(&missing), tx).unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

#[test]
fn a_move_target_on_another_filesystem_is_an_error_at_start() {
    let fx = fixture();
    let Ok(meta) = fs::metadata("/dev/shm") else {
        return;
    };
    if std::os::unix::fs::MetadataExt::dev(&meta)
        == std::os::unix::fs::MetadataExt::dev(&fs::metadata(&fx.inbox).unwrap())
    {
        return; // the temp dir is on /dev/shm's filesystem: nothing to test
    }
    let mut config = FolderSourceConfig::new(&fx.inbox);
    config.after = AfterProcessing::Move {
        to: "/dev/shm".into(),
    };
    let (tx, _rx) = sync_channel(1);
    let err = spawn_folder_source(config, tx).unwrap_err().to_string();
    assert!(err.contains("another filesystem"), "{err}");
}

#[test]
fn deleting_the_watched_folder_ends_the_source_with_an_error() {
    let fx = fixture();
    let (tx, rx) = sync_channel(1);
    let handle = spawn_folder_source(FolderSourceConfig::new(&fx.inbox), tx).unwrap();
    fs::remove_dir(&fx.inbox).unwrap();
    // The source ends, so the channel disconnects.
    assert_eq!(
        rx.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected)
    );
    match handle.join() {
        Err(SourceError::Watch { path, .. }) => assert_eq!(path, fx.inbox),
        other => panic!("{other:?}"),
    }
}

/// The `[[source]]` table and the pure parts: parsing, validation, file filter, log.
mod settings {
    use std::ffi::OsStr;

    use edge_agent::source::folder::{
        AfterProcessing, DeliveredLog, FileStamp, FolderSourceConfig,
    };
    use serde::Deserialize;

    fn config() -> FolderSourceConfig {
        FolderSourceConfig::new("/var/lib/edge-agent/inbox")
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "kind", rename_all = "lowercase")]
    enum Tagged {
        Folder(FolderSourceConfig),
    }

    fn parse(text: &str) -> Result<FolderSourceConfig, String> {
        #[derive(Deserialize)]
        struct File {
            source: Vec<Tagged>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let Tagged::Folder(c) = file.source.into_iter().next().unwrap();
        Ok(c)
    }

    #[test]
    fn a_minimal_table_gets_the_named_defaults() {
        let c = parse("[[source]]\nkind = \"folder\"\npath = \"/in\"\n").unwrap();
        assert_eq!(c, FolderSourceConfig::new("/in"));
        assert_eq!(c.extensions, ["jpg", "jpeg", "png"]);
        assert_eq!(c.settle, std::time::Duration::from_secs(1));
        let c =
            parse("[[source]]\nkind = \"folder\"\npath = \"/in\"\nsettle = \"250ms\"\n").unwrap();
        assert_eq!(c.settle, std::time::Duration::from_millis(250));
    }

    #[test]
    fn every_after_mode_parses() {
        let base = "[[source]]\nkind = \"folder\"\npath = \"/in\"\n";
        let after = |s: &str| parse(&format!("{base}after = {s}\n")).map(|c| c.after);
        assert_eq!(after("\"leave\""), Ok(AfterProcessing::Leave));
        assert_eq!(after("\"delete\""), Ok(AfterProcessing::Delete));
        assert_eq!(
            after("{ move = { to = \"/done\" } }"),
            Ok(AfterProcessing::Move { to: "/done".into() })
        );
        assert!(after("\"shred\"").unwrap_err().contains("shred"));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let err =
            parse("[[source]]\nkind = \"folder\"\npath = \"/in\"\nextension = []\n").unwrap_err();
        assert!(err.contains("extension"), "{err}");
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let field = |c: FolderSourceConfig| c.validate().unwrap_err().field;
        assert_eq!(field(FolderSourceConfig::new("inbox")), "path");
        let mut c = config();
        c.after = AfterProcessing::Move { to: "done".into() };
        assert_eq!(field(c.clone()), "after.move.to");
        c.after = AfterProcessing::Move {
            to: "/var/lib/edge-agent/inbox/".into(),
        };
        assert_eq!(field(c), "after.move.to");
        let mut c = config();
        c.extensions = vec![];
        assert_eq!(field(c.clone()), "extensions");
        c.extensions = vec![".jpg".into()];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("without the leading dot"), "{err}");
        let mut c = config();
        c.max_file_bytes = 0;
        assert_eq!(field(c), "max_file_bytes");
        let mut c = config();
        c.settle = std::time::Duration::from_secs(61);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.starts_with("settle: 61s is longer than"), "{err}");
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn only_visible_files_with_a_wanted_extension_are_taken() {
        let c = config();
        for yes in ["a.jpg", "B.JPEG", "c.Png", "x.y.jpg"] {
            assert!(c.wants(OsStr::new(yes)), "{yes}");
        }
        for no in [".a.jpg", "a.jpg.part", "a.txt", "jpg", ".jpg", "a"] {
            assert!(!c.wants(OsStr::new(no)), "{no}");
        }
        // Names are matched as bytes: Latin-1 and control characters are names too.
        use std::os::unix::ffi::OsStrExt;
        for yes in [&b"caf\xe9.jpg"[..], b"\xff.JPG", b"two\nlines.png"] {
            assert!(c.wants(OsStr::from_bytes(yes)), "{yes:?}");
        }
        assert!(!c.wants(OsStr::from_bytes(b"caf\xe9.jp\xe9")));
    }

    #[test]
    fn the_delivered_log_forgets_the_oldest_names_first() {
        let stamp = |n| FileStamp {
            dev: 1,
            ino: n,
            size: 10,
            mtime_ns: 5,
        };
        let mut log = DeliveredLog::new(2);
        log.record(OsStr::new("a"), stamp(1));
        log.record(OsStr::new("b"), stamp(2));
        assert!(log.contains(OsStr::new("a"), &stamp(1)));
        assert!(
            !log.contains(OsStr::new("a"), &stamp(9)),
            "new content is new"
        );
        log.record(OsStr::new("c"), stamp(3));
        assert!(!log.contains(OsStr::new("a"), &stamp(1)));
        assert!(log.contains(OsStr::new("b"), &stamp(2)));
        assert!(log.contains(OsStr::new("c"), &stamp(3)));
    }
}
