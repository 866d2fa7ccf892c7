//! Diagnostics: problems found in a project, each with a file, a line and a column.
//!
//! Owns the `Diagnostic` type every loader and compiler reports into, and its rendering as
//! `path:line:col: message` followed by the source line and a caret. Nothing here decides what
//! is wrong; it only says where and how to show it.

use std::fmt;
use std::path::{Path, PathBuf};

use super::span::Pos;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// What kind of problem a diagnostic reports: a stable name for tools (`check --format json`,
/// SARIF rule ids) and the table in docs/config.md. A name is never reused for another kind of
/// problem; a new kind gets a new name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// The project folder or a file in it cannot be read.
    Unreadable,
    /// A file or the project is over its size budget.
    TooLarge,
    /// A file is empty.
    EmptyFile,
    /// Not valid YAML (or duplicate keys).
    YamlSyntax,
    /// A key the place does not take.
    UnknownKey,
    /// A key the place needs is absent.
    MissingKey,
    /// A value of the wrong type.
    WrongType,
    /// A kind (source, step, connector, scheme) that does not exist.
    UnknownKind,
    /// A name that refers to nothing: connector, operation, mapping, script, pipeline.
    UnknownName,
    /// Two things claim what only one may have (a webhook path, a watched folder).
    Duplicate,
    /// A JSONPath that does not parse.
    Jsonpath,
    /// Rhai that does not compile.
    Rhai,
    /// A mapping's field is not well formed.
    Mapping,
    /// A `${VAR}` without a value.
    UnsetEnv,
    /// A webhook anyone may post to.
    NoVerify,
    /// A file named differently from what it defines.
    FileName,
    /// Any other value the engine cannot use (a duration, a count, a combination of keys).
    InvalidValue,
    /// A field a `send` writes that the target's stored schema does not have.
    UnknownField,
    /// A field a `send` writes that the target's stored schema says it may not write.
    ReadOnlyField,
    /// A value a `send` writes that cannot be of its field's type in the target's schema.
    FieldType,
}

