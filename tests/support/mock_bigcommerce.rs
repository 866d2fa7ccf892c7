//! BigCommerce's V2 orders API on loopback, as BigCommerce documents it: every call needs the
//! store's `X-Auth-Token` (401 otherwise); `GET /v2/orders` filters by `min_date_created` /
//! `min_date_modified` (RFC 2822 or ISO 8601), orders by id, pages with `page` (from 1) and
//! `limit` (at most 250, default 50), and answers 204 with no body past the last page;
//! `GET /v2/orders/{id}` and `/v2/orders/{id}/products` answer one order.
//!
//! The orders the list shows are the ones the test has published, so a test decides what a
//! catch-up poll can find and when.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, FixedOffset};
use serde_json::{json, Value};

#[derive(Default)]
struct Inner {
    /// Every order by id, and its line items.
    orders: BTreeMap<u64, (Value, Value)>,
    /// The ids `GET /v2/orders` shows.
    listed: Vec<u64>,
    /// Each list call's query, in order.
    list_calls: Vec<BTreeMap<String, String>>,
    /// Calls refused for a missing or wrong token.
    refused: usize,
}

#[derive(Clone)]
pub struct MockBigCommerce {
    inner: Arc<Mutex<Inner>>,
    token: String,
    /// `http://127.0.0.1:PORT`: the connector's base is this plus `/stores/{hash}`.
    pub url: String,
}

type Shared = (Arc<Mutex<Inner>>, String);

impl MockBigCommerce {
    pub async fn start(token: &str) -> MockBigCommerce {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let state: Shared = (inner.clone(), token.to_string());
        let app = axum::Router::new()
            .route("/stores/{store}/v2/orders", axum::routing::get(list))
            .route("/stores/{store}/v2/orders/{id}", axum::routing::get(one))
            .route(
                "/stores/{store}/v2/orders/{id}/products",
                axum::routing::get(products),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MockBigCommerce {
            inner,
            token: token.to_string(),
            url,
        }
    }

    /// Adds an order the single-order calls answer (its `id` field names it).
    pub fn add(&self, order: Value, products: Value) {
        let id = order["id"].as_u64().unwrap();
        self.inner
            .lock()
            .unwrap()
            .orders
            .insert(id, (order, products));
    }

    /// Makes `GET /v2/orders` show these orders from now on.
    pub fn list(&self, ids: &[u64]) {
        self.inner.lock().unwrap().listed = ids.to_vec();
    }

    pub fn list_calls(&self) -> Vec<BTreeMap<String, String>> {
        self.inner.lock().unwrap().list_calls.clone()
    }

    pub fn refused(&self) -> usize {
        self.inner.lock().unwrap().refused
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

fn authorized(headers: &HeaderMap, inner: &mut Inner, token: &str) -> bool {
    let ok = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) == Some(token);
    if !ok {
        inner.refused += 1;
    }
    ok
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(
            json!([{"status": 401, "message": "You are not authorized to access this resource."}]),
        ),
    )
        .into_response()
}

/// A BigCommerce date filter: RFC 2822 (`Fri, 20 Nov 2026 14:03:27 +0000`) or ISO 8601.
fn date(text: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc2822(text)
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
}

async fn list(
    State((inner, token)): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if !authorized(&headers, &mut inner, &token) {
        return unauthorized();
    }
    inner.list_calls.push(query.clone());
    let bad = |message: String| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!([{"status": 400, "message": message}])),
        )
            .into_response()
    };
    let mut filters = Vec::new();
    for field in ["min_date_created", "min_date_modified"] {
        if let Some(text) = query.get(field) {
            match date(text) {
                Some(at) => filters.push((field.trim_start_matches("min_"), at)),
                None => return bad(format!("The field '{field}' is invalid.")),
            }
        }
    }
    let page: usize = match query.get("page").map(|p| p.parse()) {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        _ => return bad("The field 'page' is invalid.".into()),
    };
    let limit: usize = match query.get("limit").map(|l| l.parse()) {
        None => 50,
        Some(Ok(l)) if (1..=250).contains(&l) => l,
        _ => return bad("The field 'limit' is invalid.".into()),
    };
    let mut ids = inner.listed.clone();
    ids.sort_unstable();
    let matching: Vec<Value> = ids
        .iter()
        .filter_map(|id| inner.orders.get(id).map(|(o, _)| o.clone()))
        .filter(|order| {
            filters.iter().all(|(field, min)| {
                order[*field]
                    .as_str()
                    .and_then(date)
                    .is_some_and(|at| at >= *min)
            })
        })
        .collect();
    let page: Vec<Value> = matching
        .into_iter()
        .skip((page - 1) * limit)
        .take(limit)
        .collect();
    if page.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    Json(Value::Array(page)).into_response()
}

async fn one(
    State(shared): State<Shared>,
    headers: HeaderMap,
    UrlPath((_, id)): UrlPath<(String, u64)>,
) -> Response {
    order_part(shared, &headers, id, |(order, _)| order)
}

async fn products(
    State(shared): State<Shared>,
    headers: HeaderMap,
    UrlPath((_, id)): UrlPath<(String, u64)>,
) -> Response {
    order_part(shared, &headers, id, |(_, products)| products)
}

/// One order's answer (the order, or its line items), behind the token.
fn order_part(
    (inner, token): Shared,
    headers: &HeaderMap,
    id: u64,
    part: fn(&(Value, Value)) -> &Value,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if !authorized(headers, &mut inner, &token) {
        return unauthorized();
    }
    match inner.orders.get(&id) {
        Some(order) => Json(part(order).clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!([{"status": 404, "message": "The requested resource was not found."}])),
        )
            .into_response(),
    }
}

/// Standard Webhooks headers as BigCommerce sends them: HMAC-SHA256 of
/// `<webhook-id>.<timestamp>.<body>` keyed with the app's raw client secret, base64.
pub fn signed_headers(secret: &str, delivery: &str, body: &str) -> Vec<(&'static str, String)> {
    use base64::Engine as _;
    use hmac::Mac;
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{delivery}.{ts}.{body}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("webhook-id", delivery.to_string()),
        ("webhook-timestamp", ts),
        ("webhook-signature", format!("v1,{sig}")),
    ]
}
