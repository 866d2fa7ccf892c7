//! [`SledStore`]: the durable [`StateStore`], one sled `Tree` in a directory of its own.
//!
//! This module owns everything that knows sled: opening and flushing the database, the byte
//! encoding of keys and values, and the mapping of [`StateStore::update`] onto a sled
//! transaction. Keys are the key strings of the layout in [`crate::state`] as UTF-8 bytes (so
//! sled's byte order is the strings' order and `scan_prefix` agrees with [`super::MemoryStore`]);
//! values are the JSON values serialised with `serde_json` (decimals stay strings, as the layout
//! says). The domain logic never sees sled.
//!
//! # The sled risk
//!
//! sled 0.34 calls itself beta: its on-disk format may change without a migration path and it
//! brings dependencies flagged unmaintained (see CRAFT.md, "Known risks"). That is why it is
//! kept behind [`StateStore`] and touched only here: replacing it (redb, fjall, SQLite, a JetStream
//! key-value bucket) is one new module beside this one, and an export/import through
//! [`StateStore::scan_prefix`] / [`StateStore::update`] moves the data. Do not let `sled::`
//! types leak out of this file.
//!
//! # Durability and the flush policy
//!
//! A committed `update` is atomic at once (readers and later updates see all of it or none of
//! it, also after a crash: sled recovers a transaction whole or not at all) but it is *durable*
//! only once sled has written and fsynced its log. Two policies, chosen when opening:
//!
//! - [`Durability::Periodic`] (the default of [`SledStore::open`], every 500 ms, sled's own
//!   default): a background thread flushes; a crash (power loss, `kill -9`) loses at most the
//!   last interval of updates, whole transactions at a time, never half of one. Replays are safe
//!   because every domain operation is idempotent per order id: an event redelivered after the
//!   crash redoes exactly what was lost. Callers that must not acknowledge an event before its
//!   state is on disk call [`SledStore::flush`] once before the ack (a group commit: one fsync
//!   for every update the event made, and for those other threads made meanwhile).
//! - [`Durability::EachUpdate`]: every `update` fsyncs before it returns. Nothing acknowledged
//!   is ever lost, at the price of one fsync per update (see docs/state.md for the figures:
//!   about a quarter of the periodic throughput on the bench machine, whose disk is fast).
//!
//! # Concurrency
//!
//! sled 0.34 serialises transactions with one process-wide lock (held while the closure runs
//! and the writes are applied), so updates do not run in parallel with each other, even on
//! different keys or different databases in the same process; `get` and `scan_prefix` run
//! alongside. A `scan_prefix` is not a snapshot: a transaction committing while it iterates may
//! be seen for some keys and not others. The domain logic only scans for reporting and tests.

use std::cell::RefCell;
use std::path::Path;

use serde_json::Value;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{check_arity, check_distinct, StateError, StateStore, UpdateResult};

/// When a committed update reaches the disk; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A background flush every this many milliseconds (at least 1); call
    /// [`SledStore::flush`] where a caller needs its updates on disk now.
    Periodic { every_ms: u64 },
    /// Every update fsyncs before it returns.
    EachUpdate,
}

impl Default for Durability {
    fn default() -> Durability {
        Durability::Periodic { every_ms: 500 }
    }
}

/// The name of the one tree state lives in, so the same database can hold other trees later
/// (an event journal, a dead-letter queue) without their keys meeting.
const TREE: &[u8] = b"state";

/// A [`StateStore`] on a sled database; cheap to share (`Arc`) between threads.
pub struct SledStore {
    /// Kept so the database (and its flusher thread) lives as long as the store.
    db: sled::Db,
    tree: sled::Tree,
    durability: Durability,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

fn backend(context: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Backend(format!("sled: {context}: {e}"))
}

fn decode(key: &str, bytes: &[u8]) -> Result<Value, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        key: key.to_string(),
        message: format!("not JSON: {e}"),
    })
}

fn encode(key: &str, value: &Value) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|e| StateError::Backend(format!("encoding `{key}`: {e}")))
}

impl SledStore {
    /// Open (or create) the store in the directory `path`, with [`Durability::default`].
    ///
    /// sled locks the directory: a second open of the same path, in this process or another,
    /// fails until the first store is dropped.
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore, StateError> {
        SledStore::open_with(path, Durability::default())
    }

    /// Open (or create) the store in `path` with the given durability.
    pub fn open_with(
        path: impl AsRef<Path>,
        durability: Durability,
    ) -> Result<SledStore, StateError> {
        let path = path.as_ref();
        let config = sled::Config::new().path(path);
        SledStore::from_config(config, durability).map_err(|e| match e {
            StateError::Backend(m) => {
                StateError::Backend(format!("{m} (opening {})", path.display()))
            }
            other => other,
        })
    }

