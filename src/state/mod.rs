//! Business-rule state: customers, stock reservations and a per-pipeline key-value space.
//!
//! This module owns the [`StateStore`] trait, the key layout below, and the domain logic that
//! runs over it ([`customers`], [`stock`], [`kv`]). The domain logic is written once, against the
//! trait, so the in-memory store, the dry-run [`Overlay`] and the sled store (another module's
//! concern) all behave the same. Nothing here knows about Rhai, HTTP or the async runtime: the
//! rules module wraps these functions as script handles.
//!
//! # Key layout
//!
//! Keys are UTF-8 strings made of `/`-separated parts. Caller-supplied parts (customer ids, order
//! ids, SKUs, kv keys, pipeline names) are escaped with [`escape`] (`%` becomes `%25`, `/` becomes
//! `%2F`) so that no id can reach into another id's keys.
//!
//! | key                                   | value                                                                 |
//! |---------------------------------------|-----------------------------------------------------------------------|
//! | `customer/{customer_id}`              | `{"lifetime_value": "19.99", "orders": 1, "first_order": "2026-01-02", "last_order": "2026-01-02"}` (decimal as a string) |
//! | `customer-order/{customer_id}/{order_id}` | `{"amount": "19.99", "date": "2026-01-02"}`: the order was counted |
//! | `stock/{sku}`                         | `{"on_hand": 10, "reserved": 2}`                                      |
//! | `reservation/{order_id}`              | `{"status": "reserved" \| "rejected" \| "released" \| "committed", "items": [{"sku", "qty"}], "answer": {"ok", "shortfalls"}}` |
//! | `kv/{pipeline}/{key}`                 | any JSON value                                                        |
//! | `token/{connector}`                   | `{"access_token", "refresh_token", "renew_at": unix seconds or null, "seed": sha256 hex of the configured refresh token}`: an `http` connector's rotating pair, written by the connector |
//! | `audit/head`, `audit/entry/{seq:020}` | the audit log of state written by hand ([`audit`]): `{"seq"}`; `{"seq", "at", "actor", "action", "changes": [{"key", "before", "after"}]}` |
//! | `applied/{event_id}`                  | `{"at": RFC 3339}`: the event's state writes were committed ([`applied_key`]; in a cluster `applied/{node}/{event_id}`, each node numbering its own events) |
//!
//! Customers, stock and reservations are shared by every pipeline (an order pipeline reserves,
//! a shipment pipeline commits); `kv` is namespaced per pipeline.
//!
//! # Atomicity
//!
//! Every domain operation is one [`StateStore::update`] call over all the keys it touches, so a
//! store that makes `update` atomic (a mutex, a sled transaction, a compare-and-set loop) makes
//! the operations atomic. `update` may call its closure more than once (a transaction retried on
//! conflict), so the closures here are pure functions of what they read.

pub mod audit;
pub mod customers;
pub mod date;
pub mod event;
pub mod import;
pub mod kv;
pub mod memory;
pub mod overlay;
pub mod seed;
pub mod sled;
pub mod stock;

pub use self::sled::{Durability, SledStore, Table};
pub use event::{applied_key, CommitError, EventState};
pub use memory::MemoryStore;
pub use overlay::{Overlay, StateChange};
pub use seed::seed;

use serde_json::Value;

/// An error from the state layer: the backend failed, a stored value is malformed, or a caller
/// passed an argument the operation refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    /// The storage backend failed (I/O, transaction aborted, lock poisoned beyond repair).
    #[error("state backend error: {0}")]
    Backend(String),
    /// A stored value does not have the shape the key layout promises.
    #[error("state value at `{key}` is malformed: {message}")]
    Corrupt { key: String, message: String },
    /// An argument the operation refuses (negative quantity, unparsable date, ...).
    #[error("{0}")]
    Invalid(String),
    /// The store was written by a newer engine, in a layout this one does not know.
    #[error(
        "the state store has format {found}, written by a newer crossdock; this one reads format \
         {supported} and earlier (run the newer version, or restore the backup taken before the \
         upgrade)"
    )]
    NewerFormat { found: u32, supported: u32 },
}

/// The answer and new values computed by an [`StateStore::update`] closure.
pub type UpdateResult = Result<(Vec<Option<Value>>, Value), StateError>;

/// The closure [`StateStore::update`] runs: the current values of its keys in, their new values
/// and an answer out.
pub type UpdateFn<'a> = &'a mut dyn FnMut(&[Option<Value>]) -> UpdateResult;

/// A key-value store of JSON values with atomic multi-key read-modify-write.
///
/// Implementations must be safe to share between threads. `update` is the only write primitive
/// so that it maps onto a sled transaction, a JetStream compare-and-set loop or a mutex alike.
pub trait StateStore: Send + Sync {
    /// Read one key.
    fn get(&self, key: &str) -> Result<Option<Value>, StateError>;

