//! The `http` connector: a REST API described in YAML — base URL, headers, auth and named
//! operations — so integrating a new API needs no Rust.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{check_op, ConnectorKind, SendProblem, SendShape};

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
