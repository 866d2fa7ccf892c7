//! A circuit breaker per connector: after a run of failures the connector is left alone for a
//! while, so events back off instead of hammering a system that is down.
//!
//! Closed: calls go through; `threshold` retryable failures in a row open it. Open: calls fail
//! at once with a retryable error until `cooldown` has passed. Half-open: one trial call goes
//! through; its success closes the breaker, its failure opens it again. Permanent errors (a bad
//! payload) say nothing about the connector's health and do not count.
//!
//! A call goes through with a [`Permit`], which carries the outcome back. The permit belongs to
//! the generation that admitted it (every open and every close starts a new one), so a slow
//! call admitted before the breaker opened cannot close it with its late success, nor reopen
//! it with its late failure. A permit dropped without an outcome (the call's future dropped)
//! gives the half-open trial back instead of holding it forever.

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
    generation: u64,
}

impl Inner {
    fn open(&mut self) {
        self.opened_at = Some(Instant::now());
        self.trial_running = false;
        self.generation = self.generation.wrapping_add(1);
    }
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

/// Leave to make one call, from [`Breaker::admit`]. Say how it went with `success`, `failure`
/// or `neutral`; dropping it says nothing about the connector but frees the half-open trial.
#[derive(Debug)]
#[must_use = "a permit reports the call's outcome; dropping it reports nothing"]
pub struct Permit<'b> {
    breaker: &'b Breaker,
    generation: u64,
    trial: bool,
}

impl Permit<'_> {
    /// The call succeeded: closes the breaker, if this permit's generation is still current.
    pub fn success(self) {
        let mut inner = self.breaker.lock();
        if inner.generation == self.generation {
            inner.failures = 0;
            if inner.opened_at.take().is_some() {
                inner.generation = inner.generation.wrapping_add(1);
            }
            inner.trial_running = false;
        }
    }

    /// A retryable failure; returns true when this one opened the breaker.
    pub fn failure(self) -> bool {
        let mut inner = self.breaker.lock();
        if inner.generation != self.generation {
            return false;
        }
        inner.failures = inner.failures.saturating_add(1);
        let was_open = inner.opened_at.is_some();
        if self.trial || inner.failures >= self.breaker.threshold {
            inner.open();
        }
        !was_open && inner.opened_at.is_some()
    }

    /// The call ended without saying anything about the connector's health.
    pub fn neutral(self) {}
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.trial {
            let mut inner = self.breaker.lock();
            if inner.generation == self.generation {
                inner.trial_running = false;
            }
        }
    }
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
                generation: 0,
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
    pub fn admit(&self) -> Result<Permit<'_>, Duration> {
        let mut inner = self.lock();
        let trial = match inner.opened_at {
            None => false,
            Some(at) => {
                let elapsed = at.elapsed();
                if elapsed < self.cooldown {
                    return Err(self.cooldown - elapsed);
                } else if inner.trial_running {
                    return Err(self.cooldown / 4);
                }
                inner.trial_running = true;
                true
            }
        };
        Ok(Permit {
            breaker: self,
            generation: inner.generation,
            trial,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(b: &Breaker) -> bool {
        b.admit().map(Permit::failure).unwrap_or(false)
    }

    #[test]
    fn opens_after_threshold_then_half_opens_with_one_trial() {
        let b = Breaker::new(3, Duration::from_millis(30));
        assert!(!fail(&b));
        assert!(!fail(&b));
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(fail(&b));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let trial = b.admit().unwrap();
        // Only one trial at a time.
        assert!(b.admit().is_err());
        // The trial fails: open again at once.
        assert!(!trial.failure());
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));
        b.admit().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit().is_ok());
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        fail(&b);
        b.admit().unwrap().success();
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_trial_dropped_without_an_outcome_lets_the_next_one_try() {
        let b = Breaker::new(1, Duration::from_millis(20));
        assert!(fail(&b));
        std::thread::sleep(Duration::from_millis(30));
        let trial = b.admit().unwrap();
        assert!(b.admit().is_err());
        // The call's future is dropped (a timeout above it, a shutdown) before it answers.
        drop(trial);
        let next = b.admit().expect("the dropped trial's place is free");
        next.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_neutral_trial_frees_the_trial() {
        let b = Breaker::new(1, Duration::from_millis(20));
        assert!(fail(&b));
        std::thread::sleep(Duration::from_millis(30));
        b.admit().unwrap().neutral();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit().is_ok());
    }

    #[test]
    fn outcomes_of_calls_admitted_before_the_breaker_opened_are_ignored() {
        let b = Breaker::new(2, Duration::from_millis(20));
        let slow_ok = b.admit().unwrap();
        let slow_failure = b.admit().unwrap();
        assert!(!fail(&b));
        assert!(fail(&b));
        // The slow call answers after the breaker opened: the connector is still down for
        // the calls that failed since, so its success closes nothing.
        slow_ok.success();
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(30));
        let trial = b.admit().unwrap();
        // Nor does a late failure end the trial running now or restart the cooldown.
        assert!(!slow_failure.failure());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit().is_err(), "the trial is still the one running");
        trial.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
