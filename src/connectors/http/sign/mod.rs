//! Request signing for the `http` connector: the `sign:` block that marketplaces such as
//! Shopee, TikTok Shop and Lazada require on every call.
//!
//! Owns compiling a `sign:` block once, at load, into a [`Signer`] (the string-to-sign and
//! the added parameters as templates whose placeholders are all known, the algorithm, the
//! encoding, the placement) and applying it to one call whose path, query and body are final.
//! It must not decide what goes into the payload or where the access token comes from: the
//! connector hands both in.
//!
//! A template is text with `{name}` placeholders. The names are the call's parts (`method`,
//! `path`, `query`, `query_form`, `body`, `timestamp`, `access_token`, `key`) and the
//! connector's `values:`. `{path}` is the operation's path as filled (what Shopee calls
//! `api_path`, Lazada the API name), without the path of `base_url`. `{query}` is every query
//! parameter but the signature's own and `exclude`, sorted by name in byte order, written
//! `k1v1k2v2` (Lazada's and TikTok Shop's form); `{query_form}` the same as `k1=v1&k2=v2`,
//! unencoded. `{body}` is the body's bytes exactly as sent.//!
//! The YAML model is `config.rs`, templates `template.rs`; compiling and applying a block is
//! here.

mod config;
mod template;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use config::{problem, word};
pub use config::{
    Algorithm, Encoding, IntoConfig, Placement, SignConfig, SignOverride, SignProblem, TimeUnit,
};
use template::{render, template, Part, Template};

/// The placeholders every call has; anything else must be a connector value.
pub(super) const CALL_PARTS: &[&str] = &[
    "method",
    "path",
    "query",
    "query_form",
    "body",
    "timestamp",
    "access_token",
    "key",
];

/// The parts an added parameter or header may use: the ones known before the query is final.
const PARAM_PARTS: &[&str] = &["timestamp", "access_token"];

/// A compiled `sign:` block.
#[derive(Debug, Clone)]
pub struct Signer {
    algorithm: Algorithm,
    key: Vec<u8>,
    string: Template,
    encoding: Encoding,
    into: Placement,
    unit: TimeUnit,
    exclude: Vec<String>,
    query: Vec<(String, Template)>,
    headers: Vec<(String, Template)>,
    uses_token: bool,
}

/// The call as it will be sent, before the signature.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

