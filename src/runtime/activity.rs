//! What the console's overview draws per pipeline: the last hour's events per minute
//! (received, processed, failed, dead-lettered) and the event duration's p50 and p99.
//!
//! In memory only, and fixed in size: a ring of [`MINUTES`] minutes of counters and a
//! histogram of [`BUCKETS`] duration buckets per pipeline, all atomics, found by name through
//! a read lock (no allocation per event; a pipeline's entry is made once). Must not be a
//! second metrics system: `/metrics` stays the record; these figures restart with the engine.
//!
//! A minute's slot is reused an hour later: the first count of the new minute claims it and
//! zeroes it, and a count racing with that claim at the minute's edge may be lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Minutes kept.
pub const MINUTES: usize = 60;
/// Duration buckets: bucket `i` holds durations up to `0.5 ms * 2^(i/2)`, the last one the rest
/// (from about 9 minutes): each bound within 42% of the next.
pub const BUCKETS: usize = 40;

/// What a count counts.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Received = 0,
    /// Finished: processed, skipped or filtered.
    Processed = 1,
    /// An attempt failed (it may be retried).
    Failed = 2,
    DeadLettered = 3,
}

#[derive(Default)]
struct Minute {
    /// The minute (since the epoch) plus one whose counts the slot holds; 0: none yet.
    stamp: AtomicU64,
    counts: [AtomicU64; 4],
}

/// One pipeline's figures.
pub struct Activity {
    minutes: [Minute; MINUTES],
    durations: [AtomicU64; BUCKETS],
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            minutes: std::array::from_fn(|_| Minute::default()),
            durations: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn now_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0)
}

/// The bucket of a duration in seconds.
fn bucket(seconds: f64) -> usize {
    let halves = 2.0 * (seconds / 0.0005).log2();
    if halves.is_nan() || halves <= 0.0 {
        return 0;
    }
    (halves.ceil() as usize).min(BUCKETS - 1)
}

/// The upper bound of bucket `i`, in milliseconds.
fn bound_ms(i: usize) -> f64 {
    0.5 * 2f64.powf(i as f64 / 2.0)
}

impl Activity {
    pub fn count(&self, kind: Kind) {
        self.count_at(kind, now_minute());
    }

