use super::*;
use serde_json::json;

fn p(src: &str) -> JsonPath {
    match JsonPath::parse(src) {
        Ok(p) => p,
        Err(e) => panic!("{src}: {e} at {}", e.offset),
    }
}

fn engine<'a>(src: &str, doc: &'a Value) -> Vec<&'a Value> {
    match serde_json_path::JsonPath::parse(&upper_hex_escapes(src)) {
        Ok(q) => q.query(doc).all(),
        Err(e) => panic!("{src}: {e}"),
    }
}

fn docs() -> Vec<Value> {
    let order = json!({
        "id": 100,
        "a b": {"c": 1},
        "billing_address": {"email": "jane@example.com", "first_name": "Jane"},
        "products": [
            {"sku": "A-1", "quantity": 2, "options": [{"value": "red"}, {"value": "L"}]},
            {"sku": "B-2", "quantity": 1, "options": []},
            {"quantity": 5, "options": {"x": {"value": "obj"}}},
        ],
        "é": {"ünï": "coded"},
        "quote'\"": true,
        "line\nbreak": "lb",
        "😀": "smile",
        "n": 12345678901234567890123u128,
    });
    vec![
        order,
        json!([[1, 2], [3], {"k": 4}, 5]),
        json!({"products": {"first": {"sku": "X"}, "second": {"sku": "Y"}}}),
        json!({"products": "not an array"}),
        json!(null),
        json!("text"),
    ]
}

const FAST: &[&str] = &[
    "$",
    "$.id",
    "$.billing_address.email",
    "$.products[0].sku",
    "$.products[-1].quantity",
    "$.products[-3].sku",
    "$.products[-4].sku",
    "$.products[7].sku",
    "$['a b'].c",
    "$[\"a b\"]['c']",
    "$ [ 'a b' ] .c",
    "$\t[\n'a b'\r]",
    "$.é.ünï",
    "$['\\u00e9']['\\u00fcn\\u00ef']",
    "$['quote\\'\"']",
    "$[\"quote'\\\"\"]",
    "$['line\\nbreak']",
    "$['\\ud83d\\ude00']",
    "$.😀",
    "$.n",
    "$[0][1]",
    "$[2].k",
    "$.products[*].sku",
    "$.products.*.sku",
    "$.products[*]",
    "$.products[ * ].options[*].value",
    "$.products[*].options.*.value",
    "$[*][*]",
    "$.*",
    "$[*].k",
    "$.billing_address.*",
    "$.missing[*].x",
];

const SLOW: &[&str] = &[
    "$..sku",
    "$.products[?@.quantity > 1].sku",
    "$.products[0:2].sku",
    "$.products[0,1].sku",
    "$.products[:1]",
    "$['id','n']",
    "$..*",
    "$.products[?length(@.options) > 0]",
    "$.products[?match(@.sku, 'A-.*')].sku",
    "$.products[?search(@.sku, '1')]",
    "$.products[?search(@.sku, '[')]",
    "$..options[?@.value == 'red']",
    "$.products[?count(@.options[*]) > 1].sku",
    "$.products[?value(@..value) == 'obj']",
    "$.products[?!@.sku]",
    "$.products[?(@.quantity > 1 || @.sku == 'B-2') && @.quantity != 5]",
    "$.products[?!(@.quantity < 2)].quantity",
    "$.products[::-1].sku",
    "$.products[-2:]",
    "$.products[5:0:-2]",
    "$[?length(@) > 1]",
    "$.products[?@.quantity >= 2 && @.quantity <= 5]",
    "$..[?@.sku == $.products[0].sku].quantity",
    "$..[?@ == 12345678901234567890123]",
    "$.products[?@.options == @.options]",
    "$[?@.c == 1 || @ == true]",
    "$..*[?@ > 1.5e0]",
    "$ .products [ ?  @.quantity  ==  2 ] .sku",
    "$[?@[?@.sku]]",
    "$..[?length(value(@..value)) > 2]",
    "$.products[? count(@.options[*]) >= 1 && match( @.sku , \"[AB]-[0-9]\" )]",
    "$.products[?1 < @.quantity]['sku', 'quantity']",
    "$[?! @.sku && !(@ == 5)]",
    "$.products[?@.quantity == -1.5e-3 || @.quantity != null]",
    "$..options[0, -1, 5:, ::2]",
    "$.products[?@.options.x]..value",
];

