//! Shopee, TikTok Shop and Lazada through the real binary: `crossdock run` on a temporary
//! project polls each mock platform (tests/support/mock_*.rs, servers that check signatures,
//! timestamps and tokens as the platforms document) with signed calls, follows its pagination,
//! rotates its tokens, keeps to its rate, and reads its 200-with-error answers as failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::connector;
use support::engine::{copy_dir, eventually, json_lines, project, Engine};
use support::{mock_lazada, mock_shopee, mock_tiktok};

const WAIT: Duration = Duration::from_secs(20);

/// The `shopee` connector as docs/marketplaces.md writes it, against `url`, with `key`.
fn shopee_connector(url: &str, key: &str) -> String {
    format!(
        r#"
    kind: http
    base_url: {url}
    values: {{ partner_id: "{partner}", shop_id: "{shop}" }}
    sign:
      algorithm: hmac-sha256
      key: {key}
      string: "{{partner_id}}{{path}}{{timestamp}}{{access_token}}{{shop_id}}"
      into: {{ query: sign }}
      query: {{ partner_id: "{{partner_id}}", timestamp: "{{timestamp}}", access_token: "{{access_token}}", shop_id: "{{shop_id}}" }}
    auth:
      refresh:
        path: /api/v2/auth/access_token/get
        refresh_token: {refresh}
        sign:
          string: "{{partner_id}}{{path}}{{timestamp}}"
          query: {{ partner_id: "{{partner_id}}", timestamp: "{{timestamp}}" }}
        body: {{ refresh_token: "{{refresh_token}}", partner_id: "{{partner_id}}", shop_id: "{{shop_id}}" }}
        answer: {{ access_token: $.access_token, refresh_token: $.refresh_token, expires_in: $.expire_in }}
    body_errors: {{ code: $.error, message: $.message, retryable: [error_busy] }}
    operations:
      orders: {{ method: GET, path: /api/v2/order/get_order_list }}
      update_stock: {{ method: POST, path: /api/v2/product/update_stock }}
"#,
        partner = mock_shopee::PARTNER_ID,
        shop = mock_shopee::SHOP_ID,
        refresh = mock_shopee::FIRST_REFRESH,
    )
}

fn poll_pipeline(name: &str, connector: &str, source: &str) -> String {
    format!(
        "pipeline: {name}\nsource:\n  poll:\n    connector: {connector}\n    op: orders\n    every: 300ms\n{source}\nsteps:\n  - send: {{ to: erp, op: append, payload: $ }}\n"
    )
}

/// A project of `yaml` and one poll pipeline `name` over `connector`, started: its folder, the
/// file the orders go to, and the engine.
fn start_poll(
    yaml: &str,
    name: &str,
    connector: &str,
    source: &str,
) -> (tempfile::TempDir, std::path::PathBuf, Engine) {
    let dir = project(&[
        ("crossdock.yaml", yaml),
        (
            &format!("pipelines/{connector}.yaml"),
            &poll_pipeline(name, connector, source),
        ),
    ]);
    let out = dir.path().join("out/orders.jsonl");
    let engine = Engine::start(dir.path());
    (dir, out, engine)
}