    fn count_at(&self, kind: Kind, minute: u64) {
        let slot = &self.minutes[(minute % MINUTES as u64) as usize];
        let stamp = slot.stamp.load(Ordering::Acquire);
        if stamp != minute + 1
            && slot
                .stamp
                .compare_exchange(stamp, minute + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            for c in &slot.counts {
                c.store(0, Ordering::Relaxed);
            }
        }
        slot.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// An event's run took `seconds`.
    pub fn duration(&self, seconds: f64) {
        self.durations[bucket(seconds)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_at(now_minute())
    }

    fn snapshot_at(&self, now: u64) -> Snapshot {
        let mut per_minute = PerMinute {
            start_minute: now.saturating_sub(MINUTES as u64 - 1) * 60,
            ..PerMinute::default()
        };
        for age in (0..MINUTES as u64).rev() {
            let Some(minute) = now.checked_sub(age) else {
                for series in per_minute.series_mut() {
                    series.push(0);
                }
                continue;
            };
            let slot = &self.minutes[(minute % MINUTES as u64) as usize];
            let current = slot.stamp.load(Ordering::Acquire) == minute + 1;
            for (i, series) in per_minute.series_mut().into_iter().enumerate() {
                series.push(if current {
                    slot.counts[i].load(Ordering::Relaxed)
                } else {
                    0
                });
            }
        }
        let counts: Vec<u64> = self
            .durations
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let quantile = |q: f64| -> Option<f64> {
            if total == 0 {
                return None;
            }
            let wanted = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in counts.iter().enumerate() {
                seen += n;
                if seen >= wanted {
                    return Some(bound_ms(i));
                }
            }
            Some(bound_ms(BUCKETS - 1))
        };
        Snapshot {
            per_minute,
            latency_ms: Latency {
                events: total,
                p50: quantile(0.5),
                p99: quantile(0.99),
            },
        }
    }
}

/// The last [`MINUTES`] minutes, oldest first; the last is the minute now running.
#[derive(Debug, Default, Serialize)]
pub struct PerMinute {
    /// The first minute's start, in seconds since the epoch.
    pub start_minute: u64,
    pub received: Vec<u64>,
    pub processed: Vec<u64>,
    pub failed: Vec<u64>,
    pub dead_lettered: Vec<u64>,
}

impl PerMinute {
    fn series_mut(&mut self) -> [&mut Vec<u64>; 4] {
        [
            &mut self.received,
            &mut self.processed,
            &mut self.failed,
            &mut self.dead_lettered,
        ]
    }
}

/// Event durations since the engine started: each quantile is the upper bound of its
/// bucket, so it errs high by less than the bucket's width.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub events: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub per_minute: PerMinute,
    pub latency_ms: Latency,
}

type Table = RwLock<HashMap<Box<str>, Arc<Activity>, rustc_hash::FxBuildHasher>>;

static PIPELINES: LazyLock<Table> = LazyLock::new(Table::default);

/// `pipeline`'s figures, made the first time it is named. Names come from the project, so
/// the table is bounded by the pipelines ever loaded.
pub fn of(pipeline: &str) -> Arc<Activity> {
    if let Some(a) = PIPELINES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(pipeline)
    {
        return a.clone();
    }
    PIPELINES
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(pipeline.into())
        .or_default()
        .clone()
}

/// `pipeline`'s figures now (zeros for one that has seen nothing).
pub fn snapshot(pipeline: &str) -> Snapshot {
    let found = PIPELINES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(pipeline)
        .cloned();
    match found {
        Some(a) => a.snapshot(),
        None => Activity::default().snapshot(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_minute_and_an_old_slot_is_reused() {
        let a = Activity::default();
        let now = 29_000_000;
        a.count_at(Kind::Received, now - 2);
        a.count_at(Kind::Received, now);
        a.count_at(Kind::Received, now);
        a.count_at(Kind::DeadLettered, now);
        // An hour before `now - 1`: its slot is `now - 1`'s, and is gone by then.
        a.count_at(Kind::Failed, now - 1 - MINUTES as u64);
        let s = a.snapshot_at(now);
        let r = &s.per_minute.received;
        assert_eq!(r.len(), MINUTES);
        assert_eq!(&r[MINUTES - 3..], &[1, 0, 2]);
        assert_eq!(s.per_minute.dead_lettered[MINUTES - 1], 1);
        assert!(s.per_minute.failed.iter().all(|n| *n == 0));
        assert_eq!(s.per_minute.start_minute, (now - 59) * 60);
        // The slot of `now - 2` is claimed again an hour later, from zero.
        a.count_at(Kind::Processed, now - 2 + MINUTES as u64);
        let later = a.snapshot_at(now - 2 + MINUTES as u64);
        assert_eq!(later.per_minute.received[MINUTES - 1], 0);
        assert_eq!(later.per_minute.processed[MINUTES - 1], 1);
    }

    #[test]
    fn quantiles_are_bucket_bounds_above_the_durations() {
        let a = Activity::default();
        assert_eq!(a.snapshot_at(1).latency_ms.p50, None);
        for _ in 0..98 {
            a.duration(0.010);
        }
        a.duration(2.0);
        a.duration(2.0);
        let l = a.snapshot_at(1).latency_ms;
        assert_eq!(l.events, 100);
        let (p50, p99) = (l.p50.unwrap(), l.p99.unwrap());
        assert!((10.0..14.2).contains(&p50), "{p50}");
        assert!((2000.0..2830.0).contains(&p99), "{p99}");
        assert_eq!(bucket(0.0), 0);
        assert_eq!(bucket(-1.0), 0);
        assert_eq!(bucket(f64::NAN), 0);
        assert_eq!(bucket(1e9), BUCKETS - 1);
    }
}
