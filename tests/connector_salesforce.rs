//! The `salesforce` connector against a mock Salesforce server on loopback that answers as the
//! real REST API does (tests/support/mock_salesforce.rs, described in docs/salesforce.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use crossdock::connectors::{CallError, Connector, Reply, Request};
use serde_json::{json, Value};
use support::connector::{build, permanent, retryable};
use support::mock_salesforce::{Call, MockSalesforce, API_VERSION, CLIENT_ID, CLIENT_SECRET};

/// The connector as crossdock.yaml configures it, pointed at the mock.
fn connector(sf: &MockSalesforce) -> Arc<dyn Connector> {
    connector_at(sf, Some(sf.base_url()), CLIENT_SECRET)
}

fn connector_at(sf: &MockSalesforce, instance: Option<String>, secret: &str) -> Arc<dyn Connector> {
    let mut config = json!({
        "kind": "salesforce",
        "auth": {"oauth2": {
            "token_url": sf.token_url(),
            "client_id": CLIENT_ID,
            "client_secret": secret,
        }},
        "api_version": API_VERSION,
    });
    if let Some(instance) = instance {
        config["instance_url"] = json!(instance);
    }
    build("salesforce", config)
}

async fn call(
    c: &Arc<dyn Connector>,
    op: &str,
    object: &str,
    key: Option<&str>,
    payload: Value,
) -> Result<Reply, CallError> {
    c.call(Request {
        connector: "salesforce",
        op,
        object: Some(object),
        key,
        payload: &payload,
        idempotency_key: None,
    })
    .await
}

fn lead() -> Value {
    json!({"LastName": "Shipper", "Company": "Acme", "Email": "steve@example.com"})
}

fn data_path(rest: &str) -> String {
    format!("/services/data/{API_VERSION}/{rest}")
}

#[tokio::test]
async fn create_posts_the_payload_and_returns_the_new_id() {
    let sf = MockSalesforce::start().await;
    let c = connector(&sf);
    let reply = call(&c, "create", "Lead", None, lead()).await.unwrap();
    assert_eq!(reply.status, 201);
    let id = reply.remote_id.clone().unwrap();
    assert_eq!(id.len(), 18);
    assert_eq!(reply.body["success"], true);
    assert_eq!(reply.body["id"], json!(id));

    let stored = sf.records("Lead");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["Id"], json!(id));
    assert_eq!(stored[0]["Company"], "Acme");
    let calls = sf.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].path, data_path("sobjects/Lead"));
    assert_eq!(calls[0].body, lead());
}

#[tokio::test]
async fn upsert_inserts_then_updates_the_same_record() {
    let sf = MockSalesforce::start().await;
    let c = connector(&sf);
    // A key with characters that must be encoded to stay one path segment.
    let key = "BC-cart/7 #1";
    let first = call(
        &c,
        "upsert",
        "Opportunity",
        Some("External_Id__c"),
        json!({"External_Id__c": key, "Name": "Cart 7", "StageName": "Prospecting",
               "CloseDate": "2026-07-01", "Amount": 120}),
    )
    .await
    .unwrap();
    assert_eq!(first.status, 201);
    assert_eq!(first.body["created"], true);
    let id = first.remote_id.unwrap();

    let second = call(
        &c,
        "upsert",
        "Opportunity",
        Some("External_Id__c"),
        json!({"External_Id__c": key, "Id": "0065g00000BogusAAA", "Amount": 150}),
    )
    .await
    .unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(second.body["created"], false);
    assert_eq!(second.remote_id.as_deref(), Some(id.as_str()));

    let stored = sf.find("Opportunity", "External_Id__c", key);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["Id"], json!(id));
    assert_eq!(stored[0]["Amount"], 150);
    assert_eq!(stored[0]["Name"], "Cart 7");

    let calls = sf.calls();
    assert_eq!(calls[1].method, "PATCH");
    assert_eq!(
        calls[1].path,
        data_path("sobjects/Opportunity/External_Id__c/BC-cart%2F7%20%231")
    );
    // Neither the key nor an Id goes in the body.
    assert_eq!(calls[1].body, json!({"Amount": 150}));
}

