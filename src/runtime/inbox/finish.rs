//! An event leaving the inbox or written back to it: its meta saved after a failed attempt, its
//! trail, raw delivery and key index entries written before it leaves (done, or dropped by
//! hand). Must not remove what retention owns (old trails) nor touch dead letters (`dead.rs`).

use std::sync::atomic::Ordering;

use super::record::{decode_event, encode_event, encode_raw, key_entry, to_json};
use super::{now_rfc3339, parse_event_id, Inbox, InboxError, StoredEvent, Trail};

impl Inbox {
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
            tenant: event
                .meta
                .headers
                .get(crate::runtime::TENANT_HEADER)
                .cloned(),
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
}
