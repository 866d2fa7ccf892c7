//! JSONPath (RFC 9535): compiled once at load, evaluated many times on the hot path.
//!
//! Owns the one JSONPath type the engine uses ([`JsonPath`]), its parse errors with a byte
//! offset for the caret ([`JsonPathError`]), and the choice of how a path is evaluated.
//! Validation belongs to the `serde_json_path` crate, which passes the whole RFC 9535
//! compliance suite (`tests/jsonpath_cts.rs`); see `docs/jsonpath.md` for why that crate and
//! not `jsonpath-rust`. Every query that is not "simple" is then read again into our own tree
//! and evaluated by `query`, which counts the nodes it visits against a [`Budget`]
//! (the crate's evaluator has no limit: `$..*..*..*` over a 1.4 KB body took gigabytes).
//!
//! On top of the engine sits a fast path, chosen in [`JsonPath::parse`]: a query made only
//! of child segments with one name, one index or a wildcard (`$.billing_address.email`,
//! `$.products[0].sku`, `$['a b']`, `$.products[*].sku`) is walked directly over the
//! `serde_json::Value`, which is several times faster than the engine and allocates nothing
//! for singular queries. The fast path only ever sees queries the engine has accepted, so the
//! two cannot disagree on what is valid, and unit tests check they agree on results.
//!
//! Before the engine sees a query, its bracket and parenthesis nesting is bounded: the
//! engine's parser recurses on nesting (a stack overflow for thousands of levels) and its
//! time doubles with every filter nested in a filter.
//!
//! This module is pure: no IO, no logging, no panics reachable from input. Results borrow
//! from the queried document, so numbers keep every digit (serde_json's
//! `arbitrary_precision`). Filter comparisons of numbers are the engine's, made in `f64`:
//! integers beyond 2^53 that differ only in their last digits compare equal in a filter.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

mod budget;
mod query;

pub use self::budget::{Budget, Exceeded, Limits};
use self::query::{ParseProblem, Query};

/// Deepest nesting of `[` and `(` accepted, counted together (stack guard).
const MAX_NESTING: usize = 64;
/// Deepest nesting of `[` alone: `$[?@[?@[?…]]]`. The engine's parse time doubles per level.
const MAX_BRACKET_NESTING: usize = 8;

/// A compiled JSONPath query. Cheap to query, `Send + Sync`, cloneable.
#[derive(Clone, Debug)]
pub struct JsonPath {
    src: String,
    plan: Plan,
}

/// A JSONPath that is not valid RFC 9535, or that nests too deep. The message says what is
/// wrong at `offset`, not which path: callers name the path and where it was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct JsonPathError {
    pub message: String,
    /// Byte offset into the source where the problem is (0 if unknown).
    pub offset: usize,
}

/// One step of a singular query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A member name, unescaped: `$['a b']` gives `Name("a b")`.
    Name(String),
    /// An array index; negative counts from the end (`-1` is the last element).
    Index(i64),
}

#[derive(Clone, Debug)]
enum Plan {
    /// Names and indexes only: at most one node; `first` walks it without allocating.
    Singular(Vec<Segment>),
    /// Names, indexes and at least one wildcard, walked directly.
    Simple(Vec<Step>),
    /// Everything else: filters, slices, descendants, several selectors in one bracket.
    Tree(Box<Query>),
}

#[derive(Clone, Debug)]
enum Step {
    Child(Segment),
    Wildcard,
}

impl JsonPath {
    /// Parses and compiles `src`. All parsing happens here; queries never parse again.
    pub fn parse(src: &str) -> Result<JsonPath, JsonPathError> {
        check_nesting(src)?;
        serde_json_path::JsonPath::parse(&upper_hex_escapes(src)).map_err(|e| JsonPathError {
            message: e.message().to_owned(),
            offset: e.position().min(src.len()),
        })?;
        let plan = match parse_simple(src) {
            None => Plan::Tree(Box::new(Query::parse(src).map_err(|p| match p {
                ParseProblem::Regex(e) => JsonPathError {
                    message: e.to_string(),
                    offset: 0,
                },
                ParseProblem::Unknown(offset) => JsonPathError {
                    message: "a query the evaluator cannot read".into(),
                    offset: offset.min(src.len()),
                },
            })?)),
            Some(steps) => match as_segments(&steps) {
                Some(segs) => Plan::Singular(segs),
                None => Plan::Simple(steps),
            },
        };
        Ok(JsonPath {
            src: src.to_owned(),
            plan,
        })
    }

