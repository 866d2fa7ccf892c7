//! State under `/api/state`: customers, stock levels and reservations, kv and raw keys read,
//! and written by hand through the audit log (`/api/state/audit` reads it back). It must not
//! write except through `write`, which logs the actor and makes the write durable.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::runtime::Runtime;
use crate::server::ApiError;
use crate::state::audit::Audited;
use crate::state::{customers, kv, stock, StateError, StateStore};

use super::Rt;

pub(super) async fn customer(
    State(rt): Rt,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match customers::get(rt.state().as_ref(), &id)? {
        Some(c) => Ok(Json(c.to_json())),
        None => Err(ApiError::NotFound(format!(
            "no orders recorded for customer `{id}`"
        ))),
    }
}

pub(super) async fn stock_level(
    State(rt): Rt,
    Path(sku): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match stock::level(rt.state().as_ref(), &sku)? {
        Some(level) => Ok(Json(level)),
        None => Err(ApiError::NotFound(format!("no stock recorded for `{sku}`"))),
    }
}

pub(super) async fn reservation(
    State(rt): Rt,
    Path(order_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
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
pub(super) async fn write<T: Send + 'static>(
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
pub(super) struct StockSet {
    on_hand: i64,
}

pub(super) async fn set_stock(
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
pub(super) struct StockLevels {
    levels: Vec<Level>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Level {
    sku: String,
    on_hand: i64,
}

/// Many SKUs' on-hand counts (an import): each is its own update and its own audit entry.
pub(super) async fn set_stock_levels(
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
pub(super) struct CustomerFix {
    #[serde(default)]
    lifetime_value: Option<Value>,
    #[serde(default)]
    orders: Option<i64>,
    #[serde(default)]
    first_order: Option<String>,
    #[serde(default)]
    last_order: Option<String>,
}

pub(super) async fn correct_customer(
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

pub(super) async fn kv_get(
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
pub(super) struct KvSet {
    value: Value,
}

/// `{"value": V}`; null deletes the key.
pub(super) async fn kv_set(
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
pub(super) struct KeyQuery {
    key: String,
}

/// One key of the layout as stored (`{"key", "value"}`, null when absent): what a dry run
/// beside the engine reads. Only the keys flows use (`state::DOMAIN_PREFIXES`).
pub(super) async fn raw_key(
    State(rt): Rt,
    Query(q): Query<KeyQuery>,
) -> Result<Json<Value>, ApiError> {
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
pub(super) struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    before: Option<u64>,
}

/// The audit log, newest first: `{"head", "items"}`; `before=SEQ` for the page after.
pub(super) async fn audit_log(
    State(rt): Rt,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let (items, head) = crate::state::audit::recent(rt.state().as_ref(), limit, q.before)?;
    Ok(Json(json!({ "head": head, "items": items })))
}
