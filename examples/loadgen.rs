//! Load generator for `crossdock run` (driven by `tools/load.sh`; see docs/performance.md).
//!
//! ```text
//! loadgen fire --url http://127.0.0.1:8787/hooks/load --secret whsec_... --connections 64 --duration 10s
//! loadgen upstream --listen 127.0.0.1:9797
//! ```
//!
//! `fire` keeps `--connections` HTTP/1.1 connections busy, each posting one signed webhook after
//! another (closed loop: a connection sends its next request when the previous one is answered,
//! so latencies are those of a saturated server, without coordinated-omission correction). Every
//! request is a distinct BigCommerce-style order webhook with its own `webhook-id`, signed with
//! Standard Webhooks, so dedup never folds two of them. Requests completing during `--warmup`
//! are not counted; the result is one JSON line on stdout.
//!
//! `upstream` is the other end of the `http` connector: it answers every POST 201 `{"id": n}`,
//! counts them, prints deliveries/s each second on stderr and serves the total at `GET /count`.
//!
//! `ceiling` is the most any Rust HTTP server can do here, beside which crossdock's ingress is
//! read: a bare axum handler that reads each body and answers 202 `{"event_id": ...}`, keeping
//! nothing.

// A command-line tool: its output is what it prints on stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Parser)]
#[command(about = "Load generator for crossdock's webhook ingress")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Post signed webhooks as fast as the server answers; print one JSON summary line.
    Fire(FireArgs),
    /// A local stand-in for an API: answers every POST 201 and counts them.
    Upstream(UpstreamArgs),
    /// A bare axum handler that reads the body and answers 202: the ceiling of ingress.
    Ceiling(UpstreamArgs),
}

