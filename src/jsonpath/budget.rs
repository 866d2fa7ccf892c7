//! What one application of a mapping may spend: JSON nodes visited by its queries, bytes of
//! output it produces, wall-clock time, and regular expressions built from the data.
//!
//! Owns the limits ([`Limits`], defaults documented in docs/mappings.md and docs/jsonpath.md),
//! the running account of one application ([`Budget`]) and what running out is
//! ([`Exceeded`]). The defaults are far above what a real commerce payload needs (a 4 MB
//! order of thousands of lines maps with room to spare) and far below what would exhaust a
//! process: they exist so that one hostile body fails its event instead of the engine.

use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;

/// The limits of one mapping application. Every field applies to the whole application
/// (all fields, every `each` element), not to one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// JSON nodes the JSONPath queries that are not plain names, indexes and wildcards may
    /// select or pass over (descendants walked, filter candidates, nodes of sub-queries).
    pub nodes: u64,
    /// Bytes of output, about as much as the output's JSON text: every value copied into the
    /// output counts, so a value copied twice counts twice.
    pub output_bytes: u64,
    /// Wall-clock time, looked at while queries run and between fields.
    pub time: Duration,
    /// The longest pattern `match()`/`search()` accepts from the data.
    pub regex_pattern_bytes: usize,
    /// The largest compiled program (and lazy DFA cache) of one such pattern.
    pub regex_program_bytes: usize,
    /// How many patterns from the data may be compiled (a pattern seen again is reused).
    pub regexes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            nodes: 4_000_000,
            output_bytes: 16 << 20,
            time: Duration::from_secs(10),
            regex_pattern_bytes: 1024,
            regex_program_bytes: 1 << 20,
            regexes: 256,
        }
    }
}

/// A budget ran out. The message names the limit; the caller names the mapping and field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    #[error("over the node budget: queries visited more than {0} JSON nodes")]
    Nodes(u64),
    #[error("over the output budget: more than {0} bytes of output")]
    Output(u64),
    #[error("over the time budget: more than {0} ms")]
    Time(u128),
    #[error("over the regex budget: a pattern from the data is longer than {0} bytes")]
    RegexPattern(usize),
    #[error("over the regex budget: a pattern from the data compiles to more than {0} bytes")]
    RegexProgram(usize),
    #[error("over the regex budget: more than {0} patterns from the data compiled")]
    Regexes(u32),
}

/// Nodes between two looks at the clock: reading it costs about as much as visiting a few
/// dozen nodes, so looking every 1024 keeps it out of the profile and still within
/// milliseconds of the deadline.
const CLOCK_EVERY: u64 = 1024;

/// Compiled patterns from the data kept for reuse within one application: a filter over
/// 20,000 elements with the same `$.pattern` compiles it once.
const REGEX_CACHE: usize = 16;

