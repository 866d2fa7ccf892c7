//! The last deliveries a webhook refused for their signature, kept in memory for the console:
//! a refused delivery is not an event (nothing of it is written to disk, so whoever can reach
//! the port cannot fill the disk with refusals), but the person fixing a wrong secret needs to
//! see what arrived and why it failed. Owns the ring and its bounds; it never persists.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

/// Refused deliveries kept, the oldest dropped first.
pub const KEEP: usize = 50;

/// Bytes of each refused body kept: enough to recognise it, bounded whatever was sent.
pub const BODY_KEEP: usize = 4096;

#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub pipeline: String,
    /// RFC 3339.
    pub at: String,
    /// The signature scheme that refused it.
    pub scheme: String,
    /// Why, as the scheme says it (`no offered signature matches the configured secret`).
    pub reason: String,
    /// Headers as an accepted event's are stored (credentials removed).
    pub headers: BTreeMap<String, String>,
    /// The first [`BODY_KEEP`] bytes of the body, as text (invalid UTF-8 replaced).
    pub body: String,
    /// The body's length as received.
    pub bytes: usize,
}

/// The ring of the last [`KEEP`] refusals.
#[derive(Default)]
pub struct RefusedDeliveries {
    ring: Mutex<VecDeque<Refused>>,
}

impl RefusedDeliveries {
    pub fn push(&self, refused: Refused) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(refused);
    }

    /// The refusals kept, newest first.
    pub fn newest_first(&self) -> Vec<Refused> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().rev().cloned().collect()
    }
}

/// The body as the ring keeps it: its first [`BODY_KEEP`] bytes, as text.
pub fn body_preview(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(BODY_KEEP)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_and_bounds_the_body() {
        let ring = RefusedDeliveries::default();
        for n in 0..KEEP + 5 {
            ring.push(Refused {
                pipeline: format!("p{n}"),
                at: String::new(),
                scheme: "shopify".into(),
                reason: "no offered signature matches the configured secret".into(),
                headers: BTreeMap::new(),
                body: body_preview(&vec![b'x'; BODY_KEEP * 2]),
                bytes: BODY_KEEP * 2,
            });
        }
        let kept = ring.newest_first();
        assert_eq!(kept.len(), KEEP);
        assert_eq!(kept[0].pipeline, format!("p{}", KEEP + 4));
        assert_eq!(kept[KEEP - 1].pipeline, "p5");
        assert_eq!(kept[0].body.len(), BODY_KEEP);
    }
}
