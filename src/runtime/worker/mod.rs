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
//!
//! Here: taking events off the queue and one attempt of each; running its flow and actions in
//! `run.rs`, what the attempt came to (done, retried, dead-lettered) in `outcome.rs`, the
//! compensations a failed event owes in `compensate.rs`.

mod compensate;
mod outcome;
mod run;

use compensate::compensate;
pub(super) use compensate::undo_letter;
pub use compensate::{drop_dead_letter, Dropped};
use outcome::{conclude, set_aside};
use run::{execute, run_committed, LiveFetch};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::Instrument;

use super::inbox::{self, StoredEvent};
use super::turns::ORDERING_HEADER;
use super::Runtime;
use crate::rules::EventInfo;

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
        e.mask_strings(&|s| live.project.redactor.masked(s));
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
