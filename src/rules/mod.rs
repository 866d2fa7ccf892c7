//! STAND-IN (replaced by the real module).
use serde_json::Value;
use std::sync::Arc;
#[derive(Clone, Default)]
pub struct Rules;
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RuleError { pub message: String, pub line: Option<usize>, pub col: Option<usize> }
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RunError { pub message: String, pub line: Option<usize>, pub col: Option<usize> }
pub struct EventInfo { pub id: String, pub pipeline: String, pub headers: std::collections::BTreeMap<String,String>, pub received_at: String, pub body: Arc<Value> }
pub struct Ctx<'a> { pub event: &'a EventInfo, pub state: &'a Arc<dyn crate::state::StateStore> }
pub struct Script;
pub struct Expr(String);
impl Rules {
    pub fn compile_script(&self, _name: &str, _src: &str) -> Result<Script, RuleError> { Ok(Script) }
    pub fn compile_expr(&self, src: &str) -> Result<Expr, RuleError> { if src.contains("@@") { Err(RuleError { message: "bad".into(), line: Some(1), col: Some(src.find("@@").unwrap_or(0)+1) }) } else { Ok(Expr(src.into())) } }
}
impl Script { pub fn run(&self, _r: &Rules, record: Value, _c: &Ctx) -> Result<Value, RunError> { Ok(record) } }
impl Expr {
    pub fn eval_bool(&self, _r: &Rules, _rec: &Value, _c: &Ctx) -> Result<bool, RunError> { Ok(!self.0.contains("false")) }
    pub fn eval_value(&self, _r: &Rules, _rec: &Value, _c: &Ctx) -> Result<Value, RunError> { Ok(Value::String(self.0.clone())) }
    pub fn eval_field(&self, _r: &Rules, v: Option<&Value>, _rec: &Value) -> Result<Value, RunError> { Ok(v.cloned().unwrap_or(Value::Null)) }
}
