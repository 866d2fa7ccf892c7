//! [`MemoryStore`]: a [`StateStore`] in a mutex-guarded `BTreeMap`.
//!
//! Used by pipeline tests (`crossdock test` seeds one per case) and unit tests. Not durable.
//! One mutex makes every `update` trivially atomic and serialisable.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use super::{check_arity, check_distinct, StateError, StateStore, UpdateResult};

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

    fn update(
        &self,
        keys: &[String],
        f: &mut dyn FnMut(&[Option<Value>]) -> UpdateResult,
    ) -> Result<Value, StateError> {
        check_distinct(keys)?;
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
    use serde_json::json;

    #[test]
    fn update_is_all_or_nothing() {
        let store = MemoryStore::new();
        let keys = vec!["a".to_string(), "b".to_string()];
        store
            .update(&keys, &mut |_| {
                Ok((vec![Some(json!(1)), Some(json!(2))], json!(null)))
            })
            .unwrap();
        let err = store.update(&keys, &mut |_| Err(StateError::Invalid("no".into())));
        assert!(err.is_err());
        assert_eq!(store.get("a").unwrap(), Some(json!(1)));
        // Wrong arity writes nothing.
        let err = store.update(&keys, &mut |_| Ok((vec![None], json!(null))));
        assert!(err.is_err());
        assert_eq!(store.get("a").unwrap(), Some(json!(1)));
        // Delete.
        store
            .update(&keys, &mut |_| {
                Ok((vec![None, Some(json!(3))], json!(null)))
            })
            .unwrap();
        assert_eq!(store.get("a").unwrap(), None);
        assert!(store
            .update(&["x".into(), "x".into()], &mut |_| Ok((
                vec![None, None],
                json!(null)
            )))
            .is_err());
    }

    #[test]
    fn scan_prefix_in_key_order() {
        let store = MemoryStore::new();
        for k in ["kv/p/b", "kv/p/a", "kv/q/a", "kv/p"] {
            store
                .update(&[k.to_string()], &mut |_| {
                    Ok((vec![Some(json!(k))], json!(null)))
                })
                .unwrap();
        }
        let keys: Vec<String> = store
            .scan_prefix("kv/p/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["kv/p/a", "kv/p/b"]);
    }
}
