//! An sObject's describe answer (`GET /services/data/vXX.X/sobjects/{Object}/describe`): the
//! part `check` uses, trimming a whole answer down to that part for `schema pull`, and judging
//! one written field against it.
//!
//! Salesforce matches field names without regard to case, so this does too; the help of an
//! unknown name gives the name as Salesforce spells it.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::connectors::target::{
    describe_kind, unknown_field, FieldProblem, ProblemKind, Typed, ValueKind, Write,
};

/// The keys of the answer that `schema pull` keeps: everything `check` reads, and what a
/// person reading the file wants beside it (labels, lengths, picklist values).
const OBJECT_KEYS: [&str; 5] = ["name", "label", "createable", "updateable", "custom"];
const FIELD_KEYS: [&str; 14] = [
    "name",
    "label",
    "type",
    "soapType",
    "createable",
    "updateable",
    "nillable",
    "defaultedOnCreate",
    "externalId",
    "length",
    "precision",
    "scale",
    "referenceTo",
    "relationshipName",
];
const CHILD_KEYS: [&str; 3] = ["childSObject", "field", "relationshipName"];

#[derive(Debug, Clone, Deserialize)]
pub struct Describe {
    pub name: String,
    #[serde(default)]
    pub fields: Vec<Field>,
    #[serde(default, rename = "childRelationships")]
    pub child_relationships: Vec<ChildRelationship>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default, rename = "relationshipName")]
    pub relationship_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChildRelationship {
    #[serde(default, rename = "relationshipName")]
    pub relationship_name: Option<String>,
}

/// The answer as `schema pull` stores it: the keys above, in Salesforce's own spelling, so a
/// whole answer saved by hand reads the same. Picklist values keep `value` and `active`.
pub fn trim(answer: &Value) -> Value {
    let mut out = pick(answer, &OBJECT_KEYS);
    let fields = answer
        .get("fields")
        .and_then(Value::as_array)
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    let mut field = pick(f, &FIELD_KEYS);
                    if let Some(values) = f.get("picklistValues").and_then(Value::as_array) {
                        if !values.is_empty() {
                            let values = values.iter().map(|v| pick(v, &["value", "active"]));
                            field.insert("picklistValues".into(), values.collect());
                        }
                    }
                    Value::Object(field)
                })
                .collect()
        })
        .unwrap_or_default();
    out.insert("fields".into(), Value::Array(fields));
    let children = answer
        .get("childRelationships")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                // A child relationship without a name cannot appear in a payload.
                .filter(|c| c.get("relationshipName").is_some_and(Value::is_string))
                .map(|c| Value::Object(pick(c, &CHILD_KEYS)))
                .collect()
        })
        .unwrap_or_default();
    out.insert("childRelationships".into(), Value::Array(children));
    Value::Object(out)
}

fn pick(v: &Value, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| v.get(*k).map(|x| (k.to_string(), x.clone())))
        .collect()
}

/// How Salesforce's field types group for the type check. Types not named here (address,
/// location, base64, anyType, ...) are not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Boolean,
    Integer,
    Number,
    Date,
    DateTime,
    Text,
    Other,
}

fn group(ty: &str) -> Group {
    match ty {
        "boolean" => Group::Boolean,
        "int" | "long" => Group::Integer,
        "double" | "currency" | "percent" => Group::Number,
        "date" => Group::Date,
        "datetime" => Group::DateTime,
        "string" | "textarea" | "picklist" | "multipicklist" | "combobox" | "email" | "phone"
        | "url" | "id" | "reference" | "encryptedstring" => Group::Text,
        _ => Group::Other,
    }
}