#[tokio::test]
async fn upsert_accepts_204_from_older_api_versions() {
    let sf = MockSalesforce::start().await;
    sf.insert(
        "Account",
        json!({"Name": "Acme", "External_Id__c": "CUST-115"}),
    );
    sf.old_api(true);
    let c = connector(&sf);
    let reply = call(
        &c,
        "upsert",
        "Account",
        Some("External_Id__c"),
        json!({"External_Id__c": "CUST-115", "Name": "Acme Corp"}),
    )
    .await
    .unwrap();
    assert_eq!(
        reply,
        Reply {
            status: 204,
            remote_id: None,
            body: Value::Null
        }
    );
    assert_eq!(
        sf.find("Account", "External_Id__c", "CUST-115")[0]["Name"],
        "Acme Corp"
    );
}

#[tokio::test]
async fn upsert_matching_several_records_is_permanent() {
    let sf = MockSalesforce::start().await;
    let a = sf.insert("Account", json!({"Name": "A", "External_Id__c": "DUP"}));
    let b = sf.insert("Account", json!({"Name": "B", "External_Id__c": "DUP"}));
    let c = connector(&sf);
    let message = permanent(
        call(
            &c,
            "upsert",
            "Account",
            Some("External_Id__c"),
            json!({"External_Id__c": "DUP", "Name": "C"}),
        )
        .await,
    );
    assert!(message.contains("300"), "{message}");
    assert!(message.contains("External_Id__c = DUP"), "{message}");
    assert!(message.contains(&a) && message.contains(&b), "{message}");
    assert_eq!(sf.calls().len(), 1);
}

#[tokio::test]
async fn update_and_delete_address_the_record_by_id() {
    let sf = MockSalesforce::start().await;
    let id = sf.insert("Contact", json!({"LastName": "Smith"}));
    let c = connector(&sf);
    let reply = call(
        &c,
        "update",
        "Contact",
        None,
        json!({"Id": id, "Email": "smith@example.com"}),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 204);
    assert_eq!(sf.records("Contact")[0]["Email"], "smith@example.com");
    let calls = sf.calls();
    assert_eq!(calls[0].method, "PATCH");
    assert_eq!(calls[0].path, data_path(&format!("sobjects/Contact/{id}")));
    assert_eq!(calls[0].body, json!({"Email": "smith@example.com"}));

    let reply = call(&c, "delete", "Contact", None, json!({"Id": id}))
        .await
        .unwrap();
    assert_eq!(reply.status, 204);
    assert!(sf.records("Contact").is_empty());

    let message = permanent(call(&c, "delete", "Contact", None, json!({"Id": id})).await);
    assert!(
        message.contains("404") && message.contains("NOT_FOUND"),
        "{message}"
    );
    let message = permanent(call(&c, "update", "Contact", None, json!({"Email": "x"})).await);
    assert!(message.contains("no `Id`"), "{message}");
}

fn order_tree(second_quantity: Value) -> Value {
    json!({
        "attributes": {"type": "Order", "referenceId": "order250"},
        "AccountId": "0015e00000AbCdEAAV",
        "EffectiveDate": "2026-06-01",
        "Status": "Draft",
        "ExternalId__c": "BC-250",
        "OrderItems": {"records": [
            {"attributes": {"type": "OrderItem", "referenceId": "item1"},
             "PricebookEntryId": "01u5e00000AbCdEAAV", "Quantity": 2, "UnitPrice": 49.5},
            {"attributes": {"type": "OrderItem", "referenceId": "item2"},
             "PricebookEntryId": "01u5e00000AbCdFAAV", "Quantity": second_quantity, "UnitPrice": 10}
        ]}
    })
}

#[tokio::test]
async fn tree_creates_an_order_with_its_items() {
    let sf = MockSalesforce::start().await;
    let c = connector(&sf);
    let reply = call(&c, "tree", "Order", None, order_tree(json!(1)))
        .await
        .unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body["hasErrors"], false);
    let orders = sf.records("Order");
    assert_eq!(orders.len(), 1);
    let order_id = orders[0]["Id"].as_str().unwrap();
    assert_eq!(reply.remote_id.as_deref(), Some(order_id));
    let items = sf.records("OrderItem");
    assert_eq!(items.len(), 2);
    for item in &items {
        assert_eq!(item["OrderId"], json!(order_id));
    }
    let calls = sf.calls();
    assert_eq!(calls[0].path, data_path("composite/tree/Order"));
    assert_eq!(calls[0].body, json!({"records": [order_tree(json!(1))]}));
}

