//! The admin API under `/api`: pipelines (with their per-minute activity) and versions (the
//! history of reloads), dry runs, event trails (one, or a page of them newest first), dead
//! letters, state reads, state written by hand (with its audit log) and reload. Every route
//! needs `Authorization: Bearer $CROSSDOCK_ADMIN_TOKEN`; a runtime started without that
//! variable answers 401 to everyone.
//!
//! State is written through `rt.state()`, the store events commit to, in its atomic updates:
//! a stock level set while orders reserve lands between two reservations, never inside one, and
//! an event that read the level before commits with a conflict and runs again on the new one.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiError;
use crate::config::model::SourceConfig;
use crate::runtime::Runtime;
use crate::state::audit::Audited;
use crate::state::{customers, kv, stock, StateError, StateStore};

type Rt = State<Arc<Runtime>>;

pub(super) fn router(runtime: Arc<Runtime>) -> Router<Arc<Runtime>> {
    Router::new()
        .route("/pipelines", get(pipelines))
        .route("/pipelines/{name}/dry-run", post(dry_run))
        .route("/events", get(events))
        .route("/events/{id}", get(event))
        .route("/events/{id}/raw", get(event_raw))
        .route("/events/{id}/body", get(event_body))
        .route("/refused", get(refused))
        .route("/dlq", get(dlq_list))
        .route("/dlq/retry", post(dlq_retry_matching))
        .route("/dlq/{id}", get(dlq_show).delete(dlq_drop))
        .route("/dlq/{id}/retry", post(dlq_retry))
        .route("/inbox", get(inbox_list))
        .route("/inbox/{id}", axum::routing::delete(inbox_drop))
        .route("/reload", post(reload))
        .route("/versions", get(versions))
        .route("/cluster", get(cluster_nodes))
        .route(
            "/state/customers/{id}",
            get(customer).patch(correct_customer),
        )
        .route("/state/stock", post(set_stock_levels))
        .route("/state/stock/{sku}", get(stock_level).put(set_stock))
        .route("/state/reservations/{order_id}", get(reservation))
        .route("/state/kv/{pipeline}/{key}", get(kv_get).put(kv_set))
        .route("/state/key", get(raw_key))
        .route("/state/audit", get(audit_log))
        .merge(super::playground::routes())
        .route_layer(middleware::from_fn_with_state(runtime, authorize))
}

/// The nodes of the cluster (those that beat within the registry's `max_age`) and the project
/// version each runs: a reload that reached only some of them shows here.
async fn cluster_nodes(State(rt): Rt) -> Result<Json<Value>, ApiError> {
    let Some(link) = rt.cluster() else {
        return Err(ApiError::NotFound(
            "this node runs alone: crossdock.yaml has no `cluster:`".into(),
        ));
    };
    let nodes = link
        .registry
        .nodes()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let versions: std::collections::BTreeSet<&str> =
        nodes.iter().map(|n| n.version.as_str()).collect();
    Ok(Json(json!({
        "node": link.settings.node,
        "nodes": nodes,
        "one_version": versions.len() <= 1,
    })))
}

/// Every admin route goes through here first.
async fn authorize(
    State(rt): Rt,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_token(rt.settings.admin_token.as_deref(), &headers)?;
    Ok(next.run(request).await)
}

/// Compares the bearer token in constant time (its length aside).
fn check_token(expected: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = expected.filter(|t| !t.is_empty()) else {
        return Err(ApiError::Unauthorized(
            "the admin API is off: start crossdock with CROSSDOCK_ADMIN_TOKEN set".into(),
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "missing or wrong bearer token".into(),
        ))
    }
}

