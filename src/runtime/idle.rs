//! Giving back the memory the state store holds. sled 0.34 keeps in memory what was written
//! (its own copies of the trails and raw deliveries, far past `state.cache`), and only closing
//! the database frees it (`state::sled`, `open`); so the store is closed and opened again
//! once the engine has gone quiet, and under a steady load after a number of writes.
//!
//! Owns when to reopen: no write through the store for [`super::Settings::state_reopen_idle`]
//! after at least [`MIN_WRITES`] since the last reopen (a trickle of events must not reopen the
//! store after each one: a reopen costs sled's recovery, and calls wait for it), or
//! [`super::Settings::state_reopen_every`] writes since the last reopen, quiet or not (a store
//! that is never idle would otherwise hold more and more). After a reopen it asks every thread
//! to hand its free memory back to the system (`crate::allocator`). The reopen itself, and that
//! nothing is lost by it, are the store's. Must not touch the inbox or events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::state::SledStore;

/// Writes since the last reopen below which the memory is not worth a reopen: sled holds a
/// few kilobytes per write.
pub const MIN_WRITES: u64 = 1_000;

/// When to reopen the store: after `idle` without a write, and after `every` writes
/// (`None`: only once idle).
#[derive(Debug, Clone, Copy)]
pub(super) struct When {
    pub idle: Duration,
    pub every: Option<u64>,
}

/// Reopens `store` whenever it has been written `MIN_WRITES` times and then left unwritten
/// for `when.idle`, or written `when.every` times. Runs for the life of the engine; returns
/// at once for a store that cannot be reopened (a temporary one).
pub(super) async fn reopen_store(store: Arc<SledStore>, when: When) {
    if !store.can_reopen() {
        return;
    }
    let mut tick = tokio::time::interval(
        (when.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = store.writes();
    let mut quiet_since = Instant::now();
    let mut at_reopen = seen;
    // After a failed reopen, the next try waits this long whatever the writes.
    let mut not_before = Instant::now();
    loop {
        tick.tick().await;
        if Instant::now() < not_before {
            continue;
        }
        let writes = store.writes();
        let since = writes.saturating_sub(at_reopen);
        let busy = when
            .every
            .is_some_and(|every| since >= every.max(MIN_WRITES));
        if !busy {
            if writes != seen {
                seen = writes;
                quiet_since = Instant::now();
                continue;
            }
            if since < MIN_WRITES || quiet_since.elapsed() < when.idle {
                continue;
            }
        }
        let why = if busy { "under_load" } else { "idle" };
        let started = Instant::now();
        let reopening = store.clone();
        let reopened = tokio::task::spawn_blocking(move || {
            let reopened = reopening.reopen();
            // What sled held is free now, in pages of the threads that wrote it.
            crate::allocator::collect_everywhere();
            reopened
        })
        .await;
        match reopened {
            Ok(Ok(true)) => {
                super::metrics::state_reopened(why);
                tracing::info!(
                    writes = since,
                    took_ms = started.elapsed().as_millis() as u64,
                    why,
                    "State store reopened, to give back the memory sled held"
                );
                // A worker that is asleep collects when it next parks: wake them.
                for _ in 0..WAKE_TASKS {
                    tokio::spawn(async { crate::allocator::collect_if_asked() });
                }
            }
            // Cannot happen: checked above.
            Ok(Ok(false)) => return,
            // Tried again after another quiet period's time, not at every tick: a store left
            // closed by a failed reopen fails every call until one succeeds.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Reopening the state store failed");
                not_before = Instant::now() + when.idle;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Reopening the state store stopped");
                not_before = Instant::now() + when.idle;
                continue;
            }
        }
        at_reopen = store.writes();
        seen = at_reopen;
        quiet_since = Instant::now();
    }
}

/// Tasks spawned after a reopen to wake the async workers, more than they are in number so that
/// each is likely to run one (tokio gives no way to reach a given worker).
const WAKE_TASKS: usize = 16;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::StateStore;

    fn write(store: &SledStore, table: &crate::state::Table, from: u64, n: u64) {
        for i in from..from + n {
            table.insert(&i.to_be_bytes(), &[7; 100]).unwrap();
        }
        assert!(store.writes() >= from + n);
    }

    #[tokio::test]
    async fn the_store_is_reopened_once_quiet_after_enough_writes_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let table = store.table("t").unwrap();
        let idle = Duration::from_millis(200);
        tokio::spawn(reopen_store(store.clone(), When { idle, every: None }));
        // Counted from where the store stood when the watch began.
        tokio::task::yield_now().await;
        write(&store, &table, 0, MIN_WRITES);
        tokio::time::sleep(idle * 4).await;
        assert_eq!(store.reopens(), 1);
        // Quiet, nothing new written: no second reopen.
        tokio::time::sleep(idle * 3).await;
        assert_eq!(store.reopens(), 1);
        // Too few writes to be worth one.
        write(&store, &table, MIN_WRITES, 10);
        tokio::time::sleep(idle * 3).await;
        assert_eq!(store.reopens(), 1);
        // Writes that keep coming put it off; once they stop, it comes.
        for round in 0..6 {
            write(&store, &table, MIN_WRITES + 10 + round * 200, 200);
            tokio::time::sleep(idle / 2).await;
        }
        assert_eq!(store.reopens(), 1);
        tokio::time::sleep(idle * 4).await;
        assert_eq!(store.reopens(), 2);
        assert_eq!(table.len() as u64, MIN_WRITES + 10 + 1200);
    }

    #[tokio::test]
    async fn a_temporary_store_is_left_alone() {
        let store = Arc::new(SledStore::temporary().unwrap());
        // Returns: there is nothing to do for the life of the engine.
        tokio::time::timeout(
            Duration::from_secs(5),
            reopen_store(
                store.clone(),
                When {
                    idle: Duration::from_millis(50),
                    every: Some(MIN_WRITES),
                },
            ),
        )
        .await
        .unwrap();
        assert_eq!(store.reopens(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_a_steady_load_the_store_is_reopened_every_so_many_writes_and_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let table = store.table("t").unwrap();
        // Never idle long enough: only the count of writes reopens it.
        let when = When {
            idle: Duration::from_secs(3600),
            every: Some(MIN_WRITES),
        };
        tokio::spawn(reopen_store(store.clone(), when));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..3u64)
            .map(|w| {
                let (store, table, stop) = (store.clone(), table.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let key = format!("w{w}/{n:06}");
                        table.insert(key.as_bytes(), &[7; 100]).unwrap();
                        store
                            .update(std::slice::from_ref(&key), &mut |_| {
                                Ok((vec![Some(serde_json::json!(n))], serde_json::json!(null)))
                            })
                            .unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        // Generous: a loaded machine writes slowly; the writers never pause meanwhile.
        let deadline = Instant::now() + Duration::from_secs(120);
        while store.reopens() < 3 {
            assert!(
                Instant::now() < deadline,
                "reopened {} times",
                store.reopens()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        assert!(written >= 3 * MIN_WRITES / 2, "{written}");
        assert_eq!(table.len() as u64, written);
        assert_eq!(store.scan_prefix("w").unwrap().len() as u64, written);
    }
}
