//! Workers: each event through its flow and out through the connectors, on a task of its own
//! (as many at once as its pipeline's `concurrency`), with retries, the circuit breakers and
//! dead letters.
//!
//! The flow (mapping, rules, state) is synchronous: usually tens of microseconds of CPU, but a
//! runaway script takes until the Rhai limits stop it. It runs on a flow thread (`pool`), never
//! on the async workers that serve HTTP; a flow that fetches waits on the network and gets one
//! of tokio's blocking threads instead (as many at once as its pipeline's `concurrency`).
//! Connector calls are async and run on the event's task, one after the other in the order the
//! flow produced them.
//!
//! A flow's state writes are its own until it succeeds (`state::EventState`): then they are
//! committed at once, before any action goes out, if nothing the flow read has changed
//! meanwhile; if something has, the flow runs again on the new values. A failed flow keeps no
//! writes.
//!
//! A retry starts the flow again (state operations are idempotent per order id, so a second run
//! decides the same) but skips the actions that succeeded before: the inbox remembers how many
//! went out.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::Instrument;

use super::inbox::{
    self, ActionTrail, AttemptError, CompensationTrail, DeadLetter, StoredEvent, Trail,
};
use super::retry::RetryPolicy;
use super::turns::ORDERING_HEADER;
use super::{metrics, Live, Runtime};
use crate::connectors::{CallError, Request};
use crate::flow::input::Body;
use crate::flow::{Fetch, FetchError, Flow, Keep, Outcome, RunOptions, StepError};
use crate::rules::{EventInfo, Rules};
use crate::state::{CommitError, EventState, StateStore};
use serde_json::Value;

