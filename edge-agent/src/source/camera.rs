//! The camera source: MJPEG frames from a V4L2 device, taken at a configured rate.
//!
//! The V4L2 part ([`V4l2Camera`], over the pure-Rust `linuxvideo` crate: no libv4l,
//! no bindgen, so it cross-builds for aarch64/armv7 with no system packages) only
//! opens the device, negotiates MJPEG at the configured size, streams from mmap
//! buffers and hands over the bytes of the frames it is asked to keep. Everything
//! behind it is independent of the hardware and tested without a camera: the capture
//! loop [`run_capture`] over any [`FrameGrabber`], the pure [`RateLimiter`] that
//! decides which frames to keep, and [`super::mjpeg::normalize_frame`], which makes a
//! webcam frame a standalone JPEG. [`ReplayCamera`] replays recorded frames through the
//! same loop. A camera that disappears (USB unplugged) is reopened with back-off.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::mjpeg::normalize_frame;
use super::{now_ms, send_frame, Sent, SourceError, SourceFrame, SourceHandle, StopSignal};

// linuxvideo 0.3 does not build for 32-bit targets (it converts a u32 buffer offset
// into `off_t`, which is i32 there), so V4L2 capture is in 64-bit builds only; an
// armv7 build refuses a camera source with an error that says so.
#[cfg(target_pointer_width = "64")]
mod v4l2;
#[cfg(target_pointer_width = "64")]
pub use v4l2::{spawn_camera_source, V4l2Camera};

/// On 32-bit builds: a camera source is an error at start (see above).
#[cfg(not(target_pointer_width = "64"))]
pub fn spawn_camera_source(
    config: CameraSourceConfig,
    _tx: SyncSender<SourceFrame>,
) -> Result<SourceHandle, SourceError> {
    Err(SourceError::CameraFormat {
        device: config.device,
        message: "V4L2 capture is not part of 32-bit builds (the linuxvideo crate does not \
                  build there); use a 64-bit OS (aarch64), or a folder source fed by \
                  another capture tool"
            .into(),
    })
}

/// A `[[source]]` table with `kind = "camera"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSourceConfig {
    /// The V4L2 capture device.
    #[serde(default = "default_device")]
    pub device: PathBuf,
    /// Requested frame size; the driver may pick the nearest size it supports.
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    /// Frames taken per second (e.g. 1.0, or 0.2 for one every 5 s). The camera runs
    /// at its own rate; the frames in between are dropped.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// The pixel format asked of the camera. Only MJPEG: frames stay compressed, so a
    /// reviewer sees the camera's own JPEG and the device does no re-encoding.
    #[serde(default)]
    pub format: CameraFormat,
    /// Frames dropped after the stream starts, while auto-exposure settles.
    #[serde(default = "default_warmup_frames")]
    pub warmup_frames: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraFormat {
    #[default]
    Mjpeg,
}

pub fn default_device() -> PathBuf {
    PathBuf::from("/dev/video0")
}
pub fn default_width() -> u32 {
    1280
}
pub fn default_height() -> u32 {
    720
}
pub fn default_fps() -> f64 {
    1.0
}
pub fn default_warmup_frames() -> u32 {
    5
}

/// The largest frame rate accepted; more is a video pipeline, not this agent.
pub const MAX_FPS: f64 = 60.0;

/// A camera source setting that cannot work; displayed as `field: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CameraConfigError {
    pub field: &'static str,
    pub message: String,
}

impl Default for CameraSourceConfig {
    fn default() -> Self {
        CameraSourceConfig {
            device: default_device(),
            width: default_width(),
            height: default_height(),
            fps: default_fps(),
            format: CameraFormat::default(),
            warmup_frames: default_warmup_frames(),
        }
    }
}

impl CameraSourceConfig {
    /// Checks the settings without opening the device.
    pub fn validate(&self) -> Result<(), CameraConfigError> {
        let err = |field, message: String| Err(CameraConfigError { field, message });
        if !self.device.is_absolute() {
            return err(
                "device",
                format!("{:?} must be an absolute path", self.device),
            );
        }
        for (field, v) in [("width", self.width), ("height", self.height)] {
            if !(16..=8192).contains(&v) {
                return err(field, format!("must be within 16..=8192 pixels, got {v}"));
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
        Ok(())
    }
}

/// Which frames to keep so that at most `fps` go out per second, evenly spaced.
/// Pure: it only sees the timestamps it is given. A frame is kept when it is the first
/// at or after the next due time; due times advance by whole intervals, so jitter does
/// not lower the average rate, and after a gap (a stall, a slow consumer) the schedule
/// restarts from the kept frame instead of bursting to catch up.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    interval: Duration,
    next_due: Option<Duration>,
}

impl RateLimiter {
    pub fn new(fps: f64) -> Self {
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / fps),
            next_due: None,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Would a frame at `t` be kept?
    pub fn is_due(&self, t: Duration) -> bool {
        self.next_due.is_none_or(|due| t >= due)
    }

    /// Records that the frame at `t` was kept.
    pub fn taken(&mut self, t: Duration) {
        let next = match self.next_due {
            Some(due) if t < due + self.interval => due + self.interval,
            _ => t + self.interval,
        };
        self.next_due = Some(next);
    }

    /// `is_due` and, if so, `taken`: true if the frame at `t` is kept.
    pub fn admit(&mut self, t: Duration) -> bool {
        let due = self.is_due(t);
        if due {
            self.taken(t);
        }
        due
    }
}

/// What one [`FrameGrabber::next_frame`] call produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Grabbed {
    /// A frame `want` asked for: its bytes and its time on the grabber's clock.
    Kept(Vec<u8>, Duration),
    /// A frame arrived and was dropped (not wanted, or flagged corrupt by the driver).
    Skipped,
    /// The stop signal fired while waiting.
    Stopped,
    /// No more frames will come (a replay ran out).
    Ended,
}

