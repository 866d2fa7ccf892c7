//! [`Overlay`]: a scratch layer over a real store, for dry runs.
//!
//! `crossdock dry-run` must never change state, yet the rules it runs read real state and write
//! to it. The overlay gives them both: reads see the base store, then whatever the run wrote;
//! writes land in the overlay's own map and never reach the base. Afterwards
//! [`Overlay::changes`] lists the net effect per key, which dry-run prints as `state_changes`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::Value;

use super::{check_arity, StateError, StateStore, UpdateFn};

/// The net change of one key made through an [`Overlay`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateChange {
    pub key: String,
    /// The value in the base store when the overlay first wrote the key.
    pub before: Option<Value>,
    /// The value the overlay holds now (None: deleted).
    pub after: Option<Value>,
}

/// What the overlay knows about one key it wrote.
#[derive(Debug, Clone)]
struct Written {
    before: Option<Value>,
    after: Option<Value>,
}

/// A [`StateStore`] that reads through to `base` and keeps every write to itself.
pub struct Overlay {
    base: Arc<dyn StateStore>,
    scratch: Mutex<BTreeMap<String, Written>>,
    /// The keys of every update, in order, so a caller can ask what changed since a point
    /// without going through every key ever written (see [`Overlay::changes_since`]).
    log: Mutex<Vec<String>>,
}

