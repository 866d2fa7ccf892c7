//! Reading a project from disk: `crossdock.yaml`, `pipelines/`, `mappings/`, `scripts/`,
//! `tenants/`.
//!
//! Owns the file layout, YAML parsing with positions ([`yaml`]), `${VAR}` interpolation
//! ([`env`]), the typed config model ([`model`]), cron expressions ([`cron`]) and diagnostics
//! ([`diag`]), and how much of a project is read at all (a size limit per file and per
//! project, checked before parsing). It reads files and reports what is malformed in each one
//! on its own; whether the files fit together (references, expressions, duplicate paths) is
//! decided by `crate::flow::compile`.

pub mod cron;
pub mod diag;
pub mod env;
pub mod model;
pub mod span;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use diag::{Code, Diagnostic, Diagnostics};
use env::EnvLookup;
use span::Pos;
use yaml::Doc;

pub const PROJECT_FILE: &str = "crossdock.yaml";

/// No file of a project (YAML or script) is read past this size by default: parsing costs a
/// multiple of the text in memory, and a config file this large is a mistake, not a config.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// All the files of a project together, by default.
pub const MAX_PROJECT_BYTES: u64 = 32 * 1024 * 1024;
/// Environment variables that change the two limits (a size such as `8MB`). From the
/// environment, not `crossdock.yaml`: the limits apply to reading that file too.
pub const MAX_FILE_SIZE_VAR: &str = "CROSSDOCK_MAX_FILE_SIZE";
pub const MAX_PROJECT_SIZE_VAR: &str = "CROSSDOCK_MAX_PROJECT_SIZE";

/// Bytes of the project read so far, against the limits.
struct Budget<'a> {
    file: u64,
    project: u64,
    used: u64,
    /// A file whose text is given, read from here instead of the disk.
    edit: Option<Edit<'a>>,
}

impl Budget<'_> {
    fn from_env(env: EnvLookup<'_>, diags: &mut Diagnostics) -> Budget<'static> {
        let mut limit = |var: &str, default: u64| match env(var) {
            Some(text) if !text.trim().is_empty() => match model::parse_size(&text) {
                Ok(n) => n as u64,
                Err(e) => {
                    diags.push(Diagnostic::error(
                        var,
                        Pos { line: 1, col: 1 },
                        format!("{var} in the environment: {e}"),
                    ));
                    default
                }
            },
            _ => default,
        };
        Budget {
            file: limit(MAX_FILE_SIZE_VAR, MAX_FILE_BYTES),
            project: limit(MAX_PROJECT_SIZE_VAR, MAX_PROJECT_BYTES),
            used: 0,
            edit: None,
        }
    }
}

fn size_text(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b / 1024),
        b => format!("{b} bytes"),
    }
}

/// A file of the project: its path relative to the root, and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// A YAML file with its parsed document.
#[derive(Debug, Clone)]
pub struct YamlFile {
    pub file: SourceFile,
    pub doc: Doc,
}

impl YamlFile {
    /// Name the file is known by: its stem (`pipelines/carts.yaml` -> `carts`).
    pub fn stem(&self) -> String {
        stem(&self.file.path)
    }

    pub fn error(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(&self.file.path, pos, message).with_source(&self.file.text)
    }

    pub fn warning(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::warning(&self.file.path, pos, message).with_source(&self.file.text)
    }

    /// Deserialises `raw`, the node at `path` of this file; a failure becomes a diagnostic
    /// pointing into the file.
    pub fn section<T: serde::de::DeserializeOwned>(
        &self,
        raw: &serde_json::Value,
        path: &[span::PathSeg],
        diags: &mut Diagnostics,
    ) -> Option<T> {
        match yaml::from_doc_at::<T>(raw, path) {
            Ok(v) => Some(v),
            Err(e) => {
                diags.push(yaml::diagnostic(
                    &self.file.path,
                    &self.doc,
                    &self.file.text,
                    &e,
                ));
                None
            }
        }
    }
}

