//! [`Table`]: a raw byte table in the store's sled database, for the runtime's own records
//! (inbox, dead letters, dedup keys, trails). It must not hold state keys, nor write before the
//! state updates made earlier have landed.

use std::sync::Arc;

use super::backend;
use super::open::Core;
use crate::state::StateError;

/// A raw byte table in the same database as the state: the runtime keeps its inbox, dead
/// letters, dedup keys and trails in tables of their own, so their keys never meet the state's
/// and a flush of the store makes all of them durable together.
///
/// Writes to tables are plain sled writes (atomic one key at a time, no transaction): sled's
/// log is replayed in order after a crash, so of two writes the later one survives only if the
/// earlier one did. The runtime relies on that ordering (see `runtime::inbox`). Each write
/// first waits for the state updates made before it to land (see `writer`), so the ordering
/// holds between state and tables too.
///
/// A table holds no sled handle between calls (its tree is found by index in the store's open
/// database for each one), so the store can be closed and reopened under it (`open`).
#[derive(Clone)]
pub struct Table {
    pub(super) core: Arc<Core>,
    pub(super) index: usize,
}

/// One entry of a [`Table`]: key and value bytes.
pub type Entry = (Vec<u8>, Vec<u8>);

impl Table {
    /// Runs `f` on the table's tree.
    fn read<T>(
        &self,
        f: impl FnOnce(&sled::Tree) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        self.core.with(|open| f(open.table(self.index)?))
    }

    /// Runs `f` on the table's tree once the state updates made before have landed.
    fn write<T>(
        &self,
        f: impl FnOnce(&sled::Tree) -> sled::Result<T>,
        context: &str,
    ) -> Result<T, StateError> {
        self.core.writing(|open| {
            open.writer.shared.sync()?;
            f(open.table(self.index)?).map_err(|e| backend(context, e))
        })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.read(|tree| {
            Ok(tree
                .get(key)
                .map_err(|e| backend("get", e))?
                .map(|v| v.to_vec()))
        })
    }

    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.write(|tree| tree.insert(key, value), "insert")
            .map(drop)
    }

    /// As [`Table::insert`], returning the value it replaced: for a caller that keeps a count of
    /// the bytes a table holds.
    pub fn swap(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let old = self.write(|tree| tree.insert(key, value), "insert")?;
        Ok(old.map(|v| v.to_vec()))
    }

    /// Inserts only when the key is absent; returns the value already there otherwise.
    pub fn insert_new(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.write(
            |tree| tree.compare_and_swap(key, None as Option<&[u8]>, Some(value)),
            "compare and swap",
        )? {
            Ok(()) => Ok(None),
            Err(e) => Ok(Some(e.current.map(|v| v.to_vec()).unwrap_or_default())),
        }
    }

    /// Replaces the value only if it is still `old`; false when another writer got there first.
    pub fn replace(&self, key: &[u8], old: &[u8], new: &[u8]) -> Result<bool, StateError> {
        let swapped = self.write(
            |tree| tree.compare_and_swap(key, Some(old), Some(new)),
            "compare and swap",
        )?;
        Ok(swapped.is_ok())
    }

    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let old = self.write(|tree| tree.remove(key), "remove")?;
        Ok(old.map(|v| v.to_vec()))
    }

    /// As [`Table::remove`], giving what `measure` reads of the value removed instead of a
    /// copy of it: for a caller that needs only, say, its length.
    pub fn remove_measured<T>(
        &self,
        key: &[u8],
        measure: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, StateError> {
        let old = self.write(|tree| tree.remove(key), "remove")?;
        Ok(old.map(|v| measure(&v)))
    }

    /// Entries in key order, starting at `from` (inclusive), at most `limit` of them.
    pub fn range_from(&self, from: &[u8], limit: usize) -> Result<Vec<Entry>, StateError> {
        self.read(|tree| entries(tree.range(from..).take(limit)))
    }

    /// Entries in descending key order, starting just below `before` (every entry when
    /// `None`), at most `limit` of them: the newest first, for tables keyed by sequence number.
    pub fn range_back(
        &self,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StateError> {
        self.read(|tree| match before {
            Some(end) => entries(tree.range(..end).rev().take(limit)),
            None => entries(tree.iter().rev().take(limit)),
        })
    }

    /// Entries with keys from `low` (inclusive) to `before` (exclusive), in descending key
    /// order, at most `limit` of them: the newest first of one prefix of a table whose keys end
    /// in a sequence number.
    pub fn range_back_within(
        &self,
        low: &[u8],
        before: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StateError> {
        if low >= before {
            return Ok(Vec::new());
        }
        self.read(|tree| entries(tree.range(low..before).rev().take(limit)))
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, StateError> {
        self.read(|tree| entries(tree.scan_prefix(prefix)))
    }

    /// Entries in the table; 0 when the store is closed (a reopen that failed).
    pub fn len(&self) -> usize {
        self.read(|tree| Ok(tree.len())).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.read(|tree| Ok(tree.is_empty())).unwrap_or(true)
    }
}

/// Copies out the entries of a sled iterator: nothing borrowed from sled outlives the call.
fn entries(
    items: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
) -> Result<Vec<Entry>, StateError> {
    let mut out = Vec::new();
    for item in items {
        let (k, v) = item.map_err(|e| backend("scan", e))?;
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}