/// Takes events off the queue and starts each on a task of its own, once its pipeline has a
/// free slot and its retry time has come.
pub(super) async fn dispatch(runtime: Arc<Runtime>, mut rx: mpsc::UnboundedReceiver<StoredEvent>) {
    while let Some(event) = rx.recv().await {
        let wait = event.meta.not_before_ms.saturating_sub(inbox::now_ms());
        let runtime = runtime.clone();
        // Entered in the order the queue hands events out (the inbox's), before any task
        // starts, so an event's place among its key's does not depend on which task runs
        // first.
        let key = event.meta.headers.get(ORDERING_HEADER).cloned();
        if let Some(key) = &key {
            runtime.turns.enter(&event.meta.pipeline, key, event.seq);
        }
        tokio::spawn(async move {
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            let (seq, id, pipeline) = (
                event.seq,
                event.meta.id.clone(),
                event.meta.pipeline.clone(),
            );
            // The turn before the slot: an event waiting for its turn holds no slot the
            // event it waits for may need.
            if let Some(key) = &key {
                runtime.turns.take(&pipeline, key, seq).await;
            }
            let limit = runtime.limit_for(&pipeline);
            let Ok(_slot) = limit.acquire_owned().await else {
                return;
            };
            // Counted before the draining check, so `drain` never sees zero while an event is
            // between the check and its start.
            runtime.running.fetch_add(1, Ordering::SeqCst);
            if !runtime.is_draining() {
                process(&runtime, event).await;
                if let Some(link) = runtime.cluster() {
                    link.settle(&runtime, seq, &id).await;
                }
                if let Some(key) = &key {
                    // Waiting for a retry, it keeps the turn; otherwise (done, or the inbox
                    // cannot be read) the next event of its key goes.
                    if !matches!(runtime.inbox.queued(&id), Ok(Some(_))) {
                        runtime.turns.release(&pipeline, key, seq);
                    }
                }
            }
            runtime.running.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// What one attempt came to.
enum Verdict {
    Done(&'static str),
    Retry {
        message: String,
        retry_after: Option<Duration>,
    },
    Fail(String),
}

/// The span of an event's run: every log line of it carries the event's id and pipeline. The
/// `traceparent` the event was received with, if any, makes its trace the sender's
/// (`telemetry`), and its log lines carry it.
fn event_span(id: &str, meta: &super::inbox::EventMeta) -> tracing::Span {
    tracing::info_span!(
        "event",
        event_id = %id,
        pipeline = %meta.pipeline,
        traceparent = meta.headers.get("traceparent").map(String::as_str),
    )
}

async fn process(runtime: &Arc<Runtime>, event: StoredEvent) {
    let span = event_span(&event.meta.id, &event.meta);
    attempt(runtime, event).instrument(span).await
}

async fn attempt(runtime: &Arc<Runtime>, mut event: StoredEvent) {
    let live = runtime.live();
    let started = Instant::now();
    // Dropped by hand (`DELETE /api/inbox/{id}`) while it waited: not run.
    if runtime.inbox.was_dropped(event.seq) {
        tracing::info!("Event was dropped from the inbox; not run");
        return;
    }
    // An event found in the inbox at start may be the one that took the engine down: its run
    // is counted on disk before it begins, and past the limit it is not run again.
    let counted = event.resumed;
    if event.resumed {
        event.resumed = false;
        if event.meta.interrupted >= runtime.settings.quarantine_after {
            let reason = format!(
                "quarantined: the engine stopped {} times while running this event (a crash, an \
                 abort or a kill), so it was not run again; find the cause (the log before each \
                 stop), then `crossdock dlq retry {}`",
                event.meta.interrupted, event.meta.id
            );
            set_aside(runtime, &live, event, reason, started);
            return;
        }
        event.meta.interrupted += 1;
        let marked = match runtime.inbox.update(&event) {
            // In a cluster the count goes where the next node to take the event reads it.
            Ok(true) => match runtime.cluster() {
                Some(link) => {
                    link.count_run(event.seq, &event.meta).await;
                    Ok(())
                }
                None => runtime.inbox.committer.durable_now().await,
            },
            // Dropped by hand since it was queued.
            Ok(false) => return,
            Err(e) => Err(e),
        };
        if let Err(e) = marked {
            tracing::error!(error = %e, "Cannot count the run on disk; the event waits for the next start");
            return;
        }
    }
    event.meta.attempts += 1;

    let Some(flow) = live.project.pipeline(&event.meta.pipeline).cloned() else {
        let reason = format!(
            "pipeline `{}` is not in the running version {}: it was removed or renamed",
            event.meta.pipeline,
            super::short(&live.project.version)
        );
        set_aside(runtime, &live, event, reason, started);
        return;
    };
    let policy = live
        .retry
        .get(&event.meta.pipeline)
        .copied()
        .unwrap_or_default();

    let info = EventInfo {
        id: event.meta.id.clone(),
        pipeline: event.meta.pipeline.clone(),
        headers: event.meta.headers.clone(),
        received_at: event.meta.received_at.clone(),
        body: Arc::new(serde_json::Value::Null),
    };
    let fetches = flow.fetches();
    let (body, state, project) = (
        event.body.clone(),
        runtime.state().clone(),
        live.project.clone(),
    );
    let fetch = LiveFetch {
        live: live.clone(),
        handle: tokio::runtime::Handle::current(),
        timeout: runtime.settings.call_timeout,
        tenant: event.meta.headers.get(super::TENANT_HEADER).cloned(),
    };
    let span = tracing::Span::current();
    let max_writes = runtime.settings.max_event_writes;
    let full = event.meta.full_rerun;
    let marker = runtime.applied_key(&event.meta.id);
    // The explanation lives in the trail: with trails kept for no time (`keep_trails: 0s`) or
    // no bytes, it is not made at all.
    let explain = !runtime.settings.trail_keep.is_zero() && runtime.settings.trail_keep_bytes > 0;
    let run = move || {
        let _in_event = span.enter();
        // Timed here: the wait for a flow thread is not the flow's.
        let started = Instant::now();
        let (outcome, applied) = run_committed(
            &flow,
            &project.rules,
            info,
            &body,
            &state,
            &fetch,
            max_writes,
            (full, explain),
            marker,
        );
        (outcome, started.elapsed().as_micros() as u64, applied)
    };
    // A flow that fetches waits on the network (and blocks on the runtime to do it): a flow
    // thread would sit idle meanwhile, so it gets a blocking thread. Any other flow goes to the
    // flow threads, fairly across pipelines.
    let ran = if fetches {
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| e.to_string())
    } else {
        runtime
            .flows
            .run(&event.meta.pipeline, run)
            .await
            .map_err(|e| e.to_string())
    };
    // The run came to an end (whatever its outcome): it was not interrupted.
    if counted {
        event.meta.interrupted = event.meta.interrupted.saturating_sub(1);
    }
    let (mut outcome, flow_us, applied) = match ran {
        Ok(ran) => ran,
        Err(e) => {
            let verdict = Verdict::Fail(format!("the flow stopped abnormally: {e}"));
            conclude(
                runtime,
                &live,
                event,
                verdict,
                (Vec::new(), Vec::new(), None),
                (0, false),
                &policy,
                started,
            )
            .await;
            return;
        }
    };
    // Read by this run's version of the pipeline: a reload may have changed `keys:`.
    event.meta.keys = std::mem::take(&mut outcome.keys)
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    if outcome.ok() {
        // The state is committed (now or by an earlier run): what its undo steps owe is kept
        // with the event from here on.
        event.meta.undo = std::mem::take(&mut outcome.undo);
        event.meta.full_rerun = false;
    }
    let (verdict, actions) = execute(runtime, &live, &mut event, &outcome).await;
    let explanation = outcome.explanation.map(|mut e| {
        e.mask_strings(&|s| live.project.redactor.redact(s));
        e
    });
    let trace = (outcome.steps, actions, explanation);
    conclude(
        runtime,
        &live,
        event,
        verdict,
        trace,
        (flow_us, applied),
        &policy,
        started,
    )
    .await;
}

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
fn run_committed(
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
async fn execute(
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
        let tenant = event.meta.headers.get(super::TENANT_HEADER);
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
struct LiveFetch {
    live: Arc<Live>,
    handle: tokio::runtime::Handle,
    timeout: Duration,
    /// The event's tenant, which picks the instance of a per-tenant connector.
    tenant: Option<String>,
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

/// What an attempt's trail tells of its flow: the steps that ran, the actions and what each
/// step saw and did.
type Trace = (
    Vec<Arc<str>>,
    Vec<ActionTrail>,
    Option<Box<crate::flow::explain::Explanation>>,
);

#[allow(clippy::too_many_arguments)]
async fn conclude(
    runtime: &Arc<Runtime>,
    live: &Arc<Live>,
    mut event: StoredEvent,
    verdict: Verdict,
    (steps, actions, explanation): Trace,
    (flow_us, applied): (u64, bool),
    policy: &RetryPolicy,
    started: Instant,
) {
    let pipeline = event.meta.pipeline.clone();
    // A failed attempt is on the event's record before its trail is drawn up.
    if let Verdict::Retry { message, .. } | Verdict::Fail(message) = &verdict {
        metrics::failed(&pipeline);
        event.meta.errors.push(AttemptError {
            at: inbox::now_rfc3339(),
            message: message.clone(),
        });
    }
    let mut trail = new_trail(live, &event, "processed", started);
    trail.steps = steps;
    trail.actions = actions;
    trail.explanation = explanation;
    trail.flow_us = flow_us;
    let stored = match verdict {
        Verdict::Done(status) => {
            trail.status = status.into();
            metrics::processed(&pipeline, status, started.elapsed().as_secs_f64());
            finished(&trail);
            let finished = runtime.inbox.finish(&event, &trail);
            // Nothing runs this event again once it is out of the inbox: its `applied/` key
            // has served (a crash before this line leaves a stray key, which harms nothing).
            if finished.is_ok() && applied {
                let key = [runtime.applied_key(&event.meta.id)];
                if let Err(e) = runtime
                    .state()
                    .update(&key, &mut |_| Ok((vec![None], Value::Null)))
                {
                    tracing::warn!(error = %e, "Cannot remove the event's applied key");
                }
            }
            finished
        }
        Verdict::Retry {
            message,
            retry_after,
        } => {
            if event.meta.attempts < policy.attempts {
                let delay = policy.delay(event.meta.attempts, retry_after);
                event.meta.not_before_ms = inbox::now_ms() + delay.as_millis() as u64;
                trail.status = "retrying".into();
                tracing::info!(attempt = event.meta.attempts, delay_ms = delay.as_millis() as u64, error = %message, "Retrying later");
                // Dropped by hand while it ran: not written back (the drop left its trail).
                match runtime.inbox.update(&event) {
                    Ok(true) => {
                        let saved = runtime.inbox.put_trail(event.seq, &trail);
                        if saved.is_ok() {
                            runtime.enqueue(event);
                        }
                        saved
                    }
                    Ok(false) => {
                        runtime.inbox.was_dropped(event.seq);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            } else {
                let reason = format!("gave up after {} attempts: {message}", event.meta.attempts);
                return give_up(runtime, live, event, trail, reason, policy).await;
            }
        }
        Verdict::Fail(message) => {
            return give_up(runtime, live, event, trail, message, policy).await
        }
    };
    if let Err(e) = stored {
        tracing::error!(error = %e, "Cannot record the event's outcome; it stays in the inbox");
    }
}

/// The event failed for good: its compensations run (see [`compensate`]), then it becomes a
/// dead letter or, for a pipeline that keeps none, is dropped.
async fn give_up(
    runtime: &Arc<Runtime>,
    live: &Arc<Live>,
    mut event: StoredEvent,
    mut trail: Trail,
    reason: String,
    policy: &RetryPolicy,
) {
    trail.compensations = compensate(runtime, live, &mut event, policy).await;
    if policy.dead_letter {
        trail.status = "dead_lettered".into();
        dead_letter(runtime, live, event, trail, reason);
    } else {
        trail.status = "failed".into();
        tracing::warn!(error = %reason, "Event failed; the pipeline keeps no dead letters");
        finished(&trail);
        if let Err(e) = runtime.inbox.finish(&event, &trail) {
            tracing::error!(error = %e, "Cannot record the event's outcome; it stays in the inbox");
        }
    }
}

/// Dead-letters an event without running it, the reason on its trail as its one error.
fn set_aside(runtime: &Runtime, live: &Live, event: StoredEvent, reason: String, started: Instant) {
    let mut trail = new_trail(live, &event, "dead_lettered", started);
    trail.errors.push(AttemptError {
        at: inbox::now_rfc3339(),
        message: reason.clone(),
    });
    dead_letter(runtime, live, event, trail, reason);
}

fn dead_letter(runtime: &Runtime, live: &Live, event: StoredEvent, trail: Trail, reason: String) {
    tracing::warn!(error = %reason, "Event dead-lettered");
    finished(&trail);
    metrics::dead_lettered(&event.meta.pipeline);
    let body = serde_json::from_slice(&event.body).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&event.body).into_owned())
    });
    let letter = DeadLetter {
        event: event.meta.clone(),
        body,
        reason,
        version: live.project.version.clone(),
        dead_at: inbox::now_rfc3339(),
    };
    if let Err(e) = runtime.inbox.dead_letter(&event, &trail, &letter) {
        tracing::error!(error = %e, "Cannot write the dead letter; the event stays in the inbox")
    }
}

/// The one line per finished event (done, skipped, failed or dead-lettered; not a retry, which
/// has its own). Its own target, so it can be turned down alone:
/// `--log-level info,crossdock::event=warn`.
fn finished(trail: &Trail) {
    tracing::info!(
        target: "crossdock::event",
        pipeline = %trail.pipeline,
        event_id = %trail.event_id,
        outcome = %trail.status,
        ms = trail.total_ms,
        actions = trail.actions.len(),
        attempts = trail.attempts,
        "Event finished"
    );
}

fn new_trail(live: &Live, event: &StoredEvent, status: &str, started: Instant) -> Trail {
    let total_ms = chrono::DateTime::parse_from_rfc3339(&event.meta.received_at)
        .map(|at| {
            (chrono::Utc::now() - at.with_timezone(&chrono::Utc))
                .num_milliseconds()
                .max(0) as u64
        })
        .unwrap_or_else(|_| started.elapsed().as_millis() as u64);
    Trail {
        event_id: event.meta.id.clone(),
        pipeline: event.meta.pipeline.clone(),
        version: live.project.version.clone(),
        received_at: event.meta.received_at.clone(),
        finished_at: inbox::now_rfc3339(),
        status: status.into(),
        attempts: event.meta.attempts,
        steps: Vec::new(),
        actions: Vec::new(),
        errors: event.meta.errors.clone(),
        flow_us: 0,
        total_ms,
        compensations: Vec::new(),
        keys: event.meta.keys.clone(),
        tenant: event.meta.headers.get(super::TENANT_HEADER).cloned(),
        explanation: None,
    }
}

/// Runs what the event's steps with `undo:` owe, the latest step's first, each once (a
/// compensation that succeeded is recorded with the event and not run again). A failure worth
/// retrying is retried as the pipeline's `on_error.retry` says, waiting in place; one that
/// still fails stays owed and runs again when the dead letter is dropped. Once all are done,
/// the event owes nothing and its state counts as never applied: a dead letter retried then
/// runs afresh, its undone effects done again.
pub(super) async fn compensate(
    runtime: &Arc<Runtime>,
    live: &Arc<Live>,
    event: &mut StoredEvent,
    policy: &RetryPolicy,
) -> Vec<CompensationTrail> {
    let mut trails = Vec::new();
    if event.meta.undo.is_empty() {
        return trails;
    }
    let Some(flow) = live.project.pipeline(&event.meta.pipeline).cloned() else {
        trails.push(CompensationTrail {
            step: String::new(),
            status: "failed".into(),
            steps: Vec::new(),
            actions: Vec::new(),
            error: Some(format!(
                "pipeline `{}` is not in the running version: its undo steps cannot run",
                event.meta.pipeline
            )),
        });
        return trails;
    };
    let owed = event.meta.undo.clone();
    let mut all_done = true;
    for undo in owed.iter().rev() {
        let done_key = format!("undo:{}", undo.step);
        if event.meta.done.contains(&done_key) {
            continue;
        }
        if undo.send && !event.meta.done.contains(&undo.step) {
            trails.push(CompensationTrail {
                step: undo.step.clone(),
                status: "not_needed".into(),
                steps: Vec::new(),
                actions: Vec::new(),
                error: None,
            });
            continue;
        }
        let mut tries = 0;
        let trail = loop {
            tries += 1;
            let (retry, trail) = compensate_one(runtime, live, &flow, event, undo).await;
            match retry {
                Some(after) if tries < policy.attempts && !runtime.is_draining() => {
                    tokio::time::sleep(policy.delay(tries, after)).await;
                }
                _ => break trail,
            }
        };
        if trail.status == "done" {
            tracing::info!(step = %undo.step, "Compensated");
            event.meta.done.insert(done_key);
            if undo.send {
                event.meta.done.remove(&undo.step);
            }
        } else {
            tracing::warn!(step = %undo.step, error = ?trail.error, "Compensation failed; still owed");
            all_done = false;
        }
        trails.push(trail);
    }
    if all_done {
        let marker = [runtime.applied_key(&event.meta.id)];
        match runtime
            .state()
            .update(&marker, &mut |_| Ok((vec![None], Value::Null)))
        {
            Ok(_) => {
                event.meta.undo.clear();
                // The undo steps' own effects go too, so that a later failure undoes again.
                event
                    .meta
                    .done
                    .retain(|k| !k.starts_with("undo:") && !k.contains(".undo["));
            }
            Err(e) => tracing::error!(error = %e, "Cannot mark the compensated state as undone"),
        }
    }
    trails
}

/// One compensation: its undo steps on a flow's blocking thread (they may fetch), their state
/// committed as a flow's is, then their actions. Gives `Some(retry_after)` when a failure is
/// worth retrying.
async fn compensate_one(
    runtime: &Arc<Runtime>,
    live: &Arc<Live>,
    flow: &Arc<Flow>,
    event: &mut StoredEvent,
    undo: &crate::flow::Undo,
) -> (Option<Option<Duration>>, CompensationTrail) {
    let info = EventInfo {
        id: event.meta.id.clone(),
        pipeline: event.meta.pipeline.clone(),
        headers: event.meta.headers.clone(),
        received_at: event.meta.received_at.clone(),
        body: Arc::new(serde_json::from_slice(&event.body).unwrap_or(Value::Null)),
    };
    let (flow, project, state, undo_owned) = (
        flow.clone(),
        live.project.clone(),
        runtime.state().clone(),
        undo.clone(),
    );
    let fetch = LiveFetch {
        live: live.clone(),
        handle: tokio::runtime::Handle::current(),
        timeout: runtime.settings.call_timeout,
        tenant: event.meta.headers.get(super::TENANT_HEADER).cloned(),
    };
    let max_writes = runtime.settings.max_event_writes;
    let ran = tokio::task::spawn_blocking(move || {
        let event_state = Arc::new(EventState::new(state, max_writes));
        let view: Arc<dyn StateStore> = event_state.clone();
        let mut outcome = flow.compensate(&project.rules, &info, &undo_owned, &view, &fetch);
        if outcome.ok() {
            if let Err(e) = event_state.commit() {
                if !matches!(e, CommitError::TooManyKeys(_)) {
                    outcome.retry = Some(None);
                }
                outcome.errors.push(StepError {
                    step: "state".into(),
                    message: e.to_string(),
                });
            }
        }
        outcome
    })
    .await;
    let mut trail = CompensationTrail {
        step: undo.step.clone(),
        status: "failed".into(),
        steps: Vec::new(),
        actions: Vec::new(),
        error: None,
    };
    let outcome = match ran {
        Ok(outcome) => outcome,
        Err(e) => {
            trail.error = Some(format!("the undo steps stopped abnormally: {e}"));
            return (None, trail);
        }
    };
    let (verdict, actions) = execute(runtime, live, event, &outcome).await;
    trail.steps = outcome.steps;
    trail.actions = actions;
    match verdict {
        Verdict::Done(_) => {
            trail.status = "done".into();
            (None, trail)
        }
        Verdict::Retry {
            message,
            retry_after,
        } => {
            trail.error = Some(message);
            (Some(retry_after), trail)
        }
        Verdict::Fail(message) => {
            trail.error = Some(message);
            (None, trail)
        }
    }
}

/// What dropping a dead letter came to.
#[derive(Debug)]
pub enum Dropped {
    NotFound,
    /// Dropped, after the compensations it owed (if any) ran.
    Dropped(Vec<CompensationTrail>),
    /// A compensation failed: the letter stays, with what was done recorded, to be dropped again.
    Owed(Vec<CompensationTrail>),
}

/// Runs the compensations a dead letter owes; returns its meta after them (what is still owed
/// stays in `undo`) and their trails.
pub(super) async fn undo_letter(
    runtime: &Arc<Runtime>,
    seq: u64,
    letter: &inbox::DeadLetter,
) -> (inbox::EventMeta, Vec<CompensationTrail>) {
    let live = runtime.live();
    let policy = live
        .retry
        .get(&letter.event.pipeline)
        .copied()
        .unwrap_or_default();
    let mut event = StoredEvent {
        seq,
        meta: letter.event.clone(),
        body: Arc::from(inbox::letter_body(&letter.body)),
        resumed: false,
    };
    let span = event_span(&letter.event.id, &event.meta);
    let trails = compensate(runtime, &live, &mut event, &policy)
        .instrument(span)
        .await;
    (event.meta, trails)
}

/// Drops a dead letter, first running the compensations it owes unless `undo` is false. Its
/// trail gets them.
pub async fn drop_dead_letter(
    runtime: &Arc<Runtime>,
    id: &str,
    undo: bool,
) -> Result<Dropped, inbox::InboxError> {
    let (Some(mut letter), Some(seq)) = (
        runtime.inbox.get_dead_letter(id)?,
        inbox::parse_event_id(id),
    ) else {
        return Ok(Dropped::NotFound);
    };
    let mut trails = Vec::new();
    if undo && !letter.event.undo.is_empty() {
        let (meta, done) = undo_letter(runtime, seq, &letter).await;
        trails = done;
        if let Some(mut trail) = runtime.inbox.trail(id)? {
            trail.compensations.extend(trails.iter().cloned());
            runtime.inbox.put_trail(seq, &trail)?;
        }
        if !meta.undo.is_empty() {
            letter.event = meta;
            runtime.inbox.update_dead_letter(&letter)?;
            return Ok(Dropped::Owed(trails));
        }
    }
    runtime.inbox.drop_dead_letter(id)?;
    Ok(Dropped::Dropped(trails))
}