    /// The source text, as written.
    pub fn as_str(&self) -> &str {
        &self.src
    }

    /// Whether this is an RFC 9535 singular query: only child segments with one name or one
    /// index each. Such a query selects at most one node.
    pub fn is_singular(&self) -> bool {
        matches!(self.plan, Plan::Singular(_))
    }

    /// Every node the query selects, in the order RFC 9535 defines, with no budget: for
    /// documents bounded some other way. A pattern from the data that compiles to more than
    /// 10 MB (where the engine's `regex` stops too) makes the result empty.
    pub fn query<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        match &self.plan {
            Plan::Singular(segs) => walk(root, segs).into_iter().collect(),
            Plan::Simple(steps) => walk_simple(root, steps),
            Plan::Tree(q) => q.run(root, &mut Budget::unlimited()).unwrap_or_default(),
        }
    }

    /// The first node the query selects, with no budget (see [`JsonPath::query`]).
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        match &self.plan {
            Plan::Singular(segs) => walk(root, segs),
            Plan::Simple(steps) => walk_simple(root, steps).into_iter().next(),
            Plan::Tree(_) => self.query(root).into_iter().next(),
        }
    }

    /// [`JsonPath::query`] within `budget`. Names, indexes and wildcards alone select at
    /// most every node of the document once per step and are not counted; the other
    /// queries count every node they select or pass over (filter candidates, descendants,
    /// the nodes of queries inside filters) and fail once the budget is spent.
    pub fn query_within<'a>(
        &self,
        root: &'a Value,
        budget: &mut Budget,
    ) -> Result<Vec<&'a Value>, Exceeded> {
        match &self.plan {
            Plan::Singular(segs) => Ok(walk(root, segs).into_iter().collect()),
            Plan::Simple(steps) => Ok(walk_simple(root, steps)),
            Plan::Tree(q) => q.run(root, budget),
        }
    }

    /// For singular queries: the path as segments, so callers can write at or project by
    /// it (`$` gives an empty slice). `None` for any other query.
    pub fn segments(&self) -> Option<&[Segment]> {
        match &self.plan {
            Plan::Singular(segs) => Some(segs),
            Plan::Simple(_) | Plan::Tree(_) => None,
        }
    }

    /// For queries of names, indexes and wildcards alone (`$.items[*].sku`): each step, a
    /// wildcard as `None`, so callers can tell which fields the query reads. `None` for any
    /// other query (filters, slices, descendants, several selectors in one bracket).
    pub fn simple_steps(&self) -> Option<Vec<Option<&Segment>>> {
        match &self.plan {
            Plan::Singular(segs) => Some(segs.iter().map(Some).collect()),
            Plan::Simple(steps) => Some(
                steps
                    .iter()
                    .map(|s| match s {
                        Step::Child(seg) => Some(seg),
                        Step::Wildcard => None,
                    })
                    .collect(),
            ),
            Plan::Tree(_) => None,
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.src)
    }
}

/// The steps as segments, if none is a wildcard.
fn as_segments(steps: &[Step]) -> Option<Vec<Segment>> {
    steps
        .iter()
        .map(|s| match s {
            Step::Child(seg) => Some(seg.clone()),
            Step::Wildcard => None,
        })
        .collect()
}

fn child<'a>(v: &'a Value, seg: &Segment) -> Option<&'a Value> {
    match seg {
        Segment::Name(name) => v.as_object()?.get(name.as_str()),
        Segment::Index(i) => {
            let items = v.as_array()?;
            let at = if *i < 0 {
                items
                    .len()
                    .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
            } else {
                usize::try_from(*i).ok()?
            };
            items.get(at)
        }
    }
}

fn walk<'a>(mut v: &'a Value, segs: &[Segment]) -> Option<&'a Value> {
    for seg in segs {
        v = child(v, seg)?;
    }
    Some(v)
}

