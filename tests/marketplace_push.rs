//! Marketplace pushes through the real binary: Shopee and TikTok Shop deliveries signed as the
//! vectors in `tests/fixtures/webhooks/` are, posted to `crossdock run` on loopback. A valid one
//! is accepted and reaches the connector; a replay is a duplicate; a tampered body, another
//! key and a missing header are refused with 401 before anything is stored, and so is a push
//! whose signed `timestamp` is further from the engine's clock than the webhook's tolerance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use support::engine::{eventually, json_lines, project, Engine};

const SHOPEE_KEY: &str = "shopee-partner-key";
/// What Shopee's console holds: the public URL, as a proxy in front of the engine serves it.
const SHOPEE_URL: &str = "https://erp.example.com/hooks/shopee";
const TIKTOK_SECRET: &str = "tiktok-app-secret";
const TIKTOK_APP_KEY: &str = "6abc12def34g";
const LAZADA_SECRET: &str = "lazada-app-secret";
const LAZADA_APP_KEY: &str = "123456";

fn files() -> Vec<(&'static str, String)> {
    vec![
        (
            "crossdock.yaml",
            "connectors:\n  out: { kind: file, path: out/pushes.jsonl }\n".into(),
        ),
        (
            "pipelines/shopee.yaml",
            format!(
                r#"
pipeline: shopee
source:
  webhook:
    path: /hooks/shopee
    verify: {{ scheme: shopee, secret: "${{SHOPEE_KEY}}", callback_url: "{SHOPEE_URL}" }}
steps:
  - set: {{ marketplace: shopee }}
  - send: {{ to: out, op: append }}
"#
            ),
        ),
        (
            "pipelines/tiktok.yaml",
            format!(
                r#"
pipeline: tiktok
source:
  webhook:
    path: /hooks/tiktok
    verify: {{ scheme: tiktok-shop, secret: "${{TIKTOK_SECRET}}", app_key: "{TIKTOK_APP_KEY}" }}
steps:
  - set: {{ marketplace: tiktok }}
  - send: {{ to: out, op: append }}
"#
            ),
        ),
        (
            "pipelines/lazada.yaml",
            format!(
                r#"
pipeline: lazada
source:
  webhook:
    path: /hooks/lazada
    verify: {{ scheme: lazada, secret: "{LAZADA_SECRET}", app_key: "{LAZADA_APP_KEY}", tolerance: 10m }}
steps:
  - set: {{ marketplace: lazada }}
  - send: {{ to: out, op: append }}
"#
            ),
        ),
    ]
}

/// The project of [`files`] running, with the marketplaces' secrets in its environment.
fn start() -> (tempfile::TempDir, Engine) {
    let files = files();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    let dir = project(&refs);
    let engine = Engine::start_with(
        dir.path(),
        &[("SHOPEE_KEY", SHOPEE_KEY), ("TIKTOK_SECRET", TIKTOK_SECRET)],
    );
    (dir, engine)
}

fn auth(value: &str) -> Option<(&'static str, &str)> {
    Some(("Authorization", value))
}

