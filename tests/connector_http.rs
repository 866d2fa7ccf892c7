//! The `http` connector against a real HTTP server on loopback: an axum app that records what
//! it was sent, issues OAuth 2.0 tokens and answers the statuses a test asks for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::to_bytes;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use crossdock::connectors::{CallError, Connector, Reply, Request};
use serde_json::{json, Value};
use support::connector::{build, context, permanent, retryable, try_build};

const CLIENT_ID: &str = "crossdock-client";
const CLIENT_SECRET: &str = "client-s3cret-value";

/// What the test server knows and can be told.
#[derive(Default)]
struct Upstream {
    token_requests: AtomicUsize,
    /// Calls on `/secure/...`, whatever their outcome.
    secure_calls: AtomicUsize,
    /// Tokens the server accepts; revoking empties it.
    valid: Mutex<BTreeSet<String>>,
    expires_in: Mutex<Option<u64>>,
    token_delay: Mutex<Duration>,
    /// Refuse every token, even fresh ones (credentials revoked at the provider).
    refuse_all: Mutex<bool>,
    /// Form fields of the last token request.
    last_form: Mutex<Vec<(String, String)>>,
}

impl Upstream {
    fn revoke_tokens(&self) {
        self.valid.lock().unwrap().clear();
    }
}

struct Server {
    base_url: String,
    upstream: Arc<Upstream>,
}

async fn start() -> Server {
    let upstream = Arc::new(Upstream::default());
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(upstream.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base_url: format!("http://{addr}"),
        upstream,
    }
}

/// One handler for every path, so the routes read as one table.
async fn handle(State(up): State<Arc<Upstream>>, req: HttpRequest) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = to_bytes(req.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&body).into_owned();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(decode)
    };
    let seen = json!({
        "id": "rec-1",
        "method": method,
        "path": path,
        "query": query,
        "authorization": header(&headers, "authorization"),
        "x-api-key": header(&headers, "x-api-key"),
        "x-custom": header(&headers, "x-custom"),
        "content-type": header(&headers, "content-type"),
        "body": serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
    });

    if path == "/oauth/token" {
        return token(&up, &headers, &text).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        let mut response = (status, param("body").unwrap_or_default()).into_response();
        if let Some(after) = param("retry_after") {
            response
                .headers_mut()
                .insert("retry-after", after.parse().unwrap());
        }
        return response;
    }
    match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            axum::Json(seen).into_response()
        }
        "/text" => "plain words".into_response(),
        "/empty" => StatusCode::NO_CONTENT.into_response(),
        "/numeric" => axum::Json(json!({"id": 12345678901234567890u64})).into_response(),
        // Echoes the credentials it was sent, as some APIs' error pages do.
        "/echo-auth-error" => (
            StatusCode::BAD_REQUEST,
            format!(
                "bad request with {} / {}",
                header(&headers, "authorization").unwrap_or_default(),
                header(&headers, "x-api-key").unwrap_or_default()
            ),
        )
            .into_response(),
        p if p.starts_with("/secure/") => {
            up.secure_calls.fetch_add(1, Ordering::SeqCst);
            let presented = header(&headers, "authorization")
                .and_then(|a| a.strip_prefix("Bearer ").map(str::to_string));
            let ok = !*up.refuse_all.lock().unwrap()
                && presented.is_some_and(|t| up.valid.lock().unwrap().contains(&t));
            if ok {
                axum::Json(seen).into_response()
            } else {
                (StatusCode::UNAUTHORIZED, "token expired").into_response()
            }
        }
        _ => axum::Json(seen).into_response(),
    }
}

