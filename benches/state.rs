//! Stock `reserve` + `release` pairs per second through the domain functions, on the sled store
//! (a real directory on disk, periodic flush) and on the in-memory store for comparison: one
//! hot SKU and 10,000 distinct SKUs, on one thread and on two. Criterion's `thrpt` is in
//! pairs/s. Target: >= 50,000 pairs/s on 2 cores for distinct SKUs on sled. The `parts` group
//! splits a pair's cost (JSON, bare sled transactions) for docs/state.md.
//! `reserve_release_jetstream` runs the same pairs on a cluster's JetStream key-value store
//! when `CROSSDOCK_BENCH_NATS` names a NATS server (docs/cluster.md, "Figures").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// The binary's allocator (src/main.rs), so the store is measured as `crossdock run` uses it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};

use crossdock::state::stock;
use crossdock::state::{Durability, MemoryStore, SledStore, StateStore};

/// Order ids are never reused, across threads and samples, so every reserve is a new order.
static NEXT_ORDER: AtomicU64 = AtomicU64::new(0);

const DISTINCT: usize = 10_000;

fn skus(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("SKU-{i:05}")).collect()
}

fn stocked(store: &dyn StateStore, skus: &[String]) {
    for sku in skus {
        stock::set(store, sku, 1_000_000_000).unwrap();
    }
}

/// `n` reserve + release pairs of one unit each.
fn pairs(store: &dyn StateStore, skus: &[String], n: u64) {
    for _ in 0..n {
        let id = NEXT_ORDER.fetch_add(1, Ordering::Relaxed);
        let order = format!("o-{id}");
        let sku = &skus[(id % skus.len() as u64) as usize];
        let answer = stock::reserve(store, &order, &[(sku.clone(), 1)]).unwrap();
        assert!(answer.ok);
        assert!(stock::release(store, &order).unwrap());
    }
}

/// Wall time of `iters` pairs split over `threads` threads, until `settle` returns (the sled
/// store lands its buffered writes there, so the time includes writing them).
fn timed(
    store: &dyn StateStore,
    settle: &dyn Fn(),
    skus: &[String],
    threads: u64,
    iters: u64,
) -> Duration {
    let start = Instant::now();
    if threads == 1 {
        pairs(store, skus, iters);
    } else {
        std::thread::scope(|s| {
            for t in 0..threads {
                let n = iters / threads + u64::from(t < iters % threads);
                s.spawn(move || pairs(store, skus, n));
            }
        });
    }
    settle();
    start.elapsed()
}

fn reserve_release(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve_release");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let one = skus(1);
    let many = skus(DISTINCT);
    // Under the target directory's filesystem (a real disk), not sled's /dev/shm temporary.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for (store_name, make) in [("sled", 0), ("sled-fsync-each", 1), ("memory", 2)] {
        for (sku_name, list) in [("1-sku", &one), ("10k-skus", &many)] {
            for threads in [1u64, 2] {
                if make == 1 && (threads == 2 || list.len() == 1) {
                    continue; // one case is enough to show the cost of an fsync per update
                }
                let durability = match make {
                    1 => Durability::EachUpdate,
                    _ => Durability::default(),
                };
                let sled = (make < 2).then(|| {
                    let path = dir
                        .path()
                        .join(format!("{store_name}-{sku_name}-{threads}"));
                    SledStore::open_with(path, durability).unwrap()
                });
                let memory = MemoryStore::new();
                let store: &dyn StateStore = match &sled {
                    Some(s) => s,
                    None => &memory,
                };
                let settle = || {
                    if let Some(s) = &sled {
                        s.land().unwrap();
                    }
                };
                stocked(store, list);
                let id = BenchmarkId::new(store_name, format!("{sku_name}/{threads}t"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| timed(store, &settle, list, threads, iters))
                });
            }
        }
    }
    group.finish();
}

/// Pairs on the cluster's store, the JetStream key-value buckets of a NATS server at the URL in
/// `CROSSDOCK_BENCH_NATS` (skipped without it; tools/cluster-load.sh starts one and sets it).
/// Each run has buckets of its own (a fresh prefix). Fewer distinct SKUs than on sled: each
/// is stocked with a round trip of its own before the run.
fn reserve_release_jetstream(c: &mut Criterion) {
    let Ok(url) = std::env::var("CROSSDOCK_BENCH_NATS") else {
        eprintln!("reserve_release_jetstream: CROSSDOCK_BENCH_NATS is not set; skipped");
        return;
    };
    let mut group = c.benchmark_group("reserve_release_jetstream");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let prefix = format!("bench{}", std::process::id());
    let config: crossdock::config::model::ClusterConfig = serde_json::from_value(json!({
        "nats": { "url": url, "prefix": prefix },
        "node": "bench",
    }))
    .unwrap();
    let settings = crossdock::cluster::Settings::from_config(std::path::Path::new("."), &config);
    let store = crossdock::cluster::state::JetStreamStore::open(&settings).unwrap();
    let one = skus(1);
    let many = skus(1_000);
    stocked(&store, &one);
    stocked(&store, &many);
    for (sku_name, list, threads) in [
        ("1-sku", &one, 1u64),
        ("1k-skus", &many, 1),
        ("1k-skus", &many, 4),
    ] {
        let id = BenchmarkId::new("jetstream", format!("{sku_name}/{threads}t"));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| timed(&store, &|| {}, list, threads, iters))
        });
    }
    group.finish();
}