#[test]
fn fast_path_agrees_with_the_engine() {
    for src in FAST {
        let path = p(src);
        assert!(
            !matches!(path.plan, Plan::Tree(_)),
            "{src} should take the fast path"
        );
        for doc in docs() {
            let want = engine(src, &doc);
            assert_eq!(path.query(&doc), want, "{src} on {doc}");
            assert_eq!(path.first(&doc), want.first().copied(), "{src} on {doc}");
        }
    }
    for src in SLOW {
        let path = p(src);
        assert!(matches!(path.plan, Plan::Tree(_)), "{src}");
        assert!(!path.is_singular(), "{src}");
        for doc in docs() {
            assert_eq!(path.query(&doc), engine(src, &doc), "{src} on {doc}");
        }
    }
}

#[test]
fn singular_queries_expose_their_segments() {
    use Segment::{Index, Name};
    let cases: &[(&str, Option<Vec<Segment>>)] = &[
        ("$", Some(vec![])),
        (
            "$.billing_address.email",
            Some(vec![Name("billing_address".into()), Name("email".into())]),
        ),
        (
            "$.products[0].sku",
            Some(vec![Name("products".into()), Index(0), Name("sku".into())]),
        ),
        ("$['a b']", Some(vec![Name("a b".into())])),
        ("$[-2]", Some(vec![Index(-2)])),
        ("$['\\ud83d\\ude00\\t']", Some(vec![Name("😀\t".into())])),
        ("$['\\uD83D\\uDE00']", Some(vec![Name("😀".into())])),
        (
            "$[\"\\ud83d\\uDE00\\u263a\"]",
            Some(vec![Name("😀☺".into())]),
        ),
        ("$[\"it's\"]", Some(vec![Name("it's".into())])),
        ("$.a1_b", Some(vec![Name("a1_b".into())])),
        (
            "$[9007199254740991]",
            Some(vec![Index(9_007_199_254_740_991)]),
        ),
        ("$.products[*].sku", None),
        ("$..a", None),
        ("$[0:1]", None),
        ("$['a','b']", None),
        ("$[?@.a]", None),
    ];
    for (src, want) in cases {
        let path = p(src);
        assert_eq!(path.segments(), want.as_deref(), "{src}");
        assert_eq!(path.is_singular(), want.is_some(), "{src}");
        assert_eq!(path.as_str(), *src);
        assert_eq!(path.to_string(), *src);
    }
}

#[test]
fn simple_queries_expose_their_steps_with_wildcards() {
    use Segment::{Index, Name};
    let products = Name("products".into());
    let sku = Name("sku".into());
    let cases: &[(&str, Option<Vec<Option<&Segment>>>)] = &[
        ("$", Some(vec![])),
        (
            "$.products[0].sku",
            Some(vec![Some(&products), Some(&Index(0)), Some(&sku)]),
        ),
        (
            "$.products[*].sku",
            Some(vec![Some(&products), None, Some(&sku)]),
        ),
        ("$.products.*", Some(vec![Some(&products), None])),
        ("$..sku", None),
        ("$.products[0:1]", None),
        ("$['products','sku']", None),
        ("$.products[?@.sku]", None),
    ];
    for (src, want) in cases {
        assert_eq!(p(src).simple_steps().as_ref(), want.as_ref(), "{src}");
    }
}

#[test]
fn big_numbers_keep_every_digit() -> Result<(), serde_json::Error> {
    let doc: Value = serde_json::from_str(
        r#"{"id": 12345678901234567890123, "total": "225.0000", "price": 0.10000000000000000001,
            "items": [{"product_id": 98765432109876543210}]}"#,
    )?;
    let cases = [
        ("$.id", "12345678901234567890123"),
        ("$.price", "0.10000000000000000001"),
        ("$.items[0].product_id", "98765432109876543210"),
        ("$.items[*].product_id", "98765432109876543210"),
        ("$..product_id", "98765432109876543210"),
        (
            "$.items[?@.product_id > 1].product_id",
            "98765432109876543210",
        ),
        ("$.total", "\"225.0000\""),
    ];
    for (src, want) in cases {
        let got = p(src).query(&doc);
        assert_eq!(got.len(), 1, "{src}");
        assert_eq!(serde_json::to_string(got[0])?, want, "{src}");
    }
    Ok(())
}

