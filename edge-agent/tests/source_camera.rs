//! The camera path without a camera: recorded MJPEG frames (the sample photos with
//! their Huffman tables stripped, exactly what a UVC webcam sends) go through
//! `normalize_frame` and through the real capture loop via `ReplayCamera`. Only the
//! few lines of `V4l2Camera` that issue V4L2 ioctls are not run here.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::{Duration, Instant};

use edge_agent::source::camera::{spawn_grabber_source, CameraSourceConfig, ReplayCamera};
use edge_agent::source::mjpeg::{normalize_frame, standard_dht_segment, strip_huffman_tables};
use edge_agent::source::SourceFrame;
use image::codecs::jpeg::JpegEncoder;

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/samples")
}

/// The sample photos as they are on disk (JPEG files from various encoders).
fn sample_jpegs() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(samples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 3,
        "expected sample photos in {:?}",
        samples_dir()
    );
    out
}

/// A sample re-encoded with the standard (Annex K) tables, at camera-ish size.
fn standard_table_jpeg(original: &[u8]) -> Vec<u8> {
    let img = image::load_from_memory(original).unwrap().to_rgb8();
    let img = image::imageops::thumbnail(&img, 320, 240);
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&img)
        .unwrap();
    out
}

/// What a webcam would send for this picture: no DHT segment.
fn recorded_frame(jpeg: &[u8]) -> Vec<u8> {
    let frame = strip_huffman_tables(jpeg).unwrap();
    assert!(!contains(&frame, &[0xFF, 0xC4]), "DHT stripped");
    frame
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_webcam_frame_without_tables_decodes_to_the_same_pixels_once_normalized() {
    for (name, original) in sample_jpegs() {
        let jpeg = standard_table_jpeg(&original);
        let frame = recorded_frame(&jpeg);
        // The agent's decoder (the `image` crate) refuses the frame as the camera sent it.
        assert!(image::load_from_memory(&frame).is_err(), "{name}");
        let fixed = normalize_frame(&frame).unwrap();
        assert!(contains(&fixed, &standard_dht_segment()), "{name}");
        let want = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        let got = image::load_from_memory(&fixed).unwrap().to_rgb8();
        assert_eq!(got.dimensions(), want.dimensions(), "{name}");
        assert!(
            got == want,
            "{name}: pixels differ after restoring the tables"
        );
        // And the agent's own decoder takes it, as it will in the pipeline.
        edge_agent::preprocess::decode(&fixed).unwrap();
    }
}

/// True if `jpeg` carries exactly the four Annex K tables (as most encoders write by
/// default), in any order and split into any number of DHT segments.
fn uses_standard_tables(jpeg: &[u8]) -> bool {
    let dht = standard_dht_segment();
    let body = &dht[4..];
    // The four tables: class/id byte, 16 counts, then as many values as they add up to.
    let mut tables = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let n: usize = body[i + 1..i + 17].iter().map(|&c| c as usize).sum();
        tables.push(&body[i..i + 17 + n]);
        i += 17 + n;
    }
    let total: usize = tables.iter().map(|t| t.len()).sum();
    let dht_bytes = jpeg.len() - strip_huffman_tables(jpeg).unwrap().len();
    tables.iter().all(|t| contains(jpeg, t)) && dht_bytes <= total + 4 * 4
}

#[test]
fn a_sample_photo_made_into_a_webcam_frame_decodes_once_normalized() {
    for (name, original) in sample_jpegs() {
        let want = image::load_from_memory(&original).unwrap().to_rgb8();
        let fixed = normalize_frame(&recorded_frame(&original)).unwrap();
        let got = image::load_from_memory(&fixed).unwrap().to_rgb8();
        assert_eq!(got.dimensions(), want.dimensions(), "{name}");
        if uses_standard_tables(&original) {
            assert!(
                got == want,
                "{name}: pixels differ after restoring the tables"
            );
        }
    }
}

#[test]
fn the_sample_photos_use_the_standard_tables() {
    // So the test above compares pixels for every one of them, not only sizes.
    for (name, original) in sample_jpegs() {
        assert!(uses_standard_tables(&original), "{name}");
    }
}

#[test]
fn a_frame_that_has_its_tables_passes_through_unchanged() {
    for (name, original) in sample_jpegs() {
        let jpeg = standard_table_jpeg(&original);
        assert_eq!(normalize_frame(&jpeg).unwrap(), jpeg, "{name}");
    }
}

