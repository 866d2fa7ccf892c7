//! Which `if`s a script evaluated, what their conditions read and what they came to: the part
//! of a script step's explanation that says why it went one way (`if amount >= 100.0` with
//! `amount = 612.5` → true). Owns finding the `if`s, the second, recording compile of the
//! script, and the recorder its runs write to; it must not know how an explanation is shown or
//! stored (that is `flow::explain`), and it records nothing unless a caller asks
//! ([`Script::run_explained`](super::Script::run_explained)).
//!
//! How: at load, the `if`s (statements and `if` expressions, `else if` included, in functions
//! too) are found in the AST the engine made, and the script is compiled a second time with
//! each condition `c` written as `__crossdock_if(ID, [v.__crossdock_seen(ID, K), …], c)`.
//! `__crossdock_seen` is a method call, so it gets the variable by reference and copies only
//! the clipped value it records; `__crossdock_if` records the outcome and returns `c`
//! unchanged, so the `if` goes the way it would have. The plain compile runs when nothing is
//! explained; the recording one when something is. Positions: the recording source has the
//! calls inserted on the lines of the conditions, so an error's column is mapped back
//! ([`Recording::original_col`]) and reads as in the file.
//!
//! Why not Rhai's `debugging` feature (`Engine::register_debugger`): its callback is called
//! per AST node before the node runs and is never told the value a condition came to, so the
//! branch taken would have to be guessed from the next node visited; and the feature adds a
//! check of the debugger at every node of every evaluation, scripts and pipeline conditions
//! alike, explained or not. Wrapping the conditions costs nothing when not explaining and, when
//! explaining, one native call per `if` evaluated and one per value it reads (which also count
//! as Rhai operations against `max_operations`: a few more per `if`).
//!
//! Bounds: at most [`MAX_DECISIONS`] decisions per run (the rest are counted; past the bound a
//! `__crossdock_seen` copies nothing), at most [`MAX_READS`] values per condition, each clipped
//! to about [`SEEN_CHARS`] characters while it is copied (a 100 000-element array read by a
//! condition in a loop is not converted whole each time).

use std::cell::RefCell;
use std::sync::Arc;

use rhai::{ASTNode, Array, Dynamic, Engine, Expr, Scope, Stmt, AST, INT};
use serde_json::Value;

use super::convert::decimal_to_json;
use super::reads::{chain_steps, index_steps};
use super::RuleError;
use crate::projection::PathStep;

/// The recording calls' names; scripts may not name them.
const IF_FN: &str = "__crossdock_if";
const SEEN_FN: &str = "__crossdock_seen";
const RESERVED: &str = "__crossdock_";

/// The most decisions one run records; the rest are counted in [`Decided::omitted`].
pub const MAX_DECISIONS: usize = 32;
/// The most values recorded for one condition (the first ones it names).
pub const MAX_READS: usize = 8;
/// About how many characters of a value a decision keeps.
pub const SEEN_CHARS: usize = 200;

/// One `if` of a script as written.
#[derive(Debug)]
struct Site {
    /// The `if` keyword's position (1-based).
    line: usize,
    col: usize,
    /// The condition's text, whitespace runs made one space.
    when: String,
    /// What it reads: a label (`record.data.email`, `amount`) and the names after the variable.
    reads: Vec<(String, Vec<String>)>,
}

/// An `if` a run evaluated: where, its condition, the values it read just before, what it
/// came to (`Err`: the condition was not a bool; the `if` failed on it).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub line: usize,
    pub col: usize,
    pub when: String,
    /// Each value with its label; `None`: the field is not there.
    pub reads: Vec<(String, Option<Value>)>,
    pub result: Result<bool, String>,
}

/// The decisions of one run, in the order they were made, and how many more were not kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decided {
    pub decisions: Vec<Decision>,
    pub omitted: usize,
}

/// The recording compile of a script.
#[derive(Debug)]
pub(super) struct Recording {
    pub(super) ast: Arc<AST>,
    sites: Arc<[Site]>,
    /// Each inserted text: its line, the column (1-based, in the file) it was put before, and
    /// its length in characters; in source order.
    inserted: Vec<(usize, usize, usize)>,
}

/// A value read just before a condition, as the recorder keeps it.
#[derive(Debug, Clone)]
struct Seen(Option<Value>);

/// A decision as recorded: its site, the values read, the outcome.
type Made = (usize, Vec<Option<Value>>, Result<bool, String>);

