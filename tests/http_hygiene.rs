//! What a sender without good intentions can do to `crossdock run` over HTTP, through the real
//! binary on loopback: hold connections with slow or no requests, replay a signed delivery
//! under a new id, send bodies no flow can parse, flood the log with bad signatures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::engine::{project, Engine};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHOPIFY_SECRET: &str = "shpss_hygiene_test_secret";

const ECHO: &str = r#"
pipeline: echo
source:
  webhook: { path: /hooks/echo }
trigger:
  when: '"n" in record'
steps:
  - send: { to: out, op: append }
"#;

const KEYED: &str = r#"
pipeline: keyed
source:
  webhook: { path: /hooks/keyed, dedup_id: $.event.id }
steps:
  - send: { to: out, op: append }
"#;

const SHOP: &str = r#"
pipeline: shop
source:
  webhook:
    path: /hooks/shop
    verify: { scheme: shopify, secret: "shpss_hygiene_test_secret" }
steps:
  - send: { to: out, op: append }
"#;

/// A project whose `server:` is `server`, with the three pipelines above.
fn files(server: &str) -> tempfile::TempDir {
    let crossdock = format!(
        "server: {server}\nconnectors:\n  out: {{ kind: file, path: out/actions.jsonl }}\n"
    );
    project(&[
        ("crossdock.yaml", &crossdock),
        ("pipelines/echo.yaml", ECHO),
        ("pipelines/keyed.yaml", KEYED),
        ("pipelines/shop.yaml", SHOP),
    ])
}

fn addr(engine: &Engine) -> String {
    engine.addr.clone()
}

