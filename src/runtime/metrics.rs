//! The engine's metrics, in one place: their names, labels and the Prometheus text
//! rendering behind `GET /metrics`. The event counts and durations also feed the console's
//! per-minute figures ([`super::activity`]).
//!
//! Recorded through the `metrics` facade; the Prometheus recorder is installed once per
//! process (several runtimes in one test process share it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use super::activity::{self, Kind};
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY: &str = "crossdock_event_duration_seconds";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The handles of the series labelled by a pipeline or a connector, made once per name: the
/// macros allocate the label and look the series up in the recorder on every call, which the
/// runtime made several times per event. Names come from the project, so the maps are bounded
/// by it. Filled only once the recorder is installed: a handle made before would stay a no-op.
static HANDLES: OnceLock<Handles> = OnceLock::new();

#[derive(Default)]
struct Handles {
    counters: RwLock<HashMap<Series, Names<Counter>, rustc_hash::FxBuildHasher>>,
    latency: Cache<Histogram>,
    breakers: Cache<Arc<BreakerGauge>>,
}

type Names<V> = HashMap<Box<str>, V, rustc_hash::FxBuildHasher>;
type Cache<V> = RwLock<Names<V>>;

/// A counter and its labels besides the pipeline's or connector's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Series {
    Received,
    Duplicate,
    Processed(&'static str),
    Failed,
    DeadLettered,
    Rejected(u16),
    Calls,
    Errors,
}

impl Series {
    /// The counter for `name` (a pipeline's, or for `Calls` and `Errors` a connector's).
    fn register(self, name: &str) -> Counter {
        let name = name.to_string();
        match self {
            Series::Received => counter!("crossdock_events_received_total", "pipeline" => name),
            Series::Duplicate => counter!("crossdock_events_duplicate_total", "pipeline" => name),
            Series::Processed(outcome) => {
                counter!("crossdock_events_processed_total", "pipeline" => name, "outcome" => outcome)
            }
            Series::Failed => counter!("crossdock_events_failed_total", "pipeline" => name),
            Series::DeadLettered => {
                counter!("crossdock_events_dead_lettered_total", "pipeline" => name)
            }
            Series::Rejected(status) => {
                counter!("crossdock_webhooks_rejected_total", "pipeline" => name, "status" => status.to_string())
            }
            Series::Calls => counter!("crossdock_connector_calls_total", "connector" => name),
            Series::Errors => counter!("crossdock_connector_errors_total", "connector" => name),
        }
    }
}

struct BreakerGauge {
    gauge: Gauge,
    /// What the gauge was last set to.
    last: Mutex<Option<f64>>,
}

/// The handles, once the recorder is installed.
fn handles() -> Option<&'static Handles> {
    if !matches!(HANDLE.get(), Some(Some(_))) {
        return None;
    }
    Some(HANDLES.get_or_init(Handles::default))
}

fn count(series: Series, name: &str) {
    let Some(h) = handles() else {
        series.register(name).increment(1);
        return;
    };
    let counters = h.counters.read().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = counters.get(&series).and_then(|names| names.get(name)) {
        c.increment(1);
        return;
    }
    drop(counters);
    h.counters
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(series)
        .or_default()
        .entry(name.into())
        .or_insert_with(|| series.register(name))
        .increment(1);
}

/// The handle cached for `name`, made by `make` the first time. A poisoned map is still
/// whole (entries are only ever inserted), so it is used as it is.
fn cached<V: Clone>(cache: &Cache<V>, name: &str, make: impl FnOnce() -> V) -> V {
    if let Some(v) = cache.read().unwrap_or_else(|e| e.into_inner()).get(name) {
        return v.clone();
    }
    cache
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.into())
        .or_insert_with(make)
        .clone()
}

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
    count(Series::Received, pipeline);
    activity::of(pipeline).count(Kind::Received);
}

pub fn duplicate(pipeline: &str) {
    count(Series::Duplicate, pipeline);
}

/// An event finished: `outcome` is processed, skipped or filtered.
pub fn processed(pipeline: &str, outcome: &'static str, seconds: f64) {
    count(Series::Processed(outcome), pipeline);
    let activity = activity::of(pipeline);
    activity.count(Kind::Processed);
    activity.duration(seconds);
    match handles() {
        Some(h) => cached(
            &h.latency,
            pipeline,
            || histogram!(LATENCY, "pipeline" => pipeline.to_string()),
        )
        .record(seconds),
        None => histogram!(LATENCY, "pipeline" => pipeline.to_string()).record(seconds),
    }
}

/// An attempt failed (it may be retried).
pub fn failed(pipeline: &str) {
    count(Series::Failed, pipeline);
    activity::of(pipeline).count(Kind::Failed);
}

pub fn dead_lettered(pipeline: &str) {
    count(Series::DeadLettered, pipeline);
    activity::of(pipeline).count(Kind::DeadLettered);
}

pub fn rejected(pipeline: &str, status: u16) {
    count(Series::Rejected(status), pipeline);
}

/// Tenants with a label of their own in `crossdock_tenant_webhooks_total`: more would make
/// the metrics page grow with the tenants list; past it, new tenants share `other`.
pub const MAX_TENANT_LABELS: usize = 200;

