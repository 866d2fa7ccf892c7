//! The admin API under `/api`: pipelines (with their per-minute activity) and versions (the
//! history of reloads), dry runs, event trails (one, or a page of them newest first), dead
//! letters, state reads, state written by hand (with its audit log) and reload. Every route
//! needs `Authorization: Bearer $CROSSDOCK_ADMIN_TOKEN`; a runtime started without that
//! variable answers 401 to everyone.
//!
//! State is written through `rt.state()`, the store events commit to, in its atomic updates:
//! a stock level set while orders reserve lands between two reservations, never inside one, and
//! an event that read the level before commits with a conflict and runs again on the new one.
//!
//! The routes and their authorization are here, with the project's pipelines, versions, dry
//! runs and reload; events are `events.rs`, dead letters and the inbox `queues.rs`, state
//! `state.rs`.

mod events;
mod queues;
mod state;

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
use events::{event, event_body, event_raw, events, refused};
use queues::{dlq_drop, dlq_list, dlq_retry, dlq_retry_matching, dlq_show, inbox_drop, inbox_list};
use state::{
    audit_log, correct_customer, customer, kv_get, kv_set, raw_key, reservation, set_stock,
    set_stock_levels, stock_level,
};

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