/// Everything read from a project directory, before compilation.
#[derive(Debug, Clone, Default)]
pub struct ProjectSources {
    pub root: PathBuf,
    pub project: Option<YamlFile>,
    pub pipelines: Vec<YamlFile>,
    pub mappings: Vec<YamlFile>,
    /// `tenants/<list>.yaml`: the shops or stores one pipeline serves.
    pub tenants: Vec<YamlFile>,
    pub scripts: Vec<SourceFile>,
    /// The names (file stems) of mapping files that could not be read or parsed: their error
    /// is reported once, at the file, and a pipeline naming one is not told it does not exist.
    pub unreadable_mappings: Vec<String>,
    /// Content hash of every file read: the project's version.
    pub version: String,
    /// Each file read (path relative to the root, `/`-separated) and its content hash: what a
    /// reload compares to tell which files changed.
    pub files: BTreeMap<String, String>,
}

/// The project's hash and each file's, taken as the files are read.
#[derive(Default)]
struct Hashes {
    all: Sha256,
    files: BTreeMap<String, String>,
}

impl Hashes {
    fn add(&mut self, file: &SourceFile) {
        let name = file.path.to_string_lossy();
        self.all.update(name.as_bytes());
        self.all.update(file.text.as_bytes());
        let own = Sha256::digest(file.text.as_bytes());
        self.files
            .insert(name.replace('\\', "/"), ::hex::encode(&own[..6]));
    }
}

impl ProjectSources {
    /// Values that came from the environment, to be masked in all output.
    pub fn secrets(&self) -> Vec<String> {
        let docs = self
            .project
            .iter()
            .chain(&self.pipelines)
            .chain(&self.mappings)
            .chain(&self.tenants);
        docs.flat_map(|f| f.doc.secrets.iter().cloned()).collect()
    }
}

/// Reads a project. Problems with single files (unreadable, YAML syntax) are collected; the
/// files that could be read are returned alongside.
pub fn read_project(root: &Path, env: EnvLookup<'_>) -> (ProjectSources, Diagnostics) {
    read_project_edited(root, env, None)
}

/// One file of a project given as text instead of read from disk: what the console's
/// playground compiles while the file is edited, and what a save is checked with before it is
/// written. `path` is relative to the root, as diagnostics name it.
#[derive(Debug, Clone, Copy)]
pub struct Edit<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

/// As [`read_project`], with `edit`'s text in place of its file (which need not exist yet),
/// read under the same limits as the file would be.
pub fn read_project_edited(
    root: &Path,
    env: EnvLookup<'_>,
    edit: Option<Edit<'_>>,
) -> (ProjectSources, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut sources = ProjectSources {
        root: root.to_path_buf(),
        ..Default::default()
    };
    let mut hasher = Hashes::default();
    let mut budget = Budget::from_env(env, &mut diags);
    budget.edit = edit;

    let project_path = root.join(PROJECT_FILE);
    if project_path.is_file() {
        sources.project = read_yaml(
            root,
            &project_path,
            env,
            &mut diags,
            &mut hasher,
            &mut budget,
        );
    } else {
        diags.push(
            Diagnostic::error(PROJECT_FILE, Pos { line: 1, col: 1 }, format!("no {PROJECT_FILE} in {}", root.display()))
                .with_code(Code::Unreadable)
                .with_help("run crossdock in a project folder, or pass the folder: `crossdock check path/to/project`"),
        );
    }
    for (dir, out) in [
        ("pipelines", &mut sources.pipelines),
        ("mappings", &mut sources.mappings),
        ("tenants", &mut sources.tenants),
    ] {
        for path in listed(root, dir, &["yaml", "yml"], edit, &mut diags) {
            match read_yaml(root, &path, env, &mut diags, &mut hasher, &mut budget) {
                Some(f) => out.push(f),
                None if dir == "mappings" => {
                    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                        sources.unreadable_mappings.push(stem.to_string());
                    }
                }
                None => {}
            }
        }
    }
    for path in listed(root, "scripts", &["rhai"], edit, &mut diags) {
        if let Some(file) = read_text(root, &path, &mut diags, &mut budget) {
            hasher.add(&file);
            sources.scripts.push(file);
        }
    }
    let digest = hasher.all.finalize();
    sources.version = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    sources.files = hasher.files;
    (sources, diags)
}

