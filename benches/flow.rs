//! Events per second, single-threaded, for a realistic BigCommerce order through the shipped
//! `bigcommerce-orders` flow (trigger, map, script, three sends) — bytes in, actions out as
//! JSON — beside the same transform hand-written against typed serde structs (the ceiling).
//! The target is a flow at >= 1/3 of the hand-written speed. See docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use crossdock::config::env::process_env;
use crossdock::flow::input::Body;
use crossdock::flow::{load, CompileOptions};
use crossdock::state::{MemoryStore, StateStore};
use crossdock::testing::event_info;

#[path = "handwritten.rs"]
mod handwritten;

fn orders() -> Vec<Vec<u8>> {
    let text = include_str!("data/bigcommerce-orders.jsonl");
    text.lines().map(|l| l.as_bytes().to_vec()).collect()
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (project, _) = match load(root, &process_env, CompileOptions::default()) {
        Ok(p) => p,
        Err(d) => panic!("the shipped project does not load:\n{d}"),
    };
    let flow = project
        .pipeline("bigcommerce-orders")
        .expect("pipeline")
        .clone();
    let state: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
    let orders = orders();
    let mut template = event_info(&flow.name, None, 1, "bench");
    template.received_at = "2026-11-21T09:30:00Z".into();

    let run = |o: &[u8]| {
        flow.run_body(
            &project.rules,
            template.clone(),
            Ok(Body::Json(o)),
            "bench",
            &state,
        )
    };

    // Sanity: both produce a result for every order.
    for o in &orders {
        let out = run(o);
        assert!(out.ok() && out.actions.len() == 3, "{:?}", out.errors);
        handwritten::transform(o).expect("hand-written transform");
    }

    let mut group = c.benchmark_group("bigcommerce-order");
    group.throughput(Throughput::Elements(orders.len() as u64));
    group.bench_function("handwritten-serde", |b| {
        b.iter(|| {
            for o in &orders {
                std::hint::black_box(handwritten::transform(o).ok());
            }
        })
    });
    group.bench_function("crossdock-flow", |b| {
        b.iter(|| {
            for o in &orders {
                std::hint::black_box(serde_json::to_vec(&run(o).actions).ok());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
