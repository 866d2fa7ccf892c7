//! The durable inbox: accepted events, dedup keys, dead letters and trails, in sled tables
//! beside the state.
//!
//! This module owns the byte layout of those tables and the group commit that makes an
//! accepted event durable before its 202. It knows nothing of HTTP or flows.
//!
//! # Tables
//!
//! | table        | key                                   | value                                   |
//! |--------------|---------------------------------------|-----------------------------------------|
//! | `inbox`      | event sequence number, 8 bytes BE     | [`EventMeta`] as JSON, `\n`, raw body   |
//! | `dedup`      | `{pipeline}\0{dedup key}`             | `{ms since epoch} {event id}`           |
//! | `dedup-age`  | ms BE (8 bytes) then the dedup key    | empty: an index to sweep old keys      |
//! | `dead`       | event sequence number                 | [`DeadLetter`] as JSON                  |
//! | `trail`      | event sequence number                 | [`Trail`] as JSON                       |
//! | `raw`        | event sequence number                 | headers as JSON, `\n`, the body's first [`RAW_KEEP`] bytes |
//! | `keys`       | `{key}\0{value}\0` then sequence BE   | empty: the correlation key index        |
//!
//! Event ids are `evt_` and the sequence number in hex, so ids sort by arrival and a trail or
//! dead letter is found from the id alone.
//!
//! A finished event's `raw` entry and its `keys` entries go with its trail (retention counts
//! the raw bytes with the trail's).
//!
//! # Ordering and crashes
//!
//! An accepted event is written to `inbox` before its dedup key: sled replays its log in order,
//! so after a crash a dedup key never survives without the event it points at (which would
//! answer a redelivery "duplicate" for an event that was lost). A processed event gets its
//! trail before it leaves `inbox`: a crash in between processes it again (at least once),
//! never not at all.
//!
//! # Group commit
//!
//! [`Committer::durable`] returns once everything written before the call is on disk. One
//! background task runs one fsync for every caller that arrived while the previous fsync ran,
//! so at load the cost of an fsync is shared by many requests. With [`FlushPolicy::Periodic`] it
//! returns at once and sled's own flusher writes every 500 ms: faster, but a crash can lose
//! the events of the last interval although they were answered 202.
//!
//! # Files
//!
//! The tables and their counters here; writing an event in (`accept.rs`), an event leaving
//! (`finish.rs`), reads and pages for the admin API and the CLI (`read.rs`), dead letters
//! (`dead.rs`), the bytes of an entry (`record.rs`), group commit (`commit.rs`), retention
//! (`retention.rs`).

mod accept;
mod commit;
mod dead;
mod finish;
mod read;
mod record;
mod retention;
pub use retention::Tally;

pub use commit::{Committer, FlushPolicy};
pub use dead::{dead_letter_summary, letter_body, DeadFilter};
pub use read::{trail_summary, TrailFilter};
pub use record::{
    event_id, now_ms, now_rfc3339, parse_event_id, ActionTrail, AttemptError, CompensationTrail,
    DeadLetter, EventMeta, RawDelivery, StoredEvent, Trail, RAW_KEEP,
};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::state::{SledStore, StateError, Table};

/// Why the inbox could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("stored entry {key} is malformed: {message}")]
    Corrupt { key: String, message: String },
    #[error("the disk flush failed: {0}")]
    Flush(String),
    #[error("{0} accepted events are waiting to be processed; try again later")]
    Busy(usize),
    #[error("the events waiting to be processed hold {0} bytes of bodies, the most allowed; try again later")]
    BusyBytes(usize),
    /// The state folder's disk is (nearly) full, or the store failed writing: nothing new is
    /// accepted until it is back (see `runtime::storage`).
    #[error("{0}")]
    Storage(String),
}

impl InboxError {
    /// Whether the store could not write (a full disk, an I/O error), as opposed to a bad
    /// entry or a refusal by design: the sender should try again later.
    pub fn is_storage(&self) -> bool {
        matches!(
            self,
            InboxError::State(StateError::Backend(_))
                | InboxError::Flush(_)
                | InboxError::Storage(_)
        )
    }
}

