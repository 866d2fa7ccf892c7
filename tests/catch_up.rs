//! Catch-up reconciliation end to end: the shipped bigcommerce-orders pipeline on the real
//! binary, its webhook signed as BigCommerce signs it, its catch-up poll calling a BigCommerce
//! orders API on loopback (token checked, paged, filtered by date), and what reaches a mock
//! Salesforce counted per order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::engine::{eventually, shipped_project, Engine};
use support::mock_bigcommerce::{signed_headers, MockBigCommerce};
use support::mock_salesforce::{MockSalesforce, CLIENT_ID, CLIENT_SECRET};
use support::nats::Nats;

const BC_SECRET: &str = "catch-up-bigcommerce-client-secret";
const BC_TOKEN: &str = "catch-up-bigcommerce-access-token";
const WAIT: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bigcommerce")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A fixture order placed `minutes` ago, its dates written as the V2 API writes them.
fn placed(name: &str, minutes: i64) -> Value {
    let mut order = fixture(name);
    let at = (chrono::Utc::now() - chrono::Duration::minutes(minutes)).to_rfc2822();
    order["date_created"] = json!(at);
    order["date_modified"] = json!(at);
    order
}

/// BigCommerce's order webhook: `store/order/created`, or `statusUpdated` with a new status.
fn hook(order_id: u64, status: Option<(u64, u64)>) -> Value {
    let mut data = json!({"type": "order", "id": order_id});
    let scope = match status {
        Some((previous, new)) => {
            data["status"] = json!({"previous_status_id": previous, "new_status_id": new});
            "store/order/statusUpdated"
        }
        None => "store/order/created",
    };
    json!({
        "scope": scope,
        "store_id": "1025646",
        "data": data,
        "hash": "dd70c0976e06b67aaf671e73f49dcb79230ebf9d",
        "created_at": chrono::Utc::now().timestamp(),
        "producer": "stores/abc123",
    })
}

async fn post_hook(engine: &Engine, delivery: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut request = Engine::client()
        .post(engine.url("/hooks/bigcommerce/orders"))
        .header("content-type", "application/json")
        .body(body.clone());
    for (k, v) in signed_headers(BC_SECRET, delivery, &body) {
        request = request.header(k, v);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// How many composite calls upserted the Salesforce Order of BigCommerce order `id`.
fn order_pushes(sf: &MockSalesforce, id: u64) -> usize {
    let url = format!("/sobjects/Order/External_Id__c/BC-ORDER-{id}");
    sf.calls()
        .iter()
        .filter(|c| c.path.ends_with("/composite") && c.status == 200)
        .filter(|c| {
            c.body["compositeRequest"][0]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with(&url))
        })
        .count()
}

/// A counter of the pipeline in `/metrics`, summed over the nodes (0 where absent).
async fn counter(engines: &[Engine], name: &str) -> u64 {
    let prefix = format!("{name}{{pipeline=\"bigcommerce-orders\"}} ");
    let mut sum = 0;
    for engine in engines {
        let text = engine.metrics().await;
        sum += text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64);
    }
    sum
}

/// Events received, over every node: a cluster counts an event once, on the node that
/// published it to the stream (the node that runs it does not count it again).
async fn events(engines: &[Engine]) -> u64 {
    counter(engines, "crossdock_events_received_total").await
}

