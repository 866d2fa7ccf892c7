use super::reads::with_values;
use super::*;
use serde_json::json;

fn read(read: &str, value: Value) -> Seen {
    Seen {
        read: read.into(),
        value,
        missing: false,
    }
}

#[test]
fn a_condition_shows_the_values_it_read_in_place_of_the_fields() {
    let reads = [
        read("record.data", json!({"a": 1})),
        read("record.data.email", json!("jane@example.com")),
        read("record.route", json!("opportunity")),
    ];
    assert_eq!(
        with_values(
            r#"record.route == "record.route" && type_of(record.data.email) != "" && record.data.a"#,
            &reads
        ),
        r#""opportunity" == "record.route" && type_of("jane@example.com") != "" && {"a":1}.a"#
    );
    let missing = Seen {
        read: "record.total".into(),
        value: Value::Null,
        missing: true,
    };
    assert_eq!(
        with_values("record.total >= 100 && myrecord.total", &[missing]),
        "(missing) >= 100 && myrecord.total"
    );
    assert_eq!(
        with_values(r#"record.x == "unclosed"#, &[]),
        r#"record.x == "unclosed"#
    );
}

#[test]
fn a_diff_lists_added_removed_and_changed_paths_and_masks_secrets() {
    let d = diff(
        "record",
        &json!({"a": 1, "gone": "x", "items": [1, 2], "token": "t1"}),
        &json!({"a": 2, "new": {"b": true}, "items": [1], "token": "t2", "odd name": 1}),
    );
    let lines: Vec<Value> = d
        .changes
        .iter()
        .map(|c| json!([c.op, c.path, c.old, c.new]))
        .collect();
    assert_eq!(
        lines,
        [
            json!(["~", "record.a", 1, 2]),
            json!(["-", "record.gone", "x", null]),
            json!(["-", "record.items[1]", 2, null]),
            json!(["~", "record.token", "***", "***"]),
            json!(["+", "record.new", null, {"b": true}]),
            json!(["+", "record[\"odd name\"]", null, 1]),
        ]
    );
}

#[test]
fn clipped_values_stay_within_their_budget() {
    let long = "x".repeat(10_000);
    let v = clip(&json!({"note": long, "n": 1}), VALUE_CHARS);
    let text = v.to_string();
    assert!(text.len() < 400, "{text}");
    assert!(text.contains("more chars"), "{text}");
    let many: Vec<Value> = (0..10_000).map(Value::from).collect();
    let text = clip(&Value::Array(many), VALUE_CHARS).to_string();
    assert!(text.len() < 1200 && text.contains("more items"), "{text}");
}

#[test]
fn the_explanation_stops_at_its_bound_and_counts_the_rest() {
    let mut e = Explanation::default();
    for i in 0..10_000 {
        e.push(
            &format!("steps[{i}] (set)"),
            What::Failed {
                message: "m".repeat(100),
            },
        );
    }
    let bytes = serde_json::to_vec(&e).unwrap().len();
    assert!(bytes <= MAX_BYTES, "{bytes}");
    assert_eq!(e.entries.len() + e.omitted, 10_000);
    assert!(e.omitted > 0);
    let back: Explanation = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
    assert_eq!(back.entries, e.entries);
    // A change from null keeps its null through the trail's bytes.
    let d = diff("record", &json!({"a": null}), &json!({"a": 1, "b": null}));
    let back: Diff = serde_json::from_slice(&serde_json::to_vec(&d).unwrap()).unwrap();
    assert_eq!(back, d);
    assert_eq!(back.changes[0].old, Some(Value::Null));
    assert_eq!(back.changes[1].new, Some(Value::Null));
}

/// The masking as it was first written: the whole explanation through a `serde_json::Value`,
/// every string in it masked. The walk over the typed explanation must give the same.
fn masked_through_value(e: &Explanation, mask: &dyn Fn(&str) -> String) -> Explanation {
    fn walk(v: &mut Value, mask: &dyn Fn(&str) -> String) {
        match v {
            Value::String(s) => *s = mask(s),
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, mask)),
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, mask)),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(e).unwrap();
    walk(&mut value, mask);
    serde_json::from_value(value).unwrap()
}

#[test]
fn every_string_of_an_explanation_is_masked_in_place() {
    let s = "s3cr3t-v4lue";
    let test = |n: usize| Test {
        when: format!("record.a == \"{s}\" && {n} > 0"),
        reads: vec![read(&format!("record.{s}"), json!({"k": [s, 1, null]}))],
        with_values: format!("\"{s}\" == \"{s}\""),
        result: None,
        error: Some(format!("no {s}")),
    };
    let mut e = Explanation::default();
    let step = format!("steps[0] ({s})");
    e.push(
        &step,
        What::Condition {
            test: test(1),
            then: s.into(),
        },
    );
    e.push(
        &step,
        What::Switch {
            arms: vec![test(2), test(3)],
            taken: Some(1),
            otherwise: false,
            then: Some(s.into()),
        },
    );
    let d = diff(
        "record",
        &json!({"a": s, "b": [s], "gone": 1}),
        &json!({"a": 1, "b": [2, s], s: s}),
    );
    e.push(
        &step,
        What::Change {
            reads: vec![read(s, json!(s))],
            call: Some(Call {
                connector: s.into(),
                op: s.into(),
                params: json!({"q": format!("x{s}x")}),
                error: Some(s.into()),
            }),
            diff: d.clone(),
            state: vec![StateWrite {
                key: format!("stock/{s}"),
                diff: d,
            }],
            decisions: vec![Decision {
                at: format!("scripts/{s}.rhai:1:1"),
                when: format!("x == \"{s}\""),
                reads: vec![read(s, json!([s]))],
                result: None,
                error: Some(format!("the condition is {s}")),
            }],
            decisions_omitted: 0,
        },
    );
    e.push(
        &step,
        What::Send {
            connector: Arc::from(s),
            op: Arc::from(format!("{s}.op")),
            object: Some(Arc::from(s)),
            action: 0,
            payload: json!({"note": s, "n": 12345678901234567890u64, "deep": {"x": [s]}, s: 1}),
        },
    );
    e.push(&step, What::Each { elements: 2 });
    e.push(
        &step,
        What::Failed {
            message: format!("{s}: refused"),
        },
    );
    let hide = |t: &str| t.replace(s, "***");
    let expected = masked_through_value(&e, &hide);
    e.mask_strings(&|t: &str| t.contains(s).then(|| hide(t)));
    assert_eq!(e.entries, expected.entries);
    // Keys of quoted objects are not values: left as they were; nothing else holds it.
    let text = serde_json::to_string(&e).unwrap();
    assert_eq!(text.matches(s).count(), 1, "{text}");
    assert!(text.contains("\"s3cr3t-v4lue\":1"), "{text}");
}