impl Code {
    pub const ALL: [Code; 20] = [
        Code::Unreadable,
        Code::TooLarge,
        Code::EmptyFile,
        Code::YamlSyntax,
        Code::UnknownKey,
        Code::MissingKey,
        Code::WrongType,
        Code::UnknownKind,
        Code::UnknownName,
        Code::Duplicate,
        Code::Jsonpath,
        Code::Rhai,
        Code::Mapping,
        Code::UnsetEnv,
        Code::NoVerify,
        Code::FileName,
        Code::InvalidValue,
        Code::UnknownField,
        Code::ReadOnlyField,
        Code::FieldType,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unreadable => "unreadable",
            Code::TooLarge => "too-large",
            Code::EmptyFile => "empty-file",
            Code::YamlSyntax => "yaml-syntax",
            Code::UnknownKey => "unknown-key",
            Code::MissingKey => "missing-key",
            Code::WrongType => "wrong-type",
            Code::UnknownKind => "unknown-kind",
            Code::UnknownName => "unknown-name",
            Code::Duplicate => "duplicate",
            Code::Jsonpath => "jsonpath",
            Code::Rhai => "rhai",
            Code::Mapping => "mapping",
            Code::UnsetEnv => "unset-env",
            Code::NoVerify => "no-verify",
            Code::FileName => "file-name",
            Code::InvalidValue => "invalid-value",
            Code::UnknownField => "unknown-field",
            Code::ReadOnlyField => "read-only-field",
            Code::FieldType => "field-type",
        }
    }

    /// One line on what the code means (SARIF's rule description; the table in
    /// docs/config.md says the same).
    pub fn description(self) -> &'static str {
        match self {
            Code::Unreadable => "the project folder or a file in it cannot be read",
            Code::TooLarge => "a file or the project is over its size budget",
            Code::EmptyFile => "a file is empty",
            Code::YamlSyntax => "not valid YAML, or a key given twice",
            Code::UnknownKey => "a key this place does not take",
            Code::MissingKey => "a key this place needs is absent",
            Code::WrongType => "a value of the wrong type",
            Code::UnknownKind => "a source, step, connector or signature kind that does not exist",
            Code::UnknownName => {
                "a name that refers to nothing: connector, operation, mapping, script, pipeline"
            }
            Code::Duplicate => "two places claim what only one may have",
            Code::Jsonpath => "a JSONPath that does not parse",
            Code::Rhai => "Rhai that does not compile",
            Code::Mapping => "a mapping field that is not well formed",
            Code::UnsetEnv => "a ${VAR} that is not set and has no default",
            Code::NoVerify => "a webhook without a signature check",
            Code::FileName => "a file named differently from what it defines",
            Code::InvalidValue => "a value the engine cannot use",
            Code::UnknownField => "a field sent that the target's stored schema does not have",
            Code::ReadOnlyField => {
                "a field sent that the target's stored schema says the operation cannot write"
            }
            Code::FieldType => "a value sent that cannot be of its field's type in the target",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The kind of problem; `invalid-value` unless the place that found it says better.
    pub code: Code,
    /// Path relative to the project root, as the user would type it.
    pub file: PathBuf,
    pub pos: Pos,
    pub message: String,
    pub help: Option<String>,
    /// The source line at `pos`, for the caret view.
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn error(file: impl Into<PathBuf>, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code: Code::InvalidValue,
            file: file.into(),
            pos,
            message: message.into(),
            help: None,
            source_line: None,
        }
    }

    pub fn warning(file: impl Into<PathBuf>, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, pos, message)
        }
    }

    pub fn with_code(mut self, code: Code) -> Self {
        self.code = code;
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Attaches the line of `source` the diagnostic points at.
    pub fn with_source(mut self, source: &str) -> Self {
        self.source_line = source
            .lines()
            .nth(self.pos.line.saturating_sub(1))
            .map(|l| l.trim_end_matches('\r').to_string());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `path:line:col: message`, then the source line with a caret, then the help.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        write!(
            f,
            "{}:{}:{}: {label}{}",
            display_file(&self.file),
            self.pos.line,
            self.pos.col,
            self.message
        )?;
        if let Some(line) = &self.source_line {
            let gutter = self.pos.line.to_string().len();
            let caret_at: usize = line
                .chars()
                .take(self.pos.col.saturating_sub(1))
                .map(|c| if c == '\t' { 4 } else { 1 })
                .sum();
            let shown = line.replace('\t', "    ");
            write!(f, "\n{:>gutter$} | {shown}", self.pos.line)?;
            write!(f, "\n{:>gutter$} | {:caret_at$}^", "", "")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

fn display_file(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// Every problem found in one pass over a project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| !d.is_error())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Sorted by file, then position, so output is stable whatever order files were read in.
    pub fn sorted(mut self) -> Self {
        self.items.sort_by(|a, b| {
            (&a.file, a.pos.line, a.pos.col).cmp(&(&b.file, b.pos.line, b.pos.col))
        });
        self.items.dedup();
        self
    }

    /// `3 errors and 1 warning in 2 files`.
    pub fn summary(&self) -> String {
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        let mut files: Vec<&PathBuf> = self.items.iter().map(|d| &d.file).collect();
        files.sort();
        files.dedup();
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let what = match (errors, warnings) {
            (e, 0) => plural(e, "error"),
            (0, w) => plural(w, "warning"),
            (e, w) => format!("{} and {}", plural(e, "error"), plural(w, "warning")),
        };
        format!("{what} in {}", plural(files.len(), "file"))
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}\n")?;
        }
        write!(f, "{}", self.summary())
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// "did you mean `x`?" for a misspelt name among the known ones.
pub fn did_you_mean<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    // Jaro-Winkler favours shared prefixes (`tyep`/`type`); the edit distance also catches
    // swapped letters in short names (`cmr`/`crm`), where Jaro-Winkler scores low.
    let close_edit =
        |k: &str| strsim::damerau_levenshtein(wrong, k) <= (wrong.chars().count() / 3).max(1);
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(wrong, k), k))
        .filter(|(score, k)| *score > 0.8 || close_edit(k))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!("did you mean `{k}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_source_and_caret() {
        let src = "a: 1\nsteps:\n  - sned: x\n";
        let d = Diagnostic::error(
            "pipelines/p.yaml",
            Pos { line: 3, col: 5 },
            "unknown step `sned`",
        )
        .with_help("did you mean `send`?")
        .with_source(src);
        assert_eq!(
            d.to_string(),
            "pipelines/p.yaml:3:5: unknown step `sned`\n3 |   - sned: x\n  |     ^\n  = help: did you mean `send`?"
        );
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("tyep", ["type", "from"]),
            Some("did you mean `type`?".into())
        );
        assert_eq!(did_you_mean("zzz", ["type", "from"]), None);
    }

    #[test]
    fn every_code_is_documented_once() {
        let doc = include_str!("../../docs/config.md");
        for code in Code::ALL {
            let row = format!("| `{}` |", code.as_str());
            assert_eq!(doc.matches(&row).count(), 1, "{row} in docs/config.md");
        }
    }

    #[test]
    fn summary_counts_problems_and_files() {
        let mut ds = Diagnostics::default();
        ds.push(Diagnostic::error("a", Pos::default(), "x"));
        ds.push(Diagnostic::error("b", Pos::default(), "y"));
        ds.push(Diagnostic::warning("b", Pos::default(), "z"));
        assert_eq!(ds.summary(), "2 errors and 1 warning in 2 files");
    }
}
