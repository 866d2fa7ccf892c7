//! The `auth.refresh` block: as written in YAML, and compiled once into the token request
//! (URL, query and body templates with the refresh token as a placeholder) and the paths its
//! answer is read by. It must not send the request or keep a token.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::connectors::http::{parse_template, Method, Piece};
use crate::jsonpath::JsonPath;

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
    pub sign: Option<crate::connectors::http::sign::SignOverride>,
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
pub(super) enum Field {
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
    pub(super) query: Vec<(String, Field)>,
    pub(super) body: Vec<(String, Field)>,
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
    pub(super) initial: String,
    pub(super) access: JsonPath,
    pub(super) refresh: JsonPath,
    pub(super) expires_in: Option<JsonPath>,
    pub(super) expires_at: Option<JsonPath>,
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
