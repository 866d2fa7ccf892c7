use super::*;
use crate::mapping::{compile, test_rules, MappingFile};

/// A BigCommerce v2 order, trimmed: ids beyond 2^53, money as decimal strings.
const ORDER: &str = r#"{
    "id": 820982911946154508,
    "big": 123456789012345678901234567890,
    "status": "Shipped",
    "status_id": 2,
    "total_inc_tax": "225.0000",
    "currency_code": "EUR",
    "date_created": "Tue, 20 Nov 2012 00:00:00 +0000",
    "customer_message": "  Please Ring Twice  ",
    "is_deleted": "false",
    "price": 12.50,
    "billing_address": {"email": "Jane@Example.com", "first_name": "Jane"},
    "note": null,
    "products": [
        {"sku": "A-1", "quantity": 2, "price_inc_tax": "10.5000"},
        {"sku": "B-2", "quantity": "3", "price_inc_tax": "7.0000"}
    ]
}"#;

fn mapping(fields: &str) -> Mapping {
    let text = format!(
        r#"{{"mapping": "bigcommerce-order", "fields": {fields}, "lookups": {{
            "order-status": {{"Awaiting Payment": "Draft", "Shipped": "Activated"}},
            "status-id": {{"1": "Pending", "2": "Shipped"}}
        }}}}"#
    );
    let file: MappingFile = serde_json::from_str(&text).unwrap();
    compile(&file, &test_rules()).unwrap_or_else(|e| panic!("{fields}: {e:?}"))
}

fn run(fields: &str, input: &str) -> Result<String, String> {
    let input: Value = serde_json::from_str(input).unwrap();
    mapping(fields)
        .apply(&test_rules(), &input)
        .map(|v| serde_json::to_string(&v).unwrap())
        .map_err(|e| e.to_string())
}