/// Applies each step to every node selected so far, in order: exactly RFC 9535's rule for a
/// sequence of segments, and iterative, so a long path cannot exhaust the stack.
fn walk_simple<'a>(root: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    // The names and indexes before the first wildcard select at most one node.
    let split = steps
        .iter()
        .position(|s| matches!(s, Step::Wildcard))
        .unwrap_or(steps.len());
    let (head, tail) = steps.split_at(split);
    let mut start = Some(root);
    for step in head {
        if let Step::Child(seg) = step {
            start = start.and_then(|v| child(v, seg));
        }
    }
    let mut nodes: Vec<&'a Value> = start.into_iter().collect();
    let mut next = Vec::new();
    for step in tail {
        if nodes.is_empty() {
            break;
        }
        next.clear();
        match step {
            Step::Child(seg) => next.extend(nodes.iter().filter_map(|v| child(v, seg))),
            Step::Wildcard => {
                for v in &nodes {
                    match v {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(members) => next.extend(members.values()),
                        _ => {}
                    }
                }
            }
        }
        std::mem::swap(&mut nodes, &mut next);
    }
    nodes
}

/// Rejects queries nested deeper than the engine handles safely, pointing at the opening
/// bracket that goes too deep, and string literals left open: the engine's parser panics
/// when the text ends inside a `\u` escape (`$["\u`). String literals are skipped.
fn check_nesting(src: &str) -> Result<(), JsonPathError> {
    let mut depth = 0usize;
    let mut brackets = 0usize;
    let mut quote: Option<u8> = None;
    let mut quote_at = 0;
    let mut escaped = false;
    for (offset, b) in src.bytes().enumerate() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == q {
                quote = None;
            }
            continue;
        }
        match b {
            b'\'' | b'"' => {
                quote = Some(b);
                quote_at = offset;
            }
            b'[' | b'(' => {
                depth += 1;
                if b == b'[' {
                    brackets += 1;
                }
                if brackets > MAX_BRACKET_NESTING {
                    return Err(JsonPathError {
                        message: format!("brackets nest more than {MAX_BRACKET_NESTING} deep"),
                        offset,
                    });
                }
                if depth > MAX_NESTING {
                    return Err(JsonPathError {
                        message: format!(
                            "brackets and parentheses nest more than {MAX_NESTING} deep"
                        ),
                        offset,
                    });
                }
            }
            b']' | b')' => {
                depth = depth.saturating_sub(1);
                if b == b']' {
                    brackets = brackets.saturating_sub(1);
                }
            }
            _ => {}
        }
    }
    if quote.is_some() {
        return Err(JsonPathError {
            message: "the string is not closed".into(),
            offset: quote_at,
        });
    }
    Ok(())
}