async fn token(up: &Upstream, headers: &HeaderMap, form: &str) -> Response {
    assert_eq!(
        header(headers, "content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let fields: Vec<(String, String)> = form
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect();
    *up.last_form.lock().unwrap() = fields.clone();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let delay = *up.token_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let n = up.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    // RFC 6749 §2.3.1: the client authenticates in the body or with HTTP Basic, never both.
    let basic = header(headers, "authorization").and_then(|h| {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(h.strip_prefix("Basic ")?)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (id, secret) = text.split_once(':')?;
        Some((id.to_string(), secret.to_string()))
    });
    // Oracle Commerce's login takes the application key alone as a bearer token.
    let bearer = header(headers, "authorization").and_then(|h| {
        h.strip_prefix("Bearer ")
            .map(|k| (CLIENT_ID.to_string(), k.to_string()))
    });
    let basic = basic.or(bearer);
    let (id, secret) = match &basic {
        Some((id, secret)) if field("client_secret").is_none() => {
            (Some(id.as_str()), Some(secret.as_str()))
        }
        Some(_) => (None, None),
        None => (field("client_id"), field("client_secret")),
    };
    if field("grant_type") != Some("client_credentials")
        || id != Some(CLIENT_ID)
        || secret != Some(CLIENT_SECRET)
    {
        // Echoes the secret it got, so the test can see the connector masks it.
        let body = json!({"error": "invalid_client",
            "error_description": format!("unknown secret {}", field("client_secret").unwrap_or(""))});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let access_token = format!("tok-{n}-abcdef");
    up.valid.lock().unwrap().insert(access_token.clone());
    let mut answer = json!({"access_token": access_token, "token_type": "Bearer"});
    if let Some(secs) = *up.expires_in.lock().unwrap() {
        answer["expires_in"] = json!(secs);
    }
    axum::Json(answer).into_response()
}

/// A form or query value as sent (`+` for a space, `%XX` for the rest).
fn decode(value: &str) -> String {
    let value = value.replace('+', " ");
    percent_encoding::percent_decode_str(&value)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or_default().to_string())
}

/// The connector as `crossdock run` builds it: from its config, through the public API.
fn connector(config: Value) -> Arc<dyn Connector> {
    let mut config = config;
    config["kind"] = json!("http");
    build("api", config)
}

fn build_error(config: Value) -> String {
    let mut config = config;
    config["kind"] = json!("http");
    match try_build("api", config, &context()) {
        Ok(_) => panic!("built"),
        Err(e) => e.to_string(),
    }
}

/// Every operation these tests use; `{code}` picks the status the server answers.
fn operations() -> Value {
    json!({
        "get_order": {"method": "GET", "path": "/v2/orders/{id}"},
        "delete_note": {"method": "DELETE", "path": "/v2/orders/{id}/notes/{note}"},
        "add_note": {"method": "POST", "path": "/v2/orders/{id}/notes"},
        "replace": {"method": "PUT", "path": "/v2/items"},
        "status": {"method": "GET", "path": "/status/{code}"},
        "slow": {"method": "GET", "path": "/slow"},
        "text": {"method": "GET", "path": "/text"},
        "empty": {"method": "DELETE", "path": "/empty"},
        "numeric": {"method": "POST", "path": "/numeric"},
        "echo_auth_error": {"method": "GET", "path": "/echo-auth-error"},
        "secure": {"method": "GET", "path": "/secure/{id}"},
    })
}

fn plain(server: &Server) -> Arc<dyn Connector> {
    connector(json!({
        "base_url": format!("{}/", server.base_url),
        "headers": {"X-Custom": "yes"},
        "timeout": "500ms",
        "operations": operations(),
    }))
}

fn oauth2(server: &Server, secret: &str) -> Arc<dyn Connector> {
    connector(json!({
        "base_url": server.base_url,
        "auth": {"oauth2": {
            "token_url": format!("{}/oauth/token", server.base_url),
            "client_id": CLIENT_ID,
            "client_secret": secret,
            "scope": "orders/read",
        }},
        "operations": operations(),
    }))
}

async fn call(c: &Arc<dyn Connector>, op: &str, payload: Value) -> Result<Reply, CallError> {
    c.call(Request {
        connector: "api",
        op,
        object: None,
        key: None,
        payload: &payload,
        idempotency_key: None,
    })
    .await
}

#[tokio::test]
async fn get_fills_placeholders_and_sends_the_rest_as_query() {
    let server = start().await;
    let c = plain(&server);
    let reply = call(
        &c,
        "get_order",
        json!({"id": "A/1 2#x", "status": "open", "page": 2, "all": true, "gone": null}),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.remote_id.as_deref(), Some("rec-1"));
    assert_eq!(reply.body["method"], "GET");
    assert_eq!(reply.body["path"], "/v2/orders/A%2F1%202%23x");
    assert_eq!(reply.body["query"], "all=true&page=2&status=open");
    assert_eq!(reply.body["x-custom"], "yes");
    assert_eq!(reply.body["body"], Value::Null);

    let reply = call(&c, "delete_note", json!({"id": 7, "note": "n-3"}))
        .await
        .unwrap();
    assert_eq!(reply.body["method"], "DELETE");
    assert_eq!(reply.body["path"], "/v2/orders/7/notes/n-3");
    assert_eq!(reply.body["query"], "");
}

#[tokio::test]
async fn post_and_put_send_the_whole_payload_as_json() {
    let server = start().await;
    let c = plain(&server);
    let payload = json!({"id": 250, "text": "gift wrap", "lines": [{"sku": "A", "qty": 2}]});
    let reply = call(&c, "add_note", payload.clone()).await.unwrap();
    assert_eq!(reply.body["method"], "POST");
    assert_eq!(reply.body["path"], "/v2/orders/250/notes");
    assert_eq!(reply.body["query"], "");
    assert_eq!(reply.body["content-type"], "application/json");
    assert_eq!(reply.body["body"], payload);

    let items = json!({"items": [{"sku": "A", "quantity": 12}]});
    let reply = call(&c, "replace", items.clone()).await.unwrap();
    assert_eq!(reply.body["method"], "PUT");
    assert_eq!(reply.body["body"], items);
}

#[tokio::test]
async fn payload_problems_are_permanent_and_say_which_field() {
    let server = start().await;
    let c = plain(&server);
    let message = permanent(call(&c, "get_order", json!({"status": "open"})).await);
    assert!(message.contains("no field `id`"), "{message}");
    let message = permanent(call(&c, "get_order", json!({"id": {"nested": 1}})).await);
    assert!(
        message.contains("`id`") && message.contains("an object"),
        "{message}"
    );
    let message = permanent(call(&c, "get_order", json!({"id": 1, "tags": ["a"]})).await);
    assert!(
        message.contains("`tags`") && message.contains("an array"),
        "{message}"
    );
    let message = permanent(call(&c, "nope", json!({})).await);
    assert!(message.contains("unknown operation `nope`"), "{message}");
}

#[tokio::test]
async fn answers_become_replies() {
    let server = start().await;
    let c = plain(&server);
    let reply = call(&c, "text", Value::Null).await.unwrap();
    assert_eq!(reply.body, Value::String("plain words".into()));
    assert_eq!(reply.remote_id, None);
    let reply = call(&c, "empty", Value::Null).await.unwrap();
    assert_eq!(
        reply,
        Reply {
            status: 204,
            remote_id: None,
            body: Value::Null
        }
    );
    let reply = call(&c, "numeric", json!({})).await.unwrap();
    assert_eq!(reply.remote_id.as_deref(), Some("12345678901234567890"));
}

#[tokio::test]
async fn each_auth_kind_is_sent() {
    let server = start().await;
    let with_auth = |auth: Value| {
        connector(json!({"base_url": server.base_url, "auth": auth, "operations": operations()}))
    };
    let bearer = with_auth(json!({"bearer": {"token": "bearer-t0ken-1"}}));
    let reply = call(&bearer, "get_order", json!({"id": 1})).await.unwrap();
    assert_eq!(reply.body["authorization"], "Bearer bearer-t0ken-1");

    let basic = with_auth(json!({"basic": {"username": "alice", "password": "pw-s3cret-9"}}));
    let reply = call(&basic, "get_order", json!({"id": 1})).await.unwrap();
    assert_eq!(
        reply.body["authorization"],
        "Basic YWxpY2U6cHctczNjcmV0LTk="
    );

    let key = with_auth(json!({"api_key": {"header": "X-Api-Key", "value": "key-v4lue-7"}}));
    let reply = call(&key, "get_order", json!({"id": 1})).await.unwrap();
    assert_eq!(reply.body["x-api-key"], "key-v4lue-7");
    assert_eq!(reply.body["authorization"], Value::Null);

    let oauth = oauth2(&server, CLIENT_SECRET);
    let reply = call(&oauth, "get_order", json!({"id": 1})).await.unwrap();
    assert_eq!(reply.body["authorization"], "Bearer tok-1-abcdef");
    let form = server.upstream.last_form.lock().unwrap().clone();
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        form,
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", "orders/read"),
        ]
    );
}

