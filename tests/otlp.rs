//! OpenTelemetry traces from the real binary to an OTLP/HTTP receiver on loopback. The
//! receiver does what a collector's OTLP/HTTP JSON endpoint requires (opentelemetry-proto,
//! docs/specification.md): `POST /v1/traces` with `Content-Type: application/json`, an
//! `ExportTraceServiceRequest` whose trace ids are 32 and span ids 16 hex digits, times in
//! nanoseconds as strings; anything else is answered 400 and recorded as a fault.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use support::engine::{eventually, project, Engine};
use support::upstream::Upstream;

#[derive(Default)]
struct Received {
    spans: Vec<Value>,
    faults: Vec<String>,
    service: Option<String>,
}

fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Why a request is not a valid export, if it is not.
fn fault(headers: &HeaderMap, body: &[u8], into: &mut Received) -> Option<String> {
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return Some("content-type is not application/json".into());
    }
    let doc: Value = serde_json::from_slice(body).ok()?;
    for rs in doc["resourceSpans"].as_array()? {
        for attr in rs["resource"]["attributes"].as_array()? {
            if attr["key"] == "service.name" {
                into.service = attr["value"]["stringValue"].as_str().map(str::to_string);
            }
        }
        for ss in rs["scopeSpans"].as_array()? {
            for span in ss["spans"].as_array()? {
                if !is_hex(&span["traceId"], 32) || !is_hex(&span["spanId"], 16) {
                    return Some(format!("bad ids: {span}"));
                }
                if !span["parentSpanId"].is_null() && !is_hex(&span["parentSpanId"], 16) {
                    return Some(format!("bad parent: {span}"));
                }
                let start: u64 = span["startTimeUnixNano"].as_str()?.parse().ok()?;
                let end: u64 = span["endTimeUnixNano"].as_str()?.parse().ok()?;
                if end < start || span["name"].as_str().is_none() {
                    return Some(format!("bad times or name: {span}"));
                }
                into.spans.push(span.clone());
            }
        }
    }
    None
}

