//! OpenTelemetry traces over OTLP/HTTP with JSON bodies, as a `tracing` layer.
//!
//! Owns turning the `tracing` spans the engine opens (`event` per event, `step` per step, `call`
//! per connector call and `fetch`) into OTLP spans, and sending them in batches to a collector:
//! `POST {endpoint}` with `Content-Type: application/json` and an `ExportTraceServiceRequest`
//! body, trace and span ids in hex (the OTLP specification's JSON encoding,
//! opentelemetry-proto `docs/specification.md`). A span's parent is the `tracing` span it was
//! opened in, and every span of an event shares the event span's trace id; an event whose
//! webhook carried a valid W3C `traceparent` header joins that trace, its span a child of the
//! sender's. Each span's ids are also left in its extensions as a
//! [`traceparent::SpanContext`], which outgoing calls name in their own `traceparent`. Must not decide
//! which spans exist (the runtime and the flow open them) nor block the engine: spans wait in
//! a bounded queue and past [`MAX_QUEUED`] the newest are dropped and counted; a collector
//! that is down costs a failed request per batch, never an event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::connectors::traceparent::{self, SpanContext};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Spans waiting to be sent at most; more are dropped, not queued without bound.
pub const MAX_QUEUED: usize = 8192;
/// Spans per request at most.
const BATCH: usize = 512;
/// How long a finished span may wait for its batch.
const LINGER: Duration = Duration::from_secs(1);
/// One request's time at most, so a hung collector does not hold the exporter.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where traces go, from the standard OpenTelemetry variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The full URL spans are posted to.
    pub endpoint: String,
    pub service_name: String,
}

