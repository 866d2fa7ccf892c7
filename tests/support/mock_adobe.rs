//! A mock Adobe Commerce (Magento 2) REST API on loopback, checked as Adobe's REST guides
//! describe it.
//!
//! * Every call carries an integration's access token as `Authorization: Bearer`; a missing,
//!   wrong or expired one gets 401 `{"message": "The consumer isn't authorized to access
//!   %resources.", "parameters": {"resources": ...}}`.
//! * `GET /rest/V1/orders?searchCriteria[currentPage]&searchCriteria[pageSize]` pages by page
//!   number (from 1), answering `{items, search_criteria, total_count}`. Without a page size
//!   it answers 400; a page past the end answers the last page again, as Adobe does.
//! * `POST /rest/V1/products/base-prices` with `{prices: [{price, store_id, sku}]}` sets each
//!   SKU's base price (recorded under the SKU) and answers 200 with the list of failures: `[]`,
//!   or `{message, parameters}` for each negative price.
//!
//! 429 over the throttle (Adobe Commerce Cloud's rate limiting), with a `message`.

use axum::response::Response;
use serde_json::{json, Value};

use super::marketplace::{answer_json, page, Mock, Seen, Shop};

pub const ORDERS_PATH: &str = "/rest/V1/orders";
pub const PRICES_PATH: &str = "/rest/V1/products/base-prices";

/// An Adobe Commerce mock listing `orders`, with one integration token that lives `life`
/// seconds: `mock.shop.lock().tokens.access` once started.
pub async fn start(orders: Vec<Value>, life: i64) -> Mock {
    let mock = Mock::start("adobe", "", orders, life, answer).await;
    mock.shop.lock().unwrap().tokens.issue();
    mock
}

/// The integration token the mock accepts.
pub fn token(mock: &Mock) -> String {
    mock.shop.lock().unwrap().tokens.access.clone()
}

fn message(status: u16, text: &str, parameters: Value) -> (Response, Option<String>) {
    (
        answer_json(status, json!({"message": text, "parameters": parameters})),
        Some(text.replace("%resources", parameters["resources"].as_str().unwrap_or(""))),
    )
}

fn answer(shop: &mut Shop, seen: &Seen) -> (Response, Option<String>) {
    if shop.throttle.over() {
        return message(429, "Too many requests", json!({}));
    }
    let resource = if seen.path == PRICES_PATH {
        "Magento_Catalog::products"
    } else {
        "Magento_Sales::actions_view"
    };
    if shop.tokens.check(seen.bearer()).is_some() {
        return message(
            401,
            "The consumer isn't authorized to access %resources.",
            json!({"resources": resource}),
        );
    }
    match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", ORDERS_PATH) => {
            let size: usize = seen.param("searchCriteria[pageSize]").parse().unwrap_or(0);
            if size == 0 {
                return message(
                    400,
                    "\"%fieldName\" is required. Enter and try again.",
                    json!({"fieldName": "searchCriteria"}),
                );
            }
            let total = shop.orders.len();
            let last = total.div_ceil(size).max(1);
            let current: usize = seen
                .param("searchCriteria[currentPage]")
                .parse::<usize>()
                .unwrap_or(1)
                .clamp(1, last);
            let items = page(&shop.orders, (current - 1) * size, size);
            (
                answer_json(
                    200,
                    json!({"items": items, "total_count": total, "search_criteria": {
                        "filter_groups": [], "page_size": size, "current_page": current}}),
                ),
                None,
            )
        }
        ("POST", PRICES_PATH) => {
            if shop.busy() {
                return message(429, "Too many requests", json!({}));
            }
            let body = seen.json();
            let prices: Option<Vec<(String, Value)>> = body["prices"].as_array().and_then(|ps| {
                ps.iter()
                    .map(|p| {
                        p["store_id"].as_u64()?;
                        p["price"].as_f64()?;
                        Some((p["sku"].as_str()?.to_string(), p["price"].clone()))
                    })
                    .collect()
            });
            let Some(prices) = prices else {
                return message(
                    400,
                    "Invalid attribute %fieldName = %fieldValue.",
                    json!({"fieldName": "prices", "fieldValue": body["prices"]}),
                );
            };
            // Adobe sets the prices it can and answers 200 with a failure per price it cannot.
            let mut failures = Vec::new();
            for (sku, price) in prices {
                if price.as_f64().unwrap_or(-1.0) < 0.0 {
                    failures.push(
                        json!({"message": "Invalid attribute %fieldName = %fieldValue.",
                                         "parameters": ["Price", price]}),
                    );
                } else {
                    shop.stock.insert(sku, price);
                }
            }
            shop.received.push(body);
            let refused = (!failures.is_empty()).then(|| "a price failed".to_string());
            (answer_json(200, Value::Array(failures)), refused)
        }
        _ => message(
            404,
            "Request does not match any route.",
            json!({"resources": ""}),
        ),
    }
}