#[test]
fn maps_fields() {
    let cases: &[(&str, &str)] = &[
        (r#"{"Id": "$.id"}"#, r#"{"Id":820982911946154508}"#),
        (
            r#"{"Id": {"from": "$.id", "type": "string"}}"#,
            r#"{"Id":"820982911946154508"}"#,
        ),
        (
            r#"{"Big": {"from": "$.big", "type": "integer"}}"#,
            r#"{"Big":123456789012345678901234567890}"#,
        ),
        (
            r#"{"Big": {"from": "$.big", "type": "string"}}"#,
            r#"{"Big":"123456789012345678901234567890"}"#,
        ),
        (
            r#"{"T": {"from": "$.total_inc_tax", "type": "decimal"}}"#,
            r#"{"T":225.0000}"#,
        ),
        (
            r#"{"P": {"from": "$.price", "type": "decimal"}}"#,
            r#"{"P":12.50}"#,
        ),
        (
            r#"{"D": {"from": "$.date_created", "type": "date"}}"#,
            r#"{"D":"2012-11-20"}"#,
        ),
        (
            r#"{"D": {"from": "$.date_created", "type": "datetime"}}"#,
            r#"{"D":"2012-11-20T00:00:00+00:00"}"#,
        ),
        (
            r#"{"B": {"from": "$.is_deleted", "type": "boolean"}}"#,
            r#"{"B":false}"#,
        ),
        // Missing and null: omitted, or the default (converted to the type).
        (r#"{"X": "$.nope", "N": "$.note"}"#, "{}"),
        (
            r#"{"C": {"from": "$.nope", "default": "USD"}}"#,
            r#"{"C":"USD"}"#,
        ),
        (
            r#"{"C": {"from": "$.note", "type": "decimal", "default": "0.00"}}"#,
            r#"{"C":0.00}"#,
        ),
        (r#"{"C": {"default": "Order"}}"#, r#"{"C":"Order"}"#),
        // Transforms, in order; strings only.
        (
            r#"{"M": {"from": "$.customer_message", "transform": "trim"}}"#,
            r#"{"M":"Please Ring Twice"}"#,
        ),
        (
            r#"{"M": {"from": "$.customer_message", "transform": ["trim", "upper"]}}"#,
            r#"{"M":"PLEASE RING TWICE"}"#,
        ),
        (
            r#"{"E": {"from": "$.billing_address.email", "transform": "lower"}}"#,
            r#"{"E":"jane@example.com"}"#,
        ),
        (
            r#"{"I": {"from": "$.id", "transform": "lower"}}"#,
            r#"{"I":820982911946154508}"#,
        ),
        // Lookups: by text, numbers as written; a miss takes the default.
        (
            r#"{"S": {"from": "$.status", "lookup": "order-status"}}"#,
            r#"{"S":"Activated"}"#,
        ),
        (
            r#"{"S": {"from": "$.status_id", "lookup": "status-id"}}"#,
            r#"{"S":"Shipped"}"#,
        ),
        (
            r#"{"S": {"from": "$.currency_code", "lookup": "order-status", "default": "Draft"}}"#,
            r#"{"S":"Draft"}"#,
        ),
        (
            r#"{"S": {"from": "$.nope", "lookup": "order-status", "default": "Draft"}}"#,
            r#"{"S":"Draft"}"#,
        ),
        // Templates.
        (
            r#"{"Name": {"template": "BC order {{ $.id }}"}}"#,
            r#"{"Name":"BC order 820982911946154508"}"#,
        ),
        (
            r#"{"Name": {"template": "{{ $.billing_address.first_name }}/{{ $.nope }}", "transform": "upper"}}"#,
            r#"{"Name":"JANE/"}"#,
        ),
        // Non-singular paths: the array of matches, converted match by match.
        (
            r#"{"Skus": "$.products[*].sku"}"#,
            r#"{"Skus":["A-1","B-2"]}"#,
        ),
        (
            r#"{"Q": {"from": "$.products[*].quantity", "type": "integer"}}"#,
            r#"{"Q":[2,3]}"#,
        ),
        (r#"{"None": "$.nope[*]"}"#, r#"{"None":[]}"#),
        // Inline Rhai `expr`.
        (
            r#"{"V": {"from": "$.status", "expr": "value", "lookup": "order-status"}}"#,
            r#"{"V":"Activated"}"#,
        ),
        (r#"{"V": {"expr": "\"fixed\""}}"#, r#"{"V":"fixed"}"#),
        (
            r#"{"V": {"from": "$.nope", "expr": "value", "default": 1}}"#,
            r#"{"V":1}"#,
        ),
        // Dotted targets: nested objects, placed where first declared; empty ones omitted.
        (
            r#"{"price.value": "$.price", "Id": "$.id", "price.currency": "$.currency_code"}"#,
            r#"{"Id":820982911946154508,"price":{"currency":"EUR","value":12.50}}"#,
        ),
        (
            r#"{"a.b.c": "$.status", "a.x": "$.nope"}"#,
            r#"{"a":{"b":{"c":"Shipped"}}}"#,
        ),
        (
            r#"{"a.b": "$.nope", "k": "$.status"}"#,
            r#"{"k":"Shipped"}"#,
        ),
        (r#"{"a\\.b": "$.status"}"#, r#"{"a.b":"Shipped"}"#),
        // Output objects are ordered by key (serde_json maps), whatever the declared order.
        (
            r#"{"Z": "$.status", "A": "$.currency_code"}"#,
            r#"{"A":"EUR","Z":"Shipped"}"#,
        ),
        // Each: `$` is the element.
        (
            r#"{"OrderItems": {"each": "$.products[*]", "fields": {
                "Sku": "$.sku",
                "Quantity": {"from": "$.quantity", "type": "integer"},
                "UnitPrice": {"from": "$.price_inc_tax", "type": "decimal"},
                "Line.Name": {"template": "{{ $.sku }} x{{ $.quantity }}"}
            }}}"#,
            r#"{"OrderItems":[{"Line":{"Name":"A-1 x2"},"Quantity":2,"Sku":"A-1","UnitPrice":10.5000},{"Line":{"Name":"B-2 x3"},"Quantity":3,"Sku":"B-2","UnitPrice":7.0000}]}"#,
        ),
        (
            r#"{"Items": {"each": "$.products", "fields": {"S": "$.sku"}}}"#,
            r#"{"Items":[{"S":"A-1"},{"S":"B-2"}]}"#,
        ),
        (
            r#"{"Items": {"each": "$.nope", "fields": {"S": "$.sku"}}}"#,
            "{}",
        ),
        (
            r#"{"Items": {"each": "$.nope[*]", "fields": {"S": "$.sku"}}}"#,
            r#"{"Items":[]}"#,
        ),
    ];
    for (fields, want) in cases {
        assert_eq!(run(fields, ORDER).as_deref(), Ok(*want), "{fields}");
    }
}

#[test]
fn reports_failures() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"TotalAmount": {"from": "$.total_inc_tax", "type": "decimal"}}"#,
            r#"{"total_inc_tax": "12,50 EUR"}"#,
            r#"mapping bigcommerce-order: field TotalAmount: $.total_inc_tax = "12,50 EUR" is not a decimal"#,
        ),
        (
            r#"{"T": {"from": "$.t", "type": "decimal"}}"#,
            r#"{"t": 1e400}"#,
            "mapping bigcommerce-order: field T: $.t = 1e+400 is not a decimal (out of range)",
        ),
        (
            r#"{"ExternalId__c": {"from": "$.id", "type": "string", "required": true}}"#,
            r#"{"id": null}"#,
            "mapping bigcommerce-order: field ExternalId__c: $.id is missing and the field is required",
        ),
        (
            r#"{"S": {"from": "$.status", "lookup": "order-status"}}"#,
            r#"{"status": "Lost"}"#,
            r#"mapping bigcommerce-order: field S: $.status = "Lost" is not in lookup order-status and there is no default"#,
        ),
        (
            r#"{"S": {"from": "$.status", "lookup": "order-status"}}"#,
            r#"{"status": {"a": 1}}"#,
            r#"mapping bigcommerce-order: field S: $.status = {"a":1} cannot be a key of lookup order-status: keys are strings, numbers or booleans"#,
        ),
        (
            r#"{"price.value": {"from": "$.p", "type": "integer"}}"#,
            r#"{"p": "12.5"}"#,
            r#"mapping bigcommerce-order: field price.value: $.p = "12.5" is not an integer (has a fraction)"#,
        ),
        (
            r#"{"OrderItems": {"each": "$.products[*]", "fields": {"Quantity": {"from": "$.quantity", "type": "integer"}}}}"#,
            r#"{"products": [{"quantity": 1}, {"quantity": 2}, {"quantity": "two"}]}"#,
            r#"mapping bigcommerce-order: field OrderItems[2].Quantity: $.quantity = "two" is not an integer"#,
        ),
        (
            r#"{"O": {"each": "$.a", "fields": {"I": {"each": "$.b", "fields": {"Q": {"from": "$.q", "required": true}}}}}}"#,
            r#"{"a": [{"b": [{"q": 1}]}, {"b": [{"q": 1}, {}]}]}"#,
            "mapping bigcommerce-order: field O[1].I[1].Q: $.q is missing and the field is required",
        ),
        (
            r#"{"Items": {"each": "$.products", "fields": {"S": "$.sku"}}}"#,
            r#"{"products": "none"}"#,
            r#"mapping bigcommerce-order: field Items: each $.products = "none" is not an array"#,
        ),
        (
            r#"{"Items": {"each": "$.products", "required": true, "fields": {"S": "$.sku"}}}"#,
            "{}",
            "mapping bigcommerce-order: field Items: $.products is missing and the field is required",
        ),
        (
            r#"{"V": {"from": "$.a", "expr": "decimal(\"12,50 EUR\")"}}"#,
            r#"{"a": 1}"#,
            r#"mapping bigcommerce-order: field V: expr failed: decimal(): cannot convert "12,50 EUR" to a decimal"#,
        ),
        (
            r#"{"V": {"from": "$.a", "expr": "value", "required": true}}"#,
            "{}",
            "mapping bigcommerce-order: field V: expr is missing and the field is required",
        ),
        (
            r#"{"Q": {"from": "$.q[*]", "type": "integer"}}"#,
            r#"{"q": [1, "x"]}"#,
            r#"mapping bigcommerce-order: field Q: $.q[*] = "x" is not an integer"#,
        ),
    ];
    for (fields, input, want) in cases {
        assert_eq!(
            run(fields, input).as_deref().map_err(String::as_str),
            Err(*want),
            "{fields}"
        );
    }
}

