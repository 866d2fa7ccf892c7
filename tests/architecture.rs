//! The module graph as docs/architecture.md draws it: every `crate::X` a module names in code
//! that ships (test modules excepted) is a module listed above it in the doc's table, and every
//! module of the crate is in the table. Reads the sources and the doc as they are on disk, so
//! an upward import or a doc that no longer says how the crate is layered fails here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The modules in the order of the table in docs/architecture.md, lowest layer first:
/// the first cell of each row, e.g. `` `config/` `` or `` `projection.rs` ``.
fn layers(doc: &str) -> Vec<String> {
    let mut rows = doc
        .lines()
        .skip_while(|l| !l.starts_with("| module |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'));
    let mut names = Vec::new();
    for row in rows.by_ref() {
        let cell = row.split('|').nth(1).unwrap_or("").trim();
        let name = cell
            .trim_matches('`')
            .trim_end_matches('/')
            .trim_end_matches(".rs");
        names.push(name.to_string());
    }
    names
}

/// The crate's top-level modules, from the `pub mod` / `mod` lines of src/lib.rs.
fn crate_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))
                .and_then(|rest| rest.strip_suffix(';'))
                .map(str::to_string)
        })
        .collect()
}

/// `src` with comments, string and char literals blanked (newlines kept, so offsets still give
/// the right line), so that neither a doc comment nor a message that mentions `crate::x` counts.
fn code_only(src: &str) -> Vec<u8> {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in out.iter_mut().take(to).skip(from) {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|c| *c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let end = find(b, i + 2, b"*/").map_or(b.len(), |p| p + 2);
            blank(&mut out, i, end);
            i = end;
        } else if let Some(hashes) = raw_string_start(b, i) {
            let open = i + if b[i] == b'b' { 2 } else { 1 } + hashes + 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let end = find(b, open, &close).map_or(b.len(), |p| p + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if b[i] == b'\'' && is_char_literal(b, i) {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'\'' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// How many `#` a raw string starting at `i` (`r"`, `r#"`, `br"`...) has, if one starts there.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|c| **c == b'#').count();
    (b.get(j + hashes) == Some(&b'"')).then_some(hashes)
}

/// A `'` that opens a char literal rather than a lifetime or label.
fn is_char_literal(b: &[u8], i: usize) -> bool {
    match (b.get(i + 1), b.get(i + 2)) {
        (Some(b'\\'), _) => true,
        (Some(_), Some(b'\'')) => true,
        // A multi-byte char such as 'é' or '→'.
        (Some(c), _) if *c >= 0x80 => true,
        _ => false,
    }
}

/// Blanks every item under `#[cfg(test)]`: from the attribute to the end of the item's braces
/// (or its `;` when it has none).
fn without_tests(code: &mut [u8]) {
    const ATTR: &[u8] = b"#[cfg(test)]";
    let mut from = 0;
    while let Some(start) = find(code, from, ATTR) {
        let after = start + ATTR.len();
        let brace = find(code, after, b"{");
        let semi = find(code, after, b";");
        let end = match (brace, semi) {
            (Some(open), semi) if semi.is_none_or(|s| open < s) => {
                let mut depth = 0usize;
                let mut end = code.len();
                for (k, c) in code.iter().enumerate().skip(open) {
                    match c {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (_, Some(s)) => s + 1,
            _ => code.len(),
        };
        for c in code.iter_mut().take(end).skip(start) {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end;
    }
}

/// Every top-level module named as `crate::x` or inside `crate::{x, y::z}`, with its line.
fn crate_refs(code: &[u8]) -> Vec<(String, usize)> {
    let text = String::from_utf8_lossy(code);
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let ident = |s: &str| {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>()
    };
    let mut refs = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = text[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // Only the names at the group's top level are modules of the crate.
            let mut depth = 0usize;
            let mut start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        refs.push((ident(&group[k..]), line_of(at)));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            refs.push((ident(rest), line_of(at)));
        }
    }
    refs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The upward imports of the tree under `src`, as `file:line: a -> b` lines.
fn upward_imports(src: &Path, order: &[String]) -> Vec<String> {
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = rank(&module) else {
            found.push(format!(
                "{}: module `{module}` is not in the table",
                rel.display()
            ));
            continue;
        };
        let mut code = code_only(&std::fs::read_to_string(&file).unwrap());
        without_tests(&mut code);
        for (target, line) in crate_refs(&code) {
            if let Some(theirs) = rank(&target) {
                if theirs > own {
                    found.push(format!(
                        "src/{}:{line}: `{module}` uses `{target}`, which the table puts above it",
                        rel.display()
                    ));
                }
            }
        }
    }
    found
}

fn doc_layers() -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    layers(&doc)
}

#[test]
fn the_table_lists_every_module_of_the_crate_once() {
    let order = doc_layers();
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(listed.len(), order.len(), "a module twice in {order:?}");
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    assert_eq!(listed, crate_modules(&lib));
}

#[test]
fn no_module_uses_one_above_it() {
    let order = doc_layers();
    let found = upward_imports(&root().join("src"), &order);
    assert!(
        found.is_empty(),
        "docs/architecture.md orders the modules {order:?}; data flows down that list, but:\n{}",
        found.join("\n")
    );
}

/// The scanner itself, on a small tree: it must see what an upward import looks like in the
/// forms the crate uses, and not mistake comments, strings or test modules for code.
#[test]
fn the_scanner_sees_upward_imports_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("low")).unwrap();
    std::fs::write(
        src.join("low/mod.rs"),
        r##"//! Mentions `crate::high` in a doc comment.
use crate::low::thing;
use crate::{base, high::Server};
fn f() { let _ = "crate::high"; let _ = r#"crate::high"#; let c = '{'; let _ = pub_crate::high; }
fn g() -> Result<(), crate::high::Error> { Ok(()) }
/* crate::high */
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::high::Fixture;
    fn nested() { if true { let _ = crate::high::x; } }
}
fn after_tests() { crate::high::late(); }
"##,
    )
    .unwrap();
    std::fs::write(src.join("high.rs"), "use crate::low::thing;\n").unwrap();
    std::fs::write(src.join("base.rs"), "").unwrap();
    let order: Vec<String> = ["base", "low", "high"].map(String::from).to_vec();
    let found = upward_imports(src, &order);
    assert_eq!(
        found,
        [
            "src/low/mod.rs:3: `low` uses `high`, which the table puts above it",
            "src/low/mod.rs:5: `low` uses `high`, which the table puts above it",
            "src/low/mod.rs:13: `low` uses `high`, which the table puts above it",
        ],
        "{found:#?}"
    );
}

#[test]
fn the_table_is_read_in_order() {
    let doc = "intro\n\n| module | owns | must not |\n|---|---|---|\n| `a/` | x | y |\n\
               | `b.rs` | x | y |\n| `c/` | x | y |\n\nafter\n| `d/` | not | table |\n";
    assert_eq!(layers(doc), ["a", "b", "c"]);
}