impl Describe {
    fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// `path[0]` is a field; a longer path starts with a relationship: a reference field's
    /// `relationshipName` (`Account.External_Id__c`, a parent by its external id) or a child
    /// relationship (`OrderItems` of a composite or tree payload), whose insides are the
    /// other object's and not checked here.
    pub fn check(&self, write: Write, path: &[String], kind: &ValueKind) -> Option<FieldProblem> {
        let first = path.first()?;
        // Never sent: the connector drops them from the payload.
        if first == "Id" || first == "attributes" {
            return None;
        }
        let what = format!("Salesforce {}", self.name);
        let is_relationship =
            |r: &Option<String>| r.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(first));
        let relationship = self
            .fields
            .iter()
            .any(|f| is_relationship(&f.relationship_name))
            || self
                .child_relationships
                .iter()
                .any(|c| is_relationship(&c.relationship_name));
        // `Account: {External_Id__c: …}` set whole is a relationship too.
        if relationship && (path.len() > 1 || self.field(first).is_none()) {
            return None;
        }
        if path.len() > 1 {
            let names = self
                .fields
                .iter()
                .filter_map(|f| f.relationship_name.as_deref())
                .chain(
                    self.child_relationships
                        .iter()
                        .filter_map(|c| c.relationship_name.as_deref()),
                );
            let mut p = unknown_field(first, &what, names);
            p.message = format!("{what} has no relationship `{first}`");
            return Some(p);
        }
        let Some(field) = self.field(first) else {
            return Some(unknown_field(
                first,
                &what,
                self.fields.iter().map(|f| f.name.as_str()),
            ));
        };
        let refused = match write {
            Write::Create => (!field.createable).then_some("created"),
            Write::Update => (!field.updateable).then_some("updated"),
            Write::Upsert => match (field.createable, field.updateable) {
                (true, true) => None,
                (false, _) => Some("created"),
                (true, false) => Some("updated"),
            },
        };
        if let Some(how) = refused {
            return Some(FieldProblem {
                kind: ProblemKind::NotWritable,
                message: format!(
                    "{what} field `{}` cannot be {how} (its describe says {} false)",
                    field.name,
                    if how == "created" {
                        "createable"
                    } else {
                        "updateable"
                    }
                ),
                help: None,
            });
        }
        type_problem(&what, field, kind)
    }
}

