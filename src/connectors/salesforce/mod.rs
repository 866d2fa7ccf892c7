//! The `salesforce` connector: sObject create, upsert by external id, update, delete, `tree`
//! (a parent with its children in one insert-only call) and `composite` (a parent with its
//! children upserted in one all-or-none call, e.g. an Order with its OrderItems).
//!
//! Owns the connector's config, what `check` asks of a `send` to it, and the live connector
//! that makes a call: a token from `oauth2`, then one request. A Salesforce token has no
//! `expires_in`, so a 401 is the only sign of expiry: one new token, one replay, never more.
//! The REST behaviour this follows is written down in docs/salesforce.md. The work is split
//! by job: `plan` turns a request into the REST call (method, path, body), `composite` builds
//! the `/composite` body of a parent and its children, and `answer` reads what Salesforce
//! answered, classifying errors as retryable or permanent.

mod answer;
mod composite;
pub mod describe;
mod plan;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::classify::{self, permanent, Answer, Secrets};
use super::oauth2::{Token, TokenCache};
use super::target::{SchemaFile, SchemaFormat};
use super::tls::{self, TlsConfig};
use super::{
    check_op, check_tls, BuildContext, BuildError, CallError, ConfigProblem, Connector,
    ConnectorKind, Reply, Request, SendProblem, SendShape,
};
use crate::connectors::http::OAuth2ClientCredentials;
use answer::reply;
use plan::{check_composite_version, plan, Plan};

/// The config has no `timeout`: a minute covers a 200-record tree on a busy org, and a call
/// that takes longer is better retried than waited for.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    /// The org's instance; the token answer's `instance_url` takes precedence when present.
    #[serde(default)]
    pub instance_url: Option<String>,
    pub auth: SalesforceAuth,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

fn default_api_version() -> String {
    "v60.0".into()
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SalesforceAuth {
    pub oauth2: OAuth2ClientCredentials,
}

const OPS: [&str; 6] = ["create", "upsert", "update", "delete", "tree", "composite"];

impl ConnectorKind for SalesforceConfig {
    fn kind(&self) -> &'static str {
        "salesforce"
    }
    fn operations(&self) -> Vec<String> {
        OPS.iter().map(|s| s.to_string()).collect()
    }
    fn check_config(&self, root: &Path) -> Vec<ConfigProblem> {
        check_tls(root, self.tls.as_ref())
    }
    fn build(&self, _name: &str, cx: &BuildContext) -> Result<Arc<dyn Connector>, BuildError> {
        Ok(Arc::new(self.live(cx)?))
    }
    /// `schemas/<connector>/<Object>.json`, as `crossdock schema pull` writes it; a delete
    /// sends no fields.
    fn schema_file(&self, name: &str, send: SendShape<'_>) -> Option<SchemaFile> {
        let object = send.object?;
        if send.op == "delete" || !is_plain_name(object) {
            return None;
        }
        Some(SchemaFile {
            path: Path::new("schemas")
                .join(name)
                .join(format!("{object}.json")),
            format: SchemaFormat::SalesforceDescribe,
            required: false,
        })
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
        if send.op == "composite" {
            if let Err(CallError::Permanent { message }) =
                check_composite_version(&self.api_version)
            {
                out.push(SendProblem {
                    field: "op",
                    message,
                    help: Some("set the connector's api_version to v46.0 or later".into()),
                });
            }
        }
        match (send.op, send.key) {
            (op @ ("upsert" | "composite"), None) => out.push(SendProblem {
                field: "op",
                message: format!(
                    "salesforce `{op}` needs `key` (the external id field, e.g. External_Id__c)"
                ),
                help: None,
            }),
            ("upsert" | "composite", Some(_)) | (_, None) => {}
            (op, Some(_)) => out.push(SendProblem {
                field: "key",
                message: format!("`key` is only for upsert and composite, not `{op}`"),
                help: None,
            }),
        }
        out
    }
}

impl SalesforceConfig {
    fn live(&self, cx: &BuildContext) -> Result<Salesforce, BuildError> {
        let creds = &self.auth.oauth2;
        reqwest::Url::parse(&creds.token_url).map_err(|e| BuildError::Url {
            field: "auth.oauth2.token_url",
            value: creds.token_url.clone(),
            reason: e.to_string(),
        })?;
        if let Some(url) = &self.instance_url {
            reqwest::Url::parse(url).map_err(|e| BuildError::Url {
                field: "instance_url",
                value: url.clone(),
                reason: e.to_string(),
            })?;
        }
        let client = tls::client_for(cx, self.tls.as_ref())?;
        Ok(Salesforce {
            tokens: TokenCache::new(client.clone(), creds.clone(), TIMEOUT),
            client,
            instance_url: self
                .instance_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            // `60.0` and `v60.0` both name the version; the URL wants the `v`.
            api_version: match self.api_version.strip_prefix('v') {
                Some(_) => self.api_version.clone(),
                None => format!("v{}", self.api_version),
            },
            secrets: Secrets::new([creds.client_secret.clone()]),
        })
    }