#[tokio::test]
async fn tree_failure_is_permanent_with_the_record_errors() {
    let sf = MockSalesforce::start().await;
    let c = connector(&sf);
    let message = permanent(call(&c, "tree", "Order", None, order_tree(Value::Null)).await);
    assert!(message.contains("400"), "{message}");
    assert!(message.contains("item2"), "{message}");
    assert!(
        message.contains(r#""statusCode":"REQUIRED_FIELD_MISSING""#),
        "{message}"
    );
    assert!(message.contains("Quantity"), "{message}");
    // All or nothing.
    assert!(sf.records("Order").is_empty());
    assert!(sf.records("OrderItem").is_empty());
}

/// An Order for `composite`: upserted by `External_Id__c`, each item by its own, every item's
/// `OrderId` filled in from the Order.
fn order_composite(items: Vec<Value>) -> Value {
    json!({
        "External_Id__c": "BC-ORDER-250",
        "AccountId": "0015e00000AbCdEAAV",
        "EffectiveDate": "2026-06-01",
        "Status": "Draft",
        "Description": "first",
        "OrderItems": {
            "object": "OrderItem",
            "key": "External_Id__c",
            "parent": "OrderId",
            "records": items,
        }
    })
}

fn item(key: &str, sku: &str, quantity: i64) -> Value {
    json!({"External_Id__c": key, "PricebookEntry": {"SKU__c": sku},
           "Quantity": quantity, "UnitPrice": 10})
}

/// A mock org with the price book entries the items name by SKU.
async fn org_with_entries() -> MockSalesforce {
    let sf = MockSalesforce::start().await;
    for sku in ["OAK-CH-01", "LIN-CU-GRY"] {
        sf.insert("PricebookEntry", json!({"SKU__c": sku, "UnitPrice": 1}));
    }
    sf
}

async fn composite(c: &Arc<dyn Connector>, payload: Value) -> Result<Reply, CallError> {
    call(c, "composite", "Order", Some("External_Id__c"), payload).await
}

#[tokio::test]
async fn composite_upserts_an_order_with_its_items_and_a_redelivery_creates_nothing_new() {
    let sf = org_with_entries().await;
    let c = connector(&sf);
    // A key with characters that must be encoded to stay one path segment.
    let items = vec![
        item("BC-ORDER-250-1971", "OAK-CH-01", 2),
        item("BC-ORDER-250/1972 #b", "LIN-CU-GRY", 1),
    ];
    let first = composite(&c, order_composite(items.clone())).await.unwrap();
    assert_eq!(first.status, 200);
    let orders = sf.records("Order");
    assert_eq!(orders.len(), 1);
    let order_id = orders[0]["Id"].as_str().unwrap().to_string();
    assert_eq!(first.remote_id.as_deref(), Some(order_id.as_str()));
    assert_eq!(orders[0]["External_Id__c"], "BC-ORDER-250");
    let stored = sf.records("OrderItem");
    assert_eq!(stored.len(), 2);
    for item in &stored {
        assert_eq!(item["OrderId"], json!(order_id));
    }
    assert_eq!(
        sf.find("OrderItem", "External_Id__c", "BC-ORDER-250/1972 #b")[0]["Quantity"],
        1
    );
    let results = first.body["compositeResponse"].as_array().unwrap();
    let statuses: Vec<&Value> = results.iter().map(|r| &r["httpStatusCode"]).collect();
    assert_eq!(statuses, vec![201, 200]);
    assert_eq!(created(&results[1]), [true, true]);

    // One POST /composite, all or none: the Order by its key, then its items in one sObject
    // Collections upsert by their own key, pointing at the Order through the reference.
    let calls = sf.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].path, data_path("composite"));
    let sent = &calls[0].body;
    assert_eq!(sent["allOrNone"], true);
    let subs = sent["compositeRequest"].as_array().unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0]["method"], "PATCH");
    assert_eq!(subs[0]["referenceId"], "refParent");
    assert_eq!(
        subs[0]["url"],
        data_path("sobjects/Order/External_Id__c/BC-ORDER-250")
    );
    assert!(subs[0]["body"].get("External_Id__c").is_none());
    assert!(subs[0]["body"].get("OrderItems").is_none());
    assert_eq!(subs[1]["method"], "PATCH");
    assert_eq!(subs[1]["referenceId"], "refOrderItems_0");
    assert_eq!(
        subs[1]["url"],
        data_path("composite/sobjects/OrderItem/External_Id__c")
    );
    assert_eq!(subs[1]["body"]["allOrNone"], true);
    let records = subs[1]["body"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["attributes"], json!({"type": "OrderItem"}));
    assert_eq!(records[1]["External_Id__c"], "BC-ORDER-250/1972 #b");
    assert_eq!(records[1]["OrderId"], "@{refParent.id}");

    // The same payload again (the answer was lost, the event redelivered): nothing new, the
    // same records updated.
    let again = composite(&c, order_composite(items.clone())).await.unwrap();
    assert_eq!(again.remote_id.as_deref(), Some(order_id.as_str()));
    let results = again.body["compositeResponse"].as_array().unwrap();
    let statuses: Vec<&Value> = results.iter().map(|r| &r["httpStatusCode"]).collect();
    assert_eq!(statuses, vec![200, 200]);
    assert_eq!(created(&results[1]), [false, false]);
    assert_eq!(sf.records("Order").len(), 1);
    assert_eq!(sf.records("OrderItem"), stored);

    // A later version of the order updates the same Order.
    let mut changed = order_composite(items);
    changed["Description"] = json!("second");
    let third = composite(&c, changed).await.unwrap();
    assert_eq!(third.remote_id.as_deref(), Some(order_id.as_str()));
    let orders = sf.records("Order");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["Description"], "second");
    assert_eq!(sf.records("OrderItem").len(), 2);
}

