use super::*;
use serde_json::json;

fn name(s: &str) -> PathStep {
    PathStep::Name(s.into())
}

#[test]
fn simple_paths_parse_and_complex_ones_do_not() {
    assert_eq!(simple_path("$.a.b"), Some(vec![name("a"), name("b")]));
    assert_eq!(
        simple_path("$['a b'][0].c"),
        Some(vec![name("a b"), PathStep::Elements, name("c")])
    );
    assert_eq!(
        simple_path("$.products[*].sku"),
        Some(vec![name("products"), PathStep::Elements, name("sku")])
    );
    assert_eq!(simple_path("$"), Some(vec![]));
    for complex in [
        "$..a",
        "$.a[?@.b]",
        "$.a[0:2]",
        "$['a','b']",
        "a.b",
        "$.a[?(@.x)]",
    ] {
        assert_eq!(simple_path(complex), None, "{complex}");
    }
}

/// A need built from reads, as the rules module finds them in a script's AST.
fn need_of(reads: &[Read]) -> Need {
    let mut need = Need::default();
    need.add_reads(Some(reads));
    need
}

fn path(p: &[&str]) -> Read {
    Read::Path(p.iter().map(|n| name(n)).collect())
}

fn presence(p: &[&str]) -> Read {
    Read::Presence(p.iter().map(|n| name(n)).collect())
}

#[test]
fn projects_and_writes_back_only_what_code_may_touch() {
    let mut record = json!({"a": {"x": 1, "y": 2}, "big": [1, 2, 3], "id": 7});
    // `record.a.x = record.a.x + 1; record.route = "r"; "id" in record`
    let need = need_of(&[path(&["a", "x"]), path(&["route"]), presence(&["id"])]);
    let mut given = need.project(&record);
    assert_eq!(given, json!({"a": {"x": 1}, "id": null}));
    given["a"]["x"] = json!(2);
    given["route"] = json!("r");
    need.write_back(&mut record, given);
    assert_eq!(
        record,
        json!({"a": {"x": 2, "y": 2}, "big": [1, 2, 3], "id": 7, "route": "r"})
    );
}

/// One parse with a parser made for it (flows make theirs once).
fn parse(need: &Need, bytes: &[u8]) -> serde_json::Result<Value> {
    BodyParser::new(need.clone()).parse(bytes)
}

