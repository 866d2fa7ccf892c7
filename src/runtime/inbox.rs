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
//!
//! Event ids are `evt_` and the sequence number in hex, so ids sort by arrival and a trail or
//! dead letter is found from the id alone.
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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{watch, Notify};

use crate::state::{SledStore, StateError, Table};

/// What is stored about an event besides its body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventMeta {
    pub id: String,
    pub pipeline: String,
    /// RFC 3339.
    pub received_at: String,
    /// Request headers, names in lower case (credentials removed).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not to be tried before this time (ms since the epoch); 0 for at once.
    #[serde(default)]
    pub not_before_ms: u64,
    /// How many of the event's actions succeeded in earlier attempts: a retry skips them.
    #[serde(default)]
    pub done_actions: usize,
    /// Every failed attempt.
    #[serde(default)]
    pub errors: Vec<AttemptError>,
    /// Runs that began after a restart and never came to an end: the engine stopped (a crash,
    /// an abort, `kill -9`) while the event was running. Written to disk before such a run
    /// starts, so an event that takes the process down is counted even as it does; at
    /// `quarantine_after` it is dead-lettered unrun instead of taking the engine down again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interrupted: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptError {
    /// RFC 3339.
    pub at: String,
    pub message: String,
}

/// An event as stored: meta and the body exactly as received.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    pub meta: EventMeta,
    pub body: Arc<[u8]>,
    /// Found in the inbox at start (not kept on disk): its next run is counted in
    /// [`EventMeta::interrupted`] before it begins.
    pub resumed: bool,
}

/// A dead letter: the original event, every attempt's error, and the version that failed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event: EventMeta,
    /// The body as received (a string when it is not JSON).
    pub body: Value,
    pub reason: String,
    /// The project version the last attempt ran on.
    pub version: String,
    /// RFC 3339.
    pub dead_at: String,
}

/// What happened to one event: kept after it leaves the inbox, shown by the admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trail {
    pub event_id: String,
    pub pipeline: String,
    /// The project version the event ran on (its last attempt).
    pub version: String,
    pub received_at: String,
    pub finished_at: String,
    /// `processed`, `skipped` (the trigger did not match), `filtered`, `retrying`,
    /// `dead_lettered` or `failed` (dropped: the pipeline keeps no dead letters).
    pub status: String,
    pub attempts: u32,
    /// The steps that ran, in order.
    #[serde(default)]
    pub steps: Vec<Arc<str>>,
    pub actions: Vec<ActionTrail>,
    #[serde(default)]
    pub errors: Vec<AttemptError>,
    /// Time spent in the flow (mapping, rules, state), microseconds.
    pub flow_us: u64,
    /// From receipt to the end of the last attempt, milliseconds.
    pub total_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionTrail {
    pub connector: Arc<str>,
    pub op: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub object: Option<Arc<str>>,
    /// `ok`, `failed`, `skipped` (done by an earlier attempt) or `not_run`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub remote_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub remote_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    pub ms: u64,
}

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

/// When an accepted event is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync (shared by concurrent requests) before the 202.
    Group,
    /// 202 at once; sled flushes every 500 ms.
    Periodic,
}

pub fn event_id(seq: u64) -> String {
    format!("evt_{seq:016x}")
}