fn ids(path: &std::path::Path, field: &str) -> Vec<String> {
    let mut ids: Vec<String> = json_lines(path)
        .iter()
        .map(|l| l["payload"][field].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

/// Shopee: signed polls follow `cursor` while `more`; the access token expires every 2 s and
/// each refresh rotates the refresh token; after a kill -9 and a restart the engine goes on
/// with the newest refresh token from its state (the mock refuses any other).
#[tokio::test(flavor = "multi_thread")]
async fn shopee_polls_signed_pages_and_rotates_tokens_across_a_kill() {
    let orders = (1..=5)
        .map(|i| json!({"order_sn": format!("SN{i}"), "order_status": "READY_TO_SHIP"}))
        .collect();
    let mock = mock_shopee::start(orders, 2).await;
    let yaml = format!(
        "state: {{ path: state }}\nconnectors:\n  shopee:{}  erp: {{ kind: file, path: out/orders.jsonl }}\n",
        shopee_connector(&mock.url, mock_shopee::PARTNER_KEY)
    );
    let source = "    params: { time_range_field: update_time, page_size: 2 }\n    items: $.response.order_list\n    next: { from: $.response.next_cursor, param: cursor, more: $.response.more }";
    let (dir, out, engine) = start_poll(&yaml, "shopee-orders", "shopee", source);
    eventually("the five orders", WAIT, || async {
        (ids(&out, "order_sn").len() == 5).then_some(())
    })
    .await;
    assert_eq!(ids(&out, "order_sn"), ["SN1", "SN2", "SN3", "SN4", "SN5"]);
    // One poll is three pages: cursors "", 2, 4.
    let cursors: Vec<String> = mock
        .calls("/api/v2/order/get_order_list")
        .iter()
        .take(3)
        .map(|s| s.param("cursor").to_string())
        .collect();
    assert_eq!(cursors, ["", "2", "4"]);
    // A second rotation, and a call made with its access token: the engine keeps a pair
    // before it uses it, so from here it must survive the kill. (A kill between Shopee's
    // answer and that write loses the pair: no client can close that window.)
    eventually("a call with a second rotated token", WAIT, || async {
        let access = {
            let shop = mock.shop.lock().unwrap();
            (shop.tokens.refreshes.len() >= 2).then(|| shop.tokens.access.clone())
        }?;
        mock.calls("/api/v2/order/get_order_list")
            .iter()
            .any(|s| s.param("access_token") == access)
            .then_some(())
    })
    .await;
    engine.kill9();
    let newest = mock.shop.lock().unwrap().tokens.refresh.clone();
    let before = mock.shop.lock().unwrap().tokens.refreshes.len();
    // The stored access token expires while the engine is down.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let engine = Engine::start(dir.path());
    eventually("a refresh after the restart", WAIT, || async {
        (mock.shop.lock().unwrap().tokens.refreshes.len() > before).then_some(())
    })
    .await;
    let refreshes = mock.shop.lock().unwrap().tokens.refreshes.clone();
    assert_eq!(refreshes[before], (newest, true), "{refreshes:?}");
    assert!(refreshes.iter().all(|(_, ok)| *ok), "{refreshes:?}");
    assert_eq!(refreshes[0].0, mock_shopee::FIRST_REFRESH);
    // Polls after the restart are signed and accepted; nothing was refused at any point.
    let polls = mock.calls("/api/v2/order/get_order_list").len();
    eventually("a poll after the restart", WAIT, || async {
        (mock.calls("/api/v2/order/get_order_list").len() > polls + 3).then_some(())
    })
    .await;
    assert_eq!(mock.refused(), Vec::<String>::new());
    assert_eq!(ids(&out, "order_sn").len(), 5, "repeats are duplicates");
    drop(engine);
}

/// Shopee refuses a call signed with another partner key (403 `error_sign`), and a send with
/// the right key reaches it with its JSON body.
#[tokio::test(flavor = "multi_thread")]
async fn shopee_refuses_a_wrong_key_and_takes_a_signed_send() {
    let mock = mock_shopee::start(Vec::new(), 3600).await;
    let config = |key: &str| yaml_to_json(&shopee_connector(&mock.url, key));
    let good = connector::build("shopee", config(mock_shopee::PARTNER_KEY));
    let stock =
        json!({"item_id": 800123, "stock_list": [{"model_id": 0, "seller_stock": [{"stock": 7}]}]});
    let reply = good
        .call(crossdock::connectors::Request {
            connector: "shopee",
            op: "update_stock",
            object: None,
            key: None,
            payload: &stock,
            idempotency_key: None,
        })
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(mock.shop.lock().unwrap().received, vec![stock.clone()]);

    let wrong = connector::build("shopee2", config("not-the-partner-key"));
    let message = connector::permanent(
        wrong
            .call(crossdock::connectors::Request {
                connector: "shopee2",
                op: "update_stock",
                object: None,
                key: None,
                payload: &stock,
                idempotency_key: None,
            })
            .await,
    );
    assert!(message.contains("error_sign"), "{message}");
    assert!(message.contains("renewing the access token"), "{message}");
    assert!(message.contains("authorise the shop again"), "{message}");
    assert!(!message.contains("not-the-partner-key"), "{message}");

    // A request without a timestamp, or with a stale one, is refused as Shopee documents.
    let client = reqwest::Client::new();
    for ts in [None, Some(chrono::Utc::now().timestamp() - 600)] {
        let mut q = vec![("partner_id", mock_shopee::PARTNER_ID.to_string())];
        if let Some(ts) = ts {
            let base = format!(
                "{}/api/v2/auth/access_token/get{ts}",
                mock_shopee::PARTNER_ID
            );
            q.push(("timestamp", ts.to_string()));
            q.push((
                "sign",
                support::marketplace::hmac_hex(mock_shopee::PARTNER_KEY, base.as_bytes()),
            ));
        }
        let answer: Value = client
            .post(format!("{}/api/v2/auth/access_token/get", mock.url))
            .query(&q)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["error"], "error_param", "{answer}");
    }
}

/// TikTok Shop: a signed POST search (body in the signature, token in `x-tts-access-token`,
/// `page_size` and `page_token` in the query) pages with `next_page_token`; a wrong app
/// secret is an HTTP 200 with `code` 106001, which `body_errors` makes a permanent failure,
/// and the throttle code a retryable one.
#[tokio::test(flavor = "multi_thread")]
async fn tiktok_signed_search_pages_and_body_codes_are_failures() {
    let orders = (1..=5)
        .map(|i| json!({"id": format!("TT{i}"), "status": "AWAITING_SHIPMENT"}))
        .collect();
    let mock = mock_tiktok::start(orders, 3600).await;
    let connector_yaml = |secret: &str, refresh: &str| {
        format!(
            r#"
    kind: http
    base_url: {url}
    values: {{ app_key: "{key}", shop_cipher: "{cipher}" }}
    sign:
      algorithm: hmac-sha256
      key: {secret}
      string: "{{key}}{{path}}{{query}}{{body}}{{key}}"
      into: {{ query: sign }}
      exclude: [access_token]
      query: {{ app_key: "{{app_key}}", timestamp: "{{timestamp}}", shop_cipher: "{{shop_cipher}}" }}
      headers: {{ x-tts-access-token: "{{access_token}}" }}
    auth:
      refresh:
        base_url: {url}
        path: /api/v2/token/refresh
        method: GET
        refresh_token: {refresh}
        query: {{ app_key: "{{app_key}}", app_secret: "{secret}", refresh_token: "{{refresh_token}}", grant_type: refresh_token }}
        answer: {{ access_token: $.data.access_token, refresh_token: $.data.refresh_token, expires_at: $.data.access_token_expire_in }}
    body_errors: {{ code: $.code, ok: [0], message: $.message, retryable: [{throttled}], renew: [105002] }}
    operations:
      orders: {{ method: POST, path: /order/202309/orders/search, query: [page_size, page_token] }}
"#,
            url = mock.url,
            key = mock_tiktok::APP_KEY,
            cipher = mock_tiktok::SHOP_CIPHER,
            throttled = mock_tiktok::THROTTLED,
        )
    };
    let yaml = format!(
        "state: {{ path: state }}\nconnectors:\n  tiktok:{}  erp: {{ kind: file, path: out/orders.jsonl }}\n",
        connector_yaml(mock_tiktok::APP_SECRET, mock_tiktok::FIRST_REFRESH)
    );
    let source = "    params: { page_size: 2, order_status: AWAITING_SHIPMENT }\n    items: $.data.orders\n    next: { from: $.data.next_page_token, param: page_token }";
    let (_dir, out, engine) = start_poll(&yaml, "tiktok-orders", "tiktok", source);
    eventually("the five orders", WAIT, || async {
        (ids(&out, "id").len() == 5).then_some(())
    })
    .await;
    let searches = mock.calls("/order/202309/orders/search");
    assert_eq!(
        searches[0].json(),
        json!({"order_status": "AWAITING_SHIPMENT"})
    );
    let tokens: Vec<&str> = searches
        .iter()
        .take(3)
        .map(|s| s.param("page_token"))
        .collect();
    assert_eq!(tokens, ["", "2", "4"]);
    assert_eq!(mock.refused(), Vec::<String>::new());
    drop(engine);

    // The engine rotated the pair: a connector built anew starts from the newest refresh token.
    let newest = mock.shop.lock().unwrap().tokens.refresh.clone();
    let wrong = connector::build(
        "tiktok",
        yaml_to_json(&connector_yaml("wrong-secret", &newest)),
    );
    // The token endpoint takes the secret as a parameter: with the wrong one it refuses too.
    let payload = json!({"page_size": 2});
    let request = crossdock::connectors::Request {
        connector: "tiktok",
        op: "orders",
        object: None,
        key: None,
        payload: &payload,
        idempotency_key: None,
    };
    let message = connector::permanent(wrong.call(request).await);
    assert!(message.contains("36004004"), "{message}");
    assert!(!message.contains("wrong-secret"), "{message}");

    let good = connector::build(
        "tiktok",
        yaml_to_json(&connector_yaml(mock_tiktok::APP_SECRET, &newest)),
    );
    good.call(request).await.unwrap();
    // Revoked early (the seller withdrew it): TikTok answers 105002, the pair is renewed and
    // the call replayed.
    let renewals = mock.shop.lock().unwrap().tokens.refreshes.len();
    mock.shop.lock().unwrap().tokens.access = "revoked".into();
    good.call(request).await.unwrap();
    let refreshes = mock.shop.lock().unwrap().tokens.refreshes.clone();
    assert_eq!(refreshes.len(), renewals + 1, "{refreshes:?}");
    assert!(refreshes.iter().all(|(_, ok)| *ok), "{refreshes:?}");
    mock.shop.lock().unwrap().throttle.per_second = Some(0);
    let (message, _) = connector::retryable(good.call(request).await);
    assert!(message.contains("36009004"), "{message}");
}

/// Lazada: signed polls (uppercase hex, milliseconds) page by `offset` until `countTotal`,
/// at most `rate` calls a second whatever the pages; the throttle code is retryable.
#[tokio::test(flavor = "multi_thread")]
async fn lazada_pages_by_offset_within_the_rate() {
    let orders = (1..=7)
        .map(|i| json!({"order_id": format!("LZ{i}")}))
        .collect();
    let mock = mock_lazada::start(orders, 3600).await;
    let yaml = format!(
        r#"state: {{ path: state }}
connectors:
  lazada:
    kind: http
    base_url: {url}
    values: {{ app_key: "{key}" }}
    rate: {{ requests: 4, per: 1s }}
    sign:
      algorithm: hmac-sha256
      key: {secret}
      string: "{{path}}{{query}}"
      encoding: hex-upper
      timestamp: milliseconds
      into: {{ query: sign }}
      query: {{ app_key: "{{app_key}}", timestamp: "{{timestamp}}", sign_method: sha256, access_token: "{{access_token}}" }}
    auth:
      refresh:
        path: /auth/token/refresh
        method: GET
        refresh_token: {refresh}
        sign: {{ query: {{ app_key: "{{app_key}}", timestamp: "{{timestamp}}", sign_method: sha256 }} }}
        query: {{ refresh_token: "{{refresh_token}}" }}
        answer: {{ access_token: $.access_token, refresh_token: $.refresh_token, expires_in: $.expires_in }}
    body_errors: {{ code: $.code, ok: ["0"], message: $.message, retryable: [ApiCallLimit] }}
    operations:
      orders: {{ method: GET, path: /orders/get }}
  erp: {{ kind: file, path: out/orders.jsonl }}
"#,
        url = mock.url,
        key = mock_lazada::APP_KEY,
        secret = mock_lazada::APP_SECRET,
        refresh = mock_lazada::FIRST_REFRESH,
    );
    let source = "    params: { created_after: \"2026-01-01T00:00:00+08:00\" }\n    items: $.data.orders\n    offset: { param: offset, size: 2, size_param: limit, total: $.data.countTotal }";
    let (_dir, out, engine) = start_poll(&yaml, "lazada-orders", "lazada", source);
    eventually("the seven orders", WAIT, || async {
        (ids(&out, "order_id").len() == 7).then_some(())
    })
    .await;
    let gets = mock.calls("/rest/orders/get");
    let offsets: Vec<&str> = gets.iter().take(4).map(|s| s.param("offset")).collect();
    assert_eq!(offsets, ["0", "2", "4", "6"]);
    assert!(gets.iter().all(|s| s.param("limit") == "2"));
    // 4 a second: any five consecutive calls span at least a second (slots 250 ms apart).
    for w in gets.windows(5) {
        let span = w[4].at.duration_since(w[0].at);
        assert!(span >= Duration::from_millis(950), "{span:?}");
    }
    assert_eq!(mock.refused(), Vec::<String>::new());
    drop(engine);
}

/// A connector's YAML (as under `connectors.<name>:`) read by the engine's own YAML reader,
/// for building the connector directly.
fn yaml_to_json(yaml: &str) -> Value {
    let text = format!("connectors:\n  c:{yaml}");
    let (doc, _) = crossdock::config::yaml::parse(&text, &|_| None).unwrap();
    doc.value["connectors"]["c"].clone()
}

/// Every connector docs/marketplaces.md writes out passes `crossdock check`, with its
/// `${VAR}`s set: the page cannot drift from what the engine accepts.
#[test]
fn the_connectors_in_the_docs_pass_check() {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/marketplaces.md"),
    )
    .unwrap();
    let blocks: Vec<&str> = page
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.starts_with("connectors:"))
        .collect();
    assert_eq!(blocks.len(), 3);
    for block in blocks {
        let dir = project(&[("crossdock.yaml", block)]);
        let vars: Vec<(String, String)> = block
            .split("${")
            .skip(1)
            .filter_map(|rest| rest.split('}').next())
            .map(|name| (name.to_string(), "1234".to_string()))
            .collect();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
            .arg("check")
            .arg(dir.path())
            .envs(vars)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{block}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// An ERP on loopback that takes `POST /orders` behind its bearer token and keeps the bodies.
async fn erp(token: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let orders: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let kept = orders.clone();
    let app = axum::Router::new().route(
        "/orders",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let kept = kept.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                if auth != Some(&format!("Bearer {token}")) {
                    return (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"error": "token"})),
                    );
                }
                kept.lock().unwrap().push(body.0);
                (StatusCode::CREATED, axum::Json(json!({"id": "erp-1"})))
            }
        }),
    );
    (support::marketplace::serve(app).await, orders)
}