#[test]
fn huge_values_are_cut_in_messages() {
    let input = format!(r#"{{"t": "{}"}}"#, "9,".repeat(500));
    let err = run(r#"{"T": {"from": "$.t", "type": "decimal"}}"#, &input).unwrap_err();
    assert!(err.len() < 200 && err.contains('…'), "{err}");
}

#[test]
fn reads_lists_paths_including_those_inside_each() {
    let m = mapping(
        r#"{"A": "$.a", "B": {"template": "{{ $.b }}-{{ $.c }}"}, "I": {"each": "$.items[*]", "fields": {"X": "$.x"}}}"#,
    );
    let reads_of = |m: &Mapping| -> Vec<String> {
        m.reads()
            .unwrap()
            .iter()
            .map(|p| p.as_str().to_string())
            .collect()
    };
    assert_eq!(reads_of(&m), ["$.a", "$.b", "$.c", "$.items[*].x"]);
    assert!(mapping(r#"{"A": {"expr": "record"}}"#).reads().is_none());
    // An element read by an expression is read whole.
    let m = mapping(r#"{"I": {"each": "$.items[*]", "fields": {"X": {"expr": "record.x"}}}}"#);
    assert_eq!(reads_of(&m), ["$.items[*]"]);
}

#[test]
fn building_into_any_earlier_output_gives_what_building_afresh_gives() {
    let m = mapping(
        r#"{"id": {"from": "$.id", "type": "string", "required": true},
            "email": {"from": "$.billing_address.email", "transform": "lower"},
            "who.first": "$.billing_address.first_name",
            "who.tag": {"template": "BC-{{ $.id }}"},
            "who.status": {"from": "$.status", "lookup": "order-status", "default": "Draft"},
            "note": {"from": "$.note", "default": "none"},
            "deep.er.message": "$.customer_message",
            "lines": {"each": "$.products[*]", "fields": {
                "sku": {"from": "$.sku", "required": true},
                "qty": {"from": "$.quantity", "type": "integer"},
                "price.value": {"from": "$.price_inc_tax", "type": "decimal"}}}}"#,
    );
    let rules = test_rules();
    let inputs: Vec<Value> = [
        ORDER,
        r#"{"id": 1, "status": "Shipped", "products": []}"#,
        r#"{"id": 2, "billing_address": {"email": "A@B.C"}, "customer_message": "hi",
            "products": [{"sku": "X"}, {"sku": "Y", "quantity": 4, "price_inc_tax": "1.5"},
            {"sku": "Z", "quantity": "7"}]}"#,
        r#"{"id": 3, "note": "kept", "status": "Awaiting Payment",
            "products": [{"sku": "Q", "price_inc_tax": "2"}]}"#,
        r#"{"id": 4, "products": [{"quantity": 1}]}"#,
        r#"{"products": []}"#,
    ]
    .iter()
    .map(|t| serde_json::from_str(t).unwrap())
    .collect();
    let mut earlier: Vec<Value> = vec![
        Value::Null,
        Value::String("x".into()),
        serde_json::json!([1, 2]),
        serde_json::json!({"foreign": 1, "who": {"first": 7, "extra": true}, "lines": "no",
            "deep": {"er": []}, "email": {"not": "a string"}}),
    ];
    earlier.extend(inputs.iter().filter_map(|i| m.apply(&rules, i).ok()));
    let mut compared = 0;
    for input in &inputs {
        let fresh = m.apply(&rules, input);
        for start in &earlier {
            let mut out = start.clone();
            let into = m.apply_into(&rules, input, &mut out);
            match &fresh {
                Ok(want) => {
                    assert!(into.is_ok(), "{input} into {start}: {into:?}");
                    assert_eq!(&out, want, "{input} into {start}");
                    compared += 1;
                }
                Err(e) => assert_eq!(into.unwrap_err().to_string(), e.to_string()),
            }
            // Whatever a failure left, the next build into it is right.
            let mut again = out;
            m.apply_into(&rules, &inputs[0], &mut again).unwrap();
            assert_eq!(again, m.apply(&rules, &inputs[0]).unwrap());
        }
    }
    assert!(compared >= 30, "{compared}");
}

/// `{"sku": {"sku": … {"sku": "end"} …}}`, `depth` deep, each level padded with `pad`
/// bytes of data: `$..sku` selects every level, each holding all those below.
fn nested_skus(depth: usize, pad: usize) -> Value {
    let mut v = serde_json::json!("end");
    for i in 0..depth {
        v = serde_json::json!({"sku": v, "data": format!("{i}{}", "x".repeat(pad))});
    }
    v
}

fn apply_within(fields: &str, input: &Value, limits: Limits) -> Result<Value, String> {
    mapping(fields)
        .with_limits(limits)
        .apply(&test_rules(), input)
        .map_err(|e| e.to_string())
}

/// The error of a mapping that must fail, without printing a huge output if it does not.
fn error_of(fields: &str, input: &Value, limits: Limits) -> String {
    match apply_within(fields, input, limits) {
        Ok(v) => panic!("{fields} mapped, to {} bytes", v.to_string().len()),
        Err(e) => e,
    }
}

#[test]
fn output_is_bounded_counting_every_copy() {
    // 120 levels of 4 KB: `$..sku` would copy about 120 * 60 * 4 KB = 29 MB.
    let body = nested_skus(120, 4000);
    let err = error_of(r#"{"Skus": "$..sku"}"#, &body, Limits::default());
    assert_eq!(
        err,
        "mapping bigcommerce-order: field Skus: $..sku: over the output budget: more than 16777216 bytes of output"
    );
    // The same field on a body of the same shape but smaller maps.
    let small = nested_skus(20, 100);
    let out = apply_within(r#"{"Skus": "$..sku"}"#, &small, Limits::default()).unwrap();
    assert_eq!(out["Skus"].as_array().map(Vec::len), Some(20));
    // Copies made by `each` count too: the element itself, once per element.
    let err = error_of(
        r#"{"All": {"each": "$..sku", "fields": {"Whole": "$"}}}"#,
        &body,
        Limits::default(),
    );
    assert!(
        err.starts_with("mapping bigcommerce-order: field All[")
            && err
                .ends_with(".Whole: $: over the output budget: more than 16777216 bytes of output"),
        "{err}"
    );
    // And so does a value copied into several fields: each copy is output.
    let limits = Limits {
        output_bytes: 100_000,
        ..Limits::default()
    };
    let body = serde_json::json!({"blob": "b".repeat(40_000)});
    let three = r#"{"A": "$.blob", "B": "$.blob", "C": "$.blob"}"#;
    let err = error_of(three, &body, limits.clone());
    assert!(
        err.ends_with("field C: $.blob: over the output budget: more than 100000 bytes of output"),
        "{err}"
    );
    let two = r#"{"A": "$.blob", "B": "$.blob"}"#;
    assert!(apply_within(two, &body, limits).is_ok());
}

#[test]
fn queries_are_bounded_in_nodes_visited() {
    // 1.4 KB: `$..*..*..*` selects each node once per pair of its ancestors (4.6 million).
    let body = crate::jsonpath::tests::deep_list();
    let err = error_of(r#"{"X": "$..*..*..*"}"#, &body, Limits::default());
    assert_eq!(
        err,
        "mapping bigcommerce-order: field X: $..*..*..*: over the node budget: queries visited more than 4000000 JSON nodes"
    );
    // Under the same budget a shallower body maps.
    // (The nodes it selects hold the arrays below them: copying them all is over the
    // output budget, so this one is lifted.)
    let out = apply_within(
        r#"{"X": "$..*..*"}"#,
        &body,
        Limits {
            output_bytes: u64::MAX,
            ..Limits::default()
        },
    )
    .unwrap();
    assert!(out["X"].as_array().is_some_and(|a| a.len() > 70_000));
    // Filters count their candidates and the queries inside them.
    let limits = Limits {
        nodes: 1000,
        ..Limits::default()
    };
    let items: Vec<Value> = (0..600).map(|i| serde_json::json!({"n": i})).collect();
    let body = serde_json::json!({ "items": items });
    let err = error_of(r#"{"X": "$.items[?@.n > 1].n"}"#, &body, limits);
    assert!(err.ends_with("more than 1000 JSON nodes"), "{err}");
}

#[test]
fn time_is_bounded() {
    let limits = Limits {
        time: std::time::Duration::ZERO,
        ..Limits::default()
    };
    let body = crate::jsonpath::tests::deep_list();
    let err = error_of(r#"{"X": "$..*..*"}"#, &body, limits);
    assert_eq!(
        err,
        "mapping bigcommerce-order: field X: $..*..*: over the time budget: more than 0 ms"
    );
}

#[test]
fn patterns_from_the_data_are_compiled_once_and_bounded() {
    let items: Vec<Value> = (0..20_000)
        .map(|i| serde_json::json!({"name": format!("item-{i}"), "re": format!("item-{i}")}))
        .collect();
    let body = serde_json::json!({"pattern": "item-[0-9]*7$", "items": items});
    // Compiled once, not 20,000 times: a limit of one compiled pattern is enough.
    let once = Limits {
        regexes: 1,
        ..Limits::default()
    };
    let out = apply_within(
        r#"{"Hits": "$.items[?search(@.name, $.pattern)].name"}"#,
        &body,
        once,
    )
    .unwrap();
    assert_eq!(out["Hits"].as_array().map(Vec::len), Some(2000));
    // A pattern per element: refused after the limit of compiled patterns.
    let err = error_of(
        r#"{"Hits": "$.items[?match(@.name, @.re)].name"}"#,
        &body,
        Limits::default(),
    );
    assert!(
        err.ends_with("over the regex budget: more than 256 patterns from the data compiled"),
        "{err}"
    );
    // A pattern that compiles to a huge program is refused, not compiled.
    let body = serde_json::json!({"pattern": r"\w{50}{50}", "items": [{"name": "a"}]});
    let err = error_of(
        r#"{"Hits": "$.items[?search(@.name, $.pattern)]"}"#,
        &body,
        Limits::default(),
    );
    assert!(err.contains("compiles to more than 1048576 bytes"), "{err}");
}

#[test]
fn a_big_real_order_maps_within_the_defaults() {
    // About 4 MB: 4,000 lines with options, custom fields and addresses.
    let lines: Vec<Value> = (0..4000)
        .map(|i| {
            serde_json::json!({
                "id": i, "sku": format!("SKU-{i:05}"), "name": format!("Product {i} {}", "n".repeat(400)),
                "quantity": i % 7 + 1, "price_inc_tax": format!("{}.50", i % 300),
                "options": [{"display_name": "Size", "value": "L"}, {"display_name": "Colour", "value": "Red"}],
                "custom": {"gift": i % 2 == 0, "note": "m".repeat(200)},
                "address": {"street": "1 Long Street", "city": "Springfield", "zip": format!("{i:05}")}
            })
        })
        .collect();
    let order = serde_json::json!({"id": 1, "pattern": "^SKU-0+1", "products": lines});
    assert!(
        order.to_string().len() > 3_500_000,
        "{}",
        order.to_string().len()
    );
    let out = apply_within(
        r#"{"Id": "$.id",
            "Skus": "$..sku",
            "Gifts": "$.products[?@.custom.gift == true].sku",
            "Matched": "$.products[?search(@.sku, $.pattern)].sku",
            "Sizes": "$.products[*].options[?@.display_name == 'Size'].value",
            "Lines": {"each": "$.products[*]", "fields": {
                "Sku": "$.sku", "Name": "$.name",
                "Qty": {"from": "$.quantity", "type": "integer"},
                "Price": {"from": "$.price_inc_tax", "type": "decimal"},
                "Size": "$.options[?@.display_name == 'Size'].value",
                "Custom": "$.custom", "Address": "$.address"}},
            "Copy": "$.products"}"#,
        &order,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(out["Skus"].as_array().map(Vec::len), Some(4000));
    assert_eq!(out["Gifts"].as_array().map(Vec::len), Some(2000));
    assert_eq!(out["Lines"].as_array().map(Vec::len), Some(4000));
}

#[test]
fn a_mapping_is_shareable() {
    fn check<T: Send + Sync>() {}
    check::<Mapping>();
}