static TENANT_LABELS: std::sync::LazyLock<Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// The label `tenant` is counted under: its own while fewer than [`MAX_TENANT_LABELS`]
/// tenants have one, else `other`.
fn tenant_label(tenant: &str) -> String {
    let mut labels = TENANT_LABELS.lock().unwrap_or_else(|p| p.into_inner());
    if labels.contains(tenant) {
        return tenant.to_owned();
    }
    if labels.len() < MAX_TENANT_LABELS {
        labels.insert(tenant.to_owned());
        return tenant.to_owned();
    }
    "other".to_owned()
}

/// A webhook delivery for one tenant of a pipeline: `accepted`, `duplicate` or `refused` (its
/// signature did not verify).
pub fn tenant_webhook(pipeline: &str, tenant: &str, outcome: &'static str) {
    counter!(
        "crossdock_tenant_webhooks_total",
        "pipeline" => pipeline.to_owned(),
        "tenant" => tenant_label(tenant),
        "outcome" => outcome
    )
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
    count(Series::Calls, connector);
    if !ok {
        count(Series::Errors, connector);
    }
}

/// Sets a connector's breaker gauge, when `state` differs from what it was last set to.
pub fn breaker_state(connector: &str, state: f64) {
    let Some(h) = handles() else {
        breaker_gauge(connector).set(state);
        return;
    };
    let breaker = cached(&h.breakers, connector, || {
        Arc::new(BreakerGauge {
            gauge: breaker_gauge(connector),
            last: Mutex::new(None),
        })
    });
    // Set under the lock, so the gauge is always the value `last` says it is.
    let mut last = breaker.last.lock().unwrap_or_else(|e| e.into_inner());
    if *last != Some(state) {
        breaker.gauge.set(state);
        *last = Some(state);
    }
}

fn breaker_gauge(connector: &str) -> Gauge {
    gauge!("crossdock_connector_breaker_state", "connector" => connector.to_string())
}

/// The inbox's counters and the state store's files (`None` when the size could not be read).
pub fn inbox(t: &super::inbox::Tally, disk_bytes: Option<u64>) {
    gauge!("crossdock_inbox_pending").set(t.pending as f64);
    gauge!("crossdock_inbox_pending_bytes").set(t.pending_bytes as f64);
    gauge!("crossdock_dead_letters").set(t.dead_letters as f64);
    gauge!("crossdock_trails").set(t.trails as f64);
    gauge!("crossdock_trail_bytes").set(t.trail_bytes as f64);
    if let Some(n) = disk_bytes {
        gauge!("crossdock_state_disk_bytes").set(n as f64);
    }
}

/// The state store was closed and reopened to give back memory: `why` is `idle` or
/// `under_load`.
pub fn state_reopened(why: &'static str) {
    counter!("crossdock_state_reopens_total", "why" => why).increment(1);
}

/// The cluster consumer's counters, as the server last gave them.
pub fn cluster_consumer(pending: u64, ack_pending: u64, redelivered: u64) {
    gauge!("crossdock_cluster_pending").set(pending as f64);
    gauge!("crossdock_cluster_ack_pending").set(ack_pending as f64);
    gauge!("crossdock_cluster_redelivered").set(redelivered as f64);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of the rendering that are about `name`, without their values' order.
    fn lines_of(name: &str) -> Vec<String> {
        let mut lines: Vec<String> = render()
            .lines()
            .filter(|l| l.contains(name) && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn cached_series_render_with_the_names_and_labels_of_the_macros() {
        assert!(install().is_some());
        for _ in 0..2 {
            received("metrics-unit-p");
            rejected("metrics-unit-p", 413);
            connector_call("metrics-unit-c", false);
        }
        duplicate("metrics-unit-p");
        processed("metrics-unit-p", "filtered", 0.002);
        failed("metrics-unit-p");
        dead_lettered("metrics-unit-p");
        connector_call("metrics-unit-c", true);
        let p = lines_of("metrics-unit-p");
        for line in [
            r#"crossdock_events_received_total{pipeline="metrics-unit-p"} 2"#,
            r#"crossdock_events_duplicate_total{pipeline="metrics-unit-p"} 1"#,
            r#"crossdock_events_processed_total{pipeline="metrics-unit-p",outcome="filtered"} 1"#,
            r#"crossdock_events_failed_total{pipeline="metrics-unit-p"} 1"#,
            r#"crossdock_events_dead_lettered_total{pipeline="metrics-unit-p"} 1"#,
            r#"crossdock_webhooks_rejected_total{pipeline="metrics-unit-p",status="413"} 2"#,
            r#"crossdock_event_duration_seconds_count{pipeline="metrics-unit-p"} 1"#,
        ] {
            assert!(p.iter().any(|l| l == line), "{line} not in {p:#?}");
        }
        let c = lines_of("metrics-unit-c");
        for line in [
            r#"crossdock_connector_calls_total{connector="metrics-unit-c"} 3"#,
            r#"crossdock_connector_errors_total{connector="metrics-unit-c"} 2"#,
        ] {
            assert!(c.iter().any(|l| l == line), "{line} not in {c:#?}");
        }
    }

    #[test]
    fn the_breaker_gauge_follows_every_change_of_state() {
        assert!(install().is_some());
        let gauge = || {
            lines_of("metrics-unit-breaker").into_iter().find_map(|l| {
                l.strip_prefix(
                    r#"crossdock_connector_breaker_state{connector="metrics-unit-breaker"} "#,
                )
                .map(str::to_string)
            })
        };
        for state in [0.0, 1.0, 1.0, 2.0, 0.0, 0.0, 1.0] {
            breaker_state("metrics-unit-breaker", state);
            assert_eq!(gauge(), Some(state.to_string()), "{state}");
        }
    }
}
