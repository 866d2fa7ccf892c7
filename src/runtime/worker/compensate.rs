//! Compensations: the `undo:` steps a failed event owes, latest first, each once, retried in
//! place as the pipeline's `on_error.retry` says; and dropping a dead letter after running
//! what it owes. Must not dead-letter or retry an event itself (`outcome.rs`).

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::flow::{Flow, StepError};
use crate::rules::EventInfo;
use crate::runtime::inbox::{self, CompensationTrail, StoredEvent};
use crate::runtime::retry::RetryPolicy;
use crate::runtime::{Live, Runtime};
use crate::state::{CommitError, EventState, StateStore};
use serde_json::Value;

use super::{event_span, execute, LiveFetch, Verdict};

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
        tenant: event
            .meta
            .headers
            .get(crate::runtime::TENANT_HEADER)
            .cloned(),
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
pub(in crate::runtime) async fn undo_letter(
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
