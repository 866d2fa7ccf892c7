//! A circuit breaker per connector: after a run of failures the connector is left alone for a
//! while, so events back off instead of hammering a system that is down.
//!
//! Closed: calls go through; `threshold` retryable failures in a row open it. Open: calls fail
//! at once with a retryable error until `cooldown` has passed. Half-open: one trial call goes
//! through; its success closes the breaker, its failure opens it again. Permanent errors (a bad
//! payload) say nothing about the connector's health and do not count.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// For the metrics gauge: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

#[derive(Debug)]
struct Inner {
    failures: u32,
    opened_at: Option<Instant>,
    trial_running: bool,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            inner: Mutex::new(Inner {
                failures: 0,
                opened_at: None,
                trial_running: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a few counters; one left behind by a panicking thread is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        let inner = self.lock();
        match inner.opened_at {
            None => BreakerState::Closed,
            Some(at) if at.elapsed() < self.cooldown => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// May a call go through now? `Err` holds how long until the breaker lets one try.
    pub fn admit(&self) -> Result<(), Duration> {
        let mut inner = self.lock();
        match inner.opened_at {
            None => Ok(()),
            Some(at) => {
                let elapsed = at.elapsed();
                if elapsed < self.cooldown {
                    Err(self.cooldown - elapsed)
                } else if inner.trial_running {
                    Err(self.cooldown / 4)
                } else {
                    inner.trial_running = true;
                    Ok(())
                }
            }
        }
    }

    pub fn success(&self) {
        let mut inner = self.lock();
        inner.failures = 0;
        inner.opened_at = None;
        inner.trial_running = false;
    }

    /// A retryable failure; returns true when this one opened the breaker.
    pub fn failure(&self) -> bool {
        let mut inner = self.lock();
        inner.failures = inner.failures.saturating_add(1);
        let was_open = inner.opened_at.is_some();
        if inner.trial_running || inner.failures >= self.threshold {
            inner.opened_at = Some(Instant::now());
            inner.trial_running = false;
        }
        !was_open && inner.opened_at.is_some()
    }

    /// A call that ended without saying anything about the connector's health.
    pub fn neutral(&self) {
        self.lock().trial_running = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_with_one_trial() {
        let b = Breaker::new(3, Duration::from_millis(30));
        assert!(b.admit().is_ok());
        assert!(!b.failure());
        assert!(!b.failure());
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.failure());
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit().is_ok());
        // Only one trial at a time.
        assert!(b.admit().is_err());
        // The trial fails: open again at once.
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit().is_ok());
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit().is_ok());
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.failure();
        b.success();
        b.failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
