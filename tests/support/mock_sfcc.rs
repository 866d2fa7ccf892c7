//! A mock Salesforce B2C Commerce (SFCC) server on loopback: the Account Manager's token
//! endpoint and the OCAPI Shop API's order search, checked as Salesforce documents them.
//!
//! * `POST /dwsso/oauth2/access_token` (Account Manager) takes the API client's id and secret
//!   as HTTP Basic and the form `grant_type=client_credentials`, answering `access_token`,
//!   `token_type` and `expires_in`; other credentials get 401 `{"error": "invalid_client"}`.
//! * `POST /s/{site}/dw/shop/v23_2/order_search` with a bearer token and the JSON body
//!   `{query, select, sorts, start, count}` pages by `start` and `count` (at most 200),
//!   answering `{count, hits: [{data: order}], start, total}`.
//! * `PUT /s/-/dw/data/v23_2/price_books/{price_book_id}/price_tables/{product_id}` (Data API)
//!   with a bearer token and `{product_id, amounts: [{quantity, amount}]}` sets the product's
//!   price in the price book (recorded under the product id, the amount for quantity 1) and
//!   answers the price table; a price book or product it does not have is 404.
//!
//! Refusals are OCAPI faults: `{"_v": "23.2", "fault": {"type", "message"}}`, 401 for a
//! missing, wrong or expired token (`InvalidAccessTokenException`, `ExpiredTokenException`),
//! 404 for an unknown price book or product (`PriceBookNotFoundException`,
//! `ProductNotFoundException`), 400 for a price table without a numeric amount
//! (`InvalidDocumentException`) and 429 over the throttle (`QuotaExceededException`). The
//! fault names and the price table's JSON shape are our reading.

use axum::response::Response;
use serde_json::{json, Value};

use super::marketplace::{answer_json, client_credentials, page, ClientGrant, Mock, Seen, Shop};

pub const CLIENT_ID: &str = "a1b2c3d4-sfcc-client";
pub const CLIENT_SECRET: &str = "sfcc-test-client-secret";
pub const SITE: &str = "RefArch";
pub const TOKEN_PATH: &str = "/dwsso/oauth2/access_token";
pub const ORDERS_PATH: &str = "/s/RefArch/dw/shop/v23_2/order_search";
/// The price book the example writes to unless told otherwise, and the only one here.
pub const PRICE_BOOK: &str = "usd-m-list-prices";
/// The Data API's price books, organization-wide.
pub const PRICE_BOOKS_PATH: &str = "/s/-/dw/data/v23_2/price_books/";
/// The products of the catalog: a price table for another is refused.
pub const PRODUCTS: [&str; 2] = ["24-MB01", "701642811398M"];

/// An SFCC mock whose access tokens live `life` seconds, listing `orders` (OCAPI orders).
pub async fn start(orders: Vec<Value>, life: i64) -> Mock {
    Mock::start("sfcc", "", orders, life, answer).await
}

fn fault(status: u16, kind: &str, message: &str) -> (Response, Option<String>) {
    (
        answer_json(
            status,
            json!({"_v": "23.2", "fault": {"type": kind, "message": message}}),
        ),
        Some(format!("{kind}: {message}")),
    )
}

fn answer(shop: &mut Shop, seen: &Seen) -> (Response, Option<String>) {
    if shop.throttle.over() {
        return fault(429, "QuotaExceededException", "Too many requests");
    }
    if seen.path == TOKEN_PATH {
        let grant = ClientGrant {
            given: seen.basic(),
            expected: (CLIENT_ID, CLIENT_SECRET),
            refusal: "Client authentication failed",
            token_type: "Bearer",
            scope: "mail tenantFilter",
        };
        return client_credentials(shop, seen, grant);
    }
    match shop.tokens.check(seen.bearer()) {
        None => {}
        Some("expired") => return fault(401, "ExpiredTokenException", "The token has expired"),
        Some(why) => {
            return fault(
                401,
                "InvalidAccessTokenException",
                &format!("access token {why}"),
            )
        }
    }
    match (seen.method.as_str(), seen.path.as_str()) {
        ("POST", ORDERS_PATH) => {
            let body = seen.json();
            let start = body["start"].as_u64().unwrap_or(0) as usize;
            let count = body["count"].as_u64().unwrap_or(25) as usize;
            if !body["query"].is_object() || count == 0 || count > 200 {
                return fault(
                    400,
                    "InvalidSearchQueryException",
                    "a query is required, count 1 to 200",
                );
            }
            let hits: Vec<Value> = page(&shop.orders, start, count)
                .into_iter()
                .map(|o| json!({"_type": "order_search_hit", "data": o, "relevance": 1.0}))
                .collect();
            (
                answer_json(
                    200,
                    json!({"_v": "23.2", "_type": "order_search_result", "count": hits.len(),
                           "hits": hits, "query": body["query"], "start": start,
                           "total": shop.orders.len()}),
                ),
                None,
            )
        }
        ("PUT", path) if path.starts_with(PRICE_BOOKS_PATH) => price_table(shop, seen),
        _ => fault(404, "ResourcePathNotFoundException", "no such resource"),
    }
}

/// `.../price_books/{price_book_id}/price_tables/{product_id}`.
fn price_table(shop: &mut Shop, seen: &Seen) -> (Response, Option<String>) {
    let rest = &seen.path[PRICE_BOOKS_PATH.len()..];
    let Some((book, product)) = rest.split_once("/price_tables/") else {
        return fault(404, "ResourcePathNotFoundException", "no such resource");
    };
    if book != PRICE_BOOK {
        return fault(
            404,
            "PriceBookNotFoundException",
            &format!("No price book with ID '{book}' was found."),
        );
    }
    if !PRODUCTS.contains(&product) {
        return fault(
            404,
            "ProductNotFoundException",
            &format!("No product with ID '{product}' was found."),
        );
    }
    let body = seen.json();
    let amount = body["amounts"]
        .as_array()
        .and_then(|amounts| amounts.iter().find(|a| a["quantity"] == json!(1)))
        .map(|a| a["amount"].clone())
        .filter(Value::is_number);
    let Some(amount) = amount else {
        return fault(
            400,
            "InvalidDocumentException",
            "a price table needs an amount for quantity 1",
        );
    };
    shop.received.push(body.clone());
    shop.stock.insert(product.to_string(), amount);
    (
        answer_json(
            200,
            json!({"_v": "23.2", "_type": "price_table", "price_book_id": book,
                   "product_id": product, "amounts": body["amounts"]}),
        ),
        None,
    )
}
