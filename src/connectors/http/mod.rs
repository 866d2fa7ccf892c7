//! The `http` connector: a REST API described in YAML — base URL, headers, auth and named
//! operations — so integrating a new API needs no Rust.
//!
//! Owns turning one call into one HTTP request: the operation's path with `{name}`
//! placeholders filled from the payload, the rest of the payload as query parameters (GET,
//! DELETE) or as the JSON body (POST, PUT, PATCH), the configured headers and auth. Failures
//! are classified by the generic rules in `classify`; OAuth 2.0 tokens come from `oauth2`.
//! A call is made once, or twice when an OAuth 2.0 or rotating token is refused: retries are
//! the runtime's.
//!
//! The marketplace options live in files of their own: request signing (`sign.rs`), rotating
//! refresh tokens (`rotate.rs`), the shared request rate (`limit.rs`) and errors inside HTTP
//! 200 answers (`answer.rs`). Each is compiled once, by [`Extras::compile`], for `check` and
//! for the live connector alike.

mod answer;
mod limit;
mod rotate;
pub mod sign;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::classify::{self, kind_of, permanent, Answer, Secrets};
use super::oauth2::{Token, TokenCache};
use super::target::{SchemaFile, SchemaFormat};
use super::tls::{self, TlsConfig};
use super::{
    check_op, check_tls, BuildContext, BuildError, CallError, ConfigProblem, Connector,
    ConnectorKind, PathProblem, Reply, Request, SendProblem, SendShape,
};
use answer::{BodyErrors, BodyErrorsConfig};
use limit::{Limiter, RateConfig};
use rotate::{RefreshConfig, Rotating};
use sign::{SignConfig, Signer};

/// Per call, when `timeout` is not set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub base_url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: Option<HttpAuth>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub operations: BTreeMap<String, Operation>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Named values (partner id, shop id, app key) that `sign:` and `auth.refresh` templates
    /// use as `{name}`.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    #[serde(default)]
    pub sign: Option<Box<SignConfig>>,
    #[serde(default)]
    pub rate: Option<Box<RateConfig>>,
    #[serde(default)]
    pub body_errors: Option<Box<BodyErrorsConfig>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub method: Method,
    /// Path below `base_url`; `{name}` placeholders are filled from the payload.
    pub path: String,
    /// Payload fields sent as query parameters beside the JSON body of a POST, PUT or PATCH
    /// (TikTok Shop's `page_size` and `page_token`).
    #[serde(default)]
    pub query: Vec<String>,
    /// A JSON Schema of the request body (a file, relative to the project folder): `check`
    /// verifies the names and types a `send` of this operation writes against it.
    #[serde(default)]
    pub body_schema: Option<String>,
}

impl Operation {
    fn body_schema_file(&self) -> Option<SchemaFile> {
        self.body_schema.as_ref().map(|path| SchemaFile {
            path: path.into(),
            format: SchemaFormat::JsonSchema,
            required: true,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    Bearer { token: String },
    Basic { username: String, password: String },
    ApiKey { header: String, value: String },
    Oauth2(OAuth2ClientCredentials),
    Refresh(Box<RefreshConfig>),
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub scope: Option<String>,
    /// How the client authenticates at the token endpoint (RFC 6749 §2.3.1): in the form body
    /// (the default), as HTTP Basic (Salesforce Commerce Cloud's Account Manager), or the
    /// secret alone as a bearer token (Oracle Commerce's application key at
    /// `/ccadmin/v1/login`; `client_id` is then not sent).
    #[serde(default)]
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    Body,
    Basic,
    Bearer,
}

impl ConnectorKind for HttpConfig {
    fn kind(&self) -> &'static str {
        "http"
    }
    fn operations(&self) -> Vec<String> {
        self.operations.keys().cloned().collect()
    }
    fn check_config(&self, root: &Path) -> Vec<ConfigProblem> {
        let mut problems = check_tls(root, self.tls.as_ref());
        if let Err(found) = Extras::compile(self, "check", None) {
            problems.extend(found);
        }
        for (op, spec) in &self.operations {
            let Some(file) = spec.body_schema_file() else {
                continue;
            };
            if let Err(e) = file.load(root) {
                problems.push(ConfigProblem {
                    at: vec!["operations".into(), op.clone().into(), "body_schema".into()],
                    message: format!("body_schema: {e}"),
                });
            }
        }
        problems
    }
    fn describe_call(&self, _op: &str) -> Option<String> {
        let extras = Extras::compile(self, "dry-run", None).ok()?;
        extras
            .signer
            .map(|s| format!("signed: adds {}", s.describe()))
    }
    fn build(&self, name: &str, cx: &BuildContext) -> Result<Arc<dyn Connector>, BuildError> {
        Ok(Arc::new(HttpConnector::new(self, name, cx)?))
    }
    fn schema_file(&self, _name: &str, send: SendShape<'_>) -> Option<SchemaFile> {
        self.operations.get(send.op)?.body_schema_file()
    }
    fn check_send(&self, send: SendShape<'_>) -> Vec<SendProblem> {
        if self.operations.is_empty() {
            return vec![SendProblem {
                field: "op",
                message: format!(
                    "unknown operation `{}`: this http connector declares no operations",
                    send.op
                ),
                help: Some("declare it under `operations:` in crossdock.yaml".into()),
            }];
        }
        check_op(self, send.op)
    }
}

impl Method {
    fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        }
    }

