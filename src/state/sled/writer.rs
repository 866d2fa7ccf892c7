//! The write buffer between [`super::SledStore::update`] and sled.
//!
//! A sled 0.34 transaction (and an atomic batch) costs two log-buffer rolls whatever it writes,
//! which caps multi-key updates at about 20,000 per second on a 2-core machine. So updates do
//! not each get a transaction: they run one at a time under this module's lock against the
//! newest values (buffered ones first, then sled), and their writes go into a buffer that one
//! writer thread lands in sled as one atomic batch per round. The rolls are paid once per
//! round, and the JSON encoding happens on the writer's core instead of the caller's.
//!
//! What callers keep:
//! - Atomicity and isolation: updates are serialised by the lock, and a round holds whole
//!   updates only, applied with one `apply_batch`, so after a crash an update is in sled whole
//!   or not at all.
//! - Order: rounds land one after another, so sled's log (replayed in order after a crash)
//!   never keeps a later update without an earlier one. [`Shared::sync`] waits until every
//!   update made so far has landed; the store's tables call it before each write, so a table
//!   write (an event leaving the inbox) is never in the log ahead of the state changes the
//!   event made.
//! - Reads see every update at once, landed or not.
//! - Durability as before: landed writes are flushed by sled's periodic flusher or an explicit
//!   flush; with fsync on each update, a round is flushed before the updates in it return (one
//!   fsync for every caller that waited on the round).
//!
//! A round that sled refuses (an I/O error) is kept in the buffer, readable, and the store
//! fails every later write with that error: landing a later round would put updates in the log
//! without one they may depend on.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use serde_json::Value;

use super::{backend, decode, encode};
use crate::state::StateError;

/// Buffered keys above which updates wait for the writer: bounds memory when sled falls behind.
const MAX_BUFFERED: usize = 50_000;
/// A round lands at once when it has this many keys or somebody waits for it; otherwise the
/// writer lets updates gather for up to `LINGER` first. Each round costs sled two log writes
/// whatever its size, so rounds of one or two updates would spend most of the machine on them.
const ROUND_KEYS: usize = 4096;
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

type Writes = HashMap<String, Option<Value>>;

#[derive(Default)]
struct Buffer {
    /// Writes not yet handed to the writer, newest value per key (`None`: delete).
    pending: Writes,
    /// The round the writer is landing now; readable until it has landed.
    landing: Arc<Writes>,
    /// Updates that wrote something, counted from the start.
    queued: u64,
    /// How many of those have landed in sled (and, with `fsync_each`, been flushed).
    landed: u64,
    /// Callers waiting for a round to land: the writer does not linger while there are any.
    waiting: usize,
    failed: Option<String>,
    stop: bool,
}

impl Buffer {
    /// The newest buffered value of `key` (`Some(None)`: deleted), if it is buffered at all.
    fn newest(&self, key: &str) -> Option<&Option<Value>> {
        self.pending.get(key).or_else(|| self.landing.get(key))
    }
}

