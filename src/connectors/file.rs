//! The `file` connector: appends each action as a JSON line to a file.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{BuildContext, BuildError, CallError, Connector, ConnectorKind, Reply, Request};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
    fn build(&self, _name: &str, cx: &BuildContext) -> Result<Arc<dyn Connector>, BuildError> {
        Ok(Arc::new(FileSink {
            path: cx.root.join(&self.path),
            lock: Mutex::new(()),
        }))
    }
}

struct FileSink {
    path: PathBuf,
    /// Appends are serialised so that lines from concurrent workers never interleave.
    lock: Mutex<()>,
}

impl FileSink {
    fn append(&self, line: &str) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(line.as_bytes())
    }
}

impl Connector for FileSink {
    fn call<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Result<Reply, CallError>> {
        Box::pin(async move {
            let mut line = super::action_line(&request);
            line.push('\n');
            self.append(&line).map_err(|e| CallError::Retryable {
                message: format!("appending to {}: {e}", self.path.display()),
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
