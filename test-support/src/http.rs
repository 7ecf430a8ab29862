//! A blocking HTTP/1.1 client for one request at a time, as `curl` would send it:
//! enough for the tests to drive the project's own HTTP servers running as child
//! processes (reviewer page, review service) without an HTTP client crate.
//!
//! Blocking on purpose: it is for servers in *other processes*. A server running on
//! the calling test's own current-thread runtime would never answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a request may take, connection to last byte.
const TIMEOUT: Duration = Duration::from_secs(20);

/// A response: status code, header block (status line included) and body (de-chunked).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `addr` (`host:port`) with `Connection: close` and reads the
/// whole response. A `body` is sent with `Content-Type: application/json` unless
/// `headers` name another.
///
/// # Panics
/// When the server cannot be reached or answers something that is not HTTP: a test
/// can do nothing better than stop with the reason.
///
/// ```no_run
/// let r = test_support::http_request(
///     "127.0.0.1:8089",
///     "GET",
///     "/review/api/queue?reviewer=ann",
///     &[("Authorization", "Bearer 0123456789abcdef")],
///     None,
/// );
/// assert_eq!(r.status, 200, "{}", r.text());
/// ```
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let mut stream =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let body = body.unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    let has_type = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() && !has_type {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream
        .write_all(&bytes)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"));
    let mut buf = Vec::new();
    stream
        .read_to_end(&mut buf)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: reading the response: {e}"));
    parse_response(&buf).unwrap_or_else(|| {
        panic!(
            "{method} http://{addr}{path}: not an HTTP response: {:?}",
            String::from_utf8_lossy(&buf)
        )
    })
}

fn parse_response(buf: &[u8]) -> Option<HttpResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut body = buf[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Some(HttpResponse { status, head, body })
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..eol]).ok()?;
        // A chunk size may carry extensions after ';'.
        let size = size.split(';').next()?.trim();
        let n = usize::from_str_radix(size, 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(eol + 2..eol + 2 + n)?);
        b = b.get(eol + 2 + n + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_is_reassembled() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Wikipedia");
    }

    #[test]
    fn a_plain_body_is_taken_as_it_is() {
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\nX: y\r\n\r\nnope").unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "nope"));
        assert!(r.head.contains("X: y"));
    }

    #[test]
    fn a_request_reaches_a_real_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            // Read until the 2-byte body after the blank line is in.
            while !got.ends_with(b"\r\n\r\n{}") {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let r = http_request(
            &addr,
            "POST",
            "/x",
            &[("Authorization", "Bearer t")],
            Some(b"{}"),
        );
        assert_eq!((r.status, r.text().as_str()), (201, "ok"));
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /x HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("Authorization: Bearer t\r\n"), "{request}");
        assert!(
            request.contains("Content-Type: application/json\r\n"),
            "{request}"
        );
    }
}