    /// GET and DELETE carry the payload in the query; the others as a JSON body.
    fn has_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

/// A piece of an operation's path: literal text, or a `{name}` filled from the payload.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Field(String),
}

/// Splits `/v2/orders/{id}/products` once, at build, into text and placeholders.
fn parse_path(path: &str) -> Result<Vec<Piece>, PathProblem> {
    let mut pieces = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(PathProblem::Unclosed)?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err(PathProblem::NotPlaceholder(name.to_string()));
        }
        pieces.push(Piece::Field(name.to_string()));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

/// A call's request before signing and auth.
#[derive(Clone, Copy)]
struct Parts<'a> {
    method: Method,
    url: &'a str,
    path: &'a str,
    query: &'a [(String, String)],
    body: Option<&'a [u8]>,
    idempotency_key: Option<&'a str>,
}

/// A `sign:` or `auth.refresh` template split like a path, except that `${NAME}` stays text:
/// it is a `${VAR}` left unset (`check` says so on its own), not a placeholder.
fn parse_template(text: &str) -> Result<Vec<Piece>, PathProblem> {
    let mut out: Vec<Piece> = Vec::new();
    for piece in parse_path(text)? {
        let piece = match (out.last(), piece) {
            (Some(Piece::Text(t)), Piece::Field(f)) if t.ends_with('$') => {
                Piece::Text(format!("{{{f}}}"))
            }
            (_, p) => p,
        };
        match (out.last_mut(), piece) {
            (Some(Piece::Text(prev)), Piece::Text(t)) => prev.push_str(&t),
            (_, p) => out.push(p),
        }
    }
    Ok(out)
}

/// An operation ready to run.
struct Op {
    method: Method,
    path: Vec<Piece>,
    placeholders: BTreeSet<String>,
    /// Fields that go to the query of a call with a body.
    query: BTreeSet<String>,
}

enum Auth {
    None,
    Bearer(String),
    Basic { username: String, password: String },
    ApiKey(HeaderName, HeaderValue),
    OAuth2(TokenCache),
    Refresh(Box<Rotating>),
}

/// The marketplace options of a connector, compiled.
struct Extras {
    signer: Option<Signer>,
    /// The signer of the token request, when `auth.refresh.sign` is set.
    token_signer: Option<Signer>,
    rotating: Option<Rotating>,
    limiter: Option<Limiter>,
    body_errors: Option<BodyErrors>,
}

