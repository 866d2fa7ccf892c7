//! The shipped project end to end: signed BigCommerce webhooks posted to the real binary,
//! enriched from a BigCommerce API on loopback, reach a mock Salesforce (a server that behaves
//! as docs/salesforce.md says) as the right records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Value};
use support::engine::{eventually, shipped_project, Engine};
use support::mock_salesforce::{MockSalesforce, CLIENT_ID, CLIENT_SECRET};

const BC_SECRET: &str = "e2e-bigcommerce-client-secret";
const BC_TOKEN: &str = "e2e-bigcommerce-access-token";

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bigcommerce")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// BigCommerce's V2 orders API for orders 250 and 251, behind its X-Auth-Token.
async fn bigcommerce_api() -> String {
    async fn order(
        headers: HeaderMap,
        UrlPath((_, id)): UrlPath<(String, String)>,
    ) -> impl IntoResponse {
        if headers.get("x-auth-token").and_then(|v| v.to_str().ok()) != Some(BC_TOKEN) {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!([{"status": 401}])),
            );
        }
        match id.as_str() {
            "250" => (StatusCode::OK, axum::Json(fixture("order-250.json"))),
            "251" => (StatusCode::OK, axum::Json(fixture("order-251-guest.json"))),
            _ => (StatusCode::NOT_FOUND, axum::Json(json!([{"status": 404}]))),
        }
    }
    async fn products(UrlPath((_, id)): UrlPath<(String, String)>) -> impl IntoResponse {
        match id.as_str() {
            "250" => (
                StatusCode::OK,
                axum::Json(fixture("order-250-products.json")),
            ),
            "251" => (
                StatusCode::OK,
                axum::Json(fixture("order-251-products.json")),
            ),
            _ => (StatusCode::NOT_FOUND, axum::Json(json!([]))),
        }
    }
    /// V3 carts behind the same token; a cart it does not hold is a 404, as after checkout.
    async fn cart(
        headers: HeaderMap,
        UrlPath((_, id)): UrlPath<(String, String)>,
    ) -> impl IntoResponse {
        if headers.get("x-auth-token").and_then(|v| v.to_str().ok()) != Some(BC_TOKEN) {
            return (StatusCode::UNAUTHORIZED, axum::Json(json!({"status": 401})));
        }
        let cart = fixture("cart-high-value.json");
        if cart["data"]["id"] == id.as_str() {
            (StatusCode::OK, axum::Json(cart))
        } else {
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"status": 404, "title": "Cart not found"})),
            )
        }
    }
    let app = axum::Router::new()
        .route("/stores/{store}/v3/carts/{id}", axum::routing::get(cart))
        .route("/stores/{store}/v2/orders/{id}", axum::routing::get(order))
        .route(
            "/stores/{store}/v2/orders/{id}/products",
            axum::routing::get(products),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Standard Webhooks headers as BigCommerce sends them, keyed with the raw client secret.
fn bigcommerce_headers(id: &str, body: &str) -> Vec<(&'static str, String)> {
    support::mock_bigcommerce::signed_headers(BC_SECRET, id, body)
}

async fn post_order(engine: &Engine, delivery: &str, order_id: u64) -> (u16, Value) {
    let body = json!({
        "scope": "store/order/created",
        "store_id": "1025646",
        "data": {"type": "order", "id": order_id},
        "hash": "dd70c0976e06b67aaf671e73f49dcb79230ebf9d",
        "created_at": 1_763_647_407,
        "producer": "stores/abc123",
    })
    .to_string();
    let mut request = Engine::client()
        .post(engine.url("/hooks/bigcommerce/orders"))
        .header("content-type", "application/json")
        .body(body.clone());
    for (k, v) in bigcommerce_headers(delivery, &body) {
        request = request.header(k, v);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

struct World {
    _dir: tempfile::TempDir,
    sf: MockSalesforce,
    engine: Engine,
}

async fn world() -> World {
    world_with(&["OAK-CH-01", "LIN-CU-GRY"]).await
}

/// A mock org holding price book entries for `skus` (order items point at them by SKU), the
/// BigCommerce API, and the engine on the shipped project configured for both.
async fn world_with(skus: &[&str]) -> World {
    let sf = MockSalesforce::start().await;
    for sku in skus {
        sf.insert("PricebookEntry", json!({ "SKU__c": sku, "UnitPrice": 1 }));
    }
    let bc = bigcommerce_api().await;
    let dir = shipped_project();
    let engine = Engine::start_with(
        dir.path(),
        &[
            ("SF_INSTANCE_URL", &sf.base_url()),
            ("SF_TOKEN_URL", &sf.token_url()),
            ("SF_CLIENT_ID", CLIENT_ID),
            ("SF_CLIENT_SECRET", CLIENT_SECRET),
            ("BC_API_URL", &bc),
            ("BC_STORE_HASH", "abc123"),
            ("BC_ACCESS_TOKEN", BC_TOKEN),
            ("BC_CLIENT_SECRET", BC_SECRET),
        ],
    );
    World {
        _dir: dir,
        sf,
        engine,
    }
}

#[tokio::test]
async fn a_signed_order_webhook_becomes_account_contact_and_order_with_items() {
    let w = world().await;
    let (status, answer) = post_order(&w.engine, "delivery-250", 250).await;
    assert_eq!(status, 202, "{answer}\n{}", w.engine.log());
    let id = answer["event_id"].as_str().unwrap().to_string();

    let trail = eventually("the event to finish", Duration::from_secs(20), || async {
        let (_, t) = w.engine.admin(&format!("/api/events/{id}")).await;
        (t["status"] == "processed" || t["status"] == "dead_lettered").then_some(t)
    })
    .await;
    assert_eq!(trail["status"], "processed", "{trail}\n{}", w.engine.log());

    let accounts = w.sf.find("Account", "External_Id__c", "BC-CUST-11");
    assert_eq!(accounts.len(), 1, "{:?}", w.sf.records("Account"));
    let account = &accounts[0];
    assert_eq!(account["Name"], "Jane Doe");
    assert_eq!(account["BillingCity"], "Austin");
    let account_id = account["Id"].as_str().unwrap();

    let contacts =
        w.sf.find("Contact", "External_Email__c", "jane.doe@example.com");
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["LastName"], "Doe");
    assert_eq!(
        contacts[0]["AccountId"], account_id,
        "the Contact is linked to the Account"
    );

    let orders = w.sf.find("Order", "External_Id__c", "BC-ORDER-250");
    assert_eq!(orders.len(), 1, "{:?}", w.sf.records("Order"));
    let order = &orders[0];
    assert_eq!(order["AccountId"], account_id);
    assert_eq!(order["Status"], "Draft");
    assert_eq!(order["EffectiveDate"], "2026-11-20");
    let items: Vec<Value> =
        w.sf.records("OrderItem")
            .into_iter()
            .filter(|i| i["OrderId"] == order["Id"])
            .collect();
    assert_eq!(items.len(), 2, "{items:?}");
    let quantities: Vec<i64> = items
        .iter()
        .map(|i| i["Quantity"].as_i64().unwrap())
        .collect();
    assert!(quantities.contains(&2) && quantities.contains(&1));

    // Each item carries its own key: the order id and the BigCommerce line item id.
    let mut item_keys: Vec<&str> = items
        .iter()
        .map(|i| i["External_Id__c"].as_str().unwrap())
        .collect();
    item_keys.sort_unstable();
    assert_eq!(item_keys, ["BC-ORDER-250-1971", "BC-ORDER-250-1972"]);

    // The Order and its items went in one composite call that upserts each by its key.
    let calls = w.sf.calls();
    let composites: Vec<_> = calls
        .iter()
        .filter(|c| c.path == "/services/data/v60.0/composite")
        .collect();
    assert_eq!(composites.len(), 1, "{calls:?}");
    assert_eq!(composites[0].method, "POST");
    assert_eq!(composites[0].status, 200);
    assert_eq!(composites[0].body["allOrNone"], true);
    let urls: Vec<&str> = composites[0].body["compositeRequest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            "/services/data/v60.0/sobjects/Order/External_Id__c/BC-ORDER-250",
            "/services/data/v60.0/composite/sobjects/OrderItem/External_Id__c",
        ]
    );
    // The items go in one sObject Collections upsert, each with its own key.
    let sent_keys: Vec<&str> = composites[0].body["compositeRequest"][1]["body"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["External_Id__c"].as_str().unwrap())
        .collect();
    assert_eq!(sent_keys, ["BC-ORDER-250-1971", "BC-ORDER-250-1972"]);
    assert!(
        !calls.iter().any(|c| c.path.contains("composite/tree")),
        "{calls:?}"
    );

    // The trail names every action with the id Salesforce gave.
    let actions = trail["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3);
    assert_eq!(actions[2]["op"], "composite");
    assert_eq!(actions[2]["remote_id"], order["Id"]);
    assert_eq!(w.sf.token_requests(), 1, "the token is cached across calls");

    // What the org holds now, to compare after each redelivery.
    let counts = |sf: &MockSalesforce| {
        ["Account", "Contact", "Order", "OrderItem"].map(|object| sf.records(object).len())
    };
    let before = counts(&w.sf);
    assert_eq!(before, [1, 1, 1, 2]);
    let calls_before = w.sf.calls().len();

    // BigCommerce redelivers the same webhook: 200, nothing sent twice.
    let (status, again) = post_order(&w.engine, "delivery-250", 250).await;
    assert_eq!(status, 200);
    assert_eq!(again["event_id"], id.as_str());
    // Whatever the engine would send, it sends after answering: give it the time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.sf.calls().len(), calls_before, "{:?}", w.sf.calls());
    assert_eq!(counts(&w.sf), before);

    // The same order placed, as a new delivery (the store sent it again): a duplicate by the
    // pipeline's business key, whatever its delivery id.
    let (status, again) = post_order(&w.engine, "delivery-250-again", 250).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["event_id"], id.as_str());

    // The order's status changes: a new event, whose upserts update the same records and
    // create none.
    let status_change = json!({
        "scope": "store/order/statusUpdated",
        "store_id": "1025646",
        "data": {"type": "order", "id": 250, "status": {"previous_status_id": 1, "new_status_id": 11}},
        "hash": "352e4afc6dd3fc85ea26bfdf3f91852604d57528",
        "created_at": 1_763_647_470,
        "producer": "stores/abc123",
    })
    .to_string();
    let (status, answer) = post_signed(
        &w.engine,
        "/hooks/bigcommerce/orders",
        "delivery-250-status",
        &status_change,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let second = answer["event_id"].as_str().unwrap().to_string();
    assert_ne!(second, id);
    let trail = eventually(
        "the second event to finish",
        Duration::from_secs(20),
        || async {
            let (_, t) = w.engine.admin(&format!("/api/events/{second}")).await;
            (t["status"] == "processed" || t["status"] == "dead_lettered").then_some(t)
        },
    )
    .await;
    assert_eq!(trail["status"], "processed", "{trail}\n{}", w.engine.log());
    assert_eq!(trail["actions"][2]["remote_id"], order["Id"]);
    assert_eq!(counts(&w.sf), before, "{:?}", w.sf.records("OrderItem"));
    let items_after: Vec<Value> = w.sf.records("OrderItem");
    assert!(items_after.iter().all(|i| i["OrderId"] == order["Id"]));
}

#[tokio::test]
async fn salesforce_limits_are_retried_and_bad_records_dead_letter_with_the_remote_error() {
    let w = world().await;
    // The org's API allowance runs out for two calls, then recovers: the event is retried
    // with backoff and gets through.
    w.sf.limit_exceeded(2);
    let (status, answer) = post_order(&w.engine, "delivery-limited", 250).await;
    assert_eq!(status, 202);
    let id = answer["event_id"].as_str().unwrap().to_string();
    let trail = eventually("the retried event", Duration::from_secs(30), || async {
        let (_, t) = w.engine.admin(&format!("/api/events/{id}")).await;
        (t["status"] == "processed" || t["status"] == "dead_lettered").then_some(t)
    })
    .await;
    assert_eq!(trail["status"], "processed", "{trail}");
    assert_eq!(trail["attempts"], 3);
    let errors = trail["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("REQUEST_LIMIT_EXCEEDED"));
    assert_eq!(
        w.sf.find("Order", "External_Id__c", "BC-ORDER-250").len(),
        1
    );
    assert_eq!(
        w.sf.find("Account", "External_Id__c", "BC-CUST-11").len(),
        1
    );

    // In an org without the price book entry the items point at, Salesforce refuses the
    // item inside the composite: a permanent error, dead-lettered at once with Salesforce's
    // own error for that item.
    let w2 = world_with(&[]).await;
    let (status, answer) = post_order(&w2.engine, "delivery-251", 251).await;
    assert_eq!(status, 202);
    let id = answer["event_id"].as_str().unwrap().to_string();
    let letter = eventually("the dead letter", Duration::from_secs(20), || async {
        let (status, l) = w2.engine.admin(&format!("/api/dlq/{id}")).await;
        (status == 200).then_some(l)
    })
    .await;
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("salesforce composite Order"), "{reason}");
    assert!(reason.contains("`refOrderItems_0`"), "{reason}");
    assert!(reason.contains("BC-ORDER-251-1980"), "{reason}");
    assert!(
        reason.contains("LIN-CU-GRY"),
        "the remote error names the missing entry: {reason}"
    );
    assert_eq!(
        letter["event"]["attempts"], 1,
        "a permanent error is not retried"
    );
    assert_eq!(letter["body"]["data"]["id"], 251);
    // The Account and Contact went out before the Order failed; the Order upserted ahead of
    // the bad item was rolled back with it.
    assert_eq!(w2.sf.records("Order").len(), 0);
    assert_eq!(w2.sf.records("OrderItem").len(), 0);
    assert_eq!(w2.sf.records("Contact").len(), 1);
}

#[tokio::test]
async fn unconfigured_salesforce_calls_go_to_the_console() {
    // No Salesforce variables at all: the shipped project still runs; its calls are printed.
    let bc = bigcommerce_api().await;
    let dir = shipped_project();
    let engine = Engine::start_with(
        dir.path(),
        &[
            ("BC_API_URL", &bc),
            ("BC_STORE_HASH", "abc123"),
            ("BC_ACCESS_TOKEN", BC_TOKEN),
            ("BC_CLIENT_SECRET", BC_SECRET),
        ],
    );
    assert!(
        engine
            .log()
            .contains("connector `salesforce` is not configured"),
        "{}",
        engine.log()
    );
    let (status, _) = post_order(&engine, "delivery-console", 250).await;
    assert_eq!(status, 202);
    let printed = eventually("three printed calls", Duration::from_secs(20), || async {
        let out = engine.stdout();
        (out.lines().count() >= 3).then_some(out)
    })
    .await;
    let lines: Vec<Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["connector"], "salesforce");
    assert_eq!(lines[0]["op"], "upsert");
    assert_eq!(lines[0]["object"], "Account");
    assert_eq!(lines[2]["op"], "composite");
    assert_eq!(lines[2]["payload"]["External_Id__c"], "BC-ORDER-250");
}

/// Posts a BigCommerce webhook body, signed as BigCommerce signs it, to `path`.
async fn post_signed(engine: &Engine, path: &str, delivery: &str, body: &str) -> (u16, Value) {
    let mut request = Engine::client()
        .post(engine.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in bigcommerce_headers(delivery, body) {
        request = request.header(k, v);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_real_abandoned_cart_webhook_becomes_an_opportunity_and_a_task() {
    let w = world().await;
    // The webhook as BigCommerce sends it: the cart id, nothing else of the cart.
    let body = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/bigcommerce/webhook-cart-abandoned.json"),
    )
    .unwrap();
    let (status, answer) =
        post_signed(&w.engine, "/hooks/bigcommerce/carts", "cart-1", &body).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["event_id"].as_str().unwrap().to_string();
    let trail = eventually("the cart event", Duration::from_secs(20), || async {
        let (_, t) = w.engine.admin(&format!("/api/events/{id}")).await;
        (t["status"] == "processed" || t["status"] == "dead_lettered").then_some(t)
    })
    .await;
    assert_eq!(trail["status"], "processed", "{trail}\n{}", w.engine.log());
    let opportunities = w.sf.find(
        "Opportunity",
        "External_Id__c",
        "BC-CART-09346904-4175-44fd-be53-f7e598531b6c",
    );
    assert_eq!(opportunities.len(), 1, "{:?}", w.sf.records("Opportunity"));
    assert_eq!(opportunities[0]["Amount"], json!(612.5));
    assert_eq!(
        opportunities[0]["Name"],
        "Abandoned cart jane.doe@example.com"
    );
    let tasks = w.sf.records("Task");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["Priority"], "High");

    // A cart the store no longer has: the fetch's 404 dead-letters the event, saying so.
    let gone = body.replace(
        "09346904-4175-44fd-be53-f7e598531b6c",
        "00000000-0000-4000-8000-000000000000",
    );
    let (status, answer) =
        post_signed(&w.engine, "/hooks/bigcommerce/carts", "cart-2", &gone).await;
    assert_eq!(status, 202);
    let id = answer["event_id"].as_str().unwrap().to_string();
    let letter = eventually("the dead letter", Duration::from_secs(20), || async {
        let (status, l) = w.engine.admin(&format!("/api/dlq/{id}")).await;
        (status == 200).then_some(l)
    })
    .await;
    let reason = letter["reason"].as_str().unwrap();
    assert!(
        reason.contains("get_cart") && reason.contains("404"),
        "{reason}"
    );
}