struct Recorder {
    sites: Arc<[Site]>,
    made: Vec<Made>,
    omitted: usize,
}

thread_local! {
    /// The recorder of the explained run on this thread, if one is running.
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Records the decisions made on this thread until [`Recorder::finish`] (or its drop, which
/// puts back the one before).
pub(super) struct Recorded {
    previous: Option<Recorder>,
    finished: bool,
}

impl Recording {
    /// Starts recording this script's decisions on the current thread.
    pub(super) fn start(&self) -> Recorded {
        let recorder = Recorder {
            sites: self.sites.clone(),
            made: Vec::new(),
            omitted: 0,
        };
        Recorded {
            previous: RECORDER.with(|r| r.replace(Some(recorder))),
            finished: false,
        }
    }

    /// The column in the file of a column of the recording source on `line`.
    pub(super) fn original_col(&self, line: usize, col: usize) -> usize {
        let mut shift = 0;
        for &(_, at, len) in self.inserted.iter().filter(|i| i.0 == line) {
            // Where the inserted text starts in the recording source.
            let start = at + shift;
            if col < start {
                break;
            }
            if col < start + len {
                return at;
            }
            shift += len;
        }
        col.saturating_sub(shift).max(1)
    }
}

impl Recorded {
    /// What was recorded, and the recorder before put back.
    pub(super) fn finish(mut self) -> Decided {
        self.finished = true;
        let previous = self.previous.take();
        let Some(recorder) = RECORDER.with(|r| r.replace(previous)) else {
            return Decided::default();
        };
        let decisions = recorder
            .made
            .into_iter()
            .filter_map(|(id, values, result)| {
                let site = recorder.sites.get(id)?;
                Some(Decision {
                    line: site.line,
                    col: site.col,
                    when: site.when.clone(),
                    reads: site
                        .reads
                        .iter()
                        .map(|(label, _)| label.clone())
                        .zip(values)
                        .collect(),
                    result,
                })
            })
            .collect();
        Decided {
            decisions,
            omitted: recorder.omitted,
        }
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if !self.finished {
            let previous = self.previous.take();
            RECORDER.with(|r| r.replace(previous));
        }
    }
}

/// Registers the recording functions (they do nothing when no run is recorded).
pub(super) fn register(engine: &mut Engine) {
    engine.register_fn(IF_FN, record_if);
    engine.register_fn(SEEN_FN, record_seen);
}

fn record_if(id: INT, seen: Array, condition: Dynamic) -> Dynamic {
    RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        let Some(recorder) = r.as_mut() else { return };
        let Ok(id) = usize::try_from(id) else { return };
        if recorder.made.len() >= MAX_DECISIONS {
            recorder.omitted += 1;
            return;
        }
        let values = seen
            .into_iter()
            .map(|v| v.try_cast::<Seen>().and_then(|s| s.0))
            .collect();
        let result = condition
            .as_bool()
            .map_err(|_| format!("the condition is {}, not a bool", condition.type_name()));
        recorder.made.push((id, values, result));
    });
    condition
}

fn record_seen(value: &mut Dynamic, id: INT, k: INT) -> Dynamic {
    RECORDER.with(|r| {
        let r = r.borrow();
        let Some(recorder) = r.as_ref() else {
            return Dynamic::UNIT;
        };
        if recorder.made.len() >= MAX_DECISIONS {
            return Dynamic::UNIT;
        }
        let path = usize::try_from(id)
            .ok()
            .and_then(|id| recorder.sites.get(id))
            .zip(usize::try_from(k).ok())
            .and_then(|(site, k)| site.reads.get(k))
            .map(|(_, path)| path.as_slice())
            .unwrap_or_default();
        Dynamic::from(Seen(seen_at(value, path)))
    })
}

/// The value under `names` in `value` (through maps only), clipped: read through references,
/// so only what is kept is copied.
fn seen_at(value: &Dynamic, names: &[String]) -> Option<Value> {
    let Some((first, rest)) = names.split_first() else {
        return Some(clipped(value, &mut { SEEN_CHARS }));
    };
    if value.is_shared() {
        return seen_at(&value.flatten_clone(), names);
    }
    let map = value.as_map_ref().ok()?;
    seen_at(map.get(first.as_str())?, rest)
}

