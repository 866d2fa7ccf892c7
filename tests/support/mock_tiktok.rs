//! A mock TikTok Shop Open API (2023-09 versions) server on loopback, checking calls as the
//! Partner Center's "Sign your API request" is described by the SDKs that implement it.
//!
//! * Business calls carry `app_key`, `timestamp` (Unix seconds, refused when more than 5
//!   minutes off), `shop_cipher` and `sign` in the query and the access token in the
//!   `x-tts-access-token` header. `sign` is lowercase hex HMAC-SHA256 keyed with the app secret
//!   over `secret + path + (query but sign and access_token, sorted, key+value) + body +
//!   secret`.
//! * `GET /api/v2/token/refresh?app_key&app_secret&refresh_token&grant_type=refresh_token`
//!   (unsigned) answers `data.access_token`, `data.access_token_expire_in` (a Unix time) and a
//!   new `data.refresh_token`, retiring the one asked with.
//! * `POST /order/202309/orders/search?page_size[&page_token]` pages with
//!   `data.next_page_token` (empty on the last page).
//! * `POST /product/202309/products/{product_id}/inventory/update` with `{skus: [{id,
//!   inventory: [{warehouse_id, quantity}]}]}` records each SKU's quantity under
//!   `product_id/sku_id` (the body is signed, so a changed body is a wrong signature).
//!
//! Every answer is HTTP 200 with `code` (0 on success) and `message`; the refusal codes here
//! (106001 signature, 106002 timestamp, 105002 token, 36009004 throttle) are our reading.

use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::marketplace::{hmac_hex, now, Mock, Seen, Shop};

pub const APP_KEY: &str = "6a1b2c3d4e";
pub const APP_SECRET: &str = "tiktok-test-app-secret";
pub const SHOP_CIPHER: &str = "ROW_mockcipher";
pub const FIRST_REFRESH: &str = "tiktok-refresh-0";
pub const THROTTLED: i64 = 36009004;

/// The signature the platform expects for `seen`.
pub fn expected_sign(seen: &Seen) -> String {
    let mut text = Vec::from(APP_SECRET.as_bytes());
    text.extend_from_slice(seen.path.as_bytes());
    for (k, v) in &seen.query {
        if k != "sign" && k != "access_token" {
            text.extend_from_slice(k.as_bytes());
            text.extend_from_slice(v.as_bytes());
        }
    }
    text.extend_from_slice(&seen.body);
    text.extend_from_slice(APP_SECRET.as_bytes());
    hmac_hex(APP_SECRET, &text)
}

/// A tiktok mock whose access tokens live `life` seconds, listing `orders`.
pub async fn start(orders: Vec<Value>, life: i64) -> Mock {
    Mock::start("tiktok", FIRST_REFRESH, orders, life, respond).await
}

/// Every answer is an HTTP 200 with the outcome in the body.
fn respond(shop: &mut Shop, seen: &Seen) -> (Response, Option<String>) {
    let (body, refused) = answer(shop, seen);
    (axum::Json(body).into_response(), refused)
}

fn answer(shop: &mut Shop, seen: &Seen) -> (Value, Option<String>) {
    let no = |code: i64, message: &str| {
        (
            json!({"code": code, "message": message, "request_id": "mock"}),
            Some(format!("{code}: {message}")),
        )
    };
    if shop.throttle.over() {
        return no(THROTTLED, "Too many requests");
    }
    if seen.path == "/api/v2/token/refresh" {
        if seen.param("app_key") != APP_KEY
            || seen.param("app_secret") != APP_SECRET
            || seen.param("grant_type") != "refresh_token"
        {
            return no(36004004, "invalid app key, secret or grant type");
        }
        return match shop.tokens.refresh(seen.param("refresh_token")) {
            Some((access, refresh, life)) => (
                json!({"code": 0, "message": "success", "data": {
                    "access_token": access, "access_token_expire_in": now() + life,
                    "refresh_token": refresh, "refresh_token_expire_in": now() + 86400 * 30
                }}),
                None,
            ),
            None => no(36004004, "invalid refresh token"),
        };
    }
    if seen.param("app_key") != APP_KEY {
        return no(106001, "invalid app_key");
    }
    match seen.param("timestamp").parse::<i64>() {
        Ok(ts) if (now() - ts).abs() <= 300 => {}
        _ => return no(106002, "timestamp missing or expired"),
    }
    if seen.param("sign") != expected_sign(seen) {
        return no(106001, "Invalid signature");
    }
    let token = seen
        .headers
        .get("x-tts-access-token")
        .map(String::as_str)
        .unwrap_or("");
    if let Some(why) = shop.tokens.check(token) {
        return no(105002, &format!("access token {why}"));
    }
    if seen.param("shop_cipher") != SHOP_CIPHER {
        return no(106011, "invalid shop_cipher");
    }
    match (seen.method.as_str(), seen.path.as_str()) {
        ("POST", "/order/202309/orders/search") => {
            if !seen.json().is_object() {
                return no(36009003, "the body must be a JSON object");
            }
            let size: usize = seen.param("page_size").parse().unwrap_or(0);
            if size == 0 || size > 100 {
                return no(36009003, "page_size is required (1-100)");
            }
            let from: usize = seen.param("page_token").parse().unwrap_or(0);
            let page: Vec<Value> = shop.orders.iter().skip(from).take(size).cloned().collect();
            let end = from + page.len();
            let next = if end < shop.orders.len() {
                end.to_string()
            } else {
                String::new()
            };
            (
                json!({"code": 0, "message": "Success", "request_id": "mock", "data": {
                    "orders": page, "next_page_token": next, "total_count": shop.orders.len()
                }}),
                None,
            )
        }
        ("POST", path) if inventory_path(path).is_some() => {
            if shop.busy() {
                return no(THROTTLED, "Too many requests");
            }
            let product = inventory_path(path).unwrap_or_default().to_string();
            let body = seen.json();
            let Some(skus) = inventory_of(&body) else {
                return no(
                    12052700,
                    "skus[].id and skus[].inventory[].quantity are required",
                );
            };
            for (sku, quantity) in skus {
                shop.stock
                    .insert(format!("{product}/{sku}"), quantity.into());
            }
            shop.received.push(body);
            (
                json!({"code": 0, "message": "Success", "request_id": "mock", "data": {}}),
                None,
            )
        }
        _ => no(40006, "no such API"),
    }
}

/// The product id of `/product/202309/products/{product_id}/inventory/update`.
fn inventory_path(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix("/product/202309/products/")?
        .strip_suffix("/inventory/update")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// The inventory update's body: `skus[]` each with `id` and `inventory[].quantity` (the first
/// warehouse's); the SKU ids and their quantities.
fn inventory_of(body: &Value) -> Option<Vec<(String, i64)>> {
    body["skus"]
        .as_array()?
        .iter()
        .map(|s| {
            let quantity = s["inventory"].as_array()?.first()?["quantity"].as_i64()?;
            Some((s["id"].as_str()?.to_string(), quantity))
        })
        .collect()
}
