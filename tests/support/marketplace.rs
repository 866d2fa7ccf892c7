//! What the mock platforms share (the marketplaces `mock_shopee`, `mock_tiktok`, `mock_lazada`
//! and the commerce clouds `mock_sfcc`, `mock_sap`, `mock_adobe`, `mock_oracle`): the HMAC they
//! check signatures with, reading a request's query, form, credentials and body, the tokens
//! each platform hands out, a throttle, paging, and the log of what was called.
//!
//! The token rules are the platforms' as documented: an access token works until it expires;
//! each refresh hands out a new refresh token and retires the one it was asked with; a client
//! credentials grant hands out a new access token.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::response::Response;
use hmac::Mac;
use serde_json::Value;

pub fn hmac_hex(key: &str, text: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(text);
    hex::encode(mac.finalize().into_bytes())
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A request read whole: path, decoded query, a header or two, the raw body.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// Why the mock refused it, when it did.
    pub refused: Option<String>,
}

impl Seen {
    pub async fn read(request: Request) -> Seen {
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().map(url_pairs).unwrap_or_default();
        let headers = request
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = to_bytes(request.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec();
        Seen {
            method,
            path,
            query,
            headers,
            body,
            at: Instant::now(),
            refused: None,
        }
    }

    pub fn param(&self, name: &str) -> &str {
        self.query.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as an `application/x-www-form-urlencoded` form.
    pub fn form(&self) -> BTreeMap<String, String> {
        url_pairs(&String::from_utf8_lossy(&self.body))
    }

    /// The token of an `Authorization: Bearer` header; empty without one.
    pub fn bearer(&self) -> &str {
        self.headers
            .get("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("")
    }

    /// The user and password of an `Authorization: Basic` header.
    pub fn basic(&self) -> Option<(String, String)> {
        use base64::Engine as _;
        let encoded = self.headers.get("authorization")?.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some((user.to_string(), password.to_string()))
    }
}

fn url_pairs(query: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A shop's token pair as the platform keeps it.
#[derive(Debug)]
pub struct Tokens {
    prefix: &'static str,
    pub access: String,
    pub refresh: String,
    pub expires_at: i64,
    /// Access-token lifetime given at each refresh, in seconds.
    pub life: i64,
    issued: u32,
    /// Every refresh token a refresh was asked with, in order, and whether it was accepted.
    pub refreshes: Vec<(String, bool)>,
    /// Access tokens of earlier client credentials grants, with when each expires.
    granted: Vec<(String, i64)>,
}

impl Tokens {
    /// The pair before the first refresh: an access token already expired, so the first call
    /// must refresh with `refresh`.
    pub fn new(prefix: &'static str, refresh: &str, life: i64) -> Tokens {
        Tokens {
            prefix,
            access: format!("{prefix}-access-0"),
            refresh: refresh.to_string(),
            expires_at: 0,
            life,
            issued: 0,
            refreshes: Vec::new(),
            granted: Vec::new(),
        }
    }

    /// A refresh with `given`: a new pair when it is the current refresh token.
    pub fn refresh(&mut self, given: &str) -> Option<(String, String, i64)> {
        let ok = given == self.refresh;
        self.refreshes.push((given.to_string(), ok));
        if !ok {
            return None;
        }
        self.issued += 1;
        self.access = format!("{}-access-{}", self.prefix, self.issued);
        self.refresh = format!("{}-refresh-{}", self.prefix, self.issued);
        self.expires_at = now() + self.life;
        Some((self.access.clone(), self.refresh.clone(), self.life))
    }

    /// A client credentials grant: a new access token living `life` seconds. Tokens granted
    /// before stay good until they expire, as an OAuth 2.0 server's do (two clients of the same
    /// API client each hold their own).
    pub fn issue(&mut self) -> (String, i64) {
        if self.issued > 0 {
            self.granted.push((self.access.clone(), self.expires_at));
        }
        self.issued += 1;
        self.access = format!("{}-access-{}", self.prefix, self.issued);
        // Whole seconds, rounded up: a token never dies before the `expires_in` it was given.
        self.expires_at = now() + 1 + self.life;
        (self.access.clone(), self.life)
    }

    /// How many access tokens were handed out.
    pub fn issued(&self) -> u32 {
        self.issued
    }

    /// `None` when `token` is the live access token; else why not.
    pub fn check(&self, token: &str) -> Option<&'static str> {
        let expires_at = if token == self.access {
            Some(self.expires_at)
        } else {
            self.granted
                .iter()
                .find(|(t, _)| t == token)
                .map(|(_, at)| *at)
        };
        match expires_at {
            _ if token.is_empty() => Some("missing"),
            None => Some("invalid"),
            Some(at) if now() >= at => Some("expired"),
            Some(_) => None,
        }
    }
}

/// At most `per_second` calls in any second; `None` is no limit.
#[derive(Debug, Default)]
pub struct Throttle {
    pub per_second: Option<usize>,
    window: VecDeque<Instant>,
}

impl Throttle {
    /// Counts a call; true when it is over the limit.
    pub fn over(&mut self) -> bool {
        let Some(max) = self.per_second else {
            return false;
        };
        let now = Instant::now();
        while self
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.window.pop_front();
        }
        if self.window.len() >= max {
            return true;
        }
        self.window.push_back(now);
        false
    }
}

/// Serves `app` on a free loopback port; the base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The items of one page: `size` items from `from` on.
pub fn page(items: &[Value], from: usize, size: usize) -> Vec<Value> {
    items.iter().skip(from).take(size).cloned().collect()
}

/// A JSON answer with `status`.
pub fn answer_json(status: u16, body: Value) -> Response {
    use axum::response::IntoResponse;
    let status = axum::http::StatusCode::from_u16(status).unwrap();
    (status, axum::Json(body)).into_response()
}

/// How an OAuth server answers a client credentials grant (RFC 6749 §4.4): the client's id
/// and secret as `given`, checked against `expected`.
pub struct ClientGrant<'a> {
    pub given: Option<(String, String)>,
    pub expected: (&'a str, &'a str),
    /// The `error_description` of a refused client.
    pub refusal: &'a str,
    pub token_type: &'a str,
    pub scope: &'a str,
}

/// The answer to a client credentials grant, as RFC 6749 §5.2 gives its errors: 401
/// `invalid_client` for another client (or a method other than POST), 400
/// `unsupported_grant_type` for another grant, else a new access token.
pub fn client_credentials(
    shop: &mut Shop,
    seen: &Seen,
    grant: ClientGrant<'_>,
) -> (Response, Option<String>) {
    let ok = grant.given.as_ref().map(|(u, p)| (u.as_str(), p.as_str())) == Some(grant.expected);
    if seen.method != "POST" || !ok {
        let body =
            serde_json::json!({"error": "invalid_client", "error_description": grant.refusal});
        return (answer_json(401, body), Some("invalid_client".into()));
    }
    if seen.form().get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            answer_json(400, serde_json::json!({"error": "unsupported_grant_type"})),
            Some("unsupported_grant_type".into()),
        );
    }
    let (token, life) = shop.tokens.issue();
    let body = serde_json::json!({"access_token": token, "token_type": grant.token_type,
                                  "expires_in": life, "scope": grant.scope});
    (answer_json(200, body), None)
}

