//! Rotating tokens for the `http` connector (`auth: { refresh: ... }`): the refresh-token
//! flows of Shopee, TikTok Shop and Lazada, where each renewal answers with a new access token
//! *and* a new refresh token, and the old refresh token stops working.
//!
//! Owns the current pair: read from the state at the first call (so a restart goes on with the
//! newest refresh token, not the one in crossdock.yaml), renewed before it expires by one call
//! while the others wait, and written to the state before any call uses the new access token.
//! It must not sign calls itself: the connector hands it a function that sends the token
//! request (signed like the connector's other calls when `signed: true`).
//!
//! The pair is stored under `token/<connector>` with a digest of the configured refresh token:
//! a new refresh token in crossdock.yaml (the shop authorised again) replaces the stored pair.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{parse_template, Method, Piece};
use crate::connectors::classify::{self, Answer};
use crate::connectors::CallError;
use crate::jsonpath::JsonPath;
use crate::state::{escape, StateStore};

/// Renew this long before the stated expiry at most (a tenth of the lifetime when shorter):
/// clock skew, and a call that starts just before the end.
const MARGIN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshConfig {
    /// The token endpoint's path (the `{path}` it is signed with).
    pub path: String,
    /// Where the token endpoint lives when not below the connector's `base_url` (TikTok Shop's
    /// `https://auth.tiktok-shops.com`, Lazada's `https://auth.lazada.com/rest`).
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default = "post")]
    pub method: Method,
    /// The refresh token to start from, until the state holds a newer one.
    pub refresh_token: String,
    /// Sign the token request like the connector's calls (without an access token); the keys
    /// given here replace the connector's `sign:` ones (Shopee signs it as a public API).
    #[serde(default)]
    pub sign: Option<super::sign::SignOverride>,
    /// Query parameters of the token request, as templates (`{refresh_token}`, values).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// JSON body fields of the token request, as templates. A field that is exactly one
    /// connector value which is a whole number is sent as a number (Shopee's `partner_id`).
    #[serde(default)]
    pub body: BTreeMap<String, String>,
    /// Where the answer holds the new pair and its lifetime.
    pub answer: AnswerPaths,
}

fn post() -> Method {
    Method::Post
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerPaths {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds from now (Shopee `expire_in`, Lazada `expires_in`).
    #[serde(default)]
    pub expires_in: Option<String>,
    /// A Unix time in seconds (TikTok Shop `access_token_expire_in`).
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A field of the token request: text with the refresh token or a value, or a whole number.
#[derive(Debug, Clone)]
enum Field {
    Text(Vec<Piece>),
    Number(serde_json::Number),
}

/// The token request, compiled.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: Method,
    /// Absolute URL of the endpoint.
    pub url: String,
    /// What `{path}` is when the request is signed.
    pub path: String,
    query: Vec<(String, Field)>,
    body: Vec<(String, Field)>,
}

impl TokenRequest {
    /// The query parameters and the JSON body (`None` when it has no body fields) with
    /// `refresh` filled in.
    pub fn render(&self, refresh: &str) -> (Vec<(String, String)>, Option<Value>) {
        let text = |f: &Field| match f {
            Field::Number(n) => Value::Number(n.clone()),
            Field::Text(pieces) => Value::String(
                pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Text(t) => t.as_str(),
                        Piece::Field(_) => refresh,
                    })
                    .collect(),
            ),
        };
        let query = self
            .query
            .iter()
            .map(|(n, f)| {
                let v = match text(f) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (n.clone(), v)
            })
            .collect();
        let body = (!self.body.is_empty()).then(|| {
            Value::Object(
                self.body
                    .iter()
                    .map(|(n, f)| (n.clone(), text(f)))
                    .collect(),
            )
        });
        (query, body)
    }
}

/// A `refresh:` block, compiled.
pub struct Compiled {
    pub request: TokenRequest,
    initial: String,
    access: JsonPath,
    refresh: JsonPath,
    expires_in: Option<JsonPath>,
    expires_at: Option<JsonPath>,
}