/// Writes the hex digits of `\uXXXX` escapes in string literals in upper case, which changes
/// no meaning (RFC 9535's ABNF is case-insensitive there) but is needed because the engine
/// refuses a lower-case high surrogate: `$['\ud83d\ude00']`. Same length, so error offsets
/// still point into `src`.
pub(crate) fn upper_hex_escapes(src: &str) -> Cow<'_, str> {
    if !src.contains("\\u") {
        return Cow::Borrowed(src);
    }
    let mut out = String::with_capacity(src.len());
    let mut quote = None;
    let mut escaped = false;
    let mut hex_left = 0;
    for mut c in src.chars() {
        if let Some(q) = quote {
            if hex_left > 0 {
                hex_left -= 1;
                c = c.to_ascii_uppercase();
            } else if escaped {
                escaped = false;
                if c == 'u' {
                    hex_left = 4;
                }
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
        } else if c == '\'' || c == '"' {
            quote = Some(c);
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Reads a query made only of child segments holding one name, one index or a wildcard
/// (`$`, `.name`, `.*`, `['name']`, `["name"]`, `[3]`, `[-1]`, `[*]`, with the blanks RFC
/// 9535 allows). `None` for anything else. Called only on queries the engine accepted, so it
/// needs to read valid queries right, not to reject invalid ones.
fn parse_simple(src: &str) -> Option<Vec<Step>> {
    let mut r = Reader {
        s: src.as_bytes(),
        src,
        i: 0,
    };
    if !r.eat(b'$') {
        return None;
    }
    let mut steps = Vec::new();
    loop {
        r.blanks();
        match r.peek() {
            None => return Some(steps),
            Some(b'.') => {
                r.i += 1;
                match r.peek()? {
                    b'*' => {
                        r.i += 1;
                        steps.push(Step::Wildcard);
                    }
                    b'.' => return None, // descendant segment
                    _ => steps.push(Step::Child(Segment::Name(r.shorthand_name()?))),
                }
            }
            Some(b'[') => {
                r.i += 1;
                r.blanks();
                let step = match r.peek()? {
                    b'*' => {
                        r.i += 1;
                        Step::Wildcard
                    }
                    q @ (b'\'' | b'"') => {
                        r.i += 1;
                        Step::Child(Segment::Name(r.string(q)?))
                    }
                    b'-' | b'0'..=b'9' => Step::Child(Segment::Index(r.int()?)),
                    _ => return None, // filter, slice without start
                };
                r.blanks();
                if !r.eat(b']') {
                    return None; // several selectors, or a slice
                }
                steps.push(step);
            }
            Some(_) => return None,
        }
    }
}

pub(super) struct Reader<'s> {
    pub(super) s: &'s [u8],
    pub(super) src: &'s str,
    pub(super) i: usize,
}

impl Reader<'_> {
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    pub(super) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// `member-name-shorthand`: ALPHA / "_" / non-ASCII, then those or DIGIT.
    pub(super) fn shorthand_name(&mut self) -> Option<String> {
        let rest = self.src.get(self.i..)?;
        let len = rest
            .char_indices()
            .find(|&(at, c)| {
                let ok = c.is_ascii_alphabetic() || c == '_' || !c.is_ascii();
                !(ok || (at > 0 && c.is_ascii_digit()))
            })
            .map_or(rest.len(), |(at, _)| at);
        if len == 0 {
            return None;
        }
        self.i += len;
        Some(rest[..len].to_owned())
    }

    /// An integer index; the engine has already checked its form and range.
    pub(super) fn int(&mut self) -> Option<i64> {
        let start = self.i;
        self.eat(b'-');
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.src.get(start..self.i)?.parse().ok()
    }

    /// The rest of a string literal opened by `quote`, unescaped.
    pub(super) fn string(&mut self, quote: u8) -> Option<String> {
        let mut out = String::new();
        let rest = self.src.get(self.i..)?;
        let mut chars = rest.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, e) = chars.next()?;
                    out.push(match e {
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        '/' | '\\' | '\'' | '"' => e,
                        'u' => {
                            let hi = hex4(&mut chars)?;
                            if (0xD800..0xDC00).contains(&hi) {
                                if chars.next()?.1 != '\\' || chars.next()?.1 != 'u' {
                                    return None;
                                }
                                let lo = hex4(&mut chars)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                            } else {
                                char::from_u32(hi)?
                            }
                        }
                        _ => return None,
                    });
                }
                c if c == char::from(quote) => {
                    self.i += at + 1;
                    return Some(out);
                }
                c => out.push(c),
            }
        }
        None
    }
}