/// The running account of one mapping application. Creating one reads the clock and
/// allocates nothing.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    nodes: u64,
    output: u64,
    started: Instant,
    next_clock: u64,
    regexes: u32,
    cache: Vec<(bool, String, Option<Regex>)>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(Limits::default())
    }
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            nodes: 0,
            output: 0,
            started: Instant::now(),
            next_clock: CLOCK_EVERY,
            regexes: 0,
            cache: Vec::new(),
        }
    }

    /// No limit at all, for callers that bound their input some other way.
    pub fn unlimited() -> Budget {
        Budget::new(Limits {
            nodes: u64::MAX,
            output_bytes: u64::MAX,
            time: Duration::MAX,
            regex_pattern_bytes: usize::MAX,
            regex_program_bytes: 10 << 20,
            regexes: u32::MAX,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts `n` nodes visited.
    #[inline]
    pub(crate) fn visit(&mut self, n: u64) -> Result<(), Exceeded> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.nodes {
            return Err(Exceeded::Nodes(self.limits.nodes));
        }
        if self.nodes >= self.next_clock {
            self.next_clock = self.nodes.saturating_add(CLOCK_EVERY);
            self.check_time()?;
        }
        Ok(())
    }

    pub(crate) fn check_time(&self) -> Result<(), Exceeded> {
        if self.started.elapsed() > self.limits.time {
            return Err(Exceeded::Time(self.limits.time.as_millis()));
        }
        Ok(())
    }

    /// Counts `v` as output about to be produced (copied), before it is: walking stops as
    /// soon as the budget is spent, so a huge value costs no more than the budget to refuse.
    pub(crate) fn output(&mut self, v: &Value) -> Result<(), Exceeded> {
        let limit = self.limits.output_bytes;
        let left = limit.saturating_sub(self.output);
        match size_within(v, left) {
            Some(n) => {
                self.output += n;
                Ok(())
            }
            None => {
                self.output = limit.saturating_add(1);
                Err(Exceeded::Output(limit))
            }
        }
    }

    /// Counts `n` bytes of output already produced (a rendered template, a script's value).
    pub(crate) fn output_bytes(&mut self, n: usize) -> Result<(), Exceeded> {
        self.output = self.output.saturating_add(n as u64);
        if self.output > self.limits.output_bytes {
            return Err(Exceeded::Output(self.limits.output_bytes));
        }
        Ok(())
    }

    /// A pattern from the data, compiled within the limits or taken from the cache; `None`
    /// when it is not a valid regular expression (which matches nothing, as RFC 9535 says).
    /// `whole` anchors it at both ends (`match()`), else it may match anywhere (`search()`).
    pub(crate) fn regex(&mut self, pattern: &str, whole: bool) -> Result<Option<&Regex>, Exceeded> {
        let found = self
            .cache
            .iter()
            .position(|(w, p, _)| *w == whole && p == pattern);
        let at = match found {
            Some(at) => at,
            None => {
                self.regexes = self.regexes.saturating_add(1);
                if self.regexes > self.limits.regexes {
                    return Err(Exceeded::Regexes(self.limits.regexes));
                }
                self.check_time()?;
                let re = compile_regex(pattern, whole, &self.limits)?;
                if self.cache.len() >= REGEX_CACHE {
                    self.cache.remove(0);
                }
                self.cache.push((whole, pattern.to_owned(), re));
                self.cache.len() - 1
            }
        };
        Ok(self.cache.get(at).and_then(|(_, _, re)| re.as_ref()))
    }
}

/// Compiles an I-Regexp (RFC 9485) the way the `serde_json_path` engine does, in CRLF mode
/// so `.` matches neither `\r` nor `\n`, but within `limits`. `Ok(None)` for a pattern that
/// does not compile for any reason but size.
pub(crate) fn compile_regex(
    pattern: &str,
    whole: bool,
    limits: &Limits,
) -> Result<Option<Regex>, Exceeded> {
    if pattern.len() > limits.regex_pattern_bytes {
        return Err(Exceeded::RegexPattern(limits.regex_pattern_bytes));
    }
    let src = if whole {
        format!("(?R)^({pattern})$")
    } else {
        format!("(?R)({pattern})")
    };
    match regex::RegexBuilder::new(&src)
        .size_limit(limits.regex_program_bytes)
        .dfa_size_limit(limits.regex_program_bytes)
        .build()
    {
        Ok(re) => Ok(Some(re)),
        Err(regex::Error::CompiledTooBig(_)) => {
            Err(Exceeded::RegexProgram(limits.regex_program_bytes))
        }
        Err(_) => Ok(None),
    }
}

/// Bytes a value takes as JSON text, roughly (numbers count 8, separators 1), or `None` once
/// it passes `left`.
fn size_within(v: &Value, left: u64) -> Option<u64> {
    let mut used = 0u64;
    add_size(v, left, &mut used)?;
    Some(used)
}

fn add_size(v: &Value, left: u64, used: &mut u64) -> Option<()> {
    *used += match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => s.len() as u64 + 2,
        Value::Array(items) => {
            *used += 2;
            for item in items {
                add_size(item, left, used)?;
                *used += 1;
            }
            0
        }
        Value::Object(members) => {
            *used += 2;
            for (k, item) in members {
                *used += k.len() as u64 + 4;
                add_size(item, left, used)?;
            }
            0
        }
    };
    (*used <= left).then_some(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn nodes_run_out_at_the_limit() {
        let mut b = Budget::new(Limits {
            nodes: 10,
            ..limits()
        });
        assert!(b.visit(10).is_ok());
        assert_eq!(b.visit(1), Err(Exceeded::Nodes(10)));
    }

    #[test]
    fn output_counts_every_copy_and_stops_early() {
        let v = json!({"sku": "A-1", "lines": [1, 2, 3]});
        let one = size_within(&v, u64::MAX).unwrap();
        assert!(
            one >= serde_json::to_string(&v).unwrap().len() as u64 / 2,
            "{one}"
        );
        let mut b = Budget::new(Limits {
            output_bytes: one * 2,
            ..limits()
        });
        assert!(b.output(&v).is_ok());
        assert!(b.output(&v).is_ok());
        assert_eq!(b.output(&v), Err(Exceeded::Output(one * 2)));
        // A value far over the budget is refused after walking about the budget.
        let huge = Value::Array(vec![json!("x"); 100_000]);
        assert_eq!(size_within(&huge, 100), None);
    }

    #[test]
    fn time_runs_out() {
        let mut b = Budget::new(Limits {
            time: Duration::ZERO,
            ..limits()
        });
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(b.visit(CLOCK_EVERY), Err(Exceeded::Time(0)));
    }

    #[test]
    fn regexes_are_bounded_and_reused() {
        let mut b = Budget::new(Limits {
            regexes: 2,
            ..limits()
        });
        for _ in 0..1000 {
            assert!(b.regex("a.c", true).unwrap().unwrap().is_match("abc"));
            assert!(b.regex("b", false).unwrap().unwrap().is_match("abc"));
        }
        assert_eq!(b.regex("c", false).err(), Some(Exceeded::Regexes(2)));

        let mut b = Budget::default();
        // Not a regular expression: matches nothing, and is not an error.
        assert!(b.regex("(", true).unwrap().is_none());
        let long = "a".repeat(2000);
        assert_eq!(
            b.regex(&long, true).err(),
            Some(Exceeded::RegexPattern(1024))
        );
        // Short to write, huge to compile: a counted repetition of a Unicode class.
        assert_eq!(
            b.regex(r"\w{100}{100}", true).err(),
            Some(Exceeded::RegexProgram(1 << 20))
        );
    }
}