    /// Atomically read `keys`, let `f` compute new values (None = delete) and an answer;
    /// all-or-nothing.
    ///
    /// `f` receives the current values in the order of `keys` and must return exactly one new
    /// value per key. When `f` fails nothing is written and its error is returned. `f` may be
    /// called more than once (a backend retrying on conflict), so it must not have side effects
    /// beyond its return value. `keys` must not contain duplicates: a call with a key twice is
    /// refused before anything is read.
    fn update(&self, keys: &[String], f: UpdateFn<'_>) -> Result<Value, StateError> {
        check_distinct(keys)?;
        self.update_distinct(keys, f)
    }

    /// [`StateStore::update`] once `keys` are known to be distinct: what each store implements
    /// (callers call `update`, which checks them).
    fn update_distinct(&self, keys: &[String], f: UpdateFn<'_>) -> Result<Value, StateError>;

    /// Every key starting with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>, StateError>;

    /// Returns once every update made so far survives a crash, for the rare write that must
    /// (a rotated token pair: the old refresh token is dead once the new one is issued).
    /// Stores that keep nothing on disk have nothing to do.
    fn make_durable(&self) -> Result<(), StateError> {
        Ok(())
    }
}

/// The prefixes of the keys flows read and write (customers, stock, reservations, kv): what
/// the admin API lets a reader see key by key. Tokens and the engine's own records are not
/// among them.
pub const DOMAIN_PREFIXES: &[&str] = &[
    "customer/",
    "customer-order/",
    "stock/",
    "reservation/",
    "kv/",
];

/// Escape one caller-supplied key part so it cannot contain the `/` separator.
pub fn escape(part: &str) -> String {
    if !part.contains(['%', '/']) {
        return part.to_string();
    }
    let mut out = String::with_capacity(part.len() + 4);
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

/// Check that an update closure returned one value per key; shared by the stores so the
/// contract is enforced identically everywhere.
pub(crate) fn check_arity(keys: &[String], values: &[Option<Value>]) -> Result<(), StateError> {
    if keys.len() == values.len() {
        Ok(())
    } else {
        Err(StateError::Backend(format!(
            "update returned {} values for {} keys",
            values.len(),
            keys.len()
        )))
    }
}

/// Refuse duplicate keys: a transaction that reads a key twice and writes it twice has no
/// well-defined result.
fn check_distinct(keys: &[String]) -> Result<(), StateError> {
    let mut seen = std::collections::BTreeSet::new();
    for k in keys {
        if !seen.insert(k.as_str()) {
            return Err(StateError::Backend(format!(
                "update called with key `{k}` twice"
            )));
        }
    }
    Ok(())
}

/// The behaviour every [`StateStore`] must show, run by each store's own tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod contract {
    use super::{StateError, StateStore};
    use serde_json::json;

    pub(crate) fn check(store: &dyn StateStore) {
        update_is_all_or_nothing(store);
        scan_prefix_in_key_order(store);
    }

    fn update_is_all_or_nothing(store: &dyn StateStore) {
        let keys = vec!["a".to_string(), "b".to_string()];
        store
            .update(&keys, &mut |_| {
                Ok((vec![Some(json!(1)), Some(json!(2))], json!(null)))
            })
            .unwrap();
        let err = store.update(&keys, &mut |_| Err(StateError::Invalid("no".into())));
        assert_eq!(err, Err(StateError::Invalid("no".into())));
        assert_eq!(store.get("a").unwrap(), Some(json!(1)));
        // Wrong arity writes nothing.
        let err = store.update(&keys, &mut |_| Ok((vec![None], json!(null))));
        assert!(matches!(err, Err(StateError::Backend(_))), "{err:?}");
        assert_eq!(store.get("a").unwrap(), Some(json!(1)));
        // Delete, and the closure sees the values in key order.
        let answer = store
            .update(&keys, &mut |cur| {
                assert_eq!(cur, [Some(json!(1)), Some(json!(2))]);
                Ok((vec![None, Some(json!(3))], json!("done")))
            })
            .unwrap();
        assert_eq!(answer, json!("done"));
        assert_eq!(store.get("a").unwrap(), None);
        assert_eq!(store.get("b").unwrap(), Some(json!(3)));
        assert!(store
            .update(&["x".into(), "x".into()], &mut |_| Ok((
                vec![None, None],
                json!(null)
            )))
            .is_err());
    }

    fn scan_prefix_in_key_order(store: &dyn StateStore) {
        for k in ["kv/p/b", "kv/p/a", "kv/q/a", "kv/p", "kv/p/é"] {
            store
                .update(&[k.to_string()], &mut |_| {
                    Ok((vec![Some(json!(k))], json!(null)))
                })
                .unwrap();
        }
        let got = store.scan_prefix("kv/p/").unwrap();
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["kv/p/a", "kv/p/b", "kv/p/é"]);
        assert_eq!(got[0].1, json!("kv/p/a"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_ids_apart() {
        assert_eq!(escape("c-42"), "c-42");
        assert_eq!(escape("a/b"), "a%2Fb");
        assert_eq!(escape("100%"), "100%25");
        assert_ne!(escape("a/b"), escape("a%2Fb"));
    }
}