#[test]
fn presence_only_keys_are_skipped_by_the_parser() {
    let mut need = Need::default();
    // `"products" in record && record.id > 0`
    need.add_reads(Some(&[presence(&["products"]), path(&["id"])]));
    let got = parse(&need, br#"{"id": 1, "products": [{"a": 1}]}"#).unwrap();
    assert_eq!(got, json!({"id": 1, "products": null}));
    need.add_jsonpath("$.products[*].a");
    let got = parse(&need, br#"{"id": 1, "products": [{"a": 1, "b": 2}]}"#).unwrap();
    assert_eq!(got, json!({"id": 1, "products": [{"a": 1}]}));
}

#[test]
fn parses_only_what_is_needed() {
    let body =
        br#"{"id": 1, "skip": {"deep": [1,2,{"x":3}]}, "billing": {"email": "a@b", "phone": "1"},
                       "items": [{"sku": "A", "qty": 2, "junk": "z"}, {"sku": "B"}], "n": 12.50}"#;
    let mut need = Need::default();
    need.add_jsonpath("$.id");
    need.add_jsonpath("$.billing.email");
    need.add_jsonpath("$.items[*].sku");
    need.add_path(&[name("n")]);
    let got = parse(&need, body).unwrap();
    assert_eq!(
        got.to_string(),
        r#"{"billing":{"email":"a@b"},"id":1,"items":[{"sku":"A"},{"sku":"B"}],"n":12.50}"#
    );
    let mut all = Need::default();
    all.add_jsonpath("$..sku");
    assert_eq!(
        parse(&all, body).unwrap(),
        serde_json::from_slice::<Value>(body).unwrap()
    );
}

#[test]
fn a_body_parsed_into_the_last_one_is_as_if_parsed_afresh() {
    let mut need = Need::default();
    need.add_jsonpath("$.id");
    need.add_jsonpath("$.a.b");
    need.add_jsonpath("$.items[*].sku");
    need.add_jsonpath("$.items[*].qty");
    need.add_jsonpath("$.whole");
    let bodies: &[&str] = &[
        r#"{"id": 1, "a": {"b": "x", "c": 1}, "items": [{"sku": "A", "qty": 2}, {"sku": "B"}], "whole": {"k": [1]}}"#,
        // Fields gone, arrays shorter, kinds changed, numbers where objects were.
        r#"{"id": "one", "a": 5, "items": [{"qty": "3"}]}"#,
        r#"{"id": {"deep": 1}, "a": {"b": {"c": [1, 2]}}, "items": "none", "whole": 12.50}"#,
        r#"{"items": [{"sku": "A"}, {"sku": "B"}, {"sku": "C", "qty": 123456789012345678901234567890}], "a": {"b": null}}"#,
        r#"{"id": 1, "id": 2, "a": {}, "items": [], "whole": null}"#,
        r#"{}"#,
        r#"[{"id": 1}, 2]"#,
        r#"{"id": 7, "a": {"b": "y"}, "items": [{"sku": "Z", "qty": 1, "junk": 0}], "whole": "s"}"#,
    ];
    let parser = BodyParser::new(need);
    // Another flow's parser may have used the target last (a thread runs many flows).
    let mut other = Need::default();
    other.add_jsonpath("$.a");
    other.add_jsonpath("$.items[*]");
    other.add_presence(&[name("id")]);
    let others = [BodyParser::new(other), BodyParser::new(Need::All)];
    let mut target = Value::Null;
    // Every body after every other: whatever the target held, it ends up as a fresh parse.
    for before in bodies {
        for body in bodies {
            for last in std::iter::once(&parser).chain(&others) {
                last.parse_into(before.as_bytes(), &mut target).unwrap();
                parser.parse_into(body.as_bytes(), &mut target).unwrap();
                assert_eq!(
                    target.to_string(),
                    parser.parse(body.as_bytes()).unwrap().to_string(),
                    "{body} after {before}"
                );
            }
        }
    }
    // After a failed parse the target is only a part of a body; the next parse is whole.
    assert!(parser
        .parse_into(br#"{"id": 1, "a": {"b": "x"}, "items": [1,"#, &mut target)
        .is_err());
    parser
        .parse_into(bodies[0].as_bytes(), &mut target)
        .unwrap();
    assert_eq!(target, parser.parse(bodies[0].as_bytes()).unwrap());
}

#[test]
fn numbers_keep_every_digit() {
    let mut need = Need::default();
    need.add_jsonpath("$.a");
    let got = parse(
        &need,
        br#"{"a": [123456789012345678901234567890, 0.1, -5], "b": 1}"#,
    )
    .unwrap();
    assert_eq!(
        got,
        json!({"a": [
            "123456789012345678901234567890".parse::<Number>().unwrap(),
            "0.1".parse::<Number>().unwrap(),
            -5
        ]})
    );
    assert_eq!(got["a"][0].to_string(), "123456789012345678901234567890");
}

#[test]
fn bad_json_is_an_error_even_in_skipped_parts() {
    let mut need = Need::default();
    need.add_jsonpath("$.a");
    for bad in [
        &br#"{"a": 1, "b": [1,}"#[..],
        b"{\"a\": 1} x",
        b"",
        b"{\"b\": 1e400, \"a\": 1,",
        // Invalid UTF-8 where nothing reads it.
        b"{\"a\": 1, \"b\": \"\xff\xfe\"}",
    ] {
        assert!(
            parse(&need, bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let deep = format!("{{\"b\": {}}}", "[".repeat(100_000));
    assert!(parse(&need, deep.as_bytes()).is_err());
}

fn nested(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

#[test]
fn check_refuses_what_a_whole_parse_refuses_and_nothing_more() {
    for (body, kind) in [
        (
            r#"{"a": [1, {"b": null}], "c": "\ud83d\ude00"}"#,
            Kind::Object,
        ),
        ("[1, 2]", Kind::Array),
        ("123456789012345678901234567890", Kind::Number),
        (r#""x""#, Kind::String),
        ("true", Kind::Bool),
        (" null ", Kind::Null),
    ] {
        assert_eq!(check(body.as_bytes()).unwrap(), kind, "{body}");
    }
    for bad in [
        r#"{"a": 1, "b": "\ud800"}"#,
        r#"{"a": 1, "b": ["\udc00x"]}"#,
        r#"{"\ud800": 1}"#,
        r#"{"a": 1} x"#,
        r#"{"a": 1,}"#,
    ] {
        assert!(check(bad.as_bytes()).is_err(), "{bad}");
        assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
    }
    assert!(check(b"{\"a\": \"\xff\"}").is_err());
    // The nesting limit is the parser's own: both give up at the same depth.
    let (mut passed, mut refused) = (0, 0);
    for levels in 100..160 {
        let body = nested(levels);
        let whole = serde_json::from_str::<Value>(&body).is_ok();
        assert_eq!(check(body.as_bytes()).is_ok(), whole, "{levels} levels");
        if whole {
            passed += 1;
        } else {
            refused += 1;
        }
    }
    assert!(passed > 0 && refused > 0, "{passed} {refused}");
}

#[test]
fn a_checking_parser_refuses_in_what_it_skips_what_check_refuses() {
    let mut need = Need::default();
    need.add_jsonpath("$.a");
    let skipped_surrogate = br#"{"a": 1, "b": "\ud800"}"#;
    let skipped_deep = format!(r#"{{"a": 1, "b": {}}}"#, nested(200));
    let plain = BodyParser::new(need.clone());
    let checking = BodyParser::checking(need);
    for body in [&skipped_surrogate[..], skipped_deep.as_bytes()] {
        assert!(plain.parse(body).is_ok());
        assert!(checking.parse(body).is_err());
    }
    let body = br#"{"a": {"x": "\ud83d\ude00"}, "b": [{"c": null}]}"#;
    assert_eq!(checking.parse(body).unwrap(), plain.parse(body).unwrap());
}

/// A wildcard selects every member of an object, whatever its name: where a path steps over
/// elements and meets an object, the object is kept whole (found by the mapping fuzz target: a
/// BigCommerce order whose `products` is still the `{url, resource}` reference mapped to no
/// items instead of failing, because the projection kept no member of it).
#[test]
fn a_wildcard_that_meets_an_object_keeps_it_whole_and_arrays_stay_projected() {
    use crate::jsonpath::JsonPath;
    let mut need = Need::default();
    need.add_jsonpath("$.products[*].sku");
    need.add_jsonpath("$.id");
    let bodies = [
        json!({"id": 1, "products": {"url": "https://x/products", "resource": "/orders/1/products"}}),
        json!({"id": 2, "products": {"a": {"sku": "A", "big": "x"}, "b": {"sku": "B"}}}),
        json!({"id": 3, "products": [{"sku": "A", "big": "x"}, {"sku": "B", "n": [1, 2]}]}),
        json!({"id": 4, "products": [[{"sku": "A", "big": "x"}]]}),
        json!({"id": 5, "products": "none", "other": true}),
    ];
    let path = JsonPath::parse("$.products[*].sku").unwrap();
    let parser = BodyParser::new(need.clone());
    for body in &bodies {
        let parsed = parser.parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(parsed, need.project(body), "{body}");
        assert_eq!(path.query(&parsed), path.query(body), "{body}");
    }
    // Arrays of objects keep only what is read of each element.
    let parsed = parser.parse(bodies[2].to_string().as_bytes()).unwrap();
    assert_eq!(
        parsed,
        json!({"id": 3, "products": [{"sku": "A"}, {"sku": "B"}]})
    );
    // An object under the wildcard is whole, and writing back a changed copy keeps the rest.
    assert_eq!(need.project(&bodies[1])["products"], bodies[1]["products"]);
    let mut target = bodies[2].clone();
    let mut changed = need.project(&bodies[2]);
    changed["products"][0]["sku"] = json!("Z");
    need.write_back(&mut target, changed);
    assert_eq!(
        target,
        json!({"id": 3, "products": [{"sku": "Z", "big": "x"}, {"sku": "B", "n": [1, 2]}]})
    );
}
