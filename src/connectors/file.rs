//! The `file` connector: appends each action as a JSON line to a file.

use serde::Deserialize;

use super::{check_op, reject_extras, ConnectorKind, SendProblem, SendShape};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// A JSON-lines file, relative to the project root.
    pub path: String,
}

impl ConnectorKind for FileConfig {
    fn kind(&self) -> &'static str {
        "file"
    }
    fn operations(&self) -> Vec<String> {
        vec!["append".into()]
    }
    fn check_send(&self, send: SendShape<'_>) -> Vec<SendProblem> {
        let mut out = check_op(self, send.op);
        out.extend(reject_extras(self.kind(), send));
        out
    }
}
