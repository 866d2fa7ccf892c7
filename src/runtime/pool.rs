//! The flow threads: where events' flows (mapping, rules, state) run, off the async workers.
//!
//! A flow is synchronous CPU work, usually tens of microseconds, but a runaway script holds its
//! thread until the Rhai limits stop it (a quarter of a second and more). On the async workers
//! that would stall HTTP ingress, `/health` and every other pipeline's events, so flows run on
//! a fixed set of threads of their own ([`FlowPool`], one per core and at least two, each with
//! [`MIN_STACK`] of stack), and the async task that hands a flow over just awaits its answer.
//!
//! Fairness: each pipeline has a queue, and a free thread takes the next flow from the
//! pipelines in turn (round robin), skipping a pipeline that already runs its share (half the
//! threads, at least one). So one pipeline's runaway events hold at most its share of the
//! threads, and another pipeline's event waits at most for one flow to end, not for the whole
//! backlog.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::rules::engine::MIN_STACK;

type Job = Box<dyn FnOnce() + Send>;

/// How often an idle flow thread wakes to see whether it should give back its free memory
/// (`crate::allocator`).
const COLLECT_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// A fixed set of threads running flows, fairly across pipelines.
pub(crate) struct FlowPool {
    shared: Arc<Shared>,
}

struct Shared {
    sched: Mutex<Sched>,
    ready: Condvar,
    /// Flows one pipeline may run at once.
    share: usize,
}

#[derive(Default)]
struct Sched {
    lanes: HashMap<Arc<str>, Lane>,
    /// Pipelines with queued flows, in the order they get their next turn.
    turn: VecDeque<Arc<str>>,
    closed: bool,
}

#[derive(Default)]
struct Lane {
    queued: VecDeque<Job>,
    running: usize,
}

/// Why a flow handed to the pool gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    #[error("it panicked")]
    Panicked,
    #[error("the flow threads are shutting down")]
    Closed,
}

impl FlowPool {
    /// Starts `threads` flow threads (at least one), each `nice` steps below the process's
    /// priority (`priority`); each pipeline may use half of them at once (at least one).
    pub(crate) fn start(threads: usize, nice: i32) -> std::io::Result<FlowPool> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            sched: Mutex::new(Sched::default()),
            ready: Condvar::new(),
            share: (threads / 2).max(1),
        });
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("crossdock-flow-{i}"))
                .stack_size(MIN_STACK)
                .spawn(move || {
                    super::priority::lower_this_thread(nice);
                    shared.serve()
                })?;
        }
        Ok(FlowPool { shared })
    }

    /// One thread per core the process may use, and at least two.
    pub(crate) fn default_threads() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2)
    }

    /// Runs `f` on a flow thread, in `pipeline`'s turn, and waits for its answer.
    pub(crate) async fn run<T, F>(&self, pipeline: &str, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            // The waiting task may be gone (a shutdown); nobody to tell then.
            let _ = tx.send(answer);
        });
        {
            let mut sched = self.shared.lock();
            if sched.closed {
                return Err(PoolError::Closed);
            }
            let sched = &mut *sched;
            let lane = match sched.lanes.get_mut(pipeline) {
                Some(lane) => lane,
                None => sched.lanes.entry(Arc::from(pipeline)).or_default(),
            };
            lane.queued.push_back(job);
            if lane.queued.len() == 1 {
                if let Some((name, _)) = sched.lanes.get_key_value(pipeline) {
                    sched.turn.push_back(name.clone());
                }
            }
        }
        self.shared.ready.notify_one();
        match rx.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(PoolError::Panicked),
            Err(_) => Err(PoolError::Closed),
        }
    }
}

impl Drop for FlowPool {
    fn drop(&mut self) {
        let mut sched = self.shared.lock();
        sched.closed = true;
        // Queued flows are dropped: their tasks hear `Closed`.
        sched.lanes.clear();
        sched.turn.clear();
        drop(sched);
        self.shared.ready.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sched> {
        // Nothing panics while holding the lock (jobs run outside it): a poisoned one is whole.
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A flow thread's life: take the next flow in turn, run it, again.
    fn serve(&self) {
        let mut sched = self.lock();
        loop {
            if sched.closed {
                return;
            }
            let Some((name, job)) = sched.next(self.share) else {
                crate::allocator::collect_if_asked();
                // A timeout, so an idle thread still sees a request to collect.
                sched = self
                    .ready
                    .wait_timeout(sched, COLLECT_CHECK)
                    .map(|(s, _)| s)
                    .unwrap_or_else(|e| e.into_inner().0);
                continue;
            };
            drop(sched);
            job();
            sched = self.lock();
            if let Some(lane) = sched.lanes.get_mut(&name) {
                lane.running = lane.running.saturating_sub(1);
                if lane.running == 0 && lane.queued.is_empty() {
                    sched.lanes.remove(&name);
                }
            }
        }
    }
}

impl Sched {
    /// The next flow to run: the first pipeline in turn below its share gives its oldest, and
    /// goes to the back of the turn if it has more.
    fn next(&mut self, share: usize) -> Option<(Arc<str>, Job)> {
        let at = self.turn.iter().position(|name| {
            self.lanes
                .get(name)
                .is_some_and(|l| l.running < share && !l.queued.is_empty())
        })?;
        let name = self.turn.remove(at)?;
        let lane = self.lanes.get_mut(&name)?;
        let job = lane.queued.pop_front()?;
        lane.running += 1;
        if !lane.queued.is_empty() {
            self.turn.push_back(name.clone());
        }
        Some((name, job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_pipeline_holds_its_share_and_another_runs_meanwhile() {
        let pool = Arc::new(FlowPool::start(2, 0).unwrap());
        let busy_now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut slow = Vec::new();
        for _ in 0..8 {
            let (pool, busy_now, most) = (pool.clone(), busy_now.clone(), most.clone());
            slow.push(tokio::spawn(async move {
                pool.run("slow", move || {
                    let n = busy_now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    busy_now.fetch_sub(1, Ordering::SeqCst);
                })
                .await
                .unwrap()
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Eight slow flows queued ahead of it (800 ms of work on one thread): this one runs on
        // the thread the slow pipeline may not take.
        let asked = Instant::now();
        let answer = pool.run("quick", || 42).await.unwrap();
        let waited = asked.elapsed();
        assert_eq!(answer, 42);
        assert!(waited < Duration::from_millis(300), "{waited:?}");
        for s in slow {
            s.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "the slow pipeline's share");
    }

    #[tokio::test]
    async fn a_panicking_flow_is_an_error_and_the_thread_lives_on() {
        let pool = FlowPool::start(1, 0).unwrap();
        let err = pool.run("p", || panic!("boom")).await;
        assert!(matches!(err, Err(PoolError::Panicked)), "{err:?}");
        assert_eq!(pool.run("p", || 7).await.unwrap(), 7);
    }
}
