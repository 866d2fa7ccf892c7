//! The `http` connector: a REST API described in YAML — base URL, headers, auth and named
//! operations — so integrating a new API needs no Rust.
//!
//! Owns turning one call into one HTTP request: the operation's path with `{name}`
//! placeholders filled from the payload, the rest of the payload as query parameters (GET,
//! DELETE) or as the JSON body (POST, PUT, PATCH), the configured headers and auth. Failures
//! are classified by the generic rules in `classify`; OAuth 2.0 tokens come from `oauth2`.
//! A call is made once, or twice when an OAuth 2.0 token is refused: retries are the runtime's.

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
use super::tls::{self, TlsConfig};
use super::{
    check_op, check_tls, BuildContext, BuildError, CallError, ConfigProblem, Connector,
    ConnectorKind, PathProblem, Reply, Request, SendProblem, SendShape,
};

/// Per call, when `timeout` is not set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Deserialize)]
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub method: Method,
    /// Path below `base_url`; `{name}` placeholders are filled from the payload.
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    Bearer { token: String },
    Basic { username: String, password: String },
    ApiKey { header: String, value: String },
    Oauth2(OAuth2ClientCredentials),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub scope: Option<String>,
}

impl ConnectorKind for HttpConfig {
    fn kind(&self) -> &'static str {
        "http"
    }
    fn operations(&self) -> Vec<String> {
        self.operations.keys().cloned().collect()
    }
    fn check_config(&self, root: &Path) -> Vec<ConfigProblem> {
        check_tls(root, self.tls.as_ref())
    }
    fn build(&self, _name: &str, cx: &BuildContext) -> Result<Arc<dyn Connector>, BuildError> {
        Ok(Arc::new(HttpConnector::new(self, cx)?))
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

/// An operation ready to run.
struct Op {
    method: Method,
    path: Vec<Piece>,
    placeholders: BTreeSet<String>,
}

enum Auth {
    None,
    Bearer(String),
    Basic { username: String, password: String },
    ApiKey(HeaderName, HeaderValue),
    OAuth2(TokenCache),
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
}

impl HttpConnector {
    /// Everything that can be wrong in the config is found here, once, not per call. Messages
    /// name headers but never show their values.
    fn new(config: &HttpConfig, cx: &BuildContext) -> Result<Self, BuildError> {
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
        };
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
            secrets: Secrets::new(secrets),
        })
    }

    async fn call_once(&self, request: Request<'_>) -> Result<Reply, CallError> {
        let op = self
            .operations
            .get(request.op)
            .ok_or_else(|| permanent(format!("unknown operation `{}`", request.op)))?;
        let url = self.url(op, request)?;
        let query = if op.method.has_body() {
            Vec::new()
        } else {
            query(op, request.payload)?
        };
        let what = &format!("{} {url}", op.method.as_reqwest());
        let build = |token: Option<&Token>| {
            let mut req = self
                .client
                .request(op.method.as_reqwest(), &url)
                .headers(self.headers.clone());
            if !query.is_empty() {
                req = req.query(&query);
            }
            if op.method.has_body() {
                req = req.json(request.payload);
                // The header of draft-ietf-httpapi-idempotency-key-header (Stripe's and
                // Adyen's name too): a remote that knows it applies a retried POST once.
                if let Some(k) = request.idempotency_key {
                    req = req.header("Idempotency-Key", k);
                }
            }
            match (&self.auth, token) {
                (Auth::Bearer(t), _) => req.bearer_auth(t),
                (Auth::Basic { username, password }, _) => req.basic_auth(username, Some(password)),
                (Auth::ApiKey(name, value), _) => req.header(name.clone(), value.clone()),
                (Auth::OAuth2(_), Some(t)) => req.bearer_auth(&t.access_token),
                (Auth::None, _) | (Auth::OAuth2(_), None) => req,
            }
        };
        let answer = match &self.auth {
            Auth::OAuth2(tokens) => {
                let attempt = |token: Arc<Token>| {
                    let request = build(Some(&token));
                    async move {
                        let answer = classify::send(request, self.timeout, what).await?;
                        Ok((answer, what.to_string()))
                    }
                };
                tokens.send(attempt).await?.0
            }
            _ => classify::send(build(None), self.timeout, what).await?,
        };
        reply(answer, what)
    }

    /// The base URL and the operation's path, placeholders filled with URL-encoded payload
    /// fields.
    fn url(&self, op: &Op, request: Request<'_>) -> Result<String, CallError> {
        let mut url = self.base_url.clone();
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
                    Auth::OAuth2(tokens) => tokens.current(),
                    _ => None,
                };
                self.secrets
                    .scrub(e, token.as_ref().map(|t| t.access_token.as_str()))
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
