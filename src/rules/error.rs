//! Errors of the rules layer: [`RuleError`] at compile time, [`RunError`] at run time.
//!
//! Both carry a message without position and a 1-based line and column inside the source the
//! caller passed, so `crossdock check` can add the file name (for a `.rhai` file) or the
//! YAML value's own position (for a `when:` expression) and render the caret itself.

use rhai::{EvalAltResult, ParseError, Position};

use super::engine::{Limits, DEADLINE_TOKEN};

/// A script or expression that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    pub message: String,
    /// 1-based line inside the compiled source.
    pub line: Option<usize>,
    /// 1-based column inside the compiled source.
    pub col: Option<usize>,
}

impl RuleError {
    pub(crate) fn from_parse(err: &ParseError) -> RuleError {
        let pos = err.position();
        RuleError {
            message: err.err_type().to_string(),
            line: pos.line(),
            col: pos.position(),
        }
    }
}

/// A script or expression that failed while running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RunError {
    pub message: String,
    /// 1-based line inside the compiled source, where known.
    pub line: Option<usize>,
    /// 1-based column inside the compiled source, where known.
    pub col: Option<usize>,
}

impl RunError {
    /// An error with no position (input conversion, result conversion).
    pub(crate) fn plain(message: impl Into<String>) -> RunError {
        RunError {
            message: message.into(),
            line: None,
            col: None,
        }
    }

    /// The message with where it happened in `file` (`scripts/x.rhai:3:21: …`), so a failed
    /// event's error, in its trail and dead letter, leads to the line.
    pub fn located(&self, file: &str) -> String {
        match (self.line, self.col) {
            (Some(line), Some(col)) => format!("{file}:{line}:{col}: {}", self.message),
            (Some(line), None) => format!("{file}:{line}: {}", self.message),
            _ => format!("{file}: {}", self.message),
        }
    }

    pub(crate) fn from_eval(err: EvalAltResult, limits: &Limits) -> RunError {
        let (message, pos) = describe(err, limits);
        RunError {
            message,
            line: pos.line(),
            col: pos.position(),
        }
    }
}

/// A message in the script author's terms and the innermost known position.
fn describe(err: EvalAltResult, limits: &Limits) -> (String, Position) {
    match err {
        EvalAltResult::ErrorInFunctionCall(name, _, inner, pos) => {
            let (message, inner_pos) = describe(*inner, limits);
            // Functions live in the same source, so the innermost position is the useful one.
            let pos = if inner_pos.is_none() { pos } else { inner_pos };
            if name.starts_with("anon$") {
                (format!("{message} (in a closure)"), pos)
            } else {
                (format!("{message} (in function `{name}`)"), pos)
            }
        }
        EvalAltResult::ErrorTerminated(token, pos)
            if token
                .as_immutable_string_ref()
                .is_ok_and(|t| t.as_str() == DEADLINE_TOKEN) =>
        {
            (
                format!("script exceeded {} ms", limits.timeout.as_millis()),
                pos,
            )
        }
        EvalAltResult::ErrorTooManyOperations(pos) => (
            format!(
                "too many operations: script exceeded the limit of {}",
                limits.max_operations
            ),
            pos,
        ),
        EvalAltResult::ErrorStackOverflow(pos) => (
            format!(
                "too many nested function calls (limit {})",
                limits.max_call_levels
            ),
            pos,
        ),
        EvalAltResult::ErrorDataTooLarge(what, pos) => {
            let message = match what.as_str() {
                "Length of string" => format!(
                    "string data too large (limit {} bytes)",
                    limits.max_string_size
                ),
                "Size of array/BLOB" => {
                    format!("array too large (limit {} elements)", limits.max_array_size)
                }
                "Size of object map" => format!(
                    "object map too large (limit {} properties)",
                    limits.max_map_size
                ),
                other => format!("{other} too large"),
            };
            (message, pos)
        }
        // `throw "..."` and our own functions' errors: the text is the message.
        EvalAltResult::ErrorRuntime(value, pos) if !value.is_unit() => (value.to_string(), pos),
        mut other => {
            let pos = other.take_position();
            (other.to_string(), pos)
        }
    }
}