/// Files with one of `exts` directly in `root/dir`, sorted by name.
fn list(root: &Path, dir: &str, exts: &[&str], diags: &mut Diagnostics) -> Vec<PathBuf> {
    let full = root.join(dir);
    let entries = match std::fs::read_dir(&full) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    dir,
                    Pos { line: 1, col: 1 },
                    format!("cannot read folder: {e}"),
                )
                .with_code(Code::Unreadable),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e))
        })
        .collect();
    out.sort();
    out
}

/// [`list`], with the edited file among them when it belongs in `dir` and is not on disk yet.
fn listed(
    root: &Path,
    dir: &str,
    exts: &[&str],
    edit: Option<Edit<'_>>,
    diags: &mut Diagnostics,
) -> Vec<PathBuf> {
    let mut out = list(root, dir, exts, diags);
    if let Some(edit) = edit {
        let here = edit.path.parent() == Some(Path::new(dir))
            && edit
                .path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e));
        let full = root.join(edit.path);
        if here && !out.contains(&full) {
            out.push(full);
            out.sort();
        }
    }
    out
}

fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Reads at most the per-file limit of a file, and nothing past the project's limit; both are
/// checked before the text is parsed. The size is what is read, not what the folder listing
/// said: a file that grows meanwhile is caught all the same.
fn read_limited(rel: &Path, path: &Path, budget: &mut Budget) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let left = budget.project.saturating_sub(budget.used);
    let cap = budget.file.min(left);
    let mut bytes = Vec::new();
    match budget.edit.filter(|e| e.path == rel) {
        Some(edit) => {
            let end = edit
                .text
                .len()
                .min(usize::try_from(cap.saturating_add(1)).unwrap_or(usize::MAX));
            bytes.extend_from_slice(&edit.text.as_bytes()[..end]);
        }
        None => {
            let file = std::fs::File::open(path).map_err(|e| format!("cannot read file: {e}"))?;
            file.take(cap.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read file: {e}"))?;
        }
    }
    let size = bytes.len() as u64;
    if size > budget.file {
        return Err(format!(
            "file is larger than {} (the limit for one file, {MAX_FILE_SIZE_VAR}); it is not \
             read",
            size_text(budget.file)
        ));
    }
    if size > left {
        return Err(format!(
            "the project's files come to more than {} with this one (the limit for all of \
             them together, {MAX_PROJECT_SIZE_VAR}); it is not read",
            size_text(budget.project)
        ));
    }
    budget.used += size;
    Ok(bytes)
}

fn read_text(
    root: &Path,
    path: &Path,
    diags: &mut Diagnostics,
    budget: &mut Budget,
) -> Option<SourceFile> {
    let rel = relative(root, path);
    match read_limited(&rel, path, budget) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(SourceFile { path: rel, text }),
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let text = String::from_utf8_lossy(valid);
                let line = text.matches('\n').count() + 1;
                let col = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                diags.push(
                    Diagnostic::error(rel, Pos { line, col }, "file is not valid UTF-8")
                        .with_code(Code::Unreadable),
                );
                None
            }
        },
        Err(message) => {
            // `read_limited` says "cannot read" when the file system refused, else the budget.
            let code = if message.starts_with("cannot read") {
                Code::Unreadable
            } else {
                Code::TooLarge
            };
            diags.push(Diagnostic::error(rel, Pos { line: 1, col: 1 }, message).with_code(code));
            None
        }
    }
}

