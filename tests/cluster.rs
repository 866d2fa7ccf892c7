//! Several `crossdock run` nodes on one NATS JetStream (docs/cluster.md): real nats-server
//! processes in temporary folders, real binaries, signed webhooks over real HTTP, an upstream
//! on loopback. Nodes are killed with `kill -9` while they work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::engine::{eventually, project_of, Engine};
use support::nats::Nats;
use support::upstream::Upstream;

const SECRET: &str = "cluster-test-secret";

/// The project every node of a test runs: the same folder, told apart by `CROSSDOCK_NODE`.
/// A short ack wait so a killed node's events go to another one quickly.
fn cluster_yaml(upstream: &str) -> String {
    format!(
        r#"
cluster:
  nats: {{ url: "${{NATS_URL}}", ack_wait: 2s }}
  node: "${{CROSSDOCK_NODE}}"
connectors:
  up:
    kind: http
    base_url: "{upstream}"
    breaker: {{ failures: 50, cooldown: 500ms }}
    operations:
      post: {{ method: POST, path: /events }}
"#
    )
}

const RELAY: &str = r#"
pipeline: relay
source:
  webhook:
    path: /hooks/relay
    verify: { scheme: shopify, secret: "${TEST_SECRET}" }
steps:
  - send: { to: up, op: post }
on_error:
  retry: { attempts: 60, initial: 100ms, max: 1s }
"#;

const SET_STOCK: &str = r#"
pipeline: set-stock
source:
  webhook: { path: /hooks/set-stock }
steps:
  - script: set-stock
  - send: { to: up, op: post, payload: $.done }
"#;

const RESERVE: &str = r#"
pipeline: reserve
source:
  webhook: { path: /hooks/reserve }
steps:
  - script: reserve
  - send: { to: up, op: post, payload: $.answer }
on_error:
  retry: { attempts: 60, initial: 100ms, max: 1s }
"#;

const RELEASE: &str = r#"
pipeline: release
source:
  webhook: { path: /hooks/release }
steps:
  - script: release
  - send: { to: up, op: post, payload: $.answer }
on_error:
  retry: { attempts: 60, initial: 100ms, max: 1s }
"#;

/// Each order's creation and cancellation, in the order they are accepted per order id.
const ORDERS: &str = r#"
pipeline: orders
ordering_key: $.order_id
source:
  webhook: { path: /hooks/orders }
steps:
  - send: { to: up, op: post }
on_error:
  retry: { attempts: 60, initial: 100ms, max: 1s }
"#;

/// Four attempts 1.5 s apart, then a dead letter: slow enough to kill a node between two.
const FRAGILE: &str = r#"
pipeline: fragile
source:
  webhook: { path: /hooks/fragile }
steps:
  - send: { to: up, op: post }
on_error:
  retry: { attempts: 4, initial: 1500ms, max: 1500ms }
"#;

