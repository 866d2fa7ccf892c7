//! What the cluster keeps of events beside the stream, so every node answers for every event:
//! dead letters, trails and the progress of an event between its attempts, in three
//! key-value buckets keyed by the event's id.
//!
//! | bucket | value | `max_age` |
//! |---|---|---|
//! | `{prefix}_dead` | the dead letter (with its body) | none: kept until retried or dropped |
//! | `{prefix}_trails` | the event's trail, its last attempt's until it is done | `keep_trails` |
//! | `{prefix}_runs` | the event's meta while it waits for a retry (attempts, effects done) | 7 days |
//!
//! Values are bytes to this module: the runtime writes and reads them (`runtime::cluster`).
//! Event ids (`evt_` and 16 hex digits) are valid keys as they are, and sort by arrival.
//!
//! A dead letter is taken out (retried or dropped) by a delete expecting the revision that was
//! read, so of two nodes acting on one letter at once one wins.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures_util::StreamExt;

use super::{ClusterError, Settings};

/// How long the progress of an event waiting for its retry is kept: longer than any backoff.
const RUNS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

pub(super) fn unavailable(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(e.to_string())
}

/// The three buckets as one node uses them.
#[derive(Clone)]
pub struct Records {
    dead: kv::Store,
    trails: kv::Store,
    runs: kv::Store,
}

/// A dead letter as stored, with the revision a retry or drop expects.
pub struct Letter {
    pub value: Bytes,
    pub revision: u64,
}

impl Records {
    /// Opens the buckets, creating them when missing; trails expire after `keep_trails`.
    pub async fn open(
        settings: &Settings,
        js: &async_nats::jetstream::Context,
        keep_trails: Duration,
    ) -> Result<Records, ClusterError> {
        // A zero `max_age` is "for ever" to JetStream, the opposite of `keep_trails: 0s`.
        let keep_trails = keep_trails.max(Duration::from_secs(1));
        Ok(Records {
            dead: settings.bucket_store(js, "dead", Duration::ZERO).await?,
            trails: settings.bucket_store(js, "trails", keep_trails).await?,
            runs: settings.bucket_store(js, "runs", RUNS_KEPT).await?,
        })
    }

    pub async fn put_trail(&self, id: &str, value: Vec<u8>) -> Result<(), ClusterError> {
        self.trails
            .put(id, value.into())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn trail(&self, id: &str) -> Result<Option<Bytes>, ClusterError> {
        live(&self.trails, id).await.map(|e| e.map(|e| e.value))
    }

    /// Keeps an event's progress while it waits for a retry.
    pub async fn put_run(&self, id: &str, value: Vec<u8>) -> Result<(), ClusterError> {
        self.runs.put(id, value.into()).await.map_err(unavailable)?;
        Ok(())
    }

    pub async fn run(&self, id: &str) -> Result<Option<Bytes>, ClusterError> {
        live(&self.runs, id).await.map(|e| e.map(|e| e.value))
    }

    /// The event is done: its progress is of no more use (it expires anyway).
    pub async fn forget_run(&self, id: &str) -> Result<(), ClusterError> {
        self.runs.purge(id).await.map_err(unavailable)
    }

    /// Files a dead letter (again: its compensations' progress).
    pub async fn put_dead(&self, id: &str, value: Vec<u8>) -> Result<(), ClusterError> {
        self.dead.put(id, value.into()).await.map_err(unavailable)?;
        Ok(())
    }

    pub async fn dead(&self, id: &str) -> Result<Option<Letter>, ClusterError> {
        live(&self.dead, id).await.map(|e| {
            e.map(|e| Letter {
                value: e.value,
                revision: e.revision,
            })
        })
    }

    /// Takes a dead letter out if it is still the one read at `revision`; false when another
    /// node changed or took it meanwhile.
    pub async fn take_dead(&self, id: &str, revision: u64) -> Result<bool, ClusterError> {
        match self.dead.delete_expect_revision(id, Some(revision)).await {
            Ok(()) => Ok(true),
            Err(e) => match live(&self.dead, id).await? {
                Some(now) if now.revision == revision => Err(unavailable(e)),
                _ => Ok(false),
            },
        }
    }

    /// The ids of every dead letter, in order (oldest first).
    pub async fn dead_ids(&self) -> Result<Vec<String>, ClusterError> {
        let mut keys = self.dead.keys().await.map_err(unavailable)?;
        let mut ids = Vec::new();
        while let Some(key) = keys.next().await {
            ids.push(key.map_err(unavailable)?);
        }
        ids.sort();
        Ok(ids)
    }
}

/// A key's entry unless it is deleted or purged.
async fn live(store: &kv::Store, key: &str) -> Result<Option<kv::Entry>, ClusterError> {
    match store.entry(key).await.map_err(unavailable)? {
        Some(e) if e.operation == Operation::Put => Ok(Some(e)),
        _ => Ok(None),
    }
}
