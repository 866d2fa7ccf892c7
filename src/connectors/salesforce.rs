//! The `salesforce` connector: sObject create, upsert by external id, update, delete, and
//! `tree` (a parent with its children in one call, e.g. an Order with its OrderItems).
//!
//! Owns the REST calls these make (conformance/salesforce-rest.md, sections 1–4 and 6) and
//! reading Salesforce's answers: success shapes, and errors classified by their `errorCode`
//! (`statusCode` inside tree results) rather than by status alone, because Salesforce signals
//! its API limit with a 403 and a lock conflict with a 400. Tokens come from `oauth2`; a
//! Salesforce token has no `expires_in`, so a 401 is the only sign of expiry: one new token,
//! one replay, never more.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::classify::{self, kind_of, permanent, Answer, Secrets};
use super::oauth2::{Token, TokenCache};
use super::{
    check_op, BuildContext, CallError, Connector, ConnectorKind, Reply, Request, SendProblem,
    SendShape,
};
use crate::connectors::http::OAuth2ClientCredentials;

/// The config has no `timeout`: a minute covers a 200-record tree on a busy org, and a call
/// that takes longer is better retried than waited for.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Error codes that mean "later", whatever the status: the org's API allowance (a 403) and a
/// record locked by another transaction (a 400).
const RETRYABLE_CODES: [&str; 2] = ["REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW"];

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
    fn build(&self, _name: &str, cx: &BuildContext) -> Result<Arc<dyn Connector>, String> {
        let creds = &self.auth.oauth2;
        reqwest::Url::parse(&creds.token_url)
            .map_err(|e| format!("auth.oauth2.token_url `{}`: {e}", creds.token_url))?;
        if let Some(url) = &self.instance_url {
            reqwest::Url::parse(url).map_err(|e| format!("instance_url `{url}`: {e}"))?;
        }
        Ok(Arc::new(Salesforce {
            client: cx.http.clone(),
            tokens: TokenCache::new(cx.http.clone(), creds.clone(), TIMEOUT),
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
        }))
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

struct Salesforce {
    client: reqwest::Client,
    tokens: TokenCache,
    /// The configured instance, used when the token answer names none.
    instance_url: Option<String>,
    api_version: String,
    secrets: Secrets,
}

/// One call worked out from the request, before any token or URL is needed.
#[derive(Debug, PartialEq)]
struct Plan {
    method: Method,
    /// Below `{instance}/services/data/{version}/`, segments already encoded.
    path: String,
    body: Option<Value>,
    /// For `tree`: the referenceId of the top-level record, whose id the reply carries.
    reference: Option<String>,
    /// For `upsert`: `Field = value`, to explain a 300.
    key: Option<String>,
}

impl Salesforce {
    async fn call_once(&self, request: Request<'_>) -> Result<Reply, CallError> {
        let plan = plan(request)?;
        let (answer, what) = self.tokens.send(|token| self.send(&plan, token)).await?;
        reply(&plan, answer, &what)
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
        Box::pin(async move {
            self.call_once(request).await.map_err(|e| {
                let token = self.tokens.current();
                self.secrets
                    .scrub(e, token.as_ref().map(|t| t.access_token.as_str()))
            })
        })
    }
}

fn plan(request: Request<'_>) -> Result<Plan, CallError> {
    let op = request.op;
    let object = request
        .object
        .ok_or_else(|| permanent(format!("salesforce `{op}` needs `object`")))?;
    let sobject = format!("sobjects/{}", classify::encode_segment(object));
    let mut plan = Plan {
        method: Method::POST,
        path: sobject.clone(),
        body: None,
        reference: None,
        key: None,
    };
    match op {
        "create" => plan.body = Some(fields(request)?.clone().into()),
        "upsert" => {
            let key = request
                .key
                .ok_or_else(|| permanent("salesforce `upsert` needs `key`".into()))?;
            let fields = fields(request)?;
            let value = id_text(fields, key, "the upsert key")?;
            plan.method = Method::PATCH;
            plan.path = format!(
                "{sobject}/{}/{}",
                classify::encode_segment(key),
                classify::encode_segment(&value)
            );
            // The key is in the URL; repeating it in the body, or sending `Id`, is refused.
            plan.body = Some(without(fields, &[key, "Id"]));
            plan.key = Some(format!("{key} = {value}"));
        }
        "update" | "delete" => {
            let fields = fields(request)?;
            let id = id_text(fields, "Id", "the record id")?;
            plan.path = format!("{sobject}/{}", classify::encode_segment(&id));
            if op == "update" {
                plan.method = Method::PATCH;
                plan.body = Some(without(fields, &["Id"]));
            } else {
                plan.method = Method::DELETE;
            }
        }
        "tree" => {
            let mut records = tree_records(request.payload)?;
            if records.is_empty() {
                return Err(permanent("salesforce `tree`: no records to create".into()));
            }
            let mut generated = 0;
            for record in &mut records {
                label(record, Some(object), &mut generated)?;
            }
            plan.reference = records
                .first()
                .and_then(|r| r.pointer("/attributes/referenceId"))
                .and_then(Value::as_str)
                .map(str::to_string);
            plan.path = format!("composite/tree/{}", classify::encode_segment(object));
            plan.body = Some(serde_json::json!({ "records": records }));
        }
        other => {
            return Err(permanent(format!(
                "salesforce has no operation `{other}` (create, upsert, update, delete, tree)"
            )))
        }
    }
    Ok(plan)
}

fn fields<'p>(request: Request<'p>) -> Result<&'p Map<String, Value>, CallError> {
    request.payload.as_object().ok_or_else(|| {
        permanent(format!(
            "salesforce `{}`: the payload must be an object of fields, not {}",
            request.op,
            kind_of(request.payload)
        ))
    })
}