/// Reads until the server closes the connection (or resets it); returns what it sent.
async fn read_to_close(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slow_headers_idle_connections_and_slow_bodies_are_cut_off() {
    let dir = files("{ header_timeout: 2s, body_timeout: 2s }");
    let engine = Engine::start(dir.path());

    // Headers dribbled a byte a second: the connection is closed at the header timeout,
    // however long the client would go on.
    let mut slow = TcpStream::connect(addr(&engine)).await.unwrap();
    let started = Instant::now();
    let request = b"POST /hooks/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    let mut cut_after = None;
    for byte in request {
        if slow.write_all(&[*byte]).await.is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        // A read that ends (0 bytes, or a reset) means the server closed it.
        if let Ok(read) = tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
            if matches!(read, Ok(0) | Err(_)) {
                cut_after = Some(started.elapsed());
                break;
            }
        }
    }
    let cut_after = cut_after.expect("the slow client was never cut off");
    eprintln!("headers at a byte a second: cut off after {cut_after:?}");
    assert!(cut_after < Duration::from_secs(6), "{cut_after:?}");

    // A connection that sends nothing at all.
    let mut idle = TcpStream::connect(addr(&engine)).await.unwrap();
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut idle))
        .await
        .expect("an idle connection stays open past 10 s");
    let idle_after = started.elapsed();
    eprintln!("an idle connection: closed after {idle_after:?}");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(idle_after < Duration::from_secs(6), "{idle_after:?}");

    // Headers in, then the body a byte a second: 408 at the body timeout.
    let (mut reader, mut writer) = TcpStream::connect(addr(&engine))
        .await
        .unwrap()
        .into_split();
    writer
        .write_all(
            b"POST /hooks/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 40\r\n\r\n",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let dribble = async {
        for byte in br#"{"n": 1, "pad": "xxxxxxxxxxxxxxxxxxxx"}"# {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let answer = tokio::select! {
        answer = tokio::time::timeout(Duration::from_secs(15), read_to_close(&mut reader)) => answer,
        () = async { dribble.await; std::future::pending().await } => unreachable!(),
    };
    let answer = String::from_utf8_lossy(&answer.expect("no answer to a slow body")).to_string();
    let body_after = started.elapsed();
    eprintln!("a body at a byte a second: answered after {body_after:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    assert!(body_after < Duration::from_secs(6), "{body_after:?}");

    // Normal requests are not affected.
    let (status, answer) = engine.post("/hooks/echo", r#"{"n": 2}"#).await;
    assert_eq!(status, 202, "{answer}");
    let metrics = engine.metrics().await;
    assert!(
        metrics.contains(r#"crossdock_http_connections_closed_total{reason="header_timeout"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"crossdock_webhooks_rejected_total{pipeline="echo",status="408"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn idle_connections_past_the_limit_do_not_lock_out_health_or_cut_a_running_request() {
    // Timeouts far longer than the test: only the limit's eviction can free a connection.
    let dir = files("{ header_timeout: 60s, body_timeout: 60s, max_connections: 8 }");
    let engine = Engine::start(dir.path());

    // A request in a handler, its body half sent: busy, never evicted.
    let mut running = TcpStream::connect(addr(&engine)).await.unwrap();
    let body = br#"{"n": 7, "pad": "xxxxxxxxxx"}"#;
    running
        .write_all(
            format!(
                "POST /hooks/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    running.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Five times the limit of connections that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(addr(&engine)).await.unwrap());
    }
    let started = Instant::now();
    let health = tokio::time::timeout(Duration::from_secs(10), async {
        Engine::client()
            .get(engine.url("/health"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
    .await
    .expect("/health did not answer within 10 s");
    let answered_after = started.elapsed();
    eprintln!("/health past 40 idle connections (limit 8): answered after {answered_after:?}");
    assert_eq!(health, 200);
    assert!(
        answered_after < Duration::from_secs(5),
        "{answered_after:?}"
    );

    // The request that was running finishes, although it is older than every idle one.
    running.write_all(&body[10..]).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut running))
        .await
        .expect("the running request got no answer");
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let metrics = engine.metrics().await;
    let evicted: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"crossdock_http_connections_closed_total{reason="evicted"} "#)
        })
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0.0);
    assert!(evicted >= 30.0, "{evicted}\n{metrics}");
    let open: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("crossdock_http_connections "))
        .map(|n| n.trim().parse().unwrap())
        .unwrap();
    assert!(open <= 8.0, "{open}");
    drop(idle);
}

fn shopify_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SHOPIFY_SECRET.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn post_shopify(engine: &Engine, body: &str, id: Option<&str>) -> (u16, Value) {
    let mut request = Engine::client()
        .post(engine.url("/hooks/shop"))
        .header("content-type", "application/json")
        .header("X-Shopify-Hmac-Sha256", shopify_signature(body.as_bytes()))
        .body(body.to_owned());
    if let Some(id) = id {
        request = request.header("X-Shopify-Webhook-Id", id);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_shopify_replay_with_a_new_or_no_id_is_a_duplicate() {
    let dir = files("{}");
    let engine = Engine::start(dir.path());
    let body = r#"{"id": 820982911946154508, "total_price": "199.00"}"#;
    let (status, first) = post_shopify(&engine, body, Some("delivery-1")).await;
    assert_eq!(status, 202, "{first}");
    let duplicate = json!({"event_id": first["event_id"], "duplicate": true});
    for id in [Some("delivery-1"), Some("replayed-with-a-new-id"), None] {
        let (status, answer) = post_shopify(&engine, body, id).await;
        assert_eq!((status, &answer), (200, &duplicate), "id {id:?}");
    }
    // A new delivery (another body) under the id the replay made up is still new: the replay
    // was refused before it could claim that id.
    let (status, answer) = post_shopify(
        &engine,
        r#"{"id": 1, "total_price": "1.00"}"#,
        Some("replayed-with-a-new-id"),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let metrics = engine.metrics().await;
    assert!(
        metrics.contains(r#"crossdock_events_duplicate_total{pipeline="shop"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn bodies_no_flow_could_parse_get_400_with_the_reason_and_nothing_is_queued() {
    let dir = files("{}");
    let engine = Engine::start(dir.path());
    let deep = |levels: usize| {
        format!(
            r#"{{"n": 1, "event": {{"id": "d"}}, "deep": {}1{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    let cases = [
        (deep(200), "nested deeper"),
        (
            r#"{"n": 1, "event": {"id": "s"}, "note": "\ud800"}"#.to_owned(),
            "not Unicode",
        ),
        (
            r#"{"n": 1, "event": {"id": "k"}, "\udc00": 1}"#.to_owned(),
            "not Unicode",
        ),
        (r#"[{"n": 1}]"#.to_owned(), "not an array"),
        ("5".to_owned(), "not a number"),
        (r#""n""#.to_owned(), "not a string"),
        ("null".to_owned(), "not null"),
        (r#"{"n": 1,}"#.to_owned(), "not JSON"),
    ];
    for path in ["/hooks/echo", "/hooks/keyed"] {
        for (body, reason) in &cases {
            let (status, answer) = engine.post(path, body).await;
            assert_eq!(status, 400, "{path} {body:.80}: {answer}");
            let error = answer["error"].as_str().unwrap();
            assert!(error.contains(reason), "{path} {body:.80}: {error}");
        }
    }
    // What a flow can parse still passes: a surrogate pair, nesting under the limit.
    let (status, answer) = engine
        .post("/hooks/echo", r#"{"n": 1, "note": "\ud83d\ude00"}"#)
        .await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = engine.post("/hooks/keyed", &deep(100)).await;
    assert_eq!(status, 202, "{answer}");

    let out = dir.path().join("out/actions.jsonl");
    support::engine::eventually("2 actions", Duration::from_secs(20), || async {
        (support::engine::json_lines(&out).len() >= 2).then_some(())
    })
    .await;
    let health = engine.settled().await;
    assert_eq!(health["dead_letters"], 0, "{health}");
    let metrics = engine.metrics().await;
    for pipeline in ["echo", "keyed"] {
        let line = format!(
            r#"crossdock_webhooks_rejected_total{{pipeline="{pipeline}",status="400"}} {}"#,
            cases.len()
        );
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
}

#[tokio::test]
async fn bad_signatures_are_all_counted_but_logged_once_per_interval() {
    let dir = files("{}");
    let engine = Engine::start(dir.path());
    let started = Instant::now();
    for n in 0..60 {
        let r = Engine::client()
            .post(engine.url("/hooks/shop"))
            .header(
                "X-Shopify-Hmac-Sha256",
                shopify_signature(b"something else"),
            )
            .body(format!(r#"{{"n": {n}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let took = started.elapsed();
    let metrics = engine.metrics().await;
    assert!(
        metrics.contains(r#"crossdock_webhooks_rejected_total{pipeline="shop",status="401"} 60"#),
        "{metrics}"
    );
    let lines = engine
        .log()
        .lines()
        .filter(|l| l.contains("Webhook refused: signature"))
        .count();
    // One line per 5 s: the first, and one more for each 5 s the requests took.
    let allowed = 1 + (took.as_secs() / 5) as usize;
    eprintln!("60 bad signatures in {took:?}: {lines} log lines");
    assert!(lines >= 1 && lines <= allowed, "{lines} lines in {took:?}");
}

#[tokio::test]
async fn a_stop_does_not_wait_for_connections_that_never_sent_a_request() {
    let dir = files("{ header_timeout: 60s }");
    let engine = Engine::start(dir.path());
    let _silent = TcpStream::connect(addr(&engine)).await.unwrap();
    let mut partial = TcpStream::connect(addr(&engine)).await.unwrap();
    partial
        .write_all(b"POST /hooks/echo HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // A kept-alive connection after an answer, too.
    let (status, _) = engine.post("/hooks/echo", r#"{"n": 1}"#).await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let exit = tokio::task::spawn_blocking(move || engine.terminate())
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("SIGTERM with two connections that sent no whole request: exited after {took:?}");
    assert!(exit.success(), "{exit:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}