    /// The describe answer of each of `objects`, as Salesforce gives it, for
    /// `crossdock schema pull`; one answer or error per object, in order.
    pub async fn describe(
        &self,
        cx: &BuildContext,
        objects: &[String],
    ) -> Result<Vec<Result<serde_json::Value, CallError>>, BuildError> {
        let live = self.live(cx)?;
        let mut out = Vec::with_capacity(objects.len());
        for object in objects {
            out.push(live.describe(object).await);
        }
        Ok(out)
    }
}

/// An sObject name as a path segment and a file name: letters, digits and underscores.
fn is_plain_name(object: &str) -> bool {
    !object.is_empty()
        && object
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Salesforce {
    client: reqwest::Client,
    tokens: TokenCache,
    /// The configured instance, used when the token answer names none.
    instance_url: Option<String>,
    api_version: String,
    secrets: Secrets,
}

impl Salesforce {
    async fn call_once(&self, request: Request<'_>) -> Result<Reply, CallError> {
        let plan = plan(request, &self.api_version)?;
        let (answer, what) = self
            .tokens
            .send(|| async {}, |token| self.send(&plan, token))
            .await?;
        reply(&plan, answer, &what)
    }

    async fn describe(&self, object: &str) -> Result<serde_json::Value, CallError> {
        if !is_plain_name(object) {
            return Err(permanent(format!(
                "`{object}` is not an sObject name (letters, digits and _)"
            )));
        }
        let plan = Plan::describe(object);
        let (answer, what) = self
            .tokens
            .send(|| async {}, |token| self.send(&plan, token))
            .await
            .map_err(|e| self.scrub(e))?;
        if !answer.status.is_success() {
            return Err(self.scrub(answer::failure(&answer, &what)));
        }
        Ok(answer.body)
    }

    fn scrub(&self, e: CallError) -> CallError {
        let token = self.tokens.current();
        self.secrets
            .scrub(e, token.as_ref().map(|t| t.access_token.as_str()))
    }

    async fn send(&self, plan: &Plan, token: Arc<Token>) -> Result<(Answer, String), CallError> {
        let instance = token
            .instance_url
            .as_deref()
            .or(self.instance_url.as_deref())
            .ok_or_else(|| {
                permanent(
                    "no instance_url: the token answer names none and none is configured".into(),
                )
            })?;
        let url = format!(
            "{instance}/services/data/{}/{}",
            self.api_version, plan.path
        );
        let what = format!("{} {url}", plan.method);
        let mut request = self
            .client
            .request(plan.method.clone(), &url)
            .bearer_auth(&token.access_token);
        if let Some(body) = &plan.body {
            request = request.json(body);
        }
        let answer = classify::send(request, TIMEOUT, &what).await?;
        Ok((answer, what))
    }
}

impl Connector for Salesforce {
    fn call<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Reply, CallError>> {
        Box::pin(async move { self.call_once(request).await.map_err(|e| self.scrub(e)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn check_wants_a_key_for_composite_and_a_version_that_can_refer_to_the_parent() {
        let config = |version: &str| -> SalesforceConfig {
            serde_json::from_value(json!({
                "auth": {"oauth2": {"token_url": "https://login.example/token",
                                    "client_id": "id", "client_secret": "secret"}},
                "api_version": version,
            }))
            .unwrap()
        };
        let send = |key| SendShape {
            op: "composite",
            object: Some("Order"),
            key,
        };
        assert!(config("v60.0")
            .check_send(send(Some("External_Id__c")))
            .is_empty());
        let problems = config("60.0").check_send(send(None));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("needs `key`"));
        let problems = config("45.0").check_send(send(Some("External_Id__c")));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("46.0 or later, not 45.0"));
    }
}

/// Requests and payloads the tests of the submodules share.
#[cfg(test)]
mod fixtures {
    use serde_json::{json, Value};

    use super::plan::{plan, Plan};
    use crate::connectors::{CallError, Request};

    pub const V: &str = "v60.0";

    pub fn request<'a>(op: &'a str, key: Option<&'a str>, payload: &'a Value) -> Request<'a> {
        Request {
            connector: "salesforce",
            op,
            object: Some("Order"),
            key,
            payload,
            idempotency_key: None,
        }
    }

    pub fn order(items: Value) -> Value {
        json!({
            "External_Id__c": "BC-ORDER/250",
            "Id": "ignored",
            "attributes": {"type": "Order"},
            "Status": "Draft",
            "OrderItems": {"object": "OrderItem", "key": "External_Id__c", "parent": "OrderId",
                           "records": items}
        })
    }

    pub fn composite_plan(payload: &Value) -> Result<Plan, CallError> {
        plan(request("composite", Some("External_Id__c"), payload), V)
    }

    pub fn refusal(result: Result<Plan, CallError>) -> String {
        match result {
            Err(CallError::Permanent { message }) => message,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    pub fn items(n: usize) -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({"External_Id__c": format!("I{i}"), "Quantity": 1}))
                .collect(),
        )
    }
}