impl Extras {
    /// Every problem of every option, each located by the keys below the connector's own.
    fn compile(
        config: &HttpConfig,
        name: &str,
        state: Option<Arc<dyn crate::state::StateStore>>,
    ) -> Result<Extras, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut at = |first: &'static str, rest: &[&'static str], message: String| {
            problems.push(ConfigProblem {
                at: std::iter::once(first)
                    .chain(rest.iter().copied())
                    .map(Into::into)
                    .collect(),
                message,
            })
        };
        let has_token = matches!(
            config.auth,
            Some(HttpAuth::Refresh(_) | HttpAuth::Bearer { .. })
        );
        let signer = config.sign.as_ref().and_then(|c| {
            Signer::compile(c, &config.values, has_token)
                .map_err(|p| at("sign", &p.at, format!("sign: {}", p.message)))
                .ok()
        });
        let (rotating, token_signer) = match &config.auth {
            Some(HttpAuth::Refresh(r)) => {
                let compiled = rotate::Compiled::compile(r, &config.base_url, &config.values)
                    .map_err(|(k, m)| at("auth", &["refresh", k], format!("auth.refresh.{k}: {m}")))
                    .ok();
                let token_signer = match (&r.sign, &config.sign) {
                    (None, _) => None,
                    (Some(_), None) => {
                        at(
                            "auth",
                            &["refresh", "sign"],
                            "auth.refresh.sign: the connector has no `sign:` block to sign the \
                             token request with"
                                .into(),
                        );
                        None
                    }
                    (Some(o), Some(base)) => Signer::compile(&o.apply(base), &config.values, false)
                        .map_err(|p| {
                            let m = format!("auth.refresh.sign: {}", p.message);
                            at("auth", &["refresh", "sign"], m)
                        })
                        .ok(),
                };
                (
                    compiled.map(|c| Rotating::new(name, c, state)),
                    token_signer,
                )
            }
            _ => (None, None),
        };
        let limiter = config.rate.as_ref().and_then(|r| {
            Limiter::new(r)
                .map_err(|(k, m)| at("rate", &[k], format!("rate.{k}: {m}")))
                .ok()
        });
        let body_errors = config.body_errors.as_ref().and_then(|b| {
            BodyErrors::compile(b)
                .map_err(|(k, m)| at("body_errors", &[k], format!("body_errors.{k}: {m}")))
                .ok()
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Extras {
            signer,
            token_signer,
            rotating,
            limiter,
            body_errors,
        })
    }
}

struct HttpConnector {
    client: reqwest::Client,
    /// Without a trailing `/`: every operation path starts with one.
    base_url: String,
    headers: HeaderMap,
    auth: Auth,
    timeout: Duration,
    operations: BTreeMap<String, Op>,
    secrets: Secrets,
    signer: Option<Signer>,
    token_signer: Option<Signer>,
    limiter: Option<Limiter>,
    body_errors: Option<BodyErrors>,
}

impl HttpConnector {
    /// Everything that can be wrong in the config is found here, once, not per call. Messages
    /// name headers but never show their values.
    fn new(config: &HttpConfig, name: &str, cx: &BuildContext) -> Result<Self, BuildError> {
        reqwest::Url::parse(&config.base_url).map_err(|e| BuildError::Url {
            field: "base_url",
            value: config.base_url.clone(),
            reason: e.to_string(),
        })?;
        let timeout = match &config.timeout {
            Some(text) => humantime::parse_duration(text).map_err(|e| BuildError::Timeout {
                value: text.clone(),
                reason: e.to_string(),
            })?,
            None => DEFAULT_TIMEOUT,
        };
        let client = tls::client_for(cx, config.tls.as_ref())?;
        let extras = Extras::compile(config, name, cx.state.clone()).map_err(|found| {
            // `check` reported them all, located; a build names the first.
            let first = found.into_iter().next();
            BuildError::Setting {
                key: first.as_ref().map(|p| p.at.join(".")).unwrap_or_default(),
                message: first.map(|p| p.message).unwrap_or_default(),
            }
        })?;
        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        for (name, value) in &config.headers {
            let (name, value) = header(name, value)?;
            if looks_secret(&name) {
                secrets.push(value.to_str().unwrap_or_default().to_string());
            }
            headers.insert(name, value);
        }
        let auth = match &config.auth {
            None => Auth::None,
            Some(HttpAuth::Bearer { token }) => {
                secrets.push(token.clone());
                Auth::Bearer(token.clone())
            }
            Some(HttpAuth::Basic { username, password }) => {
                secrets.push(password.clone());
                // Echoed as the header carries it: base64 of the pair (the redactor masks the
                // base64 of each secret it is given).
                secrets.push(format!("{username}:{password}"));
                Auth::Basic {
                    username: username.clone(),
                    password: password.clone(),
                }
            }
            Some(HttpAuth::ApiKey {
                header: name,
                value,
            }) => {
                secrets.push(value.clone());
                let (name, mut value) = header(name, value)?;
                value.set_sensitive(true);
                Auth::ApiKey(name, value)
            }
            Some(HttpAuth::Oauth2(creds)) => {
                secrets.push(creds.client_secret.clone());
                Auth::OAuth2(TokenCache::new(client.clone(), creds.clone(), timeout))
            }
            Some(HttpAuth::Refresh(r)) => {
                secrets.push(r.refresh_token.clone());
                match extras.rotating {
                    Some(rotating) => Auth::Refresh(Box::new(rotating)),
                    None => Auth::None,
                }
            }
        };
        // Checked here, not at `check`: an unset `${VAR}` is empty there, and a connector
        // with `unconfigured:` is never built while its variables are unset.
        if let Some(signer) = &extras.signer {
            if signer.key_text().is_empty() && config.sign.as_ref().is_some_and(|s| s.key.is_some())
            {
                return Err(BuildError::Setting {
                    key: "sign.key".into(),
                    message: "sign.key: the signing key is empty (is its variable set?)".into(),
                });
            }
            secrets.push(signer.key_text());
        }
        if let Some(HttpAuth::Refresh(r)) = &config.auth {
            if r.refresh_token.is_empty() {
                return Err(BuildError::Setting {
                    key: "auth.refresh.refresh_token".into(),
                    message: "auth.refresh.refresh_token is empty: authorise the shop and set it"
                        .into(),
                });
            }
        }
        let mut operations = BTreeMap::new();
        for (name, op) in &config.operations {
            let path = parse_path(&op.path).map_err(|problem| BuildError::Path {
                op: name.clone(),
                path: op.path.clone(),
                problem,
            })?;
            let placeholders = path
                .iter()
                .filter_map(|p| match p {
                    Piece::Field(f) => Some(f.clone()),
                    Piece::Text(_) => None,
                })
                .collect();
            operations.insert(
                name.clone(),
                Op {
                    method: op.method,
                    path,
                    placeholders,
                    query: op.query.iter().cloned().collect(),
                },
            );
        }
        Ok(HttpConnector {
            client,
            base_url: config.base_url.trim_end_matches('/').to_string(),
            headers,
            auth,
            timeout,
            operations,
            secrets: Secrets::new(secrets.into_iter().filter(|s| !s.is_empty())),
            signer: extras.signer,
            token_signer: extras.token_signer,
            limiter: extras.limiter,
            body_errors: extras.body_errors,
        })
    }

