//! STAND-IN (replaced by the real module).
use serde_json::Value;
#[derive(Clone, Debug)]
pub struct JsonPath { src: String, q: serde_json_path::JsonPath }
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct JsonPathError { pub message: String, pub offset: usize }
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment { Name(String), Index(i64) }
impl JsonPath {
    pub fn parse(src: &str) -> Result<JsonPath, JsonPathError> {
        serde_json_path::JsonPath::parse(src).map(|q| JsonPath { src: src.into(), q }).map_err(|e| JsonPathError { message: e.to_string(), offset: 0 })
    }
    pub fn as_str(&self) -> &str { &self.src }
    pub fn is_singular(&self) -> bool { !self.src.contains('*') && !self.src.contains("..") && !self.src.contains('?') }
    pub fn query<'a>(&self, root: &'a Value) -> Vec<&'a Value> { self.q.query(root).all() }
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> { self.q.query(root).all().into_iter().next() }
    pub fn segments(&self) -> Option<&[Segment]> { None }
}
impl std::fmt::Display for JsonPath { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.src) } }