/// The log every mock keeps.
pub type Log = Arc<Mutex<Vec<Seen>>>;

/// `n` orders with ids `prefix-1` … as items the platform lists.
pub fn orders(n: usize, make: impl Fn(usize) -> Value) -> Vec<Value> {
    (1..=n).map(make).collect()
}

/// What a mock platform keeps of one shop.
pub struct Shop {
    pub tokens: Tokens,
    pub throttle: Throttle,
    /// The orders it lists, whole.
    pub orders: Vec<Value>,
    /// Bodies of the writes it accepted.
    pub received: Vec<Value>,
    /// What the writes set, per listing or product (`item/model`, a SKU): the latest value.
    pub stock: BTreeMap<String, Value>,
    /// The next this many writes are answered as the platform answers a throttled call.
    pub busy_writes: usize,
}

impl Shop {
    /// Whether this write is to be answered as throttled (counting it down).
    pub fn busy(&mut self) -> bool {
        let busy = self.busy_writes > 0;
        self.busy_writes = self.busy_writes.saturating_sub(1);
        busy
    }
}

/// A platform's answer to one request, and why it refused it, if it did.
pub type Answer = fn(&mut Shop, &Seen) -> (Response, Option<String>);

/// A running mock platform: its base URL, its shop and its log.
#[derive(Clone)]
pub struct Mock {
    pub url: String,
    pub shop: Arc<Mutex<Shop>>,
    pub log: Log,
}

impl Mock {
    /// Serves `answer` for a shop whose first refresh token is `refresh`, listing `orders`,
    /// with access tokens that live `life` seconds. `prefix` names its tokens.
    pub async fn start(
        prefix: &'static str,
        refresh: &str,
        orders: Vec<Value>,
        life: i64,
        answer: Answer,
    ) -> Mock {
        let shop = Arc::new(Mutex::new(Shop {
            tokens: Tokens::new(prefix, refresh, life),
            throttle: Throttle::default(),
            orders,
            received: Vec::new(),
            stock: BTreeMap::new(),
            busy_writes: 0,
        }));
        let log: Log = Arc::default();
        let app =
            axum::Router::new()
                .fallback(handle)
                .with_state((shop.clone(), log.clone(), answer));
        Mock {
            url: serve(app).await,
            shop,
            log,
        }
    }

    /// The requests to `path`, in order.
    pub fn calls(&self, path: &str) -> Vec<Seen> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|s| s.path == path).cloned().collect()
    }

    /// Why each refused request was refused.
    pub fn refused(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().filter_map(|s| s.refused.clone()).collect()
    }
}

async fn handle(
    State((shop, log, answer)): State<(Arc<Mutex<Shop>>, Log, Answer)>,
    request: Request,
) -> Response {
    let mut seen = Seen::read(request).await;
    let (response, refused) = answer(&mut shop.lock().unwrap(), &seen);
    seen.refused = refused;
    log.lock().unwrap().push(seen);
    response
}
