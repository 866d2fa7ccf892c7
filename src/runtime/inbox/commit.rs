//! Group commit: [`Committer::durable`] returns once every event accepted before the call is
//! on disk, and [`Committer::landed`] once it is in the tables too. Owns the task that writes
//! the log's rounds, the thread that lands them (`wal.rs`) and their failure state; it writes
//! nothing itself (the log and the inbox do).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::wal::{Batch, Wal};
use super::InboxError;
use crate::state::SledStore;

/// How long a cut waits for a batch written and not yet handed to the lander.
const CUT_WAIT: Duration = Duration::from_secs(10);

/// When an accepted event is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync of the inbox's log (shared by concurrent requests) before the 202.
    Group,
    /// No log: 202 at once; the event is landed in the tables by the next round, and sled
    /// flushes every 500 ms.
    Periodic,
}

/// Group commit: see the module docs.
pub struct Committer {
    store: Arc<SledStore>,
    wal: Arc<Wal>,
    policy: FlushPolicy,
    /// Callers that asked so far (their tickets); a round that starts after reading `n`
    /// covers the first `n`.
    asked: AtomicU64,
    /// The last ticket whose caller needs sled itself flushed.
    asked_flush: AtomicU64,
    /// (tickets covered by a round that succeeded, tickets covered by one that failed): a
    /// caller learns which of the two came first for it. Both only grow.
    flushed: watch::Sender<(u64, u64)>,
    /// Tickets whose events are in the tables.
    landed: watch::Sender<u64>,
    wake: Notify,
    /// The last round's error, while none has succeeded since, or the lander's, which stays
    /// (the log keeps what it could not land, for the next start): what `/health` shows.
    failing: Mutex<Option<String>>,
    landing_failed: Mutex<Option<String>>,
    /// Whether either holds an error: read on every accepted event, without the locks.
    is_failing: std::sync::atomic::AtomicBool,
}

