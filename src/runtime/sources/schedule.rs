//! The `schedule` source: a tick event at each time its cron expression names (UTC).
//!
//! Owns the tick: when the next one is ([`next_tick`]), what it looks like ([`tick`]) and the
//! task that waits for it. A tick's body is `{"tick": "<RFC 3339 time>", "schedule": "<cron>"}`
//! with the scheduled time, not the time it fired, and its dedup key
//! `tick:<pipeline>:<scheduled time>`: a restart within the same second, or two runtimes on one
//! inbox, do not fire one tick twice.
//!
//! Missed ticks are not replayed: the task waits for the next time after it starts, so a tick
//! due while the engine was down (or busy draining) never fires. A schedule is "at these
//! times, when running", not a backlog.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use super::SourceCx;
use crate::config::cron::CronExpr;
use crate::config::model::ScheduleSource;
use crate::runtime::Submitted;

/// The first tick strictly after `now`; `None` when the expression never matches again.
pub fn next_tick(cron: &CronExpr, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.next_after(now)
}

/// A tick's dedup key and body.
pub fn tick(pipeline: &str, cron: &CronExpr, at: DateTime<Utc>) -> (String, serde_json::Value) {
    let at = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    (
        format!("tick:{pipeline}:{at}"),
        json!({ "tick": at, "schedule": cron.as_str() }),
    )
}

pub(super) async fn run(mut cx: SourceCx, source: ScheduleSource) {
    let cron = match CronExpr::parse(&source.cron) {
        Ok(c) => c,
        Err(e) => {
            // `check` refuses this, so only a project loaded around it gets here.
            tracing::error!(error = %e, "Schedule cannot run");
            return cx.idle().await;
        }
    };
    loop {
        let Some(at) = next_tick(&cron, Utc::now()) else {
            tracing::warn!(cron = cron.as_str(), "The schedule never fires again");
            return cx.idle().await;
        };
        // Sleep by the wall clock: the monotonic clock may drift from it over a long wait, so
        // wake and look again until the time has come.
        loop {
            let left = (at - Utc::now()).to_std().unwrap_or_default();
            if left.is_zero() {
                break;
            }
            if cx.sleep(left).await {
                return;
            }
        }
        if cx.stopped() {
            return;
        }
        let (key, body) = tick(&cx.pipeline, &cron, at);
        let mut headers = super::headers("schedule");
        headers.insert("x-crossdock-schedule".into(), cron.as_str().to_string());
        match cx
            .runtime
            .submit(&cx.pipeline, &[&key], headers, body.to_string().as_bytes())
            .await
        {
            Ok(Submitted::New(id)) => tracing::debug!(event_id = %id, tick = %at, "Tick"),
            Ok(Submitted::Duplicate(_)) => tracing::debug!(tick = %at, "Tick already fired"),
            // The tick is lost: it is not replayed, like a tick missed while down.
            Err(e) => tracing::error!(error = %e, tick = %at, "Cannot accept the tick"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ticks_follow_the_expression() {
        let hourly = CronExpr::parse("0 * * * *").unwrap();
        let mut now = at("2026-05-31T22:59:59.900Z");
        let mut ticks = Vec::new();
        for _ in 0..3 {
            let t = next_tick(&hourly, now).unwrap();
            ticks.push(t.to_rfc3339());
            now = t;
        }
        assert_eq!(
            ticks,
            [
                "2026-05-31T23:00:00+00:00",
                "2026-06-01T00:00:00+00:00",
                "2026-06-01T01:00:00+00:00"
            ]
        );
        let never = CronExpr::parse("0 0 30 2 *").unwrap();
        assert_eq!(next_tick(&never, now), None);
    }

    #[test]
    fn a_tick_is_keyed_by_pipeline_and_scheduled_time() {
        let cron = CronExpr::parse("*/5 * * * *").unwrap();
        let t = next_tick(&cron, at("2026-01-01T09:03:12.5Z")).unwrap();
        let (key, body) = tick("nightly", &cron, t);
        assert_eq!(key, "tick:nightly:2026-01-01T09:05:00Z");
        assert_eq!(
            body,
            json!({"tick": "2026-01-01T09:05:00Z", "schedule": "*/5 * * * *"})
        );
        // A restart computes the same key for the same tick.
        let again = next_tick(&cron, at("2026-01-01T09:04:59Z")).unwrap();
        assert_eq!(tick("nightly", &cron, again).0, key);
    }
}
