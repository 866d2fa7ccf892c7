//! The JSONPath Compliance Test Suite (RFC 9535), every case, through the crate's own
//! `JsonPath`: invalid selectors must fail to parse; valid ones must select exactly `result`
//! (or one of `results`, for queries whose order the RFC leaves open), in order.
//!
//! The suite is `tests/fixtures/jsonpath-cts.json`, copied byte for byte from
//! jsonpath-standard/jsonpath-compliance-test-suite (see `jsonpath-cts.NOTICE` beside it).
//! It runs with serde_json's `arbitrary_precision` on, as the crate does.

use crossdock::jsonpath::JsonPath;
use serde_json::Value;

const CASES: usize = 703;

#[test]
fn every_compliance_case_passes() -> Result<(), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jsonpath-cts.json"
    ))?;
    let suite: Value = serde_json::from_str(&text)?;
    let cases = suite["tests"].as_array().ok_or("no `tests` array")?;

    let mut seen = 0;
    let mut failures = Vec::new();
    for case in cases {
        seen += 1;
        let name = case["name"].as_str().unwrap_or("?");
        let selector = case["selector"].as_str().ok_or("case without selector")?;
        let invalid = case["invalid_selector"].as_bool().unwrap_or(false);
        match (JsonPath::parse(selector), invalid) {
            (Err(_), true) => {}
            (Ok(_), true) => {
                failures.push(format!("{name}: `{selector}` accepted, must be rejected"))
            }
            (Err(e), false) => failures.push(format!(
                "{name}: `{selector}` rejected at byte {}: {e}",
                e.offset
            )),
            (Ok(path), false) => {
                let got =
                    Value::Array(path.query(&case["document"]).into_iter().cloned().collect());
                let ok = match (case.get("result"), case["results"].as_array()) {
                    (Some(want), _) => &got == want,
                    (None, Some(alternatives)) => alternatives.contains(&got),
                    (None, None) => false,
                };
                if !ok {
                    let want = case.get("result").unwrap_or(&case["results"]);
                    failures.push(format!("{name}: `{selector}` gave {got}, expected {want}"));
                }
                // The first node is the first of the node list.
                let first = path.first(&case["document"]);
                if first != got.as_array().and_then(|a| a.first()) {
                    failures.push(format!(
                        "{name}: `{selector}` first() disagrees with query()"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seen} compliance cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(seen, CASES, "the suite should hold {CASES} cases");
    Ok(())
}