async fn pushed(sf: &MockSalesforce, id: u64, times: usize) {
    eventually(
        &format!("order {id} pushed {times} times"),
        WAIT,
        || async { (order_pushes(sf, id) >= times).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_webhook_missed_and_then_found_by_the_catch_up_poll_is_processed_once() {
    catch_up(false).await;
}

/// The same on two nodes of a cluster: the webhooks reach one node or the other, the poll runs
/// on the node holding its lease, and the business key deduplicates across them.
#[tokio::test]
async fn a_cluster_processes_a_caught_up_order_once_whichever_node_took_it() {
    catch_up(true).await;
}

async fn catch_up(cluster: bool) {
    let sf = MockSalesforce::start().await;
    for sku in ["OAK-CH-01", "LIN-CU-GRY"] {
        sf.insert("PricebookEntry", json!({ "SKU__c": sku, "UnitPrice": 1 }));
    }
    let bc = MockBigCommerce::start(BC_TOKEN).await;
    // Order A (250) and order B (251), both placed a few minutes ago, inside the lookback.
    bc.add(
        placed("order-250.json", 5),
        fixture("order-250-products.json"),
    );
    bc.add(
        placed("order-251-guest.json", 3),
        fixture("order-251-products.json"),
    );
    let dir = shipped_project();
    // The shipped pipeline polls every 15 minutes, 50 orders a page; the test cannot wait that
    // long, and asks one order a page so that the two orders take pages 1 and 2 and page 3 is
    // BigCommerce's 204.
    let pipeline = dir.path().join("pipelines/bigcommerce-orders.yaml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    assert!(
        text.contains("every: 15m") && text.contains("size: 50"),
        "{text}"
    );
    let text = text
        .replace("every: 15m", "every: 200ms")
        .replace("size: 50", "size: 1");
    std::fs::write(&pipeline, text).unwrap();
    let nats = cluster.then(|| {
        let config = dir.path().join("crossdock.yaml");
        let mut yaml = std::fs::read_to_string(&config).unwrap();
        yaml.push_str(
            "\ncluster:\n  nats: { url: \"${NATS_URL}\", ack_wait: 2s }\n  node: \"${CROSSDOCK_NODE}\"\n",
        );
        std::fs::write(&config, yaml).unwrap();
        Nats::start(&dir.path().join("nats"))
    });
    let nats_url = nats.as_ref().map(Nats::url).unwrap_or_default();
    let (sf_url, token_url) = (sf.base_url(), sf.token_url());
    let start = |node: &str| {
        Engine::start_with(
            dir.path(),
            &[
                ("SF_INSTANCE_URL", &sf_url),
                ("SF_TOKEN_URL", &token_url),
                ("SF_CLIENT_ID", CLIENT_ID),
                ("SF_CLIENT_SECRET", CLIENT_SECRET),
                ("BC_API_URL", &bc.url),
                ("BC_STORE_HASH", "abc123"),
                ("BC_ACCESS_TOKEN", bc.token()),
                ("BC_CLIENT_SECRET", BC_SECRET),
                ("NATS_URL", &nats_url),
                ("CROSSDOCK_NODE", node),
            ],
        )
    };
    let engines: Vec<Engine> = if cluster {
        vec![start("n1"), start("n2")]
    } else {
        vec![start("solo")]
    };
    let (first, last) = (&engines[0], &engines[engines.len() - 1]);
    // The store lists no order yet: the first polls find nothing (204, no body).
    eventually("a first poll", WAIT, || async {
        (!bc.list_calls().is_empty()).then_some(())
    })
    .await;

    // A's webhook arrives; B's never does.
    let (status, answer) = post_hook(first, "delivery-a", &hook(250, None)).await;
    assert_eq!(status, 202, "{answer}\n{}", first.log());
    pushed(&sf, 250, 1).await;

    // Now the store lists both. A poll (three calls now: page 1, page 2, the empty page 3)
    // runs only after the one before it ended, so once seven more calls began after this, a
    // whole poll has submitted what it found.
    bc.list(&[250, 251]);
    let calls = bc.list_calls().len();
    eventually("B pushed by the catch-up poll", WAIT, || async {
        (order_pushes(&sf, 251) == 1 && bc.list_calls().len() >= calls + 7).then_some(())
    })
    .await;
    assert_eq!(order_pushes(&sf, 250), 1, "A came both ways and ran once");
    assert_eq!(order_pushes(&sf, 251), 1);
    // A's webhook and B's poll item are the only events; every poll's A, and B after the
    // first, were duplicates.
    assert_eq!(events(&engines).await, 2);
    assert!(counter(&engines, "crossdock_events_duplicate_total").await >= 3);
    let accounts = sf.find(
        "Account",
        "External_Id__c",
        "BC-GUEST-orders@ruiz-interiors.example",
    );
    assert_eq!(accounts.len(), 1, "B's whole order reached Salesforce");

    // B's webhook arrives late: a duplicate of what the poll found, answered 200.
    let (status, late) = post_hook(last, "delivery-b", &hook(251, None)).await;
    assert_eq!(status, 200, "{late}");
    assert_eq!(late["duplicate"], true);
    assert_eq!(events(&engines).await, 2);
    assert_eq!(order_pushes(&sf, 251), 1);

    // An update is not a duplicate: A's status change runs, once however often it comes.
    let (status, change) = post_hook(last, "delivery-a-status", &hook(250, Some((1, 11)))).await;
    assert_eq!(status, 202, "{change}");
    pushed(&sf, 250, 2).await;
    let (status, again) = post_hook(first, "delivery-a-status-2", &hook(250, Some((1, 11)))).await;
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &json!(true)),
        "{again}"
    );
    assert_eq!(events(&engines).await, 3);

    // What the polls asked: the orders placed in the last two hours, page by page, with the
    // store's token (none was refused).
    assert_eq!(bc.refused(), 0);
    let first_call = &bc.list_calls()[0];
    assert_eq!(first_call.get("page").map(String::as_str), Some("1"));
    assert_eq!(first_call.get("limit").map(String::as_str), Some("1"));
    let made = bc.list_calls();
    let pages: Vec<&str> = made
        .iter()
        .map(|c| c.get("page").map_or("", String::as_str))
        .collect();
    assert!(
        pages.windows(3).any(|w| w == ["1", "2", "3"]),
        "no poll paged 1, 2, 3: {pages:?}"
    );
    let since = chrono::DateTime::parse_from_rfc3339(&first_call["min_date_created"]).unwrap();
    let back = chrono::Utc::now().signed_duration_since(since);
    assert!(
        back > chrono::Duration::minutes(119) && back < chrono::Duration::minutes(125),
        "min_date_created {since} is not two hours back"
    );
    drop(engines);
    drop(nats);
}
