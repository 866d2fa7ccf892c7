//! The state domain logic on a real sled database in a temporary directory: concurrent
//! reservations, durability across a reopen and across a crash, exact money.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::json;

use crossdock::state::stock::{self, ReserveAnswer};
use crossdock::state::{customers, SledStore, StateStore};

fn items(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(s, q)| (s.to_string(), *q)).collect()
}

const SKUS: [(&str, i64); 3] = [("A", 40), ("B", 25), ("C", 10)];

/// The items order `n` asks for: mostly one unit of one SKU (more such orders than stock for
/// every SKU, so each SKU must end fully reserved), some multi-SKU orders to exercise
/// all-or-nothing, listed in varying order.
fn order_items(n: usize) -> Vec<(String, i64)> {
    match n % 7 {
        0 => items(&[("A", 2), ("B", 1), ("C", 1)]),
        1 => items(&[("C", 1), ("A", 3)]),
        2 | 5 => items(&[("A", 1)]),
        3 => items(&[("B", 1)]),
        4 => items(&[("C", 1)]),
        _ => items(&[("B", 2), ("A", 1), ("B", 1)]), // B listed twice: 3 units
    }
}

fn level(store: &dyn StateStore, sku: &str) -> (i64, i64) {
    let v = store.get(&format!("stock/{sku}")).unwrap().unwrap();
    (
        v["on_hand"].as_i64().unwrap(),
        v["reserved"].as_i64().unwrap(),
    )
}

/// Units per SKU that the given orders hold.
fn held(orders: impl IntoIterator<Item = usize>) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = SKUS.iter().map(|(s, _)| (s.to_string(), 0)).collect();
    for n in orders {
        for (sku, qty) in order_items(n) {
            *out.entry(sku).or_default() += qty;
        }
    }
    out
}

fn assert_stock(store: &dyn StateStore, want_reserved: &BTreeMap<String, i64>) {
    for (sku, on_hand) in SKUS {
        let (h, r) = level(store, sku);
        assert_eq!(h, on_hand, "{sku} on hand");
        assert_eq!(r, want_reserved[sku], "{sku} reserved");
        assert!(r >= 0 && r <= h, "{sku}: reserved {r} of {h}");
        assert_eq!(stock::available(store, sku).unwrap(), h - r);
    }
}

