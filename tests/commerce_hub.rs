//! examples/commerce-hub through the real binary (docs/commerce-hub.md): orders polled from
//! mock SFCC, SAP Commerce, Adobe Commerce and Oracle Commerce servers (tests/support/mock_*.rs:
//! each checks tokens as its platform documents and refuses in its platform's error shape,
//! pages in its platform's style and throttles) reach an ERP on loopback in one order format;
//! an ERP price change reaches all four once each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::engine::{eventually, example_copy, Engine};
use support::marketplace::{hmac_hex, Mock};
use support::upstream::Upstream;
use support::{mock_adobe, mock_oracle, mock_sap, mock_sfcc};

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "test-erp-webhook-secret";
const ERP_TOKEN: &str = "test-erp-token";

fn sfcc_order(i: usize) -> Value {
    json!({"order_no": format!("SF{i:05}"), "status": "new", "creation_date": "2026-11-30T09:00:00.000Z",
           "currency": "USD", "order_total": 29.99 * i as f64,
           "product_items": [{"product_id": "701642811398M", "quantity": i, "base_price": 29.99}]})
}

fn sap_order(i: usize) -> Value {
    json!({"code": format!("SAP{i:05}"), "guid": format!("g-{i}"), "status": "CREATED",
           "created": "2026-11-30T10:00:00+0000",
           "totalPriceWithTax": {"currencyIso": "EUR", "value": 10.5 * i as f64},
           "entries": [{"entryNumber": 0, "quantity": i, "basePrice": {"currencyIso": "EUR", "value": 10.5},
                        "product": {"code": "3429337"}}]})
}

fn adobe_order(i: usize) -> Value {
    json!({"entity_id": i, "increment_id": format!("{i:09}"), "status": "processing",
           "created_at": "2026-11-30 11:00:00", "order_currency_code": "USD", "grand_total": 11 * i,
           "items": [{"item_id": i * 10, "sku": "24-MB01", "qty_ordered": i, "price": 11}]})
}

fn oracle_order(i: usize) -> Value {
    json!({"id": format!("o{i}"), "state": "SUBMITTED", "submittedDate": "2026-11-30T12:00:00.000Z",
           "priceInfo": {"total": 8.5 * i as f64, "currencyCode": "USD"},
           "commerceItems": [{"catRefId": "xsku2147_1", "productId": "xprod2147", "quantity": i,
                              "priceInfo": {"listPrice": 8.5}}]})
}

struct Clouds {
    sfcc: Mock,
    sap: Mock,
    adobe: Mock,
    oracle: Mock,
}

impl Clouds {
    /// The four platforms listing `n` orders each (`n[0]` SFCC, SAP, Adobe, Oracle), access
    /// tokens living `life` seconds.
    async fn start(n: [usize; 4], life: i64) -> Clouds {
        let list = |n: usize, f: fn(usize) -> Value| (1..=n).map(f).collect::<Vec<_>>();
        Clouds {
            sfcc: mock_sfcc::start(list(n[0], sfcc_order), life).await,
            sap: mock_sap::start(list(n[1], sap_order), life).await,
            adobe: mock_adobe::start(list(n[2], adobe_order), 3600).await,
            oracle: mock_oracle::start(list(n[3], oracle_order), life).await,
        }
    }

    /// The environment that points the example at the mocks and `erp`, with `secret` as every
    /// platform's client secret, integration token and application key when given.
    fn env(&self, erp: &str, secret: Option<&str>) -> Vec<(&'static str, String)> {
        let or = |right: &str| secret.unwrap_or(right).to_string();
        vec![
            ("SFCC_BASE_URL", self.sfcc.url.clone()),
            (
                "SFCC_TOKEN_URL",
                format!("{}{}", self.sfcc.url, mock_sfcc::TOKEN_PATH),
            ),
            ("SFCC_CLIENT_ID", mock_sfcc::CLIENT_ID.into()),
            ("SFCC_CLIENT_SECRET", or(mock_sfcc::CLIENT_SECRET)),
            ("SAP_BASE_URL", self.sap.url.clone()),
            ("SAP_CLIENT_ID", mock_sap::CLIENT_ID.into()),
            ("SAP_CLIENT_SECRET", or(mock_sap::CLIENT_SECRET)),
            ("ADOBE_BASE_URL", self.adobe.url.clone()),
            ("ADOBE_ACCESS_TOKEN", or(&mock_adobe::token(&self.adobe))),
            ("OCC_ADMIN_URL", self.oracle.url.clone()),
            ("OCC_APP_KEY", or(mock_oracle::APP_KEY)),
            ("ERP_BASE_URL", erp.to_string()),
            ("ERP_API_TOKEN", ERP_TOKEN.into()),
            ("ERP_WEBHOOK_SECRET", SECRET.into()),
        ]
    }
}