async fn pipelines(State(rt): Rt) -> Result<Json<Value>, ApiError> {
    let live = rt.live();
    let pipelines: Vec<Value> = live
        .project
        .pipelines
        .values()
        .map(|flow| {
            let source = match &flow.source {
                SourceConfig::Webhook(w) => json!({ "webhook": w.path }),
                other => json!({ "kind": other.kind() }),
            };
            json!({
                "name": flow.name,
                "description": flow.description,
                "file": flow.file.to_string_lossy(),
                "source": source,
                "activity": crate::runtime::activity::snapshot(&flow.name),
            })
        })
        .collect();
    let unconfigured: BTreeMap<&String, Value> = live
        .project
        .unconfigured
        .iter()
        .map(|(name, u)| (name, json!({ "stand_in": u.to, "missing": u.missing })))
        .collect();
    Ok(Json(json!({
        "version": live.project.version,
        "since": live.since,
        "status": if rt.last_reload_error().is_some() { "live, newer edit refused" } else { "live" },
        "last_reload_error": rt.last_reload_error(),
        "pipelines": pipelines,
        "unconfigured_connectors": unconfigured,
    })))
}

/// The versions run since the start, newest first, with the files each changed.
async fn versions(State(rt): Rt) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({
        "current": rt.live().project.version,
        "versions": rt.versions(),
    })))
}

#[derive(Debug, Deserialize)]
struct DryRunQuery {
    #[serde(default)]
    received_at: Option<String>,
}

