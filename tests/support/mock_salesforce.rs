//! A mock Salesforce REST server for integration tests: a real axum HTTP server on
//! `127.0.0.1:0` that answers like Salesforce for the calls the connector makes. docs/salesforce.md
//! describes the behaviour; a change here changes that page.
//!
//! * `POST /services/oauth2/token` (client_credentials only).
//! * Data calls under `/services/data/v60.0/`: sObject create / get / update / delete,
//!   upsert by external id, `/composite`, `/composite/tree/{Object}`, sObject Collections.
//!   Bulk API 2.0 is not implemented (404 `NOT_FOUND`).
//! * `GET sobjects/{Object}/describe` for Account, Lead, Opportunity and Order, answered with
//!   tests/fixtures/salesforce/{Object}.describe.json; other objects 404 `NOT_FOUND`.
//!
//! Order of checks on a data call: optional delay, bearer token, injected failures,
//! then the real handling. `Sforce-Limit-Info: api-usage=N/15000` is sent on every
//! response from the real handling; N counts those calls (401s and injected failures
//! are not counted). `calls()` logs every request except the token endpoint, with the
//! request body (parsed JSON; `Null` when empty, a string when not JSON).
//!
//! Choices where the spec is silent:
//! * Relationship by external id with no match → 400 `INVALID_FIELD`,
//!   "Foreign key external ID: V not found for field F in entity E"; several matches → 400
//!   `DUPLICATE_EXTERNAL_ID`.
//! * Object and field names are case-insensitive; external-id values match exactly
//!   (case-sensitive); 15-character ids are accepted wherever an id is looked up.
//! * Record ids given in lookup fields (e.g. `AccountId`) are not checked for existence.
//! * OrderItem also requires `OrderId`; the Order's `Pricebook2Id` is not required.
//! * Injected failures: when several are armed, the first non-zero one in the order
//!   limit_exceeded, rate_limited, server_errors, lock_row answers (and is consumed).
//!   Each setter replaces its counter (0 disarms).
//! * Composite: a subrequest fails when its status is >= 400 (a 300 is not a failure);
//!   `@{ref...}` to a failed/unknown reference → 400 `PROCESSING_HALTED`.
//! * Composite with sObject Collections subrequests (at most 5 collection or query
//!   subrequests, more → 400 `LIMIT_EXCEEDED`). With the composite's `allOrNone: true` the
//!   collections are all-or-none whatever their own flag says, and a collection answering 200
//!   with a record whose `success` is false fails the composite: everything is rolled back,
//!   the collection keeps its 200 and per-record results (the others'
//!   `ALL_OR_NONE_OPERATION_ROLLED_BACK`), the other subrequests say `PROCESSING_HALTED`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::to_bytes;
use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};

pub const API_VERSION: &str = "v60.0";
pub const CLIENT_ID: &str = "test-client-id";
pub const CLIENT_SECRET: &str = "test-client-secret";

const DATA_PREFIX: &str = "/services/data/v60.0";
const TOKEN_PATH: &str = "/services/oauth2/token";
const API_LIMIT: u64 = 15000;
const ORG_ID: &str = "00D5e000001N20QEAS";
const USER_ID: &str = "0055e000003AbCdAAK";
const MAX_SUBREQUESTS: usize = 25;
/// Of a composite's subrequests, how many may be sObject Collections or query operations.
const MAX_COLLECTION_SUBREQUESTS: usize = 5;
const MAX_RECORDS: usize = 200;
const MAX_TREE_DEPTH: usize = 5;
const MAX_TREE_TYPES: usize = 5;
const ROLLED_BACK: &str =
    "The transaction was rolled back since another operation in the same transaction failed.";

/// One data call as the mock saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// URL path as sent (still percent-encoded), without the query string.
    pub path: String,
    /// Status the mock answered.
    pub status: u16,
    /// Request body: parsed JSON, `Null` when empty, a JSON string when not valid JSON.
    pub body: Value,
    /// The W3C `traceparent` header the call carried.
    pub traceparent: Option<String>,
}

type Shared = Arc<Mutex<State>>;

pub struct MockSalesforce {
    state: Shared,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockSalesforce {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockSalesforce {
    /// Binds 127.0.0.1:0 and spawns the server on the current tokio runtime.
    pub async fn start() -> MockSalesforce {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("mock salesforce: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("mock salesforce: local_addr");
        let state: Shared = Arc::new(Mutex::new(State::new(addr.port())));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockSalesforce { state, addr, task }
    }

    /// `http://127.0.0.1:PORT`: the login host and the `instance_url` handed out.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("{}{}", self.base_url(), TOKEN_PATH)
    }

    /// Every token issued so far dies; tokens issued afterwards work.
    pub fn expire_token(&self) {
        self.lock().live_tokens.clear();
    }

    /// `true`: every token, existing or issued while on, is dead at once (data calls → 401).
    /// `false`: tokens issued from now on work again.
    pub fn expire_every_token(&self, on: bool) {
        let mut st = self.lock();
        st.every_token_dies = on;
        if on {
            st.live_tokens.clear();
        }
    }

    /// Next `n` data calls → 403 `REQUEST_LIMIT_EXCEEDED` "TotalRequests Limit exceeded.".
    pub fn limit_exceeded(&self, n: usize) {
        self.lock().faults.limit = n;
    }

    /// Next `n` data calls → 429 with `Retry-After: retry_after_secs` (not real Salesforce).
    pub fn rate_limited(&self, n: usize, retry_after_secs: u64) {
        let mut st = self.lock();
        st.faults.rate = n;
        st.faults.rate_secs = retry_after_secs;
    }

    /// Next `n` data calls → `status` (503 `SERVER_UNAVAILABLE`, else `UNKNOWN_EXCEPTION`).
    pub fn server_errors(&self, n: usize, status: u16) {
        let mut st = self.lock();
        st.faults.server = n;
        st.faults.server_status = status;
    }

    /// Next `n` data calls → 400 `UNABLE_TO_LOCK_ROW`.
    pub fn lock_row(&self, n: usize) {
        self.lock().faults.lock = n;
    }

    /// Pre-46.0 behaviour: an upsert that updates answers 204 with no body, and an
    /// upsert that inserts answers 201 without `created`.
    pub fn old_api(&self, on: bool) {
        self.lock().old_api = on;
    }

    /// Every data call waits this long before it is answered.
    pub fn delay(&self, d: Duration) {
        self.lock().delay = d;
    }

    /// Stored records of that sObject, each with `Id` and the fields as stored.
    pub fn records(&self, object: &str) -> Vec<Value> {
        let st = self.lock();
        st.store
            .table(object)
            .map(|t| t.rows.iter().cloned().map(Value::Object).collect())
            .unwrap_or_default()
    }

    pub fn find(&self, object: &str, field: &str, value: &str) -> Vec<Value> {
        let st = self.lock();
        let Some(t) = st.store.table(object) else {
            return Vec::new();
        };
        t.rows
            .iter()
            .filter(|r| field_matches(r, field, value))
            .cloned()
            .map(Value::Object)
            .collect()
    }

    /// Seeds a record as given (no validation, no relationship resolution); returns its Id.
    pub fn insert(&self, object: &str, fields: Value) -> String {
        let Value::Object(fields) = fields else {
            panic!("MockSalesforce::insert: fields must be a JSON object");
        };
        let mut st = self.lock();
        let id = st.new_id(object);
        let mut rec = Map::new();
        rec.insert("Id".into(), Value::String(id.clone()));
        for (k, v) in fields {
            if k != "attributes" && !k.eq_ignore_ascii_case("Id") {
                set_ci(&mut rec, &k, v);
            }
        }
        st.store.table_mut(object).rows.push(rec);
        id
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn token_requests(&self) -> usize {
        self.lock().token_requests
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

// ------------------------------------------------------------------------------------------
// HTTP entry point

async fn handle(AxState(shared): AxState<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();

    if path == TOKEN_PATH {
        return lock(&shared).token(&method, &bytes).into_response();
    }

    let is_data = path == DATA_PREFIX || path.starts_with(&format!("{DATA_PREFIX}/"));
    if is_data {
        let d = lock(&shared).delay;
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let traceparent = parts
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let mut st = lock(&shared);
    let reply = if is_data {
        st.data_call(&method, &path, &query, auth.as_deref(), &bytes)
    } else {
        Reply::err(not_found())
    };
    st.calls.push(Call {
        method,
        path,
        status: reply.status,
        body: body_value(&bytes),
        traceparent,
    });
    drop(st);
    reply.into_response()
}

/// A response before it becomes HTTP (also used for composite subresponses).
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }
    fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            headers: Vec::new(),
        }
    }
    fn err(e: SfError) -> Reply {
        Reply::json(e.status, json!([e.top()]))
    }
    fn header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = match self.body {
            Some(v) => (
                status,
                [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
                serde_json::to_vec(&v).unwrap_or_default(),
            )
                .into_response(),
            None => status.into_response(),
        };
        for (k, v) in self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                resp.headers_mut().insert(name, value);
            }
        }
        resp
    }
}

