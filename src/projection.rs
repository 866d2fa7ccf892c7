//! Reading only what is read.
//!
//! Most flows start with a trigger and a `map`, which together read a handful of fields of a
//! body that may be kilobytes long; most scripts touch a few fields of the record. At compile
//! time we work out which fields (a [`Need`]): the flow parses a body skipping everything else,
//! and the rules module gives a script only those fields of the record and writes back only
//! those. Anything we cannot analyse — a filter in a JSONPath, `record` passed whole to a
//! function, `record` indexed by an expression, a use of `event.body` — makes the need `All`,
//! so the result is always the same as with the whole document for everything code can observe.
//!
//! Owns the analysis (JSONPath and Rhai source) and projecting JSON by it; knows nothing of
//! flows or Rhai values.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Number, Value};

/// What a flow needs of a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    All,
    /// Only whether the key exists (`"id" in record`): the value is not read.
    Present,
    /// Of an object, only these fields; of an array, these fields of every element; any
    /// other value whole.
    Fields(BTreeMap<String, Need>),
}

impl Default for Need {
    fn default() -> Self {
        Need::Fields(BTreeMap::new())
    }
}

/// One step of a simple path: a field name, or "every element / any index".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Name(String),
    Elements,
}

impl Need {
    pub fn is_all(&self) -> bool {
        matches!(self, Need::All)
    }

    /// Adds a path: everything below its end is needed.
    pub fn add_path(&mut self, steps: &[PathStep]) {
        if *self == Need::Present {
            *self = Need::default();
        }
        let Need::Fields(fields) = self else { return };
        match steps.split_first() {
            None => *self = Need::All,
            // Arrays are projected element-wise by the same need, so an index or wildcard
            // adds nothing at this level.
            Some((PathStep::Elements, rest)) => self.add_path(rest),
            Some((PathStep::Name(name), rest)) => {
                fields.entry(name.clone()).or_default().add_path(rest)
            }
        }
    }

    /// Adds a test for the presence of the key at the end of `steps`.
    pub fn add_presence(&mut self, steps: &[PathStep]) {
        let Some((last, parents)) = steps.split_last() else {
            return;
        };
        let mut at = self;
        for step in parents {
            if *at == Need::Present {
                *at = Need::default();
            }
            match (at, step) {
                (Need::Fields(fields), PathStep::Name(name)) => {
                    at = fields.entry(name.clone()).or_default()
                }
                (Need::Fields(_), PathStep::Elements) => return,
                _ => return,
            }
        }
        match (at, last) {
            (Need::Fields(fields), PathStep::Name(name)) => {
                fields.entry(name.clone()).or_insert(Need::Present);
            }
            (at @ Need::Present, _) => *at = Need::default(),
            _ => {}
        }
    }

    /// Adds what a JSONPath reads; a path too complex to analyse needs everything.
    pub fn add_jsonpath(&mut self, src: &str) {
        match simple_path(src) {
            Some(steps) => self.add_path(&steps),
            None => *self = Need::All,
        }
    }

    /// Adds what a Rhai expression or script reads of `record`.
    pub fn add_rhai(&mut self, src: &str) {
        match record_reads(src) {
            Some(reads) => {
                for r in reads {
                    match r {
                        Read::Path(p) => self.add_path(&p),
                        Read::Presence(p) => self.add_presence(&p),
                    }
                }
            }
            None => *self = Need::All,
        }
    }

    /// What Rhai source reads of `record`.
    pub fn of_rhai(src: &str) -> Need {
        let mut need = Need::default();
        need.add_rhai(src);
        need
    }

    /// A copy of `value` with only what is needed (`Present` keys become null).
    pub fn project(&self, value: &Value) -> Value {
        match (self, value) {
            (Need::All, v) => v.clone(),
            (Need::Present, _) => Value::Null,
            (Need::Fields(fields), Value::Object(m)) => Value::Object(
                fields
                    .iter()
                    .filter_map(|(k, need)| Some((k.clone(), need.project(m.get(k)?))))
                    .collect(),
            ),
            (Need::Fields(_), Value::Array(items)) => {
                Value::Array(items.iter().map(|v| self.project(v)).collect())
            }
            (Need::Fields(_), v) => v.clone(),
        }
    }

