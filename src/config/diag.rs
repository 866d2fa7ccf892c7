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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
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
    fn summary_counts_problems_and_files() {
        let mut ds = Diagnostics::default();
        ds.push(Diagnostic::error("a", Pos::default(), "x"));
        ds.push(Diagnostic::error("b", Pos::default(), "y"));
        ds.push(Diagnostic::warning("b", Pos::default(), "z"));
        assert_eq!(ds.summary(), "2 errors and 1 warning in 2 files");
    }
}