impl Config {
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), else `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// with `/v1/traces` appended (as the OTLP exporter specification says); none set: no
    /// export. `OTEL_SERVICE_NAME` names the service (`crossdock` by default).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Config> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let endpoint = match set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => url,
            None => format!(
                "{}/v1/traces",
                set("OTEL_EXPORTER_OTLP_ENDPOINT")?.trim_end_matches('/')
            ),
        };
        Some(Config {
            endpoint,
            service_name: set("OTEL_SERVICE_NAME").unwrap_or_else(|| "crossdock".into()),
        })
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the trace exporter: {0}")]
    Thread(#[from] std::io::Error),
}

/// A finished span, as it is sent.
#[derive(Debug, Clone)]
struct Finished {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: &'static str,
    kind: u8,
    start: u64,
    end: u64,
    attributes: Vec<(&'static str, Value)>,
    error: Option<String>,
}

/// What the layer and the guard tell the exporter thread.
enum Message {
    Span(Finished),
    /// Send what is queued and stop.
    Stop,
}

/// What a live span carries in its extensions.
struct Open {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    start: u64,
    attributes: Vec<(&'static str, Value)>,
}

/// The `tracing` layer: records spans and hands finished ones to the exporter thread.
pub struct OtlpLayer {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

/// Stops the exporter when dropped, after sending what is queued (at most one request's time).
pub struct Guard {
    thread: Option<JoinHandle<()>>,
    stop: Option<SyncSender<Message>>,
    dropped: Arc<AtomicU64>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "Spans were dropped: the trace collector did not keep up"
            );
        }
        // The layer holds the other sender (for as long as the process: the subscriber is
        // global), so the channel never closes: the thread is told.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Message::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the exporter thread; the layer goes into the subscriber, the guard lives as long as
/// the command.
pub fn start(config: Config) -> Result<(OtlpLayer, Guard), StartError> {
    let (tx, rx) = mpsc::sync_channel(MAX_QUEUED);
    let thread = std::thread::Builder::new()
        .name("otlp".into())
        .spawn(move || export(config, rx))?;
    let dropped = Arc::new(AtomicU64::new(0));
    Ok((
        OtlpLayer {
            queue: tx.clone(),
            dropped: dropped.clone(),
        },
        Guard {
            thread: Some(thread),
            stop: Some(tx),
            dropped,
        },
    ))
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn random<const N: usize>() -> [u8; N] {
    let mut id = [0u8; N];
    rand::Rng::fill(&mut rand::rng(), &mut id[..]);
    // An all-zero id is invalid in OTLP.
    if id.iter().all(|b| *b == 0) {
        id[N - 1] = 1;
    }
    id
}

/// Collects a span's fields as OTLP attribute values.
struct Fields<'a>(&'a mut Vec<(&'static str, Value)>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == field.name()) {
            Some(slot) => slot.1 = value,
            None => self.0.push((field.name(), value)),
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, json!({ "stringValue": value }));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        // int64 is a string in the JSON mapping of protobuf.
        self.put(field, json!({ "intValue": value.to_string() }));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, json!({ "intValue": value.to_string() }));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, json!({ "boolValue": value }));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, json!({ "stringValue": format!("{value:?}") }));
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut attributes = Vec::new();
        attrs.record(&mut Fields(&mut attributes));
        // A `traceparent` field is the sender's W3C header: not an attribute, the parent of a
        // span that has none here. An invalid one is dropped and the span starts a trace.
        let remote = attributes
            .iter()
            .position(|(k, _)| *k == "traceparent")
            .map(|i| attributes.remove(i).1)
            .and_then(|v| v["stringValue"].as_str().and_then(traceparent::parse));
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<SpanContext>().copied())
            .or(remote);
        let context = SpanContext {
            trace_id: parent.map(|p| p.trace_id).unwrap_or_else(random),
            span_id: random(),
        };
        let mut extensions = span.extensions_mut();
        extensions.insert(Open {
            trace_id: context.trace_id,
            span_id: context.span_id,
            parent: parent.map(|p| p.span_id),
            start: now_nanos(),
            attributes,
        });
        // For `traceparent::current`: the header of a call made inside this span.
        extensions.insert(context);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(open) = span.extensions_mut().get_mut::<Open>() {
                values.record(&mut Fields(&mut open.attributes));
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let name = span.metadata().name();
        // A field named `error` marks the span failed (OTLP status code 2) with its text.
        let error = open
            .attributes
            .iter()
            .find(|(k, _)| *k == "error")
            .and_then(|(_, v)| v["stringValue"].as_str().map(str::to_string));
        let finished = Finished {
            trace_id: open.trace_id,
            span_id: open.span_id,
            parent: open.parent,
            name,
            // CLIENT for calls out of the engine, INTERNAL for the rest.
            kind: if matches!(name, "call" | "fetch") {
                3
            } else {
                1
            },
            start: open.start,
            end: now_nanos(),
            attributes: open.attributes,
            error,
        };
        if let Err(TrySendError::Full(_)) = self.queue.try_send(Message::Span(finished)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn export(config: Config, rx: Receiver<Message>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        tracing::warn!("Cannot start the trace exporter's runtime; no traces are sent");
        return;
    };
    // The client's connection pool belongs to this thread's runtime.
    let client = {
        let _in_runtime = rt.enter();
        reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot build the trace exporter's HTTP client; no traces are sent");
            return;
        }
    };
    let mut batch: Vec<Finished> = Vec::with_capacity(BATCH);
    let mut stopping = false;
    while !stopping {
        match rx.recv_timeout(LINGER) {
            Ok(Message::Stop) => stopping = true,
            Ok(Message::Span(span)) => {
                batch.push(span);
                // Take what else is waiting, up to a batch, without waiting.
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(Message::Stop) => {
                            stopping = true;
                            break;
                        }
                        Ok(Message::Span(s)) => batch.push(s),
                        Err(_) => break,
                    }
                }
                if batch.len() < BATCH && !stopping {
                    continue;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => stopping = true,
        }
        if !batch.is_empty() {
            let body = request_body(&config.service_name, &batch);
            batch.clear();
            // Built inside `block_on`: the request's timer needs the runtime.
            let sent = rt.block_on(async {
                client
                    .post(&config.endpoint)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
            });
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(status = r.status().as_u16(), endpoint = %config.endpoint, "The trace collector refused spans")
                }
                Err(e) => {
                    tracing::warn!(error = %e, endpoint = %config.endpoint, "Cannot send spans to the trace collector")
                }
            }
        }
    }
}

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding.
fn request_body(service: &str, spans: &[Finished]) -> String {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": hex::encode(s.trace_id),
                "spanId": hex::encode(s.span_id),
                "name": s.name,
                "kind": s.kind,
                "startTimeUnixNano": s.start.to_string(),
                "endTimeUnixNano": s.end.to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect::<Vec<_>>(),
                "status": match &s.error {
                    Some(message) => json!({ "code": 2, "message": message }),
                    None => json!({}),
                },
            });
            if let (Some(parent), Some(map)) = (s.parent, span.as_object_mut()) {
                map.insert("parentSpanId".into(), Value::String(hex::encode(parent)));
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": {
                "attributes": [{ "key": "service.name", "value": { "stringValue": service } }]
            },
            "scopeSpans": [{
                "scope": { "name": "crossdock", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }]
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_from_the_standard_variables() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Config::from_env(&env(&[])), None);
        let base = Config::from_env(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]));
        assert_eq!(
            base.map(|c| c.endpoint),
            Some("http://c:4318/v1/traces".into())
        );
        let full = Config::from_env(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t/x"),
            ("OTEL_SERVICE_NAME", "shop-sync"),
        ]))
        .unwrap();
        assert_eq!(full.endpoint, "http://t/x");
        assert_eq!(full.service_name, "shop-sync");
    }
}
