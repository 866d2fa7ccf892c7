//! Writing an event in: a delivery accepted unless one of its dedup keys was seen within the
//! window (the event first, then its keys; see the module docs), or an event a cluster's
//! stream already numbered. Must not make it durable (the committer does) nor queue it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::record::{encode_event, parse_dedup};
use super::{event_id, now_ms, now_rfc3339, Accepted, EventMeta, Inbox, InboxError, StoredEvent};

impl Inbox {
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
}
