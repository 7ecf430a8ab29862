//! The reviewer page's access token: generated at start (or configured), printed as
//! part of the page's URL, and required on every `/review` request. The first visit
//! carries it as `?token=`; the page answers with an HttpOnly, SameSite=Strict cookie
//! and a redirect to the bare URL, so the token leaves the address bar and history.
//! Scripts may send it as `Authorization: Bearer <token>` instead.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use crate::credentials::constant_time_eq as same;

pub const COOKIE: &str = "ea2i_review_token";

/// 128 random bits, hex.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}

/// Tokens must be long enough not to be guessed and safe in a URL and a cookie.
pub fn validate_token(token: &str) -> Result<(), String> {
    if token.len() < 16 || token.len() > 256 {
        return Err("the reviewer page token must be 16 to 256 characters".into());
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("the reviewer page token may hold only letters, digits, '-' and '_'".into());
    }
    Ok(())
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

fn presented(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookies = headers
        .get_all(header::COOKIE)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='));
    bearer.into_iter().chain(cookies)
}

/// Middleware: lets a request through with the right token, else 401.
pub async fn require_token(State(token): State<String>, req: Request, next: Next) -> Response {
    let uri = req.uri().clone();
    if let Some(t) = query_token(uri.query()) {
        if same(t, &token) {
            // Swap the token in the URL for a cookie, then show the clean URL.
            let cookie = format!("{COOKIE}={token}; Path=/review; HttpOnly; SameSite=Strict");
            let location = uri.path().to_owned();
            return (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, cookie),
                    (header::LOCATION, location),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                    (header::REFERRER_POLICY, "no-referrer".to_owned()),
                ],
            )
                .into_response();
        }
    } else if presented(req.headers()).any(|t| same(t, &token)) {
        return next.run(req).await;
    }
    let body = Html(
        "<!doctype html><meta charset=utf-8><title>edge-a2i review: token needed</title>\
         <body style=\"font:16px system-ui;margin:3rem\"><h1>Access token needed</h1>\
         <p>Open the reviewer page with the link <code>local-aws</code> printed at start \
         (it ends in <code>?token=...</code>).</p></body>",
    );
    (StatusCode::UNAUTHORIZED, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_valid_and_differ() {
        let (a, b) = (generate_token(), generate_token());
        assert!(validate_token(&a).is_ok());
        assert_ne!(a, b);
        assert!(validate_token("short").is_err());
        assert!(validate_token("with spaces in it, long enough").is_err());
    }

    #[test]
    fn the_token_is_read_from_bearer_header_and_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; ea2i_review_token=abc".parse().unwrap(),
        );
        h.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        let got: Vec<_> = presented(&h).collect();
        assert_eq!(got, ["xyz", "abc"]);
        assert_eq!(query_token(Some("x=1&token=t0k")), Some("t0k"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