    /// Writes into `target` what code given `self.project(target)` made of it: every needed
    /// part is replaced by (or, when gone, removed for) its counterpart in `from`, and the rest
    /// of `target` is left as it was.
    pub fn write_back(&self, target: &mut Value, from: Value) {
        match (self, target, from) {
            (Need::Present, _, _) => {}
            (Need::Fields(fields), Value::Object(t), Value::Object(mut f)) => {
                for (k, need) in fields {
                    match f.remove(k) {
                        Some(v) => match t.get_mut(k) {
                            Some(slot) => need.write_back(slot, v),
                            None => {
                                t.insert(k.clone(), v);
                            }
                        },
                        None if *need != Need::Present => {
                            t.remove(k);
                        }
                        None => {}
                    }
                }
                // Keys the code added where it could only have added them by name.
                for (k, v) in f {
                    t.insert(k, v);
                }
            }
            (Need::Fields(_), Value::Array(t), Value::Array(f)) if t.len() == f.len() => {
                for (slot, v) in t.iter_mut().zip(f) {
                    self.write_back(slot, v);
                }
            }
            (_, target, from) => *target = from,
        }
    }
}

/// A [`Need`] made ready for parsing bodies, once per flow: each level's field names sit in a
/// hash map, so the many keys of a body that a flow skips are turned away with a hash and at
/// most one comparison, where a tree costs a string comparison per level.
///
/// A body can be parsed into the value the last one was parsed into
/// ([`BodyParser::parse_into`]): bodies of one source have the same shape, so its strings,
/// arrays and objects are overwritten in place instead of being freed and allocated again,
/// which was a third of a parse.
#[derive(Debug, Clone)]
pub struct BodyParser {
    need: Need,
    root: Node,
    /// Whether what is skipped is checked as [`check`] checks a whole body.
    check: bool,
}

/// A level's field names, each with its place among them (to tell which were seen).
type FieldNodes = HashMap<Box<str>, (usize, Node), rustc_hash::FxBuildHasher>;

#[derive(Debug, Clone)]
enum Node {
    All,
    Present,
    Fields(FieldNodes),
}

impl Node {
    fn of(need: &Need) -> Node {
        match need {
            Need::All => Node::All,
            Need::Present => Node::Present,
            Need::Fields(fields) => Node::Fields(
                fields
                    .iter()
                    .enumerate()
                    .map(|(i, (k, n))| (k.as_str().into(), (i, Node::of(n))))
                    .collect(),
            ),
        }
    }
}

impl BodyParser {
    pub fn new(need: Need) -> BodyParser {
        BodyParser {
            root: Node::of(&need),
            need,
            check: false,
        }
    }

    /// A parser that keeps what `need` says and refuses whatever [`check`] refuses, also in
    /// what it skips: for a caller that must know no flow will fail to parse the body,
    /// whatever it reads of it, in the same pass that reads a field.
    pub fn checking(need: Need) -> BodyParser {
        BodyParser {
            check: true,
            ..BodyParser::new(need)
        }
    }

    pub fn is_all(&self) -> bool {
        self.need.is_all()
    }

    /// Parses `bytes`, keeping only what is needed.
    pub fn parse(&self, bytes: &[u8]) -> serde_json::Result<Value> {
        let mut value = Value::Null;
        self.parse_into(bytes, &mut value)?;
        Ok(value)
    }

    /// [`BodyParser::parse`] into `target`, reusing what it holds: whatever it held, it then
    /// holds exactly what `parse` would return. After an error it holds a part of the body.
    pub fn parse_into(&self, bytes: &[u8], target: &mut Value) -> serde_json::Result<()> {
        // Checked once for the whole body, the strings kept need no check of their own: that
        // was a tenth of a parse.
        let mut de = serde_json::Deserializer::from_str(utf8(bytes)?);
        ParseInto {
            node: &self.root,
            target,
            check: self.check,
        }
        .deserialize(&mut de)?;
        de.end()
    }
}