/// `d` as JSON, cut to about `budget` characters while it is read: long strings end in
/// `…(N more chars)`, containers stop at `…N more`.
fn clipped(d: &Dynamic, budget: &mut usize) -> Value {
    if d.is_shared() {
        return clipped(&d.flatten_clone(), budget);
    }
    let charge = |budget: &mut usize, n: usize| *budget = budget.saturating_sub(n);
    if d.is_unit() {
        charge(budget, 4);
        return Value::Null;
    }
    if let Ok(b) = d.as_bool() {
        charge(budget, 5);
        return Value::Bool(b);
    }
    if let Ok(i) = d.as_int() {
        charge(budget, 8);
        return Value::from(i);
    }
    if let Ok(x) = d.as_decimal() {
        charge(budget, 8);
        return decimal_to_json(x);
    }
    if let Ok(s) = d.as_immutable_string_ref() {
        return clipped_str(s.as_str(), budget);
    }
    if let Ok(c) = d.as_char() {
        charge(budget, 1);
        return Value::String(c.to_string());
    }
    if let Ok(items) = d.as_array_ref() {
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if *budget == 0 {
                out.push(Value::String(format!("…{} more items", items.len() - i)));
                break;
            }
            charge(budget, 1);
            out.push(clipped(item, budget));
        }
        return Value::Array(out);
    }
    if let Ok(map) = d.as_map_ref() {
        let mut out = serde_json::Map::new();
        for (i, (k, v)) in map.iter().enumerate() {
            if *budget == 0 {
                out.insert("…".into(), Value::String(format!("{} more", map.len() - i)));
                break;
            }
            charge(budget, k.len() + 3);
            out.insert(k.to_string(), clipped(v, budget));
        }
        return Value::Object(out);
    }
    if let Ok(blob) = d.as_blob_ref() {
        return Value::String(format!("blob of {} bytes", blob.len()));
    }
    Value::String(format!("({})", d.type_name()))
}

fn clipped_str(s: &str, budget: &mut usize) -> Value {
    // A short text is kept whole even past the budget: cutting it would say less.
    let keep = (*budget).max(16);
    match s.char_indices().nth(keep) {
        None => {
            *budget = budget.saturating_sub(s.chars().count());
            Value::String(s.to_string())
        }
        Some((cut, _)) => {
            *budget = 0;
            let more = s[cut..].chars().count();
            Value::String(format!("{}…({more} more chars)", &s[..cut]))
        }
    }
}

/// Refuses a script that names the recording functions itself: its decisions would not be
/// the ones it made.
pub(super) fn refuse_reserved(ast: &AST) -> Result<(), RuleError> {
    let mut found = None;
    ast.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(f, pos) | Expr::MethodCall(f, pos))) => Some((f, *pos)),
            Some(ASTNode::Stmt(Stmt::FnCall(f, pos))) => Some((f, *pos)),
            _ => None,
        };
        if let Some((f, pos)) = call.filter(|(f, _)| f.name.starts_with(RESERVED)) {
            found = Some(RuleError {
                message: format!("`{}` is reserved for crossdock's own use", f.name),
                line: pos.line(),
                col: pos.position(),
            });
            return false;
        }
        true
    });
    found.map_or(Ok(()), Err)
}

