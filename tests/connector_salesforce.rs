//! The `salesforce` connector against a mock Salesforce server on loopback that answers as the
//! real REST API does (tests/support/mock_salesforce.rs, after conformance/salesforce-rest.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use crossdock::connectors::{BuildContext, CallError, Connector, ConnectorConfig, Reply, Request};
use serde_json::{json, Value};
use support::mock_salesforce::{MockSalesforce, API_VERSION, CLIENT_ID, CLIENT_SECRET};

fn build(config: Value) -> Arc<dyn Connector> {
    let config: ConnectorConfig = serde_json::from_value(config).unwrap();
    let cx = BuildContext {
        root: std::env::temp_dir(),
        http: reqwest::Client::new(),
    };
    config.as_kind().build("salesforce", &cx).unwrap()
}

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
    build(config)
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
    })
    .await
}

fn permanent(result: Result<Reply, CallError>) -> String {
    match result {
        Err(CallError::Permanent { message }) => message,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

fn retryable(result: Result<Reply, CallError>) -> (String, Option<Duration>) {
    match result {
        Err(CallError::Retryable {
            message,
            retry_after,
        }) => (message, retry_after),
        other => panic!("expected a retryable error, got {other:?}"),
    }
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
