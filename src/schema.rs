//! JSON Schemas of the project's files, generated from the types that read them.
//!
//! Owns which file kinds have a schema ([`Kind`]) and turning the serde types of `config`,
//! `connectors`, `mapping` and `testing` into one draft-07 schema per kind, which editors use
//! to complete and check YAML (`# yaml-language-server: $schema=…`). The schemas describe the
//! shape of a file only; what the flow compiler checks across files (a `send` to a connector
//! that exists, a JSONPath that parses) is not in them. Must not read or write files: the CLI
//! prints what this returns, and `crossdock schema --write DIR` is how the committed copies
//! under `schemas/` are regenerated.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Value};

use crate::config::model::{BreakerConfig, PipelineFile, ProjectFile};
use crate::connectors::ConnectorConfig;
use crate::mapping::spec::MappingFile;
use crate::testing::TestFile;

/// A kind of file in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `crossdock.yaml`
    Project,
    /// `pipelines/*.yaml`
    Pipeline,
    /// `mappings/*.yaml`
    Mapping,
    /// `tests/pipelines/*.yaml`
    Test,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Project, Kind::Pipeline, Kind::Mapping, Kind::Test];

    /// The name `crossdock schema` takes.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Project => "project",
            Kind::Pipeline => "pipeline",
            Kind::Mapping => "mapping",
            Kind::Test => "test",
        }
    }

    /// The file the schema is kept in, under `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::Project => "crossdock.schema.json",
            Kind::Pipeline => "pipeline.schema.json",
            Kind::Mapping => "mapping.schema.json",
            Kind::Test => "test.schema.json",
        }
    }

    /// The project files of this kind, as a glob from the project root.
    pub fn files(self) -> &'static str {
        match self {
            Kind::Project => "crossdock.yaml",
            Kind::Pipeline => "pipelines/*.yaml",
            Kind::Mapping => "mappings/*.yaml",
            Kind::Test => "tests/pipelines/*.yaml",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The schema, as the JSON document written to `schemas/`.
    pub fn schema(self) -> Value {
        // Draft-07: the newest draft the YAML language server (VS Code, Neovim, JetBrains'
        // plugin) reads completely.
        let mut g = SchemaSettings::draft07().into_generator();
        let mut schema = match self {
            Kind::Project => project(&mut g),
            Kind::Pipeline => root::<PipelineFile>(&mut g),
            Kind::Mapping => root::<MappingFile>(&mut g),
            Kind::Test => root::<TestFile>(&mut g),
        };
        if let Some(map) = schema.as_object_mut() {
            map.insert(
                "title".into(),
                Value::String(format!("crossdock {}", self.files())),
            );
        }
        if self == Kind::Pipeline {
            list_schemes(&mut schema);
            allow_undo(&mut schema);
        }
        schema
    }

    /// The schema as committed: pretty JSON with a closing newline.
    pub fn schema_text(self) -> String {
        let mut text = serde_json::to_string_pretty(&self.schema()).unwrap_or_default();
        text.push('\n');
        text
    }
}

fn root<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.clone().into_root_schema_for::<T>().to_value()
}

/// `crossdock.yaml`. `connectors:` is kept raw by [`ProjectFile`] (each connector is read on
/// its own so one mistake hides no other), so its entries' schema is put in here: the kinds
/// of [`ConnectorConfig`], each with the `breaker:`, `unconfigured:` and `tenants:` every kind
/// takes (the compiler takes them out before the kind reads the rest).
fn project(g: &mut SchemaGenerator) -> Value {
    let connector = g.subschema_for::<ConnectorConfig>().to_value();
    let breaker = g.subschema_for::<BreakerConfig>().to_value();
    let mut schema = g.clone().into_root_schema_for::<ProjectFile>().to_value();
    let common = json!({
        "breaker": breaker,
        "unconfigured": {
            "description": "Another connector that takes this one's calls while its ${VAR}s are unset (e.g. `console`).",
            "type": "string"
        },
        "tenants": {
            "description": "A tenants list (a file in tenants/): the connector is built once per tenant, `{tenant.KEY}` filled from each tenant's values.",
            "type": "string"
        }
    });
    if let Some(defs) = schema.get_mut("definitions").and_then(Value::as_object_mut) {
        if let Some(variants) = defs
            .get_mut("ConnectorConfig")
            .and_then(|c| c.get_mut("oneOf"))
            .and_then(Value::as_array_mut)
        {
            for variant in variants {
                if let Some(props) = variant.get_mut("properties").and_then(Value::as_object_mut) {
                    if let Some(common) = common.as_object() {
                        props.extend(common.clone());
                    }
                }
            }
        }
    }
    if let Some(connectors) = schema.pointer_mut("/properties/connectors") {
        *connectors = json!({
            "description": "Connectors by name: what `send`, `fetch` and `poll` call.",
            "type": "object",
            "additionalProperties": connector,
        });
    }
    schema
}

/// `undo:` sits beside any step's kind (the compiler takes it out before the step is read):
/// each kind's schema takes it.
fn allow_undo(schema: &mut Value) {
    let undo = json!({
        "description": "Steps that undo this one when the event fails for good (docs/runtime.md, \"Compensation\").",
        "type": "array",
        "items": { "$ref": "#/definitions/StepConfig" }
    });
    if let Some(variants) = schema
        .pointer_mut("/definitions/StepConfig/oneOf")
        .and_then(Value::as_array_mut)
    {
        for variant in variants {
            if let Some(props) = variant.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert("undo".into(), undo.clone());
            }
        }
    }
}

/// `verify.scheme` names an entry of the signature schemes' registry: the schema lists them
/// so an editor completes the name.
fn list_schemes(schema: &mut Value) {
    let names: Vec<Value> = crate::verify::SCHEMES
        .iter()
        .map(|s| Value::String(s.name.to_string()))
        .collect();
    if let Some(scheme) = schema
        .pointer_mut("/definitions/VerifyScheme")
        .and_then(Value::as_object_mut)
    {
        scheme.insert("enum".into(), Value::Array(names));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_connectors_take_every_kind_with_breaker_and_unconfigured() {
        let s = Kind::Project.schema();
        let variants = s
            .pointer("/definitions/ConnectorConfig/oneOf")
            .and_then(Value::as_array)
            .map(Vec::len);
        assert_eq!(variants, Some(4));
        assert!(s
            .pointer("/definitions/ConnectorConfig/oneOf/0/properties/breaker")
            .is_some());
        assert_eq!(
            s.pointer("/properties/connectors/additionalProperties/$ref"),
            Some(&json!("#/definitions/ConnectorConfig"))
        );
    }

    #[test]
    fn pipeline_schema_lists_the_signature_schemes() {
        let s = Kind::Pipeline.schema();
        let names = s.pointer("/definitions/VerifyScheme/enum");
        assert!(names
            .and_then(Value::as_array)
            .is_some_and(|n| n.contains(&json!("shopify"))));
    }
}
