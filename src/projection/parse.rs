//! Parsing a body keeping only what a [`Need`] says: [`BodyParser`], a serde visitor that
//! skips the rest without building it and parses into the value the last body left.

use std::collections::HashMap;
use std::fmt;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Number, Value};

use super::check::Walk;
use super::Need;

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
    /// Whether what is skipped is checked as [`check`](fn@super::check) checks a whole body.
    check: bool,
}

/// A level's field names, each with its place among them (to tell which were seen).
type FieldNodes = HashMap<Box<str>, (usize, Node), rustc_hash::FxBuildHasher>;

#[derive(Debug, Clone)]
enum Node {
    All,
    Present,
    Fields(FieldNodes),
    /// [`Need::Items`]: an object whole, an array element by element by these fields.
    Items(FieldNodes),
}

impl Node {
    fn of(need: &Need) -> Node {
        match need {
            Need::All => Node::All,
            Need::Present => Node::Present,
            Need::Fields(fields) => Node::Fields(Node::fields(fields)),
            Need::Items(fields) => Node::Items(Node::fields(fields)),
        }
    }

    fn fields(fields: &std::collections::BTreeMap<String, Need>) -> FieldNodes {
        fields
            .iter()
            .enumerate()
            .map(|(i, (k, n))| (k.as_str().into(), (i, Node::of(n))))
            .collect()
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

    /// A parser that keeps what `need` says and refuses whatever [`check`](fn@super::check) refuses, also in
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
                objects_whole: false,
            })?,
            Node::Items(fields) => d.deserialize_any(Projector {
                fields,
                target: self.target,
                check: self.check,
                objects_whole: true,
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
    /// At a [`Node::Items`]: an object here is kept whole (its elements, if an array, are not).
    objects_whole: bool,
}

impl<'de> DeserializeSeed<'de> for Projector<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// serde_json's arbitrary-precision numbers reach a visitor as a one-entry map under this
/// key. (Guarded by a test: if serde_json changes it, `numbers_keep_every_digit` fails.)
pub(super) const NUMBER_TOKEN: &str = "$serde_json::private::Number";

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
                objects_whole: false,
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
        if self.objects_whole {
            // serde_json's own visitor, which also reads an arbitrary-precision number.
            *self.target = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            return Ok(());
        }
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

/// Passes over a value a flow does not read: only its syntax, or (`check`) all [`check`](fn@super::check) checks.
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
pub(super) enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    pub(super) fn as_str(&self) -> &str {
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

pub(super) struct KeySeed;

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
