//! The way in for events: [`Runtime::submit`] from any source (webhooks, polls, schedules,
//! files), refused when the backlog or the disk says so, written to the inbox (or a cluster's
//! stream) and handed to the workers; and each pipeline's slots. Owns no HTTP (the server
//! answers) and does not run events (`worker`).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{metrics, turns, Accepted, InboxError, Runtime, StoredEvent};

/// The answer to [`Runtime::submit`]: the event's id, new or the one already accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Accepted (durable per the flush policy) and handed to the workers, which own it now.
    New(String),
    /// A delivery with the same dedup key arrived within the window: the first one's id.
    Duplicate(String),
}

impl Runtime {
    /// Accepts an event for `pipeline` from any source: written to the inbox, durable (per the
    /// flush policy) when this returns, and handed to the workers. Any one of `dedup_keys`
    /// seen within the window gives `Duplicate` and nothing is queued. In a cluster, the
    /// inbox is the stream: durable on its servers when this returns, run by any node.
    pub async fn submit(
        &self,
        pipeline: &str,
        dedup_keys: &[&str],
        mut headers: BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<Submitted, InboxError> {
        // Read once here, where the event enters, and kept with it: a reload that changes the
        // path does not reorder events already accepted.
        let key = self
            .live()
            .project
            .pipeline(pipeline)
            .and_then(|f| f.ordering_key.as_ref())
            .and_then(|k| k.of(body));
        match key {
            Some(key) => headers.insert(turns::ORDERING_HEADER.to_owned(), key),
            None => headers.remove(turns::ORDERING_HEADER),
        };
        if let Some(link) = self.cluster() {
            return link.publish(pipeline, dedup_keys, headers, body).await;
        }
        self.submit_local(pipeline, dedup_keys, headers, body).await
    }

    /// [`Runtime::submit`] to this node's own inbox.
    pub(crate) async fn submit_local(
        &self,
        pipeline: &str,
        dedup_keys: &[&str],
        headers: BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<Submitted, InboxError> {
        if self.inbox.pending_count() >= self.settings.max_backlog {
            return Err(InboxError::Busy(self.settings.max_backlog));
        }
        if self.inbox.pending_bytes().saturating_add(body.len()) > self.settings.max_backlog_bytes
            && self.inbox.pending_count() > 0
        {
            return Err(InboxError::BusyBytes(self.settings.max_backlog_bytes));
        }
        if let Some(why) = self.storage.refusal(self.inbox.committer.failure()) {
            return Err(InboxError::Storage(why));
        }
        // sled writes land in memory and its log buffer; the fsync is the committer's, so this
        // does not block the task for long.
        let written = self
            .inbox
            .accept(
                pipeline,
                dedup_keys,
                self.settings.dedup_window,
                headers,
                body,
            )
            .map_err(|e| self.storage_fault(e))?;
        self.inbox
            .committer
            .durable()
            .await
            .map_err(|e| self.storage_fault(e))?;
        // The event goes to the workers as it is: the caller learns its id only.
        Ok(match written {
            Accepted::New(event) => {
                metrics::received(pipeline);
                let id = event.meta.id.clone();
                self.enqueue(event);
                Submitted::New(id)
            }
            Accepted::Duplicate(id) => {
                metrics::duplicate(pipeline);
                Submitted::Duplicate(id)
            }
        })
    }

    /// Notes a write error of the store with [`storage::Storage`], so later events are refused
    /// at once and `/health` says so; passes the error on.
    fn storage_fault(&self, e: InboxError) -> InboxError {
        if e.is_storage() {
            self.storage.fault(&e.to_string());
        }
        e
    }

    /// Hands an accepted (and durable) event to the workers.
    pub fn enqueue(&self, event: StoredEvent) {
        // The receiver lives as long as the runtime; if it is gone the event is still in the
        // inbox and the next start resumes it.
        let _ = self.queue.send(event);
    }

    /// The pipeline's slots. Sized when first needed; a reload that changes `concurrency`
    /// resizes it by replacing the semaphore (events holding the old one finish on it).
    pub(super) fn limit_for(&self, pipeline: &str) -> Arc<Semaphore> {
        let wanted = self
            .live()
            .project
            .pipeline(pipeline)
            .and_then(|f| f.concurrency)
            .unwrap_or(self.settings.concurrency)
            .max(1);
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up by the borrowed name first: the name is allocated once per pipeline, not
        // once per event.
        let entry = match limits.get_mut(pipeline) {
            Some(entry) => entry,
            None => limits
                .entry(pipeline.to_string())
                .or_insert_with(|| (wanted, Arc::new(Semaphore::new(wanted)))),
        };
        if entry.0 != wanted {
            *entry = (wanted, Arc::new(Semaphore::new(wanted)));
        }
        entry.1.clone()
    }
}