#[test]
fn truncated_and_empty_frames_are_refused() {
    let (_, original) = &sample_jpegs()[0];
    let frame = recorded_frame(&standard_table_jpeg(original));
    assert!(normalize_frame(&[]).is_err());
    for cut in [frame.len() / 3, frame.len() - 2] {
        let err = normalize_frame(&frame[..cut]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}

fn recorded_stream() -> Vec<Vec<u8>> {
    sample_jpegs()
        .iter()
        .map(|(_, j)| recorded_frame(&standard_table_jpeg(j)))
        .collect()
}

fn config(fps: f64, warmup_frames: u32) -> CameraSourceConfig {
    CameraSourceConfig {
        fps,
        warmup_frames,
        ..CameraSourceConfig::default()
    }
}

fn collect(rx: &Receiver<SourceFrame>) -> Vec<SourceFrame> {
    // The replay ends, the source thread ends, the channel disconnects: all frames in.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(f) => out.push(f),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return out,
            Err(e) => panic!("replay did not finish: {e}"),
        }
    }
}

#[test]
fn a_25fps_replay_taken_at_1fps_after_warmup_gives_the_frames_on_the_second_grid() {
    let stream = recorded_stream();
    // 75 frames at 25 fps = 0..2960 ms; frame i shows sample i % n.
    let frames: Vec<Vec<u8>> = (0..75).map(|i| stream[i % stream.len()].clone()).collect();
    let (tx, rx) = sync_channel(2);
    let handle = spawn_grabber_source(
        ReplayCamera::at_rate(frames.clone(), 25.0),
        config(1.0, 5),
        tx,
    )
    .unwrap();
    let got = collect(&rx);
    handle.join().unwrap();
    // Frames 0-4 are warm-up; then 200 ms, 1200 ms, 2200 ms: frames 5, 30, 55.
    let expected: Vec<Vec<u8>> = [5, 30, 55]
        .iter()
        .map(|&i| normalize_frame(&frames[i]).unwrap())
        .collect();
    assert_eq!(got.len(), 3);
    for (g, e) in got.iter().zip(&expected) {
        assert!(g.bytes == *e, "{} is not the expected frame", g.name);
        assert!(g.path.is_none());
        assert!(
            g.name.starts_with("video0-") && g.name.ends_with(".jpg"),
            "{}",
            g.name
        );
        image::load_from_memory(&g.bytes).unwrap();
    }
    let mut names: Vec<_> = got.iter().map(|f| &f.name).collect();
    names.dedup();
    assert_eq!(names.len(), 3, "names are unique");
}

#[test]
fn a_bad_frame_does_not_use_up_its_slot() {
    let stream = recorded_stream();
    let good = stream[0].clone();
    let truncated = good[..good.len() / 2].to_vec();
    let ms = Duration::from_millis;
    let replay = ReplayCamera::new([
        (ms(0), good.clone()),
        (ms(1000), truncated),
        (ms(1040), stream[1].clone()),
        (ms(1080), stream[2].clone()),
    ]);
    let (tx, rx) = sync_channel(4);
    let handle = spawn_grabber_source(replay, config(1.0, 0), tx).unwrap();
    let got = collect(&rx);
    handle.join().unwrap();
    assert_eq!(got.len(), 2);
    assert!(
        got[1].bytes == normalize_frame(&stream[1]).unwrap(),
        "the 1040 ms frame took the slot"
    );
}

#[test]
fn a_paced_replay_stops_promptly_between_frames() {
    let stream = recorded_stream();
    let frames = vec![stream[0].clone(); 10];
    let (tx, rx) = sync_channel(2);
    // One frame every 5 s: the loop spends its time waiting.
    let handle = spawn_grabber_source(
        ReplayCamera::at_rate(frames, 0.2).paced(),
        config(1.0, 0),
        tx,
    )
    .unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());
    let t0 = Instant::now();
    handle.stop().unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn a_slow_consumer_blocks_the_capture_loop_and_no_frame_is_lost() {
    let stream = recorded_stream();
    let frames = vec![stream[0].clone(); 200];
    let (tx, rx) = sync_channel(1);
    let handle =
        spawn_grabber_source(ReplayCamera::at_rate(frames, 100.0), config(100.0, 0), tx).unwrap();
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // Unread, the bounded channel holds the loop back: it cannot run to the end.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !handle.is_finished(),
        "the loop waits; it does not queue frames"
    );
    let rest = collect(&rx);
    assert_eq!(
        1 + rest.len(),
        200,
        "every frame due was delivered once the consumer read"
    );
    assert!(!first.bytes.is_empty());
    handle.join().unwrap();
}