/// What signing adds to a call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Added {
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl Signer {
    /// Compiles `config`; `values` are the connector's `values:`, `has_token` whether its
    /// auth yields an access token for `{access_token}`.
    pub fn compile(
        config: &SignConfig,
        values: &BTreeMap<String, String>,
        has_token: bool,
    ) -> Result<Signer, SignProblem> {
        let algorithm = word(
            "algorithm",
            Some(&config.algorithm),
            None,
            &[
                ("hmac-sha256", Algorithm::HmacSha256),
                ("sha256", Algorithm::Sha256),
            ],
        )?;
        let encoding = word(
            "encoding",
            config.encoding.as_deref(),
            Some(Encoding::Hex),
            &[
                ("hex", Encoding::Hex),
                ("hex-upper", Encoding::HexUpper),
                ("base64", Encoding::Base64),
            ],
        )?;
        let unit = word(
            "timestamp",
            config.timestamp.as_deref(),
            Some(TimeUnit::Seconds),
            &[
                ("seconds", TimeUnit::Seconds),
                ("milliseconds", TimeUnit::Milliseconds),
            ],
        )?;
        let into = match (&config.into.query, &config.into.header) {
            (Some(q), None) => Placement::Query(q.clone()),
            (None, Some(h)) => Placement::Header(h.clone()),
            _ => {
                return Err(problem(
                    vec!["into"],
                    "write `into: { query: NAME }` or `into: { header: NAME }`",
                ))
            }
        };
        let key = match (algorithm, &config.key) {
            (Algorithm::HmacSha256, None) => {
                return Err(problem(
                    vec!["algorithm"],
                    "hmac-sha256 needs a `key` (the partner key or app secret)",
                ))
            }
            (_, key) => key.clone().unwrap_or_default().into_bytes(),
        };
        let string = template(&config.string, values, CALL_PARTS)
            .map_err(|m| problem(vec!["string"], format!("string: {m}")))?;
        if string.contains(&Part::Key) && config.key.is_none() {
            return Err(problem(
                vec!["string"],
                "string: `{key}` is used but no `key` is set",
            ));
        }
        let name = match &into {
            Placement::Query(n) | Placement::Header(n) => n,
        };
        if name.is_empty() {
            return Err(problem(
                vec!["into"],
                "the signature needs a parameter or header name",
            ));
        }
        if let Placement::Header(n) = &into {
            reqwest::header::HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| problem(vec!["into"], format!("`{n}` is not a valid header name")))?;
        }
        let mut query = Vec::new();
        for (name, text) in &config.query {
            if Placement::Query(name.clone()) == into {
                return Err(problem(
                    vec!["query"],
                    format!("query `{name}` is where the signature goes; it cannot also be set"),
                ));
            }
            let t = template(text, values, PARAM_PARTS)
                .map_err(|m| problem(vec!["query"], format!("query `{name}`: {m}")))?;
            query.push((name.clone(), t));
        }
        let mut headers = Vec::new();
        for (name, text) in &config.headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                problem(
                    vec!["headers"],
                    format!("`{name}` is not a valid header name"),
                )
            })?;
            let t = template(text, values, PARAM_PARTS)
                .map_err(|m| problem(vec!["headers"], format!("header `{name}`: {m}")))?;
            headers.push((name.to_ascii_lowercase(), t));
        }
        let uses_token = [&string]
            .into_iter()
            .chain(query.iter().map(|(_, t)| t))
            .chain(headers.iter().map(|(_, t)| t))
            .any(|t| t.contains(&Part::AccessToken));
        if uses_token && !has_token {
            return Err(problem(
                vec!["string"],
                "`{access_token}` is used but the connector's auth gives no token \
                 (use `auth: { refresh: ... }` or `auth: { bearer: ... }`)",
            ));
        }
        Ok(Signer {
            algorithm,
            key,
            string,
            encoding,
            into,
            unit,
            exclude: config.exclude.clone(),
            query,
            headers,
            uses_token,
        })
    }

    /// Whether a call needs the access token to be signed.
    pub fn uses_token(&self) -> bool {
        self.uses_token
    }

    /// The signing key: a secret, for masking.
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }

    /// The current time in the configured unit.
    pub fn now(&self) -> String {
        let now = chrono::Utc::now();
        match self.unit {
            TimeUnit::Seconds => now.timestamp().to_string(),
            TimeUnit::Milliseconds => now.timestamp_millis().to_string(),
        }
    }

    /// The parameters and headers to add to `call`, the signature included. `call.query`
    /// must not hold the added parameters yet: they are rendered here and take the place of
    /// payload fields of the same name.
    pub fn sign(&self, call: Call<'_>, timestamp: &str, token: Option<&str>) -> Added {
        let token = token.unwrap_or_default();
        let key = self.key_text();
        let small = |t: &Template| render(t, None, timestamp, token, "", &[]);
        let added_query: Vec<(String, String)> = self
            .query
            .iter()
            .map(|(n, t)| (n.clone(), small(t)))
            .collect();
        let mut all: Vec<(&str, &str)> = call
            .query
            .iter()
            .filter(|(n, _)| !added_query.iter().any(|(a, _)| a == n))
            .chain(added_query.iter())
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .filter(|(n, _)| {
                Placement::Query((*n).to_string()) != self.into
                    && !self.exclude.iter().any(|e| e == n)
            })
            .collect();
        // Byte order of the names, as Lazada's "ASCII order" and TikTok's sort both are.
        all.sort();
        let text = render(&self.string, Some(call), timestamp, token, &key, &all);
        let signature = self.encode(&self.digest(text.as_bytes()));
        let mut added = Added {
            query: added_query,
            headers: self
                .headers
                .iter()
                .map(|(n, t)| (n.clone(), small(t)))
                .collect(),
        };
        match &self.into {
            Placement::Query(name) => added.query.push((name.clone(), signature)),
            Placement::Header(name) => added.headers.push((name.clone(), signature)),
        }
        added
    }

    fn digest(&self, bytes: &[u8]) -> Vec<u8> {
        match self.algorithm {
            Algorithm::HmacSha256 => {
                // An HMAC key may be any length (RFC 2104): `new_from_slice` cannot fail.
                match Hmac::<Sha256>::new_from_slice(&self.key) {
                    Ok(mut mac) => {
                        mac.update(bytes);
                        mac.finalize().into_bytes().to_vec()
                    }
                    Err(_) => Vec::new(),
                }
            }
            Algorithm::Sha256 => Sha256::digest(bytes).to_vec(),
        }
    }

    fn encode(&self, bytes: &[u8]) -> String {
        match self.encoding {
            Encoding::Hex => hex::encode(bytes),
            Encoding::HexUpper => hex::encode_upper(bytes),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// What `dry-run` shows: the added parameters and headers with the time, the token and
    /// the signature unrendered (`<timestamp>`, `***`).
    pub fn describe(&self) -> String {
        let show = |t: &Template| {
            t.iter()
                .map(|p| match p {
                    Part::Text(s) => s.clone(),
                    Part::Timestamp => "<timestamp>".into(),
                    _ => "***".into(),
                })
                .collect::<String>()
        };
        let mut query: Vec<String> = self
            .query
            .iter()
            .map(|(n, t)| format!("{n}={}", show(t)))
            .collect();
        let mut headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, t)| format!("{n}: {}", show(t)))
            .collect();
        match &self.into {
            Placement::Query(n) => query.push(format!("{n}=***")),
            Placement::Header(n) => headers.push(format!("{n}: ***")),
        }
        let mut out = String::new();
        if !query.is_empty() {
            let _ = write!(out, "query {}", query.join("&"));
        }
        if !headers.is_empty() {
            if !out.is_empty() {
                out.push_str("; ");
            }
            let _ = write!(out, "headers {}", headers.join(", "));
        }
        out
    }
}
