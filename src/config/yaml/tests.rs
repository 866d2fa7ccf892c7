use super::*;
use serde::Deserialize;
use serde_json::json;

fn no_env(_: &str) -> Option<String> {
    None
}

fn key(s: &str) -> PathSeg {
    PathSeg::Key(s.into())
}

#[test]
fn builds_values_with_core_schema_types() {
    let src = "a: 1\nb: 2.50\nc: true\nd: ~\ne: '007'\nf: 007\ng: hello\nh: [1, x]\ni: 123456789012345678901234567890\nj: !!str 12\n";
    let (doc, problems) = parse(src, &no_env).unwrap();
    assert!(problems.is_empty());
    assert_eq!(
        doc.value.to_string(),
        r#"{"a":1,"b":2.50,"c":true,"d":null,"e":"007","f":"007","g":"hello","h":[1,"x"],"i":123456789012345678901234567890,"j":"12"}"#
    );
}

#[test]
fn indexes_positions_of_keys_and_values() {
    let src = "pipeline: p\nsteps:\n  - send: { to: sf, op: create }\n  - script: x\n";
    let (doc, _) = parse(src, &no_env).unwrap();
    let to = [key("steps"), PathSeg::Index(0), key("send"), key("to")];
    assert_eq!(doc.spans.value_pos(&to), Pos { line: 3, col: 17 });
    assert_eq!(doc.spans.key_pos(&to), Pos { line: 3, col: 13 });
    assert_eq!(
        doc.spans.value_pos(&[key("steps"), PathSeg::Index(1)]),
        Pos { line: 4, col: 5 }
    );
}

#[test]
fn reports_syntax_errors_and_duplicates() {
    let err = parse("a: [1, 2\nb: 3\n", &no_env).unwrap_err();
    assert!(err.message.starts_with("YAML syntax"), "{}", err.message);
    let (_, problems) = parse("a: 1\na: 2\n", &no_env).unwrap();
    assert_eq!(
        problems,
        vec![YamlProblem {
            pos: Pos { line: 2, col: 1 },
            message: "duplicate key `a`".into()
        }]
    );
}

#[test]
fn interpolates_values_not_keys_and_records_unset() {
    let env = |n: &str| (n == "HOST").then(|| "example.com".to_string());
    let (doc, _) = parse(
        "url: https://${HOST}/x\n${HOST}: 1\nn: ${N:-5}\nsecret: \"${S}\"\n",
        &env,
    )
    .unwrap();
    assert_eq!(doc.value["url"], "https://example.com/x");
    assert_eq!(doc.value["${HOST}"], 1);
    assert_eq!(doc.value["n"], 5);
    assert_eq!(
        doc.unset_vars,
        vec![(
            vec![key("secret")],
            "S".to_string(),
            Pos { line: 4, col: 10 }
        )]
    );
    // `HOST` names no secret and `url` is no secret's key: shown as it is.
    assert!(doc.secrets.is_empty());
}

#[test]
fn anchors_and_aliases_copy_values() {
    let (doc, _) = parse("a: &x { k: 1 }\nb: *x\n", &no_env).unwrap();
    assert_eq!(doc.value["b"], json!({"k": 1}));
}

#[test]
fn hex_and_octal_integers_are_exact_or_refused() {
    let src = "a: 0xFFFFFFFFFFFFFFFF\nb: -0x10\nc: 0x-5\nd: 0o17\ne: -0o7\nf: 0o8\n\
               g: 0xffffffffffffffffffffffffffffffff\nh: 0x\ni: 0o+1\n";
    let (doc, problems) = parse(src, &no_env).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        doc.value.to_string(),
        r#"{"a":18446744073709551615,"b":-16,"c":"0x-5","d":15,"e":-7,"f":"0o8","g":340282366920938463463374607431768211455,"h":"0x","i":"0o+1"}"#
    );
    let (doc, problems) = parse(
        "big: 0x1FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF\noct: 0o7777777777777777777777777777777777777777777777\n",
        &no_env,
    )
    .unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].pos, Pos { line: 1, col: 6 });
    assert!(problems[0].message.contains("too large"), "{problems:?}");
    assert_eq!(problems[1].pos, Pos { line: 2, col: 6 });
    assert!(
        problems[1].message.starts_with("octal integer"),
        "{problems:?}"
    );
    assert_eq!(doc.value["big"], Value::Null);
}

/// Nine levels of ten aliases each: 10^9 nodes if built.
fn alias_bomb() -> String {
    let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        src.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    src
}

#[test]
fn aliases_that_copy_too_much_are_refused_where_they_are() {
    let src = alias_bomb();
    let err = parse(&src, &no_env).unwrap_err();
    // Level 3 copies 10 x 111 nodes: with the 1110 before it, past the floor of 10 000.
    assert!(err.message.contains("too large"), "{}", err.message);
    assert_eq!(err.pos.line, 4, "{err:?}");
    assert!(err.pos.col > 1, "{err:?}");
}

#[test]
fn aliases_within_the_limit_copy_whole_trees() {
    // Each level copies the last twice: about 3000 nodes copied, under the floor.
    let mut src = String::from("l0: &l0 { k: 1 }\n");
    for i in 1..10 {
        let p = i - 1;
        src.push_str(&format!("l{i}: &l{i} [*l{p}, *l{p}]\n"));
    }
    let (doc, problems) = parse(&src, &no_env).unwrap();
    assert!(problems.is_empty());
    assert_eq!(doc.value["l9"][1][0][1][0][0][1][0][0][1], json!({"k": 1}));
    // A big file may copy more than the floor: four times its own nodes.
    let leaves: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
    let src = format!("a: &a [{}]\nb: [*a, *a, *a]\n", leaves.join(", "));
    let (doc, _) = parse(&src, &no_env).unwrap();
    assert_eq!(doc.value["b"][2][4999], 4999);
    let src = format!("a: &a [{}]\nb: [*a, *a, *a, *a, *a]\n", leaves.join(", "));
    assert!(parse(&src, &no_env).is_err());
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Field {
    from: String,
    #[serde(rename = "type")]
    ty: Option<String>,
}

#[test]
fn unknown_keys_point_at_the_key_with_a_suggestion() {
    let src = "fields:\n  a: { from: $.x, tyep: decimal }\n";
    let (doc, _) = parse(src, &no_env).unwrap();
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct File {
        fields: std::collections::BTreeMap<String, Field>,
    }
    let err = from_doc::<File>(&doc.value).unwrap_err();
    let d = diagnostic(std::path::Path::new("m.yaml"), &doc, src, &err);
    assert_eq!(d.pos, Pos { line: 2, col: 19 });
    assert_eq!(d.message, "unknown key `tyep`");
    assert_eq!(d.help.as_deref(), Some("did you mean `type`?"));
}
