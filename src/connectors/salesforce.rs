//! The `salesforce` connector: sObject create, upsert by external id, update, delete, `tree`
//! (a parent with its children in one insert-only call) and `composite` (a parent with its
//! children upserted in one all-or-none call, e.g. an Order with its OrderItems).
//!
//! Owns the REST calls these make (conformance/salesforce-rest.md, sections 1–7) and reading
//! Salesforce's answers: success shapes, and errors classified by their `errorCode`
//! (`statusCode` inside tree results) rather than by status alone, because Salesforce signals
//! its API limit with a 403 and a lock conflict with a 400. Tokens come from `oauth2`; a
//! Salesforce token has no `expires_in`, so a 401 is the only sign of expiry: one new token,
//! one replay, never more.
//!
//! # `composite`: a parent and its children, safe to send twice
//!
//! `tree` only inserts: when its answer is lost (a timeout, a crash before the trail is
//! written), the redelivered event creates a second Order. `composite` upserts every record by
//! an external id instead, so sending it again updates what the first call made. The send names
//! the parent's object and key; the payload is the parent's fields, holding its own key value,
//! and one *child group* per kind of child, under any name made of letters, digits and `_`:
//!
//! ```yaml
//! - send: { to: salesforce, op: composite, object: Order, key: External_Id__c, payload: $.order }
//! ```
//!
//! ```json
//! {"External_Id__c": "BC-ORDER-250", "Status": "Draft", "EffectiveDate": "2026-11-20",
//!  "OrderItems": {"object": "OrderItem", "key": "External_Id__c", "parent": "OrderId",
//!                 "records": [{"External_Id__c": "BC-ORDER-250-1971", "Quantity": 2}]}}
//! ```
//!
//! A field whose value is an object with `records` is a child group; it holds exactly `object`
//! (the children's sObject), `key` (their external id field, which every record carries),
//! `parent` (their field for the parent's id, filled in by the call: a record must not set it)
//! and `records` (an array, possibly empty). Children have no groups of their own. `attributes`
//! and `Id` are dropped from every record, as the upsert URL names the record.
//!
//! This becomes one `POST composite` with `allOrNone: true`: subrequest `refParent` PATCHes
//! `sobjects/Order/External_Id__c/BC-ORDER-250`, then each group's children are upserted
//! through sObject Collections, up to 200 records per subrequest: subrequest `ref<group>_<n>`
//! carries the group's n-th chunk of 200 (counted from 0: `refOrderItems_0` holds
//! `records[0]` to `records[199]`, `refOrderItems_1` from `records[200]`) and PATCHes
//! `composite/sobjects/OrderItem/External_Id__c` with `{"allOrNone": true, "records": [...]}`,
//! each record with `attributes.type`, its key and `"OrderId": "@{refParent.id}"`. A group
//! without records sends nothing. Salesforce allows 5 collection subrequests in one composite,
//! so a parent takes at most 1000 children (fewer when a group's last chunk is not full); more
//! is a permanent error before any call. Children that left the payload since an earlier call
//! are not deleted. The reference needs the upsert answer's `id`, which an update gives only
//! from API version 46.0 (older versions answer 204 with no body), which is also the first
//! with collection upserts, so older versions are refused.
//!
//! The answer is 200 even when subrequests failed, and a collection subrequest answers 200 with
//! one result per record even when records failed: the call succeeds only when every
//! subrequest answered 2xx and every record result says `success: true`; its remote id is the
//! parent's. Otherwise the error names the failing subrequest (its referenceId, method and
//! URL) with its status and, for a collection, the failing records by their place in the group
//! (`OrderItems.records[201]`) and key with their errors, and is retryable exactly when those
//! errors would be on their own. Rolled-back siblings, which only say `PROCESSING_HALTED` (or
//! `ALL_OR_NONE_OPERATION_ROLLED_BACK` for a record), are not the cause.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::classify::{self, kind_of, permanent, Answer, Secrets};
use super::oauth2::{Token, TokenCache};
use super::{
    check_op, BuildContext, BuildError, CallError, Connector, ConnectorKind, Reply, Request,
    SendProblem, SendShape,
};
use crate::connectors::http::OAuth2ClientCredentials;

/// The config has no `timeout`: a minute covers a 200-record tree on a busy org, and a call
/// that takes longer is better retried than waited for.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Error codes that mean "later", whatever the status: the org's API allowance (a 403) and a
/// record locked by another transaction (a 400).
const RETRYABLE_CODES: [&str; 2] = ["REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW"];

/// Salesforce's limit on sObject Collections (and query) subrequests in one `/composite` call.
const MAX_COLLECTIONS: usize = 5;

/// Salesforce's limit on records in one sObject Collections call.
const MAX_COLLECTION_RECORDS: usize = 200;

/// How many failed records an error message shows.
const SHOWN_RECORDS: usize = 5;

/// The referenceId of a composite's parent, whose id the children refer to.
const PARENT_REF: &str = "refParent";

/// What a subrequest says when it did nothing wrong itself but was rolled back with the others
/// (or could not run because one it refers to failed).
const HALTED: &str = "PROCESSING_HALTED";

/// The codes that only say a subrequest or record was rolled back with the others.
const ECHOES: [&str; 2] = [HALTED, "ALL_OR_NONE_OPERATION_ROLLED_BACK"];

