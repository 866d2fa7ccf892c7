//! The health of the state folder's disk: free space against a watermark, and whether the store
//! can still write.
//!
//! Two ways a disk can stop an engine, handled apart:
//!
//! - **Nearly full.** Below `state.min_free` free bytes, new events are refused with 503 and
//!   `Retry-After` (senders retry later), `/health` says why and answers 503, and workers go on
//!   finishing what was accepted. The store itself never meets a full disk, so when space comes
//!   back the engine takes events again by itself. Free space is read once a second, never per
//!   request.
//! - **A write failed anyway** (the disk filled faster than the watermark, or another I/O
//!   error). sled 0.34 keeps its first I/O error and fails every later write and flush, also
//!   after space is back (measured: see docs/runtime.md); only a new open of the folder
//!   recovers. The engine refuses events while the store fails, and once a flush fails with
//!   space above the watermark again, it asks for a restart: `crossdock run` drains and starts
//!   itself again in the same process (`exec`), resuming the inbox from disk. Nothing that was
//!   answered 202 is lost: an event is answered only after its flush succeeded.
//!
//! This module owns the watermark and the decision to restart; the runtime asks it before
//! accepting, and the server shows it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often free space is read.
const EVERY: Duration = Duration::from_secs(1);

/// The state of the disk as last seen.
pub struct Storage {
    dir: PathBuf,
    /// Refuse new events below this many free bytes (0: never by space).
    min_free: u64,
    free: AtomicU64,
    /// Set when the store failed a write and needs a new open: `crossdock run` restarts.
    restart: AtomicBool,
    restart_wanted: tokio::sync::Notify,
    /// A write that failed since the last flush that succeeded.
    fault: Mutex<Option<String>>,
    /// Whether `fault` holds one: read on every accepted event, without the lock.
    faulted: AtomicBool,
}

impl Storage {
    pub fn new(dir: PathBuf, min_free: u64) -> Storage {
        let storage = Storage {
            dir,
            min_free,
            free: AtomicU64::new(u64::MAX),
            restart: AtomicBool::new(false),
            restart_wanted: tokio::sync::Notify::new(),
            fault: Mutex::new(None),
            faulted: AtomicBool::new(false),
        };
        storage.measure();
        storage
    }

    /// Reads the free space now.
    fn measure(&self) {
        match fs2::available_space(&self.dir) {
            Ok(n) => self.free.store(n, Ordering::SeqCst),
            // Unknown is not full: the store's own errors still stop writes if it is.
            Err(_) => self.free.store(u64::MAX, Ordering::SeqCst),
        }
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::SeqCst)
    }

    fn low(&self) -> bool {
        self.free_bytes() < self.min_free
    }

    /// Notes a write the store refused: events are refused until a flush succeeds again.
    pub fn fault(&self, error: &str) {
        let mut fault = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        if fault.is_none() {
            tracing::error!(
                error,
                "The state store failed a write; events are refused until it writes again"
            );
        }
        *fault = Some(error.to_string());
        self.faulted.store(true, Ordering::SeqCst);
    }

    fn current_fault(&self) -> Option<String> {
        if !self.faulted.load(Ordering::SeqCst) {
            return None;
        }
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why new events are refused now, if they are: the disk is below the watermark, or the
    /// store failed a write (`failure`: the group commit's last flush, if it failed).
    pub fn refusal(&self, failure: Option<String>) -> Option<String> {
        if let Some(e) = failure.or_else(|| self.current_fault()) {
            return Some(format!("the state store cannot write: {e}"));
        }
        if self.low() {
            return Some(format!(
                "the disk holding the state has {} bytes free, below state.min_free ({} bytes)",
                self.free_bytes(),
                self.min_free
            ));
        }
        None
    }

    /// Whether the store failed in a way only a restart mends.
    pub fn restart_requested(&self) -> bool {
        self.restart.load(Ordering::SeqCst)
    }

    /// Resolves once a restart is requested.
    pub async fn wait_for_restart(&self) {
        loop {
            let notified = self.restart_wanted.notified();
            if self.restart_requested() {
                return;
            }
            notified.await;
        }
    }

    /// The background task: reads free space every second; when the store has failed and the
    /// disk has room again, tries a flush, and asks for a restart if the store still fails.
    pub async fn watch(
        self: Arc<Self>,
        store: Arc<crate::state::SledStore>,
        committer: Arc<super::inbox::Committer>,
    ) {
        loop {
            tokio::time::sleep(EVERY).await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.measure()).await;
            if committer
                .failure()
                .or_else(|| self.current_fault())
                .is_none()
                || self.low()
            {
                continue;
            }
            let store = store.clone();
            let flushed = tokio::task::spawn_blocking(move || store.flush()).await;
            if matches!(flushed, Ok(Ok(_))) {
                // A passing fault, over.
                *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.faulted.store(false, Ordering::SeqCst);
                committer.recovered();
                continue;
            }
            tracing::error!(
                "The state store still fails with room on the disk (sled keeps its first I/O \
                 error): restarting to open it again"
            );
            self.restart.store(true, Ordering::SeqCst);
            self.restart_wanted.notify_waiters();
            return;
        }
    }
}
