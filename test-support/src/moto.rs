//! A moto S3 server process on loopback (`python3 -m moto.server`).
//!
//! moto keeps everything in memory: [`MotoS3::stop`] / [`MotoS3::kill`] followed
//! by [`MotoS3::start`] (or [`MotoS3::restart`]) gives back the same endpoint with
//! **no buckets and no objects**. Tests that simulate an S3 outage this way must
//! create their bucket again after the outage (and must not expect objects stored
//! before it to be there).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::Result;
use crate::port::free_port;
use crate::process::{log_tail, ChildGuard};
use crate::server::{find_program, print_tail_if_panicking, start_and_wait, ServerDir, Started};

/// How long moto gets to answer HTTP (it imports a lot of Python on start).
const START_DEADLINE: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);
const PORT_ATTEMPTS: usize = 5;

/// Options for a [`MotoS3`] server; start with [`MotoS3::builder`].
#[derive(Debug, Clone, Default)]
pub struct MotoS3Builder {
    python: Option<PathBuf>,
    dir: Option<PathBuf>,
    port: Option<u16>,
}

impl MotoS3Builder {
    /// The Python interpreter with moto installed (default: `$MOTO_PYTHON`, else
    /// `python3` on `$PATH`).
    pub fn python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = Some(python.into());
        self
    }

    /// Keep the log in `dir` instead of a temp dir removed on drop.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Listen on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Starts moto and waits until it answers HTTP.
    ///
    /// # Panics
    /// When it does not start; the message carries the tail of its log.
    pub fn start(self) -> MotoS3 {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts moto and waits until it answers HTTP.
    pub fn try_start(self) -> Result<MotoS3> {
        let dir = ServerDir::new(self.dir.clone(), "moto-")?;
        let mut server = MotoS3 {
            child: None,
            port: self.port.unwrap_or_else(free_port),
            log_path: dir.path().join("moto.log"),
            python: self
                .python
                .clone()
                .unwrap_or_else(|| find_program("MOTO_PYTHON", "python3", &[])),
            dir,
        };
        let attempts = if self.port.is_some() {
            1
        } else {
            PORT_ATTEMPTS
        };
        for attempt in 1..=attempts {
            match server.spawn()? {
                Started::Ready(child) => {
                    server.child = Some(child);
                    return Ok(server);
                }
                Started::PortInUse(error) if attempt == attempts => return Err(error),
                Started::PortInUse(_) => server.port = free_port(),
            }
        }
        unreachable!("the last attempt returns")
    }
}

/// A running (or stopped) moto server; killed when dropped.
#[derive(Debug)]
pub struct MotoS3 {
    child: Option<ChildGuard>,
    port: u16,
    log_path: PathBuf,
    python: PathBuf,
    dir: ServerDir,
}

impl MotoS3 {
    /// Options for a new server.
    pub fn builder() -> MotoS3Builder {
        MotoS3Builder::default()
    }

    /// `http://127.0.0.1:PORT`: the endpoint URL for an S3 client (path-style).
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The host: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The port; it stays the same across stop, start and restart.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// moto's log (every start appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// Whether the moto process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Starts moto again after [`stop`](Self::stop) or [`kill`](Self::kill), on the
    /// same port, **empty**, and waits until it answers.
    ///
    /// # Panics
    /// When it is already running or does not start (with the log tail).
    pub fn start(&mut self) {
        assert!(!self.is_running(), "moto is already running");
        match self.spawn() {
            Ok(Started::Ready(child)) => self.child = Some(child),
            Ok(Started::PortInUse(e)) | Err(e) => panic!("{e}"),
        }
    }

    /// SIGTERM, wait (SIGKILL after 10 s). All buckets and objects are gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate(STOP_GRACE);
        }
    }

    /// SIGKILL and reap. All buckets and objects are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// [`stop`](Self::stop) then [`start`](Self::start): same endpoint, empty store.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    fn spawn(&mut self) -> Result<Started> {
        let port = self.port;
        start_and_wait(
            &format!("moto S3 on port {port}"),
            Command::new(&self.python)
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
                .arg(port.to_string()),
            &self.log_path,
            START_DEADLINE,
            |_log| answers_http(port),
        )
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        print_tail_if_panicking("moto", &self.log_path);
    }
}

/// Whether something on 127.0.0.1:`port` answers `GET /` with any HTTP response.
fn answers_http(port: u16) -> bool {
    crate::http::Request::get(format!("http://127.0.0.1:{port}/"))
        .timeout(Duration::from_secs(2))
        .send_blocking()
        .is_ok()
}
