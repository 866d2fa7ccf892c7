//! The web console at `/ui`: static HTML, CSS and JavaScript embedded in the binary, served on
//! the engine's listener. The page holds no data of its own: everything it shows comes from the
//! admin API, called with the token the user types into its login form (kept in the tab's
//! `sessionStorage`), so without the token a visitor sees the login form and nothing else.
//!
//! This module serves files only; it must not read the runtime's data or check tokens itself
//! (the admin API does both). With the admin API off (no `CROSSDOCK_ADMIN_TOKEN`) the console is
//! off too: `/ui` answers 404 and says why.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::ApiError;
use crate::runtime::Runtime;

/// The console's files: name under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("console/app.js"),
    ),
    (
        "events.js",
        "text/javascript; charset=utf-8",
        include_str!("console/events.js"),
    ),
    (
        "overview.js",
        "text/javascript; charset=utf-8",
        include_str!("console/overview.js"),
    ),
    (
        "trail.js",
        "text/javascript; charset=utf-8",
        include_str!("console/trail.js"),
    ),
    (
        "playground.js",
        "text/javascript; charset=utf-8",
        include_str!("console/playground.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("console/style.css"),
    ),
];

/// Where the console is, for the start-up lines.
pub const PATH: &str = "/ui/";

pub(super) fn router() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{file}", get(asset))
}

async fn index(state: State<Arc<Runtime>>) -> Result<Response, ApiError> {
    asset(state, Path("index.html".to_string())).await
}

async fn asset(
    State(rt): State<Arc<Runtime>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    if rt.settings.admin_token.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::NotFound(
            "the console is off with the admin API: start crossdock with CROSSDOCK_ADMIN_TOKEN set"
                .into(),
        ));
    }
    let Some((_, kind, body)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return Err(ApiError::NotFound(format!("no console file `{file}`")));
    };
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(kind))],
        *body,
    )
        .into_response();
    let headers = response.headers_mut();
    // The page runs only its own script and talks only to this engine; no other site may frame
    // it (clickjacking a retry or drop button).
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary brings new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
