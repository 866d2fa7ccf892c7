//! Reading Salesforce's answers: the record's id from each success shape, and errors
//! classified by their `errorCode` (`statusCode` inside tree and collection results) rather
//! than by status alone, because Salesforce signals its API limit with a 403 and a lock
//! conflict with a 400. A composite answer is 200 even when subrequests failed: the cause is
//! found among them, rolled-back siblings set aside.

use reqwest::StatusCode;
use serde_json::Value;

use super::composite::PARENT_REF;
use super::plan::{Answered, Chunk, Plan};
use crate::connectors::classify::{self, Answer};
use crate::connectors::{CallError, Reply};

/// Error codes that mean "later", whatever the status: the org's API allowance (a 403) and a
/// record locked by another transaction (a 400).
const RETRYABLE_CODES: [&str; 2] = ["REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW"];

/// How many failed records an error message shows.
const SHOWN_RECORDS: usize = 5;

/// What a subrequest says when it did nothing wrong itself but was rolled back with the others
/// (or could not run because one it refers to failed).
const HALTED: &str = "PROCESSING_HALTED";

/// The codes that only say a subrequest or record was rolled back with the others.
const ECHOES: [&str; 2] = [HALTED, "ALL_OR_NONE_OPERATION_ROLLED_BACK"];

pub(super) fn reply(plan: &Plan, answer: Answer, what: &str) -> Result<Reply, CallError> {
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
pub(super) fn failure(answer: &Answer, what: &str) -> CallError {
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
    use super::super::fixtures::{composite_plan, items, order};
    use super::*;
    use serde_json::json;

    #[test]
    fn error_codes_come_from_arrays_and_tree_results() {
        let top = json!([{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "m"}]);
        assert_eq!(error_codes(&top), vec!["UNABLE_TO_LOCK_ROW"]);
        let tree = json!({"hasErrors": true, "results": [{"referenceId": "r",
            "errors": [{"statusCode": "INVALID_EMAIL_ADDRESS", "message": "m", "fields": ["Email"]}]}]});
        assert_eq!(error_codes(&tree), vec!["INVALID_EMAIL_ADDRESS"]);
        assert!(error_codes(&json!("text")).is_empty());
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
