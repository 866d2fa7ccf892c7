//! Reading the tables for the admin API, the CLI and a restart: the pending events (all of
//! them, or a page), an event's raw delivery, trails one at a time or a page by filter or by
//! correlation key. Writes nothing.

use serde_json::Value;

use super::record::{decode_event, decode_raw, from_json, key_entry, key_prefix, key_seq};
use super::{
    event_id, parse_event_id, EventMeta, Inbox, InboxError, RawDelivery, StoredEvent, Trail,
};

impl Inbox {
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
