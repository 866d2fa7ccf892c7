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
pub mod seed { pub fn seed(_s: &dyn super::StateStore, _v: &serde_json::Value) -> Result<(), super::StateError> { Ok(()) } }
pub mod overlay { use std::sync::Arc; pub struct Overlay; impl Overlay { pub fn new(_b: Arc<dyn super::StateStore>) -> Self { Overlay } pub fn changes(&self) -> Vec<super::StateChange> { vec![] } } impl super::StateStore for Overlay { fn get(&self, _k: &str) -> Result<Option<serde_json::Value>, super::StateError> { Ok(None) } } }
pub use memory_stub::MemoryStore as _M;
mod memory_stub { pub use super::MemoryStore; }
