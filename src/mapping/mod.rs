//! STAND-IN (replaced by the real module).
pub mod jsonpath;
pub mod spec {
    #[derive(Debug, Clone, serde::Deserialize)]
    pub struct MappingFile { pub mapping: String, pub fields: serde_json::Map<String, serde_json::Value> }
}
use crate::config::span::PathSeg;
use crate::rules::Rules;
use serde_json::Value;
pub struct Mapping { fields: Vec<(String, jsonpath::JsonPath)> }
pub struct MappingIssue { pub path: Vec<PathSeg>, pub message: String, pub offset: Option<usize> }
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(String);
pub fn compile(spec: &spec::MappingFile, _rules: &Rules) -> Result<Mapping, Vec<MappingIssue>> {
    let mut fields = Vec::new(); let mut issues = Vec::new();
    for (k, v) in &spec.fields {
        let src = v.as_str().or_else(|| v.get("from").and_then(|f| f.as_str())).unwrap_or("$");
        match jsonpath::JsonPath::parse(src) { Ok(p) => fields.push((k.clone(), p)), Err(e) => issues.push(MappingIssue { path: vec![PathSeg::Key("fields".into()), PathSeg::Key(k.clone())], message: e.message, offset: Some(e.offset) }) }
    }
    if issues.is_empty() { Ok(Mapping { fields }) } else { Err(issues) }
}
impl Mapping {
    pub fn apply(&self, _rules: &Rules, input: &Value) -> Result<Value, MappingError> {
        let mut m = serde_json::Map::new();
        for (k, p) in &self.fields { if let Some(v) = p.first(input) { m.insert(k.clone(), v.clone()); } }
        Ok(Value::Object(m))
    }
}
