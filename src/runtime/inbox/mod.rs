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

mod commit;
mod record;
mod retention;
pub use retention::Tally;

pub use commit::{Committer, FlushPolicy};
use record::{
    decode_event, decode_raw, encode_event, encode_raw, from_json, key_entry, key_prefix, key_seq,
    parse_dedup, to_json,
};
pub use record::{
    event_id, now_ms, now_rfc3339, parse_event_id, ActionTrail, AttemptError, CompensationTrail,
    DeadLetter, EventMeta, RawDelivery, StoredEvent, Trail, RAW_KEEP,
};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

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

    /// Writes a new event unless one of its dedup keys was seen within `window`; a new event
    /// records all of them, so a later delivery matching any one is a duplicate. Not yet
    /// durable: await [`Committer::durable`] before acknowledging it.
    pub fn accept(
        &self,
        pipeline: &str,
        dedup_keys: &[&str],
        window: Duration,
        headers: BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<Accepted, InboxError> {
        let now = now_ms();
        // Most duplicates are a sender's retries of what it already delivered: answered from
        // the keys alone, they write nothing (a retried 4 MB body would otherwise be written
        // and withdrawn each time). A delivery of a key that arrives meanwhile is still caught
        // below, where the keys are claimed.
        let dkeys: Vec<Vec<u8>> = dedup_keys
            .iter()
            .map(|k| format!("{pipeline}\0{k}").into_bytes())
            .collect();
        for dkey in &dkeys {
            if let Some(old) = self.dedup.get(dkey)? {
                if let Some((at, id)) = parse_dedup(&old) {
                    if now.saturating_sub(at) < window.as_millis() as u64 {
                        return Ok(Accepted::Duplicate(id.to_string()));
                    }
                }
            }
        }
        let seq = self.store.generate_id()?;
        let meta = EventMeta {
            id: event_id(seq),
            pipeline: pipeline.to_string(),
            received_at: now_rfc3339(),
            headers,
            attempts: 0,
            not_before_ms: 0,
            done: BTreeSet::new(),
            undo: Vec::new(),
            full_rerun: false,
            errors: Vec::new(),
            interrupted: 0,
            keys: BTreeMap::new(),
        };
        // Counted before it is in the table, so the count is never below what the table holds
        // (a drop by hand may take it out before this returns).
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.pending_bytes
            .fetch_add(body.len() as u64, Ordering::SeqCst);
        if let Err(e) = self
            .inbox
            .insert(&seq.to_be_bytes(), &encode_event(&meta, body)?)
        {
            self.uncount(body.len());
            return Err(e.into());
        }
        let value = format!("{now} {}", meta.id);
        // The event first, then its dedup keys (see the module docs). A concurrent delivery of
        // the same key may have won meanwhile: then this copy is withdrawn, with the keys it
        // had already claimed, which no other delivery can have taken since (they are fresh).
        let mut claimed: Vec<Vec<u8>> = Vec::with_capacity(dkeys.len());
        let mut lost = None;
        for dkey in dkeys {
            if claimed.contains(&dkey) {
                continue;
            }
            // Claimed in one step when the key is new (the common case): the value already
            // there comes back otherwise, so no read comes first.
            let won = match self.dedup.insert_new(&dkey, value.as_bytes())? {
                None => true,
                Some(old) => {
                    let stale = parse_dedup(&old)
                        .is_none_or(|(at, _)| now.saturating_sub(at) >= window.as_millis() as u64);
                    stale && self.dedup.replace(&dkey, &old, value.as_bytes())?
                }
            };
            if !won {
                lost = Some(dkey);
                break;
            }
            claimed.push(dkey);
        }
        if let Some(dkey) = lost {
            for dkey in &claimed {
                self.dedup.remove(dkey)?;
            }
            self.take_out(seq)?;
            let id = self
                .dedup
                .get(&dkey)?
                .as_deref()
                .and_then(parse_dedup)
                .map(|(_, id)| id.to_string())
                .unwrap_or_default();
            return Ok(Accepted::Duplicate(id));
        }
        for dkey in &claimed {
            let mut age = now.to_be_bytes().to_vec();
            age.extend_from_slice(dkey);
            self.dedup_age.insert(&age, b"")?;
        }
        self.last_accepted.fetch_max(seq, Ordering::SeqCst);
        Ok(Accepted::New(StoredEvent {
            seq,
            meta,
            body: Arc::from(body),
            resumed: false,
        }))
    }

    /// Writes an event that already has its sequence number (a cluster's stream numbers the
    /// events it hands out); `None` when one with that number is pending here already. A
    /// drop mark left on the number (a copy dropped at start) is cleared: this copy runs.
    pub fn place(
        &self,
        seq: u64,
        meta: EventMeta,
        body: &[u8],
    ) -> Result<Option<StoredEvent>, InboxError> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.pending_bytes
            .fetch_add(body.len() as u64, Ordering::SeqCst);
        match self
            .inbox
            .insert_new(&seq.to_be_bytes(), &encode_event(&meta, body)?)
        {
            Ok(None) => {}
            Ok(Some(_)) => {
                self.uncount(body.len());
                return Ok(None);
            }
            Err(e) => {
                self.uncount(body.len());
                return Err(e.into());
            }
        }
        self.was_dropped(seq);
        self.last_accepted.fetch_max(seq, Ordering::SeqCst);
        Ok(Some(StoredEvent {
            seq,
            meta,
            body: Arc::from(body),
            resumed: false,
        }))
    }

    /// Every event still in the inbox, in arrival order: what a restart resumes.
    pub fn pending(&self) -> Result<Vec<StoredEvent>, InboxError> {
        let mut out = Vec::new();
        let mut from = 0u64.to_be_bytes().to_vec();
        loop {
            let batch = self.inbox.range_from(&from, 1024)?;
            let Some((last, _)) = batch.last() else {
                break;
            };
            let next = key_seq(last).map(|s| s.saturating_add(1));
            for (k, v) in &batch {
                let mut event = decode_event(k, v)?;
                event.resumed = true;
                out.push(event);
            }
            match next {
                Some(n) if n != 0 => from = n.to_be_bytes().to_vec(),
                _ => break,
            }
        }
        Ok(out)
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
        match self.inbox.remove(&seq.to_be_bytes())? {
            Some(old) => {
                self.uncount(record::body_len(&old));
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

    /// A page of pending events as `crossdock inbox list` and `GET /api/inbox` show them:
    /// `{"total", "bytes", "items": [{"event_id", "pipeline", "received_at", "attempts",
    /// "interrupted", "not_before_ms", "bytes", "last_error"}]}`, oldest first, after the id
    /// `after` when given.
    pub fn pending_page(&self, after: Option<&str>, limit: usize) -> Result<Value, InboxError> {
        let from = after
            .and_then(parse_event_id)
            .map(|s| s.saturating_add(1))
            .unwrap_or(0);
        let mut items = Vec::new();
        for (k, v) in self.inbox.range_from(&from.to_be_bytes(), limit)? {
            let event = decode_event(&k, &v)?;
            let m = &event.meta;
            items.push(serde_json::json!({
                "event_id": m.id,
                "pipeline": m.pipeline,
                "received_at": m.received_at,
                "attempts": m.attempts,
                "interrupted": m.interrupted,
                "not_before_ms": m.not_before_ms,
                "bytes": event.body.len(),
                "last_error": m.errors.last().map(|e| e.message.clone()),
            }));
        }
        Ok(serde_json::json!({
            "total": self.pending_count(),
            "bytes": self.pending_bytes(),
            "items": items,
        }))
    }

    /// Removes a pending event by hand, leaving a trail that says so; false when there is no
    /// such event. A run already under way finishes; a queued one is not started.
    pub fn drop_pending(&self, id: &str, version: &str) -> Result<bool, InboxError> {
        let Some(seq) = parse_event_id(id) else {
            return Ok(false);
        };
        let Some(bytes) = self.inbox.get(&seq.to_be_bytes())? else {
            return Ok(false);
        };
        let event = decode_event(&seq.to_be_bytes(), &bytes)?;
        let trail = Trail {
            event_id: event.meta.id.clone(),
            pipeline: event.meta.pipeline.clone(),
            version: version.to_string(),
            received_at: event.meta.received_at.clone(),
            finished_at: now_rfc3339(),
            status: "dropped".into(),
            attempts: event.meta.attempts,
            steps: Vec::new(),
            actions: Vec::new(),
            errors: event.meta.errors.clone(),
            flow_us: 0,
            total_ms: 0,
            compensations: Vec::new(),
            keys: event.meta.keys.clone(),
            tenant: event.meta.headers.get(super::TENANT_HEADER).cloned(),
            explanation: None,
        };
        self.put_trail(seq, &trail)?;
        self.put_raw(&event)?;
        let taken = self.take_out(seq)?;
        if taken {
            self.dropped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(seq);
            self.any_dropped.store(true, Ordering::SeqCst);
        }
        Ok(taken)
    }

    /// Saves an event's meta after a failed attempt (its body is unchanged). An event no
    /// longer in the inbox (dropped by hand meanwhile) is not written back: false.
    pub fn update(&self, event: &StoredEvent) -> Result<bool, InboxError> {
        let key = event.seq.to_be_bytes();
        let new = encode_event(&event.meta, &event.body)?;
        loop {
            let Some(old) = self.inbox.get(&key)? else {
                return Ok(false);
            };
            if self.inbox.replace(&key, &old, &new)? {
                return Ok(true);
            }
        }
    }

    /// The event is done: its trail is written, then it leaves the inbox.
    pub fn finish(&self, event: &StoredEvent, trail: &Trail) -> Result<(), InboxError> {
        self.put_trail(event.seq, trail)?;
        self.put_raw(event)?;
        self.take_out(event.seq)?;
        // Dropped by hand while it ran: nothing is left to skip.
        self.was_dropped(event.seq);
        Ok(())
    }

    // Out of line, as `put_raw`, so that a profile shows what keeping it costs an event.
    #[inline(never)]
    pub fn put_trail(&self, seq: u64, trail: &Trail) -> Result<(), InboxError> {
        let value = to_json(trail)?;
        // The index first: a crash before the trail leaves an entry that finds no trail
        // (skipped by the search), never a trail its keys do not find.
        for (name, v) in &trail.keys {
            self.keys.insert(&key_entry(name, v, seq), b"")?;
        }
        let old = self.trail.swap(&seq.to_be_bytes(), &value)?;
        self.trail_bytes
            .fetch_add(value.len() as u64, Ordering::SeqCst);
        match old {
            // The same trail, rewritten (a retry's, then the final one): bytes only, and the
            // keys an earlier version of the pipeline found that this run did not.
            Some(old) => {
                self.trail_shrunk(old.len());
                if let Ok(old) = serde_json::from_slice::<Trail>(&old) {
                    for (name, v) in &old.keys {
                        if trail.keys.get(name) != Some(v) {
                            self.keys.remove(&key_entry(name, v, seq))?;
                        }
                    }
                }
            }
            None => {
                self.trails.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// Keeps a finishing event's headers and body (its first [`RAW_KEEP`] bytes) for its raw
    /// view; counted with the trails' bytes, which retention bounds.
    #[inline(never)]
    fn put_raw(&self, event: &StoredEvent) -> Result<(), InboxError> {
        let value = encode_raw(&event.meta.headers, &event.body)?;
        let old = self.raw.swap(&event.seq.to_be_bytes(), &value)?;
        self.trail_bytes
            .fetch_add(value.len() as u64, Ordering::SeqCst);
        if let Some(old) = old {
            self.trail_shrunk(old.len());
        }
        Ok(())
    }

    /// An event's delivery: from the inbox while it waits there, else as kept when it finished
    /// (until retention forgets it with its trail).
    pub fn raw(&self, id: &str) -> Result<Option<RawDelivery>, InboxError> {
        let Some(seq) = parse_event_id(id) else {
            return Ok(None);
        };
        let key = seq.to_be_bytes();
        if let Some(bytes) = self.inbox.get(&key)? {
            let event = decode_event(&key, &bytes)?;
            return Ok(Some(RawDelivery {
                bytes: event.body.len(),
                headers: event.meta.headers,
                body: event.body.to_vec(),
            }));
        }
        match self.raw.get(&key)? {
            Some(bytes) => Ok(Some(decode_raw(id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Events whose correlation key `name` has `value`, newest first, as [`Inbox::trail_page`]
    /// pages them; the index is read, not the trails, so the events of one order are found
    /// among any number stored. At most `scan` entries are read per page.
    pub fn key_page(
        &self,
        (name, value): (&str, &str),
        filter: &TrailFilter<'_>,
        before: Option<&str>,
        limit: usize,
        scan: usize,
    ) -> Result<Value, InboxError> {
        let prefix = key_prefix(name, value);
        let mut end = match before.and_then(parse_event_id) {
            Some(seq) => key_entry(name, value, seq),
            None => key_entry(name, value, u64::MAX),
        };
        // `u64::MAX` itself is no event's number, so "before it" takes them all.
        let mut items = Vec::new();
        let mut scanned = 0;
        let mut last = None;
        let mut exhausted = false;
        while items.len() < limit && scanned < scan {
            let batch = self
                .keys
                .range_back_within(&prefix, &end, 256.min(scan - scanned))?;
            if batch.is_empty() {
                exhausted = true;
                break;
            }
            for (k, _) in &batch {
                scanned += 1;
                end = k.clone();
                // A longer value that starts with this one and a zero byte is another key.
                let Some(seq) = k
                    .strip_prefix(prefix.as_slice())
                    .filter(|rest| rest.len() == 8)
                    .and_then(key_seq)
                else {
                    continue;
                };
                last = Some(seq);
                let Some(bytes) = self.trail.get(&seq.to_be_bytes())? else {
                    continue;
                };
                let trail: Trail = from_json(&event_id(seq), &bytes)?;
                if trail.keys.get(name).map(String::as_str) == Some(value) && filter.keeps(&trail) {
                    items.push(trail_summary(&trail));
                    if items.len() == limit {
                        break;
                    }
                }
            }
        }
        let next = match last {
            Some(seq) if !exhausted => Some(event_id(seq)),
            _ => None,
        };
        Ok(serde_json::json!({ "items": items, "next": next, "scanned": scanned }))
    }

    /// Moves the event to the dead letters (trail first, as in [`Inbox::finish`]).
    pub fn dead_letter(
        &self,
        event: &StoredEvent,
        trail: &Trail,
        letter: &DeadLetter,
    ) -> Result<(), InboxError> {
        let key = event.seq.to_be_bytes();
        let new = self.dead.get(&key)?.is_none();
        self.dead.insert(&key, &to_json(letter)?)?;
        if new {
            self.dead_count.fetch_add(1, Ordering::SeqCst);
        }
        self.finish(event, trail)
    }

    pub fn trail(&self, id: &str) -> Result<Option<Trail>, InboxError> {
        let Some(seq) = parse_event_id(id) else {
            return Ok(None);
        };
        match self.trail.get(&seq.to_be_bytes())? {
            Some(bytes) => Ok(Some(from_json(id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// A page of trails, newest first, for `GET /api/events`: `{"items": [...], "next"}`.
    /// `before` is the `next` of the previous page (an event id). At most `scan` trails are read
    /// per page whatever the filter keeps, so a filter matching little costs a bounded time; a
    /// page cut short by that bound still has a `next` to continue from.
    pub fn trail_page(
        &self,
        filter: &TrailFilter<'_>,
        before: Option<&str>,
        limit: usize,
        scan: usize,
    ) -> Result<Value, InboxError> {
        let mut cursor = before.and_then(parse_event_id).map(u64::to_be_bytes);
        let mut items = Vec::new();
        let mut scanned = 0;
        let mut exhausted = false;
        while items.len() < limit && scanned < scan {
            let batch = self.trail.range_back(
                cursor.as_ref().map(|c| c.as_slice()),
                256.min(scan - scanned),
            )?;
            if batch.is_empty() {
                exhausted = true;
                break;
            }
            for (k, v) in &batch {
                scanned += 1;
                cursor = key_seq(k).map(u64::to_be_bytes);
                let trail: Trail = from_json(&String::from_utf8_lossy(k), v)?;
                if filter.keeps(&trail) {
                    items.push(trail_summary(&trail));
                    if items.len() == limit {
                        break;
                    }
                }
            }
        }
        let next = match cursor {
            Some(c) if !exhausted => Some(event_id(u64::from_be_bytes(c))),
            _ => None,
        };
        Ok(serde_json::json!({ "items": items, "next": next, "scanned": scanned }))
    }

    /// Whether the event is still waiting in the inbox (and its meta).
    pub fn queued(&self, id: &str) -> Result<Option<EventMeta>, InboxError> {
        let Some(seq) = parse_event_id(id) else {
            return Ok(None);
        };
        match self.inbox.get(&seq.to_be_bytes())? {
            Some(bytes) => Ok(Some(decode_event(&seq.to_be_bytes(), &bytes)?.meta)),
            None => Ok(None),
        }
    }

    /// A page of dead letters as the admin API and `crossdock dlq list` show it:
    /// `{"total", "items": [{"event_id", "pipeline", "received_at", "dead_at", "attempts",
    /// "reason", "version", "keys"}]}`.
    pub fn dead_letter_page(&self, after: Option<&str>, limit: usize) -> Result<Value, InboxError> {
        let items: Vec<Value> = self
            .dead_letters(after, limit)?
            .iter()
            .map(dead_letter_summary)
            .collect();
        Ok(serde_json::json!({ "total": self.dead_letter_count(), "items": items }))
    }

    /// Dead letters in order, at most `limit`, starting after the id `after` when given.
    pub fn dead_letters(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, InboxError> {
        let from = after
            .and_then(parse_event_id)
            .map(|s| s.saturating_add(1))
            .unwrap_or(0);
        self.dead
            .range_from(&from.to_be_bytes(), limit)?
            .iter()
            .map(|(k, v)| from_json(&String::from_utf8_lossy(k), v))
            .collect()
    }

    pub fn dead_letter_count(&self) -> usize {
        usize::try_from(self.dead_count.load(Ordering::SeqCst)).unwrap_or(usize::MAX)
    }

    pub fn get_dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, InboxError> {
        let Some(seq) = parse_event_id(id) else {
            return Ok(None);
        };
        match self.dead.get(&seq.to_be_bytes())? {
            Some(bytes) => Ok(Some(from_json(id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Puts a dead letter back in the inbox with its attempts reset; returns the event. Its
    /// effects that succeeded are skipped when it runs again, unless `full` (everything is
    /// done again: a `create` makes another record).
    pub fn retry_dead_letter(
        &self,
        id: &str,
        full: bool,
    ) -> Result<Option<StoredEvent>, InboxError> {
        let Some(seq) = parse_event_id(id) else {
            return Ok(None);
        };
        let Some(bytes) = self.dead.get(&seq.to_be_bytes())? else {
            return Ok(None);
        };
        let letter: DeadLetter = from_json(id, &bytes)?;
        let mut meta = letter.event;
        meta.attempts = 0;
        meta.not_before_ms = 0;
        if full {
            meta.done.clear();
            meta.full_rerun = true;
        }
        let body = letter_body(&letter.body);
        // Into the inbox before out of the dead letters: a crash between keeps both copies,
        // never neither.
        meta.interrupted = 0;
        let value = encode_event(&meta, &body)?;
        // Counted only by the retry that put it there: two at once must not count it twice.
        match self.inbox.insert_new(&seq.to_be_bytes(), &value)? {
            None => {
                self.pending.fetch_add(1, Ordering::SeqCst);
                self.pending_bytes
                    .fetch_add(body.len() as u64, Ordering::SeqCst);
            }
            // Already back (a crash between the two writes below, or another retry): one event.
            Some(_) => {
                if let Some(old) = self.inbox.swap(&seq.to_be_bytes(), &value)? {
                    self.pending_bytes
                        .fetch_add(body.len() as u64, Ordering::SeqCst);
                    self.uncount_bytes(record::body_len(&old));
                }
            }
        }
        self.forget_dead_letter(seq)?;
        Ok(Some(StoredEvent {
            seq,
            meta,
            body: Arc::from(body),
            resumed: false,
        }))
    }

    /// Writes a dead letter again (what its compensations did so far), if it is still there.
    pub fn update_dead_letter(&self, letter: &DeadLetter) -> Result<(), InboxError> {
        let Some(seq) = parse_event_id(&letter.event.id) else {
            return Ok(());
        };
        let key = seq.to_be_bytes();
        if self.dead.get(&key)?.is_some() {
            self.dead.insert(&key, &to_json(letter)?)?;
        }
        Ok(())
    }

    pub fn drop_dead_letter(&self, id: &str) -> Result<bool, InboxError> {
        let Some(seq) = parse_event_id(id) else {
            return Ok(false);
        };
        self.forget_dead_letter(seq)
    }

    fn forget_dead_letter(&self, seq: u64) -> Result<bool, InboxError> {
        let removed = self.dead.remove(&seq.to_be_bytes())?.is_some();
        if removed {
            self.dead_count.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(removed)
    }
}

/// A dead letter's body as bytes again (kept as JSON, or as a string when it was not JSON).
pub fn letter_body(body: &Value) -> Vec<u8> {
    match body {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// A dead letter as a page of them lists it.
pub fn dead_letter_summary(l: &DeadLetter) -> Value {
    serde_json::json!({
        "event_id": l.event.id,
        "pipeline": l.event.pipeline,
        "received_at": l.event.received_at,
        "dead_at": l.dead_at,
        "attempts": l.event.attempts,
        "reason": l.reason,
        "version": l.version,
        "keys": l.event.keys,
    })
}

/// Which dead letters [`Inbox::dead_letters_matching`] takes: every one that matches all that
/// is given (`None` matches any).
#[derive(Debug, Default, Clone)]
pub struct DeadFilter {
    pub pipeline: Option<String>,
    /// Text the reason contains, in lower case (case is ignored).
    pub error: Option<String>,
    /// Dead at or after.
    pub since: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Dead before.
    pub until: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// A correlation key's name and value.
    pub key: Option<(String, String)>,
}

impl DeadFilter {
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let dead_at = chrono::DateTime::parse_from_rfc3339(&letter.dead_at).ok();
        self.pipeline
            .as_deref()
            .is_none_or(|p| p == letter.event.pipeline)
            && self
                .error
                .as_deref()
                .is_none_or(|e| letter.reason.to_lowercase().contains(e))
            && self.since.is_none_or(|s| dead_at.is_some_and(|d| d >= s))
            && self.until.is_none_or(|u| dead_at.is_some_and(|d| d < u))
            && self
                .key
                .as_ref()
                .is_none_or(|(name, value)| letter.event.keys.get(name) == Some(value))
    }
}

impl Inbox {
    /// The dead letters `filter` matches, oldest first, at most `limit`; and whether more
    /// matched. Reads the letters a page at a time.
    pub fn dead_letters_matching(
        &self,
        filter: &DeadFilter,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, bool), InboxError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.dead_letters(after.as_deref(), 256)?;
            let Some(last) = page.last() else {
                return Ok((out, false));
            };
            after = Some(last.event.id.clone());
            for letter in page {
                if filter.matches(&letter) {
                    if out.len() == limit {
                        return Ok((out, true));
                    }
                    out.push(letter);
                }
            }
        }
    }
}

/// Which trails [`Inbox::trail_page`] keeps: `None` keeps all.
#[derive(Debug, Default)]
pub struct TrailFilter<'a> {
    pub pipeline: Option<&'a str>,
    /// A [`Trail::status`].
    pub outcome: Option<&'a str>,
    pub tenant: Option<&'a str>,
    /// Received at this time or later.
    pub since: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Received before this time.
    pub until: Option<chrono::DateTime<chrono::FixedOffset>>,
}

impl TrailFilter<'_> {
    fn keeps(&self, trail: &Trail) -> bool {
        self.keeps_parts(
            &trail.pipeline,
            &trail.status,
            trail.tenant.as_deref(),
            &trail.received_at,
        )
    }

    /// What [`TrailFilter::keeps`] reads of a trail, wherever it comes from (a cluster's
    /// index keeps summaries, not trails).
    pub fn keeps_parts(
        &self,
        pipeline: &str,
        status: &str,
        tenant: Option<&str>,
        received_at: &str,
    ) -> bool {
        self.pipeline.is_none_or(|p| p == pipeline)
            && self.outcome.is_none_or(|o| o == status)
            && self.tenant.is_none_or(|t| Some(t) == tenant)
            && self.received_in_range(received_at)
    }

    /// Parsed only when a time is asked for: a trail's time is text, and most pages ask none.
    fn received_in_range(&self, received_at: &str) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Ok(at) = chrono::DateTime::parse_from_rfc3339(received_at) else {
            return false;
        };
        self.since.is_none_or(|s| at >= s) && self.until.is_none_or(|u| at < u)
    }
}

/// A trail as `GET /api/events` lists it.
pub fn trail_summary(t: &Trail) -> Value {
    serde_json::json!({
        "event_id": t.event_id,
        "pipeline": t.pipeline,
        "status": t.status,
        "version": t.version,
        "received_at": t.received_at,
        "finished_at": t.finished_at,
        "attempts": t.attempts,
        "actions": t.actions.len(),
        "total_ms": t.total_ms,
        "last_error": t.errors.last().map(|e| e.message.clone()),
        "keys": t.keys,
        "tenant": t.tenant,
    })
}

#[cfg(test)]
mod tests;