/// Salesforce Commerce Cloud's Account Manager takes the client's credentials as HTTP Basic.
#[tokio::test]
async fn oauth2_client_credentials_can_go_as_basic_auth() {
    let server = start().await;
    let c = connector(json!({
        "base_url": server.base_url,
        "auth": {"oauth2": {
            "token_url": format!("{}/oauth/token", server.base_url),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "client_auth": "basic",
        }},
        "operations": operations(),
    }));
    let reply = call(&c, "secure", json!({"id": 1})).await.unwrap();
    assert_eq!(reply.body["authorization"], "Bearer tok-1-abcdef");
    let form = server.upstream.last_form.lock().unwrap().clone();
    assert!(form.iter().all(|(k, _)| k != "client_secret"), "{form:?}");

    // The secret alone as a bearer token, as Oracle Commerce's `/ccadmin/v1/login` takes its
    // application key.
    let c = connector(json!({
        "base_url": server.base_url,
        "auth": {"oauth2": {
            "token_url": format!("{}/oauth/token", server.base_url),
            "client_id": "unused",
            "client_secret": CLIENT_SECRET,
            "client_auth": "bearer",
        }},
        "operations": operations(),
    }));
    let reply = call(&c, "secure", json!({"id": 1})).await.unwrap();
    assert_eq!(reply.body["authorization"], "Bearer tok-2-abcdef");
    let form = server.upstream.last_form.lock().unwrap().clone();
    assert_eq!(
        form,
        vec![("grant_type".to_string(), "client_credentials".to_string())]
    );
}