/// Whether a value of `kind` can be of the field's type. The combinations refused are the
/// ones Salesforce refuses whatever the value (text or a date into a number or a boolean, a
/// number or a boolean into a date); text into a date is refused only when it is converted
/// `type: string` (a template may well make `2026-12-06`).
fn type_problem(what: &str, field: &Field, kind: &ValueKind) -> Option<FieldProblem> {
    let g = group(&field.ty);
    let fits = match kind {
        ValueKind::Unknown => true,
        ValueKind::Template => !matches!(g, Group::Boolean | Group::Integer | Group::Number),
        ValueKind::Typed(t) => match (g, t) {
            (Group::Other | Group::Text, _) => true,
            (Group::Boolean, t) => *t == Typed::Boolean,
            (Group::Integer | Group::Number, t) => matches!(t, Typed::Integer | Typed::Decimal),
            (Group::Date, t) => *t == Typed::Date,
            (Group::DateTime, t) => matches!(t, Typed::Date | Typed::DateTime),
        },
        ValueKind::Literal(v) => match (g, v) {
            (_, Value::Null) | (Group::Other, _) => true,
            (Group::Boolean, v) => v.is_boolean(),
            (Group::Integer, v) => v.is_i64() || v.is_u64(),
            (Group::Number, v) => v.is_number(),
            (Group::Date, Value::String(s)) => is_date(s),
            (Group::DateTime, Value::String(s)) => is_date(s) || is_datetime(s),
            (Group::Date | Group::DateTime, _) => false,
            (Group::Text, v) => !v.is_object() && !v.is_array(),
        },
    };
    if fits {
        return None;
    }
    let help = match (g, kind) {
        (Group::Date, ValueKind::Typed(Typed::String)) => Some("convert it with `type: date`"),
        (Group::DateTime, ValueKind::Typed(Typed::String)) => {
            Some("convert it with `type: datetime`")
        }
        (Group::Integer | Group::Number, ValueKind::Typed(Typed::String) | ValueKind::Template) => {
            Some("convert it with `type: decimal` (or `integer`)")
        }
        (Group::Boolean, ValueKind::Typed(Typed::String) | ValueKind::Template) => {
            Some("convert it with `type: boolean`")
        }
        _ => None,
    };
    Some(FieldProblem {
        kind: ProblemKind::Type,
        message: format!(
            "{what} field `{}` is of type {}, but the value is {}",
            field.name,
            field.ty,
            describe_kind(kind)
        ),
        help: help.map(str::to_string),
    })
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

fn is_datetime(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Describe {
        serde_json::from_value(json!({
            "name": "Order",
            "fields": [
                {"name": "Id", "type": "id", "createable": false, "updateable": false},
                {"name": "EffectiveDate", "type": "date", "createable": true, "updateable": true},
                {"name": "TotalAmount", "type": "currency", "createable": false, "updateable": false},
                {"name": "Status", "type": "picklist", "createable": true, "updateable": true},
                {"name": "IsReductionOrder", "type": "boolean", "createable": true, "updateable": false},
                {"name": "AccountId", "type": "reference", "createable": true, "updateable": true,
                 "relationshipName": "Account"},
            ],
            "childRelationships": [{"relationshipName": "OrderItems"}, {"relationshipName": null}]
        }))
        .unwrap()
    }

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    #[test]
    fn names_are_found_without_regard_to_case_and_misspellings_get_the_close_one() {
        let d = order();
        assert_eq!(
            d.check(Write::Create, &path("effectivedate"), &ValueKind::Unknown),
            None
        );
        let p = d
            .check(Write::Create, &path("EffectiveDat"), &ValueKind::Unknown)
            .unwrap();
        assert_eq!(p.kind, ProblemKind::Unknown);
        assert_eq!(p.help.as_deref(), Some("did you mean `EffectiveDate`?"));
        assert_eq!(
            d.check(
                Write::Create,
                &path("Account.External_Id__c"),
                &ValueKind::Unknown
            ),
            None
        );
        assert_eq!(
            d.check(
                Write::Create,
                &path("OrderItems.records"),
                &ValueKind::Unknown
            ),
            None
        );
        let p = d
            .check(Write::Create, &path("Acount.Name"), &ValueKind::Unknown)
            .unwrap();
        assert_eq!(p.help.as_deref(), Some("did you mean `Account`?"));
    }

    #[test]
    fn writability_follows_the_operation() {
        let d = order();
        let p = d
            .check(Write::Create, &path("TotalAmount"), &ValueKind::Unknown)
            .unwrap();
        assert_eq!(p.kind, ProblemKind::NotWritable);
        assert_eq!(
            d.check(
                Write::Create,
                &path("IsReductionOrder"),
                &ValueKind::Unknown
            ),
            None
        );
        let p = d
            .check(
                Write::Upsert,
                &path("IsReductionOrder"),
                &ValueKind::Unknown,
            )
            .unwrap();
        assert!(p.message.contains("cannot be updated"), "{p:?}");
    }

    #[test]
    fn types_refused_are_the_certain_ones() {
        let d = order();
        let check = |f: &str, k: ValueKind| d.check(Write::Create, &path(f), &k);
        let p = check("EffectiveDate", ValueKind::Typed(Typed::String)).unwrap();
        assert_eq!(p.kind, ProblemKind::Type);
        assert_eq!(p.help.as_deref(), Some("convert it with `type: date`"));
        assert_eq!(check("EffectiveDate", ValueKind::Typed(Typed::Date)), None);
        assert_eq!(check("EffectiveDate", ValueKind::Template), None);
        assert_eq!(
            check("EffectiveDate", ValueKind::Literal(json!("2026-12-06"))),
            None
        );
        assert!(check("EffectiveDate", ValueKind::Literal(json!("soon"))).is_some());
        assert!(check("IsReductionOrder", ValueKind::Literal(json!("yes"))).is_some());
        assert_eq!(
            check("IsReductionOrder", ValueKind::Literal(json!(true))),
            None
        );
        assert_eq!(check("Status", ValueKind::Typed(Typed::Integer)), None);
        assert!(check("IsReductionOrder", ValueKind::Template).is_some());
    }

    #[test]
    fn trimming_keeps_what_check_reads() {
        let answer = json!({
            "name": "Order", "label": "Order", "urls": {"describe": "/x"},
            "fields": [{"name": "Status", "type": "picklist", "createable": true,
                        "updateable": true, "inlineHelpText": null, "byteLength": 120,
                        "picklistValues": [{"value": "Draft", "label": "Draft", "active": true,
                                            "defaultValue": false, "validFor": null}]}],
            "childRelationships": [{"childSObject": "OrderItem", "field": "OrderId",
                                    "relationshipName": "OrderItems", "cascadeDelete": true},
                                   {"childSObject": "X", "field": "Y", "relationshipName": null}]
        });
        assert_eq!(
            trim(&answer),
            json!({
                "name": "Order", "label": "Order",
                "fields": [{"name": "Status", "type": "picklist", "createable": true,
                            "updateable": true,
                            "picklistValues": [{"value": "Draft", "active": true}]}],
                "childRelationships": [{"childSObject": "OrderItem", "field": "OrderId",
                                        "relationshipName": "OrderItems"}]
            })
        );
    }
}