impl Committer {
    pub(super) fn new(store: Arc<SledStore>, wal: Arc<Wal>, policy: FlushPolicy) -> Committer {
        Committer {
            store,
            wal,
            policy,
            asked: AtomicU64::new(0),
            asked_flush: AtomicU64::new(0),
            flushed: watch::channel((0, 0)).0,
            landed: watch::channel(0).0,
            wake: Notify::new(),
            failing: Mutex::new(None),
            landing_failed: Mutex::new(None),
            is_failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn policy(&self) -> FlushPolicy {
        self.policy
    }

    /// Returns once every event accepted before this call is on disk (under
    /// [`FlushPolicy::Group`]; at once under [`FlushPolicy::Periodic`]), or with
    /// [`InboxError::Flush`] when the round that would have covered it failed: the caller
    /// must not acknowledge what it wrote. Answers the ticket to wait on with
    /// [`Committer::landed`] before the events run.
    pub async fn durable(&self) -> Result<u64, InboxError> {
        if self.policy == FlushPolicy::Periodic {
            let mine = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
            self.wake.notify_one();
            return Ok(mine);
        }
        self.wait(false).await
    }

    /// As [`Committer::durable`] under [`FlushPolicy::Group`], and every write to the store
    /// made before the call is on disk too, whatever the policy: for the few writes that must
    /// be on disk before what follows (an event's run counted before it starts).
    pub async fn durable_now(&self) -> Result<(), InboxError> {
        self.wait(true).await.map(drop)
    }

    async fn wait(&self, flush: bool) -> Result<u64, InboxError> {
        let mine = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        if flush {
            self.asked_flush.fetch_max(mine, Ordering::SeqCst);
        }
        let mut rx = self.flushed.subscribe();
        self.wake.notify_one();
        let (ok, _) = *rx
            .wait_for(|(ok, failed)| *ok >= mine || *failed >= mine)
            .await
            .map_err(|_| InboxError::Flush("the flusher stopped".into()))?;
        if ok >= mine {
            Ok(mine)
        } else {
            Err(InboxError::Flush(
                self.failure()
                    .unwrap_or_else(|| "the disk flush failed".into()),
            ))
        }
    }

    /// Returns once the events of `ticket` (from [`Committer::durable`]; 0: none) are in the
    /// tables. Waits for ever if the lander failed: the events are in the log, and the next
    /// start lands them.
    pub async fn landed(&self, ticket: u64) {
        if *self.landed.borrow() >= ticket {
            return;
        }
        let mut rx = self.landed.subscribe();
        let _ = rx.wait_for(|landed| *landed >= ticket).await;
    }

    /// The error of the last round, if it failed and none has succeeded since, or the
    /// lander's.
    pub fn failure(&self) -> Option<String> {
        if !self.is_failing.load(Ordering::SeqCst) {
            return None;
        }
        let landing = lock(&self.landing_failed).clone();
        landing.or_else(|| lock(&self.failing).clone())
    }

    /// Forgets the last round's failure: a flush made outside the group commit succeeded.
    pub fn recovered(&self) {
        *lock(&self.failing) = None;
        self.is_failing
            .store(lock(&self.landing_failed).is_some(), Ordering::SeqCst);
    }

    /// The rounds: runs until the runtime stops. One write of the log (`wal.rs`) for every
    /// caller that arrived before it began, sled itself flushed when one of them asked for it;
    /// the batch then goes to the lander (a thread of its own), so the next round's write runs
    /// while it lands. A failed round fails its callers at once (they answer 503 and the
    /// sender tries again) rather than keeping them waiting on a disk that may stay full.
    pub async fn run(self: Arc<Self>) {
        let (to_lander, batches) = mpsc::channel::<(Batch, u64)>();
        let lander = self.clone();
        let started = std::thread::Builder::new()
            .name("crossdock-lander".into())
            .spawn(move || lander.land_all(&batches));
        if let Err(e) = started {
            self.landing_failure(format!("cannot start the lander's thread: {e}"));
            return;
        }
        loop {
            self.wake.notified().await;
            loop {
                let target = self.asked.load(Ordering::SeqCst);
                let (ok, failed) = *self.flushed.borrow();
                if target <= ok.max(failed) {
                    break;
                }
                let flush = self.asked_flush.load(Ordering::SeqCst) > ok.max(failed);
                let (store, wal) = (self.store.clone(), self.wal.clone());
                // A batch written goes to the lander even when the flush after it failed: the
                // log holds it, and a cut waits for it.
                let round = move || -> (Result<Batch, String>, Option<String>) {
                    let batch = wal.write();
                    let flushed = match (flush, &batch) {
                        (true, Ok(_)) => store.flush().err().map(|e| e.to_string()),
                        _ => None,
                    };
                    (batch, flushed)
                };
                let error = match tokio::task::spawn_blocking(round).await {
                    Ok((Ok(batch), flushed)) => {
                        // Sent before the callers hear, so a cut that waits for it finds it.
                        if to_lander.send((batch, target)).is_err() {
                            Some("the lander stopped".to_string())
                        } else {
                            flushed
                        }
                    }
                    Ok((Err(e), _)) => Some(e),
                    Err(e) => Some(format!("the round's task failed: {e}")),
                };
                let failed = error.is_some();
                {
                    let mut failing = lock(&self.failing);
                    if let (Some(e), None) = (&error, &*failing) {
                        tracing::error!(error = %e, "Writing the inbox's log failed; events are refused until a write succeeds");
                    }
                    *failing = error;
                    self.is_failing.store(
                        failing.is_some() || lock(&self.landing_failed).is_some(),
                        Ordering::SeqCst,
                    );
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

    /// The lander's thread: lands each batch in turn, and cuts the log when it is due. Ends
    /// when the rounds stop (the runtime stopped), or at its first failure.
    fn land_all(&self, batches: &mpsc::Receiver<(Batch, u64)>) {
        while let Ok((batch, ticket)) = batches.recv() {
            let done = self.wal.land(batch).and_then(|()| {
                self.landed.send_modify(|l| *l = (*l).max(ticket));
                if !self.wal.due() {
                    return Ok(());
                }
                let store = self.store.clone();
                let mut last = ticket;
                let cut = self.wal.cut(
                    || store.flush().map(drop).map_err(|e| e.to_string()),
                    || {
                        // Bounded: a round whose task died after writing never sends.
                        let (batch, ticket) = batches.recv_timeout(CUT_WAIT).ok()?;
                        last = last.max(ticket);
                        Some(batch)
                    },
                );
                self.landed.send_modify(|l| *l = (*l).max(last));
                cut
            });
            if let Err(e) = done {
                self.landing_failure(e);
                return;
            }
        }
    }

    fn landing_failure(&self, e: String) {
        tracing::error!(error = %e, "Landing accepted events in the inbox failed; they stay in its log for the next start, and events are refused");
        *lock(&self.landing_failed) = Some(e);
        self.is_failing.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::super::tests::inbox;
    use super::*;

    #[tokio::test]
    async fn group_commit_returns_after_a_flush() {
        let inbox = Arc::new(inbox());
        let committer = Arc::new(Committer::new(
            inbox.store.clone(),
            inbox.wal.clone(),
            FlushPolicy::Group,
        ));
        let task = tokio::spawn(committer.clone().run());
        let mut waits = Vec::new();
        for _ in 0..50 {
            let c = committer.clone();
            waits.push(tokio::spawn(async move { c.durable().await }));
        }
        for w in waits {
            let ticket = w.await.unwrap().unwrap();
            committer.landed(ticket).await;
        }
        assert!(committer.flushed.borrow().0 >= 50);
        assert!(*committer.landed.borrow() >= 50);
        task.abort();
    }
}
