//! Many stores, one pipeline, through the real binary: two shops post Shopee pushes to one
//! pipeline at `/hooks/shopee/{shop}`; each is verified with its own partner key and reaches an
//! upstream on loopback with its own token and shop id, which the upstream checks. An unknown
//! shop is refused at the door; a shop added to `tenants/shops.yaml` is live after the reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use support::engine::{eventually, project, write_files, Engine};

/// Each shop's token at the ERP, by shop id: what the upstream accepts.
const TOKENS: [(&str, &str); 3] = [
    ("1001", "erp-token-acme"),
    ("2002", "erp-token-globex"),
    ("3003", "erp-token-initech"),
];

/// An ERP on loopback that takes an order for a shop only with that shop's bearer token, and
/// answers 401 otherwise (a permanent failure for the engine, so a mix-up is dead-lettered, not
/// delivered).
#[derive(Clone, Default)]
struct Erp {
    orders: Arc<Mutex<Vec<(String, Value)>>>,
    refused: Arc<Mutex<usize>>,
}

impl Erp {
    /// The orders taken, once there are at least `n`.
    async fn orders_after(&self, n: usize) -> Vec<(String, Value)> {
        eventually("the orders at the ERP", Duration::from_secs(10), || {
            let orders = self.orders.lock().unwrap().clone();
            async move { (orders.len() >= n).then_some(orders) }
        })
        .await
    }
}

async fn take_order(
    State(erp): State<Erp>,
    Path(shop): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let expected = TOKENS
        .iter()
        .find(|(id, _)| *id == shop)
        .map(|(_, t)| format!("Bearer {t}"));
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    if expected.is_none() || given != expected.as_deref() {
        *erp.refused.lock().unwrap() += 1;
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "error": "invalid token for this shop" })),
        );
    }
    let order: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    erp.orders.lock().unwrap().push((shop, order));
    (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "id": "erp-1" })),
    )
}

