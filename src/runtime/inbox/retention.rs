//! Retention: what is kept after an event finishes (its trail, its dedup keys) is forgotten in
//! the background, by age and by bytes, and the counters the engine shows are checked against
//! the tables. Owns the sweeps and the tally; it never removes an entry of the `inbox` table,
//! nor the trail of an event still in it: nothing pending expires.
//!
//! A finished event leaves its `inbox` entry (a dead letter keeps its own copy, until a person
//! retries or drops it). What stays is its trail (a few hundred bytes), its raw delivery (its
//! headers and the first `RAW_KEEP` bytes of its body) and the index entries of its correlation
//! keys, all three together for `keep_trails` or until trails and raw deliveries pass
//! `keep_trails_bytes`, oldest first; and its dedup keys (for `dedup_window`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::record::{body_len, key_entry, key_seq, now_ms, parse_dedup, Trail};
use super::{Inbox, InboxError};
use crate::state::Table;

/// Entries removed per batch: a sweep lets ingress's writes in between batches.
const BATCH: usize = 256;

/// How much the inbox's tables hold: kept as counters while the engine runs (what `/health`
/// and `/metrics` show), and counted by reading the tables at start and by [`Inbox::audit`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Events in `inbox`: accepted and not done.
    pub pending: u64,
    /// Bytes of their bodies.
    pub pending_bytes: u64,
    pub dead_letters: u64,
    pub trails: u64,
    /// Bytes of the trails' values.
    pub trail_bytes: u64,
}

/// Reads every entry of `table` (keys of 8 bytes) in batches, in key order.
fn each_entry(table: &Table, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), InboxError> {
    let mut from = 0u64.to_be_bytes().to_vec();
    loop {
        let batch = table.range_from(&from, 1024)?;
        let Some((last, _)) = batch.last() else {
            return Ok(());
        };
        for (k, v) in &batch {
            f(k, v);
        }
        match key_seq(last).map(|s| s.saturating_add(1)) {
            Some(n) if n != 0 => from = n.to_be_bytes().to_vec(),
            _ => return Ok(()),
        }
    }
}

/// The tally of the tables, read whole.
pub(super) fn tally(
    inbox: &Table,
    dead: &Table,
    trail: &Table,
    raw: &Table,
) -> Result<Tally, InboxError> {
    let mut t = Tally::default();
    each_entry(inbox, |_, v| {
        t.pending += 1;
        t.pending_bytes += body_len(v) as u64;
    })?;
    each_entry(dead, |_, _| t.dead_letters += 1)?;
    each_entry(trail, |_, v| {
        t.trails += 1;
        t.trail_bytes += v.len() as u64;
    })?;
    each_entry(raw, |_, v| t.trail_bytes += v.len() as u64)?;
    Ok(t)
}

impl Inbox {
    /// The counters as they stand (no read of the tables).
    pub fn tally(&self) -> Tally {
        Tally {
            pending: self.pending.load(Ordering::SeqCst),
            pending_bytes: self.pending_bytes.load(Ordering::SeqCst),
            dead_letters: self.dead_count.load(Ordering::SeqCst),
            trails: self.trails.load(Ordering::SeqCst),
            trail_bytes: self.trail_bytes.load(Ordering::SeqCst),
        }
    }

    /// The tally counted by reading every table: what [`Inbox::tally`] must equal when nothing
    /// is being written. Reads all the trails; for tests and checks, not for a hot path.
    pub fn audit(&self) -> Result<Tally, InboxError> {
        tally(&self.inbox, &self.dead, &self.trail, &self.raw)
    }

    /// Bytes of the store's files on disk, as sled counts them (the state shares them).
    pub fn disk_bytes(&self) -> Option<u64> {
        self.store.size_on_disk().ok()
    }

