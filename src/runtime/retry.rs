//! When a failed event is tried again: the pipeline's `on_error.retry`, exponential backoff
//! with jitter, and a server's `Retry-After`.

use std::time::Duration;

use rand::Rng;

use crate::config::model::{Backoff, OnErrorConfig};

/// A pipeline's retry policy, resolved from `on_error` with defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub backoff: Backoff,
    pub initial: Duration,
    pub max: Duration,
    pub dead_letter: bool,
}

impl Default for RetryPolicy {
    /// With no `on_error`: three attempts a second, then ten apart at most, then a dead letter.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            backoff: Backoff::Exponential,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            dead_letter: true,
        }
    }
}

impl RetryPolicy {
    /// `check` has validated the durations; anything unreadable falls back to the default.
    pub fn from_config(on_error: Option<&OnErrorConfig>) -> RetryPolicy {
        let mut policy = RetryPolicy::default();
        let Some(on_error) = on_error else {
            return policy;
        };
        policy.dead_letter = on_error.dead_letter;
        match &on_error.retry {
            None => policy.attempts = 1,
            Some(retry) => {
                policy.attempts = retry.attempts.max(1);
                policy.backoff = retry.backoff;
                let parse = |s: &Option<String>| {
                    s.as_deref().and_then(|s| humantime::parse_duration(s).ok())
                };
                if let Some(d) = parse(&retry.initial) {
                    policy.initial = d;
                }
                if let Some(d) = parse(&retry.max) {
                    policy.max = d;
                }
                policy.max = policy.max.max(policy.initial);
            }
        }
        policy
    }

    /// The wait before attempt `attempt + 1`, after `attempt` failures (1-based). Full jitter
    /// in the upper half: many events failing together do not come back together. A
    /// `Retry-After` from the server is a floor, and may exceed `max`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = match self.backoff {
            Backoff::Fixed => self.initial,
            Backoff::Exponential => {
                let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
                self.initial.saturating_mul(factor).min(self.max)
            }
        };
        let half = base / 2;
        let jitter = if half.is_zero() {
            Duration::ZERO
        } else {
            rand::rng().random_range(Duration::ZERO..=half)
        };
        let delay = half + jitter;
        match retry_after {
            Some(floor) if floor > delay => floor,
            _ => delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::RetryConfig;

    fn policy(attempts: u32, initial: &str, max: &str) -> RetryPolicy {
        RetryPolicy::from_config(Some(&OnErrorConfig {
            retry: Some(RetryConfig {
                attempts,
                backoff: Backoff::Exponential,
                initial: Some(initial.into()),
                max: Some(max.into()),
            }),
            dead_letter: true,
        }))
    }

    #[test]
    fn exponential_delays_double_stay_jittered_and_capped() {
        let p = policy(5, "1s", "5s");
        for _ in 0..100 {
            let d1 = p.delay(1, None);
            assert!(
                d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1),
                "{d1:?}"
            );
            let d2 = p.delay(2, None);
            assert!(
                d2 >= Duration::from_secs(1) && d2 <= Duration::from_secs(2),
                "{d2:?}"
            );
            let d9 = p.delay(9, None);
            assert!(
                d9 >= Duration::from_millis(2500) && d9 <= Duration::from_secs(5),
                "{d9:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = policy(5, "1s", "5s");
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert!(p.delay(3, Some(Duration::from_millis(1))) >= Duration::from_secs(2));
    }

    #[test]
    fn defaults_and_no_retry() {
        assert_eq!(RetryPolicy::from_config(None), RetryPolicy::default());
        let once = RetryPolicy::from_config(Some(&OnErrorConfig {
            retry: None,
            dead_letter: false,
        }));
        assert_eq!(once.attempts, 1);
        assert!(!once.dead_letter);
        // A huge attempt number does not overflow.
        assert!(policy(100, "1s", "1m").delay(u32::MAX, None) <= Duration::from_secs(60));
    }
}
