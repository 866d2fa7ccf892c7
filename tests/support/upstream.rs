//! A generic HTTP upstream on loopback: records every request, answers 201 with an id, and
//! can be told to be slow or to fail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Answers to give before the normal 201, in order: (status, body, Retry-After).
    failures: Vec<(u16, String, Option<u64>)>,
    /// Fail every request with this status until cleared.
    down: Option<u16>,
    delay: Duration,
    /// Every request that reached the server, failed ones included.
    hits: usize,
}

#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Mutex<Inner>>,
    pub url: String,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Upstream { inner, url }
    }

    /// `crossdock.yaml` with one `http` connector `erp` calling this upstream: `create` is
    /// `POST /orders`.
    pub fn project_file(&self) -> String {
        format!(
            "connectors:\n  erp:\n    kind: http\n    base_url: {}\n    operations:\n      create: {{ method: POST, path: /orders }}\n",
            self.url
        )
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    pub fn fail_next(&self, status: u16, body: &str, retry_after: Option<u64>) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .push((status, body.to_string(), retry_after));
    }

    pub fn set_down(&self, status: Option<u16>) {
        self.inner.lock().unwrap().down = status;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    /// Requests that reached the server, failed ones included.
    pub fn hits(&self) -> usize {
        self.inner.lock().unwrap().hits
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delay = {
        let mut inner = inner.lock().unwrap();
        inner.hits += 1;
        inner.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut inner = inner.lock().unwrap();
    if let Some(status) = inner.down {
        return (StatusCode::from_u16(status).unwrap(), "down").into_response();
    }
    if !inner.failures.is_empty() {
        let (status, body, retry_after) = inner.failures.remove(0);
        let mut r = (StatusCode::from_u16(status).unwrap(), body).into_response();
        if let Some(s) = retry_after {
            r.headers_mut()
                .insert("retry-after", s.to_string().parse().unwrap());
        }
        return r;
    }
    let n = inner.received.len() + 1;
    inner.received.push(Received {
        method: method.to_string(),
        path: uri.to_string(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "id": format!("up-{n}") })),
    )
        .into_response()
}
