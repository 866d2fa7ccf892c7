//! [`SledStore`]: the durable [`StateStore`], one sled `Tree` in a directory of its own.
//!
//! This module owns everything that knows sled: opening and flushing the database, the byte
//! encoding of keys and values, and landing [`StateStore::update`]s in sled (`writer`: a
//! buffer that one thread writes as atomic batches); the runtime's raw byte tables are
//! `table`. Keys are the key strings of the layout in [`crate::state`] as UTF-8 bytes (so
//! sled's byte order is the strings' order and `scan_prefix` agrees with
//! [`super::MemoryStore`]); values are the JSON values serialised with `serde_json` (decimals
//! stay strings, as the layout says). The domain logic never sees sled.
//!
//! # The sled risk
//!
//! sled 0.34 calls itself beta: its on-disk format may change without a migration path and it
//! brings dependencies flagged unmaintained (see CRAFT.md, "Known risks"). That is why it is
//! kept behind [`StateStore`] and touched only here: replacing it (redb, fjall, SQLite, a JetStream
//! key-value bucket) is one new module beside this one, and an export/import through
//! [`StateStore::scan_prefix`] / [`StateStore::update`] moves the data. Do not let `sled::`
//! types leak out of this folder.
//!
//! # Durability and the flush policy
//!
//! An `update` is atomic at once (readers and later updates see all of it or none of it, also
//! after a crash: it lands in sled inside one atomic batch, whole or not at all, and batches land
//! in order) but it is *durable* only once it has landed and sled has fsynced its log. Two
//! policies, chosen when opening:
//!
//! - [`Durability::Periodic`] (the default of [`SledStore::open`], every 500 ms, sled's own
//!   default): a background thread flushes; a crash (power loss, `kill -9`) loses at most the
//!   last interval of updates, whole ones, and never a later one without the earlier. Replays
//!   are safe because every domain operation is idempotent per order id: an event redelivered
//!   after the crash redoes exactly what was lost. Callers that must not acknowledge an event
//!   before its state is on disk call [`SledStore::flush`] once before the ack (a group commit:
//!   one fsync for every update the event made, and for those other threads made meanwhile).
//! - [`Durability::EachUpdate`]: every `update` returns once it is fsynced. Nothing
//!   acknowledged is ever lost; concurrent updates share a batch and its fsync.
//!
//! # Concurrency
//!
//! Updates run one at a time (under the writer's lock, which is held while the closure runs),
//! even on different keys; `get` runs alongside and sees every update that returned, landed or
//! not. `scan_prefix` lands the buffer first and is not a snapshot: an update landing while it
//! iterates may be seen for some keys and not others. The domain logic only scans for
//! reporting and tests.

mod open;
mod table;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
mod writer;

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use self::open::Core;
pub use self::table::{Entry, Table};
use super::{StateError, StateStore, UpdateFn};

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

/// Bytes of pages sled keeps in memory unless told otherwise (`state.cache`). sled's own
/// default is 1 GiB, and its cache only ever grows towards it: every page a burst touched
/// stayed resident, so the memory of `crossdock run` grew with the data and never came back.
/// A small cache costs little here: the hot keys (the inbox, recent dedup keys and trails)
/// are few, and a page that was evicted is read back from the OS page cache.
pub const DEFAULT_CACHE: u64 = 32 * 1024 * 1024;

/// The name of the one tree state lives in, so the same database can hold other trees later
/// (an event journal, a dead-letter queue) without their keys meeting.
const TREE: &[u8] = b"state";

/// The version of the store's layout (trees, keys, value shapes) this engine writes, kept in
/// sled's default tree under [`FORMAT_KEY`]. A store without it was written before it existed,
/// by format 1, and is stamped at open. A store stamped higher was written by a newer engine,
/// whose layout this one cannot know: it is refused rather than read wrong or half-migrated
/// (docs/deploy.md: go back with a backup taken before the upgrade). A change of layout that
/// an older engine would misread raises it.
pub const FORMAT: u32 = 1;
const FORMAT_KEY: &[u8] = b"crossdock.format";

