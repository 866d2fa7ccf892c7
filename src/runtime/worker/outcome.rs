//! What an attempt came to: the event done, retried later with back-off, or given up (its
//! compensations, then a dead letter or a drop), its trail written and its one log line. Runs
//! no flow and calls no connector itself (`run.rs`, `compensate.rs`).

use std::sync::Arc;
use std::time::Instant;

use crate::runtime::inbox::{self, ActionTrail, AttemptError, DeadLetter, StoredEvent, Trail};
use crate::runtime::retry::RetryPolicy;
use crate::runtime::{metrics, Live, Runtime};
use serde_json::Value;

use super::{compensate, Verdict};

/// What an attempt's trail tells of its flow: the steps that ran, the actions and what each
/// step saw and did.
pub(super) type Trace = (
    Vec<Arc<str>>,
    Vec<ActionTrail>,
    Option<Box<crate::flow::explain::Explanation>>,
);

#[allow(clippy::too_many_arguments)]
pub(super) async fn conclude(
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
pub(super) fn set_aside(
    runtime: &Runtime,
    live: &Live,
    event: StoredEvent,
    reason: String,
    started: Instant,
) {
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

pub(super) fn new_trail(live: &Live, event: &StoredEvent, status: &str, started: Instant) -> Trail {
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
        tenant: event
            .meta
            .headers
            .get(crate::runtime::TENANT_HEADER)
            .cloned(),
        explanation: None,
    }
}
