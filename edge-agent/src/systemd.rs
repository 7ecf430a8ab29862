//! The systemd notification protocol (`sd_notify(3)`), spoken directly.
//!
//! It is one datagram of `KEY=VALUE` lines to the unix socket named in `$NOTIFY_SOCKET`
//! (a path, or an abstract name written with a leading `@`), so ~30 lines of Rust do
//! what libsystemd would, without a C library to link and cross-compile for armv7.
//! Every call is a no-op when `$NOTIFY_SOCKET` is unset (not run by systemd, or
//! `Type=` is not `notify`), so the daemon calls these unconditionally.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go: the socket named by `$NOTIFY_SOCKET`, or nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifier {
    socket: Option<String>,
}

impl Notifier {
    /// The notifier systemd set up for this process, if any.
    pub fn from_env() -> Self {
        Notifier::new(std::env::var("NOTIFY_SOCKET").ok())
    }

    /// A notifier sending to `socket` (a path or `@abstract-name`); `None` or an empty
    /// string sends nothing.
    pub fn new(socket: Option<String>) -> Self {
        Notifier {
            socket: socket.filter(|s| !s.is_empty()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments) as one datagram.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let addr = match socket.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None if socket.starts_with('/') => SocketAddr::from_pathname(socket)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("NOTIFY_SOCKET={socket:?} is neither an absolute path nor @name"),
                ))
            }
        };
        let sock = UnixDatagram::unbound()?;
        let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
        if sent != state.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short notify datagram",
            ));
        }
        Ok(())
    }
}

/// Startup finished: systemd considers the unit started (`Type=notify`).
pub fn notify_ready() -> io::Result<()> {
    Notifier::from_env().notify("READY=1")
}

/// Keep-alive ping for `WatchdogSec=`; send at about half of [`watchdog_interval`].
pub fn notify_watchdog() -> io::Result<()> {
    Notifier::from_env().notify("WATCHDOG=1")
}

/// Shutdown began; systemd shows the unit as "deactivating".
pub fn notify_stopping() -> io::Result<()> {
    Notifier::from_env().notify("STOPPING=1")
}

/// A one-line status shown by `systemctl status` (newlines are replaced by spaces).
pub fn notify_status(status: &str) -> io::Result<()> {
    Notifier::from_env().notify(&format!("STATUS={}", status.replace('\n', " ")))
}

/// Asks systemd for `extra` more time to finish starting or stopping (a long flush).
pub fn notify_extend_timeout(extra: Duration) -> io::Result<()> {
    Notifier::from_env().notify(&format!("EXTEND_TIMEOUT_USEC={}", extra.as_micros()))
}

/// The watchdog period systemd expects pings within, if it watches this process:
/// `$WATCHDOG_USEC`, provided `$WATCHDOG_PID` is unset or names this process.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_interval`] over explicit values, for tests.
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None; // meant for another process (e.g. our parent)
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(listener: &UnixDatagram) -> String {
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = listener.recv(&mut buf).expect("a notification arrives");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_path_socket_receives_the_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(Some(path.to_str().unwrap().to_owned()));
        n.notify("READY=1").unwrap();
        assert_eq!(receive(&listener), "READY=1");
        n.notify("STATUS=draining outbox\nSTOPPING=1").unwrap();
        assert_eq!(receive(&listener), "STATUS=draining outbox\nSTOPPING=1");
    }

    #[test]
    fn an_abstract_socket_name_starts_with_an_at_sign() {
        let name = format!(
            "edge-agent-test-{}-{:?}",
            std::process::id(),
            std::time::Instant::now()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::new(Some(format!("@{name}")))
            .notify("WATCHDOG=1")
            .unwrap();
        assert_eq!(receive(&listener), "WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        assert!(!Notifier::new(None).is_enabled());
        Notifier::new(None).notify("READY=1").unwrap();
        Notifier::new(Some(String::new()))
            .notify("READY=1")
            .unwrap();
    }

    #[test]
    fn a_relative_socket_path_is_refused() {
        let err = Notifier::new(Some("notify.sock".into()))
            .notify("READY=1")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_missing_listener_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody.sock");
        assert!(Notifier::new(Some(path.to_str().unwrap().into()))
            .notify("READY=1")
            .is_err());
    }

    #[test]
    fn the_watchdog_interval_applies_only_to_the_named_process() {
        let d = |s| Some(Duration::from_secs(s));
        assert_eq!(watchdog_interval_from(Some("30000000"), None, 7), d(30));
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("7"), 7),
            d(30)
        );
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(None, Some("7"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 7), None);
    }
}