#[tokio::test]
async fn oauth2_token_is_cached_across_calls() {
    let server = start().await;
    *server.upstream.expires_in.lock().unwrap() = Some(3600);
    let c = oauth2(&server, CLIENT_SECRET);
    for id in 0..3 {
        let reply = call(&c, "secure", json!({"id": id})).await.unwrap();
        assert_eq!(reply.body["authorization"], "Bearer tok-1-abcdef");
    }
    assert_eq!(server.upstream.token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn oauth2_token_is_renewed_before_it_expires() {
    let server = start().await;
    // One second of life: renewed after 0.9 s (a tenth is the safety margin).
    *server.upstream.expires_in.lock().unwrap() = Some(1);
    let c = oauth2(&server, CLIENT_SECRET);
    call(&c, "secure", json!({"id": 1})).await.unwrap();
    call(&c, "secure", json!({"id": 2})).await.unwrap();
    assert_eq!(server.upstream.token_requests.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(950)).await;
    let reply = call(&c, "secure", json!({"id": 3})).await.unwrap();
    assert_eq!(reply.body["authorization"], "Bearer tok-2-abcdef");
    assert_eq!(server.upstream.token_requests.load(Ordering::SeqCst), 2);
    // Not a single 401 was needed for that.
    assert_eq!(server.upstream.secure_calls.load(Ordering::SeqCst), 3);
}

/// A call waiting in the `rate` queue takes its token when its turn comes: with two calls a
/// second and a token that lives one second (renewed after 0.9 s), the fourth of four calls
/// made at once is sent at 1.5 s at the earliest, and carries the renewed token, not the one
/// the first call fetched.
#[tokio::test]
async fn a_call_waiting_for_its_rate_turn_takes_its_token_then() {
    let server = start().await;
    *server.upstream.expires_in.lock().unwrap() = Some(1);
    let c = connector(json!({
        "base_url": server.base_url,
        "auth": {"oauth2": {
            "token_url": format!("{}/oauth/token", server.base_url),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }},
        "rate": {"requests": 2, "per": "1s"},
        "operations": operations(),
    }));
    let calls: Vec<_> = (1..=4)
        .map(|id| {
            let c = c.clone();
            tokio::spawn(async move { call(&c, "secure", json!({ "id": id })).await })
        })
        .collect();
    let mut tokens = Vec::new();
    for reply in calls {
        let reply = reply.await.unwrap().unwrap();
        tokens.push(reply.body["authorization"].as_str().unwrap().to_string());
    }
    assert!(
        tokens.contains(&"Bearer tok-1-abcdef".to_string()),
        "{tokens:?}"
    );
    assert!(
        tokens.iter().any(|t| t != "Bearer tok-1-abcdef"),
        "a call sent 1.5 s after the first still carried its token: {tokens:?}"
    );
    // Renewed ahead of time, not after a 401.
    assert_eq!(server.upstream.secure_calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn oauth2_token_is_renewed_after_a_401_and_the_call_replayed() {
    let server = start().await;
    let c = oauth2(&server, CLIENT_SECRET);
    call(&c, "secure", json!({"id": 1})).await.unwrap();
    server.upstream.revoke_tokens();
    let reply = call(&c, "secure", json!({"id": 2})).await.unwrap();
    assert_eq!(reply.body["authorization"], "Bearer tok-2-abcdef");
    assert_eq!(reply.body["path"], "/secure/2");
    assert_eq!(server.upstream.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(server.upstream.secure_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_401_with_a_fresh_token_is_permanent_not_a_loop() {
    let server = start().await;
    *server.upstream.refuse_all.lock().unwrap() = true;
    let c = oauth2(&server, CLIENT_SECRET);
    let message = permanent(call(&c, "secure", json!({"id": 1})).await);
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("token expired"), "{message}");
    assert_eq!(server.upstream.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(server.upstream.secure_calls.load(Ordering::SeqCst), 2);
    assert!(!message.contains("tok-2-abcdef"), "{message}");
}

#[tokio::test]
async fn concurrent_calls_fetch_one_token() {
    let server = start().await;
    *server.upstream.token_delay.lock().unwrap() = Duration::from_millis(300);
    let c = oauth2(&server, CLIENT_SECRET);
    let calls = (0..20).map(|id| {
        let c = c.clone();
        tokio::spawn(async move { call(&c, "secure", json!({"id": id})).await })
    });
    for result in futures_util::future::join_all(calls).await {
        let reply = result.unwrap().unwrap();
        assert_eq!(reply.body["authorization"], "Bearer tok-1-abcdef");
    }
    assert_eq!(server.upstream.token_requests.load(Ordering::SeqCst), 1);

    // And a burst of 401s after a revocation costs one more token, not twenty.
    server.upstream.revoke_tokens();
    let calls = (0..20).map(|id| {
        let c = c.clone();
        tokio::spawn(async move { call(&c, "secure", json!({"id": id})).await })
    });
    for result in futures_util::future::join_all(calls).await {
        let reply = result.unwrap().unwrap();
        assert_eq!(reply.body["authorization"], "Bearer tok-2-abcdef");
    }
    assert_eq!(server.upstream.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable() {
    let server = start().await;
    let c = plain(&server);
    let (message, after) =
        retryable(call(&c, "status", json!({"code": 429, "retry_after": "7"})).await);
    assert_eq!(after, Some(Duration::from_secs(7)));
    assert!(message.contains("429 Too Many Requests"), "{message}");

    let (_, after) = retryable(
        call(
            &c,
            "status",
            json!({"code": 503, "retry_after": "Sun, 06 Nov 1994 08:49:37 GMT"}),
        )
        .await,
    );
    assert_eq!(after, Some(Duration::ZERO));

    for code in [500, 502, 504, 408] {
        let (message, after) = retryable(call(&c, "status", json!({"code": code})).await);
        assert!(message.contains(&code.to_string()), "{message}");
        assert_eq!(after, None);
    }
}

#[tokio::test]
async fn other_4xx_are_permanent_with_the_remote_body() {
    let server = start().await;
    let c = plain(&server);
    let message =
        permanent(call(&c, "status", json!({"code": 404, "body": "no-such-order"})).await);
    assert!(message.contains("404 Not Found"), "{message}");
    assert!(message.contains("no-such-order"), "{message}");
    assert!(message.contains("/status/404"), "{message}");
    for code in [400, 403, 409, 422] {
        permanent(call(&c, "status", json!({"code": code})).await);
    }
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retryable() {
    let server = start().await;
    let c = plain(&server);
    let started = std::time::Instant::now();
    let (message, _) = retryable(call(&c, "slow", Value::Null).await);
    assert!(message.contains("timed out after 500ms"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let c = connector(json!({"base_url": format!("http://{closed}"), "operations": operations()}));
    let (message, _) = retryable(call(&c, "get_order", json!({"id": 1})).await);
    assert!(message.contains(&closed.to_string()), "{message}");
}

#[tokio::test]
async fn secrets_never_appear_in_error_messages() {
    let server = start().await;
    let with_auth = |auth: Value| {
        connector(json!({"base_url": server.base_url, "auth": auth, "operations": operations()}))
    };
    let cases = [
        (
            json!({"bearer": {"token": "bearer-t0ken-1"}}),
            "bearer-t0ken-1",
        ),
        (
            json!({"api_key": {"header": "X-Api-Key", "value": "key-v4lue-7"}}),
            "key-v4lue-7",
        ),
    ];
    for (auth, secret) in cases {
        let message = permanent(call(&with_auth(auth), "echo_auth_error", json!({})).await);
        assert!(message.contains("bad request with"), "{message}");
        assert!(!message.contains(secret), "{message}");
        assert!(message.contains("***"), "{message}");
    }

    // A token the connector fetched itself, echoed back.
    let message = permanent(
        call(
            &oauth2(&server, CLIENT_SECRET),
            "echo_auth_error",
            json!({}),
        )
        .await,
    );
    assert!(!message.contains("tok-1-abcdef"), "{message}");

    // A token endpoint that repeats the wrong secret it was sent.
    let message = permanent(
        call(
            &oauth2(&server, "wrong-s3cret-2"),
            "secure",
            json!({"id": 1}),
        )
        .await,
    );
    assert!(message.contains("invalid_client"), "{message}");
    assert!(message.contains("401"), "{message}");
    assert!(!message.contains("wrong-s3cret-2"), "{message}");

    // A configured credential header, echoed.
    let c = connector(json!({
        "base_url": server.base_url,
        "headers": {"Authorization": "Token hdr-s3cret-5"},
        "operations": operations(),
    }));
    let message = permanent(call(&c, "echo_auth_error", json!({})).await);
    assert!(!message.contains("hdr-s3cret-5"), "{message}");
}

#[test]
fn config_mistakes_are_build_errors() {
    let err = build_error(json!({"base_url": "http://x", "timeout": "soon"}));
    assert!(err.contains("timeout `soon`"), "{err}");
    let err = build_error(json!({"base_url": "not a url"}));
    assert!(err.contains("base_url"), "{err}");
    let err = build_error(json!({"base_url": "http://x", "headers": {"Bad Header": "v"}}));
    assert!(err.contains("`Bad Header`"), "{err}");
    let err =
        build_error(json!({"base_url": "http://x", "headers": {"X-Token": "line\nbreak-s3cret"}}));
    assert!(err.contains("x-token") && !err.contains("s3cret"), "{err}");
    let err = build_error(json!({"base_url": "http://x",
        "operations": {"get": {"method": "GET", "path": "/orders/{id"}}}));
    assert!(
        err.contains("operation `get`") && err.contains("not closed"),
        "{err}"
    );
}
