//! Selector speed on a realistic record: a BigCommerce V2 order with three line items
//! (`benches/data/bigcommerce-order.json`, shared with the flow bench, 3.5 KB) queried with
//! typical mapping paths, each compiled once beforehand.
//!
//! For every path: `crossdock` (our `JsonPath::query`: the fast path for names, indexes and
//! wildcards, the engine otherwise), `crossdock_first` (`JsonPath::first`, what a singular
//! mapping field calls), `serde_json_path` (the engine alone) and `jsonpath_rust` (the crate
//! we did not choose; see docs/jsonpath.md). Run with `cargo bench --bench jsonpath`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use crossdock::jsonpath::JsonPath;
use serde_json::Value;

const ORDER: &str = include_str!("data/bigcommerce-order.json");

const PATHS: &[(&str, &str)] = &[
    ("email", "$.billing_address.email"),
    ("total", "$.total_inc_tax"),
    ("first_sku", "$.products[0].sku"),
    ("all_skus", "$.products[*].sku"),
    ("filter", "$.products[?@.quantity > 1].sku"),
];

fn selectors(c: &mut Criterion) {
    let order: Value = match serde_json::from_str(ORDER) {
        Ok(v) => v,
        Err(e) => panic!("bad fixture: {e}"),
    };
    for (label, src) in PATHS {
        let ours = match JsonPath::parse(src) {
            Ok(p) => p,
            Err(e) => panic!("{src}: {e}"),
        };
        let sjp = match serde_json_path::JsonPath::parse(src) {
            Ok(p) => p,
            Err(e) => panic!("{src}: {e}"),
        };
        let jr = match jsonpath_rust::parser::parse_json_path(src) {
            Ok(p) => p,
            Err(e) => panic!("{src}: {e}"),
        };
        // All three must agree before their speed means anything.
        let want = ours.query(&order);
        assert_eq!(sjp.query(&order).all(), want, "{src}");
        let got: Vec<&Value> = jsonpath_rust::query::js_path_process(&jr, &order)
            .map(|r| r.into_iter().map(|r| r.val()).collect())
            .unwrap_or_default();
        assert_eq!(got, want, "{src}");

        let mut group = c.benchmark_group(format!("jsonpath/{label}"));
        group.bench_function("crossdock", |b| {
            b.iter(|| black_box(ours.query(black_box(&order))))
        });
        group.bench_function("crossdock_first", |b| {
            b.iter(|| black_box(ours.first(black_box(&order))))
        });
        group.bench_function("serde_json_path", |b| {
            b.iter(|| black_box(sjp.query(black_box(&order)).all()))
        });
        group.bench_function("jsonpath_rust", |b| {
            b.iter(|| {
                black_box(jsonpath_rust::query::js_path_process(
                    &jr,
                    black_box(&order),
                ))
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = selectors
}
criterion_main!(benches);
