//! The live `http` connector: built once from the config (client, headers, auth, operations,
//! compiled options) and making one call as one HTTP request, or two when a token is refused;
//! query parameters, the answer as a `Reply` or a classified `CallError`, secrets masked. It
//! must not retry beyond that one token refresh (the runtime decides) nor re-read the config.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::answer::BodyErrors;
use super::limit::Limiter;
use super::rotate::Rotating;
use super::sign::Signer;
use super::{parse_path, Extras, HttpAuth, HttpConfig, Method, Piece};
use crate::connectors::classify::{self, kind_of, permanent, Answer, Secrets};
use crate::connectors::oauth2::{Token, TokenCache};
use crate::connectors::tls;
use crate::connectors::{BuildContext, BuildError, CallError, Connector, Reply, Request};

/// Per call, when `timeout` is not set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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

pub(super) struct HttpConnector {
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
    pub(super) fn new(
        config: &HttpConfig,
        name: &str,
        cx: &BuildContext,
    ) -> Result<Self, BuildError> {
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
                super::sign::Call {
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
