//! The body projection (`projection`): `BodyParser` over arbitrary bytes, against a whole
//! parse with serde_json. Input: JSONPaths, one a line, then 0xFF, then the body.
//!
//! Where the whole parse succeeds the projecting parser must succeed with exactly
//! `need.project(&whole)`, also into a reused value; the checking parser and `check` must
//! agree with the whole parse on what is valid.
#![no_main]

use crossdock::projection::{check, BodyParser, Kind, Need};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let mut need = Need::default();
    for line in head.lines() {
        need.add_jsonpath(line);
    }
    let whole = serde_json::from_slice::<Value>(body);
    let checked = check(body);
    assert_eq!(
        whole.is_ok(),
        checked.is_ok(),
        "serde_json {whole:?} but check {checked:?}"
    );
    if let (Ok(w), Ok(kind)) = (&whole, &checked) {
        assert_eq!(Kind::of(w), *kind);
    }

    let parser = BodyParser::new(need.clone());
    let checking = BodyParser::checking(need.clone());
    let projected = parser.parse(body);
    let strict = checking.parse(body);
    assert_eq!(
        whole.is_ok(),
        strict.is_ok(),
        "serde_json {whole:?} but the checking parser {strict:?}"
    );
    if let Ok(w) = &whole {
        let expected = need.project(w);
        match &projected {
            Ok(p) => assert_eq!(p, &expected, "projection differs ({need:?})"),
            Err(e) => panic!("whole body parses but the projection fails: {e} ({need:?})"),
        }
        if let Ok(s) = &strict {
            assert_eq!(s, &expected, "checking projection differs ({need:?})");
        }
        // Into the value of an earlier parse (here: of another shape) the result is the same.
        for mut reused in [
            w.clone(),
            serde_json::json!({"a": [1, {"b": null}], "c": "d"}),
        ] {
            parser
                .parse_into(body, &mut reused)
                .unwrap_or_else(|e| panic!("parse_into failed where parse did not: {e}"));
            assert_eq!(reused, expected, "parse_into differs ({need:?})");
        }
    }
});