/// The runtime's tables.
pub struct Inbox {
    store: Arc<SledStore>,
    inbox: Table,
    dedup: Table,
    dedup_age: Table,
    dead: Table,
    trail: Table,
    raw: Table,
    keys: Table,
    pub committer: Arc<Committer>,
    /// Events in `inbox`, kept here because sled counts a tree by scanning it.
    pending: AtomicU64,
    /// Entries in `dead`, for the same reason: `/health` and the dead-letter gauge read it
    /// often, and a scan per read grows with every letter kept.
    dead_count: AtomicU64,
    /// Bytes of body held by the events in `inbox`: each is also in memory (queued for a
    /// worker, running, or waiting for its retry), so this bounds the memory the backlog takes.
    pending_bytes: AtomicU64,
    /// Entries in `trail` and the bytes of their values: what the retention sweep bounds
    /// (`retention.rs`) without reading the table.
    trails: AtomicU64,
    trail_bytes: AtomicU64,
    /// The highest sequence number of an event accepted (not withdrawn as a duplicate): what
    /// the ledger marks as durable.
    last_accepted: AtomicU64,
    /// Events dropped by hand while this process may hold them queued: a worker asks here, in
    /// memory, rather than reading the inbox for every event it starts.
    dropped: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// Whether `dropped` has anything, so the common case takes no lock.
    any_dropped: std::sync::atomic::AtomicBool,
}

/// The answer to [`Inbox::accept`].
// Made once per delivery and moved once or twice: a box would cost an allocation per event to
// save copying a couple of hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Accepted {
    New(StoredEvent),
    /// A delivery with the same dedup key arrived within the window: the first one's id.
    Duplicate(String),
}

impl Inbox {
    pub fn open(store: Arc<SledStore>, policy: FlushPolicy) -> Result<Inbox, InboxError> {
        let inbox = store.table("inbox")?;
        let dead = store.table("dead")?;
        let trail = store.table("trail")?;
        let raw = store.table("raw")?;
        // The counters start from what the tables hold, read once here (see `Tally`).
        let found = retention::tally(&inbox, &dead, &trail, &raw)?;
        Ok(Inbox {
            pending: AtomicU64::new(found.pending),
            pending_bytes: AtomicU64::new(found.pending_bytes),
            trails: AtomicU64::new(found.trails),
            trail_bytes: AtomicU64::new(found.trail_bytes),
            last_accepted: AtomicU64::new(0),
            dropped: std::sync::Mutex::new(std::collections::HashSet::new()),
            any_dropped: std::sync::atomic::AtomicBool::new(false),
            inbox,
            dedup: store.table("dedup")?,
            dedup_age: store.table("dedup-age")?,
            dead_count: AtomicU64::new(found.dead_letters),
            dead,
            trail,
            raw,
            keys: store.table("keys")?,
            committer: Arc::new(Committer::new(store.clone(), policy)),
            store,
        })
    }

    /// Events accepted and not yet done (processed, dead-lettered or dropped).
    pub fn pending_count(&self) -> usize {
        self.pending.load(Ordering::SeqCst) as usize
    }

    /// Bytes of body the pending events hold.
    pub fn pending_bytes(&self) -> usize {
        usize::try_from(self.pending_bytes.load(Ordering::SeqCst)).unwrap_or(usize::MAX)
    }

    /// The highest sequence number accepted by this process (0 before the first).
    pub fn last_accepted(&self) -> u64 {
        self.last_accepted.load(Ordering::SeqCst)
    }

    /// Whether the event was dropped by hand (`DELETE /api/inbox/{id}`) since it was queued:
    /// then it is not run. Answers each drop once.
    pub fn was_dropped(&self, seq: u64) -> bool {
        if !self.any_dropped.load(Ordering::SeqCst) {
            return false;
        }
        let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        let hit = dropped.remove(&seq);
        self.any_dropped
            .store(!dropped.is_empty(), Ordering::SeqCst);
        hit
    }

    /// Removes `seq` from the inbox if it is there, keeping the counts true.
    fn take_out(&self, seq: u64) -> Result<bool, InboxError> {
        match self
            .inbox
            .remove_measured(&seq.to_be_bytes(), record::body_len)?
        {
            Some(body) => {
                self.uncount(body);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// One event of `body` bytes less in the counts; never below zero, which a reader would
    /// take for a full backlog.
    fn uncount(&self, body: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            });
        self.uncount_bytes(body);
    }

    fn uncount_bytes(&self, body: usize) {
        let _ = self
            .pending_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(body as u64))
            });
    }
}

#[cfg(test)]
mod tests;