/// Where frames are captured: the one seam between the capture loop and hardware.
pub trait FrameGrabber: Send {
    /// Waits for the next frame and asks `want` (given the frame's timestamp) whether
    /// to keep it; only kept frames are copied out of the capture buffer.
    fn next_frame(
        &mut self,
        stop: &StopSignal,
        want: &mut dyn FnMut(Duration) -> bool,
    ) -> io::Result<Grabbed>;
}

/// Why [`run_capture`] returned without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureEnd {
    Stopped,
    ConsumerGone,
    GrabberEnded,
}

/// The capture loop: takes frames from `grabber` at the configured rate (after the
/// warm-up frames), normalizes them to standalone JPEGs and sends them, blocking while
/// the channel is full (the driver drops frames meanwhile). A frame that fails to
/// normalize is logged and does not use up its slot: the next good frame takes it.
pub fn run_capture(
    grabber: &mut dyn FrameGrabber,
    config: &CameraSourceConfig,
    tx: &SyncSender<SourceFrame>,
    stop: &StopSignal,
) -> io::Result<CaptureEnd> {
    let mut limiter = RateLimiter::new(config.fps);
    let mut warmup_left = config.warmup_frames;
    let stem = config
        .device
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "camera".into());
    let mut seq: u64 = 0;
    loop {
        let grabbed = grabber.next_frame(stop, &mut |t| {
            if warmup_left > 0 {
                warmup_left -= 1;
                return false;
            }
            limiter.is_due(t)
        })?;
        let (raw, at) = match grabbed {
            Grabbed::Kept(raw, at) => (raw, at),
            Grabbed::Skipped => continue,
            Grabbed::Stopped => return Ok(CaptureEnd::Stopped),
            Grabbed::Ended => return Ok(CaptureEnd::GrabberEnded),
        };
        let bytes = match normalize_frame(&raw) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(device = %config.device.display(), error = %e, "dropping a bad camera frame");
                continue;
            }
        };
        limiter.taken(at);
        let captured_at_ms = now_ms();
        seq += 1;
        let frame = SourceFrame {
            name: format!("{stem}-{captured_at_ms}-{seq}.jpg"),
            path: None,
            bytes,
            captured_at_ms,
        };
        match send_frame(tx, frame, stop) {
            Sent::Delivered => {}
            Sent::Stopped => return Ok(CaptureEnd::Stopped),
            Sent::Disconnected => return Ok(CaptureEnd::ConsumerGone),
        }
    }
}

/// Recorded frames played through [`run_capture`] instead of a camera: each frame has
/// a timestamp on a virtual clock. Unpaced (the default) it returns frames as fast as
/// they are asked for; paced, it waits until each timestamp has passed in real time.
pub struct ReplayCamera {
    frames: VecDeque<(Duration, Vec<u8>)>,
    paced_from: Option<Instant>,
    /// How many frames were copied out (asked for by the loop), for tests.
    pub kept: usize,
}

impl ReplayCamera {
    pub fn new(frames: impl IntoIterator<Item = (Duration, Vec<u8>)>) -> Self {
        ReplayCamera {
            frames: frames.into_iter().collect(),
            paced_from: None,
            kept: 0,
        }
    }

    /// `frames` as a camera running at `camera_fps` would deliver them.
    pub fn at_rate(frames: impl IntoIterator<Item = Vec<u8>>, camera_fps: f64) -> Self {
        let step = Duration::from_secs_f64(1.0 / camera_fps);
        Self::new(
            frames
                .into_iter()
                .enumerate()
                .map(|(i, f)| (step * i as u32, f)),
        )
    }

    /// Delivers each frame no earlier than its timestamp after the first call.
    pub fn paced(mut self) -> Self {
        self.paced_from = Some(Instant::now());
        self
    }
}

impl FrameGrabber for ReplayCamera {
    fn next_frame(
        &mut self,
        stop: &StopSignal,
        want: &mut dyn FnMut(Duration) -> bool,
    ) -> io::Result<Grabbed> {
        if stop.is_triggered() {
            return Ok(Grabbed::Stopped);
        }
        let Some((at, bytes)) = self.frames.pop_front() else {
            return Ok(Grabbed::Ended);
        };
        if let Some(start) = self.paced_from {
            let wait = (start + at).saturating_duration_since(Instant::now());
            if stop.wait(wait) {
                return Ok(Grabbed::Stopped);
            }
        }
        if want(at) {
            self.kept += 1;
            Ok(Grabbed::Kept(bytes, at))
        } else {
            Ok(Grabbed::Skipped)
        }
    }
}

/// Runs the capture loop over any grabber on its own thread (a [`ReplayCamera`] in
/// tests). The thread ends when the grabber ends, the consumer goes or it is stopped.
pub fn spawn_grabber_source(
    mut grabber: impl FrameGrabber + 'static,
    config: CameraSourceConfig,
    tx: SyncSender<SourceFrame>,
) -> Result<SourceHandle, SourceError> {
    let name = format!("camera-source:{}", config.device.display());
    SourceHandle::spawn(name, move |stop| {
        run_capture(&mut grabber, &config, &tx, &stop)
            .map(|_| ())
            .map_err(|source| SourceError::Camera {
                device: config.device.clone(),
                source,
            })
    })
}