impl Overlay {
    /// A fresh overlay with no writes.
    pub fn new(base: Arc<dyn StateStore>) -> Overlay {
        Overlay {
            base,
            scratch: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Written>> {
        // Writes happen all at once after the closure succeeded, so a poisoned map is consistent.
        self.scratch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keys written since `mark` (a value this returned before, or 0), each once and in key
    /// order, with their value in the base store and now (also when the two are equal again),
    /// and the mark to pass next time. A dry run over many events asks this per event, which
    /// stays linear in the writes.
    pub fn changes_since(&self, mark: usize) -> (Vec<StateChange>, usize) {
        let scratch = self.lock();
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let keys: std::collections::BTreeSet<&String> =
            log.get(mark..).unwrap_or(&[]).iter().collect();
        let changes = keys
            .into_iter()
            .filter_map(|k| {
                let w = scratch.get(k)?;
                Some(StateChange {
                    key: k.clone(),
                    before: w.before.clone(),
                    after: w.after.clone(),
                })
            })
            .collect();
        (changes, log.len())
    }

    /// The net change per key, in key order; keys written back to their base value are left out.
    pub fn changes(&self) -> Vec<StateChange> {
        self.lock()
            .iter()
            .filter(|(_, w)| w.before != w.after)
            .map(|(k, w)| StateChange {
                key: k.clone(),
                before: w.before.clone(),
                after: w.after.clone(),
            })
            .collect()
    }
}

impl StateStore for Overlay {
    fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        if let Some(w) = self.lock().get(key) {
            return Ok(w.after.clone());
        }
        self.base.get(key)
    }

    fn update_distinct(&self, keys: &[String], f: UpdateFn<'_>) -> Result<Value, StateError> {
        // The scratch lock is held across the base reads and the closure so that two updates
        // through the same overlay cannot interleave.
        let mut scratch = self.lock();
        let mut base_values = Vec::with_capacity(keys.len());
        let mut current = Vec::with_capacity(keys.len());
        for key in keys {
            match scratch.get(key) {
                Some(w) => {
                    base_values.push(w.before.clone());
                    current.push(w.after.clone());
                }
                None => {
                    let v = self.base.get(key)?;
                    base_values.push(v.clone());
                    current.push(v);
                }
            }
        }
        let (new, answer) = f(&current)?;
        check_arity(keys, &new)?;
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        for ((key, before), after) in keys.iter().zip(base_values).zip(new) {
            log.push(key.clone());
            scratch.insert(key.clone(), Written { before, after });
        }
        Ok(answer)
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>, StateError> {
        let mut merged: BTreeMap<String, Value> =
            self.base.scan_prefix(prefix)?.into_iter().collect();
        for (k, w) in self
            .lock()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            match &w.after {
                Some(v) => {
                    merged.insert(k.clone(), v.clone());
                }
                None => {
                    merged.remove(k);
                }
            }
        }
        Ok(merged.into_iter().collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::state::{stock, MemoryStore};
    use serde_json::json;

    #[test]
    fn changes_since_lists_only_the_keys_written_after_the_mark() {
        let base: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        stock::set(&*base, "A", 5).unwrap();
        let overlay = Overlay::new(base);
        let (none, mark) = overlay.changes_since(0);
        assert!(none.is_empty());
        stock::reserve(&overlay, "o-1", &[("A".into(), 2)]).unwrap();
        let (first, mark) = overlay.changes_since(mark);
        let keys: Vec<&str> = first.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["reservation/o-1", "stock/A"]);
        stock::set(&overlay, "B", 1).unwrap();
        let (second, mark) = overlay.changes_since(mark);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].key, "stock/B");
        assert_eq!(second[0].before, None);
        // Written twice since the mark: listed once.
        stock::set(&overlay, "B", 0).unwrap();
        stock::set(&overlay, "B", 1).unwrap();
        let (third, _) = overlay.changes_since(mark);
        assert_eq!(third.len(), 1);
        // `changes` still gives the net effect of everything.
        assert_eq!(overlay.changes().len(), 3);
    }

    fn put(store: &dyn StateStore, key: &str, v: Option<Value>) {
        store
            .update(&[key.to_string()], &mut |_| {
                Ok((vec![v.clone()], Value::Null))
            })
            .unwrap();
    }

    #[test]
    fn overlay_never_touches_base_and_lists_changes() {
        let base: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        put(&*base, "a", Some(json!(1)));
        put(&*base, "b", Some(json!(2)));
        put(&*base, "c", Some(json!(3)));
        stock::set(&*base, "SKU-1", 5).unwrap();

        let overlay = Overlay::new(base.clone());
        put(&overlay, "a", Some(json!(10)));
        put(&overlay, "b", None);
        put(&overlay, "d", Some(json!(4)));
        put(&overlay, "c", Some(json!(30)));
        put(&overlay, "c", Some(json!(3))); // back to its base value: no net change
        let answer = stock::reserve(&overlay, "o-1", &[("SKU-1".into(), 2)]).unwrap();
        assert!(answer.ok);

        // Reads see the overlay's writes.
        assert_eq!(overlay.get("a").unwrap(), Some(json!(10)));
        assert_eq!(overlay.get("b").unwrap(), None);
        assert_eq!(overlay.get("c").unwrap(), Some(json!(3)));
        assert_eq!(stock::available(&overlay, "SKU-1").unwrap(), 3);
        let scanned: Vec<String> = overlay
            .scan_prefix("")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(scanned, ["a", "c", "d", "reservation/o-1", "stock/SKU-1"]);

        // The base is untouched.
        assert_eq!(base.get("a").unwrap(), Some(json!(1)));
        assert_eq!(base.get("b").unwrap(), Some(json!(2)));
        assert_eq!(base.get("d").unwrap(), None);
        assert_eq!(stock::available(&*base, "SKU-1").unwrap(), 5);
        assert_eq!(base.get("reservation/o-1").unwrap(), None);

        let changes = overlay.changes();
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "d", "reservation/o-1", "stock/SKU-1"]);
        assert_eq!(changes[0].before, Some(json!(1)));
        assert_eq!(changes[0].after, Some(json!(10)));
        assert_eq!(changes[1].after, None);
        assert_eq!(changes[2].before, None);
        assert_eq!(changes[4].after, Some(json!({"on_hand": 5, "reserved": 2})));
        let text = serde_json::to_string(&changes[1]).unwrap();
        assert_eq!(text, r#"{"key":"b","before":2,"after":null}"#);
    }

    #[test]
    fn keeps_the_store_contract() {
        crate::state::contract::check(&Overlay::new(Arc::new(crate::state::MemoryStore::new())));
    }
}