impl Compiled {
    /// `base_url` is the connector's; `values` its `values:`. Errors name the key below
    /// `auth.refresh` they concern.
    pub fn compile(
        config: &RefreshConfig,
        base_url: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<Compiled, (&'static str, String)> {
        let base = config
            .base_url
            .as_deref()
            .unwrap_or(base_url)
            .trim_end_matches('/');
        if !config.path.starts_with('/') {
            return Err(("path", format!("`{}` must start with `/`", config.path)));
        }
        let url = format!("{base}{}", config.path);
        reqwest::Url::parse(&url).map_err(|e| ("base_url", format!("`{url}`: {e}")))?;
        let field = |what: &'static str,
                     name: &str,
                     text: &str|
         -> Result<Field, (&'static str, String)> {
            let pieces = parse_template(text).map_err(|p| (what, format!("`{name}`: {p}")))?;
            if let [Piece::Field(v)] = pieces.as_slice() {
                if let Some(value) = values.get(v) {
                    if let Ok(n) = value.parse::<u64>() {
                        return Ok(Field::Number(n.into()));
                    }
                }
            }
            let mut out: Vec<Piece> = Vec::new();
            for piece in pieces {
                let piece = match piece {
                    Piece::Field(f) if f == "refresh_token" => Piece::Field(f),
                    Piece::Field(f) => match values.get(&f) {
                        Some(v) => Piece::Text(v.clone()),
                        None => {
                            return Err((
                                what,
                                format!(
                                    "`{name}`: unknown placeholder `{{{f}}}`: write {{refresh_token}} or a name from `values:`"
                                ),
                            ))
                        }
                    },
                    text => text,
                };
                match (out.last_mut(), piece) {
                    (Some(Piece::Text(prev)), Piece::Text(t)) => prev.push_str(&t),
                    (_, p) => out.push(p),
                }
            }
            Ok(Field::Text(out))
        };
        let mut query = Vec::new();
        for (name, text) in &config.query {
            query.push((name.clone(), field("query", name, text)?));
        }
        let mut body = Vec::new();
        for (name, text) in &config.body {
            body.push((name.clone(), field("body", name, text)?));
        }
        if !body.is_empty() && !matches!(config.method, Method::Post | Method::Put | Method::Patch)
        {
            return Err((
                "body",
                format!(
                    "a {:?} token request has no body: use `query`",
                    config.method
                ),
            ));
        }
        let path = |src: &str| {
            JsonPath::parse(src).map_err(|e| ("answer", format!("JSONPath `{src}`: {}", e.message)))
        };
        let a = &config.answer;
        if a.expires_in.is_some() && a.expires_at.is_some() {
            return Err((
                "answer",
                "give `expires_in` or `expires_at`, not both".into(),
            ));
        }
        Ok(Compiled {
            request: TokenRequest {
                method: config.method,
                url,
                path: config.path.clone(),
                query,
                body,
            },
            initial: config.refresh_token.clone(),
            access: path(&a.access_token)?,
            refresh: path(&a.refresh_token)?,
            expires_in: a.expires_in.as_deref().map(path).transpose()?,
            expires_at: a.expires_at.as_deref().map(path).transpose()?,
        })
    }
}

/// The pair in use.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds after which the access token is not used; `None` when never said.
    pub renew_at: Option<i64>,
    /// Which renewal this pair came from, so a burst of refusals costs one renewal.
    serial: u64,
}

pub struct Rotating {
    connector: String,
    spec: Compiled,
    state: Option<Arc<dyn StateStore>>,
    current: ArcSwapOption<Pair>,
    gate: tokio::sync::Mutex<()>,
}

