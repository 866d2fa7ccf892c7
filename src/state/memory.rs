//! [`MemoryStore`]: a [`StateStore`] in a mutex-guarded `BTreeMap`.
//!
//! Used by pipeline tests (`crossdock test` seeds one per case) and unit tests. Not durable.
//! One mutex makes every `update` trivially atomic and serialisable.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use super::{check_arity, StateError, StateStore, UpdateFn};

/// An in-memory, thread-safe [`StateStore`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<String, Value>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Value>> {
        // A poisoned lock means a thread panicked while holding it. `update` only writes after
        // its closure succeeded, all at once, so the map is consistent and safe to keep using.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StateStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        Ok(self.lock().get(key).cloned())
    }

    fn update_distinct(&self, keys: &[String], f: UpdateFn<'_>) -> Result<Value, StateError> {
        let mut map = self.lock();
        let current: Vec<Option<Value>> = keys.iter().map(|k| map.get(k).cloned()).collect();
        let (new, answer) = f(&current)?;
        check_arity(keys, &new)?;
        for (key, value) in keys.iter().zip(new) {
            match value {
                Some(v) => {
                    map.insert(key.clone(), v);
                }
                None => {
                    map.remove(key);
                }
            }
        }
        Ok(answer)
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>, StateError> {
        let map = self.lock();
        Ok(map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_store_contract() {
        crate::state::contract::check(&MemoryStore::new());
    }
}