/// `bytes` as text, or the error a body that is not UTF-8 gets (RFC 8259: JSON is UTF-8,
/// which serde_json does not check in the strings it skips).
pub fn utf8(bytes: &[u8]) -> serde_json::Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| {
        <serde_json::Error as serde::de::Error>::custom(format!(
            "invalid UTF-8 at byte {}",
            e.valid_up_to()
        ))
    })
}

/// Parses a value into `target` as `node` says.
struct ParseInto<'t, 'n> {
    node: &'n Node,
    target: &'t mut Value,
    check: bool,
}

impl<'de> DeserializeSeed<'de> for ParseInto<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.node {
            Node::All => *self.target = Value::deserialize(d)?,
            Node::Present => {
                skip(d, self.check)?;
                *self.target = Value::Null;
            }
            Node::Fields(fields) => d.deserialize_any(Projector {
                fields,
                target: self.target,
                check: self.check,
            })?,
        }
        Ok(())
    }
}

/// Keeps the named fields of objects (and of the objects in arrays); a value of another kind
/// is kept whole.
struct Projector<'t, 'n> {
    fields: &'n FieldNodes,
    target: &'t mut Value,
    check: bool,
}

impl<'de> DeserializeSeed<'de> for Projector<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// serde_json's arbitrary-precision numbers reach a visitor as a one-entry map under this
/// key. (Guarded by a test: if serde_json changes it, `numbers_keep_every_digit` fails.)
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> Visitor<'de> for Projector<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        *self.target = Value::Bool(v);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        *self.target = Value::Number(v.into());
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        *self.target = Value::Number(v.into());
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        match self.target {
            Value::String(s) => {
                s.clear();
                s.push_str(v);
            }
            other => *other = Value::String(v.to_string()),
        }
        Ok(())
    }
    fn visit_string<E>(self, v: String) -> Result<(), E> {
        *self.target = Value::String(v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        *self.target = Value::Null;
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        *self.target = Value::Null;
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.target.is_array() {
            *self.target = Value::Array(Vec::new());
        }
        let Value::Array(items) = self.target else {
            return Ok(());
        };
        let mut n = 0;
        loop {
            if n == items.len() {
                items.push(Value::Null);
            }
            let element = Projector {
                fields: self.fields,
                target: &mut items[n],
                check: self.check,
            };
            if seq.next_element_seed(element)?.is_none() {
                break;
            }
            n += 1;
        }
        items.truncate(n);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Seen::new(self.fields.len());
        let mut first = true;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if std::mem::take(&mut first) {
                if key.as_str() == NUMBER_TOKEN {
                    let text: String = map.next_value()?;
                    let n: Number = text.parse().map_err(serde::de::Error::custom)?;
                    *self.target = Value::Number(n);
                    return Ok(());
                }
                if !self.target.is_object() {
                    *self.target = Value::Object(Map::new());
                }
            }
            let Value::Object(out) = &mut *self.target else {
                return Ok(());
            };
            let Some((i, node)) = self.fields.get(key.as_str()) else {
                map.next_value_seed(Skip(self.check))?;
                continue;
            };
            seen.mark(*i);
            match out.get_mut(key.as_str()) {
                Some(slot) => map.next_value_seed(ParseInto {
                    node,
                    target: slot,
                    check: self.check,
                })?,
                None => {
                    let mut v = Value::Null;
                    map.next_value_seed(ParseInto {
                        node,
                        target: &mut v,
                        check: self.check,
                    })?;
                    out.insert(key.into_string(), v);
                }
            }
        }
        if first {
            *self.target = Value::Object(Map::new());
        }
        // Fields the last body held in the target and this one does not.
        if let Value::Object(out) = self.target {
            if out.len() != seen.count() {
                out.retain(|k, _| {
                    self.fields
                        .get(k.as_str())
                        .is_some_and(|(i, _)| seen.has(*i))
                });
            }
        }
        Ok(())
    }
}

