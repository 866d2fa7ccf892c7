//! Dead letters: an event moved to them (its trail first), listed, filtered, written again
//! after its compensations, put back in the inbox to run again, or dropped; the `dead` table's
//! count kept true. Must not run compensations (the runtime's workers do).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::Value;

use super::record::{self, encode_event, from_json, to_json};
use super::{parse_event_id, DeadLetter, Inbox, InboxError, StoredEvent, Trail};

impl Inbox {
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
