//! A webhook's `verify:` and `dedup_id:` are built once, by `flow::load`, and the compiled
//! `Flow` carries what was built: a real project in a temp dir, loaded as `check` and `run` load
//! it, then a delivery checked with nothing but what the flow holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

use crossdock::config::diag::Diagnostics;
use crossdock::config::env::process_env;
use crossdock::flow::{load, CompileOptions, Project};

const SECRET: &str = "shpss_compile_ingress";

fn load_project(pipelines: &[(&str, &str)]) -> Result<Project, Diagnostics> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("crossdock.yaml"),
        "connectors:\n  out: { kind: stdout }\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    for (name, text) in pipelines {
        std::fs::write(dir.path().join(format!("pipelines/{name}.yaml")), text).unwrap();
    }
    load(dir.path(), &process_env, CompileOptions::default()).map(|(p, _)| p)
}

fn shopify_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[test]
fn the_compiled_flow_carries_the_scheme_and_the_dedup_path() {
    let hook = format!(
        "pipeline: orders\nsource:\n  webhook:\n    path: /hooks/orders\n    \
         verify: {{ scheme: shopify, secret: \"{SECRET}\" }}\n    dedup_id: $.order.id\n\
         steps:\n  - send: {{ to: out, op: print }}\n"
    );
    let tick = "pipeline: tick\nsource: { schedule: { cron: \"0 0 * * * *\" } }\n\
                steps:\n  - send: { to: out, op: print }\n";
    let project = match load_project(&[("orders", &hook), ("tick", tick)]) {
        Ok(p) => p,
        Err(d) => panic!("the test project does not load:\n{d}"),
    };
    assert!(project.pipeline("tick").unwrap().webhook.is_none());

    let webhook = project.pipeline("orders").unwrap().webhook.clone().unwrap();
    let scheme = webhook.scheme.as_ref().expect("verify: was given");
    let body = br#"{"order": {"id": "A-17", "lines": [1, 2]}, "note": "x"}"#;
    let mut headers = HeaderMap::new();
    headers.insert(
        "X-Shopify-Hmac-Sha256",
        HeaderValue::from_str(&shopify_signature(body)).unwrap(),
    );
    headers.insert("X-Shopify-Webhook-Id", HeaderValue::from_static("wh-1"));
    let verified = scheme.verify(&headers, body, 0).unwrap();
    assert_eq!(verified.delivery_id.as_deref(), Some("wh-1"));
    assert!(!scheme.signs_delivery_id());
    assert!(scheme.verify(&headers, b"{}", 0).is_err());

    let dedup = webhook.dedup_id.as_ref().expect("dedup_id: was given");
    let parsed = dedup.parser.parse(body).unwrap();
    assert_eq!(dedup.path.first(&parsed), Some(&serde_json::json!("A-17")));
}

#[test]
fn a_scheme_that_cannot_be_built_is_a_located_load_error() {
    let hook = "pipeline: orders\nsource:\n  webhook:\n    path: /hooks/orders\n    \
                verify: { scheme: github, secret: \"s\", header: X-Other }\n\
                steps:\n  - send: { to: out, op: print }\n";
    let diags = match load_project(&[("orders", hook)]) {
        Ok(_) => panic!("a github scheme with `header:` must not load"),
        Err(d) => d,
    };
    let errors = located_errors(&diags);
    // Located at the `verify:` value, as every compile diagnostic is.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("pipelines/orders.yaml:5:13: verify: ")
            && errors[0].ends_with("`header` only applies to scheme hmac-sha256, not github"),
        "{errors:?}"
    );
}

#[test]
fn an_ordering_key_is_compiled_once_and_a_bad_one_is_located() {
    let orders = "pipeline: orders\nordering_key: $.order.id\nsource: { webhook: { path: /o } }\n\
                  steps:\n  - send: { to: out, op: print }\n";
    let project = match load_project(&[("orders", orders)]) {
        Ok(p) => p,
        Err(d) => panic!("the test project does not load:\n{d}"),
    };
    let key = project.pipeline("orders").unwrap().ordering_key.as_ref();
    let key = key.expect("ordering_key: was given");
    assert_eq!(
        key.of(br#"{"order": {"id": "A-17"}, "x": [1]}"#).as_deref(),
        Some("A-17")
    );
    // A number is its JSON text; nothing there (or null) is no key.
    assert_eq!(key.of(br#"{"order": {"id": 17}}"#).as_deref(), Some("17"));
    assert_eq!(key.of(br#"{"order": {"id": null}}"#), None);
    assert_eq!(key.of(br#"{"other": 1}"#), None);
    assert_eq!(key.of(b"not json"), None);

    let bad = "pipeline: orders\nordering_key: $.order[\nsource: { webhook: { path: /o } }\n\
               steps:\n  - send: { to: out, op: print }\n";
    let diags = match load_project(&[("orders", bad)]) {
        Ok(_) => panic!("a broken ordering_key must not load"),
        Err(d) => d,
    };
    let errors = located_errors(&diags);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("pipelines/orders.yaml:2:")
            && errors[0].contains("JSONPath `$.order[`"),
        "{errors:?}"
    );
}

/// Every error as `file:line:col: message`.
fn located_errors(diags: &Diagnostics) -> Vec<String> {
    diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| {
            format!(
                "{}:{}:{}: {}",
                d.file.display(),
                d.pos.line,
                d.pos.col,
                d.message
            )
        })
        .collect()
}