async fn dry_run(
    State(rt): Rt,
    Path(name): Path<String>,
    Query(q): Query<DryRunQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let live = rt.live();
    let Some(flow) = live.project.pipeline(&name).cloned() else {
        return Err(ApiError::NotFound(format!("no pipeline `{name}`")));
    };
    let value = super::playground::dry_run(
        &rt,
        live.project.clone(),
        flow,
        body.to_vec(),
        q.received_at,
        BTreeMap::new(),
        "a dry run through the API cannot answer fetch steps; post the enriched event to a pipeline without them",
    )
    .await?;
    Ok(Json(value))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
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
fn filter_time(
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
fn split_key(key: &str) -> Result<(&str, &str), ApiError> {
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
async fn events(State(rt): Rt, Query(q): Query<EventsQuery>) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let filter = crate::runtime::inbox::TrailFilter {
        pipeline: q.pipeline.as_deref().filter(|p| !p.is_empty()),
        outcome: q.outcome.as_deref().filter(|o| !o.is_empty()),
        tenant: q.tenant.as_deref().filter(|t| !t.is_empty()),
        since: filter_time(q.since.as_deref(), "since")?,
        until: filter_time(q.until.as_deref(), "until")?,
    };
    if let Some(key) = q.key.as_deref().filter(|k| !k.is_empty()) {
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
async fn event_raw(State(rt): Rt, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let Some(raw) = rt.inbox.raw(&id)? else {
        return Err(ApiError::NotFound(format!(
            "no delivery kept for `{id}` (never received, or forgotten with its trail)"
        )));
    };
    let mut headers = shown_headers(&rt, &raw.headers);
    let signature = headers
        .remove(super::webhook::SIGNATURE_HEADER)
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

/// The kept body bytes as they arrived (at most `RAW_KEEP` of a finished event's).
async fn event_body(State(rt): Rt, Path(id): Path<String>) -> Result<Response, ApiError> {
    use axum::response::IntoResponse;
    let Some(raw) = rt.inbox.raw(&id)? else {
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
async fn refused(State(rt): Rt) -> Json<Value> {
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
async fn event(State(rt): Rt, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    // In a cluster the event may wait or have run on any node: the cluster's buckets say.
    let (queued, trail) = match rt.cluster() {
        Some(link) => link.event(&rt, &id).await?,
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

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn dlq_list(State(rt): Rt, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
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

async fn dlq_show(State(rt): Rt, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    match dead_letter(&rt, &id).await? {
        Some(letter) => Ok(Json(serde_json::to_value(letter).unwrap_or_default())),
        None => Err(ApiError::NotFound(format!("no dead letter `{id}`"))),
    }
}

/// `?full=true`: every effect again, also those that succeeded before. `?version=failed`:
/// only on the version the letter failed on, refused (409) when that is no longer the live
/// one; `live` (the default) runs on the live version whatever failed it.
#[derive(Deserialize)]
struct RetryQuery {
    #[serde(default)]
    full: bool,
    #[serde(default)]
    version: RetryVersion,
}

/// Which project version a retried dead letter runs on. Only the live version can run: an
/// older one is gone after a reload, so `Failed` is a condition, not a way back to it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RetryVersion {
    #[default]
    Live,
    Failed,
}

/// `?undo=false`: drop without running the compensations the letter owes.
#[derive(Deserialize)]
struct DropQuery {
    #[serde(default = "yes")]
    undo: bool,
}

fn yes() -> bool {
    true
}

async fn dlq_retry(
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
struct RetryMatching {
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
async fn dlq_retry_matching(State(rt): Rt, body: Bytes) -> Result<Json<Value>, ApiError> {
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
async fn dlq_drop(
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

async fn inbox_list(State(rt): Rt, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    Ok(Json(rt.inbox.pending_page(q.after.as_deref(), limit)?))
}

/// A queued event is not started once dropped (the worker looks first); one running finishes.
async fn inbox_drop(State(rt): Rt, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let version = rt.live().project.version.clone();
    if rt.inbox.drop_pending(&id, &version)? {
        rt.store.flush()?;
        Ok(Json(json!({ "event_id": id, "status": "dropped" })))
    } else {
        Err(ApiError::NotFound(format!("no pending event `{id}`")))
    }
}

async fn reload(State(rt): Rt) -> Result<Json<Value>, ApiError> {
    match rt.reload("api").await {
        Ok(version) => Ok(Json(json!({ "status": "live", "version": version }))),
        Err(e) => Ok(Json(json!({
            "status": "refused",
            "version": rt.live().project.version,
            "error": e,
        }))),
    }
}

async fn customer(State(rt): Rt, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    match customers::get(rt.state().as_ref(), &id)? {
        Some(c) => Ok(Json(c.to_json())),
        None => Err(ApiError::NotFound(format!(
            "no orders recorded for customer `{id}`"
        ))),
    }
}

async fn stock_level(State(rt): Rt, Path(sku): Path<String>) -> Result<Json<Value>, ApiError> {
    match stock::level(rt.state().as_ref(), &sku)? {
        Some(level) => Ok(Json(level)),
        None => Err(ApiError::NotFound(format!("no stock recorded for `{sku}`"))),
    }
}

async fn reservation(State(rt): Rt, Path(order_id): Path<String>) -> Result<Json<Value>, ApiError> {
    match stock::reservation(rt.state().as_ref(), &order_id)? {
        Some(r) => Ok(Json(r)),
        None => Err(ApiError::NotFound(format!(
            "no reservation for order `{order_id}`"
        ))),
    }
}

/// Who writes, for the audit log: the `X-Crossdock-Actor` header (UTF-8), else "admin".
fn actor(headers: &HeaderMap) -> String {
    let given = headers
        .get("x-crossdock-actor")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    crate::state::audit::actor_name(given.as_deref())
}

/// Runs a hand-made write through the audit log over the engine's store, off the async
/// threads (a cluster's store waits on NATS), and makes it durable before answering.
async fn write<T: Send + 'static>(
    rt: &Arc<Runtime>,
    actor: String,
    action: String,
    f: impl FnOnce(&dyn StateStore) -> Result<T, StateError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = rt.state().clone();
    let answer = tokio::task::spawn_blocking(move || {
        let answer = f(&Audited::new(store.as_ref(), &actor, &action))?;
        store.make_durable()?;
        Ok::<_, StateError>(answer)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the write failed: {e}")))??;
    Ok(answer)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StockSet {
    on_hand: i64,
}

async fn set_stock(
    State(rt): Rt,
    Path(sku): Path<String>,
    headers: HeaderMap,
    Json(body): Json<StockSet>,
) -> Result<Json<Value>, ApiError> {
    let action = format!("stock set {sku} {}", body.on_hand);
    let level = write(&rt, actor(&headers), action, move |store| {
        stock::set(store, &sku, body.on_hand)?;
        stock::level(store, &sku)
    })
    .await?;
    Ok(Json(level.unwrap_or(Value::Null)))
}

/// Levels set by one request at most: a bigger import is sent in parts.
pub const MAX_LEVELS: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StockLevels {
    levels: Vec<Level>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Level {
    sku: String,
    on_hand: i64,
}

/// Many SKUs' on-hand counts (an import): each is its own update and its own audit entry.
async fn set_stock_levels(
    State(rt): Rt,
    headers: HeaderMap,
    Json(body): Json<StockLevels>,
) -> Result<Json<Value>, ApiError> {
    if body.levels.len() > MAX_LEVELS {
        return Err(ApiError::BadRequest(format!(
            "{} levels in one request; send at most {MAX_LEVELS} at a time",
            body.levels.len()
        )));
    }
    let store = rt.state().clone();
    let who = actor(&headers);
    let set = tokio::task::spawn_blocking(move || {
        for l in &body.levels {
            let action = format!("stock import {} {}", l.sku, l.on_hand);
            stock::set(
                &Audited::new(store.as_ref(), &who, &action),
                &l.sku,
                l.on_hand,
            )?;
        }
        store.make_durable()?;
        Ok::<_, StateError>(body.levels.len())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the write failed: {e}")))??;
    Ok(Json(json!({ "set": set })))
}

/// `{"lifetime_value": "12.50", "orders": 3, "first_order": "2026-01-02", "last_order": ...}`,
/// each optional; the lifetime value a decimal string (or a JSON number).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerFix {
    #[serde(default)]
    lifetime_value: Option<Value>,
    #[serde(default)]
    orders: Option<i64>,
    #[serde(default)]
    first_order: Option<String>,
    #[serde(default)]
    last_order: Option<String>,
}

async fn correct_customer(
    State(rt): Rt,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<CustomerFix>,
) -> Result<Json<Value>, ApiError> {
    let lifetime_value = match &body.lifetime_value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "lifetime_value: expected a decimal string, got {other}"
            )))
        }
    }
    .map(|s| {
        rust_decimal::Decimal::from_str_exact(&s)
            .map_err(|e| ApiError::BadRequest(format!("lifetime_value {s:?}: {e}")))
    })
    .transpose()?;
    let fix = customers::Correction {
        lifetime_value,
        orders: body.orders,
        first_order: body.first_order,
        last_order: body.last_order,
    };
    let action = format!("customer correct {id}");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let summary = write(&rt, actor(&headers), action, move |store| {
        customers::correct(store, &id, &fix, &today)
    })
    .await?;
    Ok(Json(summary.to_json()))
}

async fn kv_get(
    State(rt): Rt,
    Path((pipeline, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    match kv::get(rt.state().as_ref(), &pipeline, &key)? {
        Some(v) => Ok(Json(json!({ "value": v }))),
        None => Err(ApiError::NotFound(format!(
            "no value under `{key}` for pipeline `{pipeline}`"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KvSet {
    value: Value,
}

/// `{"value": V}`; null deletes the key.
async fn kv_set(
    State(rt): Rt,
    Path((pipeline, key)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<KvSet>,
) -> Result<Json<Value>, ApiError> {
    let action = format!("kv set {pipeline} {key}");
    let value = body.value;
    let shown = value.clone();
    write(&rt, actor(&headers), action, move |store| {
        kv::set(store, &pipeline, &key, value)
    })
    .await?;
    Ok(Json(json!({ "value": shown })))
}

#[derive(Debug, Deserialize)]
struct KeyQuery {
    key: String,
}

/// One key of the layout as stored (`{"key", "value"}`, null when absent): what a dry run
/// beside the engine reads. Only the keys flows use (`state::DOMAIN_PREFIXES`).
async fn raw_key(State(rt): Rt, Query(q): Query<KeyQuery>) -> Result<Json<Value>, ApiError> {
    if !crate::state::DOMAIN_PREFIXES
        .iter()
        .any(|p| q.key.starts_with(p))
    {
        return Err(ApiError::BadRequest(format!(
            "`{}` is not a key flows read; readable: {}",
            q.key,
            crate::state::DOMAIN_PREFIXES.join(", ")
        )));
    }
    let value = rt.state().get(&q.key)?;
    Ok(Json(json!({ "key": q.key, "value": value })))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    before: Option<u64>,
}

/// The audit log, newest first: `{"head", "items"}`; `before=SEQ` for the page after.
async fn audit_log(State(rt): Rt, Query(q): Query<AuditQuery>) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let (items, head) = crate::state::audit::recent(rt.state().as_ref(), limit, q.before)?;
    Ok(Json(json!({ "head": head, "items": items })))
}