fn files(upstream: &str) -> Vec<(String, String)> {
    [
        ("crossdock.yaml", cluster_yaml(upstream).as_str()),
        ("pipelines/fragile.yaml", FRAGILE),
        ("pipelines/orders.yaml", ORDERS),
        ("pipelines/relay.yaml", RELAY),
        ("pipelines/set-stock.yaml", SET_STOCK),
        ("pipelines/reserve.yaml", RESERVE),
        ("pipelines/release.yaml", RELEASE),
        (
            "scripts/set-stock.rhai",
            "stock.set(record.sku, record.on_hand);\nrecord.done = #{ set: record.sku };\nrecord\n",
        ),
        (
            "scripts/reserve.rhai",
            "let a = stock.reserve(record.order_id, [#{ sku: \"SKU-1\", qty: 1 }]);\n\
             record.answer = #{ reserve: record.order_id, ok: a.ok };\nrecord\n",
        ),
        (
            "scripts/release.rhai",
            "let r = stock.release(record.order_id);\n\
             record.answer = #{ release: record.order_id, released: r };\nrecord\n",
        ),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

fn start_node(dir: &std::path::Path, nats: &Nats, name: &str) -> Engine {
    Engine::start_with(
        dir,
        &[
            ("NATS_URL", &nats.url()),
            ("CROSSDOCK_NODE", name),
            ("TEST_SECRET", SECRET),
            ("CROSSDOCK_LOG", "warn"),
        ],
    )
}

fn cluster(upstream: &str) -> (tempfile::TempDir, Nats, Vec<Option<Engine>>) {
    let files = files(upstream);
    let dir = project_of(&files);
    let nats = Nats::start(&dir.path().join("nats"));
    let nodes = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Some(start_node(dir.path(), &nats, n)))
        .collect();
    (dir, nats, nodes)
}

fn shopify_signature(body: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Posts `body` to `path` on the node `first` names, and on the others in turn when that one
/// does not answer 202 or 200 (as a load balancer passes a dead node by). Returns the answer's
/// status and body, or None when no node took it.
async fn post_any(
    client: &reqwest::Client,
    urls: &[String],
    first: usize,
    path: &str,
    body: String,
    signed: bool,
) -> Option<(u16, Value)> {
    for i in 0..urls.len() * 3 {
        let url = format!("{}{path}", urls[(first + i) % urls.len()]);
        let mut req = client.post(url).body(body.clone());
        if signed {
            req = req.header("X-Shopify-Hmac-Sha256", shopify_signature(&body));
        }
        if let Ok(r) = req.send().await {
            let status = r.status().as_u16();
            let answer = r.json::<Value>().await.unwrap_or(Value::Null);
            if status == 202 || status == 200 {
                return Some((status, answer));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The `n` of every relayed event the upstream received, with how many times.
fn received_ns(upstream: &Upstream) -> BTreeMap<i64, usize> {
    let mut seen = BTreeMap::new();
    for r in upstream.received() {
        if let Some(n) = r.body["n"].as_i64() {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_deliver_every_accepted_event_when_one_is_killed() {
    const EVENTS: usize = 3000;
    let upstream = Upstream::start().await;
    let (dir, _nats, mut nodes) = cluster(&upstream.url);
    let urls: Vec<String> = nodes.iter().map(|n| n.as_ref().unwrap().url("")).collect();
    let posted = Arc::new(AtomicUsize::new(0));
    let poster = {
        let (urls, posted) = (urls.clone(), posted.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let next = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let (client, urls, posted, next) =
                    (client.clone(), urls.clone(), posted.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let mut accepted = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= EVENTS {
                            return accepted;
                        }
                        let body = json!({ "n": n, "pad": "x".repeat(200) }).to_string();
                        let answer = post_any(&client, &urls, n, "/hooks/relay", body, true).await;
                        // 200: a retry of a delivery whose first 202 was lost with its node.
                        if answer.is_some() {
                            accepted.push(n as i64);
                        }
                        posted.fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
            let mut accepted = BTreeSet::new();
            for t in tasks {
                accepted.extend(t.await.unwrap());
            }
            accepted
        })
    };
    // A third of the way: n3 dies mid-work. Half-way: the upstream fails for a while.
    eventually("a third posted", Duration::from_secs(120), || async {
        (posted.load(Ordering::SeqCst) >= EVENTS / 3).then_some(())
    })
    .await;
    nodes[2].take().unwrap().kill9();
    eventually("half posted", Duration::from_secs(120), || async {
        (posted.load(Ordering::SeqCst) >= EVENTS / 2).then_some(())
    })
    .await;
    upstream.set_down(Some(503));
    tokio::time::sleep(Duration::from_secs(2)).await;
    upstream.set_down(None);
    let accepted = poster.await.unwrap();
    assert!(
        accepted.len() >= EVENTS * 9 / 10,
        "only {} of {EVENTS} accepted",
        accepted.len()
    );
    let seen = eventually(
        "every accepted event at the upstream",
        Duration::from_secs(240),
        || async {
            let seen = received_ns(&upstream);
            accepted
                .iter()
                .all(|n| seen.contains_key(n))
                .then_some(seen)
        },
    )
    .await;
    // n3 comes back under its own name: what it had taken and not finished was handed to the
    // others, and it drops it from its own inbox instead of running it a second time.
    nodes[2] = Some(start_node(dir.path(), &_nats, "n3"));
    let mut dead = 0;
    for node in nodes.iter().flatten() {
        let (status, page) = node.admin("/api/dlq").await;
        assert_eq!(status, 200, "{page}");
        dead += page["items"]
            .as_array()
            .expect("a page of dead letters")
            .len();
    }
    assert_eq!(dead, 0, "no event exhausted 60 attempts");
    let twice: usize = seen.values().filter(|c| **c > 1).count();
    let unasked: Vec<&i64> = seen.keys().filter(|n| !accepted.contains(n)).collect();
    eprintln!(
        "accepted {} of {EVENTS}; delivered {} distinct, {twice} more than once (at least once)",
        accepted.len(),
        seen.len()
    );
    // An event posted to n3 as it died may be stored and relayed without its 202 reaching
    // the sender, who then posted it elsewhere (a duplicate, stored once): it is in `accepted`
    // through that second answer. Nothing else reaches the upstream.
    assert!(
        unasked.is_empty(),
        "delivered but never accepted: {unasked:?}"
    );
    let (status, health) = nodes[0].as_ref().unwrap().admin("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["cluster"]["connected"], true);
}

/// 300 orders race for 100 units over three nodes, 50 of them delivered twice (with a body
/// that differs, so no dedup catches them: the reservation's own idempotency must).
async fn stock_race(kill_one: bool) {
    let upstream = Upstream::start().await;
    let (_dir, _nats, mut nodes) = cluster(&upstream.url);
    let urls: Vec<String> = nodes.iter().map(|n| n.as_ref().unwrap().url("")).collect();
    let client = reqwest::Client::new();
    let set = json!({"sku": "SKU-1", "on_hand": 100}).to_string();
    post_any(&client, &urls, 0, "/hooks/set-stock", set, false)
        .await
        .unwrap();
    eventually("the stock set", Duration::from_secs(60), || async {
        let r = upstream.received();
        r.iter().any(|r| r.body["set"] == "SKU-1").then_some(())
    })
    .await;
    let mut bodies: Vec<(usize, String)> = (0..300)
        .map(|i| (i, json!({"order_id": format!("o{i}")}).to_string()))
        .collect();
    for i in 0..50 {
        bodies.push((
            i,
            json!({"order_id": format!("o{i}"), "again": true}).to_string(),
        ));
    }
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for chunk in bodies.chunks(35) {
        let (client, urls, chunk, sent) =
            (client.clone(), urls.clone(), chunk.to_vec(), sent.clone());
        tasks.push(tokio::spawn(async move {
            for (i, body) in chunk {
                let answer = post_any(&client, &urls, i, "/hooks/reserve", body, false).await;
                assert!(answer.is_some(), "no node took order o{i}");
                sent.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    if kill_one {
        eventually(
            "a third of the orders",
            Duration::from_secs(120),
            || async { (sent.load(Ordering::SeqCst) >= 100).then_some(()) },
        )
        .await;
        nodes[2].take().unwrap().kill9();
    }
    for t in tasks {
        t.await.unwrap();
    }
    let answers = eventually("every order answered", Duration::from_secs(240), || async {
        let mut answers: BTreeMap<String, BTreeSet<bool>> = BTreeMap::new();
        for r in upstream.received() {
            if let (Some(id), Some(ok)) = (r.body["reserve"].as_str(), r.body["ok"].as_bool()) {
                answers.entry(id.to_string()).or_default().insert(ok);
            }
        }
        (answers.len() == 300).then_some(answers)
    })
    .await;
    // Idempotent per order: a redelivery gets the first answer, never another.
    for (id, oks) in &answers {
        assert_eq!(oks.len(), 1, "order {id} was answered both ways");
    }
    let won = answers.values().filter(|oks| oks.contains(&true)).count();
    assert_eq!(won, 100, "exactly the 100 units were reserved");
    let node = nodes[0].as_ref().unwrap();
    let (status, level) = node.admin("/api/state/stock/SKU-1").await;
    assert_eq!(status, 200, "{level}");
    assert_eq!(
        level,
        json!({"on_hand": 100, "reserved": 100, "available": 0})
    );
    let mut reserved = 0;
    for i in 0..300 {
        let (status, r) = node.admin(&format!("/api/state/reservations/o{i}")).await;
        assert_eq!(status, 200, "{r}");
        if r["status"] == "reserved" {
            reserved += 1;
            assert!(answers[&format!("o{i}")].contains(&true));
        }
    }
    assert_eq!(reserved, 100);
    // Releasing every order gives the units back, once.
    for i in 0..300 {
        let body = json!({"order_id": format!("o{i}")}).to_string();
        post_any(&client, &urls, i, "/hooks/release", body, false)
            .await
            .unwrap();
    }
    eventually("every release done", Duration::from_secs(240), || async {
        let n = upstream
            .received()
            .iter()
            .filter_map(|r| r.body["release"].as_str().map(str::to_string))
            .collect::<BTreeSet<_>>()
            .len();
        (n == 300).then_some(())
    })
    .await;
    let (_, level) = node.admin("/api/state/stock/SKU-1").await;
    assert_eq!(
        level,
        json!({"on_hand": 100, "reserved": 0, "available": 100})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_races_over_three_nodes_reserve_exactly_what_is_there() {
    stock_race(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_races_keep_their_guarantees_when_a_node_is_killed() {
    stock_race(true).await;
}

#[tokio::test]
async fn a_node_without_nats_says_so_and_exits_non_zero() {
    let upstream = Upstream::start().await;
    let files = files(&upstream.url);
    let dir = project_of(&files);
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .arg("run")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("NATS_URL", format!("nats://127.0.0.1:{port}"))
        .env("CROSSDOCK_NODE", "n1")
        .env("TEST_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot start: cannot connect to NATS at nats://127.0.0.1:{port}"
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_nats_answers_503_until_it_is_back() {
    let upstream = Upstream::start().await;
    let files = files(&upstream.url);
    let dir = project_of(&files);
    let mut nats = Nats::start(&dir.path().join("nats"));
    let node = start_node(dir.path(), &nats, "n1");
    let client = reqwest::Client::new();
    let post = |n: i64| {
        let body = json!({ "n": n }).to_string();
        client
            .post(node.url("/hooks/relay"))
            .header("X-Shopify-Hmac-Sha256", shopify_signature(&body))
            .body(body)
            .send()
    };
    assert_eq!(post(1).await.unwrap().status().as_u16(), 202);
    nats.kill9();
    let refused = post(2).await.unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    let (status, health) = node.admin("/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "nats");
    nats.restart();
    // Back by itself: the client reconnects, and the next webhook is stored and relayed.
    let n = eventually("202 again", Duration::from_secs(30), || async {
        let r = post(3).await.ok()?;
        (r.status().as_u16() == 202).then_some(3)
    })
    .await;
    eventually(
        "relayed after the restart",
        Duration::from_secs(30),
        || async { received_ns(&upstream).contains_key(&n).then_some(()) },
    )
    .await;
    assert!(received_ns(&upstream).contains_key(&1));
    // A 503 says "not confirmed", not "not stored": a publish the client had sent before it
    // saw the connection drop can still reach the stream. The sender's retry is then answered
    // as a duplicate, and the event is relayed once either way.
    let retried = post(2).await.unwrap().status().as_u16();
    assert!(retried == 202 || retried == 200, "{retried}");
    eventually(
        "the retried event relayed",
        Duration::from_secs(30),
        || async { received_ns(&upstream).contains_key(&2).then_some(()) },
    )
    .await;
}

/// An order system upstream that holds every call 20 ms, refuses the first creation of every
/// fifth order with a 503 (so that creation waits for its retry), and records, per order id,
/// what it accepted in which order and whether two calls for one order were ever in progress
/// at once.
#[derive(Clone, Default)]
struct OrderSystem {
    inner: Arc<std::sync::Mutex<OrderLog>>,
}

#[derive(Default)]
struct OrderLog {
    in_progress: BTreeSet<String>,
    /// Calls that arrived while another call for their order was in progress.
    overlaps: Vec<String>,
    accepted: BTreeMap<String, Vec<String>>,
    refused: BTreeSet<String>,
}

impl OrderSystem {
    async fn start() -> (OrderSystem, String) {
        let system = OrderSystem::default();
        let app = axum::Router::new()
            .fallback(order_call)
            .with_state(system.clone());
        let url = support::marketplace::serve(app).await;
        (system, url)
    }

    fn log(&self) -> std::sync::MutexGuard<'_, OrderLog> {
        self.inner.lock().unwrap()
    }
}

async fn order_call(
    axum::extract::State(system): axum::extract::State<OrderSystem>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (Some(order), Some(kind), Some(n)) = (
        body["order_id"].as_str(),
        body["kind"].as_str(),
        body["n"].as_u64(),
    ) else {
        return axum::http::StatusCode::BAD_REQUEST;
    };
    {
        let mut log = system.log();
        if !log.in_progress.insert(order.to_string()) {
            log.overlaps.push(format!("{order} {kind}"));
        }
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut log = system.log();
    log.in_progress.remove(order);
    if kind == "create" && n % 5 == 0 && log.refused.insert(order.to_string()) {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    log.accepted
        .entry(order.to_string())
        .or_default()
        .push(kind.to_string());
    axum::http::StatusCode::CREATED
}

/// Every order is created on one node and cancelled on the next one as soon as the creation
/// is accepted; returns the upstream's log once every order reached it twice.
async fn create_then_cancel(urls: &[String], system: &OrderSystem, orders: usize) {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (client, urls, next) = (client.clone(), urls.to_vec(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= orders {
                    return;
                }
                for (i, kind) in ["create", "cancel"].iter().enumerate() {
                    let body = json!({ "order_id": format!("o{n}"), "kind": kind, "n": n });
                    let answer = post_any(
                        &client,
                        &urls,
                        n + i,
                        "/hooks/orders",
                        body.to_string(),
                        false,
                    )
                    .await;
                    assert!(answer.is_some(), "no node took {kind} of o{n}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eventually(
        "every order created and cancelled upstream",
        Duration::from_secs(120),
        || async {
            let log = system.log();
            (log.accepted.len() == orders && log.accepted.values().all(|k| k.len() >= 2))
                .then_some(())
        },
    )
    .await;
    let log = system.log();
    assert!(
        log.overlaps.is_empty(),
        "two calls of one order in progress at once: {:?}",
        log.overlaps
    );
    for (order, kinds) in &log.accepted {
        assert_eq!(kinds, &["create", "cancel"], "order {order}");
    }
    assert_eq!(
        log.refused.len(),
        orders.div_ceil(5),
        "the refused creations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_never_overtakes_its_order_across_three_nodes() {
    let (system, url) = OrderSystem::start().await;
    let (_dir, _nats, nodes) = cluster(&url);
    let urls: Vec<String> = nodes.iter().flatten().map(|n| n.url("")).collect();
    create_then_cancel(&urls, &system, 150).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_never_overtakes_its_order_on_one_machine() {
    let (system, url) = OrderSystem::start().await;
    let mut files = files(&url);
    // The same project without `cluster:`: the sled engine.
    files[0].1 = files[0].1.replace(
        "cluster:\n  nats: { url: \"${NATS_URL}\", ack_wait: 2s }\n  node: \"${CROSSDOCK_NODE}\"\n",
        "",
    );
    assert!(!files[0].1.contains("cluster:"));
    let dir = project_of(&files);
    let node = Engine::start_with(dir.path(), &[("TEST_SECRET", SECRET)]);
    create_then_cancel(&[node.url("")], &system, 150).await;
}

/// A feed that publishes item `n` 50 ms after item `n - 1`, up to `total`, and answers
/// `GET /items?since=N` with the published items whose `seq` is at or after `N`, oldest first,
/// at most 20 a page; `POST /sink` is where the pipeline delivers them. Every call carries the
/// calling node's name (the connector's `x-node` header).
#[derive(Clone)]
struct Feed {
    inner: Arc<std::sync::Mutex<FeedLog>>,
    started: std::time::Instant,
    total: u64,
}

#[derive(Default)]
struct FeedLog {
    /// (node, when) of every listing call.
    polls: Vec<(String, std::time::Instant)>,
    /// Item id → the nodes that delivered it, in order.
    sunk: BTreeMap<String, Vec<String>>,
}

const FEED_PAGE: usize = 20;

impl Feed {
    async fn start(total: u64) -> (Feed, String) {
        let feed = Feed {
            inner: Arc::default(),
            started: std::time::Instant::now(),
            total,
        };
        let app = axum::Router::new()
            .route("/items", axum::routing::get(feed_items))
            .route("/sink", axum::routing::post(feed_sink))
            .with_state(feed.clone());
        let url = support::marketplace::serve(app).await;
        (feed, url)
    }

    fn published(&self) -> u64 {
        ((self.started.elapsed().as_millis() / 50) as u64).min(self.total)
    }

    fn log(&self) -> std::sync::MutexGuard<'_, FeedLog> {
        self.inner.lock().unwrap()
    }
}

fn node_of(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-node")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string()
}

async fn feed_items(
    axum::extract::State(feed): axum::extract::State<Feed>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> axum::Json<Value> {
    let Some(since) = q.get("since").and_then(|s| s.parse::<u64>().ok()) else {
        return axum::Json(json!({ "error": "since is required" }));
    };
    feed.log()
        .polls
        .push((node_of(&headers), std::time::Instant::now()));
    let items: Vec<Value> = (since..feed.published())
        .take(FEED_PAGE)
        .map(|n| json!({ "id": format!("i{n}"), "seq": n }))
        .collect();
    axum::Json(json!({ "items": items }))
}

async fn feed_sink(
    axum::extract::State(feed): axum::extract::State<Feed>,
    headers: axum::http::HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> axum::http::StatusCode {
    let Some(id) = body["id"].as_str() else {
        return axum::http::StatusCode::BAD_REQUEST;
    };
    feed.log()
        .sunk
        .entry(id.to_string())
        .or_default()
        .push(node_of(&headers));
    axum::http::StatusCode::CREATED
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poll_fails_over_when_its_node_is_killed_and_no_item_is_submitted_twice() {
    const TOTAL: u64 = 300;
    let (feed, url) = Feed::start(TOTAL).await;
    let mut files = files(&url);
    files[0].1.push_str(&format!(
        r#"  feed:
    kind: http
    base_url: "{url}"
    headers: {{ x-node: "${{CROSSDOCK_NODE}}" }}
    operations:
      list: {{ method: GET, path: /items }}
      sink: {{ method: POST, path: /sink }}
"#
    ));
    files.push((
        "pipelines/feed.yaml".into(),
        r#"
pipeline: feed
# At most two events sent and not yet acknowledged on a node: what its death can redeliver.
concurrency: 2
source:
  poll:
    connector: feed
    op: list
    every: 300ms
    items: $.items
    cursor: { param: since, from: $.seq, initial: 0 }
    batch_size: 20
steps:
  - send: { to: feed, op: sink }
on_error:
  retry: { attempts: 60, initial: 100ms, max: 1s }
"#
        .into(),
    ));
    let dir = project_of(&files);
    let nats = Nats::start(&dir.path().join("nats"));
    let names = ["n1", "n2", "n3"];
    let mut nodes: Vec<Option<Engine>> = names
        .iter()
        .map(|n| Some(start_node(dir.path(), &nats, n)))
        .collect();
    // A third of the items out: the node polling now is killed.
    let holder = eventually(
        "a third of the items delivered",
        Duration::from_secs(60),
        || async {
            let log = feed.log();
            (log.sunk.len() as u64 >= TOTAL / 3).then(|| log.polls.last().unwrap().0.clone())
        },
    )
    .await;
    let at = names.iter().position(|n| *n == holder).unwrap();
    nodes[at].take().unwrap().kill9();
    let killed_at = std::time::Instant::now();
    let (taker, took) = eventually("another node polls", Duration::from_secs(60), || async {
        let log = feed.log();
        log.polls
            .iter()
            .find(|(node, when)| *when > killed_at && *node != holder)
            .map(|(node, when)| (node.clone(), *when - killed_at))
    })
    .await;
    eprintln!(
        "{holder} killed; {taker} polled {} ms later",
        took.as_millis()
    );
    let sunk = eventually("every item delivered", Duration::from_secs(120), || async {
        let log = feed.log();
        (log.sunk.len() as u64 == TOTAL).then(|| log.sunk.clone())
    })
    .await;
    let log = feed.log();
    assert!(
        log.polls
            .iter()
            .all(|(node, when)| *when <= killed_at || *node != holder),
        "the killed node polled after its death"
    );
    // No item was submitted twice: an item listed again by the new holder (it resumes from the
    // shared cursor, at or after the last item seen) is a duplicate of what is in the stream.
    // The one way a second delivery happens is at least once: the killed node had sent the
    // item and died before acknowledging it, so another node sent it again. A node holds an
    // event's slot until the event is acknowledged, so that is at most the pipeline's
    // `concurrency` (2) items, however slow the machine made the acknowledgements.
    let twice: Vec<(&String, &Vec<String>)> = sunk.iter().filter(|(_, by)| by.len() > 1).collect();
    for (item, by) in &twice {
        assert!(
            by.len() == 2 && by[0] == holder && by[1] != holder,
            "item {item} delivered by {by:?}"
        );
    }
    assert!(twice.len() <= 2, "delivered twice: {twice:?}");
    eprintln!(
        "{TOTAL} items delivered, {} of them again after the kill (at least once)",
        twice.len()
    );
}

/// Waits until the NATS cluster at `urls` has a JetStream leader and can place a stream on
/// three servers (routes and the JetStream meta group form after each server says it is
/// ready).
async fn jetstream_ready(urls: &str) -> async_nats::jetstream::Context {
    let urls: Vec<&str> = urls.split(',').collect();
    let client = async_nats::connect(urls.as_slice()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    eventually("a JetStream cluster", Duration::from_secs(60), || async {
        let probe = async_nats::jetstream::stream::Config {
            name: "probe".into(),
            subjects: vec!["probe".into()],
            num_replicas: 3,
            ..Default::default()
        };
        js.create_stream(probe).await.ok()?;
        js.delete_stream("probe").await.ok()
    })
    .await;
    js
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_server_of_three_killed_under_load_loses_nothing_acknowledged() {
    const EVENTS: usize = 1500;
    let upstream = Upstream::start().await;
    let mut files = files(&upstream.url);
    files[0].1 = files[0]
        .1
        .replace("ack_wait: 2s", "ack_wait: 2s, replicas: 3");
    assert!(files[0].1.contains("replicas: 3"));
    let dir = project_of(&files);
    let mut nats = support::nats::NatsCluster::start(&dir.path().join("nats"));
    let urls = nats.urls();
    let js = jetstream_ready(&urls).await;
    let env = |name: &'static str| {
        [
            ("NATS_URL", urls.clone()),
            ("CROSSDOCK_NODE", name.to_string()),
            ("TEST_SECRET", SECRET.to_string()),
            ("CROSSDOCK_LOG", "warn".to_string()),
        ]
    };
    let nodes: Vec<Engine> = ["n1", "n2"]
        .iter()
        .map(|n| {
            let env = env(n);
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Engine::start_with(dir.path(), &env)
        })
        .collect();
    let node_urls: Vec<String> = nodes.iter().map(|n| n.url("")).collect();
    let posted = Arc::new(AtomicUsize::new(0));
    let poster = {
        let (node_urls, posted) = (node_urls.clone(), posted.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let next = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let (client, urls, posted, next) = (
                    client.clone(),
                    node_urls.clone(),
                    posted.clone(),
                    next.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut accepted = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= EVENTS {
                            return accepted;
                        }
                        let body = json!({ "n": n }).to_string();
                        // While JetStream elects a new leader the nodes answer 503: the
                        // sender keeps trying, as a provider does.
                        for _ in 0..20 {
                            let answer =
                                post_any(&client, &urls, n, "/hooks/relay", body.clone(), true)
                                    .await;
                            if answer.is_some() {
                                accepted.push(n as i64);
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        posted.fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
            let mut accepted = BTreeSet::new();
            for t in tasks {
                accepted.extend(t.await.unwrap());
            }
            accepted
        })
    };
    eventually("a third posted", Duration::from_secs(120), || async {
        (posted.load(Ordering::SeqCst) >= EVENTS / 3).then_some(())
    })
    .await;
    // The inbox stream's leader: the server whose loss JetStream has most to recover from.
    let mut stream = js.get_stream("crossdock_inbox").await.unwrap();
    let info = stream.info().await.unwrap();
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .unwrap();
    assert_eq!(
        info.cluster.as_ref().unwrap().replicas.len(),
        2,
        "the stream is on three servers"
    );
    let at: usize = leader.trim_start_matches('s').parse().unwrap();
    nats.servers[at].kill9();
    let accepted = poster.await.unwrap();
    assert!(
        accepted.len() >= EVENTS * 9 / 10,
        "only {} of {EVENTS} accepted",
        accepted.len()
    );
    let seen = eventually(
        "every accepted event at the upstream",
        Duration::from_secs(180),
        || async {
            let seen = received_ns(&upstream);
            accepted
                .iter()
                .all(|n| seen.contains_key(n))
                .then_some(seen)
        },
    )
    .await;
    let unasked: Vec<&i64> = seen.keys().filter(|n| !accepted.contains(n)).collect();
    assert!(
        unasked.is_empty(),
        "delivered but never accepted: {unasked:?}"
    );
    eprintln!(
        "server {leader} (the stream's leader) killed; accepted {} of {EVENTS}, every one delivered, {} more than once",
        accepted.len(),
        seen.values().filter(|c| **c > 1).count()
    );
}

/// `crossdock dlq ARGS --url URL` on the cluster's project, as an operator runs it.
fn dlq_cli(dir: &std::path::Path, nats: &Nats, url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .arg("dlq")
        .args(args)
        .arg("--project")
        .arg(dir)
        .args(["--url", url])
        .env("CROSSDOCK_ADMIN_TOKEN", support::engine::ADMIN_TOKEN)
        .env("NATS_URL", nats.url())
        .env("CROSSDOCK_NODE", "cli")
        .env("TEST_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dlq {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ids on a node's first page of dead letters.
async fn dead_ids(node: &Engine) -> Vec<String> {
    let (status, page) = node.admin("/api/dlq").await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .expect("a page of dead letters")
        .iter()
        .map(|l| l["event_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The upstream calls that carried `n`, whatever their answer.
fn delivered(upstream: &Upstream, n: i64) -> usize {
    upstream
        .received()
        .iter()
        .filter(|r| r.body["n"].as_i64() == Some(n))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_made_on_one_node_is_listed_and_retried_from_another() {
    let upstream = Upstream::start().await;
    let dir = project_of(&files(&upstream.url));
    let nats = Nats::start(&dir.path().join("nats"));
    // n1 alone at first, so that it is the node that runs the event and dead-letters it.
    let n1 = start_node(dir.path(), &nats, "n1");
    upstream.set_down(Some(503));
    let (status, answer) = n1.post("/hooks/fragile", r#"{"n": 7}"#).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["event_id"].as_str().unwrap().to_string();
    eventually("the dead letter on n1", Duration::from_secs(90), || async {
        dead_ids(&n1).await.contains(&id).then_some(())
    })
    .await;

    // n2 never saw the event: it lists the letter and shows the trail, under the same id.
    let n2 = start_node(dir.path(), &nats, "n2");
    let (status, page) = n2.admin("/api/dlq").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["event_id"], id.as_str(), "{page}");
    assert_eq!(page["items"][0]["attempts"], 4, "{page}");
    let (status, trail) = n2.admin(&format!("/api/events/{id}")).await;
    assert_eq!(status, 200, "{trail}");
    assert_eq!(trail["event_id"], id.as_str(), "{trail}");
    let (status, letter) = n2.admin(&format!("/api/dlq/{id}")).await;
    assert_eq!(status, 200, "{letter}");
    assert_eq!(letter["event"]["id"], id.as_str(), "{letter}");
    let listed = dlq_cli(dir.path(), &nats, &n2.url(""), &["list"]);
    assert!(listed.contains(&id), "{listed}");

    // Retried through n2 (by the CLI); n1 then finds no letter left to retry.
    upstream.set_down(None);
    dlq_cli(dir.path(), &nats, &n2.url(""), &["retry", &id]);
    let (status, again) = n1.admin_post(&format!("/api/dlq/{id}/retry")).await;
    assert_eq!(status, 404, "{again}");
    for node in [&n1, &n2] {
        eventually(
            "the retried event processed",
            Duration::from_secs(90),
            || async {
                let (_, trail) = node.admin(&format!("/api/events/{id}")).await;
                (trail["status"] == "processed").then_some(())
            },
        )
        .await;
    }
    // Nothing is left in the stream to deliver it again.
    eventually("the consumer idle", Duration::from_secs(60), || async {
        let (_, health) = n2.admin("/health").await;
        let c = &health["cluster"];
        (c["pending"] == 0 && c["ack_pending"] == 0).then_some(())
    })
    .await;
    assert_eq!(delivered(&upstream, 7), 1, "delivered once");
    assert!(dead_ids(&n1).await.is_empty());
    assert!(dead_ids(&n2).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attempts_carry_over_when_a_killed_node_s_event_moves_to_another() {
    let upstream = Upstream::start().await;
    let dir = project_of(&files(&upstream.url));
    let nats = Nats::start(&dir.path().join("nats"));
    let n1 = start_node(dir.path(), &nats, "n1");
    upstream.set_down(Some(503));
    let (status, answer) = n1.post("/hooks/fragile", r#"{"n": 8}"#).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["event_id"].as_str().unwrap().to_string();
    eventually("two attempts on n1", Duration::from_secs(60), || async {
        let (_, event) = n1.admin(&format!("/api/events/{id}")).await;
        (event["attempts"].as_u64().unwrap_or(0) >= 2).then_some(())
    })
    .await;
    n1.kill9();
    let before = upstream.hits();
    let n2 = start_node(dir.path(), &nats, "n2");
    eventually(
        "the dead letter, made on n2",
        Duration::from_secs(90),
        || async { dead_ids(&n2).await.contains(&id).then_some(()) },
    )
    .await;
    let (_, letter) = n2.admin(&format!("/api/dlq/{id}")).await;
    assert_eq!(letter["event"]["attempts"], 4, "{letter}");
    // Four attempts in all (one more if n1 died during a call), never four more on n2.
    let hits = upstream.hits();
    assert!(
        (4..=5).contains(&hits) && hits - before <= 3,
        "{before} calls before the kill, {hits} in all"
    );
}

/// Events with a correlation key, for the cluster's list and search.
const TAGGED: &str = r#"
pipeline: tagged
source:
  webhook: { path: /hooks/tagged }
keys: { order: $.order }
steps:
  - send: { to: up, op: post }
on_error:
  retry: { attempts: 60, initial: 100ms, max: 1s }
"#;

/// The project of [`files`] with `yaml` in place of the cluster's `ack_wait: 2s` line and
/// `extra` after it, and the `tagged` pipeline.
fn files_with(upstream: &str, nats: &str, extra: &str) -> Vec<(String, String)> {
    let mut files = files(upstream);
    let yaml = &mut files[0].1;
    *yaml = yaml.replace("ack_wait: 2s }", nats) + extra;
    files.push(("pipelines/tagged.yaml".into(), TAGGED.into()));
    files
}

/// Every page of `path` (which asks for small pages), following `next`; the ids in order.
async fn all_pages(node: &Engine, path: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    for _ in 0..20 {
        let (status, page) = node.admin(&format!("{path}&cursor={cursor}")).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            ids.push(item["event_id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => return ids,
        }
    }
    panic!("no end to the pages of {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_node_lists_searches_and_shows_the_events_of_every_node() {
    let upstream = Upstream::start().await;
    // One event at a time per node, each held 3 s at the upstream: the third and fourth wait
    // in the stream meanwhile.
    upstream.set_delay(Duration::from_secs(3));
    let nats_line = "ack_wait: 2s, max_inflight: 1 }";
    let dir = project_of(&files_with(&upstream.url, nats_line, ""));
    let nats = Nats::start(&dir.path().join("nats"));
    let nodes = [
        start_node(dir.path(), &nats, "n1"),
        start_node(dir.path(), &nats, "n2"),
    ];
    let mut ids = Vec::new();
    for i in 0..4 {
        let r = Engine::client()
            .post(nodes[0].url("/hooks/tagged"))
            .header("x-api-key", "key-that-is-secret")
            .body(format!(r#"{{"order":"o{i}","n":{i}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let answer: Value = r.json().await.unwrap();
        ids.push(answer["event_id"].as_str().unwrap().to_string());
    }
    // Accepted and not yet run: answered from the stream by either node, body included.
    let last = &ids[3];
    for node in &nodes {
        let (status, event) = node.admin(&format!("/api/events/{last}")).await;
        assert_eq!(status, 200, "{event}");
        assert_eq!(event["status"], "accepted", "{event}");
        assert_eq!(event["pipeline"], "tagged", "{event}");
        let (status, raw) = node.admin(&format!("/api/events/{last}/raw")).await;
        assert_eq!(status, 200, "{raw}");
        assert!(
            raw["preview"].as_str().unwrap().contains(r#""order":"o3""#),
            "{raw}"
        );
        assert_eq!(raw["headers"]["x-api-key"], "[redacted]", "{raw}");
    }
    upstream.set_delay(Duration::ZERO);
    eventually("every event processed", Duration::from_secs(60), || async {
        let (_, event) = nodes[1].admin(&format!("/api/events/{last}")).await;
        (received_ns(&upstream).len() == 4 && event["status"] == "processed").then_some(())
    })
    .await;

    // Both nodes ran some (one event each at a time); each lists all four, page by page.
    let mut expected = ids.clone();
    expected.sort();
    for node in &nodes {
        let mut listed = all_pages(node, "/api/events?limit=2").await;
        assert_eq!(listed.len(), 4, "{listed:?}");
        listed.sort();
        assert_eq!(listed, expected);
        let (_, page) = node.admin("/api/events?pipeline=relay").await;
        assert_eq!(page["items"].as_array().unwrap().len(), 0, "{page}");
        let (_, page) = node.admin("/api/events?outcome=processed&limit=500").await;
        assert_eq!(page["items"].as_array().unwrap().len(), 4, "{page}");
        for (i, id) in ids.iter().enumerate() {
            let found = all_pages(node, &format!("/api/events?key=order:o{i}&limit=1")).await;
            assert_eq!(found, vec![id.clone()], "key order:o{i}");
            let (status, raw) = node.admin(&format!("/api/events/{id}/raw")).await;
            assert_eq!(status, 200, "{raw}");
            let preview = raw["preview"].as_str().unwrap();
            assert!(preview.contains(&format!(r#""order":"o{i}""#)), "{raw}");
            assert_eq!(raw["headers"]["x-api-key"], "[redacted]", "{raw}");
        }
        let (_, page) = node.admin("/api/events?key=order:o9").await;
        assert_eq!(page["items"].as_array().unwrap().len(), 0, "{page}");
    }

    // A dead letter made on one node is counted by both nodes' `/health`.
    upstream.set_down(Some(503));
    let (status, answer) = nodes[1].post("/hooks/fragile", r#"{"n": 99}"#).await;
    assert_eq!(status, 202, "{answer}");
    for node in &nodes {
        eventually("the letter counted", Duration::from_secs(60), || async {
            let (_, health) = node.admin("/health").await;
            let (_, dlq) = node.admin("/api/dlq").await;
            (health["dead_letters"] == 1 && dlq["total"] == 1).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_that_kills_every_node_taking_it_is_quarantined_across_the_cluster() {
    let upstream = Upstream::start().await;
    // Every call hangs: each node taking the event is killed while it runs.
    upstream.set_delay(Duration::from_secs(600));
    let extra = "server: { quarantine_after: 2 }\n";
    let dir = project_of(&files_with(&upstream.url, "ack_wait: 2s }", extra));
    let nats = Nats::start(&dir.path().join("nats"));
    let n1 = start_node(dir.path(), &nats, "n1");
    let (status, answer) = n1.post("/hooks/fragile", r#"{"n": 5}"#).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["event_id"].as_str().unwrap().to_string();
    eventually(
        "the call under way on n1",
        Duration::from_secs(10),
        || async { (upstream.hits() >= 1).then_some(()) },
    )
    .await;
    n1.kill9();

    // Each node taking it next counts its run in the cluster before it begins, then dies.
    for (crash, name) in [(1u64, "n2"), (2, "n1")] {
        let node = start_node(dir.path(), &nats, name);
        eventually("the run counted", Duration::from_secs(30), || async {
            let (_, page) = node.admin("/api/inbox").await;
            (page["items"][0]["interrupted"].as_u64() == Some(crash)).then_some(())
        })
        .await;
        eventually("the call under way", Duration::from_secs(10), || async {
            (upstream.hits() > crash as usize).then_some(())
        })
        .await;
        node.kill9();
    }
    let hits = upstream.hits();

    // The third node to take it does not run it: two counted runs, from two nodes.
    let n2 = start_node(dir.path(), &nats, "n2");
    let letter = eventually("the dead letter", Duration::from_secs(30), || async {
        let (status, letter) = n2.admin(&format!("/api/dlq/{id}")).await;
        (status == 200).then_some(letter)
    })
    .await;
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.starts_with("quarantined"), "{reason}");
    assert!(reason.contains("stopped 2 times"), "{reason}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(upstream.hits(), hits, "the quarantined event was run again");
}
