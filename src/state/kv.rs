//! A key-value space per pipeline: `kv.get`, `kv.set`, `kv.incr` in scripts.
//!
//! Each pipeline sees only its own namespace (`kv/{pipeline}/...`), so two pipelines that both
//! count "orders" do not share a counter by accident. Values are any JSON.

use serde_json::Value;

use super::{escape, StateError, StateStore};

fn key(pipeline: &str, key: &str) -> String {
    format!("kv/{}/{}", escape(pipeline), escape(key))
}

/// The value under `k`, or None.
pub fn get(store: &dyn StateStore, pipeline: &str, k: &str) -> Result<Option<Value>, StateError> {
    store.get(&key(pipeline, k))
}

/// Store `value` under `k` (JSON null deletes the key, so a later `get` answers nothing).
pub fn set(
    store: &dyn StateStore,
    pipeline: &str,
    k: &str,
    value: Value,
) -> Result<(), StateError> {
    let new = if value.is_null() { None } else { Some(value) };
    store.update(&[key(pipeline, k)], &mut |_| {
        Ok((vec![new.clone()], Value::Null))
    })?;
    Ok(())
}

/// Add `by` to the integer under `k` (absent counts as 0) and return the new value.
pub fn incr(store: &dyn StateStore, pipeline: &str, k: &str, by: i64) -> Result<i64, StateError> {
    let answer = store.update(&[key(pipeline, k)], &mut |current| {
        let old = match &current[0] {
            None => 0,
            Some(v) => v.as_i64().ok_or_else(|| {
                StateError::Invalid(format!(
                    "kv.incr: the value of {k:?} is not an integer: {v}"
                ))
            })?,
        };
        let new = old
            .checked_add(by)
            .ok_or_else(|| StateError::Invalid(format!("kv.incr: {k:?} overflows")))?;
        Ok((vec![Some(Value::from(new))], Value::from(new)))
    })?;
    answer
        .as_i64()
        .ok_or_else(|| StateError::Backend("kv.incr: store answered a non-integer".into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;
    use serde_json::json;

    #[test]
    fn namespaced_get_set_incr() {
        let store = MemoryStore::new();
        assert_eq!(get(&store, "p", "n").unwrap(), None);
        assert_eq!(incr(&store, "p", "n", 1).unwrap(), 1);
        assert_eq!(incr(&store, "p", "n", 5).unwrap(), 6);
        assert_eq!(
            incr(&store, "q", "n", 1).unwrap(),
            1,
            "pipelines do not share keys"
        );
        set(&store, "p", "doc", json!({"a": [1, 2]})).unwrap();
        assert_eq!(get(&store, "p", "doc").unwrap(), Some(json!({"a": [1, 2]})));
        assert!(incr(&store, "p", "doc", 1).is_err());
        set(&store, "p", "doc", Value::Null).unwrap();
        assert_eq!(get(&store, "p", "doc").unwrap(), None);
        assert_eq!(store.get("kv/p/n").unwrap(), Some(json!(6)));
        set(&store, "p", i64::MAX.to_string().as_str(), json!(i64::MAX)).unwrap();
        assert!(incr(&store, "p", &i64::MAX.to_string(), 1).is_err());
    }
}
