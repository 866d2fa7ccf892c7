//! The HTTP surface of `crossdock run`: webhook ingress, `/health`, `/metrics`, the admin
//! API and the web console that uses it (`console.rs`), as one `axum::Router` built by [`router`], and [`serve`], which serves it with bounds on
//! what a client can hold (`serve.rs`).
//!
//! A webhook handler verifies (with the scheme the compiled flow holds, see `crate::verify`),
//! persists and answers; the runtime's workers do the rest. Routes are looked up in the live
//! version on every request (not registered with axum), so a reload adds, removes and changes
//! webhook paths by swapping the version, with nothing to rebuild.
//! Errors become responses in one place, [`ApiError`].

mod admin;
pub mod console;
mod playground;
mod serve;
mod webhook;

pub use serve::{serve, Limits};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::runtime::Runtime;

/// The whole HTTP surface over one runtime.
pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .nest("/api", admin::router(runtime.clone()))
        .merge(console::router())
        .fallback(webhook::receive)
        .with_state(runtime)
}

/// 200 while the engine takes events; 503 while it drains or its storage refuses them (a
/// nearly full disk, a failing store), so a load balancer sends elsewhere.
async fn health(axum::extract::State(runtime): axum::extract::State<Arc<Runtime>>) -> Response {
    let live = runtime.live();
    let storage = runtime.storage.refusal(runtime.inbox.committer.failure());
    let cluster_ref = runtime.cluster();
    let cluster = cluster_ref.map(|c| c.health());
    let (status, word) = if runtime.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if storage.is_some() {
        (StatusCode::SERVICE_UNAVAILABLE, "storage")
    } else if cluster.as_ref().is_some_and(|c| !c.connected) {
        (StatusCode::SERVICE_UNAVAILABLE, "nats")
    } else {
        (StatusCode::OK, "ok")
    };
    let body = json!({
        "status": word,
        "version": live.project.version,
        "pending": runtime.inbox.pending_count(),
        "pending_bytes": runtime.inbox.pending_bytes(),
        // A cluster's letters are counted every few seconds, not listed per request.
        "dead_letters": cluster_ref.map_or_else(|| runtime.inbox.dead_letter_count() as u64, |l| l.dead_letters()),
        "storage": {
            "ok": storage.is_none(),
            "free_bytes": runtime.storage.free_bytes(),
            "error": storage,
        },
        "cluster": cluster,
    });
    (status, Json(body)).into_response()
}

async fn metrics(axum::extract::State(runtime): axum::extract::State<Arc<Runtime>>) -> Response {
    // A breaker's state changes with time alone (open turns half-open when its cooldown ends),
    // while calls only set the gauge when they are made: read it now, as it is.
    // A per-tenant connector's instances (`name@tenant`) are left out: one gauge each would
    // grow the page with the tenants list. Their calls set the connector's own gauge.
    for (name, connector) in &runtime.live().connectors {
        if !name.contains('@') {
            crate::runtime::metrics::breaker_state(name, connector.breaker.state().as_gauge());
        }
    }
    runtime.refresh_gauges();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::runtime::metrics::render(),
    )
        .into_response()
}

/// Every error the HTTP surface answers with: a status and a JSON `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// The engine's settings forbid it, whoever asks.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// What was asked contradicts the state it would act on (409).
    #[error("{0}")]
    Conflict(String),
    /// The body did not arrive within `body_timeout`.
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Unavailable(String),
    /// 503 by design (a full backlog, a shutdown): the sender retries later. Counted by
    /// `crossdock_webhooks_rejected_total`, not logged per request, which under overload would
    /// write a line for every refused request.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if matches!(self, ApiError::Busy(_)) {
            tracing::debug!(error = %self, "Request refused");
        } else if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "Request failed");
        }
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        response
    }
}

impl From<crate::runtime::InboxError> for ApiError {
    fn from(e: crate::runtime::InboxError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::state::StateError> for ApiError {
    fn from(e: crate::state::StateError) -> ApiError {
        match e {
            crate::state::StateError::Invalid(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// At most one log line per key per interval, each with the number of lines left out since
/// the last. Keys must come from a bounded set (pipeline names, not anything a sender chooses).
pub(crate) struct LogLimiter {
    every: Duration,
    keys: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LogLimiter {
    pub(crate) fn new(every: Duration) -> LogLimiter {
        LogLimiter {
            every,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(lines left out since the last)` when a line may be written now.
    pub(crate) fn admit(&self, key: &str, now: Instant) -> Option<u64> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match keys.get_mut(key) {
            Some((last, suppressed)) if now.duration_since(*last) < self.every => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                keys.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_writes_one_line_per_key_per_interval_and_counts_the_rest() {
        let limiter = LogLimiter::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(limiter.admit("a", t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(limiter.admit("a", t0 + Duration::from_millis(i)), None);
        }
        // Another pipeline has its own allowance.
        assert_eq!(limiter.admit("b", t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(limiter.admit("a", t0 + Duration::from_secs(5)), Some(1000));
        assert_eq!(limiter.admit("a", t0 + Duration::from_secs(6)), None);
        assert_eq!(limiter.admit("a", t0 + Duration::from_secs(11)), Some(1));
    }
}
