//! Frame sources: where frames come from before the pipeline decodes them.
//!
//! Each source (a watched folder, a V4L2 camera, a command writing MJPEG to its
//! standard output) runs on its own thread and sends [`SourceFrame`]s into a bounded
//! `SyncSender`: when the consumer falls behind, the source blocks (a camera then drops
//! frames in the driver, a folder simply waits, a command's pipe fills and it waits),
//! so memory never grows. A [`SourceHandle`] owns the thread; [`SourceHandle::stop`] wakes
//! it through an eventfd (no polling while idle) and joins it, promptly even when the
//! source is blocked on a full channel. A source that fails for good ends its thread, so
//! the consumer sees the channel disconnect and [`SourceHandle::join`] says why.

pub mod camera;
pub mod command;
pub mod folder;
pub mod mjpeg;
pub mod mjpeg_stream;
/// File names kept as bytes and shown escaped: the convention is `protocol`'s, shared
/// with local mode.
pub use protocol::file_name as names;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One frame as a source produced it: encoded image bytes, not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFrame {
    /// A short name for logs and the event: the file name as [`names::escaped`] shows
    /// it (the file itself is `path`), or `camera-<ms>.jpg`.
    pub name: String,
    /// The file the frame came from (folder sources); `None` for a camera frame.
    /// The daemon passes it to [`folder::finish`] once the frame is fully handled.
    pub path: Option<PathBuf>,
    /// The encoded image (JPEG or PNG), complete.
    pub bytes: Vec<u8>,
    /// Wall-clock time of capture (camera) or of pick-up (folder), ms since the epoch.
    pub captured_at_ms: u64,
}

/// Why a source could not start, or why it ended.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("watching folder {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("camera {device}: {source}")]
    Camera {
        device: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("camera {device}: {message}")]
    CameraFormat { device: PathBuf, message: String },
    #[error("command source {name}: {message}")]
    Command { name: String, message: String },
    #[error("cannot create the stop signal: {0}")]
    Signal(#[source] std::io::Error),
    #[error("source thread {0} panicked")]
    Panicked(String),
}

/// A level-triggered stop flag that can also wake a thread blocked in `poll(2)`:
/// an atomic for cheap checks plus an eventfd that becomes readable, and stays so,
/// once [`StopSignal::trigger`] is called. Clones share the same signal.
#[derive(Debug, Clone)]
pub struct StopSignal {
    inner: Arc<StopInner>,
}

#[derive(Debug)]
struct StopInner {
    stopped: AtomicBool,
    eventfd: OwnedFd,
}

/// What a [`StopSignal::wait_readable`] call ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The watched file descriptor is readable.
    Ready,
    /// The stop signal was triggered.
    Stopped,
    /// The timeout passed with neither.
    TimedOut,
}

impl StopSignal {
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a non-negative return is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(StopSignal {
            inner: Arc::new(StopInner {
                stopped: AtomicBool::new(false),
                eventfd,
            }),
        })
    }

    /// Asks every thread holding a clone to stop. Idempotent.
    pub fn trigger(&self) {
        if !self.inner.stopped.swap(true, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to a descriptor we own. The counter
            // is never read, so the eventfd stays readable: every later poll sees it.
            unsafe {
                libc::write(
                    self.inner.eventfd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Sleeps for `timeout` unless the signal is triggered first; true if it was.
    pub fn wait(&self, timeout: Duration) -> bool {
        self.poll(None, Some(timeout)) == Wake::Stopped
    }

    /// Waits until `fd` is readable, the signal is triggered, or `timeout` passes
    /// (`None`: no timeout). A triggered signal wins over a readable `fd`.
    pub fn wait_readable(&self, fd: RawFd, timeout: Option<Duration>) -> Wake {
        self.poll(Some(fd), timeout)
    }

    fn poll(&self, fd: Option<RawFd>, timeout: Option<Duration>) -> Wake {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if self.is_triggered() {
                return Wake::Stopped;
            }
            let mut fds = [
                libc::pollfd {
                    fd: self.inner.eventfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: fd.unwrap_or(-1), // poll ignores negative descriptors
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    // Round up so a sub-millisecond remainder does not spin.
                    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                }
            };
            // SAFETY: `fds` is a live array of two pollfd structs.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // poll only fails on EINTR, ENOMEM or programming errors; back off
                // rather than spin, and let the caller re-check.
                std::thread::sleep(Duration::from_millis(10));
                return Wake::TimedOut;
            }
            if fds[0].revents != 0 || self.is_triggered() {
                return Wake::Stopped;
            }
            if fds[1].revents != 0 {
                return Wake::Ready;
            }
            if n == 0 {
                return Wake::TimedOut;
            }
        }
    }
}

/// How long a source waits before retrying a send into a full channel. `SyncSender`
/// has no timed send, so a blocked source re-tries at this pace and checks the stop
/// signal in between: 100 wake-ups a second only while the consumer is saturated.
const FULL_CHANNEL_RETRY: Duration = Duration::from_millis(10);

/// What became of a frame handed to [`send_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// The stop signal was triggered while the channel was full; the frame was dropped.
    Stopped,
    /// The consumer is gone; the source should end.
    Disconnected,
}

