//! A mock Oracle Commerce (Cloud) Admin REST API on loopback, checked as Oracle's "Use the
//! REST APIs" guide describes it.
//!
//! * `POST /ccadmin/v1/login` with the application key as `Authorization: Bearer` and the form
//!   `grant_type=client_credentials` answers `access_token`, `token_type` and `expires_in`
//!   (300: the access token lives five minutes); another key gets 401.
//! * Every other call carries that access token as `Authorization: Bearer`; a missing, wrong
//!   or expired one gets 401.
//! * `GET /ccadmin/v1/orders?offset&limit` pages by offset (`limit` at most 250, Oracle's
//!   default), answering `{items, offset, limit, totalResults, total}`.
//! * `PUT /ccadmin/v1/products/{id}` with `{listPrice}` sets the product's list price
//!   (recorded under the product id) and answers the product.
//!
//! Refusals answer `{"errorCode", "message", "status"}`; 429 over the throttle. The error
//! codes are our reading.

use axum::response::Response;
use serde_json::{json, Value};

use super::marketplace::{answer_json, page, Mock, Seen, Shop};

pub const APP_KEY: &str = "eyJhbGciOiJSUzI1NiJ9.oracle-test-application-key";
pub const LOGIN_PATH: &str = "/ccadmin/v1/login";
pub const ORDERS_PATH: &str = "/ccadmin/v1/orders";
pub const PRODUCTS_PATH: &str = "/ccadmin/v1/products/";

/// An Oracle Commerce mock whose access tokens live `life` seconds, listing `orders`.
pub async fn start(orders: Vec<Value>, life: i64) -> Mock {
    Mock::start("oracle", "", orders, life, answer).await
}

fn error(status: u16, code: &str, message: &str) -> (Response, Option<String>) {
    (
        answer_json(
            status,
            json!({"errorCode": code, "message": message, "status": status.to_string()}),
        ),
        Some(format!("{code}: {message}")),
    )
}

fn answer(shop: &mut Shop, seen: &Seen) -> (Response, Option<String>) {
    if shop.throttle.over() {
        return error(429, "100429", "Too many requests");
    }
    if seen.path == LOGIN_PATH {
        if seen.method != "POST" || seen.bearer() != APP_KEY {
            return error(401, "000002", "Invalid application key");
        }
        if seen.form().get("grant_type").map(String::as_str) != Some("client_credentials") {
            return error(400, "000001", "grant_type must be client_credentials");
        }
        let (token, life) = shop.tokens.issue();
        return (
            answer_json(
                200,
                json!({"access_token": token, "token_type": "bearer", "expires_in": life}),
            ),
            None,
        );
    }
    match shop.tokens.check(seen.bearer()) {
        None => {}
        Some("expired") => return error(401, "000002", "The access token has expired"),
        Some(_) => return error(401, "000002", "Invalid access token"),
    }
    match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", ORDERS_PATH) => {
            let limit: usize = seen.param("limit").parse().unwrap_or(250);
            let offset: usize = seen.param("offset").parse().unwrap_or(0);
            if limit == 0 || limit > 250 {
                return error(400, "100001", "limit must be 1 to 250");
            }
            let items = page(&shop.orders, offset, limit);
            let total = shop.orders.len();
            (
                answer_json(
                    200,
                    json!({"items": items, "offset": offset, "limit": limit,
                           "totalResults": total, "total": total}),
                ),
                None,
            )
        }
        ("PUT", path) if path.starts_with(PRODUCTS_PATH) => {
            if shop.busy() {
                return error(429, "100429", "Too many requests");
            }
            let id = &path[PRODUCTS_PATH.len()..];
            let body = seen.json();
            if id.is_empty() || !body["listPrice"].is_number() {
                return error(400, "100002", "listPrice must be a number");
            }
            shop.stock.insert(id.to_string(), body["listPrice"].clone());
            shop.received.push(body.clone());
            (
                answer_json(200, json!({"id": id, "listPrice": body["listPrice"]})),
                None,
            )
        }
        _ => error(404, "100404", "no such resource"),
    }
}
