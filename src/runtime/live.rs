//! One version of the project made live: its connectors built (one instance per tenant for a
//! per-tenant connector, kept across a reload when their config did not change), each behind
//! its circuit breaker, and its webhook routes. Owns building that value and calling a
//! connector through it; it must not swap versions (`reload.rs`) nor run events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::breaker::Breaker;
use super::{inbox, metrics, retry};
use crate::config::model::SourceConfig;
use crate::connectors::{BuildContext, CallError, Connector, Reply, Request};
use crate::flow::{Project, Webhook};
use crate::state::StateStore;

/// A connector as the running version holds it.
pub struct LiveConnector {
    pub connector: Arc<dyn Connector>,
    pub breaker: Arc<Breaker>,
    /// The config it was built from (with the environment filled in): a reload that leaves it
    /// unchanged keeps this connector, its pool and its token.
    config: Value,
    /// Set when the connector is unconfigured here: its calls go to this stand-in (`connector`
    /// is then the stand-in's).
    pub stand_in: Option<String>,
}

impl LiveConnector {
    /// One call through the connector's circuit breaker, with the timeout and the metrics:
    /// how every part of the runtime (sends, fetches, polls) calls a connector.
    pub async fn call(&self, request: Request<'_>, timeout: Duration) -> Result<Reply, CallError> {
        let name = request.connector;
        // Held across the call: if this future is dropped before the answer, the permit's
        // drop frees a half-open trial instead of leaving the breaker waiting for it.
        let permit = match self.breaker.admit() {
            Ok(permit) => permit,
            Err(wait) => {
                return Err(CallError::Retryable {
                    message: format!(
                        "connector `{name}` is failing (circuit open); next trial in {}s",
                        wait.as_secs().max(1)
                    ),
                    retry_after: Some(wait),
                });
            }
        };
        let result = match tokio::time::timeout(timeout, self.connector.call(request)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Retryable {
                message: format!("no answer within {}s", timeout.as_secs()),
                retry_after: None,
            }),
        };
        match &result {
            Ok(_) => permit.success(),
            Err(CallError::Retryable { .. }) => {
                if permit.failure() {
                    tracing::warn!(connector = %name, "Circuit breaker opened");
                }
            }
            Err(CallError::Permanent { .. }) => permit.neutral(),
        }
        metrics::connector_call(name, result.is_ok());
        metrics::breaker_state(name, self.breaker.state().as_gauge());
        result
    }
}

/// A webhook path of the running version.
pub struct Route {
    pub pipeline: String,
    /// The signature scheme and `dedup_id:` as the flow compiled them.
    pub webhook: Arc<Webhook>,
}

/// One version of the project, ready to serve.
pub struct Live {
    pub project: Arc<Project>,
    pub connectors: BTreeMap<String, LiveConnector>,
    /// Each pipeline's `on_error`, resolved once for the version.
    pub retry: HashMap<String, retry::RetryPolicy>,
    pub routes: HashMap<String, Route>,
    /// Webhooks whose path has `{name}` parameters, tried in order when no plain path matches.
    pub patterns: Vec<Route>,
    /// RFC 3339.
    pub since: String,
}

/// Why a project that passed `check` could not be made live: a connector that does not build
/// (signature schemes and `dedup_id` were built by `check` itself), located where
/// crossdock.yaml declares it.
#[derive(Debug, thiserror::Error)]
#[error("{}:{pos}: {message}", crate::config::PROJECT_FILE)]
pub(super) struct LiveError {
    pub(super) pos: crate::config::span::Pos,
    pub(super) message: String,
}

impl LiveError {
    fn connector(project: &Project, name: &str, message: String) -> LiveError {
        LiveError {
            // Every connector is in the map; 1:1 (the file) should one ever not be.
            pos: project
                .connector_pos
                .get(name)
                .copied()
                .unwrap_or(crate::config::span::Pos { line: 1, col: 1 }),
            message,
        }
    }
}