pub(super) struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the writer.
    work: Condvar,
    /// Wakes callers waiting for a round to land.
    done: Condvar,
    fsync_each: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // The buffer's invariants hold between statements that cannot panic; a closure that
        // panicked inside `update` ran before anything was written.
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Buffer>) -> MutexGuard<'a, Buffer> {
        self.done.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once every update made before the call has landed in sled.
    pub(super) fn sync(&self) -> Result<(), StateError> {
        let buffer = self.lock();
        let target = buffer.queued;
        self.wait_landed(buffer, target).map(drop)
    }

    /// Waits until the first `target` updates have landed, hurrying the writer.
    fn wait_landed<'a>(
        &self,
        mut buffer: MutexGuard<'a, Buffer>,
        target: u64,
    ) -> Result<MutexGuard<'a, Buffer>, StateError> {
        if buffer.landed >= target {
            return Ok(buffer);
        }
        buffer.waiting += 1;
        self.work.notify_one();
        let outcome = loop {
            if buffer.landed >= target {
                break Ok(());
            }
            if let Some(e) = &buffer.failed {
                break Err(StateError::Backend(e.clone()));
            }
            buffer = self.wait(buffer);
        };
        buffer.waiting -= 1;
        outcome.map(|()| buffer)
    }

    /// The newest value of `key`: buffered, else from `tree`.
    pub(super) fn get(&self, tree: &sled::Tree, key: &str) -> Result<Option<Value>, StateError> {
        {
            if let Some(v) = self.lock().newest(key) {
                return Ok(v.clone());
            }
        }
        // Not buffered: sled holds the newest value, and a later update only makes this read
        // an earlier one.
        read(tree, key)
    }

    /// The store's `update`: see the module documentation.
    pub(super) fn update(
        &self,
        tree: &sled::Tree,
        keys: &[String],
        f: &mut dyn FnMut(&[Option<Value>]) -> crate::state::UpdateResult,
    ) -> Result<Value, StateError> {
        let mut buffer = self.lock();
        if buffer.pending.len() >= MAX_BUFFERED {
            let target = buffer.queued;
            buffer = self.wait_landed(buffer, target)?;
        }
        if let Some(e) = &buffer.failed {
            return Err(StateError::Backend(e.clone()));
        }
        let mut current = Vec::with_capacity(keys.len());
        for key in keys {
            current.push(match buffer.newest(key) {
                Some(v) => v.clone(),
                None => read(tree, key)?,
            });
        }
        let (new, answer) = f(&current)?;
        crate::state::check_arity(keys, &new)?;
        let was_empty = buffer.pending.is_empty();
        let mut wrote = false;
        for ((key, old), value) in keys.iter().zip(current).zip(new) {
            // Unchanged keys are not written: a replayed reservation costs reads only.
            if old != value {
                buffer.pending.insert(key.clone(), value);
                wrote = true;
            }
        }
        if !wrote {
            return Ok(answer);
        }
        buffer.queued += 1;
        let mine = buffer.queued;
        if self.fsync_each {
            drop(self.wait_landed(buffer, mine)?);
        } else if was_empty || buffer.pending.len() >= ROUND_KEYS {
            // Only these change what the writer is waiting for; waking it on every update
            // would cost a context switch each.
            self.work.notify_one();
        }
        Ok(answer)
    }
}

fn read(tree: &sled::Tree, key: &str) -> Result<Option<Value>, StateError> {
    match tree.get(key.as_bytes()).map_err(|e| backend("get", e))? {
        Some(bytes) => Ok(Some(decode(key, &bytes)?)),
        None => Ok(None),
    }
}

/// The writer thread's handle; dropping it lands what is buffered and stops the thread.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(super) fn start(
        db: sled::Db,
        tree: sled::Tree,
        fsync_each: bool,
    ) -> Result<Writer, StateError> {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            fsync_each,
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("crossdock-state-writer".into())
                .spawn(move || run(&shared, &db, &tree))
                .map_err(|e| backend("starting the writer thread", e))?
        };
        Ok(Writer {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, db: &sled::Db, tree: &sled::Tree) {
    loop {
        let (round, upto) = {
            let mut buffer = shared.lock();
            while (buffer.pending.is_empty() || buffer.failed.is_some()) && !buffer.stop {
                buffer = shared.work.wait(buffer).unwrap_or_else(|p| p.into_inner());
            }
            if buffer.pending.is_empty() || buffer.failed.is_some() {
                return; // stopping, and nothing (more) can land
            }
            let deadline = std::time::Instant::now() + LINGER;
            while buffer.waiting == 0 && !buffer.stop && buffer.pending.len() < ROUND_KEYS {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                buffer = shared
                    .work
                    .wait_timeout(buffer, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            let round = Arc::new(std::mem::take(&mut buffer.pending));
            buffer.landing = round.clone();
            (round, buffer.queued)
        };
        let outcome = land(tree, &round).and_then(|()| {
            if shared.fsync_each {
                db.flush().map(|_| ()).map_err(|e| backend("flush", e))
            } else {
                Ok(())
            }
        });
        let mut buffer = shared.lock();
        match outcome {
            Ok(()) => {
                buffer.landing = Arc::default();
                buffer.landed = upto;
            }
            Err(e) => {
                tracing::error!(error = %e, "Writing state to sled failed; state writes stop");
                buffer.failed = Some(e.to_string());
            }
        }
        shared.done.notify_all();
    }
}

/// One round into sled, atomically: a lone key is one plain write (atomic by itself, and
/// without the batch's log rolls), more keys are one batch.
fn land(tree: &sled::Tree, round: &Writes) -> Result<(), StateError> {
    if round.len() == 1 {
        if let Some((key, value)) = round.iter().next() {
            match value {
                Some(v) => tree.insert(key.as_bytes(), encode(key, v)?),
                None => tree.remove(key.as_bytes()),
            }
            .map_err(|e| backend("write", e))?;
        }
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for (key, value) in round {
        match value {
            Some(v) => batch.insert(key.as_bytes(), encode(key, v)?),
            None => batch.remove(key.as_bytes()),
        }
    }
    tree.apply_batch(batch)
        .map_err(|e| backend("apply batch", e))
}
