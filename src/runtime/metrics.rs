//! The engine's metrics, in one place: their names, labels and the Prometheus text
//! rendering behind `GET /metrics`.
//!
//! Recorded through the `metrics` facade; the Prometheus recorder is installed once per
//! process (several runtimes in one test process share it).

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY: &str = "crossdock_event_duration_seconds";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once); later calls return the same handle.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(LATENCY.into()), &buckets)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}

pub fn received(pipeline: &str) {
    counter!("crossdock_events_received_total", "pipeline" => pipeline.to_string()).increment(1);
}

pub fn duplicate(pipeline: &str) {
    counter!("crossdock_events_duplicate_total", "pipeline" => pipeline.to_string()).increment(1);
}

/// An event finished: `outcome` is processed, skipped or filtered.
pub fn processed(pipeline: &str, outcome: &'static str, seconds: f64) {
    counter!("crossdock_events_processed_total", "pipeline" => pipeline.to_string(), "outcome" => outcome)
        .increment(1);
    histogram!(LATENCY, "pipeline" => pipeline.to_string()).record(seconds);
}

/// An attempt failed (it may be retried).
pub fn failed(pipeline: &str) {
    counter!("crossdock_events_failed_total", "pipeline" => pipeline.to_string()).increment(1);
}

pub fn dead_lettered(pipeline: &str) {
    counter!("crossdock_events_dead_lettered_total", "pipeline" => pipeline.to_string())
        .increment(1);
}

pub fn rejected(pipeline: &str, status: u16) {
    counter!("crossdock_webhooks_rejected_total", "pipeline" => pipeline.to_string(), "status" => status.to_string())
        .increment(1);
}

/// Open HTTP connections.
pub fn connections_open(n: usize) {
    gauge!("crossdock_http_connections").set(n as f64);
}

/// An HTTP connection closed by the server: `header_timeout` or `evicted` (at the limit).
pub fn connection_closed(reason: &'static str) {
    counter!("crossdock_http_connections_closed_total", "reason" => reason).increment(1);
}

pub fn connector_call(connector: &str, ok: bool) {
    counter!("crossdock_connector_calls_total", "connector" => connector.to_string()).increment(1);
    if !ok {
        counter!("crossdock_connector_errors_total", "connector" => connector.to_string())
            .increment(1);
    }
}

pub fn breaker_state(connector: &str, state: f64) {
    gauge!("crossdock_connector_breaker_state", "connector" => connector.to_string()).set(state);
}

pub fn inbox_pending(n: usize) {
    gauge!("crossdock_inbox_pending").set(n as f64);
}

pub fn dead_letters(n: usize) {
    gauge!("crossdock_dead_letters").set(n as f64);
}

/// A reload that found the files as the running version has them: the project is no longer
/// failing to reload (an edit was undone), but nothing was reloaded either.
pub fn reload_unchanged() {
    gauge!("crossdock_reload_failing").set(0.0);
}

/// A reload was tried: `ok` true when the new version went live.
pub fn reload(ok: bool) {
    let result = if ok { "ok" } else { "refused" };
    counter!("crossdock_reloads_total", "result" => result).increment(1);
    gauge!("crossdock_reload_failing").set(if ok { 0.0 } else { 1.0 });
}
