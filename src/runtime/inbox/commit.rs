//! Group commit: [`Committer::durable`] returns once everything written before the call is on
//! disk. Owns the flusher task and its failure state; it writes nothing itself (the inbox does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::InboxError;
use crate::state::SledStore;

/// When an accepted event is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync (shared by concurrent requests) before the 202.
    Group,
    /// 202 at once; sled flushes every 500 ms.
    Periodic,
}

/// Group commit: see the module docs.
pub struct Committer {
    store: Arc<SledStore>,
    policy: FlushPolicy,
    /// Callers that asked so far; a flush that starts after reading `n` covers the first `n`.
    asked: AtomicU64,
    /// (callers covered by a flush that succeeded, callers covered by one that failed): a
    /// caller learns which of the two came first for it. Both only grow.
    flushed: watch::Sender<(u64, u64)>,
    wake: Notify,
    /// The last flush's error, while the store has not flushed since: what `/health` shows.
    failing: std::sync::Mutex<Option<String>>,
    /// Whether `failing` holds an error: read on every accepted event, without the lock.
    is_failing: std::sync::atomic::AtomicBool,
}

impl Committer {
    pub(super) fn new(store: Arc<SledStore>, policy: FlushPolicy) -> Committer {
        Committer {
            store,
            policy,
            asked: AtomicU64::new(0),
            flushed: watch::channel((0, 0)).0,
            wake: Notify::new(),
            failing: std::sync::Mutex::new(None),
            is_failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn policy(&self) -> FlushPolicy {
        self.policy
    }

    /// Returns once every write made before this call is on disk (see [`FlushPolicy`]), or
    /// with [`InboxError::Flush`] when the flush that would have covered it failed: the
    /// caller must not acknowledge what it wrote.
    pub async fn durable(&self) -> Result<(), InboxError> {
        if self.policy == FlushPolicy::Periodic {
            return Ok(());
        }
        self.durable_now().await
    }

    /// As [`Committer::durable`], whatever the policy: for the few writes that must be on
    /// disk before what follows (an event's run counted before it starts).
    pub async fn durable_now(&self) -> Result<(), InboxError> {
        let mine = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.flushed.subscribe();
        self.wake.notify_one();
        let (ok, _) = *rx
            .wait_for(|(ok, failed)| *ok >= mine || *failed >= mine)
            .await
            .map_err(|_| InboxError::Flush("the flusher stopped".into()))?;
        if ok >= mine {
            Ok(())
        } else {
            Err(InboxError::Flush(
                self.failure()
                    .unwrap_or_else(|| "the disk flush failed".into()),
            ))
        }
    }

    /// The error of the last flush, if it failed and none has succeeded since.
    pub fn failure(&self) -> Option<String> {
        if !self.is_failing.load(Ordering::SeqCst) {
            return None;
        }
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the last failure: a flush made outside the group commit succeeded.
    pub fn recovered(&self) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        *failing = None;
        self.is_failing.store(false, Ordering::SeqCst);
    }

    /// The flusher: runs until the runtime stops. One fsync per round, for every caller that
    /// arrived before the round began. A failed round fails its callers at once (they answer
    /// 503 and the sender tries again) rather than keeping them waiting on a disk that may
    /// stay full.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            loop {
                let target = self.asked.load(Ordering::SeqCst);
                let (ok, failed) = *self.flushed.borrow();
                if target <= ok.max(failed) {
                    break;
                }
                let store = self.store.clone();
                let error = match tokio::task::spawn_blocking(move || store.flush()).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(format!("the flush task failed: {e}")),
                };
                let failed = error.is_some();
                {
                    let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
                    if let (Some(e), None) = (&error, &*failing) {
                        tracing::error!(error = %e, "Flushing the inbox failed; events are refused until a flush succeeds");
                    }
                    self.is_failing.store(error.is_some(), Ordering::SeqCst);
                    *failing = error;
                }
                if !failed {
                    self.flushed.send_modify(|(ok, _)| *ok = target);
                } else {
                    self.flushed.send_modify(|(_, failed)| *failed = target);
                    // A store that failed keeps failing fast; do not spin on it.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::inbox;
    use super::*;

    #[tokio::test]
    async fn group_commit_returns_after_a_flush() {
        let inbox = Arc::new(inbox());
        let committer = Arc::new(Committer::new(inbox.store.clone(), FlushPolicy::Group));
        let task = tokio::spawn(committer.clone().run());
        let mut waits = Vec::new();
        for _ in 0..50 {
            let c = committer.clone();
            waits.push(tokio::spawn(async move { c.durable().await }));
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        assert!(committer.flushed.borrow().0 >= 50);
        task.abort();
    }
}
