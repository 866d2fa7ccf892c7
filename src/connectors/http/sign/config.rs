//! The `sign:` block as written in YAML (and the `auth.refresh.sign` override of it), the closed
//! lists of its words, and [`SignProblem`], a problem under one of its keys. It must not compile
//! templates or sign anything (that is [`Signer`](super::Signer)).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignConfig {
    /// `hmac-sha256` or `sha256` (read by [`Signer::compile`], so a mistake is located).
    pub algorithm: String,
    /// The HMAC key (the partner key, the app secret) as UTF-8 text; `{key}` in `string`.
    #[serde(default)]
    pub key: Option<String>,
    /// The string to sign, as a template.
    pub string: String,
    /// `hex` (the default), `hex-upper` or `base64`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Where the signature goes: `{ query: NAME }` or `{ header: NAME }`.
    pub into: IntoConfig,
    /// The unit of `{timestamp}`: `seconds` (the default) or `milliseconds`.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Query parameters left out of `{query}` and `{query_form}` (the signature's own always is).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Query parameters added to every call, as templates (`timestamp: "{timestamp}"`).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Headers added to every call, as templates (`x-tts-access-token: "{access_token}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The keys of `auth.refresh.sign`: the token request is signed with the connector's `sign:`
/// block with these replaced.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignOverride {
    #[serde(default)]
    pub string: Option<String>,
    #[serde(default)]
    pub exclude: Option<Vec<String>>,
    #[serde(default)]
    pub query: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
}

impl SignOverride {
    pub fn apply(&self, base: &SignConfig) -> SignConfig {
        let mut out = base.clone();
        if let Some(s) = &self.string {
            out.string = s.clone();
        }
        if let Some(e) = &self.exclude {
            out.exclude = e.clone();
        }
        if let Some(q) = &self.query {
            out.query = q.clone();
        }
        if let Some(h) = &self.headers {
            out.headers = h.clone();
        }
        out
    }
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntoConfig {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha256,
    Sha256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    HexUpper,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Milliseconds,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Query(String),
    Header(String),
}

/// A word of a closed list, or a problem at `key` naming the list.
pub(super) fn word<T: Copy>(
    key: &'static str,
    given: Option<&str>,
    default: Option<T>,
    words: &[(&str, T)],
) -> Result<T, SignProblem> {
    let Some(given) = given else {
        return default.ok_or_else(|| problem(vec![key], format!("`{key}` is required")));
    };
    if let Some((_, t)) = words.iter().find(|(w, _)| *w == given) {
        return Ok(*t);
    }
    let names = words.iter().map(|(w, _)| *w);
    let hint = crate::config::diag::did_you_mean(given, names.clone())
        .unwrap_or_else(|| format!("write one of {}", names.collect::<Vec<_>>().join(", ")));
    Err(problem(
        vec![key],
        format!("{key} `{given}` is not known; {hint}"),
    ))
}

/// What is wrong with a `sign:` block, and under which of its keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SignProblem {
    /// Keys below `sign`.
    pub at: Vec<&'static str>,
    pub message: String,
}

pub(super) fn problem(at: Vec<&'static str>, message: impl Into<String>) -> SignProblem {
    SignProblem {
        at,
        message: message.into(),
    }
}
