//! One attempt's work: the flow run on a view of the state that keeps its writes, committed
//! (and run again on a conflict), then its actions through the live connectors, and the
//! connector calls a flow's `fetch` steps make. Decides no retry, dead letter or trail
//! (`outcome.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::connectors::{CallError, Request};
use crate::flow::input::Body;
use crate::flow::{Fetch, FetchError, Flow, Keep, Outcome, RunOptions, StepError};
use crate::rules::{EventInfo, Rules};
use crate::runtime::inbox::{self, ActionTrail, StoredEvent};
use crate::runtime::{Live, Runtime};
use crate::state::{CommitError, EventState, StateStore};
use serde_json::Value;

use super::Verdict;

/// How many times a flow runs before a commit that keeps finding its reads changed becomes a
/// retry of the event (later, with back-off).
const COMMIT_TRIES: u32 = 5;

/// Runs the flow on a view of the state that keeps its writes ([`EventState`]), and commits
/// them if it succeeded; runs it again when another event changed what it read meanwhile.
///
/// State is changed once per event: the commit writes the event's `applied/` key with the
/// rest, atomically, and a later run of the event that finds it (a retry, a dead letter
/// retried) keeps none of its writes; its flow still runs, to rebuild the actions, on the
/// state its first commit left. `full` (a dead letter retried with `--full`) commits again;
/// `explain` asks the flow for the explanation the trail keeps.
/// Also gives whether that key is in the store now, to be removed once the event is done.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_committed(
    flow: &Flow,
    rules: &Rules,
    info: EventInfo,
    body: &[u8],
    state: &Arc<dyn StateStore>,
    fetch: &dyn Fetch,
    max_writes: usize,
    (full, explain): (bool, bool),
    marker: String,
) -> (Outcome, bool) {
    let marker = [marker];
    let mut tries = 0;
    loop {
        tries += 1;
        let event_state = Arc::new(EventState::new(state.clone(), max_writes));
        let view: Arc<dyn StateStore> = event_state.clone();
        let applied = match view.get(&marker[0]) {
            Ok(v) => v.is_some() && !full,
            Err(e) => return (state_failed(flow, &info, e.to_string()), false),
        };
        let body = Ok(Body::Json(body));
        let mut outcome = flow.run_body(
            rules,
            info.clone(),
            body,
            "input",
            &view,
            fetch,
            RunOptions::keeping(Keep::Actions).explained(explain),
        );
        if !outcome.ok() || applied {
            return (outcome, applied);
        }
        let writes = event_state.written() > 0;
        let at = serde_json::json!({ "at": inbox::now_rfc3339() });
        let error = match event_state.commit_marked(Some((&marker[0], &at))) {
            Ok(()) => return (outcome, writes),
            Err(CommitError::Conflict(key)) if tries < COMMIT_TRIES => {
                tracing::debug!(key, tries, "State changed under the flow; running it again");
                continue;
            }
            Err(e) => e,
        };
        // Only a state that kept changing, or a backend failure, may go better later.
        if !matches!(error, CommitError::TooManyKeys(_)) {
            outcome.retry = Some(None);
        }
        outcome.errors.push(StepError {
            step: "state".into(),
            message: match error {
                CommitError::Conflict(key) => {
                    format!("state key `{key}` changed under the flow {tries} times running")
                }
                e => e.to_string(),
            },
        });
        return (outcome, false);
    }
}

/// The outcome of a flow that could not read the state.
fn state_failed(flow: &Flow, info: &EventInfo, message: String) -> Outcome {
    let mut outcome = flow.unreadable(info.clone(), "state", message);
    outcome.retry = Some(None);
    outcome
}

