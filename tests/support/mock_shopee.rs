//! A mock Shopee Open Platform v2 server: a real HTTP server on loopback that checks calls as
//! Shopee's developer guide ("API calls", "Authorization and Authentication") describes.
//!
//! * Every call carries `partner_id`, `timestamp` (Unix seconds, refused when more than 5
//!   minutes off) and `sign` in the query. `sign` is lowercase hex HMAC-SHA256 keyed with the
//!   partner key over `partner_id + path + timestamp` for public APIs (the token endpoint) and
//!   `... + access_token + shop_id` for shop APIs, which also carry `access_token` and
//!   `shop_id`.
//! * `POST /api/v2/auth/access_token/get` with the JSON body `{refresh_token, partner_id,
//!   shop_id}` (ids as numbers) answers a new `access_token`, a new `refresh_token` and
//!   `expire_in`; the refresh token asked with stops working.
//! * `GET /api/v2/order/get_order_list` pages with `cursor` and `page_size`, answering
//!   `response.more` and `response.next_cursor`; its orders carry `order_sn` and
//!   `order_status`, and `GET /api/v2/order/get_order_detail?order_sn_list=A,B` the whole of
//!   them (the orders the mock was started with).
//! * `POST /api/v2/product/update_stock` with `{item_id, stock_list: [{model_id,
//!   seller_stock: [{stock}]}]}` records its body and each model's stock under
//!   `item_id/model_id`; a body of another shape answers `error_param`.
//!
//! Refusals answer a JSON body with `error` and `message` (HTTP 403 for sign, timestamp and
//! token, 429 over the throttle). Shopee's docs give the field names; the exact codes here
//! (`error_sign`, `error_param`, `invalid_access_token`, `error_busy`) are our reading.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::marketplace::{hmac_hex, now, Mock, Seen, Shop};

pub const PARTNER_ID: &str = "2001887";
pub const PARTNER_KEY: &str = "shopee-test-partner-key";
pub const SHOP_ID: &str = "14701711";
pub const FIRST_REFRESH: &str = "shopee-refresh-0";
const TOKEN_PATH: &str = "/api/v2/auth/access_token/get";

/// A Shopee mock whose access tokens live `life` seconds, listing `orders` (whole, as
/// `get_order_detail` answers them). Stock updates land in `shop.received`.
pub async fn start(orders: Vec<Value>, life: i64) -> Mock {
    Mock::start("shopee", FIRST_REFRESH, orders, life, answer).await
}

/// `update_stock`'s body as Shopee documents it: `item_id` and, per model, `model_id` and
/// `seller_stock[].stock` (whole numbers); the models and their stock.
fn stock_of(body: &Value) -> Option<Vec<(u64, i64)>> {
    body["item_id"].as_u64()?;
    body["stock_list"]
        .as_array()?
        .iter()
        .map(|m| {
            let stock = m["seller_stock"].as_array()?.first()?["stock"].as_i64()?;
            Some((m["model_id"].as_u64()?, stock))
        })
        .collect()
}

fn refuse(status: StatusCode, error: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "message": message, "request_id": "mock"})),
    )
        .into_response()
}

