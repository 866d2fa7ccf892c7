//! [`EventState`]: one event's view of the state, whose writes reach the store only if the
//! event succeeds, all at once, and only if nothing it read has changed meanwhile.
//!
//! A running event reads through to the base store and keeps its writes to itself (as the
//! dry-run [`Overlay`](super::Overlay) does), so a script that fails halfway leaves nothing
//! behind. Reads within the event see its own writes, and a key read twice reads the same
//! value. [`EventState::commit`] then makes one [`StateStore::update`] over every key the event
//! read or wrote: inside it, each key read must still hold what the event read (a
//! compare-and-set over the whole read set), and only then are the writes applied, atomically.
//! So two events reserving the last units of a SKU at once cannot both win: the second one's
//! commit finds the SKU changed and reports [`CommitError::Conflict`], and the caller runs the
//! event again on fresh values. `scan_prefix` is not tracked (no script reaches it).
//!
//! The number of keys one event may write is capped: past it the write fails, and so does the
//! commit, even if the script caught the error.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use super::{check_arity, StateError, StateStore, UpdateFn};

/// The key an event's commit writes with its other writes (`applied/{event_id}`), so that a
/// later run of the same event can tell its state changes were made (see docs/runtime.md,
/// "Effects once"). Removed when the event's compensations undid them.
pub fn applied_key(event_id: &str) -> String {
    format!("applied/{}", super::escape(event_id))
}

/// Why an event's writes were not committed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommitError {
    /// Another writer changed a key the event read; running the event again decides afresh.
    #[error("state key `{0}` changed while the event ran")]
    Conflict(String),
    /// The event tried to write more keys than one event may.
    #[error(
        "the event wrote more than {0} state keys, the most one event may write; none were kept"
    )]
    TooManyKeys(usize),
    #[error(transparent)]
    State(#[from] StateError),
}

/// A [`StateStore`] for one event: reads through to `base`, writes buffered until
/// [`EventState::commit`].
pub struct EventState {
    base: Arc<dyn StateStore>,
    max_keys: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// What the event first read of each key from the base store (None: absent).
    read: HashMap<String, Option<Value>>,
    /// What the event wrote (None: deleted).
    written: BTreeMap<String, Option<Value>>,
    /// Set once a write went past `max_keys`.
    over_cap: bool,
}

impl Inner {
    fn current(&mut self, base: &dyn StateStore, key: &str) -> Result<Option<Value>, StateError> {
        if let Some(v) = self.written.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.read.get(key) {
            return Ok(v.clone());
        }
        let v = base.get(key)?;
        self.read.insert(key.to_string(), v.clone());
        Ok(v)
    }
}

