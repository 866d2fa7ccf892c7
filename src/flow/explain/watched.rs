//! A state store that notes what each step wrote, for the step's explanation.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::diff::{add, diff};
use super::{Diff, Op, StateWrite};
use crate::config::env::looks_secret;
use crate::state::{StateError, StateStore, UpdateFn};

/// A [`StateStore`] that passes everything to `base` and notes each key an update changed,
/// with its value before and after: how an explanation learns what a step did to the state.
pub(in crate::flow) struct Watched {
    base: Arc<dyn StateStore>,
    log: Mutex<Vec<Written>>,
}

/// A key, its value before an update and after (None: absent).
type Written = (String, Option<Value>, Option<Value>);

impl Watched {
    pub(in crate::flow) fn new(base: Arc<dyn StateStore>) -> Watched {
        Watched {
            base,
            log: Mutex::new(Vec::new()),
        }
    }

    /// The keys changed since the last call, each as a diff of its value.
    pub(in crate::flow) fn take(&self) -> Vec<StateWrite> {
        let log = std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()));
        log.into_iter()
            .map(|(key, before, after)| {
                let diff = match (&before, &after) {
                    (Some(b), Some(a)) => diff(&key, b, a),
                    _ => {
                        let mut d = Diff::default();
                        let (op, b, a) = match (before.as_ref(), after.as_ref()) {
                            (None, a) => (Op::Added, None, a),
                            (b, _) => (Op::Removed, b, None),
                        };
                        add(&mut d, op, &key, b, a, looks_secret(&key));
                        d
                    }
                };
                StateWrite { key, diff }
            })
            .collect()
    }
}

impl StateStore for Watched {
    fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        self.base.get(key)
    }

    fn update_distinct(&self, keys: &[String], f: UpdateFn<'_>) -> Result<Value, StateError> {
        // The closure may run more than once (a backend retrying): the last run is what was
        // written.
        let mut seen = None;
        let answer = self.base.update(keys, &mut |current| {
            let (new, answer) = f(current)?;
            seen = Some((current.to_vec(), new.clone()));
            Ok((new, answer))
        })?;
        if let Some((before, after)) = seen {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            for ((key, b), a) in keys.iter().zip(before).zip(after) {
                if b != a {
                    log.push((key.clone(), b, a));
                }
            }
        }
        Ok(answer)
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Value)>, StateError> {
        self.base.scan_prefix(prefix)
    }

    fn make_durable(&self) -> Result<(), StateError> {
        self.base.make_durable()
    }
}