/// The recording compile of `src` (compiled as `plain`), or `None` when it has no `if` or the
/// recording source does not compile (a script at the expression-depth limit): it then runs
/// explained without decisions, which a warning says once.
pub(super) fn recording(
    engine: &Engine,
    scope: &Scope,
    plain: &AST,
    name: &str,
    src: &str,
) -> Option<Recording> {
    let lines = LineStarts::of(src);
    let mut sites = Vec::new();
    // (byte offset, text, closing): the calls around each condition.
    let mut edits: Vec<(usize, bool, String)> = Vec::new();
    plain.walk(&mut |path: &[ASTNode]| {
        let Some(ASTNode::Stmt(Stmt::If(flow, pos))) = path.last() else {
            return true;
        };
        let (Some(start), Some(body)) = (
            lines.offset(src, *pos),
            lines.offset(src, flow.body.position()),
        ) else {
            return true;
        };
        if !src[start..].starts_with("if") || !src[body..].starts_with('{') || body < start + 2 {
            return true;
        }
        let region = &src[start + 2..body];
        let text = region.trim();
        if text.is_empty() {
            return true;
        }
        let from = start + 2 + (region.len() - region.trim_start().len());
        let to = from + text.len();
        let id = sites.len();
        let reads = reads_of(&flow.expr);
        let seen: Vec<String> = reads
            .iter()
            .enumerate()
            .map(|(k, (root, _, _))| format!("{root}.{SEEN_FN}({id}, {k})"))
            .collect();
        edits.push((
            from,
            false,
            format!("{IF_FN}({id}, [{}], ", seen.join(", ")),
        ));
        edits.push((to, true, ")".to_string()));
        sites.push(Site {
            line: pos.line().unwrap_or(0),
            col: pos.position().unwrap_or(0),
            when: text.split_whitespace().collect::<Vec<_>>().join(" "),
            reads: reads
                .into_iter()
                .map(|(_, label, path)| (label, path))
                .collect(),
        });
        true
    });
    if sites.is_empty() {
        return None;
    }
    // At one offset, a closing `)` goes before an opening call.
    edits.sort_by_key(|(at, closing, _)| (*at, !*closing));
    let mut out = String::with_capacity(src.len() + edits.iter().map(|e| e.2.len()).sum::<usize>());
    let mut inserted = Vec::with_capacity(edits.len());
    let mut done = 0;
    for (at, _, text) in &edits {
        out.push_str(&src[done..*at]);
        out.push_str(text);
        done = *at;
        let (line, col) = lines.line_col(src, *at);
        inserted.push((line, col, text.chars().count()));
    }
    out.push_str(&src[done..]);
    match engine.compile_with_scope(scope, &out) {
        Ok(mut ast) => {
            ast.set_source(name);
            Some(Recording {
                ast: Arc::new(ast),
                sites: sites.into(),
                inserted,
            })
        }
        Err(e) => {
            tracing::warn!(
                script = name,
                error = %e,
                "the script's decisions cannot be recorded: its explanation will not show them"
            );
            None
        }
    }
}

/// What a condition reads: each variable it names (not inside a closure) with the names that
/// follow it (`record.data.email`), as the variable, the label and the names; at most
/// [`MAX_READS`], each once.
fn reads_of(condition: &Expr) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
    condition.walk(&mut Vec::new(), &mut |path: &[ASTNode]| {
        let Some(ASTNode::Expr(var @ Expr::Variable(v, ..))) = path.last() else {
            return true;
        };
        if !v.2.is_empty() || out.len() >= MAX_READS {
            return true;
        }
        let mut steps = Vec::new();
        if let Some(ASTNode::Expr(chain @ (Expr::Dot(x, ..) | Expr::Index(x, ..)))) =
            path.len().checked_sub(2).and_then(|i| path.get(i))
        {
            if std::ptr::eq(&x.lhs, *var) {
                if matches!(chain, Expr::Index(..)) {
                    index_steps(&x.rhs, &mut steps);
                } else {
                    chain_steps(&x.rhs, &mut steps);
                }
            }
        }
        let names: Vec<String> = steps
            .into_iter()
            .map_while(|s| match s {
                PathStep::Name(n) => Some(n),
                PathStep::Elements => None,
            })
            .collect();
        let root = v.1.to_string();
        let mut label = root.clone();
        for n in &names {
            push_name(&mut label, n);
        }
        if !out.iter().any(|(_, l, _)| *l == label) {
            out.push((root, label, names));
        }
        true
    });
    out
}

/// Where each line of a source starts, to turn Rhai's positions (line, and column in
/// characters, both 1-based) into byte offsets and back.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn of(src: &str) -> LineStarts {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineStarts(starts)
    }

    fn offset(&self, src: &str, pos: rhai::Position) -> Option<usize> {
        let start = *self.0.get(pos.line()?.checked_sub(1)?)?;
        let col = pos.position()?.checked_sub(1)?;
        let line = &src[start..];
        line.char_indices().nth(col).map(|(i, _)| start + i)
    }

    fn line_col(&self, src: &str, offset: usize) -> (usize, usize) {
        let line = self.0.partition_point(|&s| s <= offset).max(1);
        let start = self.0[line - 1];
        (line, src[start..offset].chars().count() + 1)
    }
}

/// `.name`, or `["name"]` for a name that is not an identifier: how a read or a changed field
/// is named in an explanation, here and in `flow::explain`.
pub fn push_name(out: &mut String, name: &str) {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        out.push('.');
        out.push_str(name);
    } else {
        out.push('[');
        out.push_str(&Value::from(name).to_string());
        out.push(']');
    }
}
