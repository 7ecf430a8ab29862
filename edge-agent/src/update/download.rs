//! A package download that survives cuts: the bytes go to `staging/<sha256>.part`,
//! and each new attempt (after a cut, or after a restart of the agent) asks only for
//! what is missing with an HTTP `Range: bytes=N-` request (RFC 9110 section 14.2). A
//! server that answers 200 instead of 206 sends the whole file again, which is taken
//! from the start. Never more than the job's size is written: a longer body is an
//! error, not a full disk.
//!
//! Blocking (`ureq`): it runs on the update worker's thread, which has nothing else
//! to do meanwhile.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use protocol::backoff::Backoff;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("the package download failed after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("the server sent more than the job's {size} bytes")]
    TooLong { size: u64 },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the package URL answered HTTP {status} (an expired or wrong presigned URL?)")]
    Refused { status: u16 },
    #[error("stopped: the agent is shutting down")]
    Stopped,
}

/// How often to try and how long to wait between tries.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Backoff,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
        }
    }
}

/// Fetches `url` into `part` until it holds `size` bytes, and returns them.
/// `stopping` is checked between attempts.
pub fn download(
    url: &str,
    part: &Path,
    size: u64,
    retry: Retry,
    stopping: &dyn Fn() -> bool,
) -> Result<Vec<u8>, DownloadError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_body(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut last = String::new();
    for attempt in 0..retry.attempts {
        if attempt > 0 {
            if stopping() {
                return Err(DownloadError::Stopped);
            }
            std::thread::sleep(retry.backoff.delay(attempt, 0.5));
        }
        match fetch_rest(&agent, url, part, size) {
            Ok(()) => {
                return std::fs::read(part).map_err(|source| DownloadError::Write {
                    path: part.display().to_string(),
                    source,
                })
            }
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(e)) => {
                tracing::warn!(attempt = attempt + 1, error = %e, "package download interrupted; will resume");
                last = e;
            }
        }
    }
    Err(DownloadError::GaveUp {
        attempts: retry.attempts,
        last,
    })
}

enum Attempt {
    Retry(String),
    Fatal(DownloadError),
}

fn fetch_rest(agent: &ureq::Agent, url: &str, part: &Path, size: u64) -> Result<(), Attempt> {
    let write_err = |source| {
        Attempt::Fatal(DownloadError::Write {
            path: part.display().to_string(),
            source,
        })
    };
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if have == size {
        return Ok(());
    }
    if have > size {
        std::fs::remove_file(part).map_err(write_err)?;
        return Err(Attempt::Retry(
            "a stale partial download was longer than the package".into(),
        ));
    }
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request.call().map_err(|e| Attempt::Retry(e.to_string()))?;
    let status = response.status().as_u16();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .map_err(write_err)?;
    let mut written = match status {
        206 if have > 0 => have,
        200 => {
            file.set_len(0).map_err(write_err)?;
            0
        }
        // 416: the range starts at or past the end; start again.
        416 => {
            file.set_len(0).map_err(write_err)?;
            return Err(Attempt::Retry("the server refused the resume range".into()));
        }
        // A client error will not change by asking again (an expired presigned URL
        // is 403): give up at once; timeouts and throttling are worth another try.
        other if (400..500).contains(&other) && !matches!(other, 408 | 429) => {
            return Err(Attempt::Fatal(DownloadError::Refused { status: other }));
        }
        other => {
            return Err(Attempt::Retry(format!(
                "HTTP status {other} from the package URL"
            )))
        }
    };
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body.read(&mut buf).map_err(|e| {
            Attempt::Retry(format!(
                "the connection broke after {written} of {size} bytes: {e}"
            ))
        })?;
        if n == 0 {
            break;
        }
        if written + n as u64 > size {
            let _ = file.set_len(0);
            return Err(Attempt::Fatal(DownloadError::TooLong { size }));
        }
        file.write_all(&buf[..n]).map_err(write_err)?;
        written += n as u64;
    }
    file.sync_all().map_err(write_err)?;
    if written < size {
        return Err(Attempt::Retry(format!(
            "the body ended after {written} of {size} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A presigned package URL is `https://`. Its TLS must not depend on something else
    /// (the MQTT connection) having installed a rustls crypto provider first: in this
    /// test process nothing has, and a server that does not speak TLS is an error
    /// naming the failure, not a panic of the update worker.
    #[test]
    fn an_https_url_gives_an_error_not_a_panic_when_no_tls_provider_was_installed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            // Plain HTTP where the client expects a TLS ServerHello.
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let once = Retry {
            attempts: 1,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(1)),
        };
        let result = download(
            &format!("https://{addr}/package.tar"),
            &dir.path().join("package.part"),
            10,
            once,
            &|| false,
        );
        server.join().unwrap();
        match result {
            Err(DownloadError::GaveUp { attempts: 1, last }) => assert!(!last.is_empty()),
            other => panic!("expected the attempt to fail with a reason, got {other:?}"),
        }
    }
}
