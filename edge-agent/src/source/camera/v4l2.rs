//! The V4L2 device behind the camera source: [`V4l2Camera`] opens a device,
//! negotiates MJPEG and streams from mmap buffers; [`spawn_camera_source`] runs the
//! capture loop over it and reopens a camera that disappears.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use linuxvideo::format::{PixFormat, PixelFormat};
use linuxvideo::{CapabilityFlags, Device, Fract};
use protocol::backoff::{Backoff, Retries};

use super::super::{SourceError, SourceFrame, SourceHandle, StopSignal, Wake};
use super::{run_capture, CameraSourceConfig, FrameGrabber, Grabbed};

/// How long the capture loop waits for a frame before it calls the camera stalled
/// and reopens it.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A V4L2 capture device streaming MJPEG from mmap buffers.
pub struct V4l2Camera {
    stream: linuxvideo::stream::ReadStream,
    started: Instant,
}

impl V4l2Camera {
    /// Opens the device and negotiates MJPEG at (or near) the configured size. The
    /// stream starts at once; the driver keeps filling its buffers with the newest
    /// frames whether or not they are taken.
    pub fn open(config: &CameraSourceConfig) -> Result<Self, SourceError> {
        let device_path = &config.device;
        let io_err = |source| SourceError::Camera {
            device: device_path.clone(),
            source,
        };
        let format_err = |message: String| SourceError::CameraFormat {
            device: device_path.clone(),
            message,
        };
        let device = Device::open(device_path).map_err(io_err)?;
        let caps = device.capabilities().map_err(io_err)?.device_capabilities();
        if !caps.contains(CapabilityFlags::VIDEO_CAPTURE | CapabilityFlags::STREAMING) {
            return Err(format_err(format!(
                "not a streaming video capture device (capabilities {caps:?})"
            )));
        }
        let requested = PixFormat::new(config.width, config.height, PixelFormat::MJPG);
        let capture = device.video_capture(requested).map_err(io_err)?;
        let got = capture.format();
        let (width, height, pixel_format) = (got.width(), got.height(), got.pixel_format());
        if pixel_format != PixelFormat::MJPG && pixel_format != PixelFormat::JPEG {
            return Err(format_err(format!(
                "the camera offers {pixel_format} instead of MJPEG; use a camera with MJPEG output"
            )));
        }
        if (width, height) != (config.width, config.height) {
            tracing::warn!(device = %device_path.display(), requested = %format!("{}x{}", config.width, config.height),
                chosen = %format!("{width}x{height}"), "the camera chose another frame size");
        }
        // Ask for a rate near the one taken, to spare USB bandwidth; drivers round to
        // a supported rate, and some do not support the request at all: harmless.
        let wanted = Fract::new(1000, (config.fps * 1000.0).round().max(1.0) as u32);
        if let Err(e) = capture.set_frame_interval(wanted) {
            tracing::debug!(device = %device_path.display(), error = %e, "camera ignores frame interval requests");
        }
        let stream = capture.into_stream().map_err(io_err)?;
        tracing::info!(device = %device_path.display(), width, height, fps = config.fps, "camera streaming");
        Ok(V4l2Camera {
            stream,
            started: Instant::now(),
        })
    }
}

impl FrameGrabber for V4l2Camera {
    fn next_frame(
        &mut self,
        stop: &StopSignal,
        want: &mut dyn FnMut(Duration) -> bool,
    ) -> io::Result<Grabbed> {
        match stop.wait_readable(self.stream.as_raw_fd(), Some(STALL_TIMEOUT)) {
            Wake::Stopped => return Ok(Grabbed::Stopped),
            Wake::TimedOut => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no frame for {} s", STALL_TIMEOUT.as_secs()),
                ))
            }
            Wake::Ready => {}
        }
        let at = self.started.elapsed();
        self.stream.dequeue(|buf| {
            if buf.is_error() || !want(at) {
                return Ok(Grabbed::Skipped);
            }
            Ok(Grabbed::Kept(buf.to_vec(), at))
        })
    }
}

/// Starts a camera source on the device in `config`. A device that does not exist
/// (yet) or disappears is retried with back-off (1 s doubling to 30 s) until stopped;
/// a device that is not a camera or offers no MJPEG is an error at once.
pub fn spawn_camera_source(
    config: CameraSourceConfig,
    tx: SyncSender<SourceFrame>,
) -> Result<SourceHandle, SourceError> {
    let first = match V4l2Camera::open(&config) {
        Ok(camera) => Some(camera),
        Err(SourceError::Camera { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(libc::ENOENT | libc::ENODEV | libc::ENXIO)
            ) =>
        {
            tracing::warn!(device = %config.device.display(), error = %source, "camera not present; retrying");
            None
        }
        Err(e) => return Err(e),
    };
    let name = format!("camera-source:{}", config.device.display());
    SourceHandle::spawn(name, move |stop| {
        let mut camera = first;
        let mut retries = Retries::new(Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(30),
        ));
        loop {
            if let Some(mut cam) = camera.take() {
                match run_capture(&mut cam, &config, &tx, &stop) {
                    Ok(_) => return Ok(()),
                    Err(e) => {
                        tracing::warn!(device = %config.device.display(), error = %e, "camera capture failed; reopening");
                        retries.reset();
                    }
                }
            }
            if stop.wait(retries.next_delay(0.0)) {
                return Ok(());
            }
            match V4l2Camera::open(&config) {
                Ok(cam) => camera = Some(cam),
                Err(e @ SourceError::CameraFormat { .. }) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "cannot open camera; retrying"),
            }
        }
    })
}
