//! The reviewer web page of local mode, served by the review service's own axum app
//! (one origin: page, JSON, images). Reviewers see the human loops in progress, oldest
//! first: the full-size frame, the model's suggestion and top-k scores, the label
//! choices plus "none of these" and how many are done and left. Keys: a label's number
//! (two digits in quick succession for 10 and up), `/` to filter the labels by name,
//! n for none of these, Enter submits, s skips. The frame's file name is shown with it;
//! the queue scrolls inside its panel; below 1000 px the page is one scrolling column. Submitting calls [`ReviewService::complete_loop`], which
//! writes `output.json` in A2I's layout, so the relay collects it as it would from A2I.
//! When a flow asks for several reviewers (`HumanLoopConfig.TaskCount`), answers from
//! distinct reviewers are kept in an [`AnswerBook`] until the last one arrives.
//!
//! | method + path | what |
//! |---|---|
//! | `GET /` | a redirect to `/review` (with its query) |
//! | `GET /review` | the page (`?token=` once; then a cookie) |
//! | `GET /review/assets/{review.css,review.js}` | its style and script, embedded in the binary |
//! | `GET /review/api/queue?reviewer=R` | loops waiting for R, and progress |
//! | `GET /review/api/progress?reviewer=R` | progress only |
//! | `GET /review/api/loops/{name}/image` | the frame, read from the local object store |
//! | `POST /review/api/loops/{name}/answer` | `{"reviewer","label","time_spent_seconds"}` |
//! | `POST /review/api/loops/{name}/skip` | `{"reviewer"}`: later, not now |
//! | `POST /review/api/skips/clear` | `{"reviewer"}`: show the skipped loops again |
//!
//! Every route needs the access token ([`auth`]); POSTs take JSON only, which with the
//! SameSite=Strict cookie keeps other sites from submitting on a reviewer's behalf.

pub mod answers;
pub mod auth;
mod handlers;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::Router;

pub use answers::{AnswerBook, Outcome};
pub use auth::generate_token;

use crate::object_store::DirStore;
use crate::review_service::persist::write_atomically;
use crate::review_service::{http as a2i_http, ReviewService};

/// What the page needs besides the review service.
#[derive(Debug, Clone)]
pub struct ReviewPageConfig {
    /// Required on every request; see [`auth`].
    pub token: String,
    /// The local object store the frames (`taskObject`) are read from.
    pub store: DirStore,
    /// Where answers of loops still waiting for more reviewers are kept.
    pub answers_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    Token(String),
    #[error("reading {path}: {source}")]
    Answers {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not parse: {source}")]
    AnswersJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub(crate) struct PageState {
    service: ReviewService,
    store: DirStore,
    answers_file: PathBuf,
    /// Answers of multi-reviewer loops; the async lock also serializes submissions.
    book: tokio::sync::Mutex<AnswerBook>,
    /// Loops each reviewer skipped (until they ask to see them again); not persisted.
    skipped: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl PageState {
    fn save_book(&self, book: &AnswerBook) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(book).expect("the answer book serializes");
        write_atomically(&self.answers_file, &json)
    }
}

fn load_book(path: &std::path::Path) -> Result<AnswerBook, PageError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| PageError::AnswersJson {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AnswerBook::default()),
        Err(source) => Err(PageError::Answers {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The `/review` routes, for merging into the review service's router.
pub fn router(service: ReviewService, config: ReviewPageConfig) -> Result<Router, PageError> {
    auth::validate_token(&config.token).map_err(PageError::Token)?;
    let book = load_book(&config.answers_file)?;
    let state = Arc::new(PageState {
        service,
        store: config.store,
        answers_file: config.answers_file,
        book: tokio::sync::Mutex::new(book),
        skipped: Mutex::new(HashMap::new()),
    });
    let api = Router::new()
        .route("/review", get(handlers::page))
        .route("/review/", get(handlers::page))
        .route("/review/assets/review.css", get(handlers::css))
        .route("/review/assets/review.js", get(handlers::js))
        .route("/review/api/queue", get(handlers::queue))
        .route("/review/api/progress", get(handlers::progress))
        .route("/review/api/loops/{name}/image", get(handlers::image))
        .route("/review/api/loops/{name}/answer", post(handlers::answer))
        .route("/review/api/loops/{name}/skip", post(handlers::skip))
        .route("/review/api/skips/clear", post(handlers::clear_skips))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            config.token,
            auth::require_token,
        ))
        .layer(axum::middleware::map_response(no_store));
    // Outside the token check: `/?token=` must reach `/review` with its token.
    Ok(Router::new().route("/", get(handlers::root)).merge(api))
}

/// The queue and the frames change under the page: nothing of it is cached. (The
/// CSP, `nosniff` and the rest come from [`crate::http_guard`], for every service.)
async fn no_store(mut resp: axum::response::Response) -> axum::response::Response {
    resp.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// The A2I API (signed for `verifier`) and the reviewer page on one listener, behind
/// the [`crate::http_guard`], until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: ReviewService,
    verifier: Arc<crate::sigv4::Verifier>,
    page: ReviewPageConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let port = listener.local_addr()?.port();
    let app = a2i_http::router(service.clone(), verifier).merge(router(service, page)?);
    let app = crate::http_guard::protect(app, port);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// The URL a reviewer opens: `http://ADDR/review?token=TOKEN`.
pub fn page_url(addr: std::net::SocketAddr, token: &str) -> String {
    format!("http://{addr}/review?token={token}")
}