/// A Salesforce error: `errorCode` at top level, `statusCode` inside result objects.
#[derive(Debug, Clone)]
struct SfError {
    status: u16,
    code: String,
    message: String,
    fields: Option<Vec<String>>,
}

impl SfError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> SfError {
        SfError {
            status,
            code: code.to_string(),
            message: message.into(),
            fields: None,
        }
    }
    fn fields(mut self, fields: Vec<String>) -> SfError {
        self.fields = Some(fields);
        self
    }
    fn top(&self) -> Value {
        let mut m = Map::new();
        m.insert("message".into(), Value::String(self.message.clone()));
        m.insert("errorCode".into(), Value::String(self.code.clone()));
        if let Some(f) = &self.fields {
            m.insert("fields".into(), json!(f));
        }
        Value::Object(m)
    }
    fn record(&self) -> Value {
        json!({
            "statusCode": self.code,
            "message": self.message,
            "fields": self.fields.clone().unwrap_or_default(),
        })
    }
}

fn not_found() -> SfError {
    SfError::new(404, "NOT_FOUND", "The requested resource does not exist")
}

fn record_not_found(value: &str) -> SfError {
    SfError::new(
        404,
        "NOT_FOUND",
        format!("Provided external ID field does not exist or is not accessible: {value}"),
    )
}

fn json_error(message: impl Into<String>) -> SfError {
    SfError::new(400, "JSON_PARSER_ERROR", message)
}

fn invalid_input(message: impl Into<String>) -> SfError {
    SfError::new(400, "INVALID_INPUT", message)
}

fn method_not_allowed(method: &str, allowed: &str) -> Reply {
    Reply::err(SfError::new(
        405,
        "METHOD_NOT_ALLOWED",
        format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
    ))
}

/// A request body as received.
enum In {
    Empty,
    Json(Value),
    Bad(String),
}

fn parse_body(bytes: &[u8]) -> In {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return In::Empty;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => In::Json(v),
        Err(e) => In::Bad(format!("Malformed JSON: {e}")),
    }
}

