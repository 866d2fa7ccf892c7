//! JSONPath (`jsonpath` and its evaluator `query.rs`) against the `serde_json_path`
//! engine it follows: the same queries accepted, and the same nodes, in the same order, for
//! every accepted query. Input: the query, 0xFF, then the JSON document.
#![no_main]

use crossdock::fuzzing::engine_text;
use crossdock::jsonpath::{Budget, JsonPath, Limits};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (query, doc) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (
            data,
            &b"{\"a\":[1,{\"b\":2}],\"c\":{\"d\":[true,null,\"x\"]}}"[..],
        ),
    };
    let Ok(src) = std::str::from_utf8(query) else {
        return;
    };
    let ours = match JsonPath::parse(src) {
        Ok(ours) => ours,
        // Refused by our guards before the engine sees it: nesting (deliberately stricter
        // than the engine) and strings left open (where the engine panics).
        Err(e) if e.message.contains("nest") || e.message.contains("not closed") => return,
        Err(e) => {
            if serde_json_path::JsonPath::parse(&engine_text(src)).is_ok() {
                panic!("{src:?}: the engine accepts it, we refuse: {e}");
            }
            return;
        }
    };
    let engine = match serde_json_path::JsonPath::parse(&engine_text(src)) {
        Ok(engine) => engine,
        Err(e) => panic!("{src:?}: the engine refuses it, we accept: {e}"),
    };
    let Ok(doc) = serde_json::from_slice::<Value>(doc) else {
        return;
    };
    // The engine has no budget: it only runs on what ours finished within a small one, so a
    // query whose result grows with a power of the document cannot exhaust the fuzzer.
    let mut budget = Budget::new(Limits {
        nodes: 100_000,
        ..Limits::default()
    });
    let Ok(within) = ours.query_within(&doc, &mut budget) else {
        return;
    };
    let expected = engine.query(&doc).all();
    assert!(
        same_nodes(&within, &expected),
        "{src:?} on {doc}: ours {within:?}, engine {expected:?}"
    );
    let unbudgeted = ours.query(&doc);
    assert!(
        same_nodes(&unbudgeted, &expected),
        "{src:?}: query differs from query_within"
    );
    let first = ours.first(&doc);
    assert!(
        first.map(|v| v as *const Value) == expected.first().map(|v| *v as *const Value),
        "{src:?}: first() is not the first node"
    );
    if ours.is_singular() {
        assert!(
            expected.len() <= 1,
            "{src:?}: singular but selects {}",
            expected.len()
        );
    }
});

/// The same nodes of the document, not only equal values: `$[0,1]` over `[1,1]` must not
/// be answered with the first element twice.
fn same_nodes(a: &[&Value], b: &[&Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| std::ptr::eq(*x, *y))
}
