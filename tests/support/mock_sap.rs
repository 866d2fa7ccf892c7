//! A mock SAP Commerce Cloud server on loopback: the OAuth server and the OCC REST API (v2)
//! order history, checked as SAP documents them.
//!
//! * `POST /authorizationserver/oauth/token` with the form `grant_type=client_credentials`
//!   and the client's id and secret (in the form or as HTTP Basic) answers `access_token`,
//!   `token_type` and `expires_in`; other credentials get 401 `{"error": "invalid_client"}`.
//! * `GET /occ/v2/{site}/users/{user}/orders?currentPage&pageSize` pages by page number
//!   (from 0), answering `{orders: [summary], pagination: {currentPage, pageSize, totalPages,
//!   totalResults}}`; `GET /occ/v2/{site}/users/{user}/orders/{code}` answers one whole
//!   order with its `entries`.
//! * `POST /odata2webservices/InboundPrice/PriceRows` (the Integration API, an inbound
//!   integration object `InboundPrice` whose root is `PriceRow`) with a bearer token and
//!   `{product: {code, catalogVersion: {catalog: {id}, version}}, currency: {isocode}, unit:
//!   {code}, price, net}` creates or updates the product's price row (recorded under the
//!   product code) and answers 201 with the row under `d`, as OData v2 does.
//!
//! Refusals are OCC error lists, `{"errors": [{"type", "message"}]}`: 401 `InvalidTokenError`
//! for a missing, wrong or expired token (SAP's message says which), 429 over the throttle
//! (`TooManyRequestsError`, our reading). The Integration API refuses with an OData error,
//! `{"error": {"code", "message": {"lang", "value"}}}`: 400 for a product, catalog version,
//! currency or unit it does not have (`missing_nav_property`) or a price that is not a number
//! (`invalid_property_value`); those codes are our reading.

use axum::response::Response;
use serde_json::{json, Value};

use super::marketplace::{answer_json, client_credentials, page, ClientGrant, Mock, Seen, Shop};

pub const CLIENT_ID: &str = "crossdock_client";
pub const CLIENT_SECRET: &str = "sap-test-client-secret";
pub const TOKEN_PATH: &str = "/authorizationserver/oauth/token";
pub const ORDERS_PATH: &str = "/occ/v2/electronics/users/integration@example.com/orders";
pub const PRICE_ROWS_PATH: &str = "/odata2webservices/InboundPrice/PriceRows";
/// The products of the Staged electronics catalog: a price row for another is refused.
pub const PRODUCTS: [&str; 2] = ["24-MB01", "3429337"];

/// A SAP mock whose access tokens live `life` seconds, listing `orders` (whole OCC orders).
pub async fn start(orders: Vec<Value>, life: i64) -> Mock {
    Mock::start("sap", "", orders, life, answer).await
}

fn error(status: u16, kind: &str, message: &str) -> (Response, Option<String>) {
    (
        answer_json(
            status,
            json!({"errors": [{"type": kind, "message": message}]}),
        ),
        Some(format!("{kind}: {message}")),
    )
}

fn answer(shop: &mut Shop, seen: &Seen) -> (Response, Option<String>) {
    if shop.throttle.over() {
        return error(429, "TooManyRequestsError", "Too many requests");
    }
    if seen.path == TOKEN_PATH {
        let form = seen.form();
        let given = seen.basic().or_else(|| {
            Some((
                form.get("client_id")?.clone(),
                form.get("client_secret")?.clone(),
            ))
        });
        let grant = ClientGrant {
            given,
            expected: (CLIENT_ID, CLIENT_SECRET),
            refusal: "Bad client credentials",
            token_type: "bearer",
            scope: "basic openid",
        };
        return client_credentials(shop, seen, grant);
    }
    let token = seen.bearer();
    match shop.tokens.check(token) {
        None => {}
        Some("expired") => {
            return error(
                401,
                "InvalidTokenError",
                &format!("Access token expired: {token}"),
            )
        }
        Some(_) => {
            return error(
                401,
                "InvalidTokenError",
                &format!("Invalid access token: {token}"),
            )
        }
    }
    if seen.method == "POST" && seen.path == PRICE_ROWS_PATH {
        return price_row(shop, seen);
    }
    if seen.method != "GET" {
        return error(405, "HttpRequestMethodNotSupportedError", "GET only");
    }
    if seen.path == ORDERS_PATH {
        let size: usize = seen.param("pageSize").parse().unwrap_or(20);
        let current: usize = seen.param("currentPage").parse().unwrap_or(0);
        if size == 0 || size > 100 {
            return error(400, "ValidationError", "pageSize must be 1 to 100");
        }
        let total = shop.orders.len();
        let orders: Vec<Value> = page(&shop.orders, current * size, size)
            .iter()
            .map(|o| {
                json!({"code": o["code"], "guid": o["guid"], "status": o["status"],
                       "statusDisplay": o["statusDisplay"], "placed": o["created"],
                       "total": o["totalPriceWithTax"]})
            })
            .collect();
        return (
            answer_json(
                200,
                json!({"orders": orders, "sorts": [], "pagination": {
                    "currentPage": current, "pageSize": size,
                    "totalPages": total.div_ceil(size), "totalResults": total}}),
            ),
            None,
        );
    }
    let code = seen
        .path
        .strip_prefix(ORDERS_PATH)
        .and_then(|rest| rest.strip_prefix('/'));
    match code.and_then(|c| shop.orders.iter().find(|o| o["code"].as_str() == Some(c))) {
        Some(order) => (answer_json(200, order.clone()), None),
        None => error(400, "UnknownIdentifierError", "Order not found"),
    }
}

fn odata_error(code: &str, message: &str) -> (Response, Option<String>) {
    (
        answer_json(
            400,
            json!({"error": {"code": code, "message": {"lang": "en", "value": message}}}),
        ),
        Some(format!("{code}: {message}")),
    )
}

/// One price row through the Integration API: its references must name items that exist.
fn price_row(shop: &mut Shop, seen: &Seen) -> (Response, Option<String>) {
    let row = seen.json();
    let product = &row["product"];
    let code = product["code"].as_str().unwrap_or_default();
    let version = &product["catalogVersion"];
    let known = PRODUCTS.contains(&code)
        && version["catalog"]["id"] == "electronicsProductCatalog"
        && version["version"] == "Staged";
    if !known {
        return odata_error(
            "missing_nav_property",
            &format!("No Product with code '{code}' in the given catalog version"),
        );
    }
    let currency = row["currency"]["isocode"].as_str().unwrap_or_default();
    if !["USD", "EUR"].contains(&currency) || row["unit"]["code"] != "pieces" {
        return odata_error(
            "missing_nav_property",
            "The currency or unit of the price row does not exist",
        );
    }
    if !row["price"].is_number() {
        return odata_error("invalid_property_value", "price must be a number");
    }
    shop.received.push(row.clone());
    shop.stock.insert(code.to_string(), row["price"].clone());
    let mut answer = row.clone();
    answer["integrationKey"] = json!(format!("{code}|{currency}|pieces"));
    (answer_json(201, json!({"d": answer})), None)
}