/// How long an open waits for the directory's lock. A store dropped in this process lets go
/// of the lock only when sled's own I/O threads drop their last handle, a moment after the
/// drop returns (sled's tests block on the lock for that reason); a store held by another
/// live process keeps it, and the open fails after this long with sled's message.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn open_waiting_for_lock(
    config: &sled::Config,
    wait: std::time::Duration,
) -> Result<sled::Db, StateError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        // sled 0.34 panics on some damaged files instead of answering an error (a flipped byte
        // in a segment header, seen with `db` files edited by hand): that is a damaged store,
        // told as one, not a crash of whatever opened it.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()))
            .map_err(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                StateError::Backend(format!(
                    "sled: open: the store's files are damaged (sled stopped reading them: {what}); \
                     restore the state folder from a backup"
                ))
            })?;
        match opened {
            Ok(db) => return Ok(db),
            // sled reports a held lock only as an `Other` I/O error with this text.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(backend("open", e)),
        }
    }
}

fn opening(e: StateError, path: &Path) -> StateError {
    match e {
        StateError::Backend(m) => StateError::Backend(format!("{m} (opening {})", path.display())),
        other => other,
    }
}

/// A [`StateStore`] on a sled database; cheap to share (`Arc`) between threads.
pub struct SledStore {
    core: Arc<Core>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("durability", &self.core.durability())
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
    /// fails (after waiting up to two seconds for the lock) until the first store is dropped.
    pub fn open(path: impl AsRef<Path>) -> Result<SledStore, StateError> {
        SledStore::open_with(path, Durability::default())
    }

    /// [`SledStore::open`] without waiting for the lock: for a command that has not opened the
    /// store itself, so a held lock is another process's (a running engine), and waiting for
    /// it would only delay the answer.
    pub fn open_unless_held(path: impl AsRef<Path>) -> Result<SledStore, StateError> {
        let path = path.as_ref();
        let config = sled::Config::new().path(path).cache_capacity(DEFAULT_CACHE);
        SledStore::from_config_waiting(config, Durability::default(), std::time::Duration::ZERO)
            .map_err(|e| opening(e, path))
    }

    /// Open (or create) the store in `path` with the given durability.
    pub fn open_with(
        path: impl AsRef<Path>,
        durability: Durability,
    ) -> Result<SledStore, StateError> {
        SledStore::open_with_cache(path, durability, DEFAULT_CACHE)
    }

    /// Open (or create) the store in `path` with the given durability, keeping at most about
    /// `cache` bytes of its pages in memory (sled's count, which leaves out its own overhead).
    pub fn open_with_cache(
        path: impl AsRef<Path>,
        durability: Durability,
        cache: u64,
    ) -> Result<SledStore, StateError> {
        let path = path.as_ref();
        let config = sled::Config::new().path(path).cache_capacity(cache);
        SledStore::from_config(config, durability).map_err(|e| opening(e, path))
    }

    /// A store in a fresh temporary directory that is deleted when the store is dropped; for
    /// tests. (On Linux sled puts it in `/dev/shm`, so it measures nothing about disks.)
    pub fn temporary() -> Result<SledStore, StateError> {
        SledStore::from_config(
            sled::Config::new()
                .temporary(true)
                .cache_capacity(DEFAULT_CACHE),
            Durability::default(),
        )
    }

    fn from_config(config: sled::Config, durability: Durability) -> Result<SledStore, StateError> {
        SledStore::from_config_waiting(config, durability, LOCK_WAIT)
    }

    fn from_config_waiting(
        config: sled::Config,
        durability: Durability,
        wait: std::time::Duration,
    ) -> Result<SledStore, StateError> {
        Ok(SledStore {
            core: Arc::new(Core::open(config, durability, wait)?),
        })
    }

    /// Write and fsync every committed update; returns once they survive a crash. Returns the
    /// number of bytes written (0 when there was nothing to flush).
    ///
    /// While the fsync runs, sled 0.34 holds its process-wide lock shared, so updates in other
    /// threads wait for it: flush once per event (or batch of events), not once per update.
    pub fn flush(&self) -> Result<usize, StateError> {
        self.core.with(|open| {
            open.writer.shared.sync()?;
            open.db.flush().map_err(|e| backend("flush", e))
        })
    }

    /// Returns once every update made so far is in sled's log (written, not yet fsynced: see
    /// [`SledStore::flush`] for that).
    pub fn land(&self) -> Result<(), StateError> {
        self.core.with(|open| open.writer.shared.sync())
    }

