//! Connectors: the named instances of a kind (`http`, `salesforce`, `stdout`, `file`) that
//! `send` steps call.
//!
//! Owns the closed registry of connector kinds: one file per kind, one variant in
//! [`ConnectorConfig`], and the [`ConnectorKind`] trait each implements. At load, a kind says
//! which operations a `send` may name and what they need, so `check` catches a typo before an
//! event does. At run, [`ConnectorConfig::build`] turns the config into a live [`Connector`]
//! that executes calls; retries, the circuit breaker and dead letters are the runtime's, which
//! decides from the [`CallError`] kind alone.
//!
//! Adding a kind: docs/architecture.md, "Adding a connector kind".

mod classify;
pub mod file;
pub mod http;
mod oauth2;
pub mod salesforce;
pub mod stdout;
pub mod target;
pub mod tls;
pub mod traceparent;

pub(crate) use classify::kind_of;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

/// What a `send` step asks of a connector, as the compiler sees it.
#[derive(Debug, Clone, Copy)]
pub struct SendShape<'a> {
    pub op: &'a str,
    pub object: Option<&'a str>,
    pub key: Option<&'a str>,
}

/// A problem with a `send` against a connector, and which key of the step it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendProblem {
    /// `op`, `object` or `key`.
    pub field: &'static str,
    pub message: String,
    pub help: Option<String>,
}

pub trait ConnectorKind {
    fn kind(&self) -> &'static str;
    /// The operations a `send` may name.
    fn operations(&self) -> Vec<String>;
    /// Checks a `send` against this connector's operations; by default, the check of a fixed
    /// list of operations that takes no `object` or `key` ([`check_plain_send`]).
    fn check_send(&self, send: SendShape<'_>) -> Vec<SendProblem> {
        check_plain_send(self, send)
    }
    /// Problems with what the config names outside itself, found by `check`; relative paths
    /// are relative to `root`, the project folder.
    fn check_config(&self, _root: &Path) -> Vec<ConfigProblem> {
        Vec::new()
    }
    /// Where the target's schema of what `send` writes is kept (a Salesforce describe, an
    /// `http` operation's `body_schema`), for `check` to judge the fields; `name` is the
    /// connector's name in crossdock.yaml. `None`: nothing to check against.
    fn schema_file(&self, _name: &str, _send: SendShape<'_>) -> Option<target::SchemaFile> {
        None
    }
    /// What a call to `op` adds that its payload does not show (a signature), for `dry-run`.
    fn describe_call(&self, _op: &str) -> Option<String> {
        None
    }
    /// The live connector for `run`. `name` is the connector's name in crossdock.yaml.
    fn build(&self, name: &str, cx: &BuildContext) -> Result<Arc<dyn Connector>, BuildError>;
}

/// Why a connector's config cannot become a live connector. The messages name the setting and
/// never show a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A URL setting (`base_url`, `instance_url`, `auth.oauth2.token_url`) that does not parse.
    #[error("{field} `{value}`: {reason}")]
    Url {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("timeout `{value}`: {reason} (write e.g. 30s or 2m)")]
    Timeout { value: String, reason: String },
    #[error("`{0}` is not a valid HTTP header name")]
    HeaderName(String),
    #[error("the value of header `{0}` is not a valid header value (control characters?)")]
    HeaderValue(String),
    #[error("operation `{op}`: path `{path}`: {problem}")]
    Path {
        op: String,
        path: String,
        problem: PathProblem,
    },
    /// A setting that `check` reports at its place (`sign.string`, `rate.per`).
    #[error("{message}")]
    Setting { key: String, message: String },
    #[error("tls.ca_file `{path}`: {problem}")]
    CaFile {
        path: String,
        problem: tls::CaFileError,
    },
}

/// A problem `check` finds in a connector's config beyond its shape (a file it names), and
/// where: keys below the connector's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub at: Vec<std::borrow::Cow<'static, str>>,
    pub message: String,
}

/// What is wrong with an `http` operation's path template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("`{{` is not closed by `}}`")]
    Unclosed,
    #[error("`{{{0}}}` is not a placeholder (write `{{field}}`)")]
    NotPlaceholder(String),
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ConnectorConfig {
    Http(http::HttpConfig),
    Salesforce(salesforce::SalesforceConfig),
    Stdout(stdout::StdoutConfig),
    File(file::FileConfig),
}

impl ConnectorConfig {
    pub fn as_kind(&self) -> &dyn ConnectorKind {
        match self {
            ConnectorConfig::Http(c) => c,
            ConnectorConfig::Salesforce(c) => c,
            ConnectorConfig::Stdout(c) => c,
            ConnectorConfig::File(c) => c,
        }
    }
}