fn answer(shop: &mut Shop, seen: &Seen) -> (Response, Option<String>) {
    let no = |status, error: &str, message: &str| {
        (
            refuse(status, error, message),
            Some(format!("{error}: {message}")),
        )
    };
    if shop.throttle.over() {
        return no(
            StatusCode::TOO_MANY_REQUESTS,
            "error_busy",
            "too many requests",
        );
    }
    if seen.param("partner_id") != PARTNER_ID {
        return no(StatusCode::FORBIDDEN, "error_param", "Invalid partner_id");
    }
    let ts: i64 = match seen.param("timestamp").parse() {
        Ok(ts) => ts,
        Err(_) => {
            return no(
                StatusCode::FORBIDDEN,
                "error_param",
                "There is no timestamp",
            )
        }
    };
    if (now() - ts).abs() > 300 {
        return no(StatusCode::FORBIDDEN, "error_param", "Invalid timestamp");
    }
    let public = seen.path == TOKEN_PATH;
    let mut base = format!("{PARTNER_ID}{}{ts}", seen.path);
    if !public {
        base.push_str(seen.param("access_token"));
        base.push_str(seen.param("shop_id"));
    }
    if seen.param("sign") != hmac_hex(PARTNER_KEY, base.as_bytes()) {
        return no(StatusCode::FORBIDDEN, "error_sign", "Wrong sign.");
    }
    if public {
        let body = seen.json();
        let ids_ok = body["partner_id"]
            .as_u64()
            .map(|n| n.to_string())
            .as_deref()
            == Some(PARTNER_ID)
            && body["shop_id"].as_u64().map(|n| n.to_string()).as_deref() == Some(SHOP_ID);
        if seen.method != "POST" || !ids_ok {
            return no(
                StatusCode::BAD_REQUEST,
                "error_param",
                "partner_id and shop_id as numbers",
            );
        }
        let given = body["refresh_token"].as_str().unwrap_or("");
        return match shop.tokens.refresh(given) {
            Some((access, refresh, life)) => (
                axum::Json(json!({
                    "access_token": access, "refresh_token": refresh, "expire_in": life,
                    "error": "", "message": "", "request_id": "mock"
                }))
                .into_response(),
                None,
            ),
            None => no(StatusCode::FORBIDDEN, "error_auth", "Invalid refresh_token"),
        };
    }
    if seen.param("shop_id") != SHOP_ID {
        return no(StatusCode::FORBIDDEN, "error_param", "Invalid shop_id");
    }
    if let Some(why) = shop.tokens.check(seen.param("access_token")) {
        return no(StatusCode::FORBIDDEN, "invalid_access_token", why);
    }
    match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/api/v2/order/get_order_list") => {
            let size: usize = seen.param("page_size").parse().unwrap_or(20).clamp(1, 100);
            let from: usize = seen.param("cursor").parse().unwrap_or(0);
            // The list names orders; `get_order_detail` tells the rest.
            let page: Vec<Value> = shop
                .orders
                .iter()
                .skip(from)
                .take(size)
                .map(|o| json!({"order_sn": o["order_sn"], "order_status": o["order_status"]}))
                .collect();
            let more = from + page.len() < shop.orders.len();
            let next = if more {
                (from + page.len()).to_string()
            } else {
                String::new()
            };
            (
                axum::Json(json!({
                    "error": "", "message": "", "request_id": "mock",
                    "response": {"more": more, "next_cursor": next, "order_list": page}
                }))
                .into_response(),
                None,
            )
        }
        ("GET", "/api/v2/order/get_order_detail") => {
            let wanted: Vec<&str> = seen.param("order_sn_list").split(',').collect();
            let list: Vec<Value> = shop
                .orders
                .iter()
                .filter(|o| wanted.contains(&o["order_sn"].as_str().unwrap_or("")))
                .cloned()
                .collect();
            (
                axum::Json(json!({"error": "", "message": "", "request_id": "mock",
                                  "response": {"order_list": list}}))
                .into_response(),
                None,
            )
        }
        ("POST", "/api/v2/product/update_stock") => {
            if shop.busy() {
                return no(
                    StatusCode::TOO_MANY_REQUESTS,
                    "error_busy",
                    "too many requests",
                );
            }
            let body = seen.json();
            let Some(stock) = stock_of(&body) else {
                return (
                    axum::Json(json!({"error": "error_param", "request_id": "mock",
                        "message": "item_id and stock_list[].model_id, seller_stock[].stock"}))
                    .into_response(),
                    Some("error_param: update_stock body".into()),
                );
            };
            let success: Vec<Value> = stock
                .iter()
                .map(|(model, n)| json!({"model_id": model, "location_id": "", "stock": n}))
                .collect();
            for (model, n) in stock {
                shop.stock
                    .insert(format!("{}/{model}", body["item_id"]), n.into());
            }
            shop.received.push(body);
            (
                axum::Json(json!({"error": "", "message": "", "request_id": "mock",
                                  "response": {"success_list": success, "failure_list": []}}))
                .into_response(),
                None,
            )
        }
        _ => no(StatusCode::NOT_FOUND, "error_not_found", "no such API"),
    }
}