/// The members of a composite child group.
const GROUP_MEMBERS: [&str; 4] = ["object", "key", "parent", "records"];

/// The first API version whose upsert answers an update with the record's id, which
/// `@{refParent.id}` needs.
const COMPOSITE_MIN_VERSION: f64 = 46.0;

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

const OPS: [&str; 6] = ["create", "upsert", "update", "delete", "tree", "composite"];

impl ConnectorKind for SalesforceConfig {
    fn kind(&self) -> &'static str {
        "salesforce"
    }
    fn operations(&self) -> Vec<String> {
        OPS.iter().map(|s| s.to_string()).collect()
    }
    fn build(&self, _name: &str, cx: &BuildContext) -> Result<Arc<dyn Connector>, BuildError> {
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
    /// Where a successful answer names the record's id.
    answered: Answered,
    /// For `upsert`: `Field = value`, to explain a 300.
    key: Option<String>,
}

/// How to read a successful answer.
#[derive(Debug, PartialEq)]
enum Answered {
    /// One record: the answer's `id`.
    Record,
    /// `tree`: the id given to the top-level record with this referenceId.
    Tree(Option<String>),
    /// `composite`: 200 says little; every subrequest and every record of its collection
    /// subrequests must have succeeded, and the id is the parent's.
    Composite(Vec<Chunk>),
}

/// A composite's collection subrequest, to name its records in messages.
#[derive(Debug, PartialEq)]
struct Chunk {
    reference: String,
    group: String,
    /// The place in the group's `records` of the chunk's first record.
    first: usize,
    /// The children's key field, and each record's value of it.
    key: String,
    values: Vec<String>,
}

