//! Giving back the memory the state store holds once the engine has gone quiet. sled 0.34
//! keeps in memory what a burst wrote (its own copies of the trails and raw deliveries, far
//! past `state.cache`), and only closing the database frees it (`state::sled`, `open`); so
//! after a while without a write the store is closed and opened again.
//!
//! Owns when to reopen: no write through the store for [`super::Settings::state_reopen_idle`],
//! and at least [`MIN_WRITES`] since the last reopen (a trickle of events must not reopen the
//! store after each one: a reopen costs sled's recovery, and calls wait for it). The reopen
//! itself, and that nothing is lost by it, are the store's. Must not touch the inbox or events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::state::SledStore;

/// Writes since the last reopen below which the memory is not worth a reopen: sled holds a
/// few kilobytes per write.
pub const MIN_WRITES: u64 = 1_000;

/// Reopens `store` whenever it has been written `MIN_WRITES` times and then left unwritten
/// for `idle`. Runs for the life of the engine; returns at once for a store that cannot be
/// reopened (a temporary one).
pub(super) async fn reopen_when_idle(store: Arc<SledStore>, idle: Duration) {
    if !store.can_reopen() {
        return;
    }
    let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = store.writes();
    let mut quiet_since = Instant::now();
    let mut at_reopen = seen;
    loop {
        tick.tick().await;
        let writes = store.writes();
        if writes != seen {
            seen = writes;
            quiet_since = Instant::now();
            continue;
        }
        if writes.saturating_sub(at_reopen) < MIN_WRITES || quiet_since.elapsed() < idle {
            continue;
        }
        let started = Instant::now();
        let reopening = store.clone();
        match tokio::task::spawn_blocking(move || reopening.reopen()).await {
            Ok(Ok(true)) => tracing::info!(
                writes = writes - at_reopen,
                took_ms = started.elapsed().as_millis() as u64,
                "State store reopened after {}s without a write, to give back the memory sled held",
                idle.as_secs()
            ),
            // Cannot happen: checked above.
            Ok(Ok(false)) => return,
            Ok(Err(e)) => {
                // Tried again after another quiet period, not at every tick.
                tracing::warn!(error = %e, "Reopening the state store failed");
                quiet_since = Instant::now();
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Reopening the state store stopped");
                quiet_since = Instant::now();
                continue;
            }
        }
        at_reopen = store.writes();
        seen = at_reopen;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        tokio::spawn(reopen_when_idle(store.clone(), idle));
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
            reopen_when_idle(store.clone(), Duration::from_millis(50)),
        )
        .await
        .unwrap();
        assert_eq!(store.reopens(), 0);
    }
}
