//! Building the `/composite` request of the `composite` operation: a parent and its child
//! groups checked, the children chunked into sObject Collections upserts that refer to the
//! parent, within Salesforce's limits. Reading its answer is `answer`'s.
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

use serde_json::{Map, Value};

use super::plan::{id_text, upsert_path, without, Chunk};
use crate::connectors::classify::{self, kind_of, permanent};
use crate::connectors::CallError;

/// Salesforce's limit on sObject Collections (and query) subrequests in one `/composite` call.
const MAX_COLLECTIONS: usize = 5;

/// Salesforce's limit on records in one sObject Collections call.
const MAX_COLLECTION_RECORDS: usize = 200;

/// The referenceId of a composite's parent, whose id the children refer to.
pub(super) const PARENT_REF: &str = "refParent";

/// The members of a composite child group.
const GROUP_MEMBERS: [&str; 4] = ["object", "key", "parent", "records"];

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
pub(super) fn composite_body(
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::{composite_plan, items, order, refusal, request, V};
    use super::super::plan::{plan, Answered};
    use super::*;
    use reqwest::Method;
    use serde_json::json;

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
}