impl Salesforce {
    async fn call_once(&self, request: Request<'_>) -> Result<Reply, CallError> {
        let plan = plan(request, &self.api_version)?;
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

/// `api_version` as the URL has it (`v60.0`): composite subrequests name their own URLs.
fn plan(request: Request<'_>, api_version: &str) -> Result<Plan, CallError> {
    let op = request.op;
    let object = request
        .object
        .ok_or_else(|| permanent(format!("salesforce `{op}` needs `object`")))?;
    let sobject = format!("sobjects/{}", classify::encode_segment(object));
    let mut plan = Plan {
        method: Method::POST,
        path: sobject.clone(),
        body: None,
        answered: Answered::Record,
        key: None,
    };
    match op {
        "create" => plan.body = Some(fields(request)?.clone().into()),
        "upsert" => {
            let key = request
                .key
                .ok_or_else(|| permanent("salesforce `upsert` needs `key`".into()))?;
            let fields = fields(request)?;
            let value = id_text(fields, key, "the upsert key", "the payload")?;
            plan.method = Method::PATCH;
            plan.path = upsert_path(object, key, &value);
            // The key is in the URL; repeating it in the body, or sending `Id`, is refused.
            plan.body = Some(without(fields, &[key, "Id"]).into());
            plan.key = Some(format!("{key} = {value}"));
        }
        "update" | "delete" => {
            let fields = fields(request)?;
            let id = id_text(fields, "Id", "the record id", "the payload")?;
            plan.path = format!("{sobject}/{}", classify::encode_segment(&id));
            if op == "update" {
                plan.method = Method::PATCH;
                plan.body = Some(without(fields, &["Id"]).into());
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
            plan.answered = Answered::Tree(
                records
                    .first()
                    .and_then(|r| r.pointer("/attributes/referenceId"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
            );
            plan.path = format!("composite/tree/{}", classify::encode_segment(object));
            plan.body = Some(serde_json::json!({ "records": records }));
        }
        "composite" => {
            let key = request
                .key
                .ok_or_else(|| permanent("salesforce `composite` needs `key`".into()))?;
            check_composite_version(api_version)?;
            plan.path = "composite".into();
            let (body, chunks) = composite_body(object, key, fields(request)?, api_version)?;
            plan.body = Some(body);
            plan.answered = Answered::Composite(chunks);
        }
        other => {
            return Err(permanent(format!(
                "salesforce has no operation `{other}` ({})",
                OPS.join(", ")
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

/// A field that goes into the URL: a string, or a number (external ids often are). `place`
/// names the record in messages.
fn id_text(
    fields: &Map<String, Value>,
    name: &str,
    role: &str,
    place: &str,
) -> Result<String, CallError> {
    match fields.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        None => Err(permanent(format!("{place} has no `{name}` ({role})"))),
        Some(other) => Err(permanent(format!(
            "`{name}` ({role}) in {place} is {}, not a non-empty string or a number",
            kind_of(other)
        ))),
    }
}

/// The fields minus `drop`, compared without case: Salesforce field names ignore case.
fn without(fields: &Map<String, Value>, drop: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .filter(|(name, _)| !drop.iter().any(|d| d.eq_ignore_ascii_case(name)))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
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

/// Refuses versions whose upsert answers an update without the record's id: there the
/// children's `@{refParent.id}` would find nothing and every redelivery would fail.
fn check_composite_version(api_version: &str) -> Result<(), CallError> {
    // `60.0` and `v60.0` both name the version.
    let number = api_version.trim_start_matches('v').parse::<f64>();
    match number {
        Ok(n) if n < COMPOSITE_MIN_VERSION => Err(permanent(format!(
            "salesforce `composite` needs api_version {COMPOSITE_MIN_VERSION:.1} or later, \
             not {api_version}: older versions answer an upsert that updates with no id for \
             the children to refer to"
        ))),
        // A version that does not read as a number is Salesforce's to refuse.
        _ => Ok(()),
    }
}

/// A composite child group as the payload gives it, checked.
struct Group<'p> {
    name: &'p str,
    object: &'p str,
    key: &'p str,
    parent: &'p str,
    records: &'p [Value],
}

/// The `/composite` request for a parent and its child groups (see the module doc), and its
/// collection subrequests.
fn composite_body(
    object: &str,
    key: &str,
    fields: &Map<String, Value>,
    api_version: &str,
) -> Result<(Value, Vec<Chunk>), CallError> {
    let mut parent = Map::new();
    let mut groups = Vec::new();
    for (name, value) in fields {
        if is_group(value) {
            groups.push(group(name, value)?);
        } else {
            parent.insert(name.clone(), value.clone());
        }
    }
    let chunks_of = |g: &Group<'_>| g.records.len().div_ceil(MAX_COLLECTION_RECORDS);
    let collections: usize = groups.iter().map(chunks_of).sum();
    if collections > MAX_COLLECTIONS {
        let children: usize = groups.iter().map(|g| g.records.len()).sum();
        let per_group = groups
            .iter()
            .filter(|g| !g.records.is_empty())
            .map(|g| format!("{} {} in {}", g.name, g.records.len(), chunks_of(g)))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(permanent(format!(
            "salesforce `composite`: the {object}'s {children} children need {collections} \
             collection subrequests of at most {MAX_COLLECTION_RECORDS} records ({per_group}), \
             and Salesforce allows {MAX_COLLECTIONS} in one composite: at most {} children",
            MAX_COLLECTIONS * MAX_COLLECTION_RECORDS
        )));
    }

    let value = id_text(&parent, key, "the parent's upsert key", "the payload")?;
    let mut subrequests = vec![serde_json::json!({
        "method": "PATCH",
        "url": format!("/services/data/{api_version}/{}", upsert_path(object, key, &value)),
        "referenceId": PARENT_REF,
        "body": without(&parent, &[key, "Id", "attributes"]),
    })];
    let mut chunks = Vec::new();
    for group in &groups {
        let mut records = Vec::with_capacity(group.records.len());
        let mut values = Vec::with_capacity(group.records.len());
        for (i, record) in group.records.iter().enumerate() {
            let (record, value) = child_record(object, group, i, record)?;
            records.push(record);
            values.push(value);
        }
        for (n, (records, values)) in records
            .chunks(MAX_COLLECTION_RECORDS)
            .zip(values.chunks(MAX_COLLECTION_RECORDS))
            .enumerate()
        {
            let reference = format!("ref{}_{n}", group.name);
            subrequests.push(serde_json::json!({
                "method": "PATCH",
                "url": format!(
                    "/services/data/{api_version}/composite/sobjects/{}/{}",
                    classify::encode_segment(group.object),
                    classify::encode_segment(group.key)
                ),
                "referenceId": reference,
                "body": {"allOrNone": true, "records": records},
            }));
            chunks.push(Chunk {
                reference,
                group: group.name.to_string(),
                first: n * MAX_COLLECTION_RECORDS,
                key: group.key.to_string(),
                values: values.to_vec(),
            });
        }
    }
    Ok((
        serde_json::json!({ "allOrNone": true, "compositeRequest": subrequests }),
        chunks,
    ))
}

/// `records[i]` of a group checked and made a collection record: `attributes.type`, its fields
/// with its key but without `Id`, and the parent's field referring to the parent. With its key
/// value, for messages.
fn child_record(
    object: &str,
    group: &Group<'_>,
    i: usize,
    record: &Value,
) -> Result<(Value, String), CallError> {
    let place = format!("`{}.records[{i}]`", group.name);
    let Value::Object(record) = record else {
        return Err(permanent(format!(
            "salesforce `composite`: {place} is {}, not an object of fields",
            kind_of(record)
        )));
    };
    let value = id_text(record, group.key, "its upsert key", &place)?;
    for (name, field) in record {
        if name.eq_ignore_ascii_case(group.parent) {
            return Err(permanent(format!(
                "salesforce `composite`: {place} sets `{name}`, which the call fills in \
                 with the {object}'s id (`{}.parent`)",
                group.name
            )));
        }
        if is_group(field) {
            return Err(permanent(format!(
                "salesforce `composite`: {place} has children of its own under \
                 `{name}`: only one level (a parent and its children) is supported"
            )));
        }
    }
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        serde_json::json!({ "type": group.object }),
    );
    out.extend(without(record, &["Id", "attributes"]));
    out.insert(group.parent.into(), format!("@{{{PARENT_REF}.id}}").into());
    Ok((out.into(), value))
}

/// A child group is an object with `records`, as the children of a tree record are.
fn is_group(value: &Value) -> bool {
    value.get("records").is_some()
}

fn group<'p>(name: &'p str, value: &'p Value) -> Result<Group<'p>, CallError> {
    let problem = |what: String| permanent(format!("salesforce `composite`: {what}"));
    // The name goes into referenceIds, which allow only these.
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(problem(format!(
            "the child group `{name}` must be named with letters, digits and `_` only (it \
             names the subrequests)"
        )));
    }
    let Value::Object(members) = value else {
        return Err(problem(format!("`{name}` is {}", kind_of(value))));
    };
    if let Some(other) = members
        .keys()
        .find(|m| !GROUP_MEMBERS.contains(&m.as_str()))
    {
        return Err(problem(format!(
            "the child group `{name}` has `{other}`: a group holds only {}",
            GROUP_MEMBERS.join(", ")
        )));
    }
    let text = |member: &str, role: &str| match members.get(member) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
        Some(other) => Err(problem(format!(
            "`{name}.{member}` ({role}) is {}, not a non-empty string",
            kind_of(other)
        ))),
        None => Err(problem(format!(
            "the child group `{name}` has no `{name}.{member}` ({role})"
        ))),
    };
    let object = text("object", "the children's sObject, e.g. OrderItem")?;
    let key = text(
        "key",
        "the children's external id field, e.g. External_Id__c",
    )?;
    let parent = text(
        "parent",
        "the children's field for the parent's id, e.g. OrderId",
    )?;
    let records = match members.get("records") {
        Some(Value::Array(records)) => records.as_slice(),
        Some(other) => {
            return Err(problem(format!(
                "`{name}.records` is {}, not an array of records",
                kind_of(other)
            )))
        }
        None => &[],
    };
    Ok(Group {
        name,
        object,
        key,
        parent,
        records,
    })
}

/// Below `services/data/{version}/`: the record of `object` whose `key` field is `value`.
fn upsert_path(object: &str, key: &str, value: &str) -> String {
    format!(
        "sobjects/{}/{}/{}",
        classify::encode_segment(object),
        classify::encode_segment(key),
        classify::encode_segment(value)
    )
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
    let remote_id = match &plan.answered {
        Answered::Record => classify::remote_id(&answer.body),
        Answered::Tree(reference) => reference
            .as_deref()
            .and_then(|reference| tree_id(&answer.body, reference)),
        Answered::Composite(chunks) => composite_id(plan, chunks, &answer, what)?,
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

/// The parent's id from a composite answer whose subrequests and collection records all
/// succeeded; the error of the one that caused the failure otherwise.
fn composite_id(
    plan: &Plan,
    chunks: &[Chunk],
    answer: &Answer,
    what: &str,
) -> Result<Option<String>, CallError> {
    let Some(results) = answer
        .body
        .get("compositeResponse")
        .and_then(Value::as_array)
    else {
        let detail = format!(
            "a composite answer without `compositeResponse`: {}",
            classify::body_text(&answer.body)
        );
        return Err(classify::failure(answer, what, false, &detail));
    };
    let chunk_of = |result: &Value| {
        let reference = sub_reference(result);
        chunks.iter().find(|c| c.reference == reference)
    };
    let failed: Vec<&Value> = results
        .iter()
        .filter(|r| !sub_succeeded(r, chunk_of(r)))
        .collect();
    if failed.is_empty() {
        return Ok(results
            .iter()
            .find(|r| sub_reference(r) == PARENT_REF)
            .and_then(|r| r.get("body"))
            .and_then(classify::remote_id));
    }
    // With allOrNone every other subrequest reports PROCESSING_HALTED (every other record of a
    // collection ALL_OR_NONE_OPERATION_ROLLED_BACK), which says nothing about the cause.
    match failed.iter().find(|r| !echo_only(r, chunk_of(r))) {
        Some(cause) => Err(match (chunk_of(cause), records_answer(cause)) {
            (Some(chunk), Some(records)) => {
                collection_failure(plan, answer, what, cause, chunk, records)
            }
            _ => subrequest_failure(plan, answer, what, cause),
        }),
        None => Err(all_halted(plan, answer, what, &failed)),
    }
}

/// A 2xx answer; for a collection subrequest also a result per record, each a success.
fn sub_succeeded(result: &Value, chunk: Option<&Chunk>) -> bool {
    if !sub_status(result).is_some_and(|s| s.is_success()) {
        return false;
    }
    let Some(chunk) = chunk else {
        return true;
    };
    records_answer(result).is_some_and(|records| {
        records.len() == chunk.values.len()
            && records
                .iter()
                .all(|r| r.get("success").and_then(Value::as_bool) == Some(true))
    })
}

/// A collection subrequest's 2xx answer: one result per record.
fn records_answer(result: &Value) -> Option<&Vec<Value>> {
    if !sub_status(result).is_some_and(|s| s.is_success()) {
        return None;
    }
    result.get("body").and_then(Value::as_array)
}

/// The records of a collection answer that did not succeed: their place in the answer and
/// their errors.
fn failed_records(records: &[Value]) -> impl Iterator<Item = (usize, &Value)> {
    records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.get("success").and_then(Value::as_bool) != Some(true))
        .map(|(j, r)| (j, r.get("errors").unwrap_or(&Value::Null)))
}

/// A failed subrequest whose errors (or whose failed records' errors) only say it was rolled
/// back with the others.
fn echo_only(result: &Value, chunk: Option<&Chunk>) -> bool {
    match (chunk, records_answer(result)) {
        (Some(_), Some(records)) => {
            let mut failed = failed_records(records).peekable();
            failed.peek().is_some() && failed.all(|(_, errors)| halted_only(errors))
        }
        _ => halted_only(result.get("body").unwrap_or(&Value::Null)),
    }
}

/// A collection subrequest answered 2xx but records failed: the records that caused it, by
/// their place in the group and their key, with their errors, classified as those errors
/// would be on their own.
fn collection_failure(
    plan: &Plan,
    answer: &Answer,
    what: &str,
    cause: &Value,
    chunk: &Chunk,
    records: &[Value],
) -> CallError {
    let status = status_text(sub_status(cause));
    let name = sub_name(plan, &chunk.reference);
    if records.len() != chunk.values.len() {
        let detail = format!(
            "subrequest {name} answered {status} with {} results for {} records: {}",
            records.len(),
            chunk.values.len(),
            classify::body_text(cause.get("body").unwrap_or(&Value::Null))
        );
        return classify::failure(answer, what, false, &detail);
    }
    let causes: Vec<(usize, &Value)> = failed_records(records)
        .filter(|(_, errors)| !halted_only(errors))
        .collect();
    let retryable = causes.iter().any(|(_, errors)| has_retryable_code(errors));
    let mut shown: Vec<String> = causes
        .iter()
        .take(SHOWN_RECORDS)
        .map(|(j, errors)| {
            format!(
                "`{}.records[{}]` ({} = {}): {}",
                chunk.group,
                chunk.first + j,
                chunk.key,
                chunk.values.get(*j).map_or("?", String::as_str),
                classify::body_text(errors)
            )
        })
        .collect();
    if causes.len() > SHOWN_RECORDS {
        shown.push(format!("and {} more records", causes.len() - SHOWN_RECORDS));
    }
    let detail = format!(
        "subrequest {name} answered {status}, all rolled back: {}",
        shown.join("; ")
    );
    classify::failure(answer, what, retryable, &detail)
}

fn sub_status(result: &Value) -> Option<StatusCode> {
    let code = result.get("httpStatusCode")?.as_u64()?;
    StatusCode::from_u16(u16::try_from(code).ok()?).ok()
}

fn sub_reference(result: &Value) -> &str {
    result
        .get("referenceId")
        .and_then(Value::as_str)
        .unwrap_or("(no referenceId)")
}

/// `` `refParent` (PATCH /services/data/…/sobjects/Order/External_Id__c/BC-250) ``: the
/// subrequest as the request sent it, so the message names the parent's key (a collection's
/// records are named apart, by `collection_failure`).
fn sub_name(plan: &Plan, reference: &str) -> String {
    let sent = plan
        .body
        .as_ref()
        .and_then(|b| b.get("compositeRequest"))
        .and_then(Value::as_array)
        .and_then(|subs| {
            subs.iter()
                .find(|s| s.get("referenceId").and_then(Value::as_str) == Some(reference))
        });
    let text = |field: &str| {
        sent.and_then(|s| s.get(field))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    match sent {
        Some(_) => format!("`{reference}` ({} {})", text("method"), text("url")),
        None => format!("`{reference}`"),
    }
}

/// Errors that only say the subrequest or record was rolled back with the others.
fn halted_only(errors: &Value) -> bool {
    let codes = error_codes(errors);
    !codes.is_empty() && codes.iter().all(|c| ECHOES.contains(c))
}

/// The failing subrequest's error, classified as the same error would be on its own call:
/// by its status and its error codes, with its error array in the message.
fn subrequest_failure(plan: &Plan, answer: &Answer, what: &str, cause: &Value) -> CallError {
    let body = cause.get("body").unwrap_or(&Value::Null);
    let status = sub_status(cause);
    let retryable = status.is_some_and(classify::is_retryable_status) || has_retryable_code(body);
    let detail = format!(
        "subrequest {} answered {}, all rolled back: {}",
        sub_name(plan, sub_reference(cause)),
        status_text(status),
        classify::body_text(body)
    );
    classify::failure(answer, what, retryable, &detail)
}

fn status_text(status: Option<StatusCode>) -> String {
    status.map_or_else(|| "no status".into(), |s| s.to_string())
}

/// Every failed subrequest says PROCESSING_HALTED: one of them could not run (a reference to
/// a result that has no such field), the rest were rolled back. Their messages tell which, so
/// all are shown, those with the same error together.
fn all_halted(plan: &Plan, answer: &Answer, what: &str, failed: &[&Value]) -> CallError {
    let mut by_error: Vec<(String, Vec<String>)> = Vec::new();
    for result in failed {
        let body = result.get("body").unwrap_or(&Value::Null);
        // A collection's records all say the same; one of them is enough.
        let errors = records_answer(result)
            .and_then(|records| failed_records(records).next())
            .map_or(body, |(_, errors)| errors);
        let error = format!(
            "{} {}",
            status_text(sub_status(result)),
            classify::body_text(errors)
        );
        let name = sub_name(plan, sub_reference(result));
        match by_error.iter_mut().find(|(e, _)| *e == error) {
            Some((_, names)) => names.push(name),
            None => by_error.push((error, vec![name])),
        }
    }
    let detail = by_error
        .iter()
        .map(|(error, names)| format!("{}: {error}", names.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    classify::failure(
        answer,
        what,
        false,
        &format!("every failed subrequest says {HALTED}, all rolled back: {detail}"),
    )
}

/// Retryable when the status says so (429, 5xx) or any error code does; the message carries
/// the remote errors as sent (`errorCode` at the top level, `statusCode` per tree record).
fn failure(answer: &Answer, what: &str) -> CallError {
    let retryable =
        classify::is_retryable_status(answer.status) || has_retryable_code(&answer.body);
    classify::failure(answer, what, retryable, &classify::body_text(&answer.body))
}

/// Salesforce's own "try again later" among the codes of an error answer.
fn has_retryable_code(errors: &Value) -> bool {
    error_codes(errors)
        .iter()
        .any(|code| RETRYABLE_CODES.contains(code))
}

/// The codes in an error answer: a top-level error array, a collection's per-record results,
/// or a tree's per-record errors.
fn error_codes(body: &Value) -> Vec<&str> {
    fn code(e: &Value) -> Option<&str> {
        e.get("errorCode")
            .or_else(|| e.get("statusCode"))
            .and_then(Value::as_str)
    }
    match body {
        Value::Array(items) => items
            .iter()
            .flat_map(|item| match item.get("errors").and_then(Value::as_array) {
                Some(errors) => errors.iter().filter_map(code).collect(),
                None => code(item).into_iter().collect::<Vec<_>>(),
            })
            .collect(),
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

    const V: &str = "v60.0";

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
        let plan = plan(request("upsert", Some("ExternalId__c"), &payload), V).unwrap();
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
        let plan = plan(request("tree", None, &payload), V).unwrap();
        assert_eq!(plan.path, "composite/tree/Order");
        assert_eq!(plan.answered, Answered::Tree(Some("crossdockRef1".into())));
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
            let plan = plan(request("tree", None, &payload), V).unwrap();
            assert_eq!(plan.body, Some(json!({"records": [record.clone()]})));
            assert_eq!(plan.answered, Answered::Tree(Some("o1".into())));
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

    fn order(items: Value) -> Value {
        json!({
            "External_Id__c": "BC-ORDER/250",
            "Id": "ignored",
            "attributes": {"type": "Order"},
            "Status": "Draft",
            "OrderItems": {"object": "OrderItem", "key": "External_Id__c", "parent": "OrderId",
                           "records": items}
        })
    }

    fn composite_plan(payload: &Value) -> Result<Plan, CallError> {
        plan(request("composite", Some("External_Id__c"), payload), V)
    }

    fn refusal(result: Result<Plan, CallError>) -> String {
        match result {
            Err(CallError::Permanent { message }) => message,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn composite_upserts_the_parent_then_the_children_in_collections_pointing_at_it() {
        let payload = order(json!([
            {"External_Id__c": "BC-ORDER/250-1", "Quantity": 2, "attributes": {"type": "OrderItem"}},
            {"External_Id__c": 7, "Quantity": 1, "Id": "802x"}
        ]));
        let plan = composite_plan(&payload).unwrap();
        assert_eq!(
            (plan.method, plan.path.as_str()),
            (Method::POST, "composite")
        );
        assert_eq!(
            plan.answered,
            Answered::Composite(vec![Chunk {
                reference: "refOrderItems_0".into(),
                group: "OrderItems".into(),
                first: 0,
                key: "External_Id__c".into(),
                values: vec!["BC-ORDER/250-1".into(), "7".into()],
            }])
        );
        assert_eq!(
            plan.body.unwrap(),
            json!({"allOrNone": true, "compositeRequest": [
                {"method": "PATCH", "referenceId": "refParent",
                 "url": "/services/data/v60.0/sobjects/Order/External_Id__c/BC-ORDER%2F250",
                 "body": {"Status": "Draft"}},
                {"method": "PATCH", "referenceId": "refOrderItems_0",
                 "url": "/services/data/v60.0/composite/sobjects/OrderItem/External_Id__c",
                 "body": {"allOrNone": true, "records": [
                     {"attributes": {"type": "OrderItem"}, "External_Id__c": "BC-ORDER/250-1",
                      "Quantity": 2, "OrderId": "@{refParent.id}"},
                     {"attributes": {"type": "OrderItem"}, "External_Id__c": 7,
                      "Quantity": 1, "OrderId": "@{refParent.id}"}
                 ]}}
            ]})
        );
        // No children is an Order alone.
        let plan = composite_plan(&order(json!([]))).unwrap();
        assert_eq!(plan.answered, Answered::Composite(vec![]));
        assert_eq!(
            plan.body.unwrap()["compositeRequest"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn composite_payload_mistakes_name_the_field() {
        let item = json!({"External_Id__c": "I1", "Quantity": 1});
        let cases = [
            (json!({"Status": "Draft"}), "the payload has no `External_Id__c`"),
            (
                json!({"External_Id__c": "O", "OrderItems": {"records": [item]}}),
                "no `OrderItems.object`",
            ),
            (
                json!({"External_Id__c": "O", "OrderItems": {"object": "OrderItem",
                    "key": "External_Id__c", "records": [item]}}),
                "no `OrderItems.parent`",
            ),
            (
                json!({"External_Id__c": "O", "OrderItems": {"object": "OrderItem",
                    "key": 5, "parent": "OrderId", "records": [item]}}),
                "`OrderItems.key` (the children's external id field, e.g. External_Id__c) is a number",
            ),
            (
                json!({"External_Id__c": "O", "OrderItems": {"object": "OrderItem",
                    "key": "External_Id__c", "parent": "OrderId", "type": "x", "records": []}}),
                "`OrderItems` has `type`",
            ),
            (
                json!({"External_Id__c": "O", "OrderItems": {"object": "OrderItem",
                    "key": "External_Id__c", "parent": "OrderId", "records": {"a": 1}}}),
                "`OrderItems.records` is an object",
            ),
            (
                json!({"External_Id__c": "O", "Order Items": {"records": []}}),
                "`Order Items` must be named with letters, digits and `_`",
            ),
            (order(json!([{"Quantity": 1}])), "`OrderItems.records[0]` has no `External_Id__c`"),
            (order(json!(["x"])), "`OrderItems.records[0]` is a string"),
            (
                order(json!([item, {"External_Id__c": "I2", "orderid": "801"}])),
                "`OrderItems.records[1]` sets `orderid`",
            ),
            (
                order(json!([{"External_Id__c": "I2", "Subs": {"records": []}}])),
                "children of its own under `Subs`",
            ),
        ];
        for (payload, expected) in cases {
            let message = refusal(composite_plan(&payload));
            assert!(message.contains(expected), "{expected}\n{message}");
        }
        let message = refusal(plan(request("composite", None, &order(json!([]))), V));
        assert!(message.contains("needs `key`"), "{message}");
        let message = refusal(plan(
            request("composite", Some("External_Id__c"), &order(json!([]))),
            "v45.0",
        ));
        assert!(message.contains("46.0 or later"), "{message}");
    }

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

    fn items(n: usize) -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({"External_Id__c": format!("I{i}"), "Quantity": 1}))
                .collect(),
        )
    }

    #[test]
    fn composite_chunks_a_group_by_two_hundred_and_stops_at_five_collections() {
        let plan = composite_plan(&order(items(450))).unwrap();
        let body = plan.body.unwrap();
        let subs = body["compositeRequest"].as_array().unwrap();
        let shape: Vec<(&str, usize)> = subs[1..]
            .iter()
            .map(|s| {
                (
                    s["referenceId"].as_str().unwrap(),
                    s["body"]["records"].as_array().unwrap().len(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("refOrderItems_0", 200),
                ("refOrderItems_1", 200),
                ("refOrderItems_2", 50)
            ]
        );
        assert_eq!(subs[2]["body"]["records"][0]["External_Id__c"], "I200");
        let Answered::Composite(chunks) = plan.answered else {
            panic!("{:?}", plan.answered)
        };
        assert_eq!(chunks[2].first, 400);

        assert!(composite_plan(&order(items(1000))).is_ok());
        let message = refusal(composite_plan(&order(items(1001))));
        assert!(
            message.contains("1001 children need 6 collection subrequests")
                && message.contains("allows 5")
                && message.contains("at most 1000 children"),
            "{message}"
        );
        // 802 children fit in 5 chunks of one group, but not in two groups' 6.
        let mut two = order(items(801));
        two["Others"] = json!({"object": "OrderItem", "key": "External_Id__c",
                               "parent": "OrderId", "records": items(1)});
        let message = refusal(composite_plan(&two));
        assert!(
            message.contains("OrderItems 801 in 5, Others 1 in 1"),
            "{message}"
        );
    }

    fn answer(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            retry_after: None,
            body,
        }
    }

    fn sub(reference: &str, status: u16, body: Value) -> Value {
        json!({"referenceId": reference, "httpStatusCode": status, "httpHeaders": {}, "body": body})
    }

    fn halted() -> Value {
        json!([{"errorCode": "PROCESSING_HALTED",
                "message": "The transaction was rolled back since another operation in the same transaction failed."}])
    }

    fn composite_reply(subs: Vec<Value>) -> Result<Reply, CallError> {
        let payload = order(items(202));
        let plan = composite_plan(&payload).unwrap();
        reply(&plan, answer(json!({"compositeResponse": subs})), "POST x")
    }

    fn saved(n: usize, created: bool) -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({"id": format!("802{i}"), "success": true, "errors": [], "created": created}))
                .collect(),
        )
    }

    fn rolled_back(n: usize, failed: &[(usize, Value)]) -> Value {
        Value::Array(
            (0..n)
                .map(|i| {
                    let errors = failed.iter().find(|(j, _)| *j == i).map_or_else(
                        || json!([{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                   "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
                                   "fields": []}]),
                        |(_, e)| e.clone(),
                    );
                    json!({"id": null, "success": false, "errors": errors, "created": false})
                })
                .collect(),
        )
    }

    #[test]
    fn a_composite_succeeds_when_every_subrequest_and_record_did_and_carries_the_parents_id() {
        let parent = json!({"id": "801A", "success": true, "created": false});
        let reply = composite_reply(vec![
            sub("refParent", 200, parent.clone()),
            sub("refOrderItems_0", 200, saved(200, true)),
            sub("refOrderItems_1", 200, saved(2, false)),
        ])
        .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.remote_id.as_deref(), Some("801A"));

        // A 200 with fewer results than records is not a success.
        let message = match composite_reply(vec![
            sub("refParent", 200, parent),
            sub("refOrderItems_0", 200, saved(200, true)),
            sub("refOrderItems_1", 200, saved(1, false)),
        ]) {
            Err(CallError::Permanent { message }) => message,
            other => panic!("{other:?}"),
        };
        assert!(
            message.contains("with 1 results for 2 records"),
            "{message}"
        );
    }

    #[test]
    fn a_failed_subrequest_is_classified_by_its_own_error_not_the_rollback_echo() {
        let invalid = json!([{"errorCode": "INVALID_FIELD", "message": "No such column 'Foo__c'"}]);
        let err = composite_reply(vec![
            sub("refParent", 400, halted()),
            sub("refOrderItems_0", 400, halted()),
            sub("refOrderItems_1", 400, invalid),
        ])
        .unwrap_err();
        let CallError::Permanent { message } = err else {
            panic!("expected permanent: {err:?}")
        };
        assert!(message.starts_with("POST x: 200 OK: subrequest `refOrderItems_1` (PATCH /services/data/v60.0/composite/sobjects/OrderItem/External_Id__c) answered 400 Bad Request"), "{message}");
        assert!(message.contains("No such column 'Foo__c'"), "{message}");
        assert!(!message.contains("PROCESSING_HALTED"), "{message}");

        for (status, code) in [(403, "REQUEST_LIMIT_EXCEEDED"), (400, "UNABLE_TO_LOCK_ROW")] {
            let err = composite_reply(vec![
                sub(
                    "refParent",
                    status,
                    json!([{"errorCode": code, "message": "m"}]),
                ),
                sub("refOrderItems_0", 400, halted()),
                sub("refOrderItems_1", 400, halted()),
            ])
            .unwrap_err();
            let CallError::Retryable { message, .. } = err else {
                panic!("{code} should be retryable: {err:?}")
            };
            assert!(
                message.contains("`refParent`") && message.contains(code),
                "{message}"
            );
        }
    }

    #[test]
    fn a_failed_record_in_a_collection_is_named_by_its_place_in_the_group() {
        let bad = json!([{"statusCode": "INVALID_FIELD", "message": "SKU NO-SUCH not found",
                          "fields": []}]);
        let err = composite_reply(vec![
            sub("refParent", 400, halted()),
            sub("refOrderItems_0", 400, halted()),
            sub("refOrderItems_1", 200, rolled_back(2, &[(1, bad)])),
        ])
        .unwrap_err();
        let CallError::Permanent { message } = err else {
            panic!("expected permanent: {err:?}")
        };
        assert!(
            message.contains("subrequest `refOrderItems_1` (PATCH /services/data/v60.0/composite/sobjects/OrderItem/External_Id__c) answered 200 OK, all rolled back: `OrderItems.records[201]` (External_Id__c = I201): "),
            "{message}"
        );
        assert!(message.contains("SKU NO-SUCH not found"), "{message}");
        assert!(!message.contains("ROLLED_BACK"), "{message}");
        assert!(!message.contains("PROCESSING_HALTED"), "{message}");

        // A locked row or the limit on a record is retryable, as on its own.
        for code in ["UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED"] {
            let err = composite_reply(vec![
                sub("refParent", 400, halted()),
                sub(
                    "refOrderItems_0",
                    200,
                    rolled_back(200, &[(3, json!([{"statusCode": code, "message": "m"}]))]),
                ),
                sub("refOrderItems_1", 400, halted()),
            ])
            .unwrap_err();
            let CallError::Retryable { message, .. } = err else {
                panic!("{code} should be retryable: {err:?}")
            };
            assert!(
                message.contains("`OrderItems.records[3]` (External_Id__c = I3)")
                    && message.contains(code),
                "{message}"
            );
        }

        // Many failed records: a few are shown.
        let failed: Vec<(usize, Value)> = (0..200)
            .map(|i| (i, json!([{"statusCode": "INVALID_FIELD", "message": "m"}])))
            .collect();
        let err = composite_reply(vec![
            sub("refParent", 400, halted()),
            sub("refOrderItems_0", 200, rolled_back(200, &failed)),
            sub("refOrderItems_1", 400, halted()),
        ])
        .unwrap_err();
        let CallError::Permanent { message } = err else {
            panic!("expected permanent: {err:?}")
        };
        assert!(message.contains("`OrderItems.records[4]`"), "{message}");
        assert!(!message.contains("`OrderItems.records[5]`"), "{message}");
        assert!(message.contains("and 195 more records"), "{message}");
    }

    #[test]
    fn when_every_subrequest_is_halted_all_are_shown_grouped() {
        let unresolved = json!([{"errorCode": "PROCESSING_HALTED",
            "message": "Invalid reference specified. No value for refParent.id found in refParent."}]);
        let err = composite_reply(vec![
            sub("refParent", 400, halted()),
            sub("refOrderItems_0", 400, unresolved),
            sub("refOrderItems_1", 200, rolled_back(2, &[])),
        ])
        .unwrap_err();
        let CallError::Permanent { message } = err else {
            panic!("expected permanent: {err:?}")
        };
        assert!(message.contains("No value for refParent.id"), "{message}");
        assert!(
            message.contains("`refParent` (PATCH /services/data/v60.0/sobjects/Order/External_Id__c/BC-ORDER%2F250): 400 Bad Request"),
            "{message}"
        );
        assert!(
            message.contains("`refOrderItems_1` (PATCH /services/data/v60.0/composite/sobjects/OrderItem/External_Id__c): 200 OK [{\"fields\":[],\"message\":\"Record rolled back"),
            "{message}"
        );
    }

    #[test]
    fn a_composite_answer_without_results_is_permanent() {
        let payload = order(json!([]));
        let plan = composite_plan(&payload).unwrap();
        let err = reply(&plan, answer(json!({"weird": true})), "POST x").unwrap_err();
        assert!(
            matches!(err, CallError::Permanent { ref message } if message.contains("without `compositeResponse`")),
            "{err:?}"
        );
    }
}