/// Sends `frame`, waiting while the channel is full (back-pressure), but giving up
/// as soon as `stop` is triggered.
pub fn send_frame(tx: &SyncSender<SourceFrame>, mut frame: SourceFrame, stop: &StopSignal) -> Sent {
    loop {
        match tx.try_send(frame) {
            Ok(()) => return Sent::Delivered,
            Err(TrySendError::Disconnected(_)) => return Sent::Disconnected,
            Err(TrySendError::Full(back)) => {
                frame = back;
                if stop.wait(FULL_CHANNEL_RETRY) {
                    return Sent::Stopped;
                }
            }
        }
    }
}

/// A running source: its thread and the signal that stops it.
#[derive(Debug)]
pub struct SourceHandle {
    name: String,
    stop: StopSignal,
    thread: Option<JoinHandle<Result<(), SourceError>>>,
}

impl SourceHandle {
    /// Runs `body` on a new thread named `name`; `body` gets a clone of the signal.
    pub fn spawn(
        name: impl Into<String>,
        body: impl FnOnce(StopSignal) -> Result<(), SourceError> + Send + 'static,
    ) -> Result<Self, SourceError> {
        let name = name.into();
        let stop = StopSignal::new().map_err(SourceError::Signal)?;
        let for_thread = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || body(for_thread))
            .map_err(SourceError::Signal)?;
        Ok(SourceHandle {
            name,
            stop,
            thread: Some(thread),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A clone of the stop signal, e.g. to stop every source from a shutdown handler.
    pub fn stop_signal(&self) -> StopSignal {
        self.stop.clone()
    }

    /// True once the thread has ended (stopped, failed or its consumer went away).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the source and waits for its thread: prompt even while it is idle or
    /// blocked on a full channel (a frame in hand is then dropped; with a folder
    /// source its file stays in place and is picked up again at the next start).
    pub fn stop(mut self) -> Result<(), SourceError> {
        self.stop.trigger();
        self.take_result()
    }

    /// Waits for the thread to end on its own and returns why it ended.
    pub fn join(mut self) -> Result<(), SourceError> {
        self.take_result()
    }

    fn take_result(&mut self) -> Result<(), SourceError> {
        match self.thread.take() {
            None => Ok(()),
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(SourceError::Panicked(self.name.clone()))),
        }
    }
}

impl Drop for SourceHandle {
    fn drop(&mut self) {
        self.stop.trigger();
        let _ = self.take_result();
    }
}

/// Milliseconds since the Unix epoch, for [`SourceFrame::captured_at_ms`].
pub use protocol::timestamp::now_ms;

/// Whether a file is hidden (its name starts with a dot): partial copies (`.x.part`),
/// macOS metadata twins (`._photo.jpg`), editors' swap files. The folder source never
/// takes them, and every command that reads a folder of frames skips them the same way.
pub fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;
    use std::time::Instant;

    fn frame(name: &str) -> SourceFrame {
        SourceFrame {
            name: name.into(),
            path: None,
            bytes: vec![1, 2, 3],
            captured_at_ms: 0,
        }
    }

    #[test]
    fn a_triggered_signal_wakes_a_waiter_at_once() {
        let stop = StopSignal::new().unwrap();
        let other = stop.clone();
        let t = std::thread::spawn(move || {
            let t0 = Instant::now();
            assert!(other.wait(Duration::from_secs(30)));
            t0.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        stop.trigger();
        stop.trigger(); // idempotent
        assert!(t.join().unwrap() < Duration::from_secs(5));
        assert!(stop.wait(Duration::ZERO), "the signal stays triggered");
    }

    #[test]
    fn wait_times_out_when_nothing_happens() {
        let stop = StopSignal::new().unwrap();
        let t0 = Instant::now();
        assert!(!stop.wait(Duration::from_millis(30)));
        assert!(t0.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_source_blocked_on_a_full_channel_stops_promptly() {
        let (tx, rx) = sync_channel(1);
        let handle = SourceHandle::spawn("test-source", move |stop| {
            while send_frame(&tx, frame("f"), &stop) == Sent::Delivered {}
            Ok(())
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while rx.try_recv().is_err() {
            assert!(Instant::now() < deadline, "no frame arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
        let t0 = Instant::now();
        handle.stop().unwrap();
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn a_source_ends_when_its_consumer_goes_away() {
        let (tx, rx) = sync_channel(1);
        drop(rx);
        let stop = StopSignal::new().unwrap();
        assert_eq!(send_frame(&tx, frame("f"), &stop), Sent::Disconnected);
    }
}
