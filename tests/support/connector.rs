//! Connectors as `crossdock run` builds them, through the public API, and a call's outcome read
//! as the error kind a test expects.

use std::sync::Arc;
use std::time::Duration;

use crossdock::connectors::{
    BuildContext, BuildError, CallError, Connector, ConnectorConfig, Reply,
};
use serde_json::Value;

/// Relative paths in a config (a `tls.ca_file`) are read from `root`.
pub fn context_at(root: &std::path::Path) -> BuildContext {
    BuildContext {
        root: root.to_path_buf(),
        http: reqwest::Client::new(),
        state: None,
    }
}

pub fn context() -> BuildContext {
    context_at(&std::env::temp_dir())
}

/// `config` as crossdock.yaml has it under `connectors.<name>`, `kind` included.
pub fn try_build(
    name: &str,
    config: Value,
    cx: &BuildContext,
) -> Result<Arc<dyn Connector>, BuildError> {
    let config: ConnectorConfig = serde_json::from_value(config).unwrap();
    config.as_kind().build(name, cx)
}

pub fn build(name: &str, config: Value) -> Arc<dyn Connector> {
    try_build(name, config, &context()).unwrap()
}

pub fn permanent(result: Result<Reply, CallError>) -> String {
    match result {
        Err(CallError::Permanent { message }) => message,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

pub fn retryable(result: Result<Reply, CallError>) -> (String, Option<Duration>) {
    match result {
        Err(CallError::Retryable {
            message,
            retry_after,
        }) => (message, retry_after),
        other => panic!("expected a retryable error, got {other:?}"),
    }
}
