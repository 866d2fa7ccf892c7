//! Where things are in a YAML file.
//!
//! Owns the path type used to name a node of a config document (`steps[2].send.to`) and the
//! index from such paths to line and column. Every diagnostic that is found after parsing — an
//! unknown key, a dangling connector, a bad JSONPath, a Rhai error in an inline expression —
//! is located through this index, so it can point at the YAML value the user wrote.

use std::collections::HashMap;
use std::fmt;

/// One step of a path into a YAML document.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Renders a path the way a user reads it: `steps[2].send.to`.
pub fn display_path(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathSeg::Index(i) => {
                out.push_str(&format!("[{i}]"));
            }
        }
    }
    out
}

/// A position in a source file. `line` and `col` are 1-based; `col` counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// How a scalar was written, so that an offset inside its text can be turned into a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarStyle {
    /// Plain or quoted on one line: text starts at `value` (+1 for the quote).
    Inline { quoted: bool },
    /// Block (`|`, `>`) or a multi-line flow scalar: offsets map to lines of the file.
    Block,
}

#[derive(Clone, Copy, Debug)]
pub struct NodeSpan {
    /// Where the key naming this node starts (absent for sequence items and the root).
    pub key: Option<Pos>,
    /// Where the value starts.
    pub value: Pos,
    pub style: Option<ScalarStyle>,
}

/// Path -> position, for one YAML document.
#[derive(Clone, Debug, Default)]
pub struct SpanIndex {
    nodes: HashMap<Vec<PathSeg>, NodeSpan>,
}

impl SpanIndex {
    pub(crate) fn insert(&mut self, path: Vec<PathSeg>, span: NodeSpan) {
        self.nodes.insert(path, span);
    }

    pub fn get(&self, path: &[PathSeg]) -> Option<&NodeSpan> {
        self.nodes.get(path)
    }

    /// The position of the value at `path`, or of its nearest ancestor that exists
    /// (a missing key is reported where its parent is).
    pub fn value_pos(&self, path: &[PathSeg]) -> Pos {
        self.nearest(path)
            .map(|s| s.value)
            .unwrap_or(Pos { line: 1, col: 1 })
    }

    /// The position of the key at `path` if it has one, else of its value.
    pub fn key_pos(&self, path: &[PathSeg]) -> Pos {
        match self.nearest(path) {
            Some(span) => span.key.unwrap_or(span.value),
            None => Pos { line: 1, col: 1 },
        }
    }

    /// The position of the character `offset` bytes into the scalar at `path`, when the scalar
    /// sits on one line; else the start of the value.
    pub fn offset_pos(&self, path: &[PathSeg], text: &str, offset: usize) -> Pos {
        let Some(span) = self.get(path) else {
            return self.value_pos(path);
        };
        match span.style {
            Some(ScalarStyle::Inline { quoted }) => {
                let chars = text
                    .get(..offset.min(text.len()))
                    .map_or(0, |s| s.chars().count());
                Pos {
                    line: span.value.line,
                    col: span.value.col + chars + usize::from(quoted),
                }
            }
            _ => span.value,
        }
    }

    fn nearest(&self, path: &[PathSeg]) -> Option<&NodeSpan> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.nodes.get(&path[..n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_paths_as_users_write_them() {
        let p = vec![
            PathSeg::Key("steps".into()),
            PathSeg::Index(2),
            PathSeg::Key("send".into()),
            PathSeg::Key("to".into()),
        ];
        assert_eq!(display_path(&p), "steps[2].send.to");
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        let mut idx = SpanIndex::default();
        let at = |line, col| Pos { line, col };
        idx.insert(
            vec![PathSeg::Key("a".into())],
            NodeSpan {
                key: Some(at(1, 1)),
                value: at(2, 3),
                style: None,
            },
        );
        let deep = vec![PathSeg::Key("a".into()), PathSeg::Key("b".into())];
        assert_eq!(idx.value_pos(&deep), at(2, 3));
        assert_eq!(idx.key_pos(&deep), at(1, 1));
        assert_eq!(idx.value_pos(&[]), at(1, 1));
    }
}
