//! The event a dry run or a pipeline test case builds around a body: what `crossdock dry-run`,
//! `crossdock test` and the admin API's dry run share, so they cannot drift apart.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::rules::EventInfo;

/// What a caller may say about the event besides its body (a test case's `event:`).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub received_at: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Builds the event around a body: the `n`th of a run, named `{prefix}-{n}` unless `spec`
/// gives an id, received now unless `spec` says when (a case that pins `received_at` gets an
/// answer that does not depend on the day it runs).
pub fn event_info(pipeline: &str, spec: Option<&EventSpec>, n: usize, prefix: &str) -> EventInfo {
    let received_at = spec
        .and_then(|s| s.received_at.clone())
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    EventInfo {
        id: spec
            .and_then(|s| s.id.clone())
            .unwrap_or_else(|| format!("{prefix}-{n}")),
        pipeline: pipeline.to_string(),
        headers: spec
            .map(|s| {
                s.headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        received_at,
        body: Arc::new(Value::Null),
    }
}
