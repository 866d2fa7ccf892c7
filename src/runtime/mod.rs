//! The running engine: the live project version, the durable inbox, the workers that take
//! events through flows and out through connectors, retries, dead letters and reloads.
//!
//! This module owns everything `crossdock run` does between "an event was accepted" and "its
//! actions reached their connectors (or it was dead-lettered)". HTTP is the [`crate::server`]'s
//! business: it verifies, calls [`Runtime::accept`] and answers. The sources that need no HTTP
//! (poll, schedule, file) are [`sources`]' tasks, started with the runtime; they too bring
//! events in through [`Runtime::submit`]. Flows, connectors and state are used, not defined,
//! here.
//!
//! # Versions
//!
//! The compiled project, its live connectors and its webhook routes form one [`Live`] value
//! behind an `ArcSwap`. A request or an event loads it once and keeps that `Arc` to the end, so
//! a reload (an atomic swap of the pointer) never changes a version under a running event:
//! events in flight finish on the version they started with, queued events run on the version
//! current when they start.
//!
//! # Shutdown
//!
//! [`Runtime::drain`] makes webhooks answer 503, stops starting events, and waits (up to a grace
//! period) for the events already running. Whatever has not finished stays in the inbox and is
//! resumed by the next start: the inbox, not memory, is the queue of record.

pub mod activity;
pub mod breaker;
pub mod cluster;
mod idle;
pub mod inbox;
pub mod ledger;
mod live;
pub mod metrics;
mod pool;
pub mod priority;
pub mod refused;
mod reload;
pub mod retry;
mod settings;
pub mod sources;
mod start;
pub mod storage;
mod submit;
pub mod turns;
pub mod versions;
pub mod watch;
mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, Semaphore};

use crate::config::diag::Diagnostics;
use crate::state::{SledStore, StateError, StateStore};

pub use self::inbox::{Accepted, FlushPolicy, Inbox, InboxError, StoredEvent};
pub use self::live::{Live, LiveConnector, Route};
pub use self::reload::ReloadError;
pub use self::settings::Settings;
pub use self::submit::Submitted;
pub use self::worker::{drop_dead_letter, Dropped};

pub struct Runtime {
    live: ArcSwap<Live>,
    pub inbox: Arc<Inbox>,
    pub store: Arc<SledStore>,
    pub storage: Arc<storage::Storage>,
    ledger: Arc<ledger::Ledger>,
    state: Arc<dyn StateStore>,
    pub settings: Settings,
    root: PathBuf,
    env: fn(&str) -> Option<String>,
    http: reqwest::Client,
    queue: mpsc::UnboundedSender<StoredEvent>,
    draining: AtomicBool,
    running: AtomicUsize,
    limits: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
    /// One event at a time per ordering key.
    turns: turns::Turns,
    last_reload_error: Mutex<Option<ReloadError>>,
    /// The versions run since the start (`GET /api/versions`).
    versions: versions::History,
    /// Serialises reloads: two at once would race to swap.
    reloading: tokio::sync::Mutex<()>,
    sources: sources::Hub,
    /// Where flows run, off the async workers.
    flows: pool::FlowPool,
    /// `cluster:` of crossdock.yaml, read at open; the link is made by
    /// [`Runtime::join_cluster`].
    cluster_settings: Option<crate::cluster::Settings>,
    cluster: std::sync::OnceLock<Arc<cluster::Link>>,
    /// The last deliveries refused for their signature, in memory only (`refused.rs`).
    pub refused: refused::RefusedDeliveries,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the project has errors")]
    Config(Diagnostics),
    #[error("cannot open the state at {path}: {source}")]
    State { path: PathBuf, source: StateError },
    #[error(transparent)]
    Inbox(#[from] InboxError),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("{0}")]
    Build(String),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

impl Runtime {
    /// The version serving now.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// The poll, schedule and file sources' side of the runtime.
    pub fn sources(&self) -> &sources::Hub {
        &self.sources
    }

    /// Tells the sources the live version changed, so they follow it now rather than at their
    /// next look.
    pub fn sources_changed(&self) {
        self.sources.changed();
    }

    /// The key an event's state commit marks itself with (`state::applied_key`). In a cluster
    /// an event's id is its place in the inbox stream, the same on every node, so a node
    /// running it again after another died finds that one's mark; the stream's epoch keeps
    /// the marks of a stream made anew (numbered from 1 again) apart from the old one's.
    pub(crate) fn applied_key(&self, event_id: &str) -> String {
        match self.cluster() {
            Some(link) => crate::state::applied_key(&format!("{}/{event_id}", link.inbox.epoch)),
            None => crate::state::applied_key(event_id),
        }
    }

    /// The cluster link, once [`Runtime::join_cluster`] made it.
    pub fn cluster(&self) -> Option<&Arc<cluster::Link>> {
        self.cluster.get()
    }

    /// The project folder this engine serves.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The first 12 characters of a version hash, as logs show it.
pub fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// The header that carries an event's tenant, set by the webhook that chose it (and taken off
/// whatever a sender put there).
pub use crate::rules::TENANT_HEADER;