fn hex4(chars: &mut std::str::CharIndices<'_>) -> Option<u32> {
    let mut n = 0;
    for _ in 0..4 {
        n = n * 16 + chars.next()?.1.to_digit(16)?;
    }
    Some(n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn p(src: &str) -> JsonPath {
        match JsonPath::parse(src) {
            Ok(p) => p,
            Err(e) => panic!("{src}: {e} at {}", e.offset),
        }
    }

    fn engine<'a>(src: &str, doc: &'a Value) -> Vec<&'a Value> {
        match serde_json_path::JsonPath::parse(&upper_hex_escapes(src)) {
            Ok(q) => q.query(doc).all(),
            Err(e) => panic!("{src}: {e}"),
        }
    }

    fn docs() -> Vec<Value> {
        let order = json!({
            "id": 100,
            "a b": {"c": 1},
            "billing_address": {"email": "jane@example.com", "first_name": "Jane"},
            "products": [
                {"sku": "A-1", "quantity": 2, "options": [{"value": "red"}, {"value": "L"}]},
                {"sku": "B-2", "quantity": 1, "options": []},
                {"quantity": 5, "options": {"x": {"value": "obj"}}},
            ],
            "é": {"ünï": "coded"},
            "quote'\"": true,
            "line\nbreak": "lb",
            "😀": "smile",
            "n": 12345678901234567890123u128,
        });
        vec![
            order,
            json!([[1, 2], [3], {"k": 4}, 5]),
            json!({"products": {"first": {"sku": "X"}, "second": {"sku": "Y"}}}),
            json!({"products": "not an array"}),
            json!(null),
            json!("text"),
        ]
    }

    const FAST: &[&str] = &[
        "$",
        "$.id",
        "$.billing_address.email",
        "$.products[0].sku",
        "$.products[-1].quantity",
        "$.products[-3].sku",
        "$.products[-4].sku",
        "$.products[7].sku",
        "$['a b'].c",
        "$[\"a b\"]['c']",
        "$ [ 'a b' ] .c",
        "$\t[\n'a b'\r]",
        "$.é.ünï",
        "$['\\u00e9']['\\u00fcn\\u00ef']",
        "$['quote\\'\"']",
        "$[\"quote'\\\"\"]",
        "$['line\\nbreak']",
        "$['\\ud83d\\ude00']",
        "$.😀",
        "$.n",
        "$[0][1]",
        "$[2].k",
        "$.products[*].sku",
        "$.products.*.sku",
        "$.products[*]",
        "$.products[ * ].options[*].value",
        "$.products[*].options.*.value",
        "$[*][*]",
        "$.*",
        "$[*].k",
        "$.billing_address.*",
        "$.missing[*].x",
    ];

    const SLOW: &[&str] = &[
        "$..sku",
        "$.products[?@.quantity > 1].sku",
        "$.products[0:2].sku",
        "$.products[0,1].sku",
        "$.products[:1]",
        "$['id','n']",
        "$..*",
        "$.products[?length(@.options) > 0]",
        "$.products[?match(@.sku, 'A-.*')].sku",
        "$.products[?search(@.sku, '1')]",
        "$.products[?search(@.sku, '[')]",
        "$..options[?@.value == 'red']",
        "$.products[?count(@.options[*]) > 1].sku",
        "$.products[?value(@..value) == 'obj']",
        "$.products[?!@.sku]",
        "$.products[?(@.quantity > 1 || @.sku == 'B-2') && @.quantity != 5]",
        "$.products[?!(@.quantity < 2)].quantity",
        "$.products[::-1].sku",
        "$.products[-2:]",
        "$.products[5:0:-2]",
        "$[?length(@) > 1]",
        "$.products[?@.quantity >= 2 && @.quantity <= 5]",
        "$..[?@.sku == $.products[0].sku].quantity",
        "$..[?@ == 12345678901234567890123]",
        "$.products[?@.options == @.options]",
        "$[?@.c == 1 || @ == true]",
        "$..*[?@ > 1.5e0]",
        "$ .products [ ?  @.quantity  ==  2 ] .sku",
        "$[?@[?@.sku]]",
        "$..[?length(value(@..value)) > 2]",
        "$.products[? count(@.options[*]) >= 1 && match( @.sku , \"[AB]-[0-9]\" )]",
        "$.products[?1 < @.quantity]['sku', 'quantity']",
        "$[?! @.sku && !(@ == 5)]",
        "$.products[?@.quantity == -1.5e-3 || @.quantity != null]",
        "$..options[0, -1, 5:, ::2]",
        "$.products[?@.options.x]..value",
    ];

    #[test]
    fn fast_path_agrees_with_the_engine() {
        for src in FAST {
            let path = p(src);
            assert!(
                !matches!(path.plan, Plan::Tree(_)),
                "{src} should take the fast path"
            );
            for doc in docs() {
                let want = engine(src, &doc);
                assert_eq!(path.query(&doc), want, "{src} on {doc}");
                assert_eq!(path.first(&doc), want.first().copied(), "{src} on {doc}");
            }
        }
        for src in SLOW {
            let path = p(src);
            assert!(matches!(path.plan, Plan::Tree(_)), "{src}");
            assert!(!path.is_singular(), "{src}");
            for doc in docs() {
                assert_eq!(path.query(&doc), engine(src, &doc), "{src} on {doc}");
            }
        }
    }

    #[test]
    fn singular_queries_expose_their_segments() {
        use Segment::{Index, Name};
        let cases: &[(&str, Option<Vec<Segment>>)] = &[
            ("$", Some(vec![])),
            (
                "$.billing_address.email",
                Some(vec![Name("billing_address".into()), Name("email".into())]),
            ),
            (
                "$.products[0].sku",
                Some(vec![Name("products".into()), Index(0), Name("sku".into())]),
            ),
            ("$['a b']", Some(vec![Name("a b".into())])),
            ("$[-2]", Some(vec![Index(-2)])),
            ("$['\\ud83d\\ude00\\t']", Some(vec![Name("😀\t".into())])),
            ("$['\\uD83D\\uDE00']", Some(vec![Name("😀".into())])),
            (
                "$[\"\\ud83d\\uDE00\\u263a\"]",
                Some(vec![Name("😀☺".into())]),
            ),
            ("$[\"it's\"]", Some(vec![Name("it's".into())])),
            ("$.a1_b", Some(vec![Name("a1_b".into())])),
            (
                "$[9007199254740991]",
                Some(vec![Index(9_007_199_254_740_991)]),
            ),
            ("$.products[*].sku", None),
            ("$..a", None),
            ("$[0:1]", None),
            ("$['a','b']", None),
            ("$[?@.a]", None),
        ];
        for (src, want) in cases {
            let path = p(src);
            assert_eq!(path.segments(), want.as_deref(), "{src}");
            assert_eq!(path.is_singular(), want.is_some(), "{src}");
            assert_eq!(path.as_str(), *src);
            assert_eq!(path.to_string(), *src);
        }
    }

    #[test]
    fn simple_queries_expose_their_steps_with_wildcards() {
        use Segment::{Index, Name};
        let products = Name("products".into());
        let sku = Name("sku".into());
        let cases: &[(&str, Option<Vec<Option<&Segment>>>)] = &[
            ("$", Some(vec![])),
            (
                "$.products[0].sku",
                Some(vec![Some(&products), Some(&Index(0)), Some(&sku)]),
            ),
            (
                "$.products[*].sku",
                Some(vec![Some(&products), None, Some(&sku)]),
            ),
            ("$.products.*", Some(vec![Some(&products), None])),
            ("$..sku", None),
            ("$.products[0:1]", None),
            ("$['products','sku']", None),
            ("$.products[?@.sku]", None),
        ];
        for (src, want) in cases {
            assert_eq!(p(src).simple_steps().as_ref(), want.as_ref(), "{src}");
        }
    }

    #[test]
    fn big_numbers_keep_every_digit() -> Result<(), serde_json::Error> {
        let doc: Value = serde_json::from_str(
            r#"{"id": 12345678901234567890123, "total": "225.0000", "price": 0.10000000000000000001,
                "items": [{"product_id": 98765432109876543210}]}"#,
        )?;
        let cases = [
            ("$.id", "12345678901234567890123"),
            ("$.price", "0.10000000000000000001"),
            ("$.items[0].product_id", "98765432109876543210"),
            ("$.items[*].product_id", "98765432109876543210"),
            ("$..product_id", "98765432109876543210"),
            (
                "$.items[?@.product_id > 1].product_id",
                "98765432109876543210",
            ),
            ("$.total", "\"225.0000\""),
        ];
        for (src, want) in cases {
            let got = p(src).query(&doc);
            assert_eq!(got.len(), 1, "{src}");
            assert_eq!(serde_json::to_string(got[0])?, want, "{src}");
        }
        Ok(())
    }

    #[test]
    fn invalid_queries_report_where() {
        let cases: &[(&str, usize)] = &[
            ("$.a[", 3),
            ("$.a b", 3),
            ("a.b", 0),
            ("$[01]", 3),
            ("$['\\ud800']", 3),
        ];
        for (src, offset) in cases {
            match JsonPath::parse(src) {
                Ok(_) => panic!("{src} should not parse"),
                Err(e) => {
                    assert!(!e.message.is_empty(), "{src}");
                    assert_eq!(e.offset, *offset, "{src}: {}", e.message);
                }
            }
        }
    }

    #[test]
    fn a_string_left_open_is_refused_before_the_engine_sees_it() {
        // The engine panics ("we do not use streaming parsers") when the text ends inside a
        // `\u` escape; found by fuzz/fuzz_targets/jsonpath.rs.
        for src in [
            "$[\"\\u",
            "$['\\u",
            "$[\"\\uD",
            "$['\\uD83D\\u",
            "$['\\uD83D\\uD",
            "$['a",
        ] {
            match JsonPath::parse(src) {
                Ok(_) => panic!("{src} should not parse"),
                Err(e) => assert_eq!(e.offset, 2, "{src}: {}", e.message),
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused_before_the_engine_sees_it() {
        let brackets = format!("${}{}", "[?@".repeat(9), "]".repeat(9));
        match JsonPath::parse(&brackets) {
            Ok(_) => panic!("nine nested filters should be refused"),
            Err(e) => assert_eq!(e.offset, 1 + 3 * 8, "{}", e.message),
        }
        let parens = format!("$[?{}@.a{}]", "(".repeat(100), ")".repeat(100));
        assert!(JsonPath::parse(&parens).is_err());
        // A string literal does not count.
        assert!(JsonPath::parse("$['[[[[[[[[[[((((((((']").is_ok());
        // At the limits it still parses.
        let ok = format!("$[?{}@.a{}]", "(".repeat(62), ")".repeat(62));
        assert!(JsonPath::parse(&ok).is_ok());
        let ok = format!("${}{}", "[?@".repeat(8), "]".repeat(8));
        assert!(JsonPath::parse(&ok).is_ok());
    }

    #[test]
    fn a_long_path_does_not_exhaust_the_stack() {
        let src = format!("${}[*]", ".a".repeat(100_000));
        let path = p(&src);
        assert!(path.query(&json!({"a": {"a": 1}})).is_empty());
    }

    /// 125 arrays nested, the innermost holding 560 ones: 1.4 KB of JSON.
    pub(crate) fn deep_list() -> Value {
        let mut doc = Value::Array(vec![json!(1); 560]);
        for _ in 0..124 {
            doc = Value::Array(vec![doc]);
        }
        doc
    }

    #[test]
    fn queries_beyond_names_indexes_and_wildcards_count_their_nodes() {
        // `$..*..*..*` selects each node once per pair of its ancestors: 4.6 million nodes,
        // 37 MB of node list, from 1.4 KB.
        let doc = deep_list();
        assert!(doc.to_string().len() < 1400);
        let limits = Limits::default();
        let path = p("$..*..*..*");
        assert_eq!(
            path.query_within(&doc, &mut Budget::new(limits.clone())),
            Err(Exceeded::Nodes(limits.nodes))
        );
        // `$..*..*` selects about 77,000 nodes, visiting about twice as many.
        let all = p("$..*..*").query(&doc).len();
        assert!(all > 70_000, "{all}");
        let mut budget = Budget::new(Limits {
            nodes: 200_000,
            ..limits.clone()
        });
        let two = p("$..*..*").query_within(&doc, &mut budget);
        assert_eq!(two.map(|n| n.len()), Ok(all));
        let mut budget = Budget::new(Limits {
            nodes: 100_000,
            ..limits
        });
        assert!(p("$..*..*").query_within(&doc, &mut budget).is_err());
        // Names, indexes and wildcards are not counted: they select each node at most once.
        let mut none = Budget::new(Limits {
            nodes: 0,
            ..Limits::default()
        });
        let got = p("$[0][0][*]").query_within(&doc, &mut none);
        assert_eq!(got.map(|n| n.len()), Ok(1));
    }

    #[test]
    fn a_literal_pattern_over_the_regex_limits_is_refused_at_load() {
        let err = JsonPath::parse(r"$[?match(@, '\\w{50}{50}')]").map(|_| ());
        assert!(
            err.as_ref()
                .is_err_and(|e| e.message.contains("compiles to more than")),
            "{err:?}"
        );
        assert!(JsonPath::parse(r"$[?match(@, '\\w{5}')]").is_ok());
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<JsonPath>();
        check::<JsonPathError>();
    }
}