/// Builds the live connectors and routes of a project; connectors whose config did not
/// change since `old` are kept as they are.
pub(super) fn build_live(
    project: Project,
    http: &reqwest::Client,
    state: Arc<dyn StateStore>,
    old: Option<&Live>,
) -> Result<Live, LiveError> {
    let cx = BuildContext {
        root: project.root.clone(),
        http: http.clone(),
        state: Some(state),
    };
    let mut connectors = BTreeMap::new();
    // One instance per tenant, keyed `name@tenant` ([`tenant_key`]); the config as written is
    // never built (its `{tenant.KEY}`s are not filled).
    for (name, per_tenant) in &project.tenant_connectors {
        for (tenant, (config, raw)) in &per_tenant.configs {
            let key = tenant_key(name, tenant);
            if let Some(kept) = old.and_then(|o| o.connectors.get(&key)) {
                if kept.config == *raw {
                    connectors.insert(
                        key,
                        LiveConnector {
                            connector: kept.connector.clone(),
                            breaker: kept.breaker.clone(),
                            config: raw.clone(),
                            stand_in: None,
                        },
                    );
                    continue;
                }
            }
            let connector = config.as_kind().build(name, &cx).map_err(|e| {
                LiveError::connector(
                    &project,
                    name,
                    format!("connector `{name}` for tenant `{tenant}`: {e}"),
                )
            })?;
            let spec = project.breakers.get(name).copied().unwrap_or_default();
            connectors.insert(
                key,
                LiveConnector {
                    connector,
                    breaker: Arc::new(Breaker::new(spec.failures, spec.cooldown)),
                    config: raw.clone(),
                    stand_in: None,
                },
            );
        }
    }
    for (name, config) in &project.connectors {
        if project.tenant_connectors.contains_key(name) {
            continue;
        }
        let raw = project
            .config
            .connectors
            .get(name)
            .cloned()
            .unwrap_or(Value::Null);
        let stand_in = project.unconfigured.get(name).map(|u| u.to.clone());
        if let Some(kept) = old.and_then(|o| o.connectors.get(name)) {
            if kept.config == raw && kept.stand_in == stand_in {
                connectors.insert(
                    name.clone(),
                    LiveConnector {
                        connector: kept.connector.clone(),
                        breaker: kept.breaker.clone(),
                        config: raw,
                        stand_in,
                    },
                );
                continue;
            }
        }
        let connector = match &stand_in {
            // Never built: its credentials are missing. Calls go to the stand-in.
            Some(to) => match project.connectors.get(to) {
                Some(c) => c.as_kind().build(to, &cx).map_err(|e| {
                    LiveError::connector(&project, to, format!("connector `{to}`: {e}"))
                })?,
                None => {
                    return Err(LiveError::connector(
                        &project,
                        name,
                        format!("connector `{name}`: no stand-in `{to}`"),
                    ))
                }
            },
            None => config.as_kind().build(name, &cx).map_err(|e| {
                LiveError::connector(&project, name, format!("connector `{name}`: {e}"))
            })?,
        };
        connectors.insert(
            name.clone(),
            LiveConnector {
                connector,
                breaker: {
                    let spec = project.breakers.get(name).copied().unwrap_or_default();
                    Arc::new(Breaker::new(spec.failures, spec.cooldown))
                },
                config: raw,
                stand_in,
            },
        );
    }
    let mut routes = HashMap::new();
    let mut patterns = Vec::new();
    for (name, flow) in &project.pipelines {
        if let (SourceConfig::Webhook(hook), Some(webhook)) = (&flow.source, &flow.webhook) {
            let route = Route {
                pipeline: name.clone(),
                webhook: webhook.clone(),
            };
            if webhook.pattern.is_some() {
                patterns.push(route);
            } else {
                routes.insert(hook.path.clone(), route);
            }
        }
    }
    let retry = project
        .pipelines
        .iter()
        .map(|(name, flow)| {
            let policy = retry::RetryPolicy::from_config(flow.on_error.as_ref());
            (name.clone(), policy)
        })
        .collect();
    Ok(Live {
        retry,
        project: Arc::new(project),
        connectors,
        routes,
        patterns,
        since: inbox::now_rfc3339(),
    })
}

/// Where a tenant's instance of a connector is kept in [`Live::connectors`]. Tenant ids hold
/// no `@` (`flow::tenants::valid_id`), so no two pairs share a key.
fn tenant_key(connector: &str, tenant: &str) -> String {
    format!("{connector}@{tenant}")
}

impl Live {
    /// The live connector `name` for an event of `tenant`: its tenant's instance when the
    /// connector is built per tenant, else the one instance.
    pub fn connector(&self, name: &str, tenant: Option<&str>) -> Result<&LiveConnector, String> {
        let Some(per_tenant) = self.project.tenant_connectors.get(name) else {
            return self
                .connectors
                .get(name)
                .ok_or_else(|| format!("no connector `{name}` in this version"));
        };
        let Some(tenant) = tenant else {
            return Err(format!(
                "connector `{name}` is built per tenant of list `{}`, and this event has no \
                 tenant (it did not come through a webhook with `tenants:`)",
                per_tenant.list
            ));
        };
        self.connectors
            .get(&tenant_key(name, tenant))
            .ok_or_else(|| {
                format!(
                    "connector `{name}` has no tenant `{tenant}` in list `{}` in this version",
                    per_tenant.list
                )
            })
    }
}