    /// `bytes` of trail less in the counts (never below zero).
    pub(super) fn trail_shrunk(&self, bytes: usize) {
        let _ = self
            .trail_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(bytes as u64))
            });
    }

    /// Forgets a finished event: its trail, the index entries of its keys, its raw delivery.
    fn remove_trail(&self, key: &[u8]) -> Result<(), InboxError> {
        if let Some(raw) = self.raw.remove(key)? {
            self.trail_shrunk(raw.len());
        }
        if let Some(old) = self.trail.remove(key)? {
            self.trail_shrunk(old.len());
            if let (Ok(trail), Some(seq)) = (serde_json::from_slice::<Trail>(&old), key_seq(key)) {
                for (name, value) in &trail.keys {
                    self.keys.remove(&key_entry(name, value, seq))?;
                }
            }
            let _ = self
                .trails
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        Ok(())
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

    /// Forgets the trails of finished events older than `keep`, then the oldest ones while the
    /// trails hold more than `max_bytes`; returns how many went. The trail of an event still in
    /// the inbox (waiting for a retry) stays whatever its age.
    pub fn sweep_trails(&self, keep: Duration, max_bytes: u64) -> Result<usize, InboxError> {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(7));
        let mut removed = 0;
        let mut from = 0u64.to_be_bytes().to_vec();
        loop {
            let over = self.trail_bytes.load(Ordering::SeqCst) > max_bytes;
            let batch = self.trail.range_from(&from, BATCH)?;
            let Some((last, _)) = batch.last() else {
                return Ok(removed);
            };
            let mut young = false;
            for (k, v) in &batch {
                // Keys are event numbers, so the oldest come first; a trail whose time cannot
                // be read is taken for old.
                let old = serde_json::from_slice::<Trail>(v)
                    .ok()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t.finished_at).ok())
                    .is_none_or(|at| at < cutoff);
                let over = over && self.trail_bytes.load(Ordering::SeqCst) > max_bytes;
                if !old && !over {
                    young = true;
                    break;
                }
                if self.inbox.get(k)?.is_some() {
                    continue;
                }
                self.remove_trail(k)?;
                removed += 1;
            }
            if young {
                return Ok(removed);
            }
            match key_seq(last).map(|s| s.saturating_add(1)) {
                Some(n) if n != 0 => from = n.to_be_bytes().to_vec(),
                _ => return Ok(removed),
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::tests::{accept, bare_trail, inbox, page_ids};
    use super::super::Accepted;
    use super::*;

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

    /// A trail of `event` with nothing in it but its status: what these tests and the inbox's
    /// own tests store.
    pub(in crate::runtime::inbox) fn trail_of(
        event: &super::super::StoredEvent,
        status: &str,
    ) -> Trail {
        Trail {
            version: "v1".into(),
            received_at: event.meta.received_at.clone(),
            ..bare_trail(event.meta.id.clone(), "p", status)
        }
    }

    #[test]
    fn trails_past_the_byte_bound_go_oldest_first_but_never_a_pending_events() {
        let inbox = inbox();
        let mut events = Vec::new();
        for n in 0..40 {
            let Accepted::New(ev) = accept(&inbox, &format!("k{n}"), Duration::from_secs(60))
            else {
                panic!("refused")
            };
            events.push(ev);
        }
        // The first one waits for a retry: its trail stays in any case. The others finish.
        inbox
            .put_trail(events[0].seq, &trail_of(&events[0], "retrying"))
            .unwrap();
        for ev in &events[1..] {
            inbox.finish(ev, &trail_of(ev, "processed")).unwrap();
        }
        let before = inbox.tally();
        assert_eq!(before, inbox.audit().unwrap());
        assert_eq!((before.pending, before.trails), (1, 40));
        let one = before.trail_bytes / 40;
        // Young trails under a bound of ten trails' bytes: the oldest finished ones go.
        let removed = inbox
            .sweep_trails(Duration::from_secs(3600), one * 10)
            .unwrap();
        let after = inbox.tally();
        assert_eq!(after, inbox.audit().unwrap());
        assert!(after.trail_bytes <= one * 10, "{after:?}");
        assert_eq!(removed as u64, 40 - after.trails);
        assert!(inbox.trail(&events[0].meta.id).unwrap().is_some());
        assert!(inbox.trail(&events[1].meta.id).unwrap().is_none());
        assert!(inbox.trail(&events[39].meta.id).unwrap().is_some());
        // By age: every finished trail is old at a keep of zero; the pending one still stays.
        inbox.sweep_trails(Duration::ZERO, u64::MAX).unwrap();
        let t = inbox.tally();
        assert_eq!((t.pending, t.trails), (1, 1));
        assert_eq!(t, inbox.audit().unwrap());
        assert_eq!(inbox.pending().unwrap().len(), 1);
    }

    #[test]
    fn a_forgotten_trail_takes_its_delivery_and_its_key_entries_with_it() {
        let inbox = inbox();
        let window = Duration::from_secs(60);
        let all = super::super::TrailFilter::default();
        let mut events = Vec::new();
        for n in 0..3 {
            let Accepted::New(mut ev) = accept(&inbox, &format!("k{n}"), window) else {
                panic!("refused")
            };
            ev.meta.keys.insert("order".into(), format!("{}", n % 2));
            let mut trail = trail_of(&ev, "processed");
            trail.keys = ev.meta.keys.clone();
            inbox.finish(&ev, &trail).unwrap();
            events.push(ev);
        }
        let page = inbox.key_page(("order", "0"), &all, None, 10, 100).unwrap();
        assert_eq!(
            page_ids(&page),
            [events[2].meta.id.clone(), events[0].meta.id.clone()]
        );
        let raw = inbox.raw(&events[0].meta.id).unwrap().unwrap();
        assert_eq!(raw.body, br#"{"a":1}"#);
        // The deliveries count with the trails' bytes, read or counted.
        let t = inbox.tally();
        assert_eq!(t, inbox.audit().unwrap());
        assert!(t.trail_bytes > 3 * 7, "{t:?}");

        inbox.sweep_trails(Duration::ZERO, u64::MAX).unwrap();
        let page = inbox.key_page(("order", "0"), &all, None, 10, 100).unwrap();
        assert_eq!(page["items"], serde_json::json!([]));
        assert_eq!(page["scanned"], 0, "the index entries went too");
        assert!(inbox.raw(&events[0].meta.id).unwrap().is_none());
        let t = inbox.tally();
        assert_eq!((t.trails, t.trail_bytes), (0, 0));
        assert_eq!(t, inbox.audit().unwrap());
    }

    #[test]
    fn the_counters_equal_the_tables_after_every_kind_of_change() {
        let inbox = inbox();
        let window = Duration::from_secs(60);
        let mut events = Vec::new();
        for n in 0..6 {
            let Accepted::New(ev) = accept(&inbox, &format!("k{n}"), window) else {
                panic!("refused")
            };
            events.push(ev);
        }
        // A duplicate, a finish, a dead letter retried twice, a drop, a retry's update.
        assert!(matches!(
            accept(&inbox, "k0", window),
            Accepted::Duplicate(_)
        ));
        inbox
            .finish(&events[0], &trail_of(&events[0], "processed"))
            .unwrap();
        let letter = |ev: &super::super::StoredEvent| super::super::DeadLetter {
            event: ev.meta.clone(),
            body: serde_json::json!({"a": 1}),
            reason: "boom".into(),
            version: "v1".into(),
            dead_at: super::super::now_rfc3339(),
        };
        inbox
            .dead_letter(
                &events[1],
                &trail_of(&events[1], "dead_lettered"),
                &letter(&events[1]),
            )
            .unwrap();
        assert_eq!(inbox.tally(), inbox.audit().unwrap());
        inbox
            .retry_dead_letter(&events[1].meta.id, false)
            .unwrap()
            .unwrap();
        assert!(inbox
            .retry_dead_letter(&events[1].meta.id, false)
            .unwrap()
            .is_none());
        assert!(inbox.drop_pending(&events[2].meta.id, "v1").unwrap());
        // The dropped event's worker saves its failed attempt: not written back.
        assert!(!inbox.update(&events[2]).unwrap());
        assert!(inbox.update(&events[3]).unwrap());
        let t = inbox.tally();
        assert_eq!(t, inbox.audit().unwrap());
        assert_eq!((t.pending, t.dead_letters, t.trails), (4, 0, 3));
        assert_eq!(t.pending_bytes, 4 * 7);
    }
}
