//! The dead letters and the inbox under `/api/dlq` and `/api/inbox`: pages, one entry, retrying
//! one or every match (on the version it failed on or the live one) and dropping. It must not
//! run an event itself: a retry goes back through the inbox.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::server::ApiError;

use super::events::{filter_time, split_key};
use super::Rt;

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub(super) async fn dlq_list(
    State(rt): Rt,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    if let Some(link) = rt.cluster() {
        return Ok(Json(
            link.dead_letter_page(q.after.as_deref(), limit).await?,
        ));
    }
    Ok(Json(rt.inbox.dead_letter_page(q.after.as_deref(), limit)?))
}

/// A dead letter of this engine, or of the cluster it is a node of.
async fn dead_letter(
    rt: &crate::runtime::Runtime,
    id: &str,
) -> Result<Option<crate::runtime::inbox::DeadLetter>, ApiError> {
    match rt.cluster() {
        Some(link) => Ok(link.dead_letter(id).await?),
        None => Ok(rt.inbox.get_dead_letter(id)?),
    }
}

pub(super) async fn dlq_show(
    State(rt): Rt,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match dead_letter(&rt, &id).await? {
        Some(letter) => Ok(Json(serde_json::to_value(letter).unwrap_or_default())),
        None => Err(ApiError::NotFound(format!("no dead letter `{id}`"))),
    }
}

/// `?full=true`: every effect again, also those that succeeded before. `?version=failed`:
/// only on the version the letter failed on, refused (409) when that is no longer the live
/// one; `live` (the default) runs on the live version whatever failed it.
#[derive(Deserialize)]
pub(super) struct RetryQuery {
    #[serde(default)]
    full: bool,
    #[serde(default)]
    version: RetryVersion,
}

/// Which project version a retried dead letter runs on. Only the live version can run: an
/// older one is gone after a reload, so `Failed` is a condition, not a way back to it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RetryVersion {
    #[default]
    Live,
    Failed,
}

/// `?undo=false`: drop without running the compensations the letter owes.
#[derive(Deserialize)]
pub(super) struct DropQuery {
    #[serde(default = "yes")]
    undo: bool,
}

fn yes() -> bool {
    true
}

pub(super) async fn dlq_retry(
    State(rt): Rt,
    Path(id): Path<String>,
    Query(q): Query<RetryQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.version == RetryVersion::Failed {
        let Some(letter) = dead_letter(&rt, &id).await? else {
            return Err(ApiError::NotFound(format!("no dead letter `{id}`")));
        };
        let live = rt.live().project.version.clone();
        if letter.version != live {
            return Err(ApiError::Conflict(format!(
                "`{id}` failed on version {}, which is no longer live (the live one is {live}); \
                 an old version cannot run again: retry it on the live one",
                letter.version
            )));
        }
    }
    if let Some(link) = rt.cluster() {
        // Back to the cluster's stream, to run on whichever node takes it.
        return match link.retry_dead_letter(&id, q.full).await? {
            true => Ok(Json(json!({ "event_id": id, "status": "queued" }))),
            false => Err(ApiError::NotFound(format!("no dead letter `{id}`"))),
        };
    }
    match rt.inbox.retry_dead_letter(&id, q.full)? {
        Some(event) => {
            rt.store.flush()?;
            rt.enqueue(event);
            Ok(Json(json!({ "event_id": id, "status": "queued" })))
        }
        None => Err(ApiError::NotFound(format!("no dead letter `{id}`"))),
    }
}

/// What `POST /api/dlq/retry` retries: every dead letter matching all that is given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryMatching {
    #[serde(default)]
    pipeline: Option<String>,
    /// Text the reason contains (case is ignored).
    #[serde(default)]
    error: Option<String>,
    /// Dead since this time or later (RFC 3339).
    #[serde(default)]
    since: Option<String>,
    /// Dead before this time (RFC 3339).
    #[serde(default)]
    until: Option<String>,
    /// `NAME:VALUE`: a correlation key of the event.
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    full: bool,
    #[serde(default)]
    version: RetryVersion,
}

/// Dead letters one `POST /api/dlq/retry` retries at most; the answer says whether more
/// matched, and the same call again takes the next ones.
const RETRY_MATCHING_MAX: usize = 1000;