/// The sequence number in an event id, if it is one.
pub fn parse_event_id(id: &str) -> Option<u64> {
    let hex = id.strip_prefix("evt_")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The runtime's tables.
pub struct Inbox {
    store: Arc<SledStore>,
    inbox: Table,
    dedup: Table,
    dedup_age: Table,
    dead: Table,
    trail: Table,
    pub committer: Arc<Committer>,
    /// Events in `inbox`, kept here because sled counts a tree by scanning it.
    pending: AtomicU64,
    /// Entries in `dead`, for the same reason: `/health` and the dead-letter gauge read it
    /// often, and a scan per read grows with every letter kept.
    dead_count: AtomicU64,
    /// Bytes of body held by the events in `inbox`: each is also in memory (queued for a
    /// worker, running, or waiting for its retry), so this bounds the memory the backlog takes.
    pending_bytes: AtomicU64,
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
        let (mut count, mut bytes) = (0u64, 0u64);
        let mut from = 0u64.to_be_bytes().to_vec();
        loop {
            let batch = inbox.range_from(&from, 1024)?;
            let Some((last, _)) = batch.last() else { break };
            for (_, v) in &batch {
                count += 1;
                let split = v.iter().position(|b| *b == b'\n').unwrap_or(v.len());
                bytes += v.len().saturating_sub(split + 1) as u64;
            }
            match key_seq(last).map(|s| s.saturating_add(1)) {
                Some(n) if n != 0 => from = n.to_be_bytes().to_vec(),
                _ => break,
            }
        }
        Ok(Inbox {
            pending: AtomicU64::new(count),
            pending_bytes: AtomicU64::new(bytes),
            last_accepted: AtomicU64::new(0),
            dropped: std::sync::Mutex::new(std::collections::HashSet::new()),
            any_dropped: std::sync::atomic::AtomicBool::new(false),
            inbox,
            dedup: store.table("dedup")?,
            dedup_age: store.table("dedup-age")?,
            dead_count: AtomicU64::new(dead.len() as u64),
            dead,
            trail: store.table("trail")?,
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
            done_actions: 0,
            errors: Vec::new(),
            interrupted: 0,
        };
        self.inbox
            .insert(&seq.to_be_bytes(), &encode_event(&meta, body)?)?;
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
            let won = match self.dedup.get(&dkey)? {
                None => self.dedup.insert_new(&dkey, value.as_bytes())?.is_none(),
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
            self.inbox.remove(&seq.to_be_bytes())?;
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
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.pending_bytes
            .fetch_add(body.len() as u64, Ordering::SeqCst);
        self.last_accepted.fetch_max(seq, Ordering::SeqCst);
        Ok(Accepted::New(StoredEvent {
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
                let split = old.iter().position(|b| *b == b'\n').unwrap_or(old.len());
                self.pending.fetch_sub(1, Ordering::SeqCst);
                self.pending_bytes
                    .fetch_sub(old.len().saturating_sub(split + 1) as u64, Ordering::SeqCst);
                Ok(true)
            }
            None => Ok(false),
        }
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
        };
        self.put_trail(seq, &trail)?;
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

    /// Saves an event's meta after a failed attempt (its body is unchanged).
    pub fn update(&self, event: &StoredEvent) -> Result<(), InboxError> {
        self.inbox.insert(
            &event.seq.to_be_bytes(),
            &encode_event(&event.meta, &event.body)?,
        )?;
        Ok(())
    }

    /// The event is done: its trail is written, then it leaves the inbox.
    pub fn finish(&self, event: &StoredEvent, trail: &Trail) -> Result<(), InboxError> {
        self.put_trail(event.seq, trail)?;
        self.take_out(event.seq)?;
        // Dropped by hand while it ran: nothing is left to skip.
        self.was_dropped(event.seq);
        Ok(())
    }

    pub fn put_trail(&self, seq: u64, trail: &Trail) -> Result<(), InboxError> {
        self.trail.insert(&seq.to_be_bytes(), &to_json(trail)?)?;
        Ok(())
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
    /// "reason"}]}`.
    pub fn dead_letter_page(&self, after: Option<&str>, limit: usize) -> Result<Value, InboxError> {
        let items: Vec<Value> = self
            .dead_letters(after, limit)?
            .iter()
            .map(|l| {
                serde_json::json!({
                    "event_id": l.event.id,
                    "pipeline": l.event.pipeline,
                    "received_at": l.event.received_at,
                    "dead_at": l.dead_at,
                    "attempts": l.event.attempts,
                    "reason": l.reason,
                })
            })
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

    /// Puts a dead letter back in the inbox with its attempts reset; returns the event.
    pub fn retry_dead_letter(&self, id: &str) -> Result<Option<StoredEvent>, InboxError> {
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
        meta.done_actions = 0;
        let body = match &letter.body {
            Value::String(s) => s.as_bytes().to_vec(),
            other => other.to_string().into_bytes(),
        };
        // Into the inbox before out of the dead letters: a crash between keeps both copies,
        // never neither.
        meta.interrupted = 0;
        if self.inbox.get(&seq.to_be_bytes())?.is_none() {
            self.pending.fetch_add(1, Ordering::SeqCst);
            self.pending_bytes
                .fetch_add(body.len() as u64, Ordering::SeqCst);
        }
        self.inbox
            .insert(&seq.to_be_bytes(), &encode_event(&meta, &body)?)?;
        self.forget_dead_letter(seq)?;
        Ok(Some(StoredEvent {
            seq,
            meta,
            body: Arc::from(body),
            resumed: false,
        }))
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

    /// Forgets dedup keys older than `window`; returns how many.
    pub fn sweep_dedup(&self, window: Duration) -> Result<usize, InboxError> {
        let cutoff = now_ms().saturating_sub(window.as_millis() as u64);
        let mut removed = 0;
        loop {
            let batch = self.dedup_age.range_from(&[], 1024)?;
            let mut done = batch.is_empty();
            for (k, _) in &batch {
                let Some(at) = key_seq(k) else { continue };
                if at >= cutoff {
                    done = true;
                    break;
                }
                let dkey = &k[8..];
                // Only if it still points at this age: a later delivery may have renewed it.
                if let Some(v) = self.dedup.get(dkey)? {
                    if parse_dedup(&v).is_some_and(|(a, _)| a == at) {
                        self.dedup.remove(dkey)?;
                    }
                }
                self.dedup_age.remove(k)?;
                removed += 1;
            }
            if done {
                return Ok(removed);
            }
        }
    }

    /// Forgets trails older than `keep`; returns how many.
    pub fn sweep_trails(&self, keep: Duration) -> Result<usize, InboxError> {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(7));
        let mut removed = 0;
        loop {
            let batch = self.trail.range_from(&[], 256)?;
            if batch.is_empty() {
                return Ok(removed);
            }
            for (k, v) in &batch {
                let old = serde_json::from_slice::<Trail>(v)
                    .ok()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t.finished_at).ok())
                    .is_none_or(|at| at < cutoff);
                if !old {
                    return Ok(removed);
                }
                self.trail.remove(k)?;
                removed += 1;
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
}

impl TrailFilter<'_> {
    fn keeps(&self, trail: &Trail) -> bool {
        self.pipeline.is_none_or(|p| p == trail.pipeline)
            && self.outcome.is_none_or(|o| o == trail.status)
    }
}

fn trail_summary(t: &Trail) -> Value {
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
    })
}

fn parse_dedup(value: &[u8]) -> Option<(u64, &str)> {
    let text = std::str::from_utf8(value).ok()?;
    let (at, id) = text.split_once(' ')?;
    Some((at.parse().ok()?, id))
}

fn key_seq(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, InboxError> {
    serde_json::to_vec(value).map_err(|e| InboxError::Corrupt {
        key: "(new)".into(),
        message: e.to_string(),
    })
}

fn from_json<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, InboxError> {
    serde_json::from_slice(bytes).map_err(|e| InboxError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

fn encode_event(meta: &EventMeta, body: &[u8]) -> Result<Vec<u8>, InboxError> {
    // Compact JSON never holds a raw newline, so the first one ends the meta.
    let mut out = to_json(meta)?;
    out.push(b'\n');
    out.extend_from_slice(body);
    Ok(out)
}

fn decode_event(key: &[u8], value: &[u8]) -> Result<StoredEvent, InboxError> {
    let name = || format!("inbox/{}", key_seq(key).map(event_id).unwrap_or_default());
    let seq = key_seq(key).ok_or_else(|| InboxError::Corrupt {
        key: name(),
        message: "key is not a sequence number".into(),
    })?;
    let split = value
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| InboxError::Corrupt {
            key: name(),
            message: "no end of meta".into(),
        })?;
    let meta = from_json(&name(), &value[..split])?;
    Ok(StoredEvent {
        seq,
        meta,
        body: Arc::from(&value[split + 1..]),
        resumed: false,
    })
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
    fn new(store: Arc<SledStore>, policy: FlushPolicy) -> Committer {
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
    use super::*;

    fn inbox() -> Inbox {
        Inbox::open(
            Arc::new(SledStore::temporary().unwrap()),
            FlushPolicy::Group,
        )
        .unwrap()
    }

    fn accept(inbox: &Inbox, key: &str, window: Duration) -> Accepted {
        inbox
            .accept("p", &[key], window, BTreeMap::new(), br#"{"a":1}"#)
            .unwrap()
    }

    #[test]
    fn duplicates_within_the_window_are_refused_and_point_at_the_first() {
        let inbox = inbox();
        let Accepted::New(first) = accept(&inbox, "k1", Duration::from_secs(60)) else {
            panic!("first delivery refused")
        };
        match accept(&inbox, "k1", Duration::from_secs(60)) {
            Accepted::Duplicate(id) => assert_eq!(id, first.meta.id),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            accept(&inbox, "k2", Duration::from_secs(60)),
            Accepted::New(_)
        ));
        // A window of zero: every delivery is new, and the key now points at the newest.
        assert!(matches!(
            accept(&inbox, "k1", Duration::ZERO),
            Accepted::New(_)
        ));
        assert_eq!(inbox.pending().unwrap().len(), 3);
    }

    #[test]
    fn any_one_of_several_keys_makes_a_duplicate_and_a_loser_frees_what_it_claimed() {
        let inbox = inbox();
        let window = Duration::from_secs(60);
        let accept_keys = |keys: &[&str]| {
            inbox
                .accept("p", keys, window, BTreeMap::new(), b"{}")
                .unwrap()
        };
        let Accepted::New(first) = accept_keys(&["id:1", "sha256:h"]) else {
            panic!("first delivery refused")
        };
        // A new id with the same body: the second key decides.
        match accept_keys(&["id:2", "sha256:h"]) {
            Accepted::Duplicate(id) => assert_eq!(id, first.meta.id),
            other => panic!("{other:?}"),
        }
        // `id:2` was claimed and then given back with the withdrawn copy.
        assert!(matches!(accept_keys(&["id:2"]), Accepted::New(_)));
        assert!(matches!(accept_keys(&["id:1"]), Accepted::Duplicate(_)));
        assert_eq!(inbox.pending().unwrap().len(), 2);
        // Both keys of the first are swept with it.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(inbox.sweep_dedup(Duration::from_millis(10)).unwrap(), 3);
    }

    #[test]
    fn a_duplicate_writes_nothing() {
        let inbox = inbox();
        let Accepted::New(first) = accept(&inbox, "k", Duration::from_secs(60)) else {
            panic!("first delivery refused")
        };
        for _ in 0..3 {
            assert!(matches!(
                accept(&inbox, "k", Duration::from_secs(60)),
                Accepted::Duplicate(id) if id == first.meta.id
            ));
        }
        // No event was written and withdrawn: the next one takes the next number.
        let Accepted::New(next) = accept(&inbox, "other", Duration::from_secs(60)) else {
            panic!("second delivery refused")
        };
        assert_eq!(next.seq, first.seq + 1);
        assert_eq!(inbox.pending().unwrap().len(), 2);
    }

    #[test]
    fn events_survive_a_reopen_with_body_and_meta() {
        let dir = tempfile::tempdir().unwrap();
        let id;
        {
            let store = Arc::new(SledStore::open(dir.path()).unwrap());
            let inbox = Inbox::open(store.clone(), FlushPolicy::Group).unwrap();
            let mut headers = BTreeMap::new();
            headers.insert("x-a".into(), "1".into());
            let Accepted::New(ev) = inbox
                .accept("p", &["k"], Duration::from_secs(1), headers, b"{\"b\":\n2}")
                .unwrap()
            else {
                panic!()
            };
            id = ev.meta.id.clone();
            store.flush().unwrap();
        }
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let inbox = Inbox::open(store, FlushPolicy::Group).unwrap();
        let pending = inbox.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].meta.id, id);
        assert_eq!(&*pending[0].body, b"{\"b\":\n2}");
        assert_eq!(pending[0].meta.headers["x-a"], "1");
        assert_eq!(parse_event_id(&id), Some(pending[0].seq));
    }

    #[test]
    fn dead_letters_retry_and_drop() {
        let inbox = inbox();
        let Accepted::New(ev) = accept(&inbox, "k", Duration::from_secs(60)) else {
            panic!()
        };
        let trail = Trail {
            event_id: ev.meta.id.clone(),
            pipeline: "p".into(),
            version: "v1".into(),
            received_at: ev.meta.received_at.clone(),
            finished_at: now_rfc3339(),
            status: "dead_lettered".into(),
            attempts: 1,
            steps: vec![],
            actions: vec![],
            errors: vec![],
            flow_us: 0,
            total_ms: 0,
        };
        let letter = DeadLetter {
            event: ev.meta.clone(),
            body: serde_json::json!({"a": 1}),
            reason: "boom".into(),
            version: "v1".into(),
            dead_at: now_rfc3339(),
        };
        inbox.dead_letter(&ev, &trail, &letter).unwrap();
        // Written again (a crash before the inbox entry went): still one letter.
        inbox.dead_letter(&ev, &trail, &letter).unwrap();
        assert_eq!(inbox.dead_letter_count(), 1);
        assert_eq!(inbox.pending().unwrap().len(), 0);
        assert_eq!(inbox.dead_letters(None, 10).unwrap().len(), 1);
        assert_eq!(
            inbox.trail(&ev.meta.id).unwrap().unwrap().status,
            "dead_lettered"
        );
        let back = inbox.retry_dead_letter(&ev.meta.id).unwrap().unwrap();
        assert_eq!(&*back.body, br#"{"a":1}"#);
        assert_eq!(inbox.pending().unwrap().len(), 1);
        assert_eq!(inbox.dead_letter_count(), 0);
        assert!(!inbox.drop_dead_letter(&ev.meta.id).unwrap());
        assert!(inbox.retry_dead_letter("evt_nonsense").unwrap().is_none());
    }

    #[test]
    fn sweeping_forgets_old_dedup_keys_only() {
        let inbox = inbox();
        accept(&inbox, "old", Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(inbox.sweep_dedup(Duration::from_millis(10)).unwrap(), 1);
        assert!(matches!(
            accept(&inbox, "old", Duration::from_secs(60)),
            Accepted::New(_)
        ));
        assert_eq!(inbox.sweep_dedup(Duration::from_secs(60)).unwrap(), 0);
    }

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

    fn stored_trail(seq: u64, pipeline: &str) -> Trail {
        Trail {
            event_id: event_id(seq),
            pipeline: pipeline.into(),
            version: "v".into(),
            received_at: now_rfc3339(),
            finished_at: now_rfc3339(),
            status: if seq % 3 == 0 { "skipped" } else { "processed" }.into(),
            attempts: 1,
            steps: Vec::new(),
            actions: Vec::new(),
            errors: Vec::new(),
            flow_us: 0,
            total_ms: 0,
        }
    }

    #[test]
    fn trail_pages_go_newest_first_and_stop_at_the_scan_bound_with_a_cursor() {
        let inbox = inbox();
        for seq in 0..10 {
            let pipeline = if seq % 2 == 0 { "a" } else { "b" };
            inbox.put_trail(seq, &stored_trail(seq, pipeline)).unwrap();
        }
        let only_a = TrailFilter {
            pipeline: Some("a"),
            outcome: None,
        };
        // Four trails read (9, 8, 7, 6): two kept, and where to go on from.
        let page = inbox.trail_page(&only_a, None, 100, 4).unwrap();
        let ids = |page: &Value| -> Vec<String> {
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["event_id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids(&page), [event_id(8), event_id(6)]);
        assert_eq!(page["next"], event_id(6).as_str());
        assert_eq!(page["scanned"], 4);
        let mut all = ids(&page);
        let mut cursor = page["next"].as_str().map(String::from);
        while let Some(c) = cursor {
            let page = inbox.trail_page(&only_a, Some(&c), 100, 4).unwrap();
            all.extend(ids(&page));
            cursor = page["next"].as_str().map(String::from);
        }
        assert_eq!(all, [8, 6, 4, 2, 0].map(event_id));

        // A full page stops at `limit`; its `next` is the last item.
        let skipped = TrailFilter {
            pipeline: None,
            outcome: Some("skipped"),
        };
        let page = inbox.trail_page(&skipped, None, 2, 1000).unwrap();
        assert_eq!(ids(&page), [event_id(9), event_id(6)]);
        assert_eq!(page["next"], event_id(6).as_str());
        let page = inbox
            .trail_page(&skipped, Some(&event_id(6)), 2, 1000)
            .unwrap();
        assert_eq!(ids(&page), [event_id(3), event_id(0)]);
        // Nothing older than event 0: the last page says so.
        let page = inbox
            .trail_page(&skipped, Some(&event_id(0)), 2, 1000)
            .unwrap();
        assert_eq!(page["items"], serde_json::json!([]));
        assert_eq!(page["next"], Value::Null);
    }
}