fn start_engine(dir: &std::path::Path, env: &[(&'static str, String)]) -> Engine {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Engine::start_with(dir, &env)
}

/// Every order of the four platforms reaches the ERP once, in one format, through each
/// platform's paging: SFCC `start`/`count` to `total` (53 orders: 50 + 3), SAP `currentPage`
/// from 0 (52: 50 + 2, each whole order fetched by its code), Adobe
/// `searchCriteria[currentPage]` from 1 to `total_count` (100: two full pages; Adobe would
/// answer a third page with the second again), Oracle `offset`/`limit` (51). SFCC's, SAP's and
/// Oracle's tokens live 2 seconds and are fetched again as they run out; nothing is refused.
#[tokio::test(flavor = "multi_thread")]
async fn orders_from_all_four_platforms_reach_the_erp_in_one_format() {
    let clouds = Clouds::start([53, 52, 100, 51], 2).await;
    let erp = Upstream::start().await;
    let dir = example_copy("commerce-hub");
    let engine = start_engine(dir.path(), &clouds.env(&erp.url, None));
    let channels = |received: &[support::upstream::Received]| {
        let mut by_channel: BTreeMap<String, usize> = BTreeMap::new();
        for r in received {
            *by_channel
                .entry(r.body["channel"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
        by_channel
    };
    let deadline = std::time::Instant::now() + WAIT;
    while erp.received().len() < 256 {
        assert!(
            std::time::Instant::now() < deadline,
            "orders in the ERP: {:?}\n{}",
            channels(&erp.received()),
            engine.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = erp.received();
    let by_channel = channels(&received);
    for r in &received {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/orders"));
        assert_eq!(
            r.headers["authorization"],
            format!("Bearer {ERP_TOKEN}").as_str()
        );
    }
    assert_eq!(
        by_channel,
        BTreeMap::from([
            ("adobe".to_string(), 100),
            ("oracle".to_string(), 51),
            ("sap".to_string(), 52),
            ("sfcc".to_string(), 53)
        ])
    );
    let order = |no: &str| {
        received
            .iter()
            .find(|r| r.body["order_no"] == no)
            .map(|r| r.body.clone())
            .unwrap()
    };
    assert_eq!(
        order("SAP00007"),
        json!({"channel": "sap", "order_no": "SAP00007", "status": "created",
               "placed_at": "2026-11-30T10:00:00+0000", "currency": "EUR", "total": 73.5,
               "lines": [{"sku": "3429337", "quantity": 7, "unit_price": 10.5}]})
    );
    assert_eq!(order("SF00053")["lines"][0]["quantity"], 53);
    assert_eq!(order("000000100")["total"], 1100);
    assert_eq!(order("o51")["lines"][0]["sku"], "xsku2147_1");

    // Each platform was asked in its own paging style, one page after another.
    let sfcc: Vec<(Value, Value)> = clouds
        .sfcc
        .calls(mock_sfcc::ORDERS_PATH)
        .iter()
        .map(|s| (s.json()["start"].clone(), s.json()["count"].clone()))
        .collect();
    assert_eq!(sfcc, [(json!(0), json!(50)), (json!(50), json!(50))]);
    let pages = |mock: &Mock, path: &str, param: &str| -> Vec<String> {
        mock.calls(path)
            .iter()
            .map(|s| s.param(param).to_string())
            .collect()
    };
    assert_eq!(
        pages(&clouds.sap, mock_sap::ORDERS_PATH, "currentPage"),
        ["0", "1"]
    );
    assert_eq!(
        pages(
            &clouds.adobe,
            mock_adobe::ORDERS_PATH,
            "searchCriteria[currentPage]"
        ),
        ["1", "2"]
    );
    assert_eq!(
        pages(&clouds.oracle, mock_oracle::ORDERS_PATH, "offset"),
        ["0", "50"]
    );
    // The 52 whole SAP orders took more than one 2-second token, fetched again before it ran
    // out; no platform refused a call.
    assert!(clouds.sap.shop.lock().unwrap().tokens.issued() >= 2);
    for mock in [&clouds.sfcc, &clouds.sap, &clouds.adobe, &clouds.oracle] {
        assert_eq!(mock.refused(), Vec::<String>::new());
    }
    assert_eq!(erp.received().len(), 256, "no order twice");
    drop(engine);
}

/// With a wrong client secret, integration token or application key, each platform refuses the
/// engine's calls in its own documented way and no order reaches the ERP; and each mock
/// refuses a wrong or expired token and a call over its throttle in its platform's shape.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_and_expired_credentials_are_refused_as_each_platform_refuses_them() {
    let clouds = Clouds::start([1, 1, 1, 1], 3600).await;
    let erp = Upstream::start().await;
    let dir = example_copy("commerce-hub");
    let engine = start_engine(dir.path(), &clouds.env(&erp.url, Some("wrong-secret")));
    eventually("a refusal from every platform", WAIT, || async {
        [&clouds.sfcc, &clouds.sap, &clouds.adobe, &clouds.oracle]
            .iter()
            .all(|m| !m.refused().is_empty())
            .then_some(())
    })
    .await;
    assert_eq!(clouds.sfcc.refused()[0], "invalid_client");
    assert_eq!(clouds.sap.refused()[0], "invalid_client");
    assert_eq!(
        clouds.adobe.refused()[0],
        "The consumer isn't authorized to access Magento_Sales::actions_view."
    );
    assert_eq!(
        clouds.oracle.refused()[0],
        "000002: Invalid application key"
    );
    drop(engine);
    assert!(erp.received().is_empty());

    let client = reqwest::Client::new();
    let get = |url: String, token: &str| {
        client
            .get(url)
            .bearer_auth(token)
            .query(&[("searchCriteria[pageSize]", "10"), ("pageSize", "10")])
    };
    let answer = |r: reqwest::Response| async move {
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    // SFCC: OCAPI faults.
    let sfcc = |token: &str| {
        client
            .post(format!("{}{}", clouds.sfcc.url, mock_sfcc::ORDERS_PATH))
            .bearer_auth(token)
            .json(&json!({"query": {"match_all_query": {}}, "count": 10}))
    };
    let (status, body) = answer(sfcc("made-up").send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["fault"]["type"], "InvalidAccessTokenException");
    let token = clouds.sfcc.shop.lock().unwrap().tokens.issue().0;
    let (status, body) = answer(sfcc(&token).send().await.unwrap()).await;
    assert_eq!((status, body["total"].clone()), (200, json!(1)));
    clouds.sfcc.shop.lock().unwrap().tokens.expires_at = 0;
    let (status, body) = answer(sfcc(&token).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["fault"]["type"], "ExpiredTokenException");
    // SAP: OCC error lists.
    let sap_url = format!("{}{}", clouds.sap.url, mock_sap::ORDERS_PATH);
    let token = clouds.sap.shop.lock().unwrap().tokens.issue().0;
    clouds.sap.shop.lock().unwrap().tokens.expires_at = 0;
    let (status, body) = answer(get(sap_url.clone(), &token).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["type"], "InvalidTokenError");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("Access token expired"));
    // Adobe: a message with parameters.
    let adobe_url = format!("{}{}", clouds.adobe.url, mock_adobe::ORDERS_PATH);
    let token = mock_adobe::token(&clouds.adobe);
    let (status, _) = answer(get(adobe_url.clone(), &token).send().await.unwrap()).await;
    assert_eq!(status, 200);
    clouds.adobe.shop.lock().unwrap().tokens.expires_at = 0;
    let (status, body) = answer(get(adobe_url.clone(), &token).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(
        body["parameters"]["resources"],
        "Magento_Sales::actions_view"
    );
    // Oracle: errorCode and status.
    let oracle_url = format!("{}{}", clouds.oracle.url, mock_oracle::ORDERS_PATH);
    let token = clouds.oracle.shop.lock().unwrap().tokens.issue().0;
    clouds.oracle.shop.lock().unwrap().tokens.expires_at = 0;
    let (status, body) = answer(get(oracle_url.clone(), &token).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "The access token has expired");
    // Over the throttle: 429 from each, before anything else is looked at.
    for (mock, url) in [
        (&clouds.sap, sap_url),
        (&clouds.adobe, adobe_url),
        (&clouds.oracle, oracle_url),
    ] {
        mock.shop.lock().unwrap().throttle.per_second = Some(1);
        let _ = get(url.clone(), "any").send().await.unwrap();
        let (status, _) = answer(get(url, "any").send().await.unwrap()).await;
        assert_eq!(status, 429);
    }
    clouds.sfcc.shop.lock().unwrap().throttle.per_second = Some(1);
    let _ = sfcc("any").send().await.unwrap();
    let (status, body) = answer(sfcc("any").send().await.unwrap()).await;
    assert_eq!(status, 429);
    assert_eq!(body["fault"]["type"], "QuotaExceededException");
}

/// A signed ERP price change sets Adobe Commerce's base price, Oracle Commerce's list price,
/// SFCC's price table in its price book (OCAPI Data API) and SAP Commerce's price row
/// (Integration API), each platform's token checked. Oracle answers the first call as
/// throttled: the event is retried and only the calls from Oracle's on are sent again. An
/// unsigned change is refused; a product SFCC does not have is a dead letter naming SFCC's
/// fault, and SAP is not called for it.
#[tokio::test(flavor = "multi_thread")]
async fn a_price_change_reaches_all_four_clouds_once_each() {
    let clouds = Clouds::start([0, 0, 0, 0], 3600).await;
    clouds.oracle.shop.lock().unwrap().busy_writes = 1;
    let erp = Upstream::start().await;
    let dir = example_copy("commerce-hub");
    let engine = start_engine(dir.path(), &clouds.env(&erp.url, None));
    let change = r#"{"change_id": "PC-1", "sku": "24-MB01", "price": 34.5, "currency": "USD"}"#;
    let post = |sign: String| {
        let engine = &engine;
        async move {
            engine
                .post_with("/hooks/erp/prices", change, ("X-ERP-Signature", &sign))
                .await
        }
    };
    assert_eq!(post("00".repeat(32)).await, 401);
    assert_eq!(post(hmac_hex(SECRET, change.as_bytes())).await, 202);
    let price = |mock: &Mock| mock.shop.lock().unwrap().stock.get("24-MB01").cloned();
    let all = [&clouds.adobe, &clouds.oracle, &clouds.sfcc, &clouds.sap];
    eventually("the price on all four platforms", WAIT, || async {
        all.iter().all(|mock| price(mock).is_some()).then_some(())
    })
    .await;
    for mock in all {
        assert_eq!(price(mock), Some(json!(34.5)));
    }
    let sfcc_path = format!(
        "{}{}/price_tables/24-MB01",
        mock_sfcc::PRICE_BOOKS_PATH,
        mock_sfcc::PRICE_BOOK
    );
    assert_eq!(clouds.sfcc.calls(&sfcc_path).len(), 1);
    assert_eq!(
        clouds.sfcc.shop.lock().unwrap().received,
        vec![json!({"product_id": "24-MB01", "amounts": [{"quantity": 1, "amount": 34.5}]})]
    );
    assert_eq!(clouds.sap.calls(mock_sap::PRICE_ROWS_PATH).len(), 1);
    assert_eq!(
        clouds.sap.shop.lock().unwrap().received,
        vec![json!({"product": {"code": "24-MB01", "catalogVersion": {
                        "catalog": {"id": "electronicsProductCatalog"}, "version": "Staged"}},
                    "currency": {"isocode": "USD"}, "unit": {"code": "pieces"},
                    "price": 34.5, "net": false})]
    );
    assert_eq!(
        clouds.adobe.shop.lock().unwrap().received,
        vec![json!({"prices": [{"sku": "24-MB01", "price": 34.5, "store_id": 0}]})]
    );
    assert_eq!(clouds.adobe.calls(mock_adobe::PRICES_PATH).len(), 1);
    let oracle = clouds.oracle.calls("/ccadmin/v1/products/24-MB01");
    assert_eq!(oracle.len(), 2, "throttled once, then sent again");
    assert_eq!(
        oracle[0].refused.as_deref(),
        Some("100429: Too many requests")
    );

    // A negative price: Adobe answers 200 with the failure, which the connector reads as a
    // permanent one; the event becomes a dead letter before Oracle is called.
    let bad = r#"{"change_id": "PC-2", "sku": "24-MB01", "price": -1, "currency": "USD"}"#;
    let dlq = dead_letters_after(&engine, bad, 1).await;
    assert!(
        dlq.to_string().contains("Invalid attribute"),
        "the dead letter names Adobe's failure: {dlq}"
    );
    assert_eq!(price(&clouds.adobe), Some(json!(34.5)));
    assert_eq!(clouds.oracle.calls("/ccadmin/v1/products/24-MB01").len(), 2);

    // A product SFCC's catalog does not have: Adobe and Oracle take it, SFCC answers 404 with
    // its fault, which is permanent; SAP is never called for it.
    let unknown = r#"{"change_id": "PC-3", "sku": "NO-SUCH-SKU", "price": 5, "currency": "USD"}"#;
    let dlq = dead_letters_after(&engine, unknown, 2).await;
    assert!(
        dlq.to_string().contains("ProductNotFoundException"),
        "the dead letter names SFCC's fault: {dlq}"
    );
    let sfcc_unknown = format!(
        "{}{}/price_tables/NO-SUCH-SKU",
        mock_sfcc::PRICE_BOOKS_PATH,
        mock_sfcc::PRICE_BOOK
    );
    assert_eq!(clouds.sfcc.calls(&sfcc_unknown).len(), 1, "not retried");
    assert!(clouds
        .oracle
        .shop
        .lock()
        .unwrap()
        .stock
        .contains_key("NO-SUCH-SKU"));
    assert_eq!(clouds.sap.calls(mock_sap::PRICE_ROWS_PATH).len(), 1);
    drop(engine);
}

/// Posts `change` signed as the ERP signs it, and waits for the dead letters to number
/// `total`: their list.
async fn dead_letters_after(engine: &Engine, change: &str, total: u64) -> Value {
    let signature = hmac_hex(SECRET, change.as_bytes());
    let status = engine
        .post_with("/hooks/erp/prices", change, ("X-ERP-Signature", &signature))
        .await;
    assert_eq!(status, 202);
    eventually("the dead letter", WAIT, || async {
        let (_, dlq) = engine.admin("/api/dlq").await;
        (dlq["total"] == total).then_some(dlq)
    })
    .await
}

/// Sends `request`: its status and what its JSON answer holds at `pointer`.
async fn sent(request: reqwest::RequestBuilder, pointer: &str) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body.pointer(pointer).cloned().unwrap_or(Value::Null),
    )
}

/// The price writes are refused as SFCC and SAP refuse them: another price book, a product
/// the catalog does not have, a missing token, a price that is not a number.
#[tokio::test(flavor = "multi_thread")]
async fn sfcc_and_sap_refuse_price_writes_as_documented() {
    let clouds = Clouds::start([0, 0, 0, 0], 3600).await;
    let client = Engine::client();
    let table = json!({"product_id": "24-MB01", "amounts": [{"quantity": 1, "amount": 9.5}]});
    let sfcc_put = |book: &str, product: &str, token: &str| {
        let path = format!(
            "{}{book}/price_tables/{product}",
            mock_sfcc::PRICE_BOOKS_PATH
        );
        client
            .put(format!("{}{path}", clouds.sfcc.url))
            .bearer_auth(token)
            .json(&table)
    };
    let token = clouds.sfcc.shop.lock().unwrap().tokens.issue().0;
    let book = mock_sfcc::PRICE_BOOK;
    for (book, product, token, refused) in [
        (
            book,
            "24-MB01",
            "made-up",
            (401, "InvalidAccessTokenException"),
        ),
        (
            "eur-list-prices",
            "24-MB01",
            &token,
            (404, "PriceBookNotFoundException"),
        ),
        (book, "NOPE", &token, (404, "ProductNotFoundException")),
    ] {
        let answer = sent(sfcc_put(book, product, token), "/fault/type").await;
        assert_eq!(answer, (refused.0, json!(refused.1)), "{book} {product}");
    }
    let answer = sent(sfcc_put(book, "24-MB01", &token), "/amounts/0/amount").await;
    assert_eq!(answer, (200, json!(9.5)));

    let row = |code: &str, price: Value| {
        json!({"product": {"code": code, "catalogVersion": {"catalog": {"id": "electronicsProductCatalog"}, "version": "Staged"}},
               "currency": {"isocode": "EUR"}, "unit": {"code": "pieces"}, "price": price, "net": false})
    };
    let token = clouds.sap.shop.lock().unwrap().tokens.issue().0;
    for (body, token, pointer, answer) in [
        (
            row("3429337", json!(1)),
            "made-up",
            "/errors/0/type",
            (401, json!("InvalidTokenError")),
        ),
        (
            row("NOPE", json!(1)),
            &token,
            "/error/code",
            (400, json!("missing_nav_property")),
        ),
        (
            row("3429337", json!("ten")),
            &token,
            "/error/code",
            (400, json!("invalid_property_value")),
        ),
        (
            row("3429337", json!(10.85)),
            &token,
            "/d/price",
            (201, json!(10.85)),
        ),
    ] {
        let request = client
            .post(format!("{}{}", clouds.sap.url, mock_sap::PRICE_ROWS_PATH))
            .bearer_auth(token)
            .json(&body);
        assert_eq!(sent(request, pointer).await, answer, "{body}");
    }
    assert_eq!(
        clouds.sap.shop.lock().unwrap().stock.get("3429337"),
        Some(&json!(10.85))
    );
}
