//! The cluster's dead letters as the admin API and `crossdock dlq` see them from any node: their
//! count (kept for `/health`), pages and search, one letter, and retrying or dropping one so
//! that of two nodes acting on it at once one wins. It must not run an event (a retried one
//! goes back to the inbox stream) nor know about HTTP.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::Value;

use super::{parse, unavailable, Known, Link};
use crate::cluster::inbox::Meta;
use crate::runtime::inbox::{self, DeadFilter, DeadLetter, InboxError};
use crate::runtime::Runtime;

impl Link {
    /// The cluster's dead letters, as last counted.
    pub fn dead_letters(&self) -> u64 {
        self.dead_total.load(Ordering::Relaxed)
    }

    pub(super) async fn count_dead_letters(&self) -> Result<Vec<String>, InboxError> {
        let ids = self.records.dead_ids().await.map_err(unavailable)?;
        self.dead_total.store(ids.len() as u64, Ordering::Relaxed);
        Ok(ids)
    }

    /// A page of the cluster's dead letters, as [`inbox::Inbox::dead_letter_page`] pages the
    /// local ones.
    pub async fn dead_letter_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Value, InboxError> {
        let ids = self.count_dead_letters().await?;
        let mut items = Vec::new();
        for id in ids
            .iter()
            .filter(|id| after.is_none_or(|a| id.as_str() > a))
        {
            if items.len() == limit {
                break;
            }
            // Gone between the listing and the read: retried or dropped meanwhile.
            if let Some(letter) = self.dead_letter(id).await? {
                items.push(inbox::dead_letter_summary(&letter));
            }
        }
        Ok(serde_json::json!({ "total": ids.len(), "items": items }))
    }

    pub async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, InboxError> {
        Ok(self.letter(id).await?.map(|(letter, _)| letter))
    }

    async fn letter(&self, id: &str) -> Result<Option<(DeadLetter, u64)>, InboxError> {
        match self.records.dead(id).await.map_err(unavailable)? {
            Some(l) => Ok(Some((parse(id, &l.value)?, l.revision))),
            None => Ok(None),
        }
    }

    /// The dead letters `filter` matches, oldest first, at most `limit`; and whether more
    /// matched.
    pub async fn dead_letters_matching(
        &self,
        filter: &DeadFilter,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, bool), InboxError> {
        let mut out = Vec::new();
        for id in self.records.dead_ids().await.map_err(unavailable)? {
            let Some(letter) = self.dead_letter(&id).await? else {
                continue;
            };
            if filter.matches(&letter) {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(letter);
            }
        }
        Ok((out, false))
    }

    /// Retries a dead letter from any node: its progress (attempts reset, effects done kept
    /// unless `full`) goes to the `runs` bucket, the event to the stream under its own id, and
    /// the letter leaves the bucket. Two retries of one letter at once publish the same
    /// message id, so the stream keeps one. False when there is no such letter.
    pub async fn retry_dead_letter(&self, id: &str, full: bool) -> Result<bool, InboxError> {
        let Some((letter, revision)) = self.letter(id).await? else {
            return Ok(false);
        };
        let mut meta = letter.event;
        meta.attempts = 0;
        meta.not_before_ms = 0;
        meta.interrupted = 0;
        if full {
            meta.done.clear();
            meta.full_rerun = true;
        }
        let bytes = serde_json::to_vec(&meta).map_err(|e| InboxError::Corrupt {
            key: id.to_string(),
            message: e.to_string(),
        })?;
        self.records.put_run(id, bytes).await.map_err(unavailable)?;
        let message = Meta {
            pipeline: meta.pipeline.clone(),
            received_at: meta.received_at.clone(),
            headers: meta.headers.clone(),
            id: Some(id.to_string()),
        };
        let ordering_key = meta.headers.get(crate::runtime::turns::ORDERING_HEADER);
        self.inbox
            .publish(
                &message,
                Some(&format!("retry {id} {revision}")),
                ordering_key.map(String::as_str),
                &inbox::letter_body(&letter.body),
            )
            .await
            .map_err(unavailable)?;
        // Lost to another node's retry or drop meanwhile: the stream has one copy at most.
        self.records
            .take_dead(id, revision)
            .await
            .map_err(unavailable)?;
        Ok(true)
    }

    /// Drops a dead letter of the cluster, first running the compensations it owes unless
    /// `undo` is false, as [`crate::runtime::drop_dead_letter`] does on one machine.
    pub async fn drop_dead_letter(
        &self,
        runtime: &Arc<Runtime>,
        id: &str,
        undo: bool,
    ) -> Result<crate::runtime::Dropped, InboxError> {
        let (Some((mut letter, revision)), Some(seq)) =
            (self.letter(id).await?, inbox::parse_event_id(id))
        else {
            return Ok(crate::runtime::Dropped::NotFound);
        };
        let mut trails = Vec::new();
        if undo && !letter.event.undo.is_empty() {
            let (meta, done) = crate::runtime::worker::undo_letter(runtime, seq, &letter).await;
            trails = done;
            if let Ok(Known {
                trail: Some(mut trail),
                ..
            }) = self.event(runtime, id).await
            {
                trail.compensations.extend(trails.iter().cloned());
                if let Ok(bytes) = serde_json::to_vec(&trail) {
                    let _ = self.records.put_trail(id, bytes).await;
                }
            }
            if !meta.undo.is_empty() {
                letter.event = meta;
                let bytes = serde_json::to_vec(&letter).map_err(|e| InboxError::Corrupt {
                    key: id.to_string(),
                    message: e.to_string(),
                })?;
                self.records
                    .put_dead(id, bytes)
                    .await
                    .map_err(unavailable)?;
                return Ok(crate::runtime::Dropped::Owed(trails));
            }
        }
        if !self
            .records
            .take_dead(id, revision)
            .await
            .map_err(unavailable)?
        {
            return Ok(crate::runtime::Dropped::NotFound);
        }
        Ok(crate::runtime::Dropped::Dropped(trails))
    }
}
