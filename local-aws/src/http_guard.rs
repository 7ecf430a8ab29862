//! The one guard in front of every local HTTP service (review service with its A2I
//! runtime, control plane and reviewer page; the S3 object store; the Jobs control
//! API), applied by [`protect`] where each is served:
//!
//! - `Host` must name this machine's loopback interface (`localhost`, `127.x.y.z`,
//!   `[::1]`) with the listener's port. A web page that rebinds its own DNS name to
//!   127.0.0.1 ("DNS rebinding") still sends its own name as `Host`, and is refused.
//! - `Origin`, when a browser sends one, must be this very origin (`http://` + the
//!   `Host`): a page elsewhere, even another local port, cannot drive these APIs, not
//!   even with the "simple" `text/plain` POSTs that skip CORS preflight. `Origin: null`
//!   (sandboxed frames, `file:` pages) is refused too.
//! - Every response, refusals included, carries a strict Content-Security-Policy (no
//!   inline script or style, nothing from elsewhere, no framing; a handler may set a
//!   stricter one), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`
//!   and `Cross-Origin-Resource-Policy: same-origin`, so nothing served here runs or
//!   loads in another site's page.
//!
//! Sources: the Fetch standard (the `Origin` header, CORS-safelisted requests), MDN
//! "Content-Security-Policy" and "X-Content-Type-Options", OWASP "DNS rebinding".
//! Clients are unaffected: the AWS SDKs, the CLI, boto3 and curl send
//! `Host: 127.0.0.1:PORT` and no `Origin`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::review_service::wire::ApiError;

/// The Content-Security-Policy of every response: everything from this origin only,
/// no inline script or style, no plugins, no framing, no form posts elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// `app` behind the guard, for a listener on `port`.
pub fn protect(app: Router, port: u16) -> Router {
    app.layer(middleware::from_fn_with_state(port, guard))
}

async fn guard(State(port): State<u16>, req: Request, next: Next) -> Response {
    let mut resp = match check(req.headers(), port) {
        Ok(()) => next.run(req).await,
        Err(message) => {
            tracing::warn!(%message, "refused a request");
            ApiError::new(StatusCode::FORBIDDEN, "AccessDeniedException", message).into_response()
        }
    };
    let h = resp.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// Splits `host[:port]` (IPv6 in brackets); `None` when it does not parse.
fn split_host(authority: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        (name, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    Some((name, port))
}

/// Whether `name` (no port) is this machine's loopback interface.
fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The guard's rule; `Err` says what was refused.
fn check(headers: &HeaderMap, port: u16) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("(not ASCII)"))
        .ok_or("the request has no Host header")?;
    let loopback_here =
        split_host(host).is_some_and(|(name, p)| is_loopback_name(name) && p.unwrap_or(80) == port);
    if !loopback_here {
        return Err(format!(
            "Host {host:?} is not this service's loopback address (localhost, 127.0.0.1 or [::1] with port {port})"
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not ASCII)");
        let same = origin
            .strip_prefix("http://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Err(format!(
                "cross-origin request from Origin {origin:?} refused (only http://{host} may call this service from a browser)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, v.parse().unwrap());
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn loopback_hosts_on_the_listeners_port_pass() {
        for host in [
            "127.0.0.1:8089",
            "localhost:8089",
            "LOCALHOST:8089",
            "[::1]:8089",
            "127.1.2.3:8089",
        ] {
            assert_eq!(check(&headers(Some(host), None), 8089), Ok(()), "{host}");
        }
        assert_eq!(check(&headers(Some("localhost"), None), 80), Ok(()));
    }

    #[test]
    fn other_hosts_and_ports_are_refused_naming_the_host() {
        for host in [
            "evil.example:8089",
            "localhost.evil.example:8089",
            "10.0.0.1:8089",
            "127.0.0.1:9999",
            "localhost",
            "[::1]",
            "127.0.0.1:x",
            "",
        ] {
            let e = check(&headers(Some(host), None), 8089).unwrap_err();
            assert!(e.contains(&format!("{host:?}")), "{host}: {e}");
        }
        assert!(check(&headers(None, None), 8089)
            .unwrap_err()
            .contains("no Host"));
    }

    #[test]
    fn only_the_same_origin_may_send_an_origin() {
        let ok = headers(Some("127.0.0.1:8089"), Some("http://127.0.0.1:8089"));
        assert_eq!(check(&ok, 8089), Ok(()));
        for origin in [
            "https://evil.example",
            "http://localhost:3000",
            "http://localhost:8089", // another origin, though the same machine
            "https://127.0.0.1:8089",
            "null",
        ] {
            let e = check(&headers(Some("127.0.0.1:8089"), Some(origin)), 8089).unwrap_err();
            assert!(
                e.contains("cross-origin") && e.contains(origin),
                "{origin}: {e}"
            );
        }
    }
}