fn body_value(bytes: &[u8]) -> Value {
    match parse_body(bytes) {
        In::Empty => Value::Null,
        In::Json(v) => v,
        In::Bad(_) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The body as a JSON object (for one record): `attributes` removed.
fn object_body(body: In) -> Result<Map<String, Value>, SfError> {
    match body {
        In::Empty => Err(json_error("No content to map due to end-of-input")),
        In::Bad(m) => Err(json_error(m)),
        In::Json(Value::Object(mut m)) => {
            m.remove("attributes");
            Ok(m)
        }
        In::Json(v) => Err(json_error(format!(
            "Cannot deserialize instance of SObject out of {} value",
            json_kind(&v)
        ))),
    }
}

/// The body as a JSON object (for composite / tree / collections).
fn request_object(body: In) -> Result<Map<String, Value>, SfError> {
    match body {
        In::Empty => Err(json_error("No content to map due to end-of-input")),
        In::Bad(m) => Err(json_error(m)),
        In::Json(Value::Object(m)) => Ok(m),
        In::Json(v) => Err(json_error(format!(
            "Cannot deserialize request out of {} value",
            json_kind(&v)
        ))),
    }
}

fn all_or_none_flag(m: &Map<String, Value>) -> Result<bool, SfError> {
    match m.get("allOrNone") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(json_error("allOrNone must be a boolean")),
    }
}

// ------------------------------------------------------------------------------------------
// State

#[derive(Default)]
struct Faults {
    limit: usize,
    rate: usize,
    rate_secs: u64,
    server: usize,
    server_status: u16,
    lock: usize,
}

#[derive(Clone, Default)]
struct Table {
    name: String,
    rows: Vec<Map<String, Value>>,
}

/// Records per object, keyed by lower-case object name.
#[derive(Clone, Default)]
struct Store {
    objects: BTreeMap<String, Table>,
}

impl Store {
    fn table(&self, obj: &str) -> Option<&Table> {
        self.objects.get(&obj.to_ascii_lowercase())
    }
    fn table_mut(&mut self, obj: &str) -> &mut Table {
        self.objects
            .entry(obj.to_ascii_lowercase())
            .or_insert_with(|| Table {
                name: canonical(obj),
                rows: Vec::new(),
            })
    }
    fn find_idx(&self, obj: &str, field: &str, value: &str) -> Vec<usize> {
        self.table(obj)
            .map(|t| {
                t.rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| field_matches(r, field, value))
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default()
    }
    fn find_ids(&self, obj: &str, field: &str, value: &str) -> Vec<String> {
        let Some(t) = self.table(obj) else {
            return Vec::new();
        };
        self.find_idx(obj, field, value)
            .into_iter()
            .map(|i| row_id(&t.rows[i]))
            .collect()
    }
    fn index_of_id(&self, obj: &str, id: &str) -> Option<usize> {
        self.find_idx(obj, "Id", id).into_iter().next()
    }
}

fn row_id(r: &Map<String, Value>) -> String {
    r.get("Id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

struct State {
    port: u16,
    live_tokens: HashSet<String>,
    every_token_dies: bool,
    token_seq: u64,
    token_requests: usize,
    faults: Faults,
    old_api: bool,
    delay: Duration,
    store: Store,
    id_seq: u64,
    api_usage: u64,
    calls: Vec<Call>,
}

impl State {
    fn new(port: u16) -> State {
        State {
            port,
            live_tokens: HashSet::new(),
            every_token_dies: false,
            token_seq: 0,
            token_requests: 0,
            faults: Faults::default(),
            old_api: false,
            delay: Duration::ZERO,
            store: Store::default(),
            id_seq: 0,
            api_usage: 0,
            calls: Vec::new(),
        }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn new_id(&mut self, obj: &str) -> String {
        self.id_seq += 1;
        let id15 = format!("{}5g0{}", key_prefix(obj), base62(self.id_seq, 9));
        id18(&id15)
    }

    // --- OAuth ------------------------------------------------------------------------

    fn token(&mut self, method: &str, bytes: &[u8]) -> Reply {
        self.token_requests += 1;
        let oauth_err = |error: &str, description: &str| {
            Reply::json(
                400,
                json!({"error": error, "error_description": description}),
            )
        };
        if method != "POST" {
            return oauth_err("invalid_request", "must use HTTP POST");
        }
        let form = parse_pairs(&String::from_utf8_lossy(bytes));
        match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {
                let id_ok = form.get("client_id").map(String::as_str) == Some(CLIENT_ID);
                let secret_ok =
                    form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
                if !(id_ok && secret_ok) {
                    return oauth_err("invalid_client", "invalid client credentials");
                }
                self.token_seq += 1;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let token = format!(
                    "00D5e000001N20Q!AQ{}.{}.{:x}",
                    self.port,
                    self.token_seq,
                    now.as_nanos()
                );
                if !self.every_token_dies {
                    self.live_tokens.insert(token.clone());
                }
                let base = self.base_url();
                Reply::json(
                    200,
                    json!({
                        "access_token": token,
                        "signature": format!("mockSignature{}=", self.token_seq),
                        "scope": "api",
                        "instance_url": base,
                        "id": format!("{base}/id/{ORG_ID}/{USER_ID}"),
                        "token_type": "Bearer",
                        "issued_at": now.as_millis().to_string(),
                    }),
                )
            }
            _ => oauth_err("unsupported_grant_type", "grant type not supported"),
        }
    }

    // --- data calls ---------------------------------------------------------------------

    fn authorized(&self, auth: Option<&str>) -> bool {
        let Some(auth) = auth else { return false };
        let auth = auth.trim();
        let Some((scheme, token)) = auth.split_once(' ') else {
            return false;
        };
        if !(scheme.eq_ignore_ascii_case("Bearer") || scheme.eq_ignore_ascii_case("OAuth")) {
            return false;
        }
        !self.every_token_dies && self.live_tokens.contains(token.trim())
    }

    fn injected_fault(&mut self) -> Option<Reply> {
        let f = &mut self.faults;
        if f.limit > 0 {
            f.limit -= 1;
            return Some(Reply::err(SfError::new(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            )));
        }
        if f.rate > 0 {
            f.rate -= 1;
            let secs = f.rate_secs;
            return Some(
                Reply::err(SfError::new(
                    429,
                    "REQUEST_LIMIT_EXCEEDED",
                    format!("Too many requests. Retry after {secs} seconds."),
                ))
                .header("Retry-After", secs.to_string()),
            );
        }
        if f.server > 0 {
            f.server -= 1;
            let status = f.server_status;
            let e = if status == 503 {
                SfError::new(
                    503,
                    "SERVER_UNAVAILABLE",
                    "Server temporarily unavailable. Please try again later.",
                )
            } else {
                SfError::new(
                    status,
                    "UNKNOWN_EXCEPTION",
                    "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)",
                )
            };
            return Some(Reply::err(e));
        }
        if f.lock > 0 {
            f.lock -= 1;
            return Some(Reply::err(SfError::new(
                400,
                "UNABLE_TO_LOCK_ROW",
                "unable to obtain exclusive access to this record or 1 records",
            )));
        }
        None
    }

    fn data_call(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        auth: Option<&str>,
        bytes: &[u8],
    ) -> Reply {
        if !self.authorized(auth) {
            return Reply::err(SfError::new(
                401,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            ));
        }
        if let Some(r) = self.injected_fault() {
            return r;
        }
        self.api_usage += 1;
        let segs = split_segments(&path[DATA_PREFIX.len()..]);
        let q = parse_pairs(query);
        let reply = self.route(method, &segs, &q, parse_body(bytes), false);
        let usage = format!("api-usage={}/{}", self.api_usage, API_LIMIT);
        reply.header("Sforce-Limit-Info", usage)
    }

    fn route(
        &mut self,
        method: &str,
        segs: &[String],
        q: &HashMap<String, String>,
        body: In,
        nested: bool,
    ) -> Reply {
        let method = if method == "HEAD" { "GET" } else { method };
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        match s.as_slice() {
            [] => match method {
                "GET" => Reply::json(
                    200,
                    json!({
                        "sobjects": format!("{DATA_PREFIX}/sobjects"),
                        "composite": format!("{DATA_PREFIX}/composite"),
                        "query": format!("{DATA_PREFIX}/query"),
                    }),
                ),
                _ => method_not_allowed(method, "HEAD,GET"),
            },
            ["sobjects", obj] if valid_name(obj) => match method {
                "POST" => self.create(obj, body),
                "GET" => self.describe(obj),
                _ => method_not_allowed(method, "HEAD,GET,POST"),
            },
            ["sobjects", obj, "describe"] if valid_name(obj) => match method {
                "GET" => describe_answer(obj),
                _ => method_not_allowed(method, "HEAD,GET"),
            },
            ["sobjects", obj, id] if valid_name(obj) => match method {
                "GET" => self.get_by_id(obj, id),
                "PATCH" => self.update_by_id(obj, id, body),
                "DELETE" => self.delete_by_id(obj, id),
                _ => method_not_allowed(method, "HEAD,GET,PATCH,DELETE"),
            },
            ["sobjects", obj, field, value] if valid_name(obj) => {
                if !valid_name(field) {
                    return Reply::err(record_not_found(value));
                }
                match method {
                    "GET" => self.get_by_ext(obj, field, value),
                    "PATCH" => {
                        let update_only = q.get("updateOnly").map(String::as_str) == Some("true");
                        self.upsert(obj, field, value, body, update_only)
                    }
                    "DELETE" => self.delete_by_ext(obj, field, value),
                    _ => method_not_allowed(method, "HEAD,GET,PATCH,DELETE"),
                }
            }
            ["composite"] if !nested => match method {
                "POST" => self.composite(body),
                _ => method_not_allowed(method, "POST"),
            },
            ["composite", "tree", obj] if !nested && valid_name(obj) => match method {
                "POST" => self.tree(obj, body),
                _ => method_not_allowed(method, "POST"),
            },
            ["composite", "sobjects"] => match method {
                "POST" => self.collection_create(body),
                _ => method_not_allowed(method, "POST"),
            },
            ["composite", "sobjects", obj, field] if valid_name(obj) && valid_name(field) => {
                match method {
                    "PATCH" => self.collection_upsert(obj, field, body),
                    _ => method_not_allowed(method, "PATCH"),
                }
            }
            _ => Reply::err(not_found()),
        }
    }

    fn record_url(&self, obj: &str, id: &str) -> String {
        format!("{DATA_PREFIX}/sobjects/{}/{id}", canonical(obj))
    }

    fn record_json(&self, obj: &str, idx: usize) -> Value {
        let t = self.store.table(obj).expect("table exists");
        let rec = &t.rows[idx];
        let mut m = rec.clone();
        m.insert(
            "attributes".into(),
            json!({"type": t.name, "url": self.record_url(obj, &row_id(rec))}),
        );
        Value::Object(m)
    }

    fn urls_of(&self, obj: &str, idxs: &[usize]) -> Value {
        let t = self.store.table(obj).expect("table exists");
        Value::Array(
            idxs.iter()
                .map(|&i| Value::String(self.record_url(obj, &row_id(&t.rows[i]))))
                .collect(),
        )
    }

    // --- single records -----------------------------------------------------------------

    fn describe(&self, obj: &str) -> Reply {
        let name = canonical(obj);
        let url = format!("{DATA_PREFIX}/sobjects/{name}");
        Reply::json(
            200,
            json!({
                "objectDescribe": {
                    "name": name,
                    "label": name,
                    "keyPrefix": key_prefix(obj),
                    "custom": name.ends_with("__c"),
                    "createable": true,
                    "updateable": true,
                    "deletable": true,
                    "urls": {"sobject": url, "rowTemplate": format!("{url}/{{ID}}")},
                },
                "recentItems": [],
            }),
        )
    }

    fn create(&mut self, obj: &str, body: In) -> Reply {
        let fields = match object_body(body) {
            Ok(m) => m,
            Err(e) => return Reply::err(e),
        };
        match self.create_record(obj, fields) {
            Ok(id) => {
                let loc = self.record_url(obj, &id);
                Reply::json(201, json!({"id": id, "success": true, "errors": []}))
                    .header("Location", loc)
            }
            Err(e) => Reply::err(e),
        }
    }

    fn get_by_id(&self, obj: &str, id: &str) -> Reply {
        match self.store.index_of_id(obj, id) {
            Some(i) => Reply::json(200, self.record_json(obj, i)),
            None => Reply::err(record_not_found(id)),
        }
    }

    fn update_by_id(&mut self, obj: &str, id: &str, body: In) -> Reply {
        let fields = match object_body(body) {
            Ok(m) => m,
            Err(e) => return Reply::err(e),
        };
        let Some(i) = self.store.index_of_id(obj, id) else {
            return Reply::err(record_not_found(id));
        };
        match self.update_record(obj, i, fields) {
            Ok(()) => Reply::empty(204),
            Err(e) => Reply::err(e),
        }
    }

    fn delete_by_id(&mut self, obj: &str, id: &str) -> Reply {
        match self.store.index_of_id(obj, id) {
            Some(i) => {
                self.store.table_mut(obj).rows.remove(i);
                Reply::empty(204)
            }
            None => Reply::err(record_not_found(id)),
        }
    }

    fn get_by_ext(&self, obj: &str, field: &str, value: &str) -> Reply {
        let idxs = self.store.find_idx(obj, field, value);
        match idxs.len() {
            0 => Reply::err(record_not_found(value)),
            1 => Reply::json(200, self.record_json(obj, idxs[0])),
            _ => Reply::json(300, self.urls_of(obj, &idxs)),
        }
    }

    fn delete_by_ext(&mut self, obj: &str, field: &str, value: &str) -> Reply {
        let idxs = self.store.find_idx(obj, field, value);
        match idxs.len() {
            0 => Reply::err(record_not_found(value)),
            1 => {
                self.store.table_mut(obj).rows.remove(idxs[0]);
                Reply::empty(204)
            }
            _ => Reply::json(300, self.urls_of(obj, &idxs)),
        }
    }

    fn upsert(
        &mut self,
        obj: &str,
        field: &str,
        value: &str,
        body: In,
        update_only: bool,
    ) -> Reply {
        let fields = match object_body(body) {
            Ok(m) => m,
            Err(e) => return Reply::err(e),
        };
        match self.upsert_record(obj, field, value, fields, update_only) {
            Ok(Upserted::Created(id)) => {
                let loc = self.record_url(obj, &id);
                let body = if self.old_api {
                    json!({"id": id, "success": true, "errors": []})
                } else {
                    json!({"id": id, "success": true, "errors": [], "created": true})
                };
                Reply::json(201, body).header("Location", loc)
            }
            Ok(Upserted::Updated(id)) => {
                if self.old_api {
                    Reply::empty(204)
                } else {
                    Reply::json(
                        200,
                        json!({"id": id, "success": true, "errors": [], "created": false}),
                    )
                }
            }
            Ok(Upserted::Multiple(idxs)) => Reply::json(300, self.urls_of(obj, &idxs)),
            Err(e) => Reply::err(e),
        }
    }

    // --- record operations shared by every endpoint ----------------------------------------

    fn create_record(
        &mut self,
        obj: &str,
        mut fields: Map<String, Value>,
    ) -> Result<String, SfError> {
        if get_ci(&fields, "Id").is_some() {
            return Err(SfError::new(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                "cannot specify Id in an insert call",
            )
            .fields(vec!["Id".into()]));
        }
        self.resolve_relationships(obj, &mut fields)?;
        validate(obj, &fields, true)?;
        let id = self.new_id(obj);
        let mut rec = Map::new();
        rec.insert("Id".into(), Value::String(id.clone()));
        for (k, v) in fields {
            set_ci(&mut rec, &k, v);
        }
        self.store.table_mut(obj).rows.push(rec);
        Ok(id)
    }

    fn update_record(
        &mut self,
        obj: &str,
        idx: usize,
        mut fields: Map<String, Value>,
    ) -> Result<(), SfError> {
        fields.retain(|k, _| !k.eq_ignore_ascii_case("Id"));
        self.resolve_relationships(obj, &mut fields)?;
        let row = &mut self.store.table_mut(obj).rows[idx];
        let mut merged = row.clone();
        for (k, v) in fields {
            set_ci(&mut merged, &k, v);
        }
        validate(obj, &merged, false)?;
        *row = merged;
        Ok(())
    }

    fn upsert_record(
        &mut self,
        obj: &str,
        field: &str,
        value: &str,
        mut fields: Map<String, Value>,
        update_only: bool,
    ) -> Result<Upserted, SfError> {
        if get_ci(&fields, "Id").is_some() {
            return Err(SfError::new(
                400,
                "INVALID_FIELD",
                "The Id field should not be specified in the sobject data.",
            ));
        }
        if let Some(v) = get_ci(&fields, field) {
            if !value_matches(v, value) {
                return Err(SfError::new(
                    400,
                    "INVALID_FIELD",
                    format!(
                        "The value of the external ID field {field} in the body ({v}) does not match the value in the URL ({value})"
                    ),
                )
                .fields(vec![field.to_string()]));
            }
        }
        let idxs = self.store.find_idx(obj, field, value);
        match idxs.len() {
            0 => {
                if update_only || field.eq_ignore_ascii_case("Id") {
                    return Err(record_not_found(value));
                }
                if get_ci(&fields, field).is_none() {
                    fields.insert(field.to_string(), Value::String(value.to_string()));
                }
                self.create_record(obj, fields).map(Upserted::Created)
            }
            1 => {
                let id = row_id(&self.store.table(obj).expect("table exists").rows[idxs[0]]);
                self.update_record(obj, idxs[0], fields)?;
                Ok(Upserted::Updated(id))
            }
            _ => Ok(Upserted::Multiple(idxs)),
        }
    }

    /// Replaces `"Account": {"External_Id__c": "X"}` by `"AccountId": "<id>"`.
    fn resolve_relationships(
        &self,
        obj: &str,
        fields: &mut Map<String, Value>,
    ) -> Result<(), SfError> {
        let keys: Vec<String> = fields
            .iter()
            .filter(|(_, v)| v.is_object())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(Value::Object(rel)) = fields.remove(&key) else {
                continue;
            };
            let target = rel
                .get("attributes")
                .and_then(|a| a.get("type"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| relationship_target(obj, &key));
            let pairs: Vec<(&String, &Value)> =
                rel.iter().filter(|(k, _)| *k != "attributes").collect();
            let [(ext_field, ext_value)] = pairs.as_slice() else {
                return Err(SfError::new(
                    400,
                    "INVALID_FIELD",
                    format!("Relationship {key} must name exactly one external ID field"),
                )
                .fields(vec![key.clone()]));
            };
            let Some(ext_value) = scalar_string(ext_value) else {
                return Err(SfError::new(
                    400,
                    "INVALID_FIELD",
                    format!("Relationship {key}: the value of {ext_field} must be a string"),
                )
                .fields(vec![key.clone()]));
            };
            let ids = self.store.find_ids(&target, ext_field, &ext_value);
            match ids.as_slice() {
                [id] => set_ci(fields, &foreign_key(&key), Value::String(id.clone())),
                [] => {
                    return Err(SfError::new(
                        400,
                        "INVALID_FIELD",
                        format!(
                            "Foreign key external ID: {ext_value} not found for field {ext_field} in entity {}",
                            canonical(&target)
                        ),
                    )
                    .fields(vec![]))
                }
                _ => {
                    return Err(SfError::new(
                        400,
                        "DUPLICATE_EXTERNAL_ID",
                        format!(
                            "Foreign key external ID: {ext_value} matched more than one record for field {ext_field} in entity {}",
                            canonical(&target)
                        ),
                    )
                    .fields(vec![]))
                }
            }
        }
        Ok(())
    }

    // --- composite --------------------------------------------------------------------

    fn composite(&mut self, body: In) -> Reply {
        let req = match request_object(body) {
            Ok(m) => m,
            Err(e) => return Reply::err(e),
        };
        let subs = match parse_subrequests(&req) {
            Ok(s) => s,
            Err(e) => return Reply::err(e),
        };
        let all_or_none = match all_or_none_flag(&req) {
            Ok(b) => b,
            Err(e) => return Reply::err(e),
        };

        let snapshot = all_or_none.then(|| self.store.clone());
        let mut done: HashMap<String, Value> = HashMap::new();
        let mut results: Vec<Reply> = Vec::new();
        let mut failed_at = None;
        for (i, sub) in subs.iter().enumerate() {
            let collection = is_collection_or_query(&sub.url);
            let reply = match resolve_sub(sub, &done) {
                Err(msg) => Reply::err(SfError::new(400, "PROCESSING_HALTED", msg)),
                Ok((url, mut body)) => {
                    // The composite's allOrNone overrides the collection's own.
                    if all_or_none && collection {
                        if let Some(Value::Object(b)) = &mut body {
                            b.insert("allOrNone".into(), Value::Bool(true));
                        }
                    }
                    self.run_subrequest(&sub.method, &url, body)
                }
            };
            let failed_records = collection
                && reply
                    .body
                    .as_ref()
                    .and_then(Value::as_array)
                    .is_some_and(|rs| {
                        rs.iter()
                            .any(|r| r.get("success").and_then(Value::as_bool) == Some(false))
                    });
            if reply.status < 400 {
                done.insert(
                    sub.reference_id.clone(),
                    reply.body.clone().unwrap_or(Value::Null),
                );
            }
            let failed = reply.status >= 400 || failed_records;
            results.push(reply);
            if all_or_none && failed {
                failed_at = Some(i);
                break;
            }
        }

        let halted = || Reply::err(SfError::new(400, "PROCESSING_HALTED", ROLLED_BACK));
        if let (Some(f), Some(snapshot)) = (failed_at, snapshot) {
            self.store = snapshot;
            let failed = results[f].clone();
            results = (0..subs.len())
                .map(|i| if i == f { failed.clone() } else { halted() })
                .collect();
        }

        let out: Vec<Value> = subs
            .iter()
            .zip(results)
            .map(|(sub, r)| {
                let headers: Map<String, Value> = r
                    .headers
                    .iter()
                    .filter(|(k, _)| *k == "Location")
                    .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
                    .collect();
                json!({
                    "body": r.body.unwrap_or(Value::Null),
                    "httpHeaders": headers,
                    "httpStatusCode": r.status,
                    "referenceId": sub.reference_id,
                })
            })
            .collect();
        Reply::json(200, json!({"compositeResponse": out}))
    }

    fn run_subrequest(&mut self, method: &str, url: &str, body: Option<Value>) -> Reply {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        if !(path == DATA_PREFIX || path.starts_with(&format!("{DATA_PREFIX}/"))) {
            return Reply::err(not_found());
        }
        let segs = split_segments(&path[DATA_PREFIX.len()..]);
        let q = parse_pairs(query);
        let body = match body {
            None | Some(Value::Null) => In::Empty,
            Some(v) => In::Json(v),
        };
        self.route(method, &segs, &q, body, true)
    }

    // --- sObject tree -----------------------------------------------------------------

    fn tree(&mut self, obj: &str, body: In) -> Reply {
        let req = match request_object(body) {
            Ok(m) => m,
            Err(e) => return Reply::err(e),
        };
        let Some(records) = req.get("records").and_then(Value::as_array) else {
            return Reply::err(json_error("The request body must hold a records array"));
        };
        let mut count = 0;
        let mut types = HashSet::new();
        let mut refs: HashMap<String, usize> = HashMap::new();
        if let Err(e) = check_tree(records, 1, &mut count, &mut types, &mut refs) {
            return Reply::err(e);
        }
        if count > MAX_RECORDS {
            return Reply::err(SfError::new(
                400,
                "LIMIT_EXCEEDED",
                format!("Exceeded max limit of {MAX_RECORDS} records in an sObject tree request"),
            ));
        }
        if types.len() > MAX_TREE_TYPES {
            return Reply::err(SfError::new(
                400,
                "LIMIT_EXCEEDED",
                format!("Exceeded max limit of {MAX_TREE_TYPES} object types in an sObject tree request"),
            ));
        }

        let snapshot = self.store.clone();
        let mut ok: Vec<Value> = Vec::new();
        let mut failed: Vec<Value> = Vec::new();
        // Level by level: parents are saved before their children.
        let mut queue: VecDeque<(&Value, Option<(String, String)>)> =
            records.iter().map(|r| (r, None)).collect();
        while let Some((rec, parent)) = queue.pop_front() {
            let Some(m) = rec.as_object() else { continue };
            let attrs = m.get("attributes").and_then(Value::as_object);
            let ref_id = attrs
                .and_then(|a| a.get("referenceId"))
                .and_then(Value::as_str);
            let typ = attrs.and_then(|a| a.get("type")).and_then(Value::as_str);
            let mut errs: Vec<SfError> = Vec::new();
            match ref_id {
                None => errs.push(invalid_input(
                    "Include a reference ID for each record in the request.",
                )),
                Some(r) if refs.get(r).copied().unwrap_or(0) > 1 => errs.push(invalid_input(
                    "Duplicate ReferenceId provided in the request.",
                )),
                Some(r)
                    if r.is_empty()
                        || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    errs.push(invalid_input(format!("Invalid reference ID: {r}")))
                }
                Some(_) => {}
            }
            match typ {
                None => errs.push(invalid_input(
                    "Include a type in the attributes of each record.",
                )),
                Some(t) if parent.is_none() && !t.eq_ignore_ascii_case(obj) => {
                    errs.push(invalid_input(format!(
                        "The record type {t} does not match the object {obj} in the request URL."
                    )))
                }
                Some(t) if !valid_name(t) => errs.push(invalid_input(format!("Invalid type: {t}"))),
                Some(_) => {}
            }
            let mut fields = Map::new();
            let mut children: Vec<&Value> = Vec::new();
            for (k, v) in m {
                if k == "attributes" {
                    continue;
                }
                match child_records(v) {
                    Some(recs) => children.extend(recs.iter()),
                    None => {
                        fields.insert(k.clone(), v.clone());
                    }
                }
            }
            let mut id = None;
            if let (true, Some(t)) = (errs.is_empty(), typ) {
                if let Some((ptype, pid)) = &parent {
                    set_ci(
                        &mut fields,
                        &child_lookup_field(ptype, t),
                        Value::String(pid.clone()),
                    );
                }
                match self.create_record(t, fields) {
                    Ok(new_id) => id = Some(new_id),
                    Err(e) => errs.push(e),
                }
            }
            match &id {
                Some(id) if errs.is_empty() => {
                    ok.push(json!({"referenceId": ref_id, "id": id}));
                }
                _ => failed.push(json!({
                    "referenceId": ref_id,
                    "errors": errs.iter().map(SfError::record).collect::<Vec<_>>(),
                })),
            }
            if let Some(t) = typ {
                // Children of a failed parent are still checked, against a placeholder id.
                let pid = id.unwrap_or_else(|| id18(&format!("{}000000000000", key_prefix(t))));
                for c in children {
                    queue.push_back((c, Some((t.to_string(), pid.clone()))));
                }
            }
        }

        if failed.is_empty() {
            Reply::json(201, json!({"hasErrors": false, "results": ok}))
        } else {
            self.store = snapshot;
            Reply::json(400, json!({"hasErrors": true, "results": failed}))
        }
    }

    // --- sObject collections ----------------------------------------------------------

    fn collection_create(&mut self, body: In) -> Reply {
        let (records, all_or_none) = match collection_request(body) {
            Ok(x) => x,
            Err(e) => return Reply::err(e),
        };
        let snapshot = all_or_none.then(|| self.store.clone());
        let outcomes: Vec<Result<(String, Option<bool>), SfError>> = records
            .into_iter()
            .map(|rec| {
                let Value::Object(mut m) = rec else {
                    return Err(json_error("Each record must be a JSON object"));
                };
                let typ = m
                    .get("attributes")
                    .and_then(|a| a.get("type"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                m.remove("attributes");
                match typ {
                    Some(t) if valid_name(&t) => self.create_record(&t, m).map(|id| (id, None)),
                    _ => Err(SfError::new(
                        400,
                        "INVALID_TYPE",
                        "Must specify a valid type in the attributes of each record",
                    )),
                }
            })
            .collect();
        self.collection_reply(outcomes, snapshot, false)
    }

    fn collection_upsert(&mut self, obj: &str, field: &str, body: In) -> Reply {
        let (records, all_or_none) = match collection_request(body) {
            Ok(x) => x,
            Err(e) => return Reply::err(e),
        };
        let snapshot = all_or_none.then(|| self.store.clone());
        let outcomes: Vec<Result<(String, Option<bool>), SfError>> = records
            .into_iter()
            .map(|rec| {
                let Value::Object(mut m) = rec else {
                    return Err(json_error("Each record must be a JSON object"));
                };
                let typ = m
                    .get("attributes")
                    .and_then(|a| a.get("type"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                m.remove("attributes");
                if let Some(t) = typ {
                    if !t.eq_ignore_ascii_case(obj) {
                        return Err(SfError::new(
                            400,
                            "INVALID_TYPE",
                            format!("Record type {t} does not match the object {obj} in the URL"),
                        ));
                    }
                }
                let Some(value) = get_ci(&m, field).and_then(scalar_string) else {
                    return Err(SfError::new(
                        400,
                        "MISSING_ARGUMENT",
                        format!("{field} not specified"),
                    )
                    .fields(vec![field.to_string()]));
                };
                match self.upsert_record(obj, field, &value, m, false)? {
                    Upserted::Created(id) => Ok((id, Some(true))),
                    Upserted::Updated(id) => Ok((id, Some(false))),
                    Upserted::Multiple(_) => Err(SfError::new(
                        300,
                        "DUPLICATE_EXTERNAL_ID",
                        format!("{field}: more than one record found for external id field value {value}"),
                    )
                    .fields(vec![field.to_string()])),
                }
            })
            .collect();
        self.collection_reply(outcomes, snapshot, true)
    }

    fn collection_reply(
        &mut self,
        outcomes: Vec<Result<(String, Option<bool>), SfError>>,
        snapshot: Option<Store>,
        upsert: bool,
    ) -> Reply {
        let any_failed = outcomes.iter().any(Result::is_err);
        let rolled_back = match snapshot {
            Some(s) if any_failed => {
                self.store = s;
                true
            }
            _ => false,
        };
        let out: Vec<Value> = outcomes
            .into_iter()
            .map(|o| {
                let mut m = Map::new();
                match o {
                    Ok((id, created)) if !rolled_back => {
                        m.insert("id".into(), Value::String(id));
                        m.insert("success".into(), Value::Bool(true));
                        m.insert("errors".into(), json!([]));
                        if let Some(c) = created {
                            m.insert("created".into(), Value::Bool(c));
                        }
                    }
                    other => {
                        let e = match other {
                            Err(e) => e,
                            Ok(_) => SfError::new(
                                400,
                                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                "Record rolled back because not all records were valid and the request was using AllOrNone header",
                            )
                            .fields(vec![]),
                        };
                        m.insert("id".into(), Value::Null);
                        m.insert("success".into(), Value::Bool(false));
                        m.insert("errors".into(), json!([e.record()]));
                        if upsert {
                            m.insert("created".into(), Value::Bool(false));
                        }
                    }
                }
                Value::Object(m)
            })
            .collect();
        Reply::json(200, Value::Array(out))
    }
}

enum Upserted {
    Created(String),
    Updated(String),
    Multiple(Vec<usize>),
}

// ------------------------------------------------------------------------------------------
// Composite helpers

struct Sub {
    method: String,
    url: String,
    reference_id: String,
    body: Option<Value>,
}

fn parse_subrequests(req: &Map<String, Value>) -> Result<Vec<Sub>, SfError> {
    let Some(list) = req.get("compositeRequest").and_then(Value::as_array) else {
        return Err(json_error(
            "compositeRequest must be an array of subrequests",
        ));
    };
    if list.is_empty() {
        return Err(invalid_input(
            "compositeRequest must hold at least one subrequest",
        ));
    }
    if list.len() > MAX_SUBREQUESTS {
        return Err(SfError::new(
            400,
            "LIMIT_EXCEEDED",
            format!("Exceeded max limit of subrequests, which is {MAX_SUBREQUESTS}"),
        ));
    }
    let collections = list
        .iter()
        .filter_map(|item| item.get("url").and_then(Value::as_str))
        .filter(|url| is_collection_or_query(url))
        .count();
    if collections > MAX_COLLECTION_SUBREQUESTS {
        return Err(SfError::new(
            400,
            "LIMIT_EXCEEDED",
            format!(
                "Exceeded max limit of sObject Collections and query subrequests, which is {MAX_COLLECTION_SUBREQUESTS}"
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut subs = Vec::new();
    for item in list {
        let Some(m) = item.as_object() else {
            return Err(json_error("Each subrequest must be a JSON object"));
        };
        let str_member = |name: &str| -> Result<String, SfError> {
            m.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| json_error(format!("Each subrequest needs a string {name}")))
        };
        let method = str_member("method")?;
        let url = str_member("url")?;
        let reference_id = str_member("referenceId")?;
        if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
            return Err(invalid_input(format!("Invalid HTTP method: {method}")));
        }
        if reference_id.is_empty()
            || !reference_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid_input(format!(
                "Invalid referenceId: {reference_id}. Use only letters, numbers and underscores."
            )));
        }
        if !seen.insert(reference_id.clone()) {
            return Err(invalid_input(format!(
                "Duplicate referenceId: {reference_id}"
            )));
        }
        match m.get("httpHeaders") {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                for k in h.keys() {
                    if ["accept", "authorization", "content-type"]
                        .contains(&k.to_ascii_lowercase().as_str())
                    {
                        return Err(invalid_input(format!(
                            "The {k} header can't be set in a subrequest"
                        )));
                    }
                }
            }
            Some(_) => return Err(json_error("httpHeaders must be a JSON object")),
        }
        subs.push(Sub {
            method,
            url,
            reference_id,
            body: m.get("body").cloned(),
        });
    }
    Ok(subs)
}

/// An sObject Collections or query subrequest (of which a composite allows only a few).
fn is_collection_or_query(url: &str) -> bool {
    let path = url.split_once('?').map_or(url, |(p, _)| p);
    let Some(rest) = path.strip_prefix(DATA_PREFIX) else {
        return false;
    };
    let segs = split_segments(rest);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    matches!(
        s.as_slice(),
        ["composite", "sobjects", ..] | ["query" | "queryAll", ..]
    )
}

/// Substitutes `@{ref.path}` in the url and body of a subrequest.
fn resolve_sub(
    sub: &Sub,
    done: &HashMap<String, Value>,
) -> Result<(String, Option<Value>), String> {
    let url = match substitute(&sub.url, done)? {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let body = match &sub.body {
        Some(b) => Some(substitute_value(b, done)?),
        None => None,
    };
    Ok((url, body))
}

fn substitute_value(v: &Value, done: &HashMap<String, Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => substitute(s, done)?,
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| substitute_value(x, done))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), substitute_value(x, done)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn substitute(s: &str, done: &HashMap<String, Value>) -> Result<Value, String> {
    if !s.contains("@{") {
        return Ok(Value::String(s.to_string()));
    }
    // A string that is exactly one reference keeps the referenced value's JSON type.
    if let Some(inner) = s.strip_prefix("@{").and_then(|r| r.strip_suffix('}')) {
        if !inner.contains('}') && !inner.contains("@{") {
            return lookup_reference(inner, done);
        }
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        match lookup_reference(&after[..end], done)? {
            Value::String(v) => out.push_str(&v),
            v => out.push_str(&v.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

fn lookup_reference(expr: &str, done: &HashMap<String, Value>) -> Result<Value, String> {
    let fail = || {
        let head = expr.split(['.', '[']).next().unwrap_or(expr);
        format!(
            "Invalid reference specified. No value for {expr} found in {head}. Provided referenceId ('{head}') doesn't exist, failed, or has no such field."
        )
    };
    let head_end = expr.find(['.', '[']).unwrap_or(expr.len());
    let mut cur = done.get(&expr[..head_end]).ok_or_else(fail)?;
    let mut rest = &expr[head_end..];
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end]).ok_or_else(fail)?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(fail)?;
            let idx: usize = r[..end].trim().parse().map_err(|_| fail())?;
            cur = cur.get(idx).ok_or_else(fail)?;
            rest = &r[end + 1..];
        } else {
            return Err(fail());
        }
    }
    if cur.is_null() {
        return Err(fail());
    }
    Ok(cur.clone())
}

// ------------------------------------------------------------------------------------------
// Tree / collections helpers

/// `{"records": [...]}` under a child-relationship name.
fn child_records(v: &Value) -> Option<&Vec<Value>> {
    v.as_object()?.get("records")?.as_array()
}

fn check_tree(
    records: &[Value],
    depth: usize,
    count: &mut usize,
    types: &mut HashSet<String>,
    refs: &mut HashMap<String, usize>,
) -> Result<(), SfError> {
    if depth > MAX_TREE_DEPTH {
        return Err(SfError::new(
            400,
            "LIMIT_EXCEEDED",
            format!("Exceeded max depth of {MAX_TREE_DEPTH} levels in an sObject tree request"),
        ));
    }
    for r in records {
        *count += 1;
        let Some(m) = r.as_object() else {
            return Err(json_error("Each record must be a JSON object"));
        };
        if let Some(a) = m.get("attributes") {
            if !a.is_object() {
                return Err(json_error("attributes must be a JSON object"));
            }
            if let Some(t) = a.get("type").and_then(Value::as_str) {
                types.insert(t.to_ascii_lowercase());
            }
            if let Some(r) = a.get("referenceId").and_then(Value::as_str) {
                *refs.entry(r.to_string()).or_insert(0) += 1;
            }
        }
        for (k, v) in m {
            if k == "attributes" {
                continue;
            }
            if let Some(obj) = v.as_object() {
                if let Some(recs) = obj.get("records") {
                    let Some(recs) = recs.as_array() else {
                        return Err(json_error(format!("{k}.records must be an array")));
                    };
                    check_tree(recs, depth + 1, count, types, refs)?;
                }
            }
        }
    }
    Ok(())
}

fn collection_request(body: In) -> Result<(Vec<Value>, bool), SfError> {
    let req = request_object(body)?;
    let all_or_none = all_or_none_flag(&req)?;
    let Some(records) = req.get("records").and_then(Value::as_array) else {
        return Err(json_error("The request body must hold a records array"));
    };
    if records.len() > MAX_RECORDS {
        return Err(SfError::new(
            400,
            "EXCEEDED_ID_LIMIT",
            format!("record limit reached. cannot submit more than {MAX_RECORDS} records into this call"),
        ));
    }
    Ok((records.clone(), all_or_none))
}

// ------------------------------------------------------------------------------------------
// Objects, fields, validation

const KNOWN_OBJECTS: &[(&str, &str)] = &[
    ("Account", "001"),
    ("Note", "002"),
    ("Contact", "003"),
    ("User", "005"),
    ("Opportunity", "006"),
    ("Lead", "00Q"),
    ("Task", "00T"),
    ("Event", "00U"),
    ("Pricebook2", "01s"),
    ("Product2", "01t"),
    ("PricebookEntry", "01u"),
    ("Case", "500"),
    ("Campaign", "701"),
    ("Contract", "800"),
    ("Order", "801"),
    ("OrderItem", "802"),
];

/// `GET sobjects/{Object}/describe`: the answers in tests/fixtures/salesforce/ (Account, Lead,
/// Opportunity, Order); any other object is unknown to this org (404 `NOT_FOUND`, as
/// Salesforce answers for an sObject that does not exist).
fn describe_answer(obj: &str) -> Reply {
    let name = ["Account", "Lead", "Opportunity", "Order"]
        .into_iter()
        .find(|n| n.eq_ignore_ascii_case(obj));
    let Some(name) = name else {
        return Reply::err(not_found());
    };
    let path = format!(
        "{}/tests/fixtures/salesforce/{name}.describe.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("mock salesforce: describe fixture");
    Reply::json(
        200,
        serde_json::from_str(&text).expect("mock salesforce: describe fixture is JSON"),
    )
}

fn canonical(obj: &str) -> String {
    KNOWN_OBJECTS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(obj))
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| obj.to_string())
}

const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn key_prefix(obj: &str) -> String {
    if let Some((_, p)) = KNOWN_OBJECTS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(obj))
    {
        return p.to_string();
    }
    // Other objects: a fixed prefix derived from the name, custom-object style ("aXX").
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in obj.to_ascii_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let a = B62[(h % 62) as usize] as char;
    let b = B62[((h / 62) % 62) as usize] as char;
    format!("a{a}{b}")
}

fn base62(mut n: u64, width: usize) -> String {
    let mut digits = Vec::new();
    while n > 0 {
        digits.push(B62[(n % 62) as usize] as char);
        n /= 62;
    }
    while digits.len() < width {
        digits.push('0');
    }
    digits.iter().rev().collect()
}

/// The 18-character form of a 15-character id (case-safe checksum suffix).
fn id18(id15: &str) -> String {
    const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let b = id15.as_bytes();
    let mut s = id15.to_string();
    for chunk in 0..3 {
        let mut bits = 0usize;
        for j in 0..5 {
            if b.get(chunk * 5 + j).is_some_and(u8::is_ascii_uppercase) {
                bits |= 1 << j;
            }
        }
        s.push(SUFFIX[bits] as char);
    }
    s
}

fn is_id_like(s: &str) -> bool {
    (s.len() == 15 || s.len() == 18) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// 15- and 18-character ids denote the same record.
fn id_matches(stored: &str, given: &str) -> bool {
    is_id_like(given) && stored.len() >= 15 && stored[..15] == given[..15]
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn get_ci<'a>(m: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    m.get(field).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(field))
            .map(|(_, v)| v)
    })
}

/// Sets a field, replacing an existing key that differs only in case.
fn set_ci(m: &mut Map<String, Value>, field: &str, value: Value) {
    let key = m
        .keys()
        .find(|k| k.eq_ignore_ascii_case(field))
        .cloned()
        .unwrap_or_else(|| field.to_string());
    m.insert(key, value);
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn value_matches(v: &Value, s: &str) -> bool {
    scalar_string(v).is_some_and(|x| x == s)
}

fn field_matches(rec: &Map<String, Value>, field: &str, value: &str) -> bool {
    if field.eq_ignore_ascii_case("Id") {
        return rec
            .get("Id")
            .and_then(Value::as_str)
            .is_some_and(|id| id_matches(id, value));
    }
    get_ci(rec, field).is_some_and(|v| value_matches(v, value))
}

fn required_fields(obj: &str) -> &'static [&'static str] {
    match canonical(obj).as_str() {
        "Account" => &["Name"],
        "Contact" => &["LastName"],
        "Lead" => &["LastName", "Company"],
        "Opportunity" => &["Name", "StageName", "CloseDate"],
        "Task" => &["Subject"],
        "Order" => &["AccountId", "EffectiveDate", "Status"],
        "OrderItem" => &["OrderId", "PricebookEntryId", "Quantity", "UnitPrice"],
        _ => &[],
    }
}

fn validate(obj: &str, rec: &Map<String, Value>, creating: bool) -> Result<(), SfError> {
    let missing: Vec<String> = required_fields(obj)
        .iter()
        .filter(|f| match get_ci(rec, f) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(_) => false,
        })
        .map(|f| f.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(SfError::new(
            400,
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", missing.join(", ")),
        )
        .fields(missing));
    }
    if creating && canonical(obj) == "Order" {
        let status = get_ci(rec, "Status").and_then(Value::as_str).unwrap_or("");
        if status != "Draft" {
            return Err(SfError::new(
                400,
                "FIELD_INTEGRITY_EXCEPTION",
                format!("Status: a new order must have the status Draft, not {status}"),
            )
            .fields(vec!["Status".into()]));
        }
    }
    Ok(())
}

/// The object a relationship name points to (`Account` → Account, `Parent__r` → Parent__c).
fn relationship_target(obj: &str, rel: &str) -> String {
    if let Some(base) = rel.strip_suffix("__r") {
        return format!("{base}__c");
    }
    match rel {
        "Owner" | "CreatedBy" | "LastModifiedBy" => "User".into(),
        "Parent" => obj.to_string(),
        "Who" => "Contact".into(),
        "What" => "Account".into(),
        _ => rel.to_string(),
    }
}

/// The lookup field behind a relationship name (`Account` → AccountId, `Parent__r` → Parent__c).
fn foreign_key(rel: &str) -> String {
    match rel.strip_suffix("__r") {
        Some(base) => format!("{base}__c"),
        None => format!("{rel}Id"),
    }
}

/// The lookup field a tree child gets its parent's id in.
fn child_lookup_field(parent_type: &str, child_type: &str) -> String {
    let p = canonical(parent_type);
    let c = canonical(child_type);
    if matches!(c.as_str(), "Task" | "Event") {
        return if matches!(p.as_str(), "Contact" | "Lead") {
            "WhoId".into()
        } else {
            "WhatId".into()
        };
    }
    if p.eq_ignore_ascii_case(&c) {
        return "ParentId".into();
    }
    if p.ends_with("__c") {
        return p;
    }
    format!("{p}Id")
}

// ------------------------------------------------------------------------------------------
// URL helpers

fn split_segments(rest: &str) -> Vec<String> {
    let rest = rest.trim_matches('/');
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split('/').map(|s| percent_decode(s, false)).collect()
}

fn parse_pairs(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                    (Some(h), Some(l)) => Some(h * 16 + l),
                    _ => None,
                };
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
