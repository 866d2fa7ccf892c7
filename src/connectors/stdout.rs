//! The `stdout` connector: writes each action as a JSON line to standard output. For trying
//! pipelines out and for running the examples without accounts.

use std::io::Write;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{BuildContext, BuildError, CallError, Connector, ConnectorKind, Reply, Request};

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

impl ConnectorKind for StdoutConfig {
    fn kind(&self) -> &'static str {
        "stdout"
    }
    fn operations(&self) -> Vec<String> {
        vec!["print".into()]
    }
    fn build(&self, _name: &str, _cx: &BuildContext) -> Result<Arc<dyn Connector>, BuildError> {
        Ok(Arc::new(Stdout))
    }
}

struct Stdout;

impl Connector for Stdout {
    fn call<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Reply, CallError>> {
        Box::pin(async move {
            let mut line = super::action_line(&request);
            line.push('\n');
            // One write of the whole line under the lock, so lines from concurrent workers
            // never interleave.
            std::io::stdout()
                .lock()
                .write_all(line.as_bytes())
                .map_err(|e| CallError::Retryable {
                    message: format!("writing to standard output: {e}"),
                    retry_after: None,
                })?;
            Ok(Reply {
                status: 0,
                remote_id: None,
                body: serde_json::Value::Null,
            })
        })
    }
}