/// Passes over a value a flow does not read: only its syntax, or (`check`) all [`check`] checks.
fn skip<'de, D: Deserializer<'de>>(d: D, check: bool) -> Result<(), D::Error> {
    if check {
        d.deserialize_any(Walk).map(|_| ())
    } else {
        IgnoredAny::deserialize(d).map(|_| ())
    }
}

struct Skip(bool);

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        skip(d, self.0)
    }
}

/// The kind of a JSON value, as [`check`] found it at the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    pub fn of(value: &Value) -> Kind {
        match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }

    /// As messages name it: "an array".
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// Reads all of `bytes` as a flow that reads the whole body would, keeping nothing: UTF-8,
/// syntax, every string and key decoded (a lone surrogate such as `"\ud800"` is refused, as
/// it is when a string is read), numbers, and the parser's nesting limit (serde_json's 128
/// levels, counted by the same deserializer). A body that passes parses under any [`Need`];
/// skipping with [`IgnoredAny`] alone checks only the syntax.
pub fn check(bytes: &[u8]) -> serde_json::Result<Kind> {
    let mut de = serde_json::Deserializer::from_str(utf8(bytes)?);
    let kind = de.deserialize_any(Walk)?;
    de.end()?;
    Ok(kind)
}

/// Visits every value as `Value::deserialize` does, without building one.
struct Walk;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = Kind;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Bool)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind::Number)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Kind, E> {
        Ok(Kind::Number)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Number)
    }
    fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
        Ok(Kind::String)
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        while seq.next_element_seed(Walk)?.is_some() {}
        Ok(Kind::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut first = true;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if std::mem::take(&mut first) && key.as_str() == NUMBER_TOKEN {
                map.next_value::<IgnoredAny>()?;
                return Ok(Kind::Number);
            }
            map.next_value_seed(Walk)?;
        }
        Ok(Kind::Object)
    }
}

/// Which of a level's fields a body has, without allocating for the usual few.
enum Seen {
    Few(u128),
    Many(Vec<bool>),
}

impl Seen {
    fn new(fields: usize) -> Seen {
        if fields <= 128 {
            Seen::Few(0)
        } else {
            Seen::Many(vec![false; fields])
        }
    }
    fn mark(&mut self, i: usize) {
        match self {
            Seen::Few(bits) => *bits |= 1 << i,
            Seen::Many(flags) => flags[i] = true,
        }
    }
    fn has(&self, i: usize) -> bool {
        match self {
            Seen::Few(bits) => bits & (1 << i) != 0,
            Seen::Many(flags) => flags[i],
        }
    }
    fn count(&self) -> usize {
        match self {
            Seen::Few(bits) => bits.count_ones() as usize,
            Seen::Many(flags) => flags.iter().filter(|f| **f).count(),
        }
    }
}

/// An object key, borrowed from the input when it has no escapes: most keys are skipped, and
/// allocating each one only to compare it would cost more than the parse.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
    fn into_string(self) -> String {
        match self {
            Key::Borrowed(s) => s.to_string(),
            Key::Owned(s) => s,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v))
    }
}

