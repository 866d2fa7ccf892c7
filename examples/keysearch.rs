//! How long the events search takes among many stored events (docs/runtime.md, "Searching by
//! business key"): N events accepted and finished in a sled store, each with a trail, a raw
//! delivery and two correlation keys (an order id shared by 3 events, a customer by 50); then
//! `GET /api/events?key=...` as the engine answers it (`Inbox::key_page`, 50 a page) for
//! orders across the whole range, a customer's first page, a key no event has, and for
//! comparison the same order found by reading trails (`Inbox::trail_page` with its 5,000-trail
//! scan bound, which cannot search by key: it reads trails until a page is full or the bound).
//! Prints the median and the slowest of each.
//!
//!   cargo run --release --example keysearch -- 100000 /tmp/keysearch

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossdock::runtime::inbox::{now_rfc3339, Trail, TrailFilter};
use crossdock::runtime::{Accepted, FlushPolicy, Inbox};
use crossdock::state::SledStore;

fn timed(runs: usize, mut f: impl FnMut(usize) -> usize) -> (Duration, Duration, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut found = 0;
    for i in 0..runs {
        let started = Instant::now();
        found += f(i);
        times.push(started.elapsed());
    }
    times.sort();
    (times[runs / 2], times[runs - 1], found)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map(|s| s.parse().unwrap()).unwrap_or(100_000);
    let dir = std::path::PathBuf::from(args.next().expect("a folder to write the store in"));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(SledStore::open(&dir).unwrap());
    let inbox = Inbox::open(store.clone(), FlushPolicy::Periodic).unwrap();
    let started = Instant::now();
    let mut raw_id = String::new();
    for i in 0..n {
        let order = i / 3;
        let customer = format!("customer-{}@example.com", i / 50);
        let body = format!(
            r#"{{"id":{order},"customer":{{"email":"{customer}"}},"lines":[{{"sku":"OAK-CH-01","qty":2}}],"note":"{}"}}"#,
            "x".repeat(600)
        );
        let headers = BTreeMap::from([
            ("content-type".to_string(), "application/json".to_string()),
            ("x-shopify-topic".to_string(), "orders/create".to_string()),
        ]);
        let Accepted::New(mut event) = inbox
            .accept(
                "orders",
                &[&format!("id:{i}")],
                Duration::ZERO,
                headers,
                body.as_bytes(),
            )
            .unwrap()
        else {
            panic!("a new event was taken for a duplicate")
        };
        event.meta.keys = BTreeMap::from([
            ("order".to_string(), order.to_string()),
            ("customer".to_string(), customer),
        ]);
        let trail = Trail {
            event_id: event.meta.id.clone(),
            pipeline: "orders".into(),
            version: "v1".into(),
            received_at: event.meta.received_at.clone(),
            finished_at: now_rfc3339(),
            status: "processed".into(),
            attempts: 1,
            steps: vec![Arc::from("steps[0] (send erp create)")],
            actions: Vec::new(),
            errors: Vec::new(),
            flow_us: 40,
            total_ms: 3,
            compensations: Vec::new(),
            keys: event.meta.keys.clone(),
            tenant: None,
            explanation: None,
        };
        inbox.finish(&event, &trail).unwrap();
        if i == n / 2 {
            raw_id = event.meta.id.clone();
        }
    }
    store.flush().unwrap();
    println!(
        "{n} events stored in {:.1} s; tally {:?}",
        started.elapsed().as_secs_f64(),
        inbox.tally()
    );
    let all = TrailFilter::default();
    let orders = (n / 3).max(1);
    let report = |what: &str, (median, max, found): (Duration, Duration, usize)| {
        println!(
            "{what}: median {:.3} ms, slowest {:.3} ms ({found} events found)",
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    };
    let runs = 200;
    let order_of = |i: usize| (i as u64 * 7919) % orders;
    report(
        "key=order:N, 200 orders across the range",
        timed(runs, |i| {
            let page = inbox
                .key_page(("order", &order_of(i).to_string()), &all, None, 50, 5000)
                .unwrap();
            page["items"].as_array().unwrap().len()
        }),
    );
    report(
        "key=customer:C, first page",
        timed(runs, |i| {
            let customer = format!("customer-{}@example.com", (i as u64 * 31) % (n / 50).max(1));
            let page = inbox
                .key_page(("customer", &customer), &all, None, 50, 5000)
                .unwrap();
            page["items"].as_array().unwrap().len()
        }),
    );
    report(
        "key=order:none (no event has it)",
        timed(runs, |_| {
            let page = inbox
                .key_page(("order", "none"), &all, None, 50, 5000)
                .unwrap();
            page["items"].as_array().unwrap().len()
        }),
    );
    // The list without a key reads trails newest first: a page of 50 of every event is fast,
    // but finding one old order that way means reading trails up to the scan bound, page after
    // page.
    report(
        "no key, newest page of 50",
        timed(runs, |_| {
            let page = inbox.trail_page(&all, None, 50, 5000).unwrap();
            page["items"].as_array().unwrap().len()
        }),
    );
    let nothing = TrailFilter {
        pipeline: Some("nope"),
        ..TrailFilter::default()
    };
    report(
        "no key, a filter that matches nothing (one 5,000-trail scan)",
        timed(20, |_| {
            let page = inbox.trail_page(&nothing, None, 50, 5000).unwrap();
            page["items"].as_array().unwrap().len()
        }),
    );
    report(
        "an event's raw delivery",
        timed(runs, |_| usize::from(inbox.raw(&raw_id).unwrap().is_some())),
    );
}