/// The check of a `tls:` option, for the kinds that have one.
pub(crate) fn check_tls(root: &Path, tls: Option<&tls::TlsConfig>) -> Vec<ConfigProblem> {
    let Some(tls) = tls else {
        return Vec::new();
    };
    match tls::check(root, tls) {
        Some(problem) => vec![ConfigProblem {
            at: vec!["tls".into(), "ca_file".into()],
            message: BuildError::CaFile {
                path: tls.ca_file.clone(),
                problem,
            }
            .to_string(),
        }],
        None => Vec::new(),
    }
}

/// The check shared by kinds whose operations are a fixed or declared list.
pub(crate) fn check_op<K: ConnectorKind + ?Sized>(kind: &K, op: &str) -> Vec<SendProblem> {
    let ops = kind.operations();
    if ops.iter().any(|o| o == op) {
        return Vec::new();
    }
    // The whole list either way: a near miss may not be the one that was meant.
    let list = format!(
        "operations of this {} connector: {}",
        kind.kind(),
        ops.join(", ")
    );
    let help = match crate::config::diag::did_you_mean(op, ops.iter().map(String::as_str)) {
        Some(near) => format!("{near} ({list})"),
        None => list,
    };
    vec![SendProblem {
        field: "op",
        message: format!("unknown operation `{op}`"),
        help: Some(help),
    }]
}

/// The whole check of a kind with a fixed list of operations and no use for `object` or `key`
/// (`stdout`, `file`).
pub(crate) fn check_plain_send<K: ConnectorKind + ?Sized>(
    kind: &K,
    send: SendShape<'_>,
) -> Vec<SendProblem> {
    let mut out = check_op(kind, send.op);
    out.extend(reject_extras(kind.kind(), send));
    out
}

/// For kinds that have no use for `object` or `key`: say so rather than ignore them.
fn reject_extras(kind: &str, send: SendShape<'_>) -> Vec<SendProblem> {
    let mut out = Vec::new();
    if send.object.is_some() {
        out.push(SendProblem {
            field: "object",
            message: format!("a {kind} connector takes no `object`"),
            help: None,
        });
    }
    if send.key.is_some() {
        out.push(SendProblem {
            field: "key",
            message: format!("a {kind} connector takes no `key`"),
            help: None,
        });
    }
    out
}

/// One call on a live connector: an action of a `send` step, or a `fetch`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The connector's name as the pipeline wrote it (a fallback connector prints it).
    pub connector: &'a str,
    pub op: &'a str,
    pub object: Option<&'a str>,
    pub key: Option<&'a str>,
    pub payload: &'a Value,
    /// The same for every attempt at the same effect of the same event (the runtime derives it
    /// from the event id and the step): a remote that supports idempotency keys applies the
    /// effect once however many times a retry sends it. None for fetches and polls.
    pub idempotency_key: Option<&'a str>,
}

/// What the remote system answered to a successful call.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The HTTP status, or 0 for connectors that are not HTTP (stdout, file).
    pub status: u16,
    /// The id the remote system gave the record it created or updated, when it says.
    pub remote_id: Option<String>,
    /// The answer's body as JSON (`Null` when there was none); a `fetch` puts it in the record.
    pub body: Value,
}

/// Why a call failed, classified the way the runtime acts on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// Worth trying again later: connect error, timeout, 429, 5xx, a platform's own limit
    /// signal. `retry_after` is the server's `Retry-After`, when it sent one.
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Trying again cannot help (a 4xx other than the limit signals, a bad payload): the event
    /// dead-letters at once. The message carries the remote error body.
    #[error("{message}")]
    Permanent { message: String },
}

impl CallError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, CallError::Retryable { .. })
    }
}

/// A connector ready to make calls. Built once per project version and shared by every
/// worker; implementations keep their connection pools and tokens inside.
pub trait Connector: Send + Sync {
    fn call<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Reply, CallError>>;
}

/// What building a live connector may use.
#[derive(Clone)]
pub struct BuildContext {
    /// The project folder: relative paths in connector config are relative to it.
    pub root: PathBuf,
    /// One HTTP client (and connection pool) shared by the connectors that need one.
    pub http: reqwest::Client,
    /// Where connectors keep what must survive a restart (a rotating token pair); `None` when
    /// nothing is kept.
    pub state: Option<Arc<dyn crate::state::StateStore>>,
}

/// A call as one JSON line, `{"connector", "op", "object"?, "key"?, "payload"}`: what the local
/// connectors write.
pub(crate) fn action_line(request: &Request<'_>) -> String {
    let mut line = serde_json::Map::new();
    line.insert("connector".into(), request.connector.into());
    line.insert("op".into(), request.op.into());
    if let Some(object) = request.object {
        line.insert("object".into(), object.into());
    }
    if let Some(key) = request.key {
        line.insert("key".into(), key.into());
    }
    line.insert("payload".into(), request.payload.clone());
    Value::Object(line).to_string()
}