/// A field that goes into the URL: a string, or a number (external ids often are).
fn id_text(fields: &Map<String, Value>, name: &str, role: &str) -> Result<String, CallError> {
    match fields.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        None => Err(permanent(format!("the payload has no `{name}` ({role})"))),
        Some(other) => Err(permanent(format!(
            "`{name}` ({role}) is {}, not a non-empty string or a number",
            kind_of(other)
        ))),
    }
}

/// The fields minus `drop`, compared without case: Salesforce field names ignore case.
fn without(fields: &Map<String, Value>, drop: &[&str]) -> Value {
    fields
        .iter()
        .filter(|(name, _)| !drop.iter().any(|d| d.eq_ignore_ascii_case(name)))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect::<Map<_, _>>()
        .into()
}

/// The top-level records of a tree payload: `{"records": [...]}` as is, an array of
/// records, or one record.
fn tree_records(payload: &Value) -> Result<Vec<Value>, CallError> {
    match payload {
        Value::Object(fields) => match fields.get("records") {
            Some(Value::Array(records)) if fields.len() == 1 => Ok(records.clone()),
            _ => Ok(vec![payload.clone()]),
        },
        Value::Array(records) => Ok(records.clone()),
        other => Err(permanent(format!(
            "salesforce `tree`: the payload must be a record, an array of records or \
             {{\"records\": [...]}}, not {}",
            kind_of(other)
        ))),
    }
}

/// Gives a record that lacks them `attributes.type` (the `object` of its level, known only at
/// the top) and a generated `attributes.referenceId`, then does the same for its children
/// (`{"records": [...]}` under a relationship name).
fn label(record: &mut Value, object: Option<&str>, generated: &mut usize) -> Result<(), CallError> {
    let Value::Object(fields) = record else {
        return Err(permanent(format!(
            "salesforce `tree`: a record is {}, not an object",
            kind_of(record)
        )));
    };
    let attributes = fields
        .entry("attributes")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(attributes) = attributes {
        if let Some(object) = object {
            attributes.entry("type").or_insert_with(|| object.into());
        }
        if !attributes.contains_key("referenceId") {
            *generated += 1;
            attributes.insert(
                "referenceId".into(),
                format!("crossdockRef{generated}").into(),
            );
        }
    }
    for (name, value) in fields.iter_mut() {
        if name == "attributes" {
            continue;
        }
        if let Some(Value::Array(children)) = value.get_mut("records") {
            for child in children {
                label(child, None, generated)?;
            }
        }
    }
    Ok(())
}

fn reply(plan: &Plan, answer: Answer, what: &str) -> Result<Reply, CallError> {
    if answer.status == StatusCode::MULTIPLE_CHOICES {
        let detail = format!(
            "several records match the upsert key{}: {}",
            plan.key
                .as_ref()
                .map(|k| format!(" ({k})"))
                .unwrap_or_default(),
            classify::body_text(&answer.body)
        );
        return Err(classify::failure(&answer, what, false, &detail));
    }
    if !answer.status.is_success() {
        return Err(failure(&answer, what));
    }
    let remote_id = match &plan.reference {
        Some(reference) => tree_id(&answer.body, reference),
        None => classify::remote_id(&answer.body),
    };
    Ok(Reply {
        status: answer.status.as_u16(),
        remote_id,
        body: answer.body,
    })
}