/// The `[[source]]` table, the rate limiter, and opening a device that is not there.
mod settings {
    use std::time::Duration;

    use edge_agent::source::camera::{default_device, CameraSourceConfig, RateLimiter, V4l2Camera};
    use serde::Deserialize;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn kept(limiter: &mut RateLimiter, times: &[u64]) -> Vec<u64> {
        times
            .iter()
            .copied()
            .filter(|&t| limiter.admit(ms(t)))
            .collect()
    }

    #[test]
    fn one_frame_per_interval_is_kept_from_a_30fps_stream() {
        let mut l = RateLimiter::new(1.0);
        let times: Vec<u64> = (0..300).map(|i| i * 1000 / 30).collect(); // 10 s
        assert_eq!(
            kept(&mut l, &times),
            [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000]
        );
    }

    #[test]
    fn jitter_does_not_lower_the_average_rate() {
        let mut l = RateLimiter::new(2.0);
        // Frames every 100 ms, each a little late: kept ones stay on the 500 ms grid.
        let times: Vec<u64> = (0..50).map(|i| i * 100 + 7).collect();
        assert_eq!(
            kept(&mut l, &times),
            [7, 507, 1007, 1507, 2007, 2507, 3007, 3507, 4007, 4507]
        );
    }

    #[test]
    fn after_a_stall_the_schedule_restarts_instead_of_bursting() {
        let mut l = RateLimiter::new(1.0);
        assert_eq!(
            kept(&mut l, &[0, 1000, 5300, 5400, 5500, 6300]),
            [0, 1000, 5300, 6300]
        );
    }

    #[test]
    fn a_camera_slower_than_the_rate_gives_every_frame() {
        let mut l = RateLimiter::new(10.0);
        assert_eq!(kept(&mut l, &[0, 500, 1000, 1500]), [0, 500, 1000, 1500]);
    }

    #[test]
    fn a_due_frame_that_is_not_taken_leaves_the_slot_open() {
        let mut l = RateLimiter::new(1.0);
        assert!(l.admit(ms(0)));
        assert!(l.is_due(ms(1000)));
        // (the frame at 1000 ms failed to normalize: not taken)
        assert!(l.admit(ms(1033)));
        assert!(!l.is_due(ms(1999)));
        assert!(l.is_due(ms(2000)));
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let field = |f: fn(&mut CameraSourceConfig)| {
            let mut c = CameraSourceConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(field(|c| c.device = "video0".into()), "device");
        assert_eq!(field(|c| c.width = 0), "width");
        assert_eq!(field(|c| c.height = 100_000), "height");
        assert_eq!(field(|c| c.fps = 0.0), "fps");
        assert_eq!(field(|c| c.fps = f64::NAN), "fps");
        assert_eq!(field(|c| c.fps = 500.0), "fps");
        assert_eq!(field(|c| c.warmup_frames = 5000), "warmup_frames");
        assert_eq!(CameraSourceConfig::default().validate(), Ok(()));
    }

    #[test]
    fn a_camera_table_parses_with_defaults_and_refuses_unknown_keys() {
        #[derive(Debug, Deserialize)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        enum Tagged {
            Camera(CameraSourceConfig),
        }
        let parse = |text: &str| toml::from_str::<Tagged>(text).map_err(|e| e.to_string());
        let Tagged::Camera(c) =
            parse("kind = \"camera\"\nfps = 0.5\nformat = \"mjpeg\"\n").unwrap();
        assert_eq!(c.fps, 0.5);
        assert_eq!(c.device, default_device());
        assert!(parse("kind = \"camera\"\nformat = \"yuyv\"\n")
            .unwrap_err()
            .contains("yuyv"));
        assert!(parse("kind = \"camera\"\nrate = 1\n")
            .unwrap_err()
            .contains("rate"));
    }

    #[test]
    fn opening_a_missing_device_names_it() {
        let c = CameraSourceConfig {
            device: "/nonexistent/video9".into(),
            ..CameraSourceConfig::default()
        };
        let err = V4l2Camera::open(&c).err().unwrap().to_string();
        assert!(err.contains("/nonexistent/video9"), "{err}");
    }
}