impl EventState {
    /// A fresh view over `base` that lets the event write at most `max_keys` distinct keys.
    pub fn new(base: Arc<dyn StateStore>, max_keys: usize) -> EventState {
        EventState {
            base,
            max_keys,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change to `Inner` is made after the fallible steps, so a poisoned one is whole.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many distinct keys the event has written so far.
    pub fn written(&self) -> usize {
        self.lock().written.len()
    }

    /// Applies the event's writes to the base store as one update, if every key the event read
    /// still holds what it read. Nothing is written on error. An event that wrote nothing
    /// commits nothing (and checks nothing: its reads were each current when made).
    pub fn commit(&self) -> Result<(), CommitError> {
        self.commit_marked(None)
    }

    /// [`EventState::commit`], writing `marker` (a key and its value) in the same update when
    /// there is anything to commit. The marker is not one of the event's writes: it does not
    /// count against the cap, and it is written whatever it held.
    pub fn commit_marked(&self, marker: Option<(&str, &Value)>) -> Result<(), CommitError> {
        let inner = self.lock();
        if inner.over_cap {
            return Err(CommitError::TooManyKeys(self.max_keys));
        }
        if inner.written.is_empty() {
            return Ok(());
        }
        // Every written key was read first (an update reads what it changes), so the read set
        // holds them all.
        let mut keys: Vec<String> = inner.read.keys().cloned().collect();
        if let Some((key, _)) = marker {
            if !inner.read.contains_key(key) {
                keys.push(key.to_string());
            }
        }
        let mut changed: Option<String> = None;
        let result = self.base.update(&keys, &mut |current| {
            changed = None;
            let mut new = Vec::with_capacity(keys.len());
            for (key, now) in keys.iter().zip(current) {
                if let Some((_, value)) = marker.filter(|(k, _)| *k == key.as_str()) {
                    new.push(Some(value.clone()));
                    continue;
                }
                if inner.read.get(key) != Some(now) {
                    changed = Some(key.clone());
                    return Err(StateError::Invalid(format!("`{key}` changed")));
                }
                new.push(match inner.written.get(key) {
                    Some(v) => v.clone(),
                    None => now.clone(),
                });
            }
            Ok((new, Value::Null))
        });
        match (result, changed) {
            (Ok(_), _) => Ok(()),
            (Err(_), Some(key)) => Err(CommitError::Conflict(key)),
            (Err(e), None) => Err(CommitError::State(e)),
        }
    }
}

impl StateStore for EventState {
    fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        self.lock().current(&*self.base, key)
    }

    fn update_distinct(&self, keys: &[String], f: UpdateFn<'_>) -> Result<Value, StateError> {
        let mut inner = self.lock();
        let mut current = Vec::with_capacity(keys.len());
        for key in keys {
            current.push(inner.current(&*self.base, key)?);
        }
        let (new, answer) = f(&current)?;
        check_arity(keys, &new)?;
        let fresh = keys
            .iter()
            .zip(&current)
            .zip(&new)
            .filter(|((k, old), v)| old != v && !inner.written.contains_key(*k))
            .count();
        if inner.written.len() + fresh > self.max_keys {
            inner.over_cap = true;
            return Err(StateError::Invalid(format!(
                "this event may write at most {} state keys; it tried to write more, so the \
                 event fails and none of its writes are kept",
                self.max_keys
            )));
        }
        for ((key, old), value) in keys.iter().zip(current).zip(new) {
            // Unchanged values are not writes: a replayed reservation reads only.
            if old != value || inner.written.contains_key(key) {
                inner.written.insert(key.clone(), value);
            }
        }
        Ok(answer)
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>, StateError> {
        let mut merged: BTreeMap<String, Value> =
            self.base.scan_prefix(prefix)?.into_iter().collect();
        for (k, v) in self
            .lock()
            .written
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::state::{kv, stock, MemoryStore, SledStore};
    use serde_json::json;

    #[test]
    fn a_marker_commits_with_the_writes_and_does_not_count_against_the_cap() {
        let base: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let ev = EventState::new(base.clone(), 2);
        kv::set(&ev, "p", "a", json!(1)).unwrap();
        kv::set(&ev, "p", "b", json!(2)).unwrap();
        let at = json!({"at": "now"});
        ev.commit_marked(Some(("applied/evt_1", &at))).unwrap();
        assert_eq!(base.get("applied/evt_1").unwrap(), Some(at.clone()));
        assert_eq!(kv::get(&*base, "p", "b").unwrap(), Some(json!(2)));
        // Nothing written: nothing committed, the marker neither.
        let ev = EventState::new(base.clone(), 2);
        ev.commit_marked(Some(("applied/evt_2", &at))).unwrap();
        assert_eq!(base.get("applied/evt_2").unwrap(), None);
    }

    #[test]
    fn writes_stay_in_the_event_until_commit_and_reads_see_them() {
        let base: Arc<dyn StateStore> = Arc::new(SledStore::temporary().unwrap());
        stock::set(&*base, "A", 5).unwrap();
        let event = EventState::new(base.clone(), 100);
        assert!(
            stock::reserve(&event, "o-1", &[("A".into(), 2)])
                .unwrap()
                .ok
        );
        kv::set(&event, "p", "k", json!(1)).unwrap();
        assert_eq!(stock::available(&event, "A").unwrap(), 3);
        assert_eq!(kv::get(&event, "p", "k").unwrap(), Some(json!(1)));
        assert_eq!(stock::available(&*base, "A").unwrap(), 5);
        assert_eq!(kv::get(&*base, "p", "k").unwrap(), None);
        assert_eq!(event.written(), 3);
        event.commit().unwrap();
        assert_eq!(stock::available(&*base, "A").unwrap(), 3);
        assert_eq!(kv::get(&*base, "p", "k").unwrap(), Some(json!(1)));
        // A replay reads its reservation and writes nothing.
        let again = EventState::new(base.clone(), 100);
        assert!(
            stock::reserve(&again, "o-1", &[("A".into(), 2)])
                .unwrap()
                .ok
        );
        assert_eq!(again.written(), 0);
    }

    #[test]
    fn a_dropped_event_leaves_nothing() {
        let base: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let event = EventState::new(base.clone(), 100);
        stock::set(&event, "A", 5).unwrap();
        drop(event);
        assert!(base.scan_prefix("").unwrap().is_empty());
    }

    #[test]
    fn two_events_racing_for_the_last_units_cannot_both_commit() {
        let base: Arc<dyn StateStore> = Arc::new(SledStore::temporary().unwrap());
        stock::set(&*base, "A", 3).unwrap();
        let first = EventState::new(base.clone(), 100);
        let second = EventState::new(base.clone(), 100);
        assert!(
            stock::reserve(&first, "o-1", &[("A".into(), 2)])
                .unwrap()
                .ok
        );
        assert!(
            stock::reserve(&second, "o-2", &[("A".into(), 2)])
                .unwrap()
                .ok
        );
        first.commit().unwrap();
        assert_eq!(
            second.commit(),
            Err(CommitError::Conflict("stock/A".into()))
        );
        assert_eq!(stock::available(&*base, "A").unwrap(), 1);
        assert_eq!(base.get("reservation/o-2").unwrap(), None);
        // Run again on fresh values, the second order is refused.
        let retry = EventState::new(base.clone(), 100);
        assert!(
            !stock::reserve(&retry, "o-2", &[("A".into(), 2)])
                .unwrap()
                .ok
        );
        retry.commit().unwrap();
        assert_eq!(stock::available(&*base, "A").unwrap(), 1);
    }

    #[test]
    fn racing_events_that_run_again_on_conflict_never_over_reserve() {
        let base: Arc<dyn StateStore> = Arc::new(SledStore::temporary().unwrap());
        stock::set(&*base, "A", 25).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let base = base.clone();
                std::thread::spawn(move || {
                    let (mut won, mut conflicts) = (0, 0);
                    for i in 0..20 {
                        loop {
                            let event = EventState::new(base.clone(), 100);
                            let order = format!("o-{t}-{i}");
                            let ok = stock::reserve(&event, &order, &[("A".into(), 1)])
                                .unwrap()
                                .ok;
                            // The rest of a flow: the others read the same level meanwhile.
                            std::thread::sleep(std::time::Duration::from_micros(300));
                            match event.commit() {
                                Ok(()) => {
                                    won += usize::from(ok);
                                    break;
                                }
                                Err(CommitError::Conflict(_)) => conflicts += 1,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    (won, conflicts)
                })
            })
            .collect();
        let (mut won, mut conflicts) = (0, 0);
        for t in threads {
            let (w, c) = t.join().unwrap();
            won += w;
            conflicts += c;
        }
        // 80 orders of one unit for 25 units: exactly 25 win, whatever the interleaving.
        assert_eq!(won, 25, "{conflicts} conflicts");
        let level = stock::level(&*base, "A").unwrap().unwrap();
        assert_eq!(level["reserved"], json!(25), "{level}");
        assert_eq!(level["available"], json!(0), "{level}");
    }

    #[test]
    fn past_the_cap_writes_fail_and_the_commit_too() {
        let base: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let event = EventState::new(base.clone(), 3);
        for i in 0..3 {
            stock::set(&event, &format!("S{i}"), 1).unwrap();
        }
        // Writing a key already written does not count again.
        stock::set(&event, "S0", 2).unwrap();
        let err = stock::set(&event, "S3", 1).unwrap_err();
        assert!(err.to_string().contains("at most 3 state keys"), "{err}");
        // Even when the script caught the error, the event keeps nothing.
        assert_eq!(event.commit(), Err(CommitError::TooManyKeys(3)));
        assert!(base.scan_prefix("").unwrap().is_empty());
    }

    #[test]
    fn keeps_the_store_contract() {
        crate::state::contract::check(&EventState::new(Arc::new(MemoryStore::new()), 100));
    }
}