/// The id Salesforce gave the record with `reference` in a tree answer.
fn tree_id(body: &Value, reference: &str) -> Option<String> {
    body.get("results")?
        .as_array()?
        .iter()
        .find(|r| r.get("referenceId").and_then(Value::as_str) == Some(reference))?
        .get("id")?
        .as_str()
        .map(str::to_string)
}

/// Retryable when the status says so (429, 5xx) or any error code does; the message carries
/// the remote errors as sent (`errorCode` at the top level, `statusCode` per tree record).
fn failure(answer: &Answer, what: &str) -> CallError {
    let retryable = classify::is_retryable_status(answer.status)
        || error_codes(&answer.body)
            .iter()
            .any(|code| RETRYABLE_CODES.contains(code));
    classify::failure(answer, what, retryable, &classify::body_text(&answer.body))
}

/// The codes in an error answer: a top-level error array, or a tree's per-record errors.
fn error_codes(body: &Value) -> Vec<&str> {
    fn code(e: &Value) -> Option<&str> {
        e.get("errorCode")
            .or_else(|| e.get("statusCode"))
            .and_then(Value::as_str)
    }
    match body {
        Value::Array(errors) => errors.iter().filter_map(code).collect(),
        Value::Object(tree) => tree
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("errors").and_then(Value::as_array))
            .flatten()
            .filter_map(code)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request<'a>(op: &'a str, key: Option<&'a str>, payload: &'a Value) -> Request<'a> {
        Request {
            connector: "salesforce",
            op,
            object: Some("Order"),
            key,
            payload,
        }
    }

    #[test]
    fn upsert_puts_the_key_in_the_url_and_neither_it_nor_id_in_the_body() {
        let payload = json!({"ExternalId__c": "BC/250 #1", "Id": "x", "Status": "Draft"});
        let plan = plan(request("upsert", Some("ExternalId__c"), &payload)).unwrap();
        assert_eq!(plan.method, Method::PATCH);
        assert_eq!(plan.path, "sobjects/Order/ExternalId__c/BC%2F250%20%231");
        assert_eq!(plan.body, Some(json!({"Status": "Draft"})));
    }

    #[test]
    fn tree_records_get_missing_attributes() {
        let payload = json!({
            "Name": "O",
            "OrderItems": {"records": [
                {"attributes": {"type": "OrderItem", "referenceId": "item1"}, "Quantity": 1},
                {"attributes": {"type": "OrderItem"}, "Quantity": 2}
            ]}
        });
        let plan = plan(request("tree", None, &payload)).unwrap();
        assert_eq!(plan.path, "composite/tree/Order");
        assert_eq!(plan.reference.as_deref(), Some("crossdockRef1"));
        let body = plan.body.unwrap();
        assert_eq!(
            body["records"][0]["attributes"],
            json!({"type": "Order", "referenceId": "crossdockRef1"})
        );
        let items = &body["records"][0]["OrderItems"]["records"];
        assert_eq!(items[0]["attributes"]["referenceId"], "item1");
        assert_eq!(
            items[1]["attributes"],
            json!({"type": "OrderItem", "referenceId": "crossdockRef2"})
        );
    }

    #[test]
    fn tree_payloads_may_already_be_wrapped() {
        let record = json!({"attributes": {"type": "Order", "referenceId": "o1"}, "Name": "O"});
        for payload in [
            json!({"records": [record.clone()]}),
            json!([record.clone()]),
        ] {
            let plan = plan(request("tree", None, &payload)).unwrap();
            assert_eq!(plan.body, Some(json!({"records": [record.clone()]})));
            assert_eq!(plan.reference.as_deref(), Some("o1"));
        }
    }

    #[test]
    fn error_codes_come_from_arrays_and_tree_results() {
        let top = json!([{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "m"}]);
        assert_eq!(error_codes(&top), vec!["UNABLE_TO_LOCK_ROW"]);
        let tree = json!({"hasErrors": true, "results": [{"referenceId": "r",
            "errors": [{"statusCode": "INVALID_EMAIL_ADDRESS", "message": "m", "fields": ["Email"]}]}]});
        assert_eq!(error_codes(&tree), vec!["INVALID_EMAIL_ADDRESS"]);
        assert!(error_codes(&json!("text")).is_empty());
    }
}
