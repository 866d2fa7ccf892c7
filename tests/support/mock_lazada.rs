//! A mock Lazada Open Platform server on loopback, checking calls as Lazada's "Signature
//! algorithm" page describes (the page's worked example is the unit tests of `connectors/http/sign/`).
//!
//! * API calls live under `/rest`; every call carries `app_key`, `timestamp` (milliseconds,
//!   refused when more than 5 minutes off), `sign_method=sha256` and `sign`; business calls
//!   also `access_token`. `sign` is uppercase hex HMAC-SHA256 keyed with the app secret over
//!   the API path (without `/rest`) followed by every other parameter sorted by name as
//!   key+value.
//! * `GET /rest/auth/token/refresh?refresh_token` (signed) answers a new `access_token`,
//!   `refresh_token` and `expires_in`, retiring the refresh token asked with.
//! * `GET /rest/orders/get?offset&limit` pages by offset, answering `data.countTotal`; the
//!   orders' `items` are left out there and answered by `GET /rest/order/items/get?order_id`.
//! * `POST /rest/product/price_quantity/update` takes its XML `payload` as a parameter (signed
//!   like any other) and records each `<Sku>`'s `Quantity` under `ItemId/SkuId`.
//!
//! Every answer is HTTP 200 with `code` ("0" on success); the refusal codes here
//! (`IncompleteSignature`, `InvalidTimestamp`, `IllegalAccessToken`, `ApiCallLimit`) are our
//! reading of Lazada's error list.

use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::marketplace::{hmac_hex, now, Mock, Seen, Shop};

pub const APP_KEY: &str = "123456";
pub const APP_SECRET: &str = "lazada-test-app-secret";
pub const FIRST_REFRESH: &str = "lazada-refresh-0";

/// A lazada mock whose access tokens live `life` seconds, listing `orders`.
pub async fn start(orders: Vec<Value>, life: i64) -> Mock {
    let mut mock = Mock::start("lazada", FIRST_REFRESH, orders, life, respond).await;
    // What a connector's `base_url` is: the API lives under `/rest`.
    mock.url.push_str("/rest");
    mock
}

/// Every answer is an HTTP 200 with the outcome in the body.
fn respond(shop: &mut Shop, seen: &Seen) -> (Response, Option<String>) {
    let (body, refused) = answer(shop, seen);
    (axum::Json(body).into_response(), refused)
}

fn answer(shop: &mut Shop, seen: &Seen) -> (Value, Option<String>) {
    let no = |code: &str, message: &str| {
        (
            json!({"code": code, "type": "ISV", "message": message, "request_id": "mock"}),
            Some(format!("{code}: {message}")),
        )
    };
    if shop.throttle.over() {
        return no("ApiCallLimit", "The request has exceeded the limit");
    }
    let Some(api) = seen.path.strip_prefix("/rest") else {
        return no("InvalidApiPath", "calls live under /rest");
    };
    if seen.param("app_key") != APP_KEY || seen.param("sign_method") != "sha256" {
        return no("InvalidAppKey", "app_key or sign_method");
    }
    match seen.param("timestamp").parse::<i64>() {
        Ok(ms) if (now() * 1000 - ms).abs() <= 300_000 => {}
        _ => return no("InvalidTimestamp", "timestamp missing or out of range"),
    }
    let mut text = api.to_string();
    for (k, v) in &seen.query {
        if k != "sign" {
            text.push_str(k);
            text.push_str(v);
        }
    }
    if seen.param("sign") != hmac_hex(APP_SECRET, text.as_bytes()).to_uppercase() {
        return no(
            "IncompleteSignature",
            "The request signature does not conform to platform standards",
        );
    }
    if api == "/auth/token/refresh" {
        return match shop.tokens.refresh(seen.param("refresh_token")) {
            Some((access, refresh, life)) => (
                json!({"code": "0", "access_token": access, "refresh_token": refresh,
                       "expires_in": life, "refresh_expires_in": 2_592_000, "request_id": "mock"}),
                None,
            ),
            None => no("InvalidRefreshToken", "refresh token invalid or used"),
        };
    }
    if let Some(why) = shop.tokens.check(seen.param("access_token")) {
        return no("IllegalAccessToken", why);
    }
    match api {
        "/orders/get" => {
            let limit: usize = seen.param("limit").parse().unwrap_or(10).clamp(1, 100);
            let offset: usize = seen.param("offset").parse().unwrap_or(0);
            let page: Vec<Value> = shop
                .orders
                .iter()
                .skip(offset)
                .take(limit)
                .map(|o| {
                    let mut o = o.clone();
                    o.as_object_mut().map(|m| m.remove("items"));
                    o
                })
                .collect();
            (
                json!({"code": "0", "request_id": "mock", "data": {
                    "count": page.len(), "countTotal": shop.orders.len(), "orders": page
                }}),
                None,
            )
        }
        "/order/items/get" => {
            let id = seen.param("order_id").parse::<u64>().ok();
            match shop.orders.iter().find(|o| o["order_id"].as_u64() == id) {
                Some(o) => (
                    json!({"code": "0", "request_id": "mock", "data": o["items"].clone()}),
                    None,
                ),
                None => no("InvalidParameter", "no such order"),
            }
        }
        "/product/price_quantity/update" if seen.method == "POST" => {
            if shop.busy() {
                return no("ApiCallLimit", "The request has exceeded the limit");
            }
            let payload = seen.param("payload");
            let skus = skus_of(payload);
            if skus.is_empty() {
                return no(
                    "InvalidParameter",
                    "payload: <Request><Product><Skus><Sku> with ItemId, SkuId and Quantity",
                );
            }
            for (item, sku, quantity) in skus {
                shop.stock.insert(format!("{item}/{sku}"), quantity.into());
            }
            shop.received.push(Value::String(payload.to_string()));
            (json!({"code": "0", "request_id": "mock"}), None)
        }
        _ => no("InvalidApiPath", "no such API"),
    }
}

/// The text between `<tag>` and `</tag>` in `xml`, from `at` on; and where it ends.
fn element<'a>(xml: &'a str, tag: &str, at: usize) -> Option<(&'a str, usize)> {
    let open = format!("<{tag}>");
    let start = xml.get(at..)?.find(&open)? + at + open.len();
    let end = start + xml.get(start..)?.find(&format!("</{tag}>"))?;
    Some((&xml[start..end], end))
}

/// The SKUs of an `UpdatePriceQuantity` payload, as item id, SKU id and quantity: every `<Sku>`
/// under `<Request><Product><Skus>` must have all three, else none is taken.
fn skus_of(payload: &str) -> Vec<(u64, u64, i64)> {
    let Some((skus, _)) = element(payload, "Skus", 0) else {
        return Vec::new();
    };
    if !payload.starts_with("<Request><Product>") {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut at = 0;
    while let Some((sku, end)) = element(skus, "Sku", at) {
        let field = |tag| element(sku, tag, 0).and_then(|(v, _)| v.trim().parse::<i64>().ok());
        match (field("ItemId"), field("SkuId"), field("Quantity")) {
            (Some(item), Some(id), Some(quantity)) if item >= 0 && id >= 0 => {
                found.push((item as u64, id as u64, quantity))
            }
            _ => return Vec::new(),
        }
        at = end;
    }
    found
}
