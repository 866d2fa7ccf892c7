//! The `salesforce` connector: sObject create, upsert by external id, update, delete, and
//! `tree` (a parent with its children in one call, e.g. an Order with its OrderItems).

use serde::Deserialize;

use super::{check_op, ConnectorKind, SendProblem, SendShape};
use crate::connectors::http::OAuth2ClientCredentials;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    /// The org's instance; the token answer's `instance_url` takes precedence when present.
    #[serde(default)]
    pub instance_url: Option<String>,
    pub auth: SalesforceAuth,
    #[serde(default = "default_api_version")]
    pub api_version: String,
}

fn default_api_version() -> String {
    "v60.0".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceAuth {
    pub oauth2: OAuth2ClientCredentials,
}

const OPS: [&str; 5] = ["create", "upsert", "update", "delete", "tree"];

impl ConnectorKind for SalesforceConfig {
    fn kind(&self) -> &'static str {
        "salesforce"
    }
    fn operations(&self) -> Vec<String> {
        OPS.iter().map(|s| s.to_string()).collect()
    }
    fn check_send(&self, send: SendShape<'_>) -> Vec<SendProblem> {
        let mut out = check_op(self, send.op);
        if !out.is_empty() {
            return out;
        }
        if send.object.is_none() {
            out.push(SendProblem {
                field: "op",
                message: format!(
                    "salesforce `{}` needs `object` (the sObject, e.g. Account)",
                    send.op
                ),
                help: None,
            });
        }
        match (send.op, send.key) {
            ("upsert", None) => out.push(SendProblem {
                field: "op",
                message:
                    "salesforce `upsert` needs `key` (the external id field, e.g. External_Id__c)"
                        .into(),
                help: None,
            }),
            ("upsert", Some(_)) | (_, None) => {}
            (op, Some(_)) => out.push(SendProblem {
                field: "key",
                message: format!("`key` is only for upsert, not `{op}`"),
                help: None,
            }),
        }
        out
    }
}
