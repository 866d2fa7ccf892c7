//! STAND-IN (replaced by the real module).
use serde_json::Value;
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);
pub trait StateStore: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Value>, StateError>;
}
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct StateChange { pub key: String, pub before: Option<Value>, pub after: Option<Value> }
#[derive(Default)]
pub struct MemoryStore;
impl StateStore for MemoryStore { fn get(&self, _k: &str) -> Result<Option<Value>, StateError> { Ok(None) } }
