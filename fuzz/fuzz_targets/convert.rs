//! JSON <-> Rhai conversion (`rules::convert`): JSON -> Dynamic -> JSON keeps every value
//! (numbers by value, in the forms the module's table promises), a second round trip changes
//! nothing, and the projected conversion and write-back agree with the whole ones. Input:
//! JSONPaths for a need, one a line, then 0xFF, then the JSON value (or only the value).
#![no_main]

use crossdock::projection::Need;
use crossdock::rules::convert::{
    dynamic_to_json, exact_decimal, json_to_dynamic, json_to_dynamic_projected, write_back_dynamic,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let once = round_trip(&value);
    same_value(&value, &once);
    assert_eq!(
        round_trip(&once),
        once,
        "a second round trip changed {once}"
    );

    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    if head.is_empty() {
        return;
    }
    let mut need = Need::default();
    for line in head.lines() {
        need.add_jsonpath(line);
    }
    let projected = json_to_dynamic_projected(&value, &need)
        .unwrap_or_else(|e| panic!("projected conversion failed: {e}"));
    let back = dynamic_to_json(&projected).unwrap_or_else(|e| panic!("back failed: {e}"));
    assert_eq!(
        back,
        round_trip(&need.project(&value)),
        "projected conversion ({need:?})"
    );
    // Writing back what a script left unchanged gives the whole value, converted once.
    let mut target = value.clone();
    write_back_dynamic(&need, &mut target, &projected)
        .unwrap_or_else(|e| panic!("write back failed: {e}"));
    assert_eq!(
        round_trip(&target),
        once,
        "write back changed the value ({need:?})"
    );
});

fn round_trip(v: &Value) -> Value {
    let d = json_to_dynamic(v).unwrap_or_else(|e| panic!("to Dynamic failed: {e}"));
    dynamic_to_json(&d).unwrap_or_else(|e| panic!("to JSON failed: {e}"))
}

/// `b` is `a` converted: equal, but for numbers, which keep their value (an integer, an
/// exact decimal) or come back as a string of their text.
fn same_value(a: &Value, b: &Value) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.to_string(), y.to_string());
            match (exact_decimal(&x), exact_decimal(&y)) {
                (Some(dx), Some(dy)) => assert_eq!(dx, dy, "{x} came back as {y}"),
                _ => panic!("{x} came back as {y}"),
            }
        }
        (Value::Number(x), Value::String(s)) => {
            assert_eq!(&x.to_string(), s, "a number came back as another string");
            assert!(
                exact_decimal(s).is_none(),
                "{s} was exact but became a string"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).for_each(|(x, y)| same_value(x, y));
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len());
            for (k, v) in x {
                same_value(v, y.get(k).unwrap_or_else(|| panic!("key {k:?} lost")));
            }
        }
        (x, y) => assert_eq!(x, y),
    }
}