/// The shipped examples/marketplace-polls project, copied to a temporary folder and run with its
/// variables pointing at the three mock platforms and a mock ERP: every order of every
/// platform reaches the ERP in the one format, through signed, paged, token-rotating calls,
/// and a signed Tokopedia push joins them. All four draw on one stock: the units are reserved
/// before the ERP is called, and the order that finds the last unit gone gets its shortfall.
#[tokio::test(flavor = "multi_thread")]
async fn the_marketplace_polls_example_runs_against_the_mocks() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/marketplace-polls");
    let fixture = |rel: &str| -> Value {
        serde_json::from_slice(&std::fs::read(example.join("tests/fixtures").join(rel)).unwrap())
            .unwrap()
    };
    let detail = fixture("shopee/order-detail.json")["response"]["order_list"][0].clone();
    let shopee_orders: Vec<Value> = (0..3)
        .map(|i| {
            let mut o = detail.clone();
            o["order_sn"] = json!(format!("SN-{i}"));
            o
        })
        .collect();
    let tiktok_orders: Vec<Value> = (0..3)
        .map(|i| {
            let mut o = fixture("tiktok/order.json");
            o["id"] = json!(format!("TT-{i}"));
            o
        })
        .collect();
    let items = fixture("lazada/order-items.json")["data"].clone();
    let lazada_orders: Vec<Value> = (0..3)
        .map(|i| {
            let mut o = fixture("lazada/order.json");
            o["order_id"] = json!(2000 + i);
            o["order_number"] = json!(format!("LZ-{i}"));
            o["items"] = items.clone();
            o
        })
        .collect();
    let shopee = mock_shopee::start(shopee_orders, 3600).await;
    let tiktok = mock_tiktok::start(tiktok_orders, 3600).await;
    let lazada = mock_lazada::start(lazada_orders, 3600).await;
    let (erp_url, received) = erp("erp-token").await;

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example, dir.path());
    let _ = std::fs::remove_dir_all(dir.path().join(".crossdock"));
    let env = [
        ("SHOPEE_API_URL", shopee.url.clone()),
        ("SHOPEE_PARTNER_ID", mock_shopee::PARTNER_ID.into()),
        ("SHOPEE_SHOP_ID", mock_shopee::SHOP_ID.into()),
        ("SHOPEE_PARTNER_KEY", mock_shopee::PARTNER_KEY.into()),
        ("SHOPEE_REFRESH_TOKEN", mock_shopee::FIRST_REFRESH.into()),
        ("TIKTOK_API_URL", tiktok.url.clone()),
        ("TIKTOK_AUTH_URL", tiktok.url.clone()),
        ("TIKTOK_APP_KEY", mock_tiktok::APP_KEY.into()),
        ("TIKTOK_APP_SECRET", mock_tiktok::APP_SECRET.into()),
        ("TIKTOK_SHOP_CIPHER", mock_tiktok::SHOP_CIPHER.into()),
        ("TIKTOK_REFRESH_TOKEN", mock_tiktok::FIRST_REFRESH.into()),
        ("LAZADA_API_URL", lazada.url.clone()),
        ("LAZADA_AUTH_URL", lazada.url.clone()),
        ("LAZADA_APP_KEY", mock_lazada::APP_KEY.into()),
        ("LAZADA_APP_SECRET", mock_lazada::APP_SECRET.into()),
        ("LAZADA_REFRESH_TOKEN", mock_lazada::FIRST_REFRESH.into()),
        ("ERP_BASE_URL", erp_url),
        ("ERP_API_TOKEN", "erp-token".into()),
        ("TOKOPEDIA_WEBHOOK_SECRET", "tokopedia-secret".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Nine polled orders and the first push want 17 MUG-BLUE and 10 TEE-M.
    for (sku, on_hand) in [("MUG-BLUE", "100"), ("TEE-M", "10")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
            .args(["state", "stock", sku, "--set", on_hand, "-C"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let engine = Engine::start_with(dir.path(), &env);
    eventually("nine orders in the ERP", WAIT, || async {
        (received.lock().unwrap().len() >= 9).then_some(())
    })
    .await;
    let push = fixture("tokopedia/order-notification.json");
    let post_push = |order_id: u64, secret: &'static str| {
        let mut body = push.clone();
        body["order_id"] = json!(order_id);
        let body = body.to_string();
        let signature = support::marketplace::hmac_hex(secret, body.as_bytes());
        let engine = &engine;
        async move {
            engine
                .post_with(
                    "/hooks/tokopedia/orders",
                    &body,
                    ("Authorization-Hmac", &signature),
                )
                .await
        }
    };
    assert_eq!(post_push(700, "tokopedia-secret").await, 202);
    assert_eq!(post_push(701, "another-secret").await, 401);
    let got = eventually("the push in the ERP", WAIT, || async {
        let got = received.lock().unwrap().clone();
        (got.len() >= 10).then_some(got)
    })
    .await;
    // TEE-M is now gone: the next order is sent with what is missing, and holds nothing.
    assert_eq!(post_push(702, "tokopedia-secret").await, 202);
    let late = eventually("the second push in the ERP", WAIT, || async {
        let got = received.lock().unwrap().clone();
        got.into_iter().find(|o| o["order_no"] == "702")
    })
    .await;
    assert_eq!(
        late["stock"],
        json!({"reserved": false, "shortfalls": [{"sku": "TEE-M", "requested": 1, "available": 0}]})
    );
    for order in &got {
        assert_eq!(order["stock"], json!({"reserved": true}), "{order}");
    }
    let mut numbers: Vec<String> = got
        .iter()
        .map(|o| {
            format!(
                "{}:{}",
                o["channel"].as_str().unwrap(),
                o["order_no"].as_str().unwrap()
            )
        })
        .collect();
    numbers.sort();
    assert_eq!(
        numbers,
        [
            "lazada:LZ-0",
            "lazada:LZ-1",
            "lazada:LZ-2",
            "shopee:SN-0",
            "shopee:SN-1",
            "shopee:SN-2",
            "tiktok:TT-0",
            "tiktok:TT-1",
            "tiktok:TT-2",
            "tokopedia:700"
        ]
    );
    let shopee_order = got.iter().find(|o| o["order_no"] == "SN-0").unwrap();
    assert_eq!(
        shopee_order["lines"][0],
        json!({"sku": "MUG-BLUE", "quantity": 2, "unit_price": 12.9})
    );
    let lazada_order = got.iter().find(|o| o["order_no"] == "LZ-1").unwrap();
    assert_eq!(lazada_order["lines"].as_array().unwrap().len(), 2);
    for refused in [shopee.refused(), tiktok.refused(), lazada.refused()] {
        assert_eq!(refused, Vec::<String>::new());
    }
    drop(engine);
}

/// The TikTok Shop and Lazada mocks refuse what their platforms refuse: a signature made
/// with another secret, a stale timestamp, an unknown access token. Requests are made by
/// hand here, each signed as the platform documents, changing one thing at a time.
#[tokio::test(flavor = "multi_thread")]
async fn tiktok_and_lazada_refuse_bad_signatures_stale_times_and_unknown_tokens() {
    use support::marketplace::hmac_hex;
    let client = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp();

    let tiktok = mock_tiktok::start(Vec::new(), 3600).await;
    tiktok
        .shop
        .lock()
        .unwrap()
        .tokens
        .refresh(mock_tiktok::FIRST_REFRESH);
    let live = tiktok.shop.lock().unwrap().tokens.access.clone();
    let path = "/order/202309/orders/search";
    let search = |ts: i64, secret: &'static str, token: String| {
        let body = br#"{"order_status":"UNPAID"}"#.to_vec();
        let query: Vec<(String, String)> = vec![
            ("app_key".into(), mock_tiktok::APP_KEY.into()),
            ("page_size".into(), "10".into()),
            ("shop_cipher".into(), mock_tiktok::SHOP_CIPHER.into()),
            ("timestamp".into(), ts.to_string()),
        ];
        let mut text = format!("{secret}{path}").into_bytes();
        for (k, v) in &query {
            text.extend_from_slice(format!("{k}{v}").as_bytes());
        }
        text.extend_from_slice(&body);
        text.extend_from_slice(secret.as_bytes());
        let sign = hmac_hex(secret, &text);
        let client = client.clone();
        let url = format!("{}{path}", tiktok.url);
        async move {
            let answer: Value = client
                .post(url)
                .query(&query)
                .query(&[("sign", sign)])
                .header("x-tts-access-token", token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["code"].as_i64().unwrap()
        }
    };
    assert_eq!(search(now, mock_tiktok::APP_SECRET, live.clone()).await, 0);
    assert_eq!(search(now, "another-secret", live.clone()).await, 106001);
    assert_eq!(
        search(now - 600, mock_tiktok::APP_SECRET, live.clone()).await,
        106002
    );
    assert_eq!(
        search(now, mock_tiktok::APP_SECRET, "stolen".into()).await,
        105002
    );
    // The mock's own check agrees with the hand-made signature.
    let seen = tiktok.calls(path);
    assert_eq!(seen[0].param("sign"), mock_tiktok::expected_sign(&seen[0]));

    let lazada = mock_lazada::start(Vec::new(), 3600).await;
    lazada
        .shop
        .lock()
        .unwrap()
        .tokens
        .refresh(mock_lazada::FIRST_REFRESH);
    let live = lazada.shop.lock().unwrap().tokens.access.clone();
    let orders = |ms: i64, secret: &'static str, token: String| {
        let mut query: Vec<(String, String)> = vec![
            ("access_token".into(), token),
            ("app_key".into(), mock_lazada::APP_KEY.into()),
            ("limit".into(), "10".into()),
            ("offset".into(), "0".into()),
            ("sign_method".into(), "sha256".into()),
            ("timestamp".into(), ms.to_string()),
        ];
        let text: String = std::iter::once("/orders/get".to_string())
            .chain(query.iter().map(|(k, v)| format!("{k}{v}")))
            .collect();
        query.push((
            "sign".into(),
            hmac_hex(secret, text.as_bytes()).to_uppercase(),
        ));
        let client = client.clone();
        let url = format!("{}/orders/get", lazada.url);
        async move {
            let answer: Value = client
                .get(url)
                .query(&query)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["code"].as_str().unwrap().to_string()
        }
    };
    let ms = now * 1000;
    assert_eq!(orders(ms, mock_lazada::APP_SECRET, live.clone()).await, "0");
    assert_eq!(
        orders(ms, "another-secret", live.clone()).await,
        "IncompleteSignature"
    );
    assert_eq!(
        orders(ms - 600_000, mock_lazada::APP_SECRET, live.clone()).await,
        "InvalidTimestamp"
    );
    assert_eq!(
        orders(ms, mock_lazada::APP_SECRET, "stolen".into()).await,
        "IllegalAccessToken"
    );
}