/// The `created` flags of a collection subrequest's per-record results.
fn created(result: &Value) -> Vec<bool> {
    result["body"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["success"], true, "{r}");
            r["created"].as_bool().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_bad_item_fails_the_composite_naming_it_and_nothing_is_kept() {
    let sf = org_with_entries().await;
    let c = connector(&sf);
    // The second item names a price book entry the org does not have: Salesforce answers 200
    // with the items' collection subrequest answering 200 inside, that record failed and the
    // others rolled back.
    let bad = vec![
        item("BC-ORDER-250-1971", "OAK-CH-01", 2),
        item("BC-ORDER-250-1972", "NO-SUCH-SKU", 1),
    ];
    let message = permanent(composite(&c, order_composite(bad.clone())).await);
    assert!(
        message.contains(
            "200 OK: subrequest `refOrderItems_0` (PATCH /services/data/v60.0/composite/sobjects/OrderItem/External_Id__c) answered 200 OK, all rolled back: `OrderItems.records[1]` (External_Id__c = BC-ORDER-250-1972): "
        ),
        "{message}"
    );
    // Per-record errors spell the code `statusCode`.
    assert!(
        message.contains(r#""statusCode":"INVALID_FIELD""#),
        "{message}"
    );
    assert!(message.contains("NO-SUCH-SKU"), "{message}");
    // The rollback echo of the others is not the cause.
    assert!(!message.contains("PROCESSING_HALTED"), "{message}");
    assert!(
        !message.contains("ALL_OR_NONE_OPERATION_ROLLED_BACK"),
        "{message}"
    );
    assert!(!message.contains("records[0]"), "{message}");
    let calls = sf.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, 200, "the failure is inside a 200");
    assert_eq!(
        calls[0].body["compositeRequest"].as_array().unwrap().len(),
        2
    );
    // All or none: the Order and the good item were rolled back.
    assert!(sf.records("Order").is_empty());
    assert!(sf.records("OrderItem").is_empty());

    // Over an Order that exists, a bad item also undoes the Order's update.
    composite(
        &c,
        order_composite(vec![item("BC-ORDER-250-1971", "OAK-CH-01", 2)]),
    )
    .await
    .unwrap();
    let mut update = order_composite(bad);
    update["Description"] = json!("second");
    let message = permanent(composite(&c, update).await);
    assert!(
        message.contains("`refOrderItems_0`") && message.contains("`OrderItems.records[1]`"),
        "{message}"
    );
    let orders = sf.records("Order");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["Description"], "first");
    assert_eq!(sf.records("OrderItem").len(), 1);
}