/// `$.a.b`, `$['a']`, `$.items[*].sku`, `$.items[0]` as steps; `None` for anything else
/// (filters, slices, descendants, unions), which the caller treats as "needs everything".
pub fn simple_path(src: &str) -> Option<Vec<PathStep>> {
    let mut rest = src.strip_prefix('$')?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(".*") {
            out.push(PathStep::Elements);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('.') {
            if r.starts_with('.') {
                return None;
            }
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || !c.is_ascii())
            {
                return None;
            }
            out.push(PathStep::Name(name.to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            if inner == "*"
                || (!inner.is_empty()
                    && inner
                        .trim_start_matches('-')
                        .chars()
                        .all(|c| c.is_ascii_digit()))
            {
                out.push(PathStep::Elements);
            } else if let Some(name) = quoted_name(inner) {
                out.push(PathStep::Name(name));
            } else {
                return None;
            }
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(out)
}

fn quoted_name(inner: &str) -> Option<String> {
    let q = inner.chars().next()?;
    if (q != '\'' && q != '"') || inner.len() < 2 || !inner.ends_with(q) {
        return None;
    }
    let name = &inner[1..inner.len() - 1];
    // Escapes and embedded quotes or brackets are rare in mappings; leave them to the full parse.
    (!name.contains(['\\', '\'', '"', ']', '['])).then(|| name.to_string())
}

/// One thing Rhai source reads of `record`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// `record.a.b`: the value at the path.
    Path(Vec<PathStep>),
    /// `"k" in record.a`: whether the key exists.
    Presence(Vec<PathStep>),
}

/// The `record.a.b` chains a Rhai source reads, or `None` when `record` is used in any way we
/// cannot see through (passed whole, indexed by an expression, iterated, …). Scanning the
/// text is conservative: `record` inside a string or comment only widens the need.
pub fn record_reads(src: &str) -> Option<Vec<Read>> {
    let bytes = src.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let code = code_mask(src);
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(found) = src[i..].find("record") {
        let start = i + found;
        let end = start + "record".len();
        i = end;
        if !code[start] {
            continue;
        }
        let before_ok = start == 0 || !(is_ident(bytes[start - 1]) || bytes[start - 1] == b'.');
        let after_ok = end >= bytes.len() || !is_ident(bytes[end]);
        if !before_ok || !after_ok {
            continue;
        }
        // Follow `.name` / `?.name` steps.
        let mut path = Vec::new();
        let mut j = end;
        loop {
            let dot = if src[j..].starts_with("?.") {
                2
            } else if src[j..].starts_with('.') {
                1
            } else {
                break;
            };
            let name_start = j + dot;
            let name_end = name_start
                + bytes[name_start..]
                    .iter()
                    .take_while(|b| is_ident(**b))
                    .count();
            if name_end == name_start {
                return None;
            }
            // A method call (`record.items.len()`) reads what comes before it, whole.
            if bytes.get(name_end) == Some(&b'(') {
                break;
            }
            path.push(PathStep::Name(src[name_start..name_end].to_string()));
            j = name_end;
        }
        // `"key" in record.a`: only the key's presence is read, when nothing follows the chain
        // that could use the value.
        if let Some(key) = tested_key(&src[..start]) {
            path.push(PathStep::Name(key));
            out.push(Read::Presence(path));
            continue;
        }
        if path.is_empty() {
            return None;
        }
        out.push(Read::Path(path));
    }
    Some(out)
}

/// Whether Rhai source reads the body through `event` (`event.body`, or `event` whole).
/// Reading `event.id`, `.pipeline`, `.headers` or `.received_at` does not count.
pub fn reads_event_body(src: &str) -> bool {
    let bytes = src.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let code = code_mask(src);
    let mut from = 0;
    while let Some(found) = src[from..].find("event") {
        let start = from + found;
        let end = start + "event".len();
        from = end;
        if !code[start] {
            continue;
        }
        if (start > 0 && (is_ident(bytes[start - 1]) || bytes[start - 1] == b'.'))
            || bytes.get(end).is_some_and(|b| is_ident(*b))
        {
            continue;
        }
        let rest = src[end..].trim_start_matches('?');
        let harmless = ["id", "pipeline", "headers", "received_at"]
            .iter()
            .any(|field| {
                rest.strip_prefix('.')
                    .and_then(|r| r.strip_prefix(field))
                    .is_some_and(|r| !r.bytes().next().is_some_and(is_ident))
            });
        if !harmless {
            return true;
        }
    }
    false
}

/// For each byte of Rhai source: is it code, rather than inside a comment or a plain string
/// literal? Words in comments ("the record made by …") must not count as uses. Backtick strings
/// count as code: their `${…}` parts are code, and a word in their text only widens a need.
fn code_mask(src: &str) -> Vec<bool> {
    let b = src.as_bytes();
    let mut mask = vec![true; b.len() + 1];
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            rest.iter()
                .position(|c| *c == b'\n')
                .map_or(b.len(), |p| i + p)
        } else if rest.starts_with(b"/*") {
            src[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2)
        } else if rest[0] == b'"' || rest[0] == b'\'' {
            let quote = rest[0];
            let mut j = i + 1;
            while j < b.len() && b[j] != quote {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(b.len())
        } else {
            i += 1;
            continue;
        };
        mask[i..end].iter_mut().for_each(|m| *m = false);
        i = end.max(i + 1);
    }
    mask
}

/// The string literal of an `"key" in` that ends `before`, if that is how it ends.
fn tested_key(before: &str) -> Option<String> {
    let rest = before.trim_end().strip_suffix("in")?;
    if rest.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let rest = rest.trim_end().strip_suffix('"')?;
    let open = rest.rfind('"')?;
    let key = &rest[open + 1..];
    (!key.contains('\\')).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn name(s: &str) -> PathStep {
        PathStep::Name(s.into())
    }

    #[test]
    fn simple_paths_parse_and_complex_ones_do_not() {
        assert_eq!(simple_path("$.a.b"), Some(vec![name("a"), name("b")]));
        assert_eq!(
            simple_path("$['a b'][0].c"),
            Some(vec![name("a b"), PathStep::Elements, name("c")])
        );
        assert_eq!(
            simple_path("$.products[*].sku"),
            Some(vec![name("products"), PathStep::Elements, name("sku")])
        );
        assert_eq!(simple_path("$"), Some(vec![]));
        for complex in [
            "$..a",
            "$.a[?@.b]",
            "$.a[0:2]",
            "$['a','b']",
            "a.b",
            "$.a[?(@.x)]",
        ] {
            assert_eq!(simple_path(complex), None, "{complex}");
        }
    }

    #[test]
    fn rhai_reads_of_record() {
        let path = |p: &[&str]| Read::Path(p.iter().map(|n| name(n)).collect());
        assert_eq!(
            record_reads(r#"record.scope == "x""#),
            Some(vec![path(&["scope"])])
        );
        assert_eq!(
            record_reads("record.a.b > 1 && record?.c.len() > 0"),
            Some(vec![path(&["a", "b"]), path(&["c"])])
        );
        assert_eq!(record_reads("event.body.x == 1"), Some(vec![]));
        assert_eq!(record_reads("f(record)"), None);
        assert_eq!(record_reads("record[\"x\"]"), None);
        assert_eq!(record_reads("my_record.x"), Some(vec![]));
        assert_eq!(
            record_reads(r#""id" in record && "products" in record.order"#),
            Some(vec![
                Read::Presence(vec![name("id")]),
                Read::Presence(vec![name("order"), name("products")])
            ])
        );
        assert_eq!(record_reads("x in record"), None);
        assert_eq!(
            record_reads(
                "// the record as a whole\nlet s = \"record\"; /* record */ record.a = 1;"
            ),
            Some(vec![path(&["a"])])
        );
        assert_eq!(record_reads("let s = `${record}`;"), None);
    }

    #[test]
    fn event_body_reads() {
        for (src, reads) in [
            ("event.body.x", true),
            ("f(event)", true),
            ("event.received_at + event.id", false),
            ("event.headers[\"x\"]", false),
            ("prevent.body", false),
            ("// the event body is not read\nevent.id", false),
        ] {
            assert_eq!(reads_event_body(src), reads, "{src}");
        }
    }

    #[test]
    fn projects_and_writes_back_only_what_code_may_touch() {
        let mut record = json!({"a": {"x": 1, "y": 2}, "big": [1, 2, 3], "id": 7});
        let need =
            Need::of_rhai(r#"record.a.x = record.a.x + 1; record.route = "r"; "id" in record"#);
        let mut given = need.project(&record);
        assert_eq!(given, json!({"a": {"x": 1}, "id": null}));
        given["a"]["x"] = json!(2);
        given["route"] = json!("r");
        need.write_back(&mut record, given);
        assert_eq!(
            record,
            json!({"a": {"x": 2, "y": 2}, "big": [1, 2, 3], "id": 7, "route": "r"})
        );
    }

    /// One parse with a parser made for it (flows make theirs once).
    fn parse(need: &Need, bytes: &[u8]) -> serde_json::Result<Value> {
        BodyParser::new(need.clone()).parse(bytes)
    }

    #[test]
    fn presence_only_keys_are_skipped_by_the_parser() {
        let mut need = Need::default();
        need.add_rhai(r#""products" in record && record.id > 0"#);
        let got = parse(&need, br#"{"id": 1, "products": [{"a": 1}]}"#).unwrap();
        assert_eq!(got, json!({"id": 1, "products": null}));
        need.add_jsonpath("$.products[*].a");
        let got = parse(&need, br#"{"id": 1, "products": [{"a": 1, "b": 2}]}"#).unwrap();
        assert_eq!(got, json!({"id": 1, "products": [{"a": 1}]}));
    }

    #[test]
    fn parses_only_what_is_needed() {
        let body = br#"{"id": 1, "skip": {"deep": [1,2,{"x":3}]}, "billing": {"email": "a@b", "phone": "1"},
                       "items": [{"sku": "A", "qty": 2, "junk": "z"}, {"sku": "B"}], "n": 12.50}"#;
        let mut need = Need::default();
        need.add_jsonpath("$.id");
        need.add_jsonpath("$.billing.email");
        need.add_jsonpath("$.items[*].sku");
        need.add_rhai("record.n > 1");
        let got = parse(&need, body).unwrap();
        assert_eq!(
            got.to_string(),
            r#"{"billing":{"email":"a@b"},"id":1,"items":[{"sku":"A"},{"sku":"B"}],"n":12.50}"#
        );
        let mut all = Need::default();
        all.add_jsonpath("$..sku");
        assert_eq!(
            parse(&all, body).unwrap(),
            serde_json::from_slice::<Value>(body).unwrap()
        );
    }

    #[test]
    fn a_body_parsed_into_the_last_one_is_as_if_parsed_afresh() {
        let mut need = Need::default();
        need.add_jsonpath("$.id");
        need.add_jsonpath("$.a.b");
        need.add_jsonpath("$.items[*].sku");
        need.add_jsonpath("$.items[*].qty");
        need.add_jsonpath("$.whole");
        let bodies: &[&str] = &[
            r#"{"id": 1, "a": {"b": "x", "c": 1}, "items": [{"sku": "A", "qty": 2}, {"sku": "B"}], "whole": {"k": [1]}}"#,
            // Fields gone, arrays shorter, kinds changed, numbers where objects were.
            r#"{"id": "one", "a": 5, "items": [{"qty": "3"}]}"#,
            r#"{"id": {"deep": 1}, "a": {"b": {"c": [1, 2]}}, "items": "none", "whole": 12.50}"#,
            r#"{"items": [{"sku": "A"}, {"sku": "B"}, {"sku": "C", "qty": 123456789012345678901234567890}], "a": {"b": null}}"#,
            r#"{"id": 1, "id": 2, "a": {}, "items": [], "whole": null}"#,
            r#"{}"#,
            r#"[{"id": 1}, 2]"#,
            r#"{"id": 7, "a": {"b": "y"}, "items": [{"sku": "Z", "qty": 1, "junk": 0}], "whole": "s"}"#,
        ];
        let parser = BodyParser::new(need);
        // Another flow's parser may have used the target last (a thread runs many flows).
        let mut other = Need::default();
        other.add_jsonpath("$.a");
        other.add_jsonpath("$.items[*]");
        other.add_rhai(r#""id" in record"#);
        let others = [BodyParser::new(other), BodyParser::new(Need::All)];
        let mut target = Value::Null;
        // Every body after every other: whatever the target held, it ends up as a fresh parse.
        for before in bodies {
            for body in bodies {
                for last in std::iter::once(&parser).chain(&others) {
                    last.parse_into(before.as_bytes(), &mut target).unwrap();
                    parser.parse_into(body.as_bytes(), &mut target).unwrap();
                    assert_eq!(
                        target.to_string(),
                        parser.parse(body.as_bytes()).unwrap().to_string(),
                        "{body} after {before}"
                    );
                }
            }
        }
        // After a failed parse the target is only a part of a body; the next parse is whole.
        assert!(parser
            .parse_into(br#"{"id": 1, "a": {"b": "x"}, "items": [1,"#, &mut target)
            .is_err());
        parser
            .parse_into(bodies[0].as_bytes(), &mut target)
            .unwrap();
        assert_eq!(target, parser.parse(bodies[0].as_bytes()).unwrap());
    }

    #[test]
    fn numbers_keep_every_digit() {
        let mut need = Need::default();
        need.add_jsonpath("$.a");
        let got = parse(
            &need,
            br#"{"a": [123456789012345678901234567890, 0.1, -5], "b": 1}"#,
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"a": [
                "123456789012345678901234567890".parse::<Number>().unwrap(),
                "0.1".parse::<Number>().unwrap(),
                -5
            ]})
        );
        assert_eq!(got["a"][0].to_string(), "123456789012345678901234567890");
    }

    #[test]
    fn bad_json_is_an_error_even_in_skipped_parts() {
        let mut need = Need::default();
        need.add_jsonpath("$.a");
        for bad in [
            &br#"{"a": 1, "b": [1,}"#[..],
            b"{\"a\": 1} x",
            b"",
            b"{\"b\": 1e400, \"a\": 1,",
            // Invalid UTF-8 where nothing reads it.
            b"{\"a\": 1, \"b\": \"\xff\xfe\"}",
        ] {
            assert!(
                parse(&need, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!("{{\"b\": {}}}", "[".repeat(100_000));
        assert!(parse(&need, deep.as_bytes()).is_err());
    }

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn check_refuses_what_a_whole_parse_refuses_and_nothing_more() {
        for (body, kind) in [
            (
                r#"{"a": [1, {"b": null}], "c": "\ud83d\ude00"}"#,
                Kind::Object,
            ),
            ("[1, 2]", Kind::Array),
            ("123456789012345678901234567890", Kind::Number),
            (r#""x""#, Kind::String),
            ("true", Kind::Bool),
            (" null ", Kind::Null),
        ] {
            assert_eq!(check(body.as_bytes()).unwrap(), kind, "{body}");
        }
        for bad in [
            r#"{"a": 1, "b": "\ud800"}"#,
            r#"{"a": 1, "b": ["\udc00x"]}"#,
            r#"{"\ud800": 1}"#,
            r#"{"a": 1} x"#,
            r#"{"a": 1,}"#,
        ] {
            assert!(check(bad.as_bytes()).is_err(), "{bad}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        }
        assert!(check(b"{\"a\": \"\xff\"}").is_err());
        // The nesting limit is the parser's own: both give up at the same depth.
        let (mut passed, mut refused) = (0, 0);
        for levels in 100..160 {
            let body = nested(levels);
            let whole = serde_json::from_str::<Value>(&body).is_ok();
            assert_eq!(check(body.as_bytes()).is_ok(), whole, "{levels} levels");
            if whole {
                passed += 1;
            } else {
                refused += 1;
            }
        }
        assert!(passed > 0 && refused > 0, "{passed} {refused}");
    }

    #[test]
    fn a_checking_parser_refuses_in_what_it_skips_what_check_refuses() {
        let mut need = Need::default();
        need.add_jsonpath("$.a");
        let skipped_surrogate = br#"{"a": 1, "b": "\ud800"}"#;
        let skipped_deep = format!(r#"{{"a": 1, "b": {}}}"#, nested(200));
        let plain = BodyParser::new(need.clone());
        let checking = BodyParser::checking(need);
        for body in [&skipped_surrogate[..], skipped_deep.as_bytes()] {
            assert!(plain.parse(body).is_ok());
            assert!(checking.parse(body).is_err());
        }
        let body = br#"{"a": {"x": "\ud83d\ude00"}, "b": [{"c": null}]}"#;
        assert_eq!(checking.parse(body).unwrap(), plain.parse(body).unwrap());
    }
}