#[test]
fn concurrent_reservations_and_releases_on_sled() {
    const ORDERS: usize = 120;
    const THREADS: usize = 8;
    let store = Arc::new(SledStore::temporary().unwrap());
    for (sku, n) in SKUS {
        stock::set(&*store, sku, n).unwrap();
    }

    // Every thread sends every order twice (a redelivery to itself), starting at a different
    // place so that the same order id is in flight on several threads at once.
    let answers: Vec<Vec<(usize, ReserveAnswer)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut seen = Vec::new();
                    for i in 0..2 * ORDERS {
                        let n = (i + t * 37) % ORDERS;
                        let answer =
                            stock::reserve(&**store, &format!("o-{n}"), &order_items(n)).unwrap();
                        seen.push((n, answer));
                    }
                    seen
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // Every order id got one answer, whoever asked and however often.
    let mut first: BTreeMap<usize, ReserveAnswer> = BTreeMap::new();
    for (n, answer) in answers.into_iter().flatten() {
        let stored = first.entry(n).or_insert_with(|| answer.clone());
        assert_eq!(*stored, answer, "order o-{n} answered differently");
    }
    assert_eq!(first.len(), ORDERS);
    let won: BTreeSet<usize> = first
        .iter()
        .filter(|(_, a)| a.ok)
        .map(|(n, _)| *n)
        .collect();
    assert!(first.values().all(|a| a.ok == a.shortfalls.is_empty()));

    // Demand exceeds stock for every SKU, with enough single-unit orders that no unit can be
    // left over: exactly the available quantity is reserved, by exactly the winning orders.
    let want = held(won.iter().copied());
    assert_eq!(
        want,
        SKUS.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        "every unit reserved once"
    );
    assert_stock(&*store, &want);
    let live = store
        .scan_prefix("reservation/")
        .unwrap()
        .into_iter()
        .filter(|(_, v)| v["status"] == "reserved")
        .count();
    assert_eq!(live, won.len());

    // Release half of the winners, each release sent by every thread: one of them ends the
    // reservation, the others find it ended; exactly its units come back.
    let (to_release, to_keep): (Vec<usize>, Vec<usize>) = won.iter().partition(|n| *n % 2 == 0);
    let ended: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                let list = &to_release;
                s.spawn(move || {
                    let mut ended = 0;
                    for i in 0..list.len() {
                        let n = list[(i + t * 5) % list.len()];
                        if stock::release(&**store, &format!("o-{n}")).unwrap() {
                            ended += 1;
                        }
                        // A redelivered reservation still answers as the first time and
                        // reserves nothing again.
                        let again =
                            stock::reserve(&**store, &format!("o-{n}"), &order_items(n)).unwrap();
                        assert!(again.ok);
                    }
                    ended
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(ended, to_release.len(), "each reservation released once");
    assert_stock(&*store, &held(to_keep.iter().copied()));

    // Refused orders hold nothing to release; the rest give back exactly what they held.
    for n in (0..ORDERS).filter(|n| !won.contains(n)) {
        assert!(!stock::release(&*store, &format!("o-{n}")).unwrap());
    }
    for n in &to_keep {
        assert!(stock::release(&*store, &format!("o-{n}")).unwrap());
    }
    assert_stock(&*store, &held([]));
}

#[test]
fn values_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    {
        let store = SledStore::open(&path).unwrap();
        stock::set(&store, "A", 10).unwrap();
        assert!(
            stock::reserve(&store, "o-1", &items(&[("A", 3)]))
                .unwrap()
                .ok
        );
        customers::record_order(
            &store,
            "c-1",
            "1",
            Decimal::from_str("5.50").unwrap(),
            "2026-01-02",
        )
        .unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    assert_eq!(stock::available(&store, "A").unwrap(), 7);
    assert_eq!(
        store.get("stock/A").unwrap(),
        Some(json!({"on_hand": 10, "reserved": 3}))
    );
    // The reservation is remembered: a replay answers the same and reserves nothing.
    assert!(
        stock::reserve(&store, "o-1", &items(&[("A", 3)]))
            .unwrap()
            .ok
    );
    assert_eq!(stock::available(&store, "A").unwrap(), 7);
    assert!(stock::release(&store, "o-1").unwrap());
    assert_eq!(stock::available(&store, "A").unwrap(), 10);
    let c = customers::get(&store, "c-1").unwrap().unwrap();
    assert_eq!(c.lifetime_value.to_string(), "5.50");
    assert_eq!(c.orders, 1);
}

#[test]
fn lifetime_value_is_exact_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let d = |s: &str| Decimal::from_str(s).unwrap();
    {
        let store = SledStore::open(&path).unwrap();
        customers::record_order(&store, "c-42", "100", d("19.99"), "2026-01-05").unwrap();
        customers::record_order(&store, "c-42", "101", d("0.10"), "2026-01-02T10:00:00Z").unwrap();
        let s = customers::record_order(&store, "c-42", "102", d("0.20"), "2026-02-01").unwrap();
        assert_eq!(s.lifetime_value.to_string(), "20.29");
        assert_eq!(s.orders, 3);
        // The same order id again is not counted twice.
        let again =
            customers::record_order(&store, "c-42", "101", d("0.10"), "2026-01-02").unwrap();
        assert_eq!(again, s);
        store.flush().unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    let s = customers::get(&store, "c-42").unwrap().unwrap();
    assert_eq!(s.lifetime_value, d("20.29"));
    assert_eq!(s.orders, 3);
    assert_eq!(
        (s.first_order.as_str(), s.last_order.as_str()),
        ("2026-01-02", "2026-02-01")
    );
    assert_eq!(
        store.get("customer/c-42").unwrap().unwrap()["lifetime_value"],
        "20.29",
        "stored as an exact decimal string"
    );
    let replay = customers::record_order(&store, "c-42", "102", d("0.20"), "2026-02-01").unwrap();
    assert_eq!(replay.orders, 3);
    // 0.1 + 0.2 is 0.3.
    customers::record_order(&store, "c-7", "1", d("0.1"), "2026-01-01").unwrap();
    let s = customers::record_order(&store, "c-7", "2", d("0.2"), "2026-01-01").unwrap();
    assert_eq!(s.lifetime_value.to_string(), "0.3");
}

const CRASH_DIR: &str = "CROSSDOCK_SLED_CRASH_DIR";
const FLUSHED: usize = 50;
const AFTER: usize = 200;

/// The child side of `recovers_after_a_crash`: reserve, flush, reserve more, then die without
/// unwinding or closing anything (as `kill -9` or a power cut would, as far as sled can tell).
fn crash_child(dir: &Path) -> ! {
    let store = SledStore::open(dir).unwrap();
    stock::set(&store, "A", 1_000_000).unwrap();
    stock::set(&store, "B", 1_000_000).unwrap();
    for n in 0..FLUSHED + AFTER {
        let list = items(&[("A", 1 + (n % 3) as i64), ("B", 2)]);
        assert!(stock::reserve(&store, &format!("o-{n}"), &list).unwrap().ok);
        if n % 4 == 0 {
            stock::release(&store, &format!("o-{n}")).unwrap();
        }
        if n + 1 == FLUSHED {
            store.flush().unwrap();
        }
    }
    std::process::abort();
}

#[test]
fn recovers_after_a_crash() {
    if let Some(dir) = std::env::var_os(CRASH_DIR) {
        crash_child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "recovers_after_a_crash",
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");

    let store = SledStore::open(dir.path()).unwrap();
    let reservations = store.scan_prefix("reservation/").unwrap();
    // Everything flushed is there; later updates may or may not be, but only whole.
    assert!(reservations.len() >= FLUSHED, "{}", reservations.len());
    for n in 0..FLUSHED {
        let status = if n % 4 == 0 { "released" } else { "reserved" };
        assert_eq!(
            store.get(&format!("reservation/o-{n}")).unwrap().unwrap()["status"],
            status
        );
    }
    // Each reservation and its stock moved together: the SKUs hold exactly what the live
    // reservations say, whatever point the crash cut the log at.
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for (_, v) in &reservations {
        if v["status"] == "reserved" {
            for item in v["items"].as_array().unwrap() {
                *want
                    .entry(item["sku"].as_str().unwrap().to_string())
                    .or_default() += item["qty"].as_i64().unwrap();
            }
        }
    }
    for sku in ["A", "B"] {
        assert_eq!(level(&store, sku), (1_000_000, want[sku]), "{sku}");
    }
    // And the store works on: the recovered state accepts new updates.
    assert!(
        stock::reserve(&store, "after", &items(&[("A", 1)]))
            .unwrap()
            .ok
    );
}
