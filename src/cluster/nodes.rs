//! Who is in the cluster, and which node runs what must run once: the node registry and
//! leases, on two key-value buckets.
//!
//! | bucket | key | value | `max_age` |
//! |---|---|---|---|
//! | `{prefix}_nodes` | node name | [`NodeInfo`] | 30 s: a node that stops beating leaves the list |
//! | `{prefix}_leases` | what is leased, [`super::state::encode`]d | [`Lease`] | none |
//!
//! A node writes its entry every [`BEAT`]. A lease is held by one node until `until`; its
//! holder renews it every [`BEAT`] for [`LEASE`] more, so another node takes it over at most
//! [`LEASE`] after its holder stopped. Taking or renewing is a compare-and-set on the
//! revision read, so of two nodes reaching for one lease one wins.

use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::state::encode;
use super::{now_ms, ClusterError, Settings};

/// How often a node says it is alive and renews its leases.
pub const BEAT: Duration = Duration::from_secs(2);
/// How long a lease lasts without renewal: the longest a source stays unrun after its node
/// died.
pub const LEASE: Duration = Duration::from_secs(6);

/// What a node says of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: String,
    /// The project version it runs.
    pub version: String,
    /// crossdock's own version.
    pub crossdock: String,
    /// RFC 3339, when it started.
    pub started_at: String,
    /// ms since the epoch of its last beat.
    pub seen_ms: u64,
}

/// Who holds a lease until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub node: String,
    pub until_ms: u64,
}

/// The registry and leases as one node uses them.
#[derive(Clone)]
pub struct Registry {
    nodes: kv::Store,
    leases: kv::Store,
    node: String,
}

fn unavailable(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(e.to_string())
}

impl Registry {
    pub async fn open(
        settings: &Settings,
        js: &async_nats::jetstream::Context,
    ) -> Result<Registry, ClusterError> {
        Ok(Registry {
            nodes: settings
                .bucket_store(js, "nodes", Duration::from_secs(30))
                .await?,
            leases: settings.bucket_store(js, "leases", Duration::ZERO).await?,
            node: settings.node.clone(),
        })
    }

    /// Writes this node's entry.
    pub async fn beat(&self, info: &NodeInfo) -> Result<(), ClusterError> {
        let bytes = serde_json::to_vec(info).map_err(unavailable)?;
        self.nodes
            .put(encode(&self.node), Bytes::from(bytes))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Every node that beat within the bucket's `max_age`, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let mut keys = self.nodes.keys().await.map_err(unavailable)?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(unavailable)?;
            if let Some(bytes) = self.nodes.get(&key).await.map_err(unavailable)? {
                if let Ok(info) = serde_json::from_slice::<NodeInfo>(&bytes) {
                    out.push(info);
                }
            }
        }
        out.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(out)
    }

    /// Takes or renews the lease `name` for this node; true when this node holds it now.
    pub async fn hold(&self, name: &str) -> Result<bool, ClusterError> {
        let key = encode(name);
        let mine = Lease {
            node: self.node.clone(),
            until_ms: now_ms() + LEASE.as_millis() as u64,
        };
        let bytes = Bytes::from(serde_json::to_vec(&mine).map_err(unavailable)?);
        let entry = self.leases.entry(&key).await.map_err(unavailable)?;
        let rev = match entry {
            None => {
                return match self.leases.create(&key, bytes).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(unavailable(e)),
                }
            }
            Some(e) if e.operation != Operation::Put => e.revision,
            Some(e) => {
                let held: Option<Lease> = serde_json::from_slice(&e.value).ok();
                match held {
                    Some(l) if l.node != self.node && l.until_ms > now_ms() => return Ok(false),
                    _ => e.revision,
                }
            }
        };
        match self.leases.update(&key, bytes, rev).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Gives up the lease `name` if this node holds it, so another takes it at once.
    pub async fn release(&self, name: &str) -> Result<(), ClusterError> {
        let key = encode(name);
        if let Some(e) = self.leases.entry(&key).await.map_err(unavailable)? {
            let held: Option<Lease> = serde_json::from_slice(&e.value).ok();
            if held.is_some_and(|l| l.node == self.node) {
                let _ = self
                    .leases
                    .delete_expect_revision(&key, Some(e.revision))
                    .await;
            }
        }
        Ok(())
    }
}