#[test]
fn invalid_queries_report_where() {
    let cases: &[(&str, usize)] = &[
        ("$.a[", 3),
        ("$.a b", 3),
        ("a.b", 0),
        ("$[01]", 3),
        ("$['\\ud800']", 3),
    ];
    for (src, offset) in cases {
        match JsonPath::parse(src) {
            Ok(_) => panic!("{src} should not parse"),
            Err(e) => {
                assert!(!e.message.is_empty(), "{src}");
                assert_eq!(e.offset, *offset, "{src}: {}", e.message);
            }
        }
    }
}

#[test]
fn a_string_left_open_is_refused_before_the_engine_sees_it() {
    // The engine panics ("we do not use streaming parsers") when the text ends inside a
    // `\u` escape; found by fuzz/fuzz_targets/jsonpath.rs.
    for src in [
        "$[\"\\u",
        "$['\\u",
        "$[\"\\uD",
        "$['\\uD83D\\u",
        "$['\\uD83D\\uD",
        "$['a",
    ] {
        match JsonPath::parse(src) {
            Ok(_) => panic!("{src} should not parse"),
            Err(e) => assert_eq!(e.offset, 2, "{src}: {}", e.message),
        }
    }
}

#[test]
fn deep_nesting_is_refused_before_the_engine_sees_it() {
    let brackets = format!("${}{}", "[?@".repeat(9), "]".repeat(9));
    match JsonPath::parse(&brackets) {
        Ok(_) => panic!("nine nested filters should be refused"),
        Err(e) => assert_eq!(e.offset, 1 + 3 * 8, "{}", e.message),
    }
    let parens = format!("$[?{}@.a{}]", "(".repeat(100), ")".repeat(100));
    assert!(JsonPath::parse(&parens).is_err());
    // A string literal does not count.
    assert!(JsonPath::parse("$['[[[[[[[[[[((((((((']").is_ok());
    // At the limits it still parses.
    let ok = format!("$[?{}@.a{}]", "(".repeat(62), ")".repeat(62));
    assert!(JsonPath::parse(&ok).is_ok());
    let ok = format!("${}{}", "[?@".repeat(8), "]".repeat(8));
    assert!(JsonPath::parse(&ok).is_ok());
}

#[test]
fn a_long_path_does_not_exhaust_the_stack() {
    let src = format!("${}[*]", ".a".repeat(100_000));
    let path = p(&src);
    assert!(path.query(&json!({"a": {"a": 1}})).is_empty());
}

/// 125 arrays nested, the innermost holding 560 ones: 1.4 KB of JSON.
pub(crate) fn deep_list() -> Value {
    let mut doc = Value::Array(vec![json!(1); 560]);
    for _ in 0..124 {
        doc = Value::Array(vec![doc]);
    }
    doc
}

#[test]
fn queries_beyond_names_indexes_and_wildcards_count_their_nodes() {
    // `$..*..*..*` selects each node once per pair of its ancestors: 4.6 million nodes,
    // 37 MB of node list, from 1.4 KB.
    let doc = deep_list();
    assert!(doc.to_string().len() < 1400);
    let limits = Limits::default();
    let path = p("$..*..*..*");
    assert_eq!(
        path.query_within(&doc, &mut Budget::new(limits.clone())),
        Err(Exceeded::Nodes(limits.nodes))
    );
    // `$..*..*` selects about 77,000 nodes, visiting about twice as many.
    let all = p("$..*..*").query(&doc).len();
    assert!(all > 70_000, "{all}");
    let mut budget = Budget::new(Limits {
        nodes: 200_000,
        ..limits.clone()
    });
    let two = p("$..*..*").query_within(&doc, &mut budget);
    assert_eq!(two.map(|n| n.len()), Ok(all));
    let mut budget = Budget::new(Limits {
        nodes: 100_000,
        ..limits
    });
    assert!(p("$..*..*").query_within(&doc, &mut budget).is_err());
    // Names, indexes and wildcards are not counted: they select each node at most once.
    let mut none = Budget::new(Limits {
        nodes: 0,
        ..Limits::default()
    });
    let got = p("$[0][0][*]").query_within(&doc, &mut none);
    assert_eq!(got.map(|n| n.len()), Ok(1));
}

#[test]
fn a_literal_pattern_over_the_regex_limits_is_refused_at_load() {
    let err = JsonPath::parse(r"$[?match(@, '\\w{50}{50}')]").map(|_| ());
    assert!(
        err.as_ref()
            .is_err_and(|e| e.message.contains("compiles to more than")),
        "{err:?}"
    );
    assert!(JsonPath::parse(r"$[?match(@, '\\w{5}')]").is_ok());
}

#[test]
fn is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<JsonPath>();
    check::<JsonPathError>();
}
