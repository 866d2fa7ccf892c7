//! The per-connector request rate (`rate: { requests: 10, per: 1s }`), shared by every worker
//! that calls the connector, since the platforms count calls per app or per shop, not per
//! worker.
//!
//! Owns spacing calls evenly: each call takes the next free slot, `per / requests` after the
//! one before, and waits for it. No burst is allowed, so no window of `per` ever holds more
//! than `requests` calls. It must not retry: a 429 that still comes back is the runtime's.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    pub requests: u32,
    pub per: String,
}

/// Longest spacing accepted: a typo such as `per: 1d` for `1s` should not stall calls for days.
const MAX_GAP: Duration = Duration::from_secs(3600);

pub struct Limiter {
    gap: Duration,
    next: tokio::sync::Mutex<Option<Instant>>,
}

impl Limiter {
    /// The error names the key below `rate` it concerns.
    pub fn new(config: &RateConfig) -> Result<Limiter, (&'static str, String)> {
        if config.requests == 0 {
            return Err(("requests", "`requests` must be at least 1".into()));
        }
        let per = humantime::parse_duration(&config.per).map_err(|e| {
            (
                "per",
                format!(
                    "`{}` is not a duration: {e} (write e.g. 1s or 1m)",
                    config.per
                ),
            )
        })?;
        let gap = per / config.requests;
        if gap > MAX_GAP {
            return Err((
                "per",
                format!(
                    "one call every {} is slower than one an hour",
                    humantime::format_duration(gap)
                ),
            ));
        }
        Ok(Limiter {
            gap,
            next: tokio::sync::Mutex::new(None),
        })
    }

    /// Waits for this call's slot.
    pub async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.gap);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lower bound only: the slots are at 0, 20, 40, 60 and 80 ms, so five calls cannot
    /// all have started before 80 ms.
    #[tokio::test]
    async fn calls_are_spaced_by_the_gap() {
        let limiter = Limiter::new(&RateConfig {
            requests: 50,
            per: "1s".into(),
        })
        .unwrap();
        let start = Instant::now();
        for _ in 0..5 {
            limiter.wait().await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(80),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn bad_rates_are_refused() {
        let bad = |requests, per: &str| {
            Limiter::new(&RateConfig {
                requests,
                per: per.into(),
            })
            .err()
            .unwrap()
            .0
        };
        assert_eq!(bad(0, "1s"), "requests");
        assert_eq!(bad(1, "soon"), "per");
        assert_eq!(bad(1, "2h"), "per");
    }
}
