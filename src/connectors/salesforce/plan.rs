//! Planning one Salesforce call: the REST method, the path below
//! `services/data/{version}/` and the JSON body for each operation, worked out from the
//! request before any token or URL is needed, and how the answer will name the record's id.
//! Payload mistakes are permanent errors found here, before any call.

use reqwest::Method;
use serde_json::{Map, Value};

use super::composite::composite_body;
use super::OPS;
use crate::connectors::classify::{self, kind_of, permanent};
use crate::connectors::{CallError, Request};

/// The first API version whose upsert answers an update with the record's id, which
/// `@{refParent.id}` needs.
const COMPOSITE_MIN_VERSION: f64 = 46.0;

/// One call worked out from the request, before any token or URL is needed.
#[derive(Debug, PartialEq)]
pub(super) struct Plan {
    pub(super) method: Method,
    /// Below `{instance}/services/data/{version}/`, segments already encoded.
    pub(super) path: String,
    pub(super) body: Option<Value>,
    /// Where a successful answer names the record's id.
    pub(super) answered: Answered,
    /// For `upsert`: `Field = value`, to explain a 300.
    pub(super) key: Option<String>,
}

/// How to read a successful answer.
#[derive(Debug, PartialEq)]
pub(super) enum Answered {
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
pub(super) struct Chunk {
    pub(super) reference: String,
    pub(super) group: String,
    /// The place in the group's `records` of the chunk's first record.
    pub(super) first: usize,
    /// The children's key field, and each record's value of it.
    pub(super) key: String,
    pub(super) values: Vec<String>,
}

impl Plan {
    /// `GET sobjects/{object}/describe`, for `schema pull`.
    pub(super) fn describe(object: &str) -> Plan {
        Plan {
            method: Method::GET,
            path: format!("sobjects/{}/describe", classify::encode_segment(object)),
            body: None,
            answered: Answered::Record,
            key: None,
        }
    }
}

/// `api_version` as the URL has it (`v60.0`): composite subrequests name their own URLs.
pub(super) fn plan(request: Request<'_>, api_version: &str) -> Result<Plan, CallError> {
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
pub(super) fn id_text(
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
pub(super) fn without(fields: &Map<String, Value>, drop: &[&str]) -> Map<String, Value> {
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
pub(super) fn check_composite_version(api_version: &str) -> Result<(), CallError> {
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

/// Below `services/data/{version}/`: the record of `object` whose `key` field is `value`.
pub(super) fn upsert_path(object: &str, key: &str, value: &str) -> String {
    format!(
        "sobjects/{}/{}/{}",
        classify::encode_segment(object),
        classify::encode_segment(key),
        classify::encode_segment(value)
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{request, V};
    use super::*;
    use serde_json::json;

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
}
