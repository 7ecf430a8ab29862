//! The one HTTP/1.1 client of the tests (feature `http`): a request to a server on
//! loopback, the whole response back as status, headers and body.
//!
//! Built on hyper's client (`hyper-util`'s `client::legacy`) rather than on a
//! hand-written parser: the workspace already compiles hyper for the AWS SDK and the
//! relay's own A2I client, so this adds no crate to the build, and the framing a test
//! must not get wrong (chunked bodies, `Content-Length`, `Host`) is hyper's. `ureq`
//! would have given a blocking API directly, but it is not in the lock file and would
//! be one more HTTP stack to compile on the 2-core build machine.
//!
//! [`Request::send`] is async: the project's in-process servers run on the test's own
//! runtime, so a test must await the response rather than block the thread the server
//! needs. [`Request::send_blocking`] is for plain `#[test]`s and for readiness probes
//! of server *processes*; it runs the request on a thread of its own, so it also
//! works when called from inside a runtime (but never block on an in-process server
//! that shares a current-thread runtime with the caller: that deadlocks).
//!
//! Every request uses a fresh connection that is closed after the response, so a
//! server's graceful shutdown never waits on an idle pooled connection.

use std::fmt::Display;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long a request may take, connect to last body byte, unless the test says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL, method or a header cannot make a request.
    #[error("{method} {url}: invalid request: {message}")]
    Invalid {
        method: String,
        url: String,
        message: String,
    },
    /// Connecting, sending or reading failed (e.g. nothing listens there).
    #[error("{method} {url}: {message}")]
    Failed {
        method: String,
        url: String,
        message: String,
    },
    /// No complete response within the request's timeout.
    #[error("{method} {url}: no complete response within {timeout:?}")]
    Timeout {
        method: String,
        url: String,
        timeout: Duration,
    },
}

/// A request being built; send it with [`send`](Self::send) or
/// [`send_blocking`](Self::send_blocking).
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Duration,
}

impl Request {
    /// `method` (e.g. `"POST"`) to `url` (`http://HOST:PORT/path?query`).
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A GET of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Request::new("GET", url)
    }

    /// A POST to `url` (add the body with [`body`](Self::body) or [`json`](Self::json)).
    pub fn post(url: impl Into<String>) -> Self {
        Request::new("POST", url)
    }

    /// Adds a header (`Host` and `Content-Length` are set by the client).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds every `(name, value)` of `headers`.
    pub fn headers(mut self, headers: &[(&str, &str)]) -> Self {
        self.headers.extend(
            headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        self
    }

    /// The request body, sent with its `Content-Length`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body (anything whose `Display` is JSON, e.g. `serde_json::Value`) with
    /// `Content-Type: application/json`.
    pub fn json(self, body: &impl Display) -> Self {
        self.header("Content-Type", "application/json")
            .body(body.to_string())
    }

    /// How long the whole exchange may take (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the request and reads the whole response (chunked or not).
    pub async fn send(self) -> Result<Response, HttpError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.clone().exchange()).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout {
                method: self.method,
                url: self.url,
                timeout,
            }),
        }
    }

    /// [`send`](Self::send) on a thread with its own runtime, waiting for the answer.
    pub fn send_blocking(self) -> Result<Response, HttpError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for one HTTP request");
                    runtime.block_on(self.send())
                })
                .join()
                .expect("the HTTP request thread does not panic")
        })
    }

    async fn exchange(self) -> Result<Response, HttpError> {
        let invalid = |message: String| HttpError::Invalid {
            method: self.method.clone(),
            url: self.url.clone(),
            message,
        };
        let failed = |message: String| HttpError::Failed {
            method: self.method.clone(),
            url: self.url.clone(),
            message,
        };
        let mut builder = hyper::Request::builder()
            .method(self.method.as_str())
            .uri(self.url.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(self.body.clone())))
            .map_err(|e| invalid(e.to_string()))?;
        // No idle connections kept: each request connects afresh and closes after.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        let response = client
            .request(request)
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(format!("reading the body: {}", error_chain(&e))))?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// Every header in the order received, names in lower case (a repeated header
    /// appears once per line).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET url` with the default timeout.
pub async fn get(url: &str) -> Result<Response, HttpError> {
    Request::get(url).send().await
}

/// `GET url` from synchronous code (see [`Request::send_blocking`]).
pub fn get_blocking(url: &str) -> Result<Response, HttpError> {
    Request::get(url).send_blocking()
}

/// An error and its sources on one line: hyper's own message alone is often just
/// "client error (Connect)".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-shot server on loopback that answers the first request with `response`
    /// and hands back what it received.
    fn serve_once(response: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "the client closed before its request ended");
                received.extend_from_slice(&buf[..n]);
            }
            stream.write_all(response).unwrap();
            received
        });
        (url, server)
    }

    #[test]
    fn a_chunked_body_arrives_whole_and_headers_are_found_in_any_case() {
        let (url, server) = serve_once(
            b"HTTP/1.1 201 Created\r\nX-Thing: one\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
        );
        let response = get_blocking(&format!("{url}/path?q=1")).unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.header("x-thing"), Some("one"));
        assert_eq!(response.header("X-THING"), Some("one"));
        assert_eq!(response.text(), "hello, world");
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(
            request.starts_with("GET /path?q=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request
            .to_ascii_lowercase()
            .contains("\r\nhost: 127.0.0.1:"));
    }

    #[tokio::test]
    async fn a_json_post_carries_its_type_length_and_extra_headers() {
        let (url, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let response = Request::post(url)
            .header("X-Amz-Target", "SageMaker.Op")
            .json(&"{\"a\":1}")
            .send()
            .await
            .unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"ok"[..])
        );
        let request = String::from_utf8(server.join().unwrap())
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            request.contains("\r\nx-amz-target: sagemaker.op\r\n"),
            "{request}"
        );
        assert!(
            request.contains("\r\ncontent-type: application/json\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\ncontent-length: 7\r\n"), "{request}");
    }

    #[test]
    fn nothing_listening_is_an_error_that_names_the_url() {
        let port = crate::free_port();
        let url = format!("http://127.0.0.1:{port}/");
        let error = get_blocking(&url).unwrap_err();
        assert!(matches!(error, HttpError::Failed { .. }), "{error}");
        assert!(error.to_string().contains(&url), "{error}");
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let error = Request::get(url)
            .timeout(Duration::from_millis(200))
            .send_blocking()
            .unwrap_err();
        assert!(matches!(error, HttpError::Timeout { .. }), "{error}");
        drop(listener);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_blocking_form_also_works_inside_a_runtime() {
        let (url, server) = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(get_blocking(&url).unwrap().status, 204);
        server.join().unwrap();
    }
}