#[derive(clap::Args, Clone)]
struct FireArgs {
    /// The webhook URL, e.g. http://127.0.0.1:8787/hooks/load
    #[arg(long)]
    url: String,
    /// Standard Webhooks secret: `whsec_` and the base64 of the key.
    #[arg(long)]
    secret: String,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured time, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// hyper: one bare HTTP/1 connection per task (least CPU). reqwest: one pooled client.
    #[arg(long, value_enum, default_value_t = ClientKind::Hyper)]
    client: ClientKind,
    /// Threads of the load generator's runtime (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Requests per second across all connections, paced on a fixed schedule (open loop, for
    /// soak runs); without it every connection sends as soon as its last answer came.
    #[arg(long)]
    rate: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClientKind {
    Hyper,
    Reqwest,
}

#[derive(clap::Args)]
struct UpstreamArgs {
    #[arg(long, default_value = "127.0.0.1:9797")]
    listen: SocketAddr,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.cmd {
        Cmd::Fire(a) => a.threads,
        Cmd::Upstream(_) => Some(1),
        Cmd::Ceiling(_) => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.cmd {
            Cmd::Fire(args) => fire(args).await,
            Cmd::Upstream(args) => upstream(args).await,
            Cmd::Ceiling(args) => ceiling(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// fire

/// What one connection saw during the measured window.
struct Tally {
    latency_us: Histogram<u64>,
    accepted: u64,
    non_202: u64,
    errors: u64,
}

impl Tally {
    fn new() -> Result<Tally, String> {
        Ok(Tally {
            // 1 µs to 60 s, 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .map_err(|e| format!("histogram: {e}"))?,
            accepted: 0,
            non_202: 0,
            errors: 0,
        })
    }
}

/// Everything a connection needs to make and sign requests, shared by all of them.
struct Shared {
    url: hyper::Uri,
    authority: String,
    path: String,
    mac: HmacSha256,
    /// Next request number; with `nonce`, makes every webhook id and body unique.
    next: AtomicU64,
    nonce: u64,
    measure_from: Instant,
    end: Instant,
    /// Error messages printed so far (only the first few are).
    errors_shown: AtomicU64,
    /// `--rate`: the start of the schedule and the gap between two requests' slots.
    pace: Option<(Instant, Duration)>,
    /// Next slot of the schedule.
    slot: AtomicU64,
}

/// One request: its headers and body.
struct Signed {
    id: String,
    timestamp: String,
    signature: String,
    body: Bytes,
}

impl Shared {
    /// With `--rate`, waits for this connection's next slot of the schedule. A slot that is
    /// already past (the server answered slowly) is used at once, so a slow server is sent the
    /// requests it missed when it catches up, as a steady producer would.
    async fn pace(&self) {
        if let Some((start, gap)) = self.pace {
            let n = self.slot.fetch_add(1, Ordering::Relaxed);
            let at = start + gap.mul_f64(n as f64);
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        }
    }

    fn next_request(&self) -> Signed {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let id = format!("msg_{:x}_{n}", self.nonce);
        let timestamp = now.to_string();
        // A store/order/created webhook as BigCommerce sends it (thin: type and id), with a
        // different order id and hash every time.
        let body = format!(
            r#"{{"scope":"store/order/created","store_id":"1025646","data":{{"type":"order","id":{order}}},"hash":"{hash:016x}{n:024x}","created_at":{now},"producer":"stores/abc123xyz"}}"#,
            order = 100_000 + n,
            hash = self.nonce,
        );
        let signature = sign(&self.mac, &id, &timestamp, body.as_bytes());
        Signed {
            id,
            timestamp,
            signature,
            body: Bytes::from(body),
        }
    }

    fn record(&self, tally: &mut Tally, started: Instant, outcome: Result<u16, String>) {
        let done = Instant::now();
        if done < self.measure_from || done > self.end {
            return;
        }
        match outcome {
            Ok(202) => {
                tally.accepted += 1;
                let us = done.duration_since(started).as_micros();
                tally
                    .latency_us
                    .saturating_record(u64::try_from(us).unwrap_or(u64::MAX));
            }
            Ok(_) => tally.non_202 += 1,
            Err(_) => tally.errors += 1,
        }
    }

    fn report_error(&self, what: &str) {
        if self.errors_shown.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("loadgen: {what}");
        }
    }
}

/// The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.
fn sign(key: &HmacSha256, id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = key.clone();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The Standard Webhooks key: the base64 after `whsec_`.
fn webhook_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    BASE64
        .decode(encoded)
        .map_err(|e| format!("the secret is not whsec_ and base64: {e}"))
}

async fn fire(args: FireArgs) -> Result<(), String> {
    let url: hyper::Uri = args
        .url
        .parse()
        .map_err(|e| format!("bad --url {}: {e}", args.url))?;
    if url.scheme_str() != Some("http") {
        return Err("--url must be http://".into());
    }
    let authority = url
        .authority()
        .map(|a| a.to_string())
        .ok_or("--url has no host")?;
    let path = url
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let mac = HmacSha256::new_from_slice(&webhook_key(&args.secret)?)
        .map_err(|e| format!("HMAC key: {e}"))?;
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()) << 32;
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let shared = Arc::new(Shared {
        url,
        authority,
        path,
        mac,
        next: AtomicU64::new(0),
        nonce,
        measure_from,
        end,
        errors_shown: AtomicU64::new(0),
        pace: match args.rate {
            Some(r) if r > 0.0 && r.is_finite() => Some((start, Duration::from_secs_f64(1.0 / r))),
            Some(r) => return Err(format!("--rate must be a positive number, not {r}")),
            None => None,
        },
        slot: AtomicU64::new(0),
    });
    let reqwest_client = match args.client {
        ClientKind::Reqwest => Some(
            reqwest::Client::builder()
                .pool_max_idle_per_host(args.connections)
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| format!("reqwest client: {e}"))?,
        ),
        ClientKind::Hyper => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections.max(1) {
        let shared = shared.clone();
        match &reqwest_client {
            Some(client) => {
                tasks.spawn(connection_reqwest(shared, client.clone()));
            }
            None => {
                tasks.spawn(connection_hyper(shared));
            }
        }
    }
    let mut total = Tally::new()?;
    // Requests still in flight at the end are not counted; give them a moment, then stop.
    let give_up = tokio::time::Instant::from_std(end + Duration::from_secs(5));
    loop {
        match tokio::time::timeout_at(give_up, tasks.join_next()).await {
            Ok(Some(Ok(Ok(t)))) => {
                total.accepted += t.accepted;
                total.non_202 += t.non_202;
                total.errors += t.errors;
                total
                    .latency_us
                    .add(&t.latency_us)
                    .map_err(|e| format!("histogram: {e}"))?;
            }
            Ok(Some(Ok(Err(e)))) => return Err(e),
            Ok(Some(Err(e))) => return Err(format!("a connection task failed: {e}")),
            Ok(None) => break,
            Err(_) => {
                eprintln!(
                    "loadgen: {} connections still waiting 5 s after the end; their counts are lost",
                    tasks.len()
                );
                tasks.abort_all();
                break;
            }
        }
    }
    let secs = args.duration.as_secs_f64();
    let ms = |us: u64| us as f64 / 1000.0;
    let h = &total.latency_us;
    let line = serde_json::json!({
        "connections": args.connections,
        "duration_s": secs,
        "accepted": total.accepted,
        "accepted_per_s": (total.accepted as f64 / secs).round() as u64,
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "non_202": total.non_202,
        "errors": total.errors,
    });
    println!("{line}");
    Ok(())
}

async fn connection_hyper(shared: Arc<Shared>) -> Result<Tally, String> {
    let mut tally = Tally::new()?;
    'connect: while Instant::now() < shared.end {
        let stream = match tokio::net::TcpStream::connect(&shared.authority).await {
            Ok(s) => s,
            Err(e) => {
                shared.report_error(&format!("connect {}: {e}", shared.authority));
                shared.record(&mut tally, Instant::now(), Err(e.to_string()));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
            Ok(pair) => pair,
            Err(e) => {
                shared.report_error(&format!("handshake: {e}"));
                continue;
            }
        };
        tokio::spawn(conn);
        while Instant::now() < shared.end {
            // The server may have closed the connection after its last answer (`Connection:
            // close`, idle timeout): not an error, open another.
            if sender.ready().await.is_err() {
                continue 'connect;
            }
            shared.pace().await;
            if Instant::now() >= shared.end {
                break;
            }
            let signed = shared.next_request();
            let request = hyper::Request::builder()
                .method(Method::POST)
                .uri(shared.path.as_str())
                .header("host", shared.authority.as_str())
                .header("content-type", "application/json")
                .header("webhook-id", signed.id)
                .header("webhook-timestamp", signed.timestamp)
                .header("webhook-signature", signed.signature)
                .body(Full::new(signed.body))
                .map_err(|e| format!("building a request: {e}"))?;
            let started = Instant::now();
            let outcome = async {
                let response = sender.send_request(request).await?;
                let status = response.status().as_u16();
                response.into_body().collect().await?;
                Ok::<u16, hyper::Error>(status)
            };
            match tokio::time::timeout(Duration::from_secs(30), outcome).await {
                Ok(Ok(status)) => shared.record(&mut tally, started, Ok(status)),
                Ok(Err(e)) => {
                    shared.report_error(&format!("{}: {e}", shared.url));
                    shared.record(&mut tally, started, Err(e.to_string()));
                    continue 'connect;
                }
                Err(_) => {
                    shared.report_error(&format!("{}: no answer in 30 s", shared.url));
                    shared.record(&mut tally, started, Err("timeout".into()));
                    continue 'connect;
                }
            }
        }
    }
    Ok(tally)
}

async fn connection_reqwest(shared: Arc<Shared>, client: reqwest::Client) -> Result<Tally, String> {
    let mut tally = Tally::new()?;
    let url = reqwest::Url::parse(&shared.url.to_string()).map_err(|e| e.to_string())?;
    while Instant::now() < shared.end {
        shared.pace().await;
        if Instant::now() >= shared.end {
            break;
        }
        let signed = shared.next_request();
        let started = Instant::now();
        let sent = client
            .post(url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", signed.id)
            .header("webhook-timestamp", signed.timestamp)
            .header("webhook-signature", signed.signature)
            .body(signed.body)
            .send()
            .await;
        let outcome = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                response.bytes().await.map(|_| status)
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(status) => shared.record(&mut tally, started, Ok(status)),
            Err(e) => {
                shared.report_error(&format!("{}: {e}", shared.url));
                shared.record(&mut tally, started, Err(e.to_string()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(tally)
}

// ---------------------------------------------------------------------------------------------
// upstream

async fn upstream(args: UpstreamArgs) -> Result<(), String> {
    let count = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route(
            "/count",
            get({
                let count = count.clone();
                move || async move {
                    Json(serde_json::json!({ "count": count.load(Ordering::Relaxed) }))
                }
            }),
        )
        .fallback({
            let count = count.clone();
            move |method: Method| async move {
                if method != Method::POST {
                    return StatusCode::METHOD_NOT_ALLOWED.into_response();
                }
                let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                (StatusCode::CREATED, Json(serde_json::json!({ "id": n }))).into_response()
            }
        });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!("upstream listening on http://{}", args.listen);
    tokio::spawn({
        let count = count.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut last = 0;
            loop {
                tick.tick().await;
                let now = count.load(Ordering::Relaxed);
                if now != last {
                    eprintln!("upstream: {} deliveries/s (total {now})", now - last);
                    last = now;
                }
            }
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await
        .map_err(|e| format!("the server failed: {e}"))?;
    println!(
        "{}",
        serde_json::json!({ "delivered": count.load(Ordering::Relaxed) })
    );
    Ok(())
}

async fn ceiling(args: UpstreamArgs) -> Result<(), String> {
    let count = Arc::new(AtomicU64::new(0));
    let app = Router::new().fallback(move |body: Bytes| async move {
        let n = count.fetch_add(1, Ordering::Relaxed);
        // As crossdock answers: an id that depends on the body's arrival, as JSON.
        let id = format!("evt_{n:016x}");
        let kept = body.len();
        (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "event_id": id, "bytes": kept })),
        )
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!("ceiling listening on http://{}", args.listen);
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await
        .map_err(|e| format!("the server failed: {e}"))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official Standard Webhooks sign() vector, from the Standard Webhooks specification.
    #[test]
    fn signs_like_standard_webhooks() -> Result<(), String> {
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
        let mac = HmacSha256::new_from_slice(&key).map_err(|e| e.to_string())?;
        assert_eq!(
            sign(
                &mac,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        Ok(())
    }
}