fn hex_hmac(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

async fn post(
    engine: &Engine,
    path: &str,
    header: Option<(&str, &str)>,
    body: &str,
) -> (u16, Value) {
    let mut request = Engine::client()
        .post(engine.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn shopee_and_tiktok_pushes_are_verified_by_the_binary() {
    let (dir, engine) = start();

    // Each push signs the time it was sent in its body: one sent now.
    let now = chrono::Utc::now().timestamp().to_string();
    let shopee_stale = r#"{"data":{"ordersn":"2208101BVF7Q4M","status":"READY_TO_SHIP","update_time":1660123127},"shop_id":1001,"code":3,"timestamp":1660123127}"#;
    let shopee_body =
        &shopee_stale.replace("\"timestamp\":1660123127", &format!("\"timestamp\":{now}"));
    let signed = hex_hmac(
        SHOPEE_KEY,
        &[SHOPEE_URL.as_bytes(), b"|", shopee_body.as_bytes()],
    );

    let (status, answer) = post(&engine, "/hooks/shopee", auth(&signed), shopee_body).await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = post(&engine, "/hooks/shopee", auth(&signed), shopee_body).await;
    assert_eq!(
        (status, &answer["duplicate"]),
        (200, &Value::Bool(true)),
        "replay: {answer}"
    );

    let tampered = shopee_body.replace("READY_TO_SHIP", "CANCELLED");
    let (status, answer) = post(&engine, "/hooks/shopee", auth(&signed), &tampered).await;
    assert_eq!(status, 401, "tampered: {answer}");
    assert_eq!(
        answer["error"],
        "signature: no offered signature matches the configured secret"
    );
    // Signed for the URL the engine itself listens on, not the registered one.
    let local = engine.url("/hooks/shopee");
    let wrong_url = hex_hmac(
        SHOPEE_KEY,
        &[local.as_bytes(), b"|", shopee_body.as_bytes()],
    );
    let (status, _) = post(&engine, "/hooks/shopee", auth(&wrong_url), shopee_body).await;
    assert_eq!(status, 401, "signed for another URL");
    let other_key = hex_hmac(
        "another-key",
        &[SHOPEE_URL.as_bytes(), b"|", shopee_body.as_bytes()],
    );
    let (status, _) = post(&engine, "/hooks/shopee", auth(&other_key), shopee_body).await;
    assert_eq!(status, 401, "wrong key");
    let (status, answer) = post(&engine, "/hooks/shopee", None, shopee_body).await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"], "signature: missing header Authorization");
    // Rightly signed, but sent long ago: a captured push replayed past the tolerance.
    let stale_signature = hex_hmac(
        SHOPEE_KEY,
        &[SHOPEE_URL.as_bytes(), b"|", shopee_stale.as_bytes()],
    );
    let (status, answer) = post(
        &engine,
        "/hooks/shopee",
        auth(&stale_signature),
        shopee_stale,
    )
    .await;
    assert_eq!(status, 401, "stale: {answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("signature: stale timestamp: ")
            && error.ends_with("s old, more than the allowed 300 s"),
        "{error}"
    );

    let tiktok_body = &r#"{"type":1,"tts_notification_id":"7327112393057371910","shop_id":"7494049642642441621","timestamp":1706237472,"data":{"order_id":"576461413038785752","order_status":"AWAITING_SHIPMENT"}}"#
        .replace("\"timestamp\":1706237472", &format!("\"timestamp\":{now}"));
    let signed = hex_hmac(
        TIKTOK_SECRET,
        &[TIKTOK_APP_KEY.as_bytes(), tiktok_body.as_bytes()],
    );
    let (status, answer) = post(&engine, "/hooks/tiktok", auth(&signed), tiktok_body).await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = post(&engine, "/hooks/tiktok", auth(&signed), tiktok_body).await;
    assert_eq!(
        (status, &answer["duplicate"]),
        (200, &Value::Bool(true)),
        "replay: {answer}"
    );
    let without_key = hex_hmac(TIKTOK_SECRET, &[tiktok_body.as_bytes()]);
    let (status, _) = post(&engine, "/hooks/tiktok", auth(&without_key), tiktok_body).await;
    assert_eq!(status, 401, "signed without the app key");
    let tampered = tiktok_body.replace("AWAITING_SHIPMENT", "CANCELLED");
    let (status, _) = post(&engine, "/hooks/tiktok", auth(&signed), &tampered).await;
    assert_eq!(status, 401, "tampered");

    // Exactly the two accepted pushes ran, each once, with what the marketplace sent.
    let out = dir.path().join("out/pushes.jsonl");
    eventually("both pushes to be sent", Duration::from_secs(10), || {
        let sent = json_lines(&out).len();
        async move { (sent >= 2).then_some(()) }
    })
    .await;
    // Long enough for a wrongly accepted third to show up too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let find = |marketplace: &str| {
        lines
            .iter()
            .find(|l| {
                l.to_string()
                    .contains(&format!("\"marketplace\":\"{marketplace}\""))
            })
            .cloned()
            .unwrap_or_else(|| panic!("no {marketplace} line in {lines:?}"))
    };
    assert!(find("shopee").to_string().contains("2208101BVF7Q4M"));
    assert!(find("tiktok").to_string().contains("576461413038785752"));
    let metrics = engine.metrics().await;
    assert!(
        metrics.contains("crossdock_webhooks_rejected_total{pipeline=\"shopee\",status=\"401\"} 5"),
        "{metrics}"
    );
}

/// The time a push signs in its body decides, with the tolerance of its webhook (5 minutes by
/// default, 10 for the Lazada pipeline here), whether it is taken: rightly signed but stale or
/// from the future, it gets the same 401 as a bad signature, and the reason says which.
#[tokio::test(flavor = "multi_thread")]
async fn pushes_outside_their_tolerance_are_refused_as_stale() {
    let (dir, engine) = start();
    let now = chrono::Utc::now().timestamp();
    let tiktok = |sent: i64, id: &str| {
        let body = format!(
            r#"{{"type":1,"tts_notification_id":"{id}","shop_id":"7494049642642441621","timestamp":{sent},"data":{{"order_id":"{id}","order_status":"AWAITING_SHIPMENT"}}}}"#
        );
        let signature = hex_hmac(TIKTOK_SECRET, &[TIKTOK_APP_KEY.as_bytes(), body.as_bytes()]);
        (body, signature)
    };
    // Lazada's time is in milliseconds.
    let lazada = |sent: i64, id: &str| {
        let body = format!(
            r#"{{"seller_id":"1234567","message_type":0,"data":{{"order_status":"unpaid","trade_order_id":"{id}"}},"timestamp":{}123,"site":"lazada_vn"}}"#,
            sent
        );
        let signature = hex_hmac(LAZADA_SECRET, &[LAZADA_APP_KEY.as_bytes(), body.as_bytes()]);
        (body, signature)
    };

    // Default tolerance: six minutes old or ahead is out, one minute old is in.
    let (body, signature) = tiktok(now - 360, "old");
    let (status, answer) = post(&engine, "/hooks/tiktok", auth(&signature), &body).await;
    assert_eq!(status, 401, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("signature: stale timestamp: ")
            && error.ends_with(" s old, more than the allowed 300 s"),
        "{error}"
    );
    let (body, signature) = tiktok(now + 360, "ahead");
    let (status, answer) = post(&engine, "/hooks/tiktok", auth(&signature), &body).await;
    assert_eq!(status, 401, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("signature: timestamp is ")
            && error.ends_with(" s in the future, more than the allowed 300 s"),
        "{error}"
    );
    let (body, signature) = tiktok(now - 60, "recent");
    let (status, answer) = post(&engine, "/hooks/tiktok", auth(&signature), &body).await;
    assert_eq!(status, 202, "{answer}");

    // `tolerance: 10m` on the Lazada webhook: eight minutes old is in, twelve is out.
    let (body, signature) = lazada(now - 480, "within");
    let (status, answer) = post(&engine, "/hooks/lazada", auth(&signature), &body).await;
    assert_eq!(status, 202, "{answer}");
    let (body, signature) = lazada(now - 720, "beyond");
    let (status, answer) = post(&engine, "/hooks/lazada", auth(&signature), &body).await;
    assert_eq!(status, 401, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.starts_with("signature: stale timestamp: ")
            && error.ends_with(" s old, more than the allowed 600 s"),
        "{error}"
    );
    // Signed, but with no time at all: malformed, refused the same way.
    let body = r#"{"seller_id":"1234567","message_type":0,"data":{"trade_order_id":"none"}}"#;
    let signature = hex_hmac(LAZADA_SECRET, &[LAZADA_APP_KEY.as_bytes(), body.as_bytes()]);
    let (status, answer) = post(&engine, "/hooks/lazada", auth(&signature), body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("signature: the body has no `timestamp`")),
        "{answer}"
    );

    // Only the two fresh pushes ran.
    let out = dir.path().join("out/pushes.jsonl");
    eventually(
        "the fresh pushes to be sent",
        Duration::from_secs(20),
        || {
            let sent = json_lines(&out).len();
            async move { (sent >= 2).then_some(()) }
        },
    )
    .await;
    engine.settled().await;
    let sent: Vec<String> = json_lines(&out).iter().map(Value::to_string).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().any(|l| l.contains("\"recent\"")), "{sent:?}");
    assert!(sent.iter().any(|l| l.contains("\"within\"")), "{sent:?}");
    let metrics = engine.metrics().await;
    for (pipeline, refused) in [("tiktok", 2), ("lazada", 2)] {
        let line = format!(
            "crossdock_webhooks_rejected_total{{pipeline=\"{pipeline}\",status=\"401\"}} {refused}"
        );
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}
