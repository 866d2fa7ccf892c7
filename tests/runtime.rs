//! `crossdock run` end to end: the real binary on a temporary project, webhooks over real HTTP,
//! real sled in the temporary folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::engine::{eventually, json_lines, project, project_of, Engine, ADMIN_TOKEN};

const PROJECT: &str = r#"
server: { max_body: 64KB }
connectors:
  out: { kind: file, path: out/actions.jsonl }
"#;

const ECHO: &str = r#"
pipeline: echo
source:
  webhook: { path: /hooks/echo }
trigger:
  when: '"n" in record'
steps:
  - set: { seen: true }
  - send: { to: out, op: append }
"#;

/// A pipeline whose script fails on odd numbers: a rule error, which no retry can fix.
const PICKY: &str = r#"
pipeline: picky
source:
  webhook: { path: /hooks/picky }
steps:
  - script: picky
  - send: { to: out, op: append }
on_error:
  retry: { attempts: 3, initial: 50ms }
"#;

const PICKY_RHAI: &str = r#"
if record.n % 2 == 1 { throw "odd numbers are refused: " + record.n; }
record
"#;

fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("crossdock.yaml", PROJECT),
        ("pipelines/echo.yaml", ECHO),
        ("pipelines/picky.yaml", PICKY),
        ("scripts/picky.rhai", PICKY_RHAI),
    ]
}