/// Retries every dead letter matching the filter (all of them with an empty one), up to
/// [`RETRY_MATCHING_MAX`]; answers how many and their ids, so a caller can follow them.
pub(super) async fn dlq_retry_matching(
    State(rt): Rt,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let f: RetryMatching = if body.iter().all(u8::is_ascii_whitespace) {
        RetryMatching::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the filter: {e}")))?
    };
    let filter = crate::runtime::inbox::DeadFilter {
        pipeline: f.pipeline.filter(|p| !p.is_empty()),
        error: f.error.filter(|e| !e.is_empty()).map(|e| e.to_lowercase()),
        since: filter_time(f.since.as_deref(), "since")?,
        until: filter_time(f.until.as_deref(), "until")?,
        key: f
            .key
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(split_key)
            .transpose()?
            .map(|(n, v)| (n.to_owned(), v.to_owned())),
    };
    let (letters, more) = match rt.cluster() {
        Some(link) => {
            link.dead_letters_matching(&filter, RETRY_MATCHING_MAX)
                .await?
        }
        None => rt
            .inbox
            .dead_letters_matching(&filter, RETRY_MATCHING_MAX)?,
    };
    let live = rt.live().project.version.clone();
    let mut retried = Vec::new();
    let mut not_retried = Vec::new();
    let mut queued = Vec::new();
    for letter in letters {
        let id = letter.event.id;
        if f.version == RetryVersion::Failed && letter.version != live {
            not_retried.push(json!({
                "event_id": id,
                "reason": format!("failed on version {}, which is no longer live", letter.version),
            }));
            continue;
        }
        if let Some(link) = rt.cluster() {
            if link.retry_dead_letter(&id, f.full).await? {
                retried.push(id);
            }
            continue;
        }
        if let Some(event) = rt.inbox.retry_dead_letter(&id, f.full)? {
            queued.push(event);
            retried.push(id);
        }
        // Durable before they run, as a single retry is; a batch at a time.
        if queued.len() == 256 {
            rt.store.flush()?;
            queued.drain(..).for_each(|event| rt.enqueue(event));
        }
    }
    if !queued.is_empty() {
        rt.store.flush()?;
        queued.drain(..).for_each(|event| rt.enqueue(event));
    }
    Ok(Json(json!({
        "retried": retried.len(),
        "event_ids": retried,
        "not_retried": not_retried,
        "more": more,
        "version": live,
    })))
}

/// Runs the compensations the letter owes first; a failing one keeps the letter (409).
pub(super) async fn dlq_drop(
    State(rt): Rt,
    Path(id): Path<String>,
    Query(q): Query<DropQuery>,
) -> Result<Response, ApiError> {
    use axum::response::IntoResponse;
    let dropped = match rt.cluster() {
        Some(link) => link.drop_dead_letter(&rt, &id, q.undo).await?,
        None => crate::runtime::drop_dead_letter(&rt, &id, q.undo).await?,
    };
    rt.store.flush()?;
    match dropped {
        crate::runtime::Dropped::NotFound => {
            Err(ApiError::NotFound(format!("no dead letter `{id}`")))
        }
        crate::runtime::Dropped::Dropped(undone) => Ok(Json(
            json!({ "event_id": id, "status": "dropped", "compensations": undone }),
        )
        .into_response()),
        crate::runtime::Dropped::Owed(undone) => Ok((
            axum::http::StatusCode::CONFLICT,
            Json(json!({
                "event_id": id,
                "status": "kept: a compensation failed; drop it again to retry it, or with \
                           ?undo=false to drop it without",
                "compensations": undone,
            })),
        )
            .into_response()),
    }
}

pub(super) async fn inbox_list(
    State(rt): Rt,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    Ok(Json(rt.inbox.pending_page(q.after.as_deref(), limit)?))
}

/// A queued event is not started once dropped (the worker looks first); one running finishes.
pub(super) async fn inbox_drop(
    State(rt): Rt,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let version = rt.live().project.version.clone();
    if rt.inbox.drop_pending(&id, &version)? {
        rt.store.flush()?;
        Ok(Json(json!({ "event_id": id, "status": "dropped" })))
    } else {
        Err(ApiError::NotFound(format!("no pending event `{id}`")))
    }
}
