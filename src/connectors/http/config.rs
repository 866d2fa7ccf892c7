//! The `http` connector's configuration as written in YAML: base URL, headers, auth, options
//! and named operations, with their JSON Schema. It must not check or compile the settings
//! (that is `Extras::compile` and the connector's build) nor make calls.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::answer::BodyErrorsConfig;
use super::limit::RateConfig;
use super::rotate::RefreshConfig;
use super::sign::SignConfig;
use crate::connectors::target::{SchemaFile, SchemaFormat};
use crate::connectors::tls::TlsConfig;

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
    pub(super) fn body_schema_file(&self) -> Option<SchemaFile> {
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

impl Method {
    pub(super) fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        }
    }

    /// GET and DELETE carry the payload in the query; the others as a JSON body.
    pub(super) fn has_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}