/// Runs the outcome's actions (the ones not done by an earlier run) in order.
pub(super) async fn execute(
    runtime: &Runtime,
    live: &Live,
    event: &mut StoredEvent,
    outcome: &Outcome,
) -> (Verdict, Vec<ActionTrail>) {
    let redact = |s: String| live.project.redactor.redact(&s);
    if !outcome.errors.is_empty() {
        let message = outcome
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        // Mapping and rule errors are decided by the event and the version: trying again
        // would fail the same way. Straight to the dead letters. A fetch that met a
        // connector failure is the exception.
        let verdict = match outcome.retry {
            Some(retry_after) => Verdict::Retry {
                message: redact(message),
                retry_after,
            },
            None => Verdict::Fail(redact(message)),
        };
        return (verdict, Vec::new());
    }
    if !outcome.triggered {
        return (Verdict::Done("skipped"), Vec::new());
    }
    let mut trails = Vec::with_capacity(outcome.actions.len());
    let mut verdict = Verdict::Done(if outcome.filtered {
        "filtered"
    } else {
        "processed"
    });
    for action in &outcome.actions {
        let mut trail = ActionTrail {
            connector: action.connector.clone(),
            op: action.op.clone(),
            object: action.object.clone(),
            status: "ok".into(),
            remote_status: None,
            remote_id: None,
            error: None,
            ms: 0,
            at: None,
        };
        if event.meta.done.contains(&*action.effect) {
            trail.status = "skipped".into();
            trails.push(trail);
            continue;
        }
        if !matches!(verdict, Verdict::Done(_)) {
            trail.status = "not_run".into();
            trails.push(trail);
            continue;
        }
        let tenant = event.meta.headers.get(crate::runtime::TENANT_HEADER);
        let conn = match live.connector(&action.connector, tenant.map(String::as_str)) {
            Ok(conn) => conn,
            Err(message) => {
                trail.status = "failed".into();
                trail.error = Some(message.clone());
                trails.push(trail);
                verdict = Verdict::Fail(message);
                continue;
            }
        };
        let called = Instant::now();
        trail.at = Some(inbox::now_rfc3339());
        // A trace's child span per connector call (`telemetry`).
        let span = tracing::debug_span!(
            "call",
            connector = &*action.connector,
            op = &*action.op,
            remote_status = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let idempotency_key = idempotency_key(&event.meta.id, &action.effect);
        let request = Request {
            connector: &action.connector,
            op: &action.op,
            object: action.object.as_deref(),
            key: action.key.as_deref(),
            payload: &action.payload,
            idempotency_key: Some(&idempotency_key),
        };
        let result = conn
            .call(request, runtime.settings.call_timeout)
            .instrument(span.clone())
            .await;
        trail.ms = called.elapsed().as_millis() as u64;
        match result {
            Ok(reply) => {
                span.record("remote_status", reply.status);
                trail.remote_status = (reply.status != 0).then_some(reply.status);
                trail.remote_id = reply.remote_id;
                event.meta.done.insert(action.effect.to_string());
            }
            Err(e) => {
                // Inside an `each` the effect's name carries the element's index (`#2`):
                // without it, which of a SKU's listings or an order's lines failed is unknown.
                let element = if action.effect.contains('#') {
                    format!(" at {}", action.effect)
                } else {
                    String::new()
                };
                let message = redact(format!(
                    "{} {}{}{element}: {e}",
                    action.connector,
                    action.op,
                    action
                        .object
                        .as_deref()
                        .map(|o| format!(" {o}"))
                        .unwrap_or_default()
                ));
                trail.status = "failed".into();
                trail.error = Some(message.clone());
                span.record("error", message.as_str());
                verdict = match e {
                    CallError::Retryable { retry_after, .. } => Verdict::Retry {
                        message,
                        retry_after,
                    },
                    CallError::Permanent { .. } => Verdict::Fail(message),
                };
            }
        }
        trails.push(trail);
    }
    (verdict, trails)
}

/// What a remote that supports idempotency keys is given for one effect of one event: the
/// same in every attempt and every run of the event, different for every other effect.
fn idempotency_key(event_id: &str, effect: &str) -> String {
    format!("{event_id}/{effect}")
}

/// `fetch` steps in a running flow: the live connector, called from the flow's blocking
/// thread (which may block on the runtime: it is not one of its workers).
pub(super) struct LiveFetch {
    pub(super) live: Arc<Live>,
    pub(super) handle: tokio::runtime::Handle,
    pub(super) timeout: Duration,
    /// The event's tenant, which picks the instance of a per-tenant connector.
    pub(super) tenant: Option<String>,
}

impl Fetch for LiveFetch {
    fn fetch(&self, connector: &str, op: &str, params: &Value) -> Result<Value, FetchError> {
        let conn = match self.live.connector(connector, self.tenant.as_deref()) {
            Ok(conn) => conn,
            Err(message) => {
                return Err(FetchError {
                    message,
                    retryable: false,
                    retry_after: None,
                })
            }
        };
        if let Some(u) = self.live.project.unconfigured.get(connector) {
            // A stand-in prints calls; it has no answer to give.
            return Err(FetchError {
                message: format!(
                    "connector `{connector}` is not configured ({} unset), so `{op}` cannot be fetched",
                    u.missing.join(", ")
                ),
                retryable: false,
                retry_after: None,
            });
        }
        let request = Request {
            connector,
            op,
            object: None,
            key: None,
            payload: params,
            idempotency_key: None,
        };
        let _span = tracing::debug_span!("fetch", connector, op).entered();
        match self.handle.block_on(conn.call(request, self.timeout)) {
            Ok(reply) => Ok(reply.body),
            Err(CallError::Retryable {
                message,
                retry_after,
            }) => Err(FetchError {
                message,
                retryable: true,
                retry_after,
            }),
            Err(CallError::Permanent { message }) => Err(FetchError {
                message,
                retryable: false,
                retry_after: None,
            }),
        }
    }
}
