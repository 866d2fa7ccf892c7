//! One event at a time per ordering key (a pipeline's `ordering_key:`), in the order the
//! inbox accepted them.
//!
//! An event with a key is entered here when the dispatcher first sees it, and takes its key's
//! turn when it is the oldest entered event of that key and no other event holds the turn. It
//! keeps the turn while it waits for a retry, and gives it up when the inbox is done with it
//! (delivered, dead-lettered or dropped), so a cancellation never runs while its order's
//! creation is running or waiting to be tried again. A dead letter retried by hand is entered
//! again under its old place and runs when the event holding the turn is done.
//!
//! This module owns only the bookkeeping: it must not read the inbox or run events (the
//! worker's dispatcher does both). Its size is bounded by the events in the inbox: a key's
//! entry goes when its last event does.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use tokio::sync::Notify;

/// The header an event's ordering key travels in (set by `Runtime::submit`, kept with the
/// event in the inbox and in a cluster's stream).
pub const ORDERING_HEADER: &str = "x-crossdock-ordering-key";

#[derive(Default)]
struct Key {
    /// Entered and not done, by inbox sequence.
    waiting: BTreeSet<u64>,
    /// The event that runs, or waits for its retry, now.
    holder: Option<u64>,
}

/// The turns of every key that has events in the inbox.
#[derive(Default)]
pub struct Turns {
    keys: Mutex<HashMap<(String, String), Key>>,
    changed: Notify,
}

impl Turns {
    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Key>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes the event `seq` of `pipeline` with `key`: later events of that key wait for it.
    /// Entering an event again (a retry going round) changes nothing.
    pub fn enter(&self, pipeline: &str, key: &str, seq: u64) {
        self.keys()
            .entry((pipeline.to_string(), key.to_string()))
            .or_default()
            .waiting
            .insert(seq);
    }

    /// Waits until the event `seq` holds its key's turn.
    pub async fn take(&self, pipeline: &str, key: &str, seq: u64) {
        let id = (pipeline.to_string(), key.to_string());
        loop {
            // Registered before the check, so a release between the check and the wait wakes
            // this one.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut keys = self.keys();
                let entry = keys.entry(id.clone()).or_default();
                entry.waiting.insert(seq);
                let first = entry.waiting.first().copied() == Some(seq);
                match entry.holder {
                    Some(h) if h == seq => return,
                    None if first => {
                        entry.holder = Some(seq);
                        return;
                    }
                    _ => {}
                }
            }
            changed.await;
        }
    }

    /// The event `seq` is done: the next event of its key may run.
    pub fn release(&self, pipeline: &str, key: &str, seq: u64) {
        let id = (pipeline.to_string(), key.to_string());
        let mut keys = self.keys();
        if let Some(entry) = keys.get_mut(&id) {
            entry.waiting.remove(&seq);
            if entry.holder == Some(seq) {
                entry.holder = None;
            }
            if entry.waiting.is_empty() && entry.holder.is_none() {
                keys.remove(&id);
            }
        }
        drop(keys);
        self.changed.notify_waiters();
    }

    /// Keys with an event in the inbox now.
    #[cfg(test)]
    fn keys_held(&self) -> usize {
        self.keys().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_later_event_waits_for_the_earlier_one_even_when_it_asks_first() {
        let turns = Arc::new(Turns::default());
        turns.enter("p", "o1", 1);
        turns.enter("p", "o1", 2);
        turns.enter("p", "o2", 3);
        // Another key is never held up.
        turns.take("p", "o2", 3).await;
        let second = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take("p", "o1", 2).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!second.is_finished(), "2 ran before 1");
        turns.take("p", "o1", 1).await;
        // Held through a retry: taking it again returns at once.
        turns.take("p", "o1", 1).await;
        assert!(!second.is_finished(), "2 ran while 1 held the turn");
        turns.release("p", "o1", 1);
        second.await.unwrap();
        turns.release("p", "o1", 2);
        turns.release("p", "o2", 3);
        assert_eq!(turns.keys_held(), 0);
    }

    #[tokio::test]
    async fn an_older_event_entered_late_waits_for_the_holder() {
        let turns = Turns::default();
        turns.enter("p", "o1", 5);
        turns.take("p", "o1", 5).await;
        // A dead letter retried by hand, older than the one running.
        turns.enter("p", "o1", 2);
        let late = turns.take("p", "o1", 2);
        tokio::pin!(late);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), late.as_mut())
                .await
                .is_err(),
            "ran beside the holder"
        );
        turns.release("p", "o1", 5);
        late.await;
    }
}