#[tokio::test]
async fn a_composite_upserts_250_items_in_two_collections_and_a_redelivery_creates_nothing_new() {
    let sf = org_with_entries().await;
    let c = connector(&sf);
    let items: Vec<Value> = (0..250)
        .map(|i| item(&format!("BC-ORDER-250-{i}"), "OAK-CH-01", i + 1))
        .collect();
    let first = composite(&c, order_composite(items.clone())).await.unwrap();
    let orders = sf.records("Order");
    assert_eq!(orders.len(), 1);
    let order_id = orders[0]["Id"].clone();
    assert_eq!(first.remote_id.as_deref(), order_id.as_str());
    let stored = sf.records("OrderItem");
    assert_eq!(stored.len(), 250);
    assert!(stored.iter().all(|i| i["OrderId"] == order_id));
    assert_eq!(
        sf.find("OrderItem", "External_Id__c", "BC-ORDER-250-249")[0]["Quantity"],
        250
    );

    // One call: the Order, then the items in chunks of 200.
    let calls = sf.calls();
    assert_eq!(calls.len(), 1);
    let subs = calls[0].body["compositeRequest"].as_array().unwrap();
    let shape: Vec<(&str, &str, usize)> = subs
        .iter()
        .map(|s| {
            (
                s["referenceId"].as_str().unwrap(),
                s["url"].as_str().unwrap(),
                s["body"]["records"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    let collection = data_path("composite/sobjects/OrderItem/External_Id__c");
    let parent = data_path("sobjects/Order/External_Id__c/BC-ORDER-250");
    assert_eq!(
        shape,
        [
            ("refParent", parent.as_str(), 0),
            ("refOrderItems_0", collection.as_str(), 200),
            ("refOrderItems_1", collection.as_str(), 50),
        ]
    );
    assert_eq!(
        subs[2]["body"]["records"][0]["External_Id__c"],
        "BC-ORDER-250-200"
    );
    let results = first.body["compositeResponse"].as_array().unwrap();
    assert_eq!(created(&results[1]), [true; 200]);
    assert_eq!(created(&results[2]), [true; 50]);

    // Redelivered: the same 250 items updated, none created.
    let again = composite(&c, order_composite(items)).await.unwrap();
    assert_eq!(again.remote_id.as_deref(), order_id.as_str());
    let results = again.body["compositeResponse"].as_array().unwrap();
    assert_eq!(results[0]["httpStatusCode"], 200);
    assert_eq!(created(&results[1]), [false; 200]);
    assert_eq!(created(&results[2]), [false; 50]);
    assert_eq!(sf.records("Order").len(), 1);
    assert_eq!(sf.records("OrderItem"), stored);
}

#[tokio::test]
async fn a_bad_item_in_the_second_collection_is_named_by_its_place_in_the_order() {
    let sf = org_with_entries().await;
    let c = connector(&sf);
    let mut items: Vec<Value> = (0..250)
        .map(|i| item(&format!("BC-ORDER-250-{i}"), "OAK-CH-01", 1))
        .collect();
    items[230] = item("BC-ORDER-250-230", "NO-SUCH-SKU", 1);
    let message = permanent(composite(&c, order_composite(items)).await);
    assert!(
        message.contains("subrequest `refOrderItems_1`")
            && message.contains("`OrderItems.records[230]` (External_Id__c = BC-ORDER-250-230)")
            && message.contains("NO-SUCH-SKU"),
        "{message}"
    );
    // The first chunk and the Order went back with it.
    assert!(sf.records("Order").is_empty());
    assert!(sf.records("OrderItem").is_empty());
}

#[tokio::test]
async fn a_composite_over_a_thousand_items_is_refused_before_any_call() {
    let sf = org_with_entries().await;
    let c = connector(&sf);
    let items = (0..1001)
        .map(|i| item(&format!("BC-ORDER-250-{i}"), "OAK-CH-01", 1))
        .collect();
    let message = permanent(composite(&c, order_composite(items)).await);
    assert!(
        message.contains("1001 children need 6 collection subrequests"),
        "{message}"
    );
    assert!(message.contains("allows 5"), "{message}");
    assert!(message.contains("at most 1000 children"), "{message}");
    assert!(sf.calls().is_empty());
    assert_eq!(sf.token_requests(), 0);
}

#[tokio::test]
async fn a_composite_payload_without_the_child_spec_names_the_missing_field() {
    let sf = org_with_entries().await;
    let c = connector(&sf);
    let mut payload = order_composite(vec![item("I1", "OAK-CH-01", 1)]);
    payload["OrderItems"]
        .as_object_mut()
        .unwrap()
        .remove("parent");
    let message = permanent(composite(&c, payload).await);
    assert!(message.contains("`OrderItems.parent`"), "{message}");
    assert!(sf.calls().is_empty());
}

#[tokio::test]
async fn a_composite_goes_through_the_token_renewal_and_the_limit_like_any_call() {
    let sf = org_with_entries().await;
    let c = connector(&sf);
    let payload = order_composite(vec![item("BC-ORDER-250-1971", "OAK-CH-01", 2)]);
    // The org's allowance is used up: the whole call answers 403 REQUEST_LIMIT_EXCEEDED.
    sf.limit_exceeded(1);
    let (message, _) = retryable(composite(&c, payload.clone()).await);
    assert!(
        message.contains("403") && message.contains("REQUEST_LIMIT_EXCEEDED"),
        "{message}"
    );
    // A token that expired meanwhile: one renewal, one replay.
    sf.expire_token();
    let reply = composite(&c, payload).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(sf.token_requests(), 2);
    let statuses: Vec<u16> = sf.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![403, 401, 200]);
    assert_eq!(sf.records("Order").len(), 1);
    assert_eq!(sf.records("OrderItem").len(), 1);
}

/// A Salesforce stand-in on loopback whose `/composite` answers 200 with `results` inside:
/// for failures the mock org cannot be made to produce within a composite.
async fn canned_composite(results: Value) -> String {
    async fn token(axum::extract::State(base): axum::extract::State<String>) -> axum::Json<Value> {
        axum::Json(json!({"access_token": "canned-token", "instance_url": base,
                          "token_type": "Bearer", "issued_at": "1718029200000"}))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let answer = json!({"compositeResponse": results});
    let app = axum::Router::new()
        .route("/services/oauth2/token", axum::routing::post(token))
        .route(
            &format!("/services/data/{API_VERSION}/composite"),
            axum::routing::post(move || {
                let answer = answer.clone();
                async move { axum::Json(answer) }
            }),
        )
        .with_state(base.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn a_locked_row_or_the_limit_inside_a_composite_is_retryable() {
    let halted = json!([{"errorCode": "PROCESSING_HALTED",
        "message": "The transaction was rolled back since another operation in the same transaction failed."}]);
    for (status, code) in [(400, "UNABLE_TO_LOCK_ROW"), (403, "REQUEST_LIMIT_EXCEEDED")] {
        let base = canned_composite(json!([
            {"referenceId": "refParent", "httpStatusCode": status, "httpHeaders": {},
             "body": [{"errorCode": code, "message": "try later"}]},
            {"referenceId": "refOrderItems_0", "httpStatusCode": 400, "httpHeaders": {},
             "body": halted},
        ]))
        .await;
        let c = build(
            "salesforce",
            json!({
                "kind": "salesforce",
                "auth": {"oauth2": {"token_url": format!("{base}/services/oauth2/token"),
                                    "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}},
                "api_version": API_VERSION,
            }),
        );
        let payload = order_composite(vec![item("BC-ORDER-250-1971", "OAK-CH-01", 2)]);
        let (message, _) = retryable(composite(&c, payload).await);
        assert!(message.contains("subrequest `refParent`"), "{message}");
        assert!(message.contains(code), "{message}");
        assert!(
            message.contains(&format!("answered {status} ")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn other_errors_are_permanent_with_the_error_array() {
    let sf = MockSalesforce::start().await;
    let c = connector(&sf);
    let message = permanent(call(&c, "create", "Order", None, json!({"Status": "Draft"})).await);
    assert!(message.contains("400 Bad Request"), "{message}");
    assert!(
        message.contains(r#""errorCode":"REQUIRED_FIELD_MISSING""#),
        "{message}"
    );
    assert!(message.contains("AccountId"), "{message}");
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_and_the_call_replayed() {
    let sf = MockSalesforce::start().await;
    let c = connector(&sf);
    call(&c, "create", "Lead", None, lead()).await.unwrap();
    assert_eq!(sf.token_requests(), 1);
    sf.expire_token();
    let reply = call(&c, "create", "Lead", None, lead()).await.unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(sf.token_requests(), 2);
    let statuses: Vec<u16> = sf.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![201, 401, 201]);
    assert_eq!(sf.records("Lead").len(), 2);
}

#[tokio::test]
async fn a_token_refused_twice_is_permanent_without_a_loop() {
    let sf = MockSalesforce::start().await;
    sf.expire_every_token(true);
    let c = connector(&sf);
    let message = permanent(call(&c, "create", "Lead", None, lead()).await);
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("INVALID_SESSION_ID"), "{message}");
    assert_eq!(sf.token_requests(), 2);
    assert_eq!(sf.calls().len(), 2);
    assert!(sf.records("Lead").is_empty());
}

#[tokio::test]
async fn the_api_limit_is_retryable() {
    let sf = MockSalesforce::start().await;
    sf.limit_exceeded(1);
    let c = connector(&sf);
    let (message, after) = retryable(call(&c, "create", "Lead", None, lead()).await);
    assert!(message.contains("403"), "{message}");
    assert!(message.contains("REQUEST_LIMIT_EXCEEDED"), "{message}");
    assert_eq!(after, None);
    // The limit lifted: the next attempt goes through.
    call(&c, "create", "Lead", None, lead()).await.unwrap();
}

#[tokio::test]
async fn a_locked_row_is_retryable() {
    let sf = MockSalesforce::start().await;
    sf.lock_row(1);
    let c = connector(&sf);
    let (message, _) = retryable(call(&c, "create", "Lead", None, lead()).await);
    assert!(message.contains("400"), "{message}");
    assert!(message.contains("UNABLE_TO_LOCK_ROW"), "{message}");
}

#[tokio::test]
async fn server_errors_and_429_are_retryable() {
    let sf = MockSalesforce::start().await;
    let c = connector(&sf);
    for status in [503, 500] {
        sf.server_errors(1, status);
        let (message, after) = retryable(call(&c, "create", "Lead", None, lead()).await);
        assert!(message.contains(&status.to_string()), "{message}");
        assert_eq!(after, None);
    }
    sf.rate_limited(1, 5);
    let (message, after) = retryable(call(&c, "create", "Lead", None, lead()).await);
    assert!(message.contains("429"), "{message}");
    assert_eq!(after, Some(Duration::from_secs(5)));
    assert!(sf.records("Lead").is_empty());
}

#[tokio::test]
async fn the_instance_url_of_the_token_answer_wins() {
    let sf = MockSalesforce::start().await;
    // A configured instance nobody listens on: only the token answer's instance works.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for instance in [Some(format!("http://{closed}")), None] {
        let c = connector_at(&sf, instance, CLIENT_SECRET);
        let reply = call(&c, "create", "Lead", None, lead()).await.unwrap();
        assert_eq!(reply.status, 201);
    }
    assert_eq!(sf.records("Lead").len(), 2);
}

#[tokio::test]
async fn bad_credentials_are_permanent_and_not_shown() {
    let sf = MockSalesforce::start().await;
    let c = connector_at(&sf, None, "wrong-secret-value");
    let message = permanent(call(&c, "create", "Lead", None, lead()).await);
    assert!(message.contains("invalid_client"), "{message}");
    assert!(!message.contains("wrong-secret-value"), "{message}");
    assert!(sf.calls().is_empty());
}

/// `crossdock schema pull` through the real binary, in a project whose connector points at the
/// mock: the describe answers are written trimmed, an unknown object is reported and the others
/// kept, and `check` then finds a misspelt field against the stored file, offline.
#[tokio::test]
async fn schema_pull_stores_describe_answers_that_check_then_uses() {
    let sf = MockSalesforce::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::write(
        root.join("crossdock.yaml"),
        format!(
            "connectors:\n  crm:\n    kind: salesforce\n    instance_url: {}\n    api_version: \"60.0\"\n    auth:\n      oauth2:\n        token_url: {}\n        client_id: {CLIENT_ID}\n        client_secret: {CLIENT_SECRET}\n",
            sf.base_url(),
            sf.token_url()
        ),
    )
    .unwrap();
    let crossdock = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let root = root.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
                .arg("-C")
                .arg(&root)
                .args(&args)
                .output()
                .unwrap()
        })
    };

    // Every token refused: nothing is written, and the refusal is said.
    sf.expire_every_token(true);
    let out = crossdock(&["schema", "pull", "crm", "Order"])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains(CLIENT_SECRET), "{stderr}");
    assert!(!root.join("schemas/crm/Order.json").exists());
    sf.expire_every_token(false);

    let out = crossdock(&[
        "schema",
        "pull",
        "crm",
        "order",
        "Nope",
        "Account",
        "Lead",
        "Opportunity",
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("Nope") && stderr.contains("NOT_FOUND"),
        "{stderr}"
    );
    assert!(
        stdout.contains("wrote schemas/crm/Order.json")
            && stdout.contains("wrote schemas/crm/Account.json"),
        "{stdout}"
    );
    assert!(!root.join("schemas/crm/Nope.json").exists());
    let describes: Vec<Call> = sf
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/describe"))
        .collect();
    assert_eq!(
        describes
            .iter()
            .map(|c| (c.method.as_str(), c.path.as_str(), c.status))
            .collect::<Vec<_>>(),
        [
            // Refused, a new token, refused again: one replay, never more.
            ("GET", "/services/data/v60.0/sobjects/Order/describe", 401),
            ("GET", "/services/data/v60.0/sobjects/Order/describe", 401),
            ("GET", "/services/data/v60.0/sobjects/order/describe", 200),
            ("GET", "/services/data/v60.0/sobjects/Nope/describe", 404),
            ("GET", "/services/data/v60.0/sobjects/Account/describe", 200),
            ("GET", "/services/data/v60.0/sobjects/Lead/describe", 200),
            (
                "GET",
                "/services/data/v60.0/sobjects/Opportunity/describe",
                200
            ),
        ]
    );
    // The describe files of the repository's project and of `check`'s case in tests/cmd/ are
    // what a pull from this mock writes.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (object, committed) in [
        (
            "Order",
            "tests/cmd/target-schema.in/schemas/salesforce/Order.json",
        ),
        ("Order", "schemas/salesforce/Order.json"),
        ("Account", "schemas/salesforce/Account.json"),
        ("Lead", "schemas/salesforce/Lead.json"),
        ("Opportunity", "schemas/salesforce/Opportunity.json"),
    ] {
        let pulled = std::fs::read_to_string(root.join(format!("schemas/crm/{object}.json")));
        assert_eq!(
            pulled.unwrap(),
            std::fs::read_to_string(repo.join(committed)).unwrap(),
            "{committed} is not what `schema pull` writes"
        );
    }

    std::fs::create_dir_all(root.join("pipelines")).unwrap();
    std::fs::create_dir_all(root.join("mappings")).unwrap();
    std::fs::write(
        root.join("mappings/account.yaml"),
        "mapping: account\nfields:\n  account.External_Id__c: { template: \"C-{{ $.id }}\" }\n  account.Nmae: $.name\n",
    )
    .unwrap();
    std::fs::write(
        root.join("pipelines/accounts.yaml"),
        "pipeline: accounts\nsource:\n  webhook:\n    path: /hooks/accounts\n    verify: { scheme: shopify, secret: demo }\nsteps:\n  - map: account\n  - send: { to: crm, op: upsert, object: Account, key: External_Id__c, payload: $.account }\n",
    )
    .unwrap();
    let calls_before = sf.calls().len();
    let out = crossdock(&["check", "--format", "json"]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<(String, u64, String, Value)> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap(),
                d["message"].as_str().unwrap().to_string(),
                d["help"].clone(),
            )
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "unknown-field");
    assert_eq!(found[0].1, 4);
    assert!(found[0]
        .2
        .contains("Salesforce Account has no field `Nmae`"));
    assert!(found[0]
        .3
        .as_str()
        .unwrap()
        .starts_with("did you mean `Name`?"));
    assert_eq!(sf.calls().len(), calls_before, "check called the network");
}
