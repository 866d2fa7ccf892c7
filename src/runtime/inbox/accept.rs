//! Writing an event in: a delivery accepted unless one of its dedup keys was seen within the
//! window, staged for the next round of the log (`wal.rs`), or an event a cluster's stream
//! already numbered. Must not make it durable (the committer does) nor queue it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::record::{encode_event, parse_dedup};
use super::wal::Staged;
use super::{event_id, now_ms, now_rfc3339, Accepted, EventMeta, Inbox, InboxError, StoredEvent};

impl Inbox {
    /// Stages a new event unless one of its dedup keys was seen within `window`; a new event
    /// claims all of them, so a later delivery matching any one is a duplicate. Not yet
    /// durable nor in the tables: await [`Committer::durable`] before acknowledging it or
    /// handing it to the workers.
    pub fn accept(
        &self,
        pipeline: &str,
        dedup_keys: &[&str],
        window: Duration,
        headers: BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<Accepted, InboxError> {
        let now = now_ms();
        let fresh = |at: u64| now.saturating_sub(at) < window.as_millis() as u64;
        let mut dkeys: Vec<Vec<u8>> = Vec::with_capacity(dedup_keys.len());
        for k in dedup_keys {
            let dkey = format!("{pipeline}\0{k}").into_bytes();
            if !dkeys.contains(&dkey) {
                dkeys.push(dkey);
            }
        }
        // Keys the tables hold, read before the lock so that the lock is held for no read of
        // sled in the common case. A round that releases claims after this read has landed
        // them first: then the keys are read again under the lock (below).
        let releases = self.wal.releases();
        let landed_duplicate = |dkeys: &[Vec<u8>]| -> Result<Option<String>, InboxError> {
            for dkey in dkeys {
                if let Some(old) = self.dedup.get(dkey)? {
                    if let Some((at, id)) = parse_dedup(&old) {
                        if fresh(at) {
                            return Ok(Some(id.to_string()));
                        }
                    }
                }
            }
            Ok(None)
        };
        // Most duplicates are a sender's retries of what it already delivered: answered from
        // the keys alone, they stage nothing.
        if let Some(id) = landed_duplicate(&dkeys)? {
            return Ok(Accepted::Duplicate(id));
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
        let value = encode_event(&meta, body)?;
        {
            // The claims of events not yet landed are decided here, one delivery at a time.
            let mut stage = self.wal.lock();
            for dkey in &dkeys {
                if let Some(&(at, first)) = stage.claims.get(dkey) {
                    if fresh(at) {
                        return Ok(Accepted::Duplicate(event_id(first)));
                    }
                }
            }
            if self.wal.releases() != releases {
                if let Some(id) = landed_duplicate(&dkeys)? {
                    return Ok(Accepted::Duplicate(id));
                }
            }
            // Counted before it is landed, so the count is never below what the table holds.
            self.backlog.add(body.len());
            stage.push(Staged {
                seq,
                at: now,
                keys: dkeys,
                value,
                body_len: body.len(),
            });
        }
        self.last_accepted.fetch_max(seq, Ordering::SeqCst);
        Ok(Accepted::New(StoredEvent {
            seq,
            meta,
            body: Arc::from(body),
            resumed: false,
            after: 0,
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
        self.backlog.add(body.len());
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
            after: 0,
        }))
    }
}