    /// Bytes of sled's files on disk (its own count: the log and the snapshot).
    pub fn size_on_disk(&self) -> Result<u64, StateError> {
        self.core.with(|open| {
            open.db
                .size_on_disk()
                .map_err(|e| backend("size on disk", e))
        })
    }

    /// The durability this store was opened with.
    pub fn durability(&self) -> Durability {
        self.core.durability()
    }

    /// Closes the database and opens it again, which gives back the memory sled held (see
    /// `open`); every update made before is landed and flushed first, and calls made
    /// meanwhile wait for it. Returns false for a [`SledStore::temporary`] store, which
    /// cannot be reopened and is left as it is.
    pub fn reopen(&self) -> Result<bool, StateError> {
        self.core.reopen()
    }

    /// False for a [`SledStore::temporary`] store, whose files go when it closes.
    pub fn can_reopen(&self) -> bool {
        self.core.can_reopen()
    }

    /// Writes made through the store and its tables since it was opened (updates and table
    /// writes, each counted when it starts): unchanged between two looks, nothing wrote.
    pub fn writes(&self) -> u64 {
        self.core.writes()
    }

    /// Successful [`SledStore::reopen`]s so far.
    pub fn reopens(&self) -> u64 {
        self.core.reopens()
    }
}

/// Refuses a store of a newer format; stamps one that has none.
fn check_format(db: &sled::Db) -> Result<(), StateError> {
    let stored = db.get(FORMAT_KEY).map_err(|e| backend("read format", e))?;
    match stored {
        None => {
            db.insert(FORMAT_KEY, FORMAT.to_string().as_bytes())
                .map_err(|e| backend("write format", e))?;
            Ok(())
        }
        Some(bytes) => {
            let found = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| StateError::Corrupt {
                    key: String::from_utf8_lossy(FORMAT_KEY).into_owned(),
                    message: "not a format number".into(),
                })?;
            if found > FORMAT {
                return Err(StateError::NewerFormat {
                    found,
                    supported: FORMAT,
                });
            }
            Ok(())
        }
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
        Ok(Table {
            index: self.core.table_index(name)?,
            core: self.core.clone(),
        })
    }

    /// A number larger than any this database handed out before, also across restarts.
    pub fn generate_id(&self) -> Result<u64, StateError> {
        self.core
            .with(|open| open.db.generate_id().map_err(|e| backend("generate id", e)))
    }
}

impl StateStore for SledStore {
    fn make_durable(&self) -> Result<(), StateError> {
        self.flush().map(|_| ())
    }

    fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        self.core
            .with(|open| open.writer.shared.get(&open.tree, key))
    }

    // Why updates run under one lock and land in batches, and not as a sled transaction each
    // or a compare-and-swap per key: a domain operation must change several keys together (a
    // reservation and every SKU it names; a customer and the order marker), and what it writes
    // to one key depends on what it read from the others (the order is refused if any SKU is
    // short). Per-key CAS can only guard one key at a time: after CAS-ing SKU A we could fail on
    // SKU B, and undoing A races with other writers; a crash between two CASes leaves half an
    // order reserved. A sled transaction per update would do, but sled 0.34 serialises
    // transactions with one process-wide lock anyway and each one rolls the log buffer twice (a
    // "HACK" in sled's `pin_log`), which caps updates at about 20,000 per second here. The lock
    // gives the same isolation for less, and the writer lands whole updates atomically, many
    // per batch (see `writer`; docs/state.md has the figures).
    //
    // `f` runs once per call here, under the lock, so it must never call back into this store
    // (that would deadlock); the trait's promise that it may run more than once leaves room
    // for backends that retry on conflict.
    fn update_distinct(&self, keys: &[String], f: UpdateFn<'_>) -> Result<Value, StateError> {
        self.core
            .writing(|open| open.writer.shared.update(&open.tree, keys, f))
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>, StateError> {
        self.core.with(|open| {
            // Scans are for reports and tests: landing the buffer first is simpler than
            // merging it.
            open.writer.shared.sync()?;
            let mut out = Vec::new();
            for item in open.tree.scan_prefix(prefix.as_bytes()) {
                let (k, v) = item.map_err(|e| backend("scan", e))?;
                let key = String::from_utf8(k.to_vec()).map_err(|e| StateError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    message: format!("key is not UTF-8: {e}"),
                })?;
                let value = decode(&key, &v)?;
                out.push((key, value));
            }
            Ok(out)
        })
    }
}