async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let got = Arc::new(Mutex::new(Received::default()));
    let state = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: HeaderMap, body: axum::body::Bytes| async move {
                let mut got = state.lock().unwrap();
                let mut batch = Received::default();
                match fault(&headers, &body, &mut batch) {
                    None if !batch.spans.is_empty() || body.starts_with(b"{") => {
                        got.spans.extend(batch.spans);
                        got.service = batch.service.or(got.service.take());
                        (StatusCode::OK, "{}")
                    }
                    other => {
                        got.faults
                            .push(other.unwrap_or_else(|| "not an export".into()));
                        (StatusCode::BAD_REQUEST, "{}")
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_per_event_with_a_span_per_step_and_per_call() {
    let (collector, got) = receiver().await;
    let upstream = Upstream::start().await;
    let config = upstream.project_file();
    let dir = project(&[
        ("crossdock.yaml", &config),
        (
            "pipelines/orders.yaml",
            "pipeline: orders\nsource: { webhook: { path: /hooks/orders } }\nsteps:\n  - set: { total: { expr: 'record.qty * 2' } }\n  - filter: 'record.total > 0'\n  - send: { to: erp, op: create }\n",
        ),
    ]);
    let engine = Engine::start_with(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_SERVICE_NAME", "shop-sync"),
        ],
    );
    let (status, answer) = engine.post("/hooks/orders", r#"{"qty": 3}"#).await;
    assert_eq!(status, 202);
    let event_id = answer["event_id"].as_str().unwrap().to_string();

    let spans = eventually("the event's spans", Duration::from_secs(20), || {
        let spans = got.lock().unwrap().spans.clone();
        async move { spans.iter().any(|s| s["name"] == "event").then_some(spans) }
    })
    .await;
    let got = got.lock().unwrap();
    assert!(got.faults.is_empty(), "{:?}", got.faults);
    assert_eq!(got.service.as_deref(), Some("shop-sync"));

    let event = spans.iter().find(|s| s["name"] == "event").unwrap();
    assert_eq!(
        attr(event, "event_id").unwrap()["stringValue"],
        event_id.as_str()
    );
    assert_eq!(attr(event, "pipeline").unwrap()["stringValue"], "orders");
    assert!(event["parentSpanId"].is_null());
    let trace = &event["traceId"];
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["spanId"].as_str().unwrap(), s))
        .collect();
    let children: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parentSpanId"] == event["spanId"])
        .collect();
    let steps: Vec<&str> = children
        .iter()
        .filter(|s| s["name"] == "step")
        .map(|s| attr(s, "step").unwrap()["stringValue"].as_str().unwrap())
        .collect();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(steps.iter().any(|s| s.contains("send")), "{steps:?}");
    let call = children
        .iter()
        .find(|s| s["name"] == "call")
        .expect("a call span");
    assert_eq!(attr(call, "connector").unwrap()["stringValue"], "erp");
    assert_eq!(attr(call, "op").unwrap()["stringValue"], "create");
    assert_eq!(attr(call, "remote_status").unwrap()["intValue"], "201");
    assert_eq!(call["kind"], 3);
    for s in &children {
        assert_eq!(&s["traceId"], trace);
        assert!(by_id.contains_key(s["parentSpanId"].as_str().unwrap()));
        let (start, end) = (
            s["startTimeUnixNano"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
            event["endTimeUnixNano"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
        assert!(start <= end, "a child starts after its event ended");
    }
    assert_eq!(upstream.received().len(), 1);
    drop(got);
    assert!(engine.terminate().success());
}

/// The spans of the event with `event_id`, once its event span has arrived.
async fn spans_of(got: &Arc<Mutex<Received>>, event_id: &str) -> (Value, Vec<Value>) {
    let spans = eventually("the event's spans", Duration::from_secs(20), || {
        let spans = got.lock().unwrap().spans.clone();
        async move {
            let has_event = spans.iter().any(|s| {
                s["name"] == "event"
                    && attr(s, "event_id").and_then(|v| v["stringValue"].as_str()) == Some(event_id)
            });
            has_event.then_some(spans)
        }
    })
    .await;
    let event = spans
        .iter()
        .find(|s| {
            s["name"] == "event"
                && attr(s, "event_id").and_then(|v| v["stringValue"].as_str()) == Some(event_id)
        })
        .unwrap()
        .clone();
    let children = spans
        .into_iter()
        .filter(|s| s["parentSpanId"] == event["spanId"])
        .collect();
    (event, children)
}

fn call_to<'a>(children: &'a [Value], connector: &str) -> &'a Value {
    children
        .iter()
        .find(|s| {
            s["name"] == "call"
                && attr(s, "connector").and_then(|v| v["stringValue"].as_str()) == Some(connector)
        })
        .unwrap_or_else(|| panic!("no call span to {connector}: {children:?}"))
}

/// W3C Trace Context: the sender's `traceparent` makes the event's span its child, and each
/// call out (http and Salesforce) carries the `traceparent` of its own call span; a header
/// that is not valid version 00 is ignored and the event starts a trace of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_joins_the_senders_trace_and_goes_out_with_each_call() {
    use support::mock_salesforce::{MockSalesforce, CLIENT_ID, CLIENT_SECRET};
    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT: &str = "b7ad6b7169203331";
    let (collector, got) = receiver().await;
    let upstream = Upstream::start().await;
    let sf = MockSalesforce::start().await;
    let config = format!(
        "{}  salesforce:\n    kind: salesforce\n    instance_url: {}\n    auth:\n      oauth2:\n        token_url: {}\n        client_id: {CLIENT_ID}\n        client_secret: {CLIENT_SECRET}\n",
        upstream.project_file(),
        sf.base_url(),
        sf.token_url(),
    );
    let dir = project(&[
        ("crossdock.yaml", &config),
        (
            "pipelines/orders.yaml",
            "pipeline: orders\nsource: { webhook: { path: /hooks/orders } }\nsteps:\n  - send: { to: erp, op: create }\n  - send: { to: salesforce, op: create, object: Account, payload: $.account }\n",
        ),
    ]);
    let engine = Engine::start_with(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str())],
    );
    // Bodies differ: the same body again would be a duplicate.
    let post = |traceparent: String, qty: u32| {
        let url = engine.url("/hooks/orders");
        async move {
            let r = Engine::client()
                .post(url)
                .header("content-type", "application/json")
                .header("traceparent", traceparent)
                .body(format!(
                    r#"{{"qty": {qty}, "account": {{"Name": "Acme"}}}}"#
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 202);
            let answer: Value = r.json().await.unwrap();
            answer["event_id"].as_str().unwrap().to_string()
        }
    };

    let id = post(format!("00-{TRACE}-{PARENT}-01"), 1).await;
    let (event, children) = spans_of(&got, &id).await;
    assert_eq!(event["traceId"], TRACE);
    assert_eq!(event["parentSpanId"], PARENT);
    assert!(attr(&event, "traceparent").is_none(), "{event}");
    let erp = call_to(&children, "erp");
    let salesforce = call_to(&children, "salesforce");
    for call in [erp, salesforce] {
        assert_eq!(call["traceId"], TRACE);
    }
    let sent = upstream.received();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]
            .headers
            .get("traceparent")
            .unwrap()
            .to_str()
            .unwrap(),
        format!("00-{TRACE}-{}-01", erp["spanId"].as_str().unwrap())
    );
    let created: Vec<_> = sf
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/sobjects/Account"))
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(
        created[0].traceparent.as_deref(),
        Some(format!("00-{TRACE}-{}-01", salesforce["spanId"].as_str().unwrap()).as_str())
    );

    // Upper-case hex is not version 00: ignored, a trace of the event's own.
    let id = post(format!("00-{}-{PARENT}-01", TRACE.to_uppercase()), 2).await;
    let (event, children) = spans_of(&got, &id).await;
    assert!(event["parentSpanId"].is_null(), "{event}");
    assert_ne!(event["traceId"], TRACE);
    let erp = call_to(&children, "erp");
    let sent = upstream.received();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1]
            .headers
            .get("traceparent")
            .unwrap()
            .to_str()
            .unwrap(),
        format!(
            "00-{}-{}-01",
            event["traceId"].as_str().unwrap(),
            erp["spanId"].as_str().unwrap()
        )
    );
    assert!(got.lock().unwrap().faults.is_empty());
    assert!(engine.terminate().success());
}