/// `stock::set` per second: a one-key update (a stock sync from the ERP sets thousands of SKUs
/// at once).
fn set_one_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("stock_set");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let many = skus(DISTINCT);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let sled = SledStore::open(dir.path().join("set")).unwrap();
    let memory = MemoryStore::new();
    for (name, store) in [("sled", &sled as &dyn StateStore), ("memory", &memory)] {
        let mut n = 0u64;
        group.bench_function(BenchmarkId::new(name, "10k-skus/1t"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    n += 1;
                    let sku = &many[(n % DISTINCT as u64) as usize];
                    stock::set(store, sku, (n % 1000) as i64).unwrap();
                }
                sled.land().unwrap();
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// Where a pair's time goes: the JSON work the domain does and the bare sled transactions.
fn parts(c: &mut Criterion) {
    let mut group = c.benchmark_group("parts");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let level = json!({"on_hand": 1_000_000_000, "reserved": 3});
    let reservation = json!({"status": "reserved", "items": [{"sku": "SKU-00042", "qty": 1}],
        "answer": {"ok": true, "shortfalls": []}});
    let level_bytes = serde_json::to_vec(&level).unwrap();
    let res_bytes = serde_json::to_vec(&reservation).unwrap();
    // A pair decodes 2 levels, 2 reservations (release reads it outside and inside its
    // transaction) and encodes 2 levels and 2 reservations.
    group.bench_function("json_of_a_pair", |b| {
        b.iter(|| {
            for _ in 0..2 {
                let l: Value = serde_json::from_slice(&level_bytes).unwrap();
                let r: Value = serde_json::from_slice(&res_bytes).unwrap();
                std::hint::black_box(serde_json::to_vec(&l).unwrap());
                std::hint::black_box(serde_json::to_vec(&r).unwrap());
            }
        })
    });
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let db = sled::Config::new()
        .path(dir.path().join("raw"))
        .open()
        .unwrap();
    let tree = db.open_tree("state").unwrap();
    let many = skus(DISTINCT);
    for sku in &many {
        tree.insert(format!("stock/{sku}"), level_bytes.clone())
            .unwrap();
    }
    let mut n = 0u64;
    // The same key traffic as a pair, with fixed bytes: 2 transactions of 2 reads + 2 writes,
    // and the plain read `release` does first.
    group.bench_function("sled_txns_of_a_pair", |b| {
        b.iter(|| {
            n += 1;
            let rkey = format!("reservation/o-{n}");
            let skey = format!("stock/{}", many[(n % DISTINCT as u64) as usize]);
            for _ in 0..2 {
                tree.transaction(|tx| {
                    let _ = tx.get(rkey.as_bytes())?;
                    let _ = tx.get(skey.as_bytes())?;
                    tx.insert(rkey.as_bytes(), res_bytes.as_slice())?;
                    tx.insert(skey.as_bytes(), level_bytes.as_slice())?;
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                })
                .unwrap();
            }
            std::hint::black_box(tree.get(rkey.as_bytes()).unwrap());
        })
    });
    group.bench_function("sled_plain_ops_of_a_pair", |b| {
        b.iter(|| {
            n += 1;
            let rkey = format!("reservation/o-{n}");
            let skey = format!("stock/{}", many[(n % DISTINCT as u64) as usize]);
            for _ in 0..2 {
                std::hint::black_box(tree.get(rkey.as_bytes()).unwrap());
                std::hint::black_box(tree.get(skey.as_bytes()).unwrap());
                tree.insert(rkey.as_bytes(), res_bytes.as_slice()).unwrap();
                tree.insert(skey.as_bytes(), level_bytes.as_slice())
                    .unwrap();
            }
            std::hint::black_box(tree.get(rkey.as_bytes()).unwrap());
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    reserve_release,
    set_one_key,
    parts,
    reserve_release_jetstream
);
criterion_main!(benches);