fn read_yaml(
    root: &Path,
    path: &Path,
    env: EnvLookup<'_>,
    diags: &mut Diagnostics,
    hasher: &mut Hashes,
    budget: &mut Budget,
) -> Option<YamlFile> {
    let file = read_text(root, path, diags, budget)?;
    hasher.add(&file);
    match yaml::parse(&file.text, env) {
        Ok((doc, problems)) => {
            for p in problems {
                diags.push(
                    Diagnostic::error(&file.path, p.pos, p.message)
                        .with_code(Code::YamlSyntax)
                        .with_source(&file.text),
                );
            }
            Some(YamlFile { file, doc })
        }
        Err(p) => {
            diags.push(
                Diagnostic::error(&file.path, p.pos, p.message)
                    .with_code(Code::YamlSyntax)
                    .with_source(&file.text),
            );
            None
        }
    }
}

pub fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn project(dir: &Path) {
        std::fs::create_dir_all(dir.join("pipelines")).unwrap();
        std::fs::write(dir.join(PROJECT_FILE), "connectors: {}\n").unwrap();
    }

    fn errors(diags: &Diagnostics) -> Vec<String> {
        diags
            .errors()
            .map(|d| format!("{}: {}", d.file.display(), d.message))
            .collect()
    }

    #[test]
    fn a_file_over_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        project(dir.path());
        // A valid YAML comment, so only the size can be the problem.
        let mut text = "#".repeat(MAX_FILE_BYTES as usize);
        text.push('\n');
        std::fs::write(dir.path().join("pipelines/big.yaml"), &text).unwrap();
        std::fs::write(
            dir.path().join("pipelines/at-limit.yaml"),
            &text[1..], // exactly the limit
        )
        .unwrap();
        let (sources, diags) = read_project(dir.path(), &no_env);
        assert_eq!(
            errors(&diags),
            vec!["pipelines/big.yaml: file is larger than 4 MiB (the limit for one file, CROSSDOCK_MAX_FILE_SIZE); it is not read"]
        );
        assert_eq!(sources.pipelines.len(), 1);
    }

    #[test]
    fn files_past_the_project_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        project(dir.path());
        let text = format!("{}\n", "#".repeat(MAX_FILE_BYTES as usize - 1));
        let fit = MAX_PROJECT_BYTES / MAX_FILE_BYTES; // the project file takes a few bytes too
        for i in 0..fit {
            std::fs::write(dir.path().join(format!("pipelines/p{i:02}.yaml")), &text).unwrap();
        }
        let (sources, diags) = read_project(dir.path(), &no_env);
        let errors = errors(&diags);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!(
                "pipelines/p{:02}.yaml: the project's files",
                fit - 1
            )),
            "{errors:?}"
        );
        assert_eq!(sources.pipelines.len() as u64, fit - 1);
    }

    #[test]
    fn the_environment_sets_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        project(dir.path());
        std::fs::write(dir.path().join("pipelines/a.yaml"), "#".repeat(1500)).unwrap();
        std::fs::write(dir.path().join("pipelines/b.yaml"), "#".repeat(900)).unwrap();
        let env = |v: &str| (v == MAX_FILE_SIZE_VAR).then(|| "1KB".to_string());
        let (_, diags) = read_project(dir.path(), &env);
        assert_eq!(
            errors(&diags),
            vec!["pipelines/a.yaml: file is larger than 1 KiB (the limit for one file, CROSSDOCK_MAX_FILE_SIZE); it is not read"]
        );
        let env = |v: &str| (v == MAX_PROJECT_SIZE_VAR).then(|| "2000".to_string());
        let (_, diags) = read_project(dir.path(), &env);
        assert_eq!(
            errors(&diags),
            vec!["pipelines/b.yaml: the project's files come to more than 2000 bytes with this one (the limit for all of them together, CROSSDOCK_MAX_PROJECT_SIZE); it is not read"]
        );
        let env = |v: &str| (v == MAX_PROJECT_SIZE_VAR).then(|| "lots".to_string());
        let (_, diags) = read_project(dir.path(), &env);
        assert_eq!(errors(&diags).len(), 1, "{:?}", errors(&diags));
        assert!(errors(&diags)[0].starts_with(
            "CROSSDOCK_MAX_PROJECT_SIZE: CROSSDOCK_MAX_PROJECT_SIZE in the environment"
        ));
    }
}
