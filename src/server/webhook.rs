//! Webhook ingress: find the route in the live version, check size, signature and JSON, write
//! the event to the inbox, wait for the group commit, answer 202.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::runtime::{metrics, Accepted, InboxError, Route, Runtime};

/// Headers never stored with an event: credentials that scripts have no business seeing.
const DROPPED_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

pub(super) async fn receive(
    State(runtime): State<Arc<Runtime>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // One load of the version for the whole request: a reload meanwhile does not change the
    // route under it.
    let live = runtime.live();
    let path = uri.path();
    let Some(route) = live.routes.get(path) else {
        return Err(ApiError::NotFound(format!("no pipeline listens on {path}")));
    };
    let pipeline = route.pipeline.as_str();
    if runtime.is_draining() {
        metrics::rejected(pipeline, 503);
        return Err(ApiError::Busy("shutting down: not accepting events".into()));
    }
    if method != Method::POST {
        return Err(ApiError::MethodNotAllowed(format!(
            "{path} takes POST, not {method}"
        )));
    }
    let limit = runtime.settings.body_limit;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                metrics::rejected(pipeline, 413);
                return Err(ApiError::TooLarge(format!(
                    "the body is larger than {limit} bytes"
                )));
            }
            // The client went away or sent a broken body: nothing was received.
            metrics::rejected(pipeline, 400);
            return Err(ApiError::BadRequest(format!(
                "the body could not be read: {e}"
            )));
        }
    };
    let delivery_id = match &route.scheme {
        None => None,
        Some(scheme) => match scheme.verify(&headers, &body, chrono::Utc::now().timestamp()) {
            Ok(v) => v.delivery_id,
            Err(e) => {
                metrics::rejected(pipeline, 401);
                tracing::info!(pipeline, error = %e, "Webhook refused: signature");
                return Err(ApiError::Unauthorized(format!("signature: {e}")));
            }
        },
    };
    // One parse checks the body is JSON and, with `dedup_id:`, reads that field of it. JSON is
    // UTF-8 throughout, which serde_json does not check in what it skips: the flow's parse
    // checks it, so it is checked here too, or the event would fail only once queued.
    let parsed = match &route.dedup_id {
        Some((_, parser)) => parser.parse(&body).map(Some),
        None => crate::projection::utf8(&body)
            .and_then(serde_json::from_str::<serde::de::IgnoredAny>)
            .map(|_| None),
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            metrics::rejected(pipeline, 400);
            return Err(ApiError::BadRequest(format!("the body is not JSON: {e}")));
        }
    };
    let dedup_key = dedup_key(route, delivery_id, parsed.as_ref(), &body);
    let kept = keep_headers(&headers);
    let accepted = runtime
        .submit(pipeline, &[&dedup_key], kept, &body)
        .await
        .map_err(|e| match e {
            InboxError::Flush(_) => {
                ApiError::Unavailable(format!("the event could not be made durable: {e}"))
            }
            InboxError::Busy(_) => {
                metrics::rejected(pipeline, 503);
                ApiError::Busy(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        })?;
    match accepted {
        Accepted::New(event) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "event_id": event.meta.id })),
        )
            .into_response()),
        Accepted::Duplicate(id) => Ok((
            StatusCode::OK,
            Json(json!({ "event_id": id, "duplicate": true })),
        )
            .into_response()),
    }
}

/// The provider's delivery id, else the configured JSONPath's value, else the body's hash.
/// `parsed` is the body as the route's `dedup_id` parser read it, when the route has one.
fn dedup_key(
    route: &Route,
    delivery_id: Option<String>,
    parsed: Option<&serde_json::Value>,
    body: &[u8],
) -> String {
    if let Some(id) = delivery_id.filter(|s| !s.is_empty()) {
        return format!("id:{id}");
    }
    if let (Some((path, _)), Some(value)) = (&route.dedup_id, parsed) {
        if let Some(found) = path.first(value) {
            let text = match found {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return format!("path:{text}");
        }
    }
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

fn keep_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if DROPPED_HEADERS.contains(&name) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            out.insert(name.to_string(), v.to_string());
        }
    }
    out
}