async fn start_erp() -> (Erp, String) {
    let erp = Erp::default();
    let app = axum::Router::new()
        .route("/shops/{shop}/orders", axum::routing::post(take_order))
        .with_state(erp.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (erp, url)
}

const TWO_SHOPS: &str = r#"
acme:   { partner_key: "${ACME_PARTNER_KEY}", shop_id: 1001, token: "${ACME_ERP_TOKEN}" }
globex: { partner_key: "${GLOBEX_PARTNER_KEY}", shop_id: 2002, token: "${GLOBEX_ERP_TOKEN}" }
"#;

const THREE_SHOPS: &str = r#"
acme:    { partner_key: "${ACME_PARTNER_KEY}", shop_id: 1001, token: "${ACME_ERP_TOKEN}" }
globex:  { partner_key: "${GLOBEX_PARTNER_KEY}", shop_id: 2002, token: "${GLOBEX_ERP_TOKEN}" }
initech: { partner_key: "initech-key", shop_id: 3003, token: "erp-token-initech" }
"#;

const PIPELINE: &str = r#"
pipeline: shopee-orders
source:
  webhook:
    path: /hooks/shopee/{shop}
    tenants: { list: shops, param: shop }
    verify:
      scheme: shopee
      secret: "{tenant.partner_key}"
      callback_url: "https://erp.example.com/hooks/shopee/{tenant.id}"
steps:
  - set:
      shop: { expr: "event.params.shop" }
      tenant: { expr: "event.tenant" }
  - send: { to: erp, op: push_order }
on_error:
  retry: { attempts: 1 }
"#;

fn crossdock_yaml(erp: &str) -> String {
    format!(
        r#"
server: {{ reload_debounce: 50ms }}
connectors:
  erp:
    kind: http
    tenants: shops
    base_url: {erp}
    headers: {{ Authorization: "Bearer {{tenant.token}}" }}
    operations:
      push_order: {{ method: POST, path: "/shops/{{tenant.shop_id}}/orders" }}
"#
    )
}

fn sign(key: &str, shop: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("https://erp.example.com/hooks/shopee/{shop}|{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn push(engine: &Engine, shop: &str, key: &str, body: &str) -> (u16, Value) {
    let response = Engine::client()
        .post(engine.url(&format!("/hooks/shopee/{shop}")))
        .header("authorization", sign(key, shop, body))
        // A sender cannot choose the tenant the engine records.
        .header("x-crossdock-tenant", "globex")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A Shopee order push sent now (Shopee signs the time in the body).
fn order(ordersn: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    format!(
        r#"{{"code":3,"shop_id":1,"timestamp":{now},"data":{{"ordersn":"{ordersn}","status":"READY_TO_SHIP"}}}}"#
    )
}

/// The engine on a project of the ERP connector, `shops` and one pipeline, with the shops'
/// secrets in its environment.
fn serve(erp_url: &str, shops: &str, pipeline: &str) -> (tempfile::TempDir, Engine) {
    let dir = project(&[
        ("crossdock.yaml", &crossdock_yaml(erp_url)),
        ("tenants/shops.yaml", shops),
        ("pipelines/p.yaml", pipeline),
    ]);
    let engine = Engine::start_with(
        dir.path(),
        &[
            ("ACME_PARTNER_KEY", "acme-key"),
            ("GLOBEX_PARTNER_KEY", "globex-key"),
            ("ACME_ERP_TOKEN", "erp-token-acme"),
            ("GLOBEX_ERP_TOKEN", "erp-token-globex"),
        ],
    );
    (dir, engine)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_shops_one_pipeline_each_with_its_own_credentials() {
    let (erp, erp_url) = start_erp().await;
    let (dir, engine) = serve(&erp_url, TWO_SHOPS, PIPELINE);

    assert_eq!(
        push(&engine, "acme", "acme-key", &order("A-1")).await.0,
        202
    );
    assert_eq!(
        push(&engine, "globex", "globex-key", &order("G-1")).await.0,
        202
    );
    // One shop's key does not sign for another.
    let (status, answer) = push(&engine, "acme", "globex-key", &order("A-2")).await;
    assert_eq!(status, 401, "{answer}");
    // A shop that is not in the list is refused at the door, whatever it signs.
    let (status, answer) = push(&engine, "initech", "initech-key", &order("I-1")).await;
    assert_eq!(status, 404);
    assert_eq!(
        answer["error"],
        "no tenant `initech` in the tenants list `shops` of pipeline `shopee-orders`"
    );
    let (status, _) = push(&engine, "a%20b", "acme-key", &order("X")).await;
    assert_eq!(status, 404);

    let orders = erp.orders_after(2).await;
    let mut got: Vec<(String, String, String)> = orders
        .iter()
        .cloned()
        .map(|(shop, o)| {
            (
                shop,
                o["data"]["ordersn"].as_str().unwrap().to_owned(),
                o["tenant"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("1001".into(), "A-1".into(), "acme".into()),
            ("2002".into(), "G-1".into(), "globex".into())
        ]
    );
    assert_eq!(
        *erp.refused.lock().unwrap(),
        0,
        "a shop reached the ERP with another's token"
    );
    assert!(orders.iter().all(|(_, o)| o["shop"] == o["tenant"]));

    // A third shop, added to the list, goes live with the reload.
    let (_, before) = engine.admin("/api/pipelines").await;
    write_files(dir.path(), &[("tenants/shops.yaml", THREE_SHOPS)]);
    eventually(
        "the new list to go live",
        Duration::from_secs(10),
        || async {
            let (_, now) = engine.admin("/api/pipelines").await;
            (now["version"] != before["version"] && now["last_reload_error"].is_null())
                .then_some(())
        },
    )
    .await;
    let (status, answer) = push(&engine, "initech", "initech-key", &order("I-2")).await;
    assert_eq!(status, 202, "{answer}");
    let orders = erp.orders_after(3).await;
    assert!(orders
        .iter()
        .any(|(shop, o)| shop == "3003" && o["tenant"] == "initech"));

    let metrics = engine.metrics().await;
    for line in [
        r#"crossdock_tenant_webhooks_total{pipeline="shopee-orders",tenant="acme",outcome="accepted"} 1"#,
        r#"crossdock_tenant_webhooks_total{pipeline="shopee-orders",tenant="acme",outcome="refused"} 1"#,
        r#"crossdock_tenant_webhooks_total{pipeline="shopee-orders",tenant="initech",outcome="accepted"} 1"#,
        r#"crossdock_webhooks_rejected_total{pipeline="shopee-orders",status="404"} 1"#,
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
}

/// The ERP of the shipped example (examples/marketplace-pushes):
/// `PUT /companies/{company}/orders/{ref}` with the company's own demo token.
async fn take_company_order(
    State(erp): State<Erp>,
    Path((company, order_ref)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let expected = match company.as_str() {
        "ACME" => "Bearer demo-acme-erp-token",
        "GLOBEX" => "Bearer demo-globex-erp-token",
        _ => "",
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected) {
        *erp.refused.lock().unwrap() += 1;
        return (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({})));
    }
    let mut order: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    order["path_ref"] = Value::String(order_ref);
    erp.orders.lock().unwrap().push((company, order));
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "id": "erp-order" })),
    )
}

/// Copies the shipped example into a temporary folder (its state is written there, not into
/// the repository).
fn example_copy() -> tempfile::TempDir {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/marketplace-pushes");
    let dir = tempfile::tempdir().unwrap();
    let mut stack = vec![root.clone()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let to = dir.path().join(path.strip_prefix(&root).unwrap());
            if path.is_dir() {
                std::fs::create_dir_all(&to).unwrap();
                stack.push(path);
            } else {
                std::fs::copy(&path, &to).unwrap();
            }
        }
    }
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_marketplace_pushes_example_takes_two_shops_orders_into_the_erp() {
    let erp = Erp::default();
    let app = axum::Router::new()
        .route(
            "/companies/{company}/orders/{order_ref}",
            axum::routing::put(take_company_order),
        )
        .with_state(erp.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let erp_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = example_copy();
    let engine = Engine::start_with(dir.path(), &[("ERP_URL", erp_url.as_str())]);
    // The example's pushes, sent now: each signs the time it was sent in its body.
    let now = chrono::Utc::now().timestamp().to_string();
    let fixture = |name: &str| {
        let text = std::fs::read_to_string(dir.path().join("tests/fixtures").join(name)).unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        let sent = body["timestamp"].to_string();
        text.trim().replace(
            &format!("\"timestamp\":{sent}"),
            &format!("\"timestamp\":{now}"),
        )
    };
    let hex_hmac = |key: &str, message: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let post = |path: &str, signature: String, body: String| {
        let url = engine.url(path);
        async move {
            let r = Engine::client()
                .post(url)
                .header("authorization", signature)
                .body(body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };

    let shopee = fixture("shopee-order-status.json");
    let signature = hex_hmac(
        "demo-acme-shopee-key",
        &format!("https://erp-bridge.example.com/hooks/shopee/acme|{shopee}"),
    );
    assert_eq!(
        post("/hooks/shopee/acme", signature, shopee.clone()).await,
        202
    );
    let tiktok = fixture("tiktok-order-status.json");
    let signature = hex_hmac(
        "demo-globex-app-secret",
        &format!("demo-globex-app-key{tiktok}"),
    );
    assert_eq!(
        post("/hooks/tiktok/globex", signature.clone(), tiktok.clone()).await,
        202
    );
    // Globex's TikTok signature does not pass as acme's.
    assert_eq!(post("/hooks/tiktok/acme", signature, tiktok).await, 401);

    let mut got: Vec<(String, String, String)> = erp
        .orders_after(2)
        .await
        .into_iter()
        .map(|(company, o)| {
            (
                company,
                o["path_ref"].as_str().unwrap().to_owned(),
                o["shop"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("ACME".into(), "SHOPEE-2208101BVF7Q4M".into(), "acme".into()),
            (
                "GLOBEX".into(),
                "TIKTOK-576461413038785752".into(),
                "globex".into()
            ),
        ]
    );
    assert_eq!(*erp.refused.lock().unwrap(), 0);
}

/// One app for every shop: Shopee pushes all of them to one URL, signed with the app's one
/// partner key, and names the shop in the body's `shop_id`, which picks the tenant.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_field_chooses_the_tenant_when_one_url_serves_every_shop() {
    let (erp, erp_url) = start_erp().await;
    let pipeline = r#"
pipeline: shopee-app
source:
  webhook:
    path: /hooks/shopee
    tenants: { list: shops, from: $.shop_id, match: shop_id }
    verify: { scheme: shopee, secret: "app-partner-key", callback_url: "https://erp.example.com/hooks/shopee" }
steps:
  - set: { tenant: { expr: "event.tenant" } }
  - send: { to: erp, op: push_order }
on_error:
  retry: { attempts: 1 }
"#;
    let (_dir, engine) = serve(&erp_url, THREE_SHOPS, pipeline);
    let post = |body: String| {
        let url = engine.url("/hooks/shopee");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"app-partner-key").unwrap();
        mac.update(format!("https://erp.example.com/hooks/shopee|{body}").as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        async move {
            let r = Engine::client()
                .post(url)
                .header("authorization", signature)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let body = |shop_id: u32, ordersn: &str| {
        let now = chrono::Utc::now().timestamp();
        format!(
            r#"{{"code":3,"shop_id":{shop_id},"timestamp":{now},"data":{{"ordersn":"{ordersn}"}}}}"#
        )
    };
    assert_eq!(post(body(2002, "G-7")).await.0, 202);
    assert_eq!(post(body(1001, "A-7")).await.0, 202);
    let (status, answer) = post(body(9999, "X-7")).await;
    assert_eq!(status, 404);
    assert_eq!(
        answer["error"],
        "no tenant for `9999` at body field `$.shop_id` in the tenants list `shops` of pipeline `shopee-app`"
    );

    let orders = erp.orders_after(2).await;
    let mut got: Vec<(String, String)> = orders
        .into_iter()
        .map(|(shop, o)| (shop, o["tenant"].as_str().unwrap().to_owned()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("1001".into(), "acme".into()),
            ("2002".into(), "globex".into())
        ]
    );
    assert_eq!(*erp.refused.lock().unwrap(), 0);
}