    async fn call_once(&self, request: Request<'_>) -> Result<Reply, CallError> {
        let op = self
            .operations
            .get(request.op)
            .ok_or_else(|| permanent(format!("unknown operation `{}`", request.op)))?;
        let path = self.path(op, request)?;
        let url = format!("{}{path}", self.base_url);
        let (query, body) = if !op.method.has_body() {
            (query(op, request.payload)?, None)
        } else {
            // The fields `query:` names go to the query; the rest is the body. The bytes are
            // made once: a signature over the body must cover what is sent.
            let mut moved = serde_json::Map::new();
            let split;
            let rest = match request.payload {
                Value::Object(fields) if !op.query.is_empty() => {
                    let mut fields = fields.clone();
                    for name in &op.query {
                        if let Some(v) = fields.remove(name) {
                            moved.insert(name.clone(), v);
                        }
                    }
                    split = Value::Object(fields);
                    &split
                }
                whole => whole,
            };
            let bytes = serde_json::to_vec(rest).map_err(|e| {
                permanent(format!(
                    "operation `{}`: the payload as JSON: {e}",
                    request.op
                ))
            })?;
            (query(op, &Value::Object(moved))?, Some(bytes))
        };
        let what = &format!("{} {url}", op.method.as_reqwest());
        let parts = Parts {
            method: op.method,
            url: &url,
            path: &path,
            query: &query,
            body: body.as_deref(),
            idempotency_key: request.idempotency_key,
        };
        let build = |token: Option<&str>| self.request(parts, self.signer.as_ref(), token);
        let answer = match &self.auth {
            Auth::OAuth2(tokens) => {
                let attempt = |token: Arc<Token>| {
                    let request = build(Some(&token.access_token));
                    async move {
                        let answer = classify::send(request?, self.timeout, what).await?;
                        Ok((answer, what.to_string()))
                    }
                };
                tokens.send(|| self.wait_turn(), attempt).await?.0
            }
            Auth::Refresh(tokens) => {
                let exchange = |refresh: String| self.token_request(tokens, refresh);
                // The turn before the token, as for OAuth2 (`TokenCache::send`).
                self.wait_turn().await;
                let pair = tokens.pair(&exchange).await?;
                let answer =
                    classify::send(build(Some(&pair.access_token))?, self.timeout, what).await?;
                let refused = answer.status == reqwest::StatusCode::UNAUTHORIZED
                    || self
                        .body_errors
                        .as_ref()
                        .is_some_and(|b| b.wants_renewal(&answer));
                if refused {
                    // Revoked or expired early: one renewal, one replay, never a loop.
                    self.wait_turn().await;
                    let pair = tokens.after_refusal(&pair, &exchange).await?;
                    classify::send(build(Some(&pair.access_token))?, self.timeout, what).await?
                } else {
                    answer
                }
            }
            Auth::Bearer(token) => {
                self.wait_turn().await;
                classify::send(build(Some(token))?, self.timeout, what).await?
            }
            _ => {
                self.wait_turn().await;
                classify::send(build(None)?, self.timeout, what).await?
            }
        };
        self.reply(answer, what)
    }

