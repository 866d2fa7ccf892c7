//! Connectors: the named instances of a kind (`http`, `salesforce`, `stdout`, `file`) that
//! `send` steps call.
//!
//! Owns the closed registry of connector kinds: one file per kind, one variant in
//! [`ConnectorConfig`], and the [`ConnectorKind`] trait each implements. At load, a kind says
//! which operations a `send` may name and what they need, so `check` catches a typo before an
//! event does. Calling a remote system is the runtime's business and is not done here yet.
//!
//! Adding a kind: a file here with its config struct and `ConnectorKind` impl, a variant
//! below, an example in `docs/connectors.md`, and a case in `tests/cmd/`.

pub mod file;
pub mod http;
pub mod salesforce;
pub mod stdout;

use serde::Deserialize;

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
    /// Checks a `send` against this connector's operations.
    fn check_send(&self, send: SendShape<'_>) -> Vec<SendProblem>;
}

#[derive(Debug, Clone, Deserialize)]
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

/// The check shared by kinds whose operations are a fixed or declared list.
pub(crate) fn check_op(kind: &dyn ConnectorKind, op: &str) -> Vec<SendProblem> {
    let ops = kind.operations();
    if ops.iter().any(|o| o == op) {
        return Vec::new();
    }
    let help = crate::config::diag::did_you_mean(op, ops.iter().map(String::as_str))
        .unwrap_or_else(|| {
            format!(
                "operations of this {} connector: {}",
                kind.kind(),
                ops.join(", ")
            )
        });
    vec![SendProblem {
        field: "op",
        message: format!("unknown operation `{op}`"),
        help: Some(help),
    }]
}

/// For kinds that have no use for `object` or `key`: say so rather than ignore them.
pub(crate) fn reject_extras(kind: &str, send: SendShape<'_>) -> Vec<SendProblem> {
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