    /// A store in a fresh temporary directory that is deleted when the store is dropped; for
    /// tests. (On Linux sled puts it in `/dev/shm`, so it measures nothing about disks.)
    pub fn temporary() -> Result<SledStore, StateError> {
        SledStore::from_config(sled::Config::new().temporary(true), Durability::default())
    }

    fn from_config(config: sled::Config, durability: Durability) -> Result<SledStore, StateError> {
        let every_ms = match durability {
            Durability::Periodic { every_ms } => Some(every_ms.max(1)),
            // Each update flushes; a background flusher would only add fsyncs.
            Durability::EachUpdate => None,
        };
        let db = config
            .flush_every_ms(every_ms)
            .open()
            .map_err(|e| backend("open", e))?;
        let tree = db.open_tree(TREE).map_err(|e| backend("open tree", e))?;
        Ok(SledStore {
            db,
            tree,
            durability,
        })
    }

    /// Write and fsync every committed update; returns once they survive a crash. Returns the
    /// number of bytes written (0 when there was nothing to flush).
    ///
    /// While the fsync runs, sled 0.34 holds its process-wide lock shared, so updates in other
    /// threads wait for it: flush once per event (or batch of events), not once per update.
    pub fn flush(&self) -> Result<usize, StateError> {
        self.db.flush().map_err(|e| backend("flush", e))
    }

    /// The durability this store was opened with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// `update` of a single key: read, compute, compare-and-swap, and start again from a fresh
    /// read if another writer changed the key meanwhile (so `f` may run more than once here
    /// too). sled serialises the swap with transactions, so a transaction touching the same
    /// key either commits before the read (and is seen) or makes the swap fail (and is seen on
    /// the next round).
    fn update_one(
        &self,
        keys: &[String],
        f: &mut dyn FnMut(&[Option<Value>]) -> UpdateResult,
    ) -> Result<Value, StateError> {
        let key = keys[0].as_str();
        loop {
            let old = self
                .tree
                .get(key.as_bytes())
                .map_err(|e| backend("get", e))?;
            let current = [match &old {
                Some(bytes) => Some(decode(key, bytes)?),
                None => None,
            }];
            let (new, answer) = f(&current)?;
            check_arity(keys, &new)?;
            let Some(new) = new.into_iter().next() else {
                return Err(StateError::Backend("update returned no value".into()));
            };
            if new == current[0] {
                return Ok(answer);
            }
            let bytes = match &new {
                Some(v) => Some(encode(key, v)?),
                None => None,
            };
            let swapped = self
                .tree
                .compare_and_swap(key.as_bytes(), old.as_ref(), bytes)
                .map_err(|e| backend("compare and swap", e))?;
            if swapped.is_ok() {
                if self.durability == Durability::EachUpdate {
                    self.flush()?;
                }
                return Ok(answer);
            }
        }
    }
}

/// A raw byte table in the same database as the state: the runtime keeps its inbox, dead
/// letters, dedup keys and trails in tables of their own, so their keys never meet the state's
/// and a flush of the store makes all of them durable together.
///
/// Writes to tables are plain sled writes (atomic one key at a time, no transaction): sled's
/// log is replayed in order after a crash, so of two writes the later one survives only if the
/// earlier one did. The runtime relies on that ordering (see `runtime::inbox`).
#[derive(Clone)]
pub struct Table {
    tree: sled::Tree,
}

/// One entry of a [`Table`]: key and value bytes.
pub type Entry = (Vec<u8>, Vec<u8>);

