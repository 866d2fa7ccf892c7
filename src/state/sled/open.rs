//! The open sled database behind a [`super::SledStore`] and its tables, and closing and
//! reopening it in place.
//!
//! Why reopen: sled 0.34 keeps in memory the pages it wrote or read since the database was
//! opened, well past `cache_capacity` (a heap profile shows the values written by the inbox's
//! trails and raw deliveries held as sled's own copies: docs/performance.md, "Memory after a
//! burst"), and only dropping the `Db` and every `Tree` of it gives that memory back. So this
//! module owns every sled handle of the store: the `Db`, its trees, the writer thread. Nothing
//! else keeps one: a [`super::Table`] names its tree by index and borrows it for one call. It
//! does not decide when to reopen (the runtime does, when the engine has been idle).
//!
//! Each call on the store or a table holds the read side of one lock for its duration; a
//! reopen holds the write side, so it waits for the calls in flight and the calls made
//! meanwhile wait for it. No call takes the lock twice.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::writer::Writer;
use super::{backend, check_format, open_waiting_for_lock, Durability, TREE};
use crate::state::StateError;

/// How long a reopen waits for the directory's lock, which sled lets go of only once its own
/// I/O threads dropped their last handle of the closed database.
const REOPEN_LOCK_WAIT: Duration = Duration::from_secs(10);

/// One opening of the database.
pub(super) struct Open {
    /// First, so that dropping lands the buffered writes before sled closes.
    pub(super) writer: Writer,
    pub(super) db: sled::Db,
    /// The state's tree.
    pub(super) tree: sled::Tree,
    /// The tables' trees, by their index in [`Handles::names`].
    tables: Vec<sled::Tree>,
}

impl Open {
    /// `config` already has the durability's flush interval.
    fn start(
        config: &sled::Config,
        durability: Durability,
        names: &[String],
        wait: Duration,
    ) -> Result<Open, StateError> {
        let db = open_waiting_for_lock(config, wait)?;
        check_format(&db)?;
        let tree = db.open_tree(TREE).map_err(|e| backend("open tree", e))?;
        let tables = names
            .iter()
            .map(|name| db.open_tree(name).map_err(|e| backend("open tree", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let writer = Writer::start(
            db.clone(),
            tree.clone(),
            durability == Durability::EachUpdate,
        )?;
        Ok(Open {
            writer,
            db,
            tree,
            tables,
        })
    }

    pub(super) fn table(&self, index: usize) -> Result<&sled::Tree, StateError> {
        self.tables
            .get(index)
            .ok_or_else(|| StateError::Backend(format!("sled: no table number {index}")))
    }
}

struct Handles {
    /// `None` only after a reopen failed to open the database again.
    open: Option<Open>,
    /// The tables opened so far, so a reopen opens them again at the same indexes.
    names: Vec<String>,
    /// Why the last reopen failed, told by every call until one succeeds.
    failed: Option<String>,
}

/// What a store shares with its tables.
pub(super) struct Core {
    handles: RwLock<Handles>,
    /// How to open the database again: `None` for a temporary store, whose files go with it.
    reopen_with: Option<(PathBuf, sled::Config)>,
    durability: Durability,
    /// Writes made through the store and its tables since it was first opened.
    writes: AtomicU64,
    reopens: AtomicU64,
}

impl Core {
    pub(super) fn open(
        config: sled::Config,
        durability: Durability,
        wait: Duration,
    ) -> Result<Core, StateError> {
        let every_ms = match durability {
            Durability::Periodic { every_ms } => Some(every_ms.max(1)),
            // Each update flushes; a background flusher would only add fsyncs.
            Durability::EachUpdate => None,
        };
        let config = config.flush_every_ms(every_ms);
        let open = Open::start(&config, durability, &[], wait)?;
        // Kept by value only for a store that can be reopened: a copy of a temporary config
        // deletes the database's files when it is dropped.
        let reopen_with = (!config.temporary).then(|| (config.path.clone(), config));
        Ok(Core {
            handles: RwLock::new(Handles {
                open: Some(open),
                names: Vec::new(),
                failed: None,
            }),
            reopen_with,
            durability,
            writes: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Handles> {
        // Nothing panics while the write side is held with the handles half changed: a failed
        // open leaves `open` at `None`, which every call tells as an error.
        self.handles.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Handles> {
        self.handles.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the open database, which stays open until `f` returns.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Open) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let handles = self.read();
        match &handles.open {
            Some(open) => f(open),
            None => Err(StateError::Backend(format!(
                "sled: the store is closed: reopening it failed ({})",
                handles.failed.as_deref().unwrap_or("unknown error")
            ))),
        }
    }

    /// As [`Core::with`], for a call that writes: counted, so the runtime can tell idle.
    pub(super) fn writing<T>(
        &self,
        f: impl FnOnce(&Open) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.with(f)
    }

    pub(super) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    pub(super) fn can_reopen(&self) -> bool {
        self.reopen_with.is_some()
    }

    pub(super) fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    pub(super) fn durability(&self) -> Durability {
        self.durability
    }

    /// The index of the table `name`, its tree opened if new.
    pub(super) fn table_index(&self, name: &str) -> Result<usize, StateError> {
        if let Some(i) = self.read().names.iter().position(|n| n == name) {
            return Ok(i);
        }
        let mut handles = self.write();
        if let Some(i) = handles.names.iter().position(|n| n == name) {
            return Ok(i);
        }
        let Some(open) = handles.open.as_mut() else {
            return Err(StateError::Backend("sled: the store is closed".into()));
        };
        let tree = open
            .db
            .open_tree(name)
            .map_err(|e| backend("open tree", e))?;
        open.tables.push(tree);
        handles.names.push(name.to_string());
        Ok(handles.names.len() - 1)
    }

    /// Lands and flushes every write, closes the database (dropping every handle to it, and
    /// so the memory sled held) and opens it again. Returns false for a temporary store,
    /// which cannot be reopened and is left as it is. A store whose writer failed is left
    /// open and the failure returned: closing would drop the writes it could not land. If
    /// the second open fails, every call fails until a later reopen succeeds.
    pub(super) fn reopen(&self) -> Result<bool, StateError> {
        let Some((path, config)) = &self.reopen_with else {
            return Ok(false);
        };
        let mut handles = self.write();
        if let Some(open) = &handles.open {
            open.writer.shared.sync()?;
            open.db.flush().map_err(|e| backend("flush", e))?;
        }
        handles.open = None;
        match Open::start(config, self.durability, &handles.names, REOPEN_LOCK_WAIT) {
            Ok(open) => {
                handles.open = Some(open);
                handles.failed = None;
                self.reopens.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                let e = super::opening(e, path);
                handles.failed = Some(e.to_string());
                Err(e)
            }
        }
    }
}
