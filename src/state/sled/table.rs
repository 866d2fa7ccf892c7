//! [`Table`]: a raw byte table in the store's sled database, for the runtime's own records
//! (inbox, dead letters, dedup keys, trails). It must not hold state keys, nor write before the
//! state updates made earlier have landed.

use std::sync::Arc;

use super::backend;
use super::writer::Shared;
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
#[derive(Clone)]
pub struct Table {
    pub(super) tree: sled::Tree,
    pub(super) state: Arc<Shared>,
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
        self.state.sync()?;
        self.tree
            .insert(key, value)
            .map_err(|e| backend("insert", e))?;
        Ok(())
    }

    /// As [`Table::insert`], returning the value it replaced: for a caller that keeps a count of
    /// the bytes a table holds.
    pub fn swap(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.state.sync()?;
        Ok(self
            .tree
            .insert(key, value)
            .map_err(|e| backend("insert", e))?
            .map(|v| v.to_vec()))
    }

    /// Inserts only when the key is absent; returns the value already there otherwise.
    pub fn insert_new(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.state.sync()?;
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
        self.state.sync()?;
        Ok(self
            .tree
            .compare_and_swap(key, Some(old), Some(new))
            .map_err(|e| backend("compare and swap", e))?
            .is_ok())
    }

    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.state.sync()?;
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

    /// Entries in descending key order, starting just below `before` (every entry when
    /// `None`), at most `limit` of them: the newest first, for tables keyed by sequence number.
    pub fn range_back(
        &self,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StateError> {
        let items: Box<dyn DoubleEndedIterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            match before {
                Some(end) => Box::new(self.tree.range(..end)),
                None => Box::new(self.tree.iter()),
            };
        let mut out = Vec::new();
        for item in items.rev().take(limit) {
            let (k, v) = item.map_err(|e| backend("scan", e))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
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
        let mut out = Vec::new();
        if low >= before {
            return Ok(out);
        }
        for item in self.tree.range(low..before).rev().take(limit) {
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