impl Table {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .tree
            .get(key)
            .map_err(|e| backend("get", e))?
            .map(|v| v.to_vec()))
    }

    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.tree
            .insert(key, value)
            .map_err(|e| backend("insert", e))?;
        Ok(())
    }

    /// Inserts only when the key is absent; returns the value already there otherwise.
    pub fn insert_new(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self
            .tree
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))
            .map_err(|e| backend("compare and swap", e))?
        {
            Ok(()) => Ok(None),
            Err(e) => Ok(Some(e.current.map(|v| v.to_vec()).unwrap_or_default())),
        }
    }

    /// Replaces the value only if it is still `old`; false when another writer got there first.
    pub fn replace(&self, key: &[u8], old: &[u8], new: &[u8]) -> Result<bool, StateError> {
        Ok(self
            .tree
            .compare_and_swap(key, Some(old), Some(new))
            .map_err(|e| backend("compare and swap", e))?
            .is_ok())
    }

    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .tree
            .remove(key)
            .map_err(|e| backend("remove", e))?
            .map(|v| v.to_vec()))
    }

    /// Entries in key order, starting at `from` (inclusive), at most `limit` of them.
    pub fn range_from(&self, from: &[u8], limit: usize) -> Result<Vec<Entry>, StateError> {
        let mut out = Vec::new();
        for item in self.tree.range(from..).take(limit) {
            let (k, v) = item.map_err(|e| backend("scan", e))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, StateError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, v) = item.map_err(|e| backend("scan", e))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

impl SledStore {
    /// The table `name`, created if new. `state` is the state's own and cannot be opened here.
    pub fn table(&self, name: &str) -> Result<Table, StateError> {
        if name.as_bytes() == TREE {
            return Err(StateError::Invalid(format!(
                "`{name}` is the state's own tree"
            )));
        }
        let tree = self
            .db
            .open_tree(name)
            .map_err(|e| backend("open tree", e))?;
        Ok(Table { tree })
    }

    /// A number larger than any this database handed out before, also across restarts.
    pub fn generate_id(&self) -> Result<u64, StateError> {
        self.db.generate_id().map_err(|e| backend("generate id", e))
    }
}

/// Why a transaction body stopped: our own error (abort, nothing written) or sled's.
type TxResult<T> = Result<T, ConflictableTransactionError<StateError>>;

fn abort(e: StateError) -> ConflictableTransactionError<StateError> {
    ConflictableTransactionError::Abort(e)
}

impl StateStore for SledStore {
    fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        match self
            .tree
            .get(key.as_bytes())
            .map_err(|e| backend("get", e))?
        {
            Some(bytes) => Ok(Some(decode(key, &bytes)?)),
            None => Ok(None),
        }
    }

    // Why one sled transaction, and not a compare-and-swap per key: a domain operation must
    // change several keys together (a reservation and every SKU it names; a customer and the
    // order marker), and what it writes to one key depends on what it read from the others
    // (the order is refused if any SKU is short). Per-key CAS can only guard one key at a time:
    // after CAS-ing SKU A we could fail on SKU B, and undoing A races with other writers; a
    // crash between two CASes leaves half an order reserved. A transaction reads all the keys
    // in one serialisable view and writes all of them or none, and sled recovers it whole after
    // a crash.
    //
    // One key needs none of that: a single sled write is atomic and crash-safe on its own, and
    // a compare-and-swap loop gives the read-modify-write isolation (see `update_one`). That
    // path matters because a sled 0.34 transaction is expensive whatever it does: it rolls the
    // log buffer twice (a "HACK" in sled's `pin_log`), so every transaction costs two log writes
    // handed to sled's I/O threads, where plain writes are batched by the periodic flush. The
    // bench measures a bare two-key transaction at under 20,000 per second on a 2-core machine,
    // against about 65,000 pairs of plain inserts; docs/state.md has the figures.
    //
    // Retries: sled's `transaction` takes an `Fn` that it may run again when it detects a
    // conflict (0.34.7 serialises transactions with a global lock and so does not retry today,
    // but the API promises nothing more and later versions retry optimistically). Each run sees
    // fresh reads; the writes of an abandoned run are discarded. So the trait's `f` may be
    // called more than once and must be a pure function of what it reads: no counters, no
    // pushes into outer vectors, no I/O, and never a call back into this store (that would
    // deadlock on sled's lock). The domain closures in `stock`, `customers` and `kv` are pure.
    // Because sled wants `Fn` and the trait hands us `FnMut`, `f` sits in a `RefCell`; a run
    // never overlaps another on the same thread, so the borrow cannot fail.
    fn update(
        &self,
        keys: &[String],
        f: &mut dyn FnMut(&[Option<Value>]) -> UpdateResult,
    ) -> Result<Value, StateError> {
        check_distinct(keys)?;
        if keys.len() == 1 {
            return self.update_one(keys, f);
        }
        let f = RefCell::new(f);
        let outcome = self.tree.transaction(|tx| -> TxResult<Value> {
            let mut current = Vec::with_capacity(keys.len());
            for key in keys {
                current.push(match tx.get(key.as_bytes())? {
                    Some(bytes) => Some(decode(key, &bytes).map_err(abort)?),
                    None => None,
                });
            }
            let (new, answer) = (*f.borrow_mut())(&current).map_err(abort)?;
            check_arity(keys, &new).map_err(abort)?;
            for ((key, old), value) in keys.iter().zip(&current).zip(&new) {
                // Unchanged keys are not written: a replayed reservation or an order already
                // counted then costs reads only, and sled's log does not grow.
                if old == value {
                    continue;
                }
                match value {
                    Some(v) => {
                        tx.insert(key.as_bytes(), encode(key, v).map_err(abort)?)?;
                    }
                    None => {
                        tx.remove(key.as_bytes())?;
                    }
                }
            }
            if self.durability == Durability::EachUpdate {
                tx.flush();
            }
            Ok(answer)
        });
        match outcome {
            Ok(answer) => Ok(answer),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(backend("transaction", e)),
        }
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>, StateError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item.map_err(|e| backend("scan", e))?;
            let key = String::from_utf8(k.to_vec()).map_err(|e| StateError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                message: format!("key is not UTF-8: {e}"),
            })?;
            let value = decode(&key, &v)?;
            out.push((key, value));
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_the_store_contract() {
        crate::state::contract::check(&SledStore::temporary().unwrap());
    }

    #[test]
    fn values_keep_every_digit() {
        let store = SledStore::temporary().unwrap();
        // Parsed, not `json!`: the macro would make 1.10 an f64.
        let text = r#"{"amount":"0.30","id":12345678901234567890,"x":1.10}"#;
        let big: Value = serde_json::from_str(text).unwrap();
        store
            .update(&["k".into()], &mut |_| {
                Ok((vec![Some(big.clone())], json!(null)))
            })
            .unwrap();
        assert_eq!(store.get("k").unwrap(), Some(big));
        assert_eq!(
            serde_json::to_string(&store.get("k").unwrap().unwrap()).unwrap(),
            text
        );
    }

    #[test]
    fn corrupt_bytes_are_reported_with_their_key() {
        let store = SledStore::temporary().unwrap();
        store.tree.insert("stock/A", b"{not json".to_vec()).unwrap();
        assert!(matches!(
            store.get("stock/A"),
            Err(StateError::Corrupt { key, .. }) if key == "stock/A"
        ));
        let r = store.update(&["stock/A".into()], &mut |_| Ok((vec![None], json!(null))));
        assert!(matches!(r, Err(StateError::Corrupt { .. })), "{r:?}");
        // Nothing was written by the failed update.
        assert!(store.tree.get("stock/A").unwrap().is_some());
    }

    #[test]
    fn unchanged_values_are_not_rewritten() {
        let store = SledStore::temporary().unwrap();
        let both = ["a".to_string(), "b".to_string()];
        store
            .update(&both, &mut |_| {
                Ok((vec![Some(json!(1)), Some(json!(1))], json!(null)))
            })
            .unwrap();
        let mut events = store.tree.watch_prefix("a");
        // No-op updates through both paths: the transaction and the single-key one.
        store
            .update(&both, &mut |cur| Ok((cur.to_vec(), json!(null))))
            .unwrap();
        store
            .update(&both[..1], &mut |cur| Ok((cur.to_vec(), json!(null))))
            .unwrap();
        store
            .update(&both, &mut |_| {
                Ok((vec![Some(json!(2)), Some(json!(1))], json!(null)))
            })
            .unwrap();
        // The first event seen is the change to 2: the no-op updates wrote nothing.
        match events.next() {
            Some(::sled::Event::Insert { value, .. }) => assert_eq!(&*value, b"2"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn single_key_updates_are_atomic_under_contention() {
        let store = SledStore::temporary().unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let store = &store;
                s.spawn(move || {
                    for _ in 0..250 {
                        // Half the writers go through the single-key path, half through a
                        // transaction that also touches a key of their own.
                        let mut add = |cur: &[Option<Value>]| {
                            let n = cur[0].as_ref().and_then(Value::as_i64).unwrap_or(0);
                            let mut new = vec![Some(json!(n + 1))];
                            new.extend(cur[1..].iter().map(|_| Some(json!(t))));
                            Ok((new, json!(n + 1)))
                        };
                        let keys = if t % 2 == 0 {
                            vec!["n".to_string()]
                        } else {
                            vec!["n".to_string(), format!("t{t}")]
                        };
                        store.update(&keys, &mut add).unwrap();
                    }
                });
            }
        });
        assert_eq!(store.get("n").unwrap(), Some(json!(1000)));
        // A single-key update that fails or changes nothing writes nothing.
        let r = store.update(&["n".into()], &mut |_| {
            Err(StateError::Invalid("no".into()))
        });
        assert!(r.is_err());
        let r = store.update(&["n".into()], &mut |_| Ok((vec![], json!(null))));
        assert!(matches!(r, Err(StateError::Backend(_))), "{r:?}");
        store
            .update(&["n".into()], &mut |_| Ok((vec![None], json!(null))))
            .unwrap();
        assert_eq!(store.get("n").unwrap(), None);
    }

    #[test]
    fn each_update_durability_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open_with(dir.path().join("db"), Durability::EachUpdate).unwrap();
        assert_eq!(store.durability(), Durability::EachUpdate);
        store
            .update(&["a".into()], &mut |_| {
                Ok((vec![Some(json!(1))], json!(null)))
            })
            .unwrap();
        // Already on disk: an explicit flush finds nothing (or next to nothing) to write.
        assert_eq!(store.get("a").unwrap(), Some(json!(1)));
        store.flush().unwrap();
    }

    #[test]
    fn a_second_open_of_the_same_path_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        let second = SledStore::open(dir.path());
        assert!(matches!(second, Err(StateError::Backend(_))), "{second:?}");
    }
}
