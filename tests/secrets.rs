//! Secrets never leak: a remote that echoes every credential it was sent, in every form, fails
//! an event, and nothing of those credentials reaches the log, the trail, the dead letter or the
//! admin API. The real binary, real sled, the remote on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use support::engine::{eventually, project, Engine};

const PASSWORD: &str = "erp-pa55word-4242";
const API_TOKEN: &str = "erp-api-token-9f8e7d6c";

/// Refuses every call with 400, echoing the request's headers, its URL and a form made of them.
async fn echo(uri: Uri, headers: HeaderMap) -> impl IntoResponse {
    let mut lines = vec![format!("request {uri}")];
    for (k, v) in &headers {
        lines.push(format!("{k}: {}", v.to_str().unwrap_or("")));
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let b64 = auth.strip_prefix("Basic ").unwrap_or("");
    // As some APIs answer: the credentials back, raw base64 and in a form.
    lines.push(format!("credentials={b64}"));
    lines.push(format!(
        "form: grant_type=password&password={}&token={}",
        percent_encoding::utf8_percent_encode(PASSWORD, percent_encoding::NON_ALPHANUMERIC),
        API_TOKEN
    ));
    lines.push(format!("raw pair {b64} and token {API_TOKEN}"));
    (StatusCode::BAD_REQUEST, lines.join("\n"))
}

#[tokio::test]
async fn an_echoing_remote_leaks_no_secret_into_logs_trail_dead_letter_or_api() {
    let app = axum::Router::new().fallback(echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = r#"
connectors:
  erp:
    kind: http
    base_url: "${ERP_URL}"
    headers:
      X-Api-Token: "${ERP_API_TOKEN}"
      X-Region: "${ERP_REGION}"
    auth: { basic: { username: "${ERP_USER}", password: "${ERP_PASSWORD}" } }
    operations:
      order: { method: POST, path: "/orders?access_token=${ERP_API_TOKEN}" }
"#;
    let pipeline = r#"
pipeline: orders
source:
  webhook: { path: /hooks/orders }
steps:
  - script: route
  - send: { to: erp, op: order }
"#;
    // Its decision reads the note: the trail shows the value it read, masked.
    let script =
        "if record.note == \"none\" { record.kind = \"plain\"; } else { record.kind = \"noted\"; }";
    let dir = project(&[
        ("crossdock.yaml", config),
        ("pipelines/orders.yaml", pipeline),
        ("scripts/route.rhai", script),
    ]);
    let engine = Engine::start_with(
        dir.path(),
        &[
            ("ERP_URL", &url),
            ("ERP_API_TOKEN", API_TOKEN),
            ("ERP_REGION", "eu-west-1"),
            ("ERP_USER", "crossdock-app"),
            ("ERP_PASSWORD", PASSWORD),
        ],
    );
    let (status, a) = engine.post("/hooks/orders", r#"{"id": 1}"#).await;
    assert_eq!(status, 202);
    let id = a["event_id"].as_str().unwrap().to_string();
    let letter = eventually("the dead letter", Duration::from_secs(20), || async {
        let (status, l) = engine.admin(&format!("/api/dlq/{id}")).await;
        (status == 200).then_some(l)
    })
    .await;
    let (_, trail) = engine.admin(&format!("/api/events/{id}")).await;
    let (_, list) = engine.admin("/api/dlq").await;
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .args(["dlq", "show", &id, "--url", &engine.url("")])
        .arg("--project")
        .arg(dir.path())
        .env("CROSSDOCK_ADMIN_TOKEN", support::engine::ADMIN_TOKEN)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&cli.stdout).into_owned();
    let everything = [
        letter.to_string(),
        trail.to_string(),
        list.to_string(),
        shown.clone(),
        engine.log(),
    ]
    .join("\n");
    // The remote's answer did arrive (it is what the event failed with) ...
    assert!(
        letter["reason"].as_str().unwrap().contains("400"),
        "{letter}"
    );
    assert!(everything.contains("x-region: eu-west-1"), "{everything}");
    // ... and no form of any credential is in any of it.
    use base64::Engine as _;
    let pair =
        base64::engine::general_purpose::STANDARD.encode(format!("crossdock-app:{PASSWORD}"));
    let encoded =
        percent_encoding::utf8_percent_encode(PASSWORD, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    for secret in [PASSWORD, API_TOKEN, &pair, &encoded] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
    assert!(everything.contains("Basic ***"), "{everything}");
    assert!(everything.contains("access_token=***"), "{everything}");

    // A body that carries a credential in a field of no telling name: the trail's explanation
    // shows the payload that was sent with the credential masked (the dead letter keeps the
    // body as received, which is what a retry needs).
    let body = format!(r#"{{"id": 2, "note": "{PASSWORD}"}}"#);
    let (status, a) = engine.post("/hooks/orders", &body).await;
    assert_eq!(status, 202);
    let id = a["event_id"].as_str().unwrap().to_string();
    let trail = eventually("the second trail", Duration::from_secs(20), || async {
        let (_, t) = engine.admin(&format!("/api/events/{id}")).await;
        (t["status"] == "dead_lettered").then_some(t)
    })
    .await;
    assert!(!trail.to_string().contains(PASSWORD), "{trail}");
    let sent = trail["explanation"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "send")
        .unwrap();
    assert_eq!(
        sent["payload"],
        serde_json::json!({"id": 2, "note": "***", "kind": "noted"})
    );
    // The script's decision, as the admin API returns it: where, what it read (masked), what
    // it came to.
    let script = trail["explanation"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"].as_str().unwrap().contains("script route"))
        .unwrap();
    assert_eq!(
        script["decisions"],
        serde_json::json!([{
            "at": "scripts/route.rhai:1:1",
            "when": "record.note == \"none\"",
            "reads": [{"read": "record.note", "value": "***"}],
            "result": false,
        }])
    );
}