impl Rotating {
    pub fn new(connector: &str, spec: Compiled, state: Option<Arc<dyn StateStore>>) -> Self {
        Rotating {
            connector: connector.to_string(),
            spec,
            state,
            current: ArcSwapOption::empty(),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    /// The state key of a connector's pair.
    pub fn key(connector: &str) -> String {
        format!("token/{}", escape(connector))
    }

    fn seed(&self) -> String {
        hex::encode(Sha256::digest(self.spec.initial.as_bytes()))
    }

    /// The access token in use, for masking.
    pub fn current(&self) -> Option<Arc<Pair>> {
        self.current.load_full()
    }

    pub fn request(&self) -> &TokenRequest {
        &self.spec.request
    }

    fn fresh(&self) -> Option<Arc<Pair>> {
        let now = chrono::Utc::now().timestamp();
        self.current
            .load_full()
            .filter(|p| p.renew_at.is_none_or(|at| now < at))
    }

    /// A pair whose access token is not known to be expired, renewing it if needed.
    /// `exchange(request, refresh_token)` sends the token request and reads the answer.
    pub async fn pair<F, Fut>(&self, exchange: &F) -> Result<Arc<Pair>, CallError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<Answer, CallError>>,
    {
        if let Some(p) = self.fresh() {
            return Ok(p);
        }
        let _gate = self.gate.lock().await;
        if let Some(p) = self.fresh() {
            return Ok(p);
        }
        let stored = match self.current.load_full() {
            Some(p) => Some(p),
            None => self.load().await?,
        };
        if let Some(p) = &stored {
            let now = chrono::Utc::now().timestamp();
            if p.renew_at.is_none_or(|at| now < at) {
                self.current.store(Some(p.clone()));
                return Ok(p.clone());
            }
        }
        let refresh = stored
            .as_ref()
            .map(|p| p.refresh_token.clone())
            .unwrap_or_else(|| self.spec.initial.clone());
        let serial = stored.as_ref().map_or(0, |p| p.serial) + 1;
        self.renew(exchange, refresh, serial).await
    }

    /// The next pair after the remote refused `stale`'s access token; another call's renewal
    /// since is taken instead of renewing twice.
    pub async fn after_refusal<F, Fut>(
        &self,
        stale: &Pair,
        exchange: &F,
    ) -> Result<Arc<Pair>, CallError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<Answer, CallError>>,
    {
        let _gate = self.gate.lock().await;
        if let Some(p) = self.current.load_full() {
            if p.serial != stale.serial {
                return Ok(p);
            }
        }
        self.renew(exchange, stale.refresh_token.clone(), stale.serial + 1)
            .await
    }

    /// Only called with the gate held.
    async fn renew<F, Fut>(
        &self,
        exchange: &F,
        refresh: String,
        serial: u64,
    ) -> Result<Arc<Pair>, CallError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<Answer, CallError>>,
    {
        let asked_at = chrono::Utc::now().timestamp();
        let what = format!(
            "connector `{}`: renewing the access token ({} {})",
            self.connector,
            self.spec.request.method.as_reqwest(),
            self.spec.request.url
        );
        let help = "the refresh token may have expired or been used already: authorise the shop \
                    again and set the new refresh token in `auth.refresh.refresh_token`";
        let answer = exchange(refresh.clone()).await.map_err(|e| match e {
            CallError::Retryable {
                message,
                retry_after,
            } => CallError::Retryable {
                message: format!("{what}: {message}"),
                retry_after,
            },
            CallError::Permanent { message } => CallError::Permanent {
                message: format!("{what}: {message}"),
            },
        })?;
        let body = &answer.body;
        let text = |p: &JsonPath| {
            p.first(body).and_then(|v| match v {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            })
        };
        let (Some(access_token), Some(refresh_token)) =
            (text(&self.spec.access), text(&self.spec.refresh))
        else {
            // The remote's own words say why (Shopee `error`, TikTok `message`); the tokens
            // it may echo are masked by the caller.
            let detail = if answer.status.is_success() {
                format!(
                    "the answer has no new token pair: {}",
                    classify::body_text(body)
                )
            } else {
                classify::body_text(body)
            };
            let retryable = classify::is_retryable_status(answer.status);
            let message = format!("{what}: {}: {detail}", answer.status);
            return Err(if retryable {
                CallError::Retryable {
                    message,
                    retry_after: answer.retry_after,
                }
            } else {
                CallError::Permanent {
                    message: format!("{message}; {help}"),
                }
            });
        };
        let number = |p: &Option<JsonPath>| {
            p.as_ref()
                .and_then(|p| p.first(body))
                .and_then(|v| match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                })
        };
        let expires_at = match (number(&self.spec.expires_in), number(&self.spec.expires_at)) {
            (Some(life), _) if life > 0 => Some((asked_at.saturating_add(life), life)),
            (_, Some(at)) if at > asked_at => Some((at, at - asked_at)),
            _ => None,
        };
        let renew_at = expires_at.map(|(at, life)| {
            let margin = (life / 10).min(MARGIN.as_secs() as i64);
            at - margin
        });
        let pair = Arc::new(Pair {
            access_token,
            refresh_token,
            renew_at,
            serial,
        });
        // Kept before it is used: after a crash here the old refresh token no longer works.
        self.save(&pair).await.map_err(|e| CallError::Retryable {
            message: format!("{what}: the new token pair could not be kept in the state: {e}"),
            retry_after: None,
        })?;
        self.current.store(Some(pair.clone()));
        tracing::info!(connector = %self.connector, "Access token renewed");
        Ok(pair)
    }

    async fn load(&self) -> Result<Option<Arc<Pair>>, CallError> {
        let Some(state) = self.state.clone() else {
            return Ok(None);
        };
        let key = Self::key(&self.connector);
        let value = tokio::task::spawn_blocking(move || state.get(&key))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let Some(value) = value else { return Ok(None) };
        if value.get("seed").and_then(Value::as_str) != Some(self.seed().as_str()) {
            return Ok(None);
        }
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(match (text("access_token"), text("refresh_token")) {
            (Some(access_token), Some(refresh_token)) => Some(Arc::new(Pair {
                access_token,
                refresh_token,
                renew_at: value.get("renew_at").and_then(Value::as_i64),
                serial: 0,
            })),
            _ => None,
        })
    }

    async fn save(&self, pair: &Pair) -> Result<(), String> {
        let Some(state) = self.state.clone() else {
            return Ok(());
        };
        let keys = vec![Self::key(&self.connector)];
        let value = json!({
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "renew_at": pair.renew_at,
            "seed": self.seed(),
        });
        tokio::task::spawn_blocking(move || {
            state.update(&keys, &mut |_| Ok((vec![Some(value.clone())], Value::Null)))?;
            state.make_durable()
        })
        .await
        .map_err(|e| e.to_string())?
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: Value) -> RefreshConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn shopee_token_request_sends_ids_as_numbers() {
        let values: BTreeMap<String, String> = [("partner_id", "2001887"), ("shop_id", "14701711")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let c = Compiled::compile(
            &config(json!({
                "path": "/api/v2/auth/access_token/get",
                "refresh_token": "r0",
                "sign": {"string": "{partner_id}{path}{timestamp}"},
                "body": {"refresh_token": "{refresh_token}", "partner_id": "{partner_id}", "shop_id": "{shop_id}"},
                "answer": {"access_token": "$.access_token", "refresh_token": "$.refresh_token", "expires_in": "$.expire_in"}
            })),
            "https://partner.shopeemobile.com/",
            &values,
        )
        .unwrap();
        assert_eq!(
            c.request.url,
            "https://partner.shopeemobile.com/api/v2/auth/access_token/get"
        );
        let (query, body) = c.request.render("r1");
        assert!(query.is_empty());
        assert_eq!(
            body.unwrap(),
            json!({"refresh_token": "r1", "partner_id": 2001887, "shop_id": 14701711})
        );
    }

    use crate::state::MemoryStore;
    use std::sync::Mutex;

    /// A token endpoint in memory: each refresh with the current refresh token hands out
    /// `a<n>`/`r<n>` living `life` seconds; any other refresh token is refused.
    struct Endpoint {
        current: Mutex<(u32, String)>,
        asked: Mutex<Vec<String>>,
        life: i64,
    }

    impl Endpoint {
        fn new(first: &str, life: i64) -> Arc<Endpoint> {
            Arc::new(Endpoint {
                current: Mutex::new((0, first.to_string())),
                asked: Mutex::default(),
                life,
            })
        }

        async fn exchange(&self, refresh: String) -> Result<Answer, CallError> {
            self.asked.lock().unwrap().push(refresh.clone());
            let mut current = self.current.lock().unwrap();
            let (status, body) = if refresh == current.1 {
                current.0 += 1;
                current.1 = format!("r{}", current.0);
                let n = current.0;
                (
                    reqwest::StatusCode::OK,
                    json!({"access_token": format!("a{n}"), "refresh_token": format!("r{n}"), "expires_in": self.life}),
                )
            } else {
                (
                    reqwest::StatusCode::BAD_REQUEST,
                    json!({"error": "used refresh token"}),
                )
            };
            Ok(Answer {
                status,
                retry_after: None,
                body,
            })
        }
    }

    fn rotating(first: &str, state: &Arc<MemoryStore>) -> Rotating {
        let spec = Compiled::compile(
            &config(json!({
                "path": "/token", "refresh_token": first,
                "query": {"refresh_token": "{refresh_token}"},
                "answer": {"access_token": "$.access_token", "refresh_token": "$.refresh_token", "expires_in": "$.expires_in"}
            })),
            "https://x",
            &BTreeMap::new(),
        )
        .unwrap();
        let state: Arc<dyn StateStore> = state.clone();
        Rotating::new("shop", spec, Some(state))
    }

    /// A refusal renews once for a burst of callers; a second instance over the same state
    /// (a restart) goes on from the newest refresh token; a new configured refresh token (the
    /// shop authorised again) replaces the stored pair.
    #[tokio::test]
    async fn pairs_rotate_once_per_refusal_and_survive_a_restart() {
        let state = Arc::new(MemoryStore::new());
        let endpoint = Endpoint::new("r0", 3600);
        let exchange = |r: String| {
            let e = endpoint.clone();
            async move { e.exchange(r).await }
        };
        let tokens = rotating("r0", &state);
        let first = tokens.pair(&exchange).await.unwrap();
        assert_eq!(first.access_token, "a1");
        assert_eq!(tokens.pair(&exchange).await.unwrap().access_token, "a1");
        let (x, y) = tokio::join!(
            tokens.after_refusal(&first, &exchange),
            tokens.after_refusal(&first, &exchange)
        );
        assert_eq!(
            (
                x.unwrap().access_token.as_str(),
                y.unwrap().access_token.as_str()
            ),
            ("a2", "a2")
        );
        assert_eq!(*endpoint.asked.lock().unwrap(), ["r0", "r1"]);

        // A restart: the stored pair is still fresh, so no refresh at all.
        let restarted = rotating("r0", &state);
        assert_eq!(restarted.pair(&exchange).await.unwrap().access_token, "a2");
        // Refused: the next refresh uses the stored r2, not the configured r0.
        let stale = restarted.pair(&exchange).await.unwrap();
        assert_eq!(
            restarted
                .after_refusal(&stale, &exchange)
                .await
                .unwrap()
                .access_token,
            "a3"
        );
        assert_eq!(*endpoint.asked.lock().unwrap(), ["r0", "r1", "r2"]);

        // Authorised again: the new configured token wins over the stored pair.
        *endpoint.current.lock().unwrap() = (10, "fresh".into());
        let again = rotating("fresh", &state);
        assert_eq!(again.pair(&exchange).await.unwrap().access_token, "a11");

        // A used refresh token is a permanent error that says what to do.
        let old = rotating("r0", &state);
        let e = old.pair(&exchange).await.unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("connector `shop`"), "{e}");
        assert!(e.to_string().contains("authorise the shop again"), "{e}");
    }

    #[test]
    fn mistakes_name_their_key() {
        let bad = |v: Value| {
            Compiled::compile(&config(v), "https://x", &BTreeMap::new())
                .err()
                .unwrap()
        };
        let answer = json!({"access_token": "$.a", "refresh_token": "$.r"});
        let e = bad(
            json!({"path": "/t", "refresh_token": "r", "query": {"x": "{nope}"}, "answer": answer}),
        );
        assert_eq!(e.0, "query");
        let e = bad(json!({"path": "t", "refresh_token": "r", "answer": answer}));
        assert_eq!(e.0, "path");
        let e = bad(
            json!({"path": "/t", "refresh_token": "r", "answer": {"access_token": "$[", "refresh_token": "$.r"}}),
        );
        assert_eq!(e.0, "answer");
        let e = bad(
            json!({"path": "/t", "method": "GET", "refresh_token": "r", "body": {"a": "b"}, "answer": answer}),
        );
        assert_eq!(e.0, "body");
    }
}