#[tokio::test]
async fn accepted_events_are_processed_once_with_a_trail() {
    let dir = project(&files());
    let engine = Engine::start(dir.path());
    let mut ids = Vec::new();
    for n in 0..20 {
        let (status, answer) = engine.post("/hooks/echo", &format!(r#"{{"n":{n}}}"#)).await;
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["event_id"].as_str().unwrap().to_string());
    }
    // The same body again is the same delivery: 200, the first id, nothing processed twice.
    let (status, answer) = engine.post("/hooks/echo", r#"{"n":0}"#).await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"event_id": ids[0], "duplicate": true}));

    let out = dir.path().join("out/actions.jsonl");
    let lines = eventually("20 actions", Duration::from_secs(20), || async {
        let lines = json_lines(&out);
        (lines.len() >= 20).then_some(lines)
    })
    .await;
    let ns: BTreeSet<i64> = lines
        .iter()
        .map(|l| l["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, (0..20).collect());
    assert!(lines
        .iter()
        .all(|l| l["payload"]["seen"] == json!(true) && l["connector"] == "out"));

    let (_, pipelines) = engine.admin("/api/pipelines").await;
    let version = pipelines["version"].as_str().unwrap().to_string();
    let trail = eventually("the trail", Duration::from_secs(5), || async {
        let (status, t) = engine.admin(&format!("/api/events/{}", ids[3])).await;
        (status == 200 && t["status"] == "processed").then_some(t)
    })
    .await;
    assert_eq!(trail["pipeline"], "echo");
    assert_eq!(trail["version"], version.as_str());
    assert_eq!(trail["attempts"], 1);
    assert_eq!(trail["actions"][0]["connector"], "out");
    assert_eq!(trail["actions"][0]["status"], "ok");
    assert_eq!(
        trail["steps"],
        json!(["steps[0] (set)", "steps[1] (send out append)"]),
        "{trail}"
    );

    // An event the trigger does not match is acknowledged and skipped.
    let (status, answer) = engine.post("/hooks/echo", r#"{"other":1}"#).await;
    assert_eq!(status, 202);
    let skipped = eventually("the skipped trail", Duration::from_secs(5), || async {
        let (status, t) = engine
            .admin(&format!(
                "/api/events/{}",
                answer["event_id"].as_str().unwrap()
            ))
            .await;
        (status == 200 && t["status"] != "queued").then_some(t)
    })
    .await;
    assert_eq!(skipped["status"], "skipped");

    let metrics = engine.metrics().await;
    assert!(
        metrics.contains(r#"crossdock_events_received_total{pipeline="echo"} 21"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"crossdock_events_duplicate_total{pipeline="echo"} 1"#));
    assert!(metrics.contains("crossdock_event_duration_seconds_bucket"));
}

/// Deliveries deduplicated by a field of the body: one parse checks the JSON and reads it.
#[tokio::test]
async fn dedup_id_keys_deliveries_by_a_field_of_the_body() {
    let keyed = r#"
pipeline: keyed
source:
  webhook: { path: /hooks/keyed, dedup_id: $.event.id }
steps:
  - send: { to: out, op: append }
"#;
    let mut all = files();
    all.push(("pipelines/keyed.yaml", keyed));
    let dir = project(&all);
    let engine = Engine::start(dir.path());
    let (status, first) = engine
        .post("/hooks/keyed", r#"{"event": {"id": "e-1"}, "n": 1}"#)
        .await;
    assert_eq!(status, 202, "{first}");
    // Another body with the same id is the same delivery.
    let (status, again) = engine
        .post("/hooks/keyed", r#"{"event": {"id": "e-1"}, "n": 2}"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        again,
        json!({"event_id": first["event_id"], "duplicate": true})
    );
    let (status, _) = engine
        .post("/hooks/keyed", r#"{"event": {"id": "e-2"}, "n": 1}"#)
        .await;
    assert_eq!(status, 202);
    // Without the field, the body's hash is the key.
    let (status, _) = engine.post("/hooks/keyed", r#"{"n": 1}"#).await;
    assert_eq!(status, 202);
    let (status, _) = engine.post("/hooks/keyed", r#"{"n": 1}"#).await;
    assert_eq!(status, 200);
    // Broken JSON outside the field is still refused.
    let (status, answer) = engine
        .post("/hooks/keyed", r#"{"event": {"id": "e-3"}, "x": [1,}"#)
        .await;
    assert_eq!(status, 400, "{answer}");
    // So is invalid UTF-8 outside it.
    let (status, answer) = engine
        .post_bytes(
            "/hooks/keyed",
            b"{\"event\": {\"id\": \"e-4\"}, \"x\": \"\xff\"}",
        )
        .await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test]
async fn bad_requests_get_clear_answers_and_nothing_is_queued() {
    let dir = project(&files());
    let engine = Engine::start(dir.path());
    let (status, answer) = engine.post("/hooks/echo", "{not json").await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("not JSON"),
        "{answer}"
    );
    // JSON is UTF-8, also where no field is read: refused here, not dead-lettered later.
    let (status, answer) = engine
        .post_bytes("/hooks/echo", b"{\"n\": 1, \"skipped\": \"\xff\xfe\"}")
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("UTF-8"),
        "{answer}"
    );

    let big = format!(r#"{{"n":1,"pad":"{}"}}"#, "x".repeat(70 * 1024));
    let (status, answer) = engine.post("/hooks/echo", &big).await;
    assert_eq!(status, 413);
    assert!(
        answer["error"].as_str().unwrap().contains("65536 bytes"),
        "{answer}"
    );

    let (status, answer) = engine.post("/hooks/nowhere", "{}").await;
    assert_eq!(status, 404);
    assert!(answer["error"].as_str().unwrap().contains("/hooks/nowhere"));

    let r = Engine::client()
        .get(engine.url("/hooks/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // The admin API: no token, a wrong token.
    let r = Engine::client()
        .get(engine.url("/api/pipelines"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = Engine::client()
        .get(engine.url("/api/dlq"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let (_, health) = engine.admin("/health").await;
    assert_eq!(health["pending"], 0);
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn the_admin_api_dry_runs_a_posted_event_with_no_effect() {
    let dir = project(&files());
    let engine = Engine::start(dir.path());
    let r = Engine::client()
        .post(engine.url("/api/pipelines/echo/dry-run"))
        .bearer_auth(ADMIN_TOKEN)
        .body(r#"{"n":5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let outcome: Value = r.json().await.unwrap();
    assert_eq!(outcome["triggered"], true);
    assert_eq!(outcome["actions"][0]["connector"], "out");
    assert_eq!(
        outcome["actions"][0]["payload"],
        json!({"n": 5, "seen": true})
    );
    assert_eq!(outcome["errors"], json!([]));
    let r = Engine::client()
        .post(engine.url("/api/pipelines/nope/dry-run"))
        .bearer_auth(ADMIN_TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Nothing went out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!dir.path().join("out/actions.jsonl").exists());
}

#[tokio::test]
async fn the_admin_api_is_off_without_a_token() {
    let dir = project(&files());
    let engine = Engine::start_with(dir.path(), &[("CROSSDOCK_ADMIN_TOKEN", "")]);
    let (status, answer) = engine.admin("/api/pipelines").await;
    assert_eq!(status, 401);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("CROSSDOCK_ADMIN_TOKEN"));
}

#[tokio::test]
async fn rule_errors_dead_letter_at_once_and_can_be_retried_and_dropped() {
    let dir = project(&files());
    let engine = Engine::start(dir.path());
    let (status, a) = engine.post("/hooks/picky", r#"{"n":1}"#).await;
    assert_eq!(status, 202);
    let odd = a["event_id"].as_str().unwrap().to_string();
    let (_, b) = engine.post("/hooks/picky", r#"{"n":3}"#).await;
    let other = b["event_id"].as_str().unwrap().to_string();
    let (_, c) = engine.post("/hooks/picky", r#"{"n":2}"#).await;
    let even = c["event_id"].as_str().unwrap().to_string();

    let list = eventually("two dead letters", Duration::from_secs(10), || async {
        let (_, l) = engine.admin("/api/dlq").await;
        (l["total"] == 2).then_some(l)
    })
    .await;
    let first = &list["items"][0];
    assert_eq!(first["event_id"], odd.as_str());
    assert_eq!(first["pipeline"], "picky");
    // A script error is not retried: one attempt.
    assert_eq!(first["attempts"], 1);
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .contains("odd numbers are refused: 1"),
        "{first}"
    );
    let (_, letter) = engine.admin(&format!("/api/dlq/{odd}")).await;
    assert_eq!(letter["body"], json!({"n": 1}));
    assert_eq!(letter["event"]["errors"].as_array().unwrap().len(), 1);
    assert!(letter["version"].as_str().unwrap().len() >= 12);
    // Workers run events side by side: the even one may still be on its way.
    eventually(
        "the even event processed",
        Duration::from_secs(10),
        || async {
            let (_, trail) = engine.admin(&format!("/api/events/{even}")).await;
            (trail["status"] == "processed").then_some(())
        },
    )
    .await;

    // The CLI, while the engine runs, goes through the admin API.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["dlq", "list", "--project"])
        .arg(dir.path())
        .args(["--url", &engine.url("")])
        .env("CROSSDOCK_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(
        text.contains(&odd) && text.contains("2 dead letters"),
        "{text}"
    );

    // Retry: it fails again (the rule has not changed) and comes back, attempts counted anew.
    let (status, _) = engine.admin_post(&format!("/api/dlq/{odd}/retry")).await;
    assert_eq!(status, 200);
    eventually(
        "the retried letter back",
        Duration::from_secs(10),
        || async {
            let (status, l) = engine.admin(&format!("/api/dlq/{odd}")).await;
            (status == 200 && l["event"]["attempts"] == 1).then_some(())
        },
    )
    .await;
    // Drop.
    let r = Engine::client()
        .delete(engine.url(&format!("/api/dlq/{other}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, _) = engine.admin(&format!("/api/dlq/{other}")).await;
    assert_eq!(status, 404);
    let (_, l) = engine.admin("/api/dlq").await;
    assert_eq!(l["total"], 1);
}

#[tokio::test]
async fn kill_9_loses_no_accepted_event() {
    let dir = project(&files());
    let engine = Engine::start(dir.path());
    let mut accepted = BTreeSet::new();
    for n in 0..200 {
        let (status, _) = engine.post("/hooks/echo", &format!(r#"{{"n":{n}}}"#)).await;
        assert_eq!(status, 202);
        accepted.insert(n);
    }
    // No drain, no flush: whatever was answered 202 must be on disk already.
    engine.kill9();
    let engine = Engine::start(dir.path());
    let out = dir.path().join("out/actions.jsonl");
    let seen = eventually(
        "every accepted event delivered",
        Duration::from_secs(30),
        || async {
            let seen: BTreeSet<i64> = json_lines(&out)
                .iter()
                .map(|l| l["payload"]["n"].as_i64().unwrap())
                .collect();
            (seen == accepted).then_some(seen)
        },
    )
    .await;
    assert_eq!(seen.len(), 200);
    engine.settled().await;
}

#[tokio::test]
async fn sigterm_and_ctrl_c_drain_and_exit_cleanly() {
    let dir = project(&files());
    let engine = Engine::start(dir.path());
    for n in 0..10 {
        let (status, _) = engine.post("/hooks/echo", &format!(r#"{{"n":{n}}}"#)).await;
        assert_eq!(status, 202);
    }
    let status = engine.terminate();
    assert!(status.success(), "{status:?}");
    // Ctrl-C (SIGINT) takes the same way out.
    let engine = Engine::start(dir.path());
    for n in 10..20 {
        let (status, _) = engine.post("/hooks/echo", &format!(r#"{{"n":{n}}}"#)).await;
        assert_eq!(status, 202);
    }
    let status = engine.stop_with("INT");
    assert!(status.success(), "{status:?}");
    // Whatever was not done before an exit is done by the next start.
    let engine = Engine::start(dir.path());
    let out = dir.path().join("out/actions.jsonl");
    eventually("twenty actions", Duration::from_secs(20), || async {
        (json_lines(&out).len() >= 20).then_some(())
    })
    .await;
    let mut seen: Vec<i64> = json_lines(&out)
        .iter()
        .filter_map(|l| l["payload"]["n"].as_i64())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen,
        (0..20).collect::<Vec<_>>(),
        "an accepted event was lost"
    );
    engine.settled().await;
}

const SIGNED: &str = r#"
pipeline: signed
source:
  webhook:
    path: /hooks/signed
    verify: { scheme: shopify, secret: "${TEST_SHOPIFY_SECRET}" }
steps:
  - send: { to: out, op: append }
"#;

fn shopify_signature(secret: &str, body: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn signatures_are_checked_and_provider_ids_deduplicate() {
    let mut files = files();
    files.push(("pipelines/signed.yaml", SIGNED));
    let dir = project(&files);
    let engine = Engine::start_with(dir.path(), &[("TEST_SHOPIFY_SECRET", "s3cret-value")]);
    let post = |body: &'static str, sig: String, id: &'static str| {
        let url = engine.url("/hooks/signed");
        async move {
            let r = Engine::client()
                .post(url)
                .header("X-Shopify-Hmac-Sha256", sig)
                .header("X-Shopify-Webhook-Id", id)
                .header("X-Shopify-Topic", "orders/create")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let body = r#"{"id":820982911946154508,"total_price":"10.00"}"#;
    let good = shopify_signature("s3cret-value", body);
    let (status, first) = post(body, good.clone(), "delivery-1").await;
    assert_eq!(status, 202, "{first}");
    // Tampered body, wrong secret, no signature: 401, and the secret is in no answer.
    let tampered = r#"{"id":820982911946154508,"total_price":"99.00"}"#;
    let (status, answer) = post(tampered, good.clone(), "delivery-2").await;
    assert_eq!(status, 401);
    assert!(!answer.to_string().contains("s3cret-value"));
    let (status, _) = post(body, shopify_signature("other", body), "delivery-3").await;
    assert_eq!(status, 401);
    let r = Engine::client()
        .post(engine.url("/hooks/signed"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The same delivery id again (Shopify retries): 200, the first event's id.
    let (status, again) = post(body, good.clone(), "delivery-1").await;
    assert_eq!(status, 200);
    assert_eq!(again["event_id"], first["event_id"]);
    // Shopify does not sign its delivery id: the same signed body under a new id is a replay,
    // a duplicate of the first; a new delivery has a body of its own.
    let (status, again) = post(body, good, "delivery-4").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["event_id"], first["event_id"]);
    let other = r#"{"id":820982911946154509,"total_price":"11.00"}"#;
    let (status, _) = post(
        other,
        shopify_signature("s3cret-value", other),
        "delivery-5",
    )
    .await;
    assert_eq!(status, 202);

    let out = dir.path().join("out/actions.jsonl");
    let lines = eventually("two deliveries", Duration::from_secs(10), || async {
        let l = json_lines(&out);
        (l.len() >= 2).then_some(l)
    })
    .await;
    assert_eq!(lines.len(), 2);
    // Ids beyond 2^53 keep every digit through the inbox and the flow.
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("820982911946154508"));
    // The headers the event arrived with are kept for scripts (credentials aside).
    assert!(!engine.log().contains("s3cret-value"));
}

fn http_project(upstream: &str) -> Vec<(String, String)> {
    let project = format!(
        r#"
connectors:
  up:
    kind: http
    base_url: "{upstream}"
    breaker: {{ failures: 5, cooldown: 2s }}
    operations:
      post: {{ method: POST, path: /events }}
"#
    );
    let relay = r#"
pipeline: relay
source:
  webhook: { path: /hooks/relay }
steps:
  - send: { to: up, op: post }
on_error:
  retry: { attempts: 5, initial: 100ms, max: 1s }
"#;
    let reserve = r#"
pipeline: reserve
source:
  webhook: { path: /hooks/reserve }
steps:
  - script: reserve
  - send: { to: up, op: post, payload: $.reservation }
"#;
    let script = r#"
let answer = stock.reserve(record.order_id, record.items);
record.reservation = #{ order_id: record.order_id, ok: answer.ok, available: stock.available("SKU-1") };
record
"#;
    vec![
        ("crossdock.yaml".into(), project),
        ("pipelines/relay.yaml".into(), relay.into()),
        ("pipelines/reserve.yaml".into(), reserve.into()),
        ("scripts/reserve.rhai".into(), script.into()),
    ]
}

#[tokio::test]
async fn kill_9_with_a_slow_upstream_delivers_every_accepted_event_at_least_once() {
    let upstream = support::upstream::Upstream::start().await;
    // 16 calls at a time, a second each: 100 events take over 6 s to deliver, far longer than
    // posting them takes even on a loaded machine.
    upstream.set_delay(Duration::from_secs(1));
    let dir = project_of(&http_project(&upstream.url));
    let engine = Engine::start(dir.path());
    let mut accepted = BTreeSet::new();
    for n in 0..100 {
        let (status, _) = engine
            .post("/hooks/relay", &format!(r#"{{"n":{n}}}"#))
            .await;
        assert_eq!(status, 202);
        accepted.insert(n);
    }
    // Some calls are in flight, most are queued: kill the engine in the middle of them.
    tokio::time::sleep(Duration::from_millis(400)).await;
    engine.kill9();
    let before = upstream.received().len();
    assert!(
        before < 100,
        "everything was delivered before the kill; the test proves nothing"
    );
    upstream.set_delay(Duration::ZERO);
    let engine = Engine::start(dir.path());
    eventually(
        "every accepted event upstream",
        Duration::from_secs(30),
        || async {
            let seen: BTreeSet<i64> = upstream
                .received()
                .iter()
                .map(|r| r.body["n"].as_i64().unwrap())
                .collect();
            (seen == accepted).then_some(())
        },
    )
    .await;
    let (_, health) = engine.admin("/health").await;
    assert_eq!(health["dead_letters"], 0);
}

#[tokio::test]
async fn retryable_failures_back_off_and_honour_retry_after_then_dead_letter() {
    let upstream = support::upstream::Upstream::start().await;
    let dir = project_of(&http_project(&upstream.url));
    let engine = Engine::start(dir.path());
    // A 503 with Retry-After: 1, then success.
    upstream.fail_next(503, "busy", Some(1));
    let (_, a) = engine.post("/hooks/relay", r#"{"n":1}"#).await;
    let id = a["event_id"].as_str().unwrap().to_string();
    let trail = eventually("the retried event", Duration::from_secs(15), || async {
        let (_, t) = engine.admin(&format!("/api/events/{id}")).await;
        (t["status"] == "processed").then_some(t)
    })
    .await;
    assert_eq!(trail["attempts"], 2);
    let errors = trail["errors"].as_array().unwrap();
    assert!(
        errors[0]["message"].as_str().unwrap().contains("503"),
        "{trail}"
    );
    // Retry-After: 1 was honoured although the backoff asked for 100 ms.
    let failed_at =
        chrono::DateTime::parse_from_rfc3339(errors[0]["at"].as_str().unwrap()).unwrap();
    let done_at =
        chrono::DateTime::parse_from_rfc3339(trail["finished_at"].as_str().unwrap()).unwrap();
    assert!((done_at - failed_at).num_milliseconds() >= 950, "{trail}");

    // Down for good: five attempts, then a dead letter with every attempt's error.
    upstream.set_down(Some(500));
    let (_, a) = engine.post("/hooks/relay", r#"{"n":2}"#).await;
    let id = a["event_id"].as_str().unwrap().to_string();
    let letter = eventually("the dead letter", Duration::from_secs(30), || async {
        let (status, l) = engine.admin(&format!("/api/dlq/{id}")).await;
        (status == 200).then_some(l)
    })
    .await;
    assert_eq!(letter["event"]["attempts"], 5);
    assert_eq!(letter["event"]["errors"].as_array().unwrap().len(), 5);
    assert!(letter["reason"]
        .as_str()
        .unwrap()
        .starts_with("gave up after 5 attempts"));
    // The upstream recovers; the dead letter is replayed and delivered.
    upstream.set_down(None);
    let (status, _) = engine.admin_post(&format!("/api/dlq/{id}/retry")).await;
    assert_eq!(status, 200);
    eventually(
        "the replayed event upstream",
        Duration::from_secs(30),
        || async {
            upstream
                .received()
                .iter()
                .any(|r| r.body["n"] == 2)
                .then_some(())
        },
    )
    .await;
    let metrics = engine.metrics().await;
    assert!(
        metrics.contains(r#"crossdock_events_dead_lettered_total{pipeline="relay"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"crossdock_connector_errors_total{connector="up"}"#));
    assert!(metrics.contains(r#"crossdock_connector_breaker_state{connector="up"}"#));
}

#[tokio::test]
async fn a_kill_between_reservation_and_delivery_does_not_reserve_twice() {
    let upstream = support::upstream::Upstream::start().await;
    upstream.set_delay(Duration::from_secs(3));
    let dir = project_of(&http_project(&upstream.url));
    let seeded = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["state", "stock", "SKU-1", "--set", "10", "--project"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );

    let engine = Engine::start(dir.path());
    let order = r#"{"order_id":"A-1","items":[{"sku":"SKU-1","qty":3}]}"#;
    let (status, _) = engine.post("/hooks/reserve", order).await;
    assert_eq!(status, 202);
    // The reservation is made and on disk (sled flushes every 500 ms); the delivery hangs.
    eventually("the reservation", Duration::from_secs(10), || async {
        let (status, r) = engine.admin("/api/state/reservations/A-1").await;
        (status == 200 && r["status"] == "reserved").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(upstream.received().is_empty());
    engine.kill9();

    upstream.set_delay(Duration::ZERO);
    let engine = Engine::start(dir.path());
    // The event is redone from the inbox: it finds its reservation and reserves nothing more.
    let delivered = eventually("the delivery", Duration::from_secs(20), || async {
        upstream.received().first().map(|r| r.body.clone())
    })
    .await;
    assert_eq!(
        delivered,
        json!({"order_id": "A-1", "ok": true, "available": 7})
    );
    // The shop redelivers the webhook too (a new delivery: it never saw a 2xx from before).
    let (status, _) = engine
        .post(
            "/hooks/reserve",
            &order.replace("\"items\"", "\"retry\":1,\"items\""),
        )
        .await;
    assert_eq!(status, 202);
    eventually("the second delivery", Duration::from_secs(20), || async {
        (upstream.received().len() >= 2).then_some(())
    })
    .await;
    let (_, stock) = engine.admin("/api/state/stock/SKU-1").await;
    assert_eq!(stock["reserved"], 3, "{stock}");
    assert_eq!(stock["on_hand"], 10);
    assert_eq!(upstream.received()[1].body["available"], 7);
}

#[tokio::test]
async fn a_full_backlog_answers_503_until_the_workers_catch_up() {
    let upstream = support::upstream::Upstream::start().await;
    upstream.set_delay(Duration::from_millis(500));
    let mut files = http_project(&upstream.url);
    files[0].1 = format!("server: {{ max_backlog: 5 }}\n{}", files[0].1);
    let dir = project_of(&files);
    let engine = Engine::start(dir.path());
    let mut statuses = Vec::new();
    for n in 0..8 {
        let (status, _) = engine
            .post("/hooks/relay", &format!(r#"{{"n":{n}}}"#))
            .await;
        statuses.push(status);
    }
    assert_eq!(statuses[..5], [202; 5]);
    assert_eq!(statuses[5..], [503; 3], "{statuses:?}");
    let r = Engine::client()
        .post(engine.url("/hooks/relay"))
        .body(r#"{"n":99}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    // Once the backlog is worked off, events are accepted again; nothing accepted was lost.
    let (status, _) = eventually("room in the backlog", Duration::from_secs(20), || async {
        let (status, a) = engine.post("/hooks/relay", r#"{"n":100}"#).await;
        (status == 202).then_some((status, a))
    })
    .await;
    assert_eq!(status, 202);
    eventually("six deliveries", Duration::from_secs(20), || async {
        (upstream.received().len() == 6).then_some(())
    })
    .await;
    let mut ns: Vec<i64> = upstream
        .received()
        .iter()
        .map(|r| r.body["n"].as_i64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, [0, 1, 2, 3, 4, 100]);
}

#[tokio::test]
async fn the_dlq_command_works_on_the_state_folder_when_the_engine_is_stopped() {
    let dir = project(&files());
    let engine = Engine::start(dir.path());
    let (_, a) = engine.post("/hooks/picky", r#"{"n":7}"#).await;
    let id = a["event_id"].as_str().unwrap().to_string();
    eventually("the dead letter", Duration::from_secs(10), || async {
        let (status, _) = engine.admin(&format!("/api/dlq/{id}")).await;
        (status == 200).then_some(())
    })
    .await;
    assert!(engine.terminate().success());

    let dlq = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
            .arg("dlq")
            .args(args)
            .arg("--project")
            .arg(dir.path())
            .env_remove("CROSSDOCK_ADMIN_TOKEN")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = dlq(&["list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&id)
            && out.contains("odd numbers are refused: 7")
            && out.contains("1 dead letters"),
        "{out}"
    );
    let (ok, out, _) = dlq(&["show", &id]);
    assert!(ok);
    let letter: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(letter["body"], json!({"n": 7}));
    let (ok, _, err) = dlq(&["show", "evt_ffffffffffffffff"]);
    assert!(!ok);
    assert!(err.contains("no dead letter"), "{err}");
    // Retry puts it back in the inbox: the next start runs it (and the rule refuses it again).
    let (ok, out, _) = dlq(&["retry", &id]);
    assert!(ok && out.contains("queued"), "{out}");
    let (_, out, _) = dlq(&["list"]);
    assert!(out.contains("0 dead letters"), "{out}");
    let engine = Engine::start(dir.path());
    eventually(
        "the retried event back in the dead letters",
        Duration::from_secs(10),
        || async {
            let (status, _) = engine.admin(&format!("/api/dlq/{id}")).await;
            (status == 200).then_some(())
        },
    )
    .await;
    assert!(engine.terminate().success());
    let (ok, out, _) = dlq(&["drop", &id]);
    assert!(ok && out.contains("dropped"), "{out}");
    let (_, out, _) = dlq(&["list"]);
    assert!(out.contains("0 dead letters"), "{out}");
}

#[tokio::test]
async fn while_draining_new_webhooks_get_503_and_running_events_finish() {
    let upstream = support::upstream::Upstream::start().await;
    upstream.set_delay(Duration::from_secs(2));
    let dir = project_of(&http_project(&upstream.url));
    let engine = Engine::start(dir.path());
    let (status, _) = engine.post("/hooks/relay", r#"{"n":1}"#).await;
    assert_eq!(status, 202);
    // The call is under way (the upstream takes 2 s) when the signal comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.signal_term();
    let (status, answer) = eventually("a 503", Duration::from_secs(5), || async {
        let (status, answer) = engine.post("/hooks/relay", r#"{"n":2}"#).await;
        (status == 503).then_some((status, answer))
    })
    .await;
    assert_eq!(status, 503);
    assert!(
        answer["error"].as_str().unwrap().contains("shutting down"),
        "{answer}"
    );
    let r = Engine::client()
        .get(engine.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    // Waited for off this thread: the upstream answers from this test's runtime.
    let status = tokio::task::spawn_blocking(move || engine.terminate())
        .await
        .unwrap();
    assert!(status.success());
    // The event that was running finished before the exit.
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["n"], 1);
}

/// The dedup window ends: the same body after it is a new event, within it a duplicate.
#[tokio::test]
async fn a_delivery_after_the_dedup_window_is_a_new_event() {
    let config = PROJECT.replace("server: { max_body: 64KB }", "server: { dedup_window: 1s }");
    assert_ne!(config, PROJECT, "the test's project changed shape");
    let dir = project(&[
        ("crossdock.yaml", config.as_str()),
        ("pipelines/echo.yaml", ECHO),
    ]);
    let engine = Engine::start(dir.path());
    let body = r#"{"n":1}"#;
    let (status, first) = engine.post("/hooks/echo", body).await;
    assert_eq!(status, 202);
    let (status, again) = engine.post("/hooks/echo", body).await;
    assert_eq!((status, &again["event_id"]), (200, &first["event_id"]));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, later) = engine.post("/hooks/echo", body).await;
    assert_eq!(status, 202, "{later}");
    assert_ne!(later["event_id"], first["event_id"]);
    let out = dir.path().join("out/actions.jsonl");
    eventually("both events", Duration::from_secs(10), || async {
        (json_lines(&out).len() == 2).then_some(())
    })
    .await;
}

/// The connector's circuit breaker: five failures open it, an open breaker lets no call through
/// until its cooldown ends, then one trial; a success closes it. The gauge follows, also when
/// time alone turns it half-open.
#[tokio::test]
async fn a_failing_connector_opens_its_breaker_which_holds_calls_back_then_closes() {
    let upstream = support::upstream::Upstream::start().await;
    // A cooldown long enough that the check below cannot overlap its end on a slow machine.
    let files: Vec<(String, String)> = http_project(&upstream.url)
        .into_iter()
        .map(|(path, text)| (path, text.replace("cooldown: 2s", "cooldown: 5s")))
        .collect();
    assert!(files.iter().any(|(_, t)| t.contains("cooldown: 5s")));
    let dir = project_of(&files);
    let engine = Engine::start(dir.path());
    let gauge = |m: String| {
        m.lines()
            .find(|l| l.starts_with(r#"crossdock_connector_breaker_state{connector="up"}"#))
            .and_then(|l| l.rsplit(' ').next().map(str::to_string))
    };
    upstream.set_down(Some(500));
    for n in 0..5 {
        let (status, _) = engine
            .post("/hooks/relay", &format!(r#"{{"n":{n}}}"#))
            .await;
        assert_eq!(status, 202);
    }
    eventually("the breaker to open", Duration::from_secs(15), || async {
        (gauge(engine.metrics().await).as_deref() == Some("1")).then_some(())
    })
    .await;
    // Open: the events wait; nothing reaches the upstream during the cooldown.
    let hits = upstream.hits();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(upstream.hits(), hits, "calls went through an open breaker");
    upstream.set_down(None);
    // After the cooldown one trial goes through, succeeds and closes the breaker; the waiting
    // events are delivered.
    eventually("every event delivered", Duration::from_secs(30), || async {
        (upstream.received().len() == 5).then_some(())
    })
    .await;
    eventually("the breaker to close", Duration::from_secs(10), || async {
        (gauge(engine.metrics().await).as_deref() == Some("0")).then_some(())
    })
    .await;
}