    /// One request of a call, signed now (a replay gets a new timestamp) with `token`.
    fn request(
        &self,
        parts: Parts<'_>,
        signer: Option<&Signer>,
        token: Option<&str>,
    ) -> Result<reqwest::RequestBuilder, CallError> {
        let mut query = parts.query.to_vec();
        let mut headers = self.headers.clone();
        if let Some(signer) = signer {
            let added = signer.sign(
                sign::Call {
                    method: parts.method.as_reqwest().as_str(),
                    path: parts.path,
                    query: &query,
                    body: parts.body.unwrap_or_default(),
                },
                &signer.now(),
                token,
            );
            query.retain(|(n, _)| !added.query.iter().any(|(a, _)| a == n));
            query.extend(added.query);
            for (name, value) in added.headers {
                // The names were checked at load; a value is a token from a remote's answer
                // or a signature, which may not be a valid header value.
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| permanent(format!("`{name}` is not a valid header name")))?;
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    permanent(format!(
                        "the value for header `{name}` is not a valid header value"
                    ))
                })?;
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
        let mut req = self
            .client
            .request(parts.method.as_reqwest(), parts.url)
            .headers(headers);
        if !query.is_empty() {
            req = req.query(&query);
        }
        if let Some(body) = parts.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
            // The header of draft-ietf-httpapi-idempotency-key-header (Stripe's and Adyen's
            // name too): a remote that knows it applies a retried POST once.
            if let Some(k) = parts.idempotency_key {
                req = req.header("Idempotency-Key", k);
            }
        }
        Ok(match (&self.auth, token) {
            (Auth::Bearer(t), _) => req.bearer_auth(t),
            (Auth::Basic { username, password }, _) => req.basic_auth(username, Some(password)),
            (Auth::ApiKey(name, value), _) => req.header(name.clone(), value.clone()),
            (Auth::OAuth2(_), Some(t)) => req.bearer_auth(t),
            // Without a `sign:` block to place it, a rotating token is a bearer token.
            (Auth::Refresh(_), Some(t)) if self.signer.is_none() => req.bearer_auth(t),
            _ => req,
        })
    }

    /// The token request of `auth.refresh`, signed with `auth.refresh.sign` when set.
    async fn token_request(&self, tokens: &Rotating, refresh: String) -> Result<Answer, CallError> {
        let spec = tokens.request();
        let (query, body) = spec.render(&refresh);
        let body = match body {
            Some(b) => Some(serde_json::to_vec(&b).map_err(|e| permanent(e.to_string()))?),
            None => None,
        };
        let parts = Parts {
            method: spec.method,
            url: &spec.url,
            path: &spec.path,
            query: &query,
            body: body.as_deref(),
            idempotency_key: None,
        };
        let request = self.request(parts, self.token_signer.as_ref(), None)?;
        let what = format!("{} {}", spec.method.as_reqwest(), spec.url);
        let answer = classify::send(request, self.timeout, &what).await;
        // The answer holds the new pair: nothing of it reaches a message unmasked.
        answer.map_err(|e| self.secrets.scrub(e, Some(&refresh)))
    }

    async fn wait_turn(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.wait().await;
        }
    }

    fn reply(&self, answer: Answer, what: &str) -> Result<Reply, CallError> {
        if answer.status.is_success() {
            if let Some(rule) = &self.body_errors {
                if let Some(e) = rule.check(&answer, what) {
                    return Err(e);
                }
            }
        }
        reply(answer, what)
    }

    /// The operation's path, placeholders filled with URL-encoded payload fields.
    fn path(&self, op: &Op, request: Request<'_>) -> Result<String, CallError> {
        let mut url = String::new();
        for piece in &op.path {
            match piece {
                Piece::Text(text) => url.push_str(text),
                Piece::Field(name) => {
                    let value = request.payload.get(name).ok_or_else(|| {
                        permanent(format!(
                            "operation `{}`: the payload has no field `{name}` for the path `{{{name}}}`",
                            request.op
                        ))
                    })?;
                    let text = scalar(value).ok_or_else(|| {
                        permanent(format!(
                            "operation `{}`: field `{name}` for the path is {}, not a string, number or boolean",
                            request.op,
                            kind_of(value)
                        ))
                    })?;
                    url.push_str(&classify::encode_segment(&text));
                }
            }
        }
        Ok(url)
    }
}

