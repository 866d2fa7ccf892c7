//! Reading events under `/api/events` and `/api/refused`: a page of trails filtered by
//! pipeline, key and time, one trail, a stored delivery's headers (secrets masked) and body.
//! It must not change an event or the inbox.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::runtime::Runtime;
use crate::server::ApiError;

use super::Rt;

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    #[serde(default)]
    pipeline: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
    /// `NAME:VALUE`: the events whose correlation key NAME has VALUE.
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    /// Received at this time or later (RFC 3339).
    #[serde(default)]
    since: Option<String>,
    /// Received before this time (RFC 3339).
    #[serde(default)]
    until: Option<String>,
}

/// A filter's time: RFC 3339, or nothing when absent or empty.
pub(super) fn filter_time(
    t: Option<&str>,
    what: &str,
) -> Result<Option<chrono::DateTime<chrono::FixedOffset>>, ApiError> {
    t.filter(|t| !t.is_empty())
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t).map_err(|e| {
                ApiError::BadRequest(format!("{what} `{t}` is not an RFC 3339 time: {e}"))
            })
        })
        .transpose()
}

/// `NAME:VALUE` split at the first colon (a key name has none).
pub(super) fn split_key(key: &str) -> Result<(&str, &str), ApiError> {
    match key.split_once(':') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => Ok((name, value)),
        _ => Err(ApiError::BadRequest(format!(
            "key `{key}`: write NAME:VALUE, such as order:1001"
        ))),
    }
}

/// Trails read per page at most, whatever the filter keeps: a filter that matches nothing in
/// 100,000 stored trails answers a page with a `next` instead of reading them all.
const EVENTS_SCAN: usize = 5000;

/// Finished (and retrying) events, newest first, from their trails.
pub(super) async fn events(
    State(rt): Rt,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let filter = crate::runtime::inbox::TrailFilter {
        pipeline: q.pipeline.as_deref().filter(|p| !p.is_empty()),
        outcome: q.outcome.as_deref().filter(|o| !o.is_empty()),
        tenant: q.tenant.as_deref().filter(|t| !t.is_empty()),
        since: filter_time(q.since.as_deref(), "since")?,
        until: filter_time(q.until.as_deref(), "until")?,
    };
    let key = q.key.as_deref().filter(|k| !k.is_empty());
    // In a cluster the events ran on any node: the cluster's index lists them.
    if let Some(link) = rt.cluster() {
        let key = key.map(split_key).transpose()?;
        return Ok(Json(
            link.trail_page(key, &filter, q.cursor.as_deref(), limit, EVENTS_SCAN)
                .await?,
        ));
    }
    if let Some(key) = key {
        return Ok(Json(rt.inbox.key_page(
            split_key(key)?,
            &filter,
            q.cursor.as_deref(),
            limit,
            EVENTS_SCAN,
        )?));
    }
    Ok(Json(rt.inbox.trail_page(
        &filter,
        q.cursor.as_deref(),
        limit,
        EVENTS_SCAN,
    )?))
}

/// Bytes of the body `GET /api/events/{id}/raw` shows; the rest is one more request away.
const PREVIEW: usize = 4096;

/// Headers as the console shows them: a value whose name says it is a secret (`x-api-key`,
/// a token) masked whole, and any value of the project's secrets masked where it appears.
fn shown_headers(rt: &Runtime, headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let live = rt.live();
    headers
        .iter()
        .map(|(name, value)| {
            let value = if crate::config::env::looks_secret(name) {
                "[redacted]".to_owned()
            } else {
                live.project.redactor.redact(value)
            };
            (name.clone(), value)
        })
        .collect()
}

/// An event's delivery: headers (secrets masked), the signature check, and the first
/// [`PREVIEW`] bytes of the body as text.
pub(super) async fn event_raw(
    State(rt): Rt,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(raw) = raw(&rt, &id).await? else {
        return Err(ApiError::NotFound(format!(
            "no delivery kept for `{id}` (never received, or forgotten with its trail)"
        )));
    };
    let mut headers = shown_headers(&rt, &raw.headers);
    let signature = headers
        .remove(crate::server::webhook::SIGNATURE_HEADER)
        .unwrap_or_else(|| "not checked (no verify:, or not a webhook)".into());
    let cut = raw.body.len().min(PREVIEW);
    Ok(Json(json!({
        "event_id": id,
        "headers": headers,
        "signature": signature,
        "bytes": raw.bytes,
        "kept": raw.body.len(),
        "preview": String::from_utf8_lossy(&raw.body[..cut]),
        "truncated": cut < raw.bytes,
    })))
}

/// An event's delivery; in a cluster, from whichever node ran it or the stream that holds it.
async fn raw(
    rt: &Runtime,
    id: &str,
) -> Result<Option<crate::runtime::inbox::RawDelivery>, ApiError> {
    Ok(match rt.cluster() {
        Some(link) => link.raw(rt, id).await?,
        None => rt.inbox.raw(id)?,
    })
}

/// The kept body bytes as they arrived (at most `RAW_KEEP` of a finished event's).
pub(super) async fn event_body(
    State(rt): Rt,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    use axum::response::IntoResponse;
    let Some(raw) = raw(&rt, &id).await? else {
        return Err(ApiError::NotFound(format!("no delivery kept for `{id}`")));
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        raw.body,
    )
        .into_response())
}

/// The last deliveries refused for their signature, newest first (in memory: see
/// `runtime::refused`).
pub(super) async fn refused(State(rt): Rt) -> Json<Value> {
    let items: Vec<Value> = rt
        .refused
        .newest_first()
        .into_iter()
        .map(|mut r| {
            r.headers = shown_headers(&rt, &r.headers);
            serde_json::to_value(r).unwrap_or_default()
        })
        .collect();
    Json(json!({ "items": items, "kept_at_most": crate::runtime::refused::KEEP }))
}

/// An event back in the inbox (retrying, or a dead letter retried by hand) is shown as queued
/// with its last trail, not as that trail's old outcome.
pub(super) async fn event(State(rt): Rt, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    // In a cluster the event may wait or have run on any node: the cluster's buckets say.
    let (queued, trail) = match rt.cluster() {
        Some(link) => {
            let known = link.event(&rt, &id).await?;
            // In the stream and not yet shared by any node: it waits for one, or runs its
            // first attempt.
            if let Some(meta) = known.accepted {
                return Ok(Json(json!({
                    "event_id": meta.id,
                    "pipeline": meta.pipeline,
                    "status": "accepted",
                    "received_at": meta.received_at,
                    "attempts": 0,
                    "errors": [],
                    "last_attempt": null,
                })));
            }
            (known.queued, known.trail)
        }
        None => (rt.inbox.queued(&id)?, rt.inbox.trail(&id)?),
    };
    if let Some(meta) = queued {
        return Ok(Json(json!({
            "event_id": meta.id,
            "pipeline": meta.pipeline,
            "status": if meta.attempts == 0 { "queued" } else { "retrying" },
            "attempts": meta.attempts,
            "errors": meta.errors,
            "last_attempt": trail,
        })));
    }
    if let Some(trail) = trail {
        return Ok(Json(serde_json::to_value(trail).unwrap_or_default()));
    }
    Err(ApiError::NotFound(format!("no event `{id}`")))
}
