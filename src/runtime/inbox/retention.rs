//! Retention: what is kept after an event finishes (dedup keys, trails) is forgotten in the
//! background. Owns the sweeps; it never touches the `inbox` table (nothing pending expires).

use std::time::Duration;

use super::record::{key_seq, now_ms, parse_dedup, Trail};
use super::{Inbox, InboxError};

impl Inbox {
    /// Forgets dedup keys older than `window`; returns how many.
    pub fn sweep_dedup(&self, window: Duration) -> Result<usize, InboxError> {
        let cutoff = now_ms().saturating_sub(window.as_millis() as u64);
        let mut removed = 0;
        loop {
            let batch = self.dedup_age.range_from(&[], 1024)?;
            let mut done = batch.is_empty();
            for (k, _) in &batch {
                let Some(at) = key_seq(k) else { continue };
                if at >= cutoff {
                    done = true;
                    break;
                }
                let dkey = &k[8..];
                // Only if it still points at this age: a later delivery may have renewed it.
                if let Some(v) = self.dedup.get(dkey)? {
                    if parse_dedup(&v).is_some_and(|(a, _)| a == at) {
                        self.dedup.remove(dkey)?;
                    }
                }
                self.dedup_age.remove(k)?;
                removed += 1;
            }
            if done {
                return Ok(removed);
            }
        }
    }

    /// Forgets trails older than `keep`; returns how many.
    pub fn sweep_trails(&self, keep: Duration) -> Result<usize, InboxError> {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(7));
        let mut removed = 0;
        loop {
            let batch = self.trail.range_from(&[], 256)?;
            if batch.is_empty() {
                return Ok(removed);
            }
            for (k, v) in &batch {
                let old = serde_json::from_slice::<Trail>(v)
                    .ok()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t.finished_at).ok())
                    .is_none_or(|at| at < cutoff);
                if !old {
                    return Ok(removed);
                }
                self.trail.remove(k)?;
                removed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{accept, inbox};
    use super::super::Accepted;
    use super::*;

    #[test]
    fn sweeping_forgets_old_dedup_keys_only() {
        let inbox = inbox();
        accept(&inbox, "old", Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(inbox.sweep_dedup(Duration::from_millis(10)).unwrap(), 1);
        assert!(matches!(
            accept(&inbox, "old", Duration::from_secs(60)),
            Accepted::New(_)
        ));
        assert_eq!(inbox.sweep_dedup(Duration::from_secs(60)).unwrap(), 0);
    }
}