impl Connector for HttpConnector {
    fn call<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Reply, CallError>> {
        Box::pin(async move {
            self.call_once(request).await.map_err(|e| {
                let token = match &self.auth {
                    Auth::OAuth2(tokens) => tokens.current().map(|t| t.access_token.clone()),
                    Auth::Refresh(tokens) => tokens.current().map(|p| p.access_token.clone()),
                    _ => None,
                };
                let e = match &self.auth {
                    Auth::Refresh(tokens) => {
                        let refresh = tokens.current().map(|p| p.refresh_token.clone());
                        self.secrets.scrub(e, refresh.as_deref())
                    }
                    _ => e,
                };
                self.secrets.scrub(e, token.as_deref())
            })
        })
    }
}

/// The payload fields no placeholder used, as query parameters. Null fields are left out;
/// nested values have no standard query form, so they are refused rather than guessed at.
fn query(op: &Op, payload: &Value) -> Result<Vec<(String, String)>, CallError> {
    let fields = match payload {
        Value::Object(fields) => fields,
        Value::Null => return Ok(Vec::new()),
        other => {
            return Err(permanent(format!(
                "a {} payload must be an object (its fields become query parameters), not {}",
                op.method.as_reqwest(),
                kind_of(other)
            )))
        }
    };
    let mut out = Vec::new();
    for (name, value) in fields {
        if op.placeholders.contains(name) || value.is_null() {
            continue;
        }
        let text = scalar(value).ok_or_else(|| {
            permanent(format!(
                "field `{name}` is {}: only strings, numbers and booleans become query parameters",
                kind_of(value)
            ))
        })?;
        out.push((name.clone(), text));
    }
    Ok(out)
}

fn reply(answer: Answer, what: &str) -> Result<Reply, CallError> {
    if !answer.status.is_success() {
        return Err(classify::generic_failure(&answer, what));
    }
    Ok(Reply {
        status: answer.status.as_u16(),
        remote_id: classify::remote_id(&answer.body),
        body: answer.body,
    })
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), BuildError> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| BuildError::HeaderName(name.to_string()))?;
    let value =
        HeaderValue::from_str(value).map_err(|_| BuildError::HeaderValue(name.to_string()))?;
    Ok((name, value))
}

/// Configured headers that carry credentials (`X-Auth-Token`, `Authorization`, `X-Api-Key`):
/// their values are masked in error messages like the auth settings are.
fn looks_secret(name: &HeaderName) -> bool {
    let name = name.as_str();
    [
        "auth",
        "token",
        "key",
        "secret",
        "password",
        "cookie",
        "signature",
    ]
    .iter()
    .any(|word| name.contains(word))
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_text_and_placeholders() {
        assert_eq!(
            parse_path("/v2/orders/{id}/products").unwrap(),
            vec![
                Piece::Text("/v2/orders/".into()),
                Piece::Field("id".into()),
                Piece::Text("/products".into())
            ]
        );
        assert_eq!(
            parse_path("{a}{b}").unwrap(),
            vec![Piece::Field("a".into()), Piece::Field("b".into())]
        );
        assert_eq!(parse_path("/x/{id").unwrap_err(), PathProblem::Unclosed);
        assert_eq!(
            parse_path("/x/{}").unwrap_err(),
            PathProblem::NotPlaceholder(String::new())
        );
        let e = BuildError::Path {
            op: "get".into(),
            path: "/x/{id".into(),
            problem: PathProblem::Unclosed,
        };
        assert_eq!(
            e.to_string(),
            "operation `get`: path `/x/{id`: `{` is not closed by `}`"
        );
    }
}
