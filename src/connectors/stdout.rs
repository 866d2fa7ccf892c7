//! The `stdout` connector: writes each action as a JSON line to standard output. For trying
//! pipelines out and for running the examples without accounts.

use serde::Deserialize;

use super::{check_op, reject_extras, ConnectorKind, SendProblem, SendShape};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

impl ConnectorKind for StdoutConfig {
    fn kind(&self) -> &'static str {
        "stdout"
    }
    fn operations(&self) -> Vec<String> {
        vec!["print".into()]
    }
    fn check_send(&self, send: SendShape<'_>) -> Vec<SendProblem> {
        let mut out = check_op(self, send.op);
        out.extend(reject_extras(self.kind(), send));
        out
    }
}
