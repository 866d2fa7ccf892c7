//! From project sources to a compiled [`Project`], collecting every problem in one pass.
//!
//! This file orchestrates: it reads `crossdock.yaml`, compiles connectors, scripts and mappings,
//! then each pipeline (its source, steps, `on_error`) through one [`StepCx`], and assembles the
//! [`Project`]. The pieces live beside it: `connectors.rs`, `library.rs` (scripts and
//! mappings), `sources.rs` (sources and the `server:`/`state:` settings), `steps.rs`,
//! `reads.rs` (what a flow reads of the body) and `env.rs` (unset `${VAR}`s).

mod cluster;
mod connectors;
mod env;
mod library;
mod reads;
mod settings;
mod sources;
mod steps;
mod target;
mod tenants;
mod webhook;

use self::connectors::compile_connectors;
use self::env::report_env;
use self::library::{compile_mappings, compile_scripts, mapping_limits};
use self::reads::NeedBuilder;
use self::settings::{check_on_error, check_server};
use self::sources::{check_source, SourceClaims};
use self::steps::{compile_steps, mark_movable_payloads};
use self::webhook::check_catch_up;
use super::{Flow, Project};
use crate::config::diag::{Code, Diagnostics};
use crate::config::env::{EnvLookup, Redactor};
use crate::config::model::{CatchUpConfig, OnErrorConfig, SourceConfig as Source};
use crate::config::model::{PipelineFile, ProjectFile};
use crate::config::span::{PathSeg, Pos, ScalarStyle};
use crate::config::{ProjectSources, YamlFile};
use crate::connectors::ConnectorConfig;
use crate::jsonpath::JsonPath;
use crate::mapping::{self, Mapping};
use crate::projection::Need;
use crate::rules::{Expr, RuleError, Rules, Script};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// How strict loading is about the environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions {
    /// Every unset `${VAR}` without a default is an error (`check --strict`).
    pub strict_env: bool,
    /// Unset variables in a connector that a pipeline sends to are errors (`run`).
    pub for_run: bool,
}

/// Reads and compiles the project in `dir`. On success, also returns the warnings.
pub fn load(
    dir: &Path,
    env: EnvLookup<'_>,
    opts: CompileOptions,
) -> Result<(Project, Diagnostics), Diagnostics> {
    load_edited(dir, env, opts, None)
}

/// As [`load`], with one file's text given instead of read (`config::Edit`): the same compile
/// `check` runs, over the project as it would be with that text saved.
pub fn load_edited(
    dir: &Path,
    env: EnvLookup<'_>,
    opts: CompileOptions,
    edit: Option<crate::config::Edit<'_>>,
) -> Result<(Project, Diagnostics), Diagnostics> {
    let (sources, mut diags) = crate::config::read_project_edited(dir, env, edit);
    let compiled = compile(&sources, opts);
    match compiled {
        Ok((project, warnings)) if !diags.has_errors() => {
            diags.extend(warnings);
            Ok((project, diags.sorted()))
        }
        Ok((_, warnings)) => {
            diags.extend(warnings);
            Err(diags.sorted())
        }
        Err(more) => {
            diags.extend(more);
            Err(diags.sorted())
        }
    }
}

/// One connector's config as `run` builds it (variables filled in), without compiling the rest
/// of the project: for a command that talks to one connector (`schema pull`), which must work
/// while the pipelines do not check (it is how a misspelt field gets its describe).
pub fn connector_config(
    root: &Path,
    env: EnvLookup<'_>,
    name: &str,
) -> Result<ConnectorConfig, Diagnostics> {
    let (sources, mut diags) = crate::config::read_project(root, env);
    let file = match &sources.project {
        Some(file) => file,
        None => return Err(diags.sorted()),
    };
    let Some(config) = deserialize::<ProjectFile>(file, &mut diags) else {
        return Err(diags.sorted());
    };
    let mut found = Diagnostics::default();
    let mut connectors = compile_connectors(
        &sources.root,
        &config,
        file,
        &mut BTreeMap::new(),
        &mut BTreeMap::new(),
        &mut BTreeMap::new(),
        &mut found,
    );
    // Its calls would go out with `${VAR}` written in them: say which variables instead.
    for (path, var, pos) in &file.doc.unset_vars {
        if path.get(..2) == Some(&[key("connectors"), key(name)]) {
            found.push(
                file.error(*pos, format!("${{{var}}} is not set and has no default"))
                    .with_code(Code::UnsetEnv)
                    .with_help(format!("export {var}=... to reach the connector")),
            );
        }
    }
    if found.has_errors() {
        return Err(found.sorted());
    }
    match connectors.remove(name) {
        Some(Some(c)) => Ok(c),
        Some(None) => Err(found.sorted()),
        None => {
            let at = file.doc.spans.key_pos(&[key("connectors")]);
            let help =
                crate::config::diag::did_you_mean(name, connectors.keys().map(String::as_str))
                    .unwrap_or_else(|| {
                        let names: Vec<&str> = connectors.keys().map(String::as_str).collect();
                        format!("the connectors are {}", names.join(", "))
                    });
            let mut d = Diagnostics::default();
            d.push(
                file.error(at, format!("no connector named `{name}`"))
                    .with_code(Code::UnknownName)
                    .with_help(help),
            );
            Err(d)
        }
    }
}

/// Compiles sources that have been read. Errors and warnings come back together on failure.
pub fn compile(
    sources: &ProjectSources,
    opts: CompileOptions,
) -> Result<(Project, Diagnostics), Diagnostics> {
    let mut diags = Diagnostics::default();
    let rules = Rules::default();
    let mut fallbacks = BTreeMap::new();
    let mut breakers = BTreeMap::new();
    let mut tenant_lists = BTreeMap::new();
    let tenants = tenants::compile_tenants(sources, &mut diags);

    let config = sources
        .project
        .as_ref()
        .and_then(|f| deserialize::<ProjectFile>(f, &mut diags));
    if let (Some(c), Some(file)) = (&config, &sources.project) {
        check_server(&c.server, &c.state, file, &mut diags);
        if let Some(cluster) = &c.cluster {
            cluster::check_cluster(&sources.root, cluster, file, &mut diags);
        }
    }
    let connectors = match (&config, &sources.project) {
        (Some(c), Some(file)) => Some(compile_connectors(
            &sources.root,
            c,
            file,
            &mut fallbacks,
            &mut breakers,
            &mut tenant_lists,
            &mut diags,
        )),
        // Without a readable crossdock.yaml no connector is known; saying so at every `send`
        // would bury the one real problem.
        _ => None,
    };
    let no_connectors = BTreeMap::new();
    let tenant_connectors = match (&config, &sources.project) {
        (Some(c), Some(file)) => {
            tenants::expand_connectors(file, &c.connectors, &tenant_lists, &tenants, &mut diags)
        }
        _ => BTreeMap::new(),
    };

    let scripts = compile_scripts(sources, &rules, &mut diags);
    let limits = match (&config, &sources.project) {
        (Some(c), Some(file)) => mapping_limits(&c.limits, file, &mut diags),
        _ => mapping::Limits::default(),
    };
    let mut mapping_writes = target::MappingWrites::new();
    let mappings = compile_mappings(sources, &rules, &limits, &mut mapping_writes, &mut diags);
    let script_files: HashMap<String, &crate::config::SourceFile> = sources
        .scripts
        .iter()
        .map(|f| (crate::config::stem(&f.path), f))
        .collect();
    let mut target_schemas = HashMap::new();
    let mut target_reported = std::collections::HashSet::new();

    let dedup_window = config
        .as_ref()
        .and_then(|c| c.server.dedup_window.as_deref())
        .and_then(|w| humantime::parse_duration(w).ok())
        .unwrap_or(crate::config::model::DEFAULT_DEDUP_WINDOW);
    let mut pipelines = BTreeMap::new();
    let mut claims = SourceClaims::default();
    let mut used_connectors: Vec<String> = Vec::new();
    for file in &sources.pipelines {
        let Some(spec) = deserialize::<PipelineFile>(file, &mut diags) else {
            continue;
        };
        if let Some(connectors) = &connectors {
            target::check_sends(
                &mut target::TargetCx {
                    root: &sources.root,
                    file,
                    connectors,
                    mappings: &mapping_writes,
                    scripts: &scripts,
                    script_files: &script_files,
                    schemas: &mut target_schemas,
                    reported: &mut target_reported,
                    diags: &mut diags,
                },
                &spec.steps,
            );
        }
        let mut cx = StepCx {
            file,
            rules: &rules,
            mappings: &mappings,
            scripts: &scripts,
            connectors: connectors.as_ref().unwrap_or(&no_connectors),
            connectors_known: connectors.is_some(),
            diags: &mut diags,
            used_connectors: &mut used_connectors,
            reads_event_body: false,
            tenants: &tenants,
            tenant_connectors: &tenant_connectors,
            dedup_window,
            event_tenants: EventTenants::Unknown,
        };
        let flow = compile_pipeline(&mut cx, spec, &mut claims);
        if let Some(flow) = flow {
            if pipelines.contains_key(&flow.name) {
                let at = file.doc.spans.value_pos(&[key("pipeline")]);
                diags.push(file.error(
                    at,
                    format!(
                        "a pipeline named `{}` is defined in another file too",
                        flow.name
                    ),
                ));
            } else {
                pipelines.insert(flow.name.clone(), Arc::new(flow));
            }
        }
    }

    let unconfigured = report_env(sources, opts, &used_connectors, &fallbacks, &mut diags);

    let diags = diags.sorted();
    match config {
        Some(config) if !diags.has_errors() => Ok((
            Project {
                connector_pos: match &sources.project {
                    Some(file) => config
                        .connectors
                        .keys()
                        .map(|name| {
                            let at = [key("connectors"), key(name)];
                            (name.clone(), file.doc.spans.key_pos(&at))
                        })
                        .collect(),
                    None => BTreeMap::new(),
                },
                root: sources.root.clone(),
                version: sources.version.clone(),
                files: sources.files.clone(),
                connectors: connectors
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect(),
                config,
                rules,
                pipelines,
                unconfigured,
                breakers,
                redactor: Redactor::new(sources.secrets()),
                tenants,
                tenant_connectors,
            },
            diags,
        )),
        _ => Err(diags),
    }
}

fn key(s: &str) -> PathSeg {
    PathSeg::Key(s.to_string())
}

fn deserialize<T: serde::de::DeserializeOwned>(
    file: &YamlFile,
    diags: &mut Diagnostics,
) -> Option<T> {
    if file.doc.value.is_null() {
        diags.push(
            file.error(Pos { line: 1, col: 1 }, "file is empty")
                .with_code(Code::EmptyFile),
        );
        return None;
    }
    file.section(&file.doc.value, &[], diags)
}

/// Names that exist but failed to compile map to `None`, so references to them do not add a
/// second, misleading "no such" error.
type Compiled<T> = HashMap<String, Option<Arc<T>>>;

/// The string at `path` in the file's document, if it is one.
fn scalar_text(file: &YamlFile, path: &[PathSeg]) -> Option<String> {
    let mut at = &file.doc.value;
    for seg in path {
        at = match seg {
            PathSeg::Key(k) => at.get(k)?,
            PathSeg::Index(i) => at.get(i)?,
        };
    }
    at.as_str().map(str::to_string)
}

/// The file name is how people find a pipeline or mapping: a name that differs is a warning.
fn check_name(file: &YamlFile, name: &str, what: &str, diags: &mut Diagnostics) {
    let stem = file.stem();
    if stem != name {
        let at = file.doc.spans.value_pos(&[key(what)]);
        diags.push(
            file.warning(at, format!("{what} `{name}` is in a file named `{stem}`"))
                .with_code(Code::FileName)
                .with_help(format!(
                    "name the file after the {what}, or the {what} after the file"
                )),
        );
    }
}

struct StepCx<'a> {
    file: &'a YamlFile,
    rules: &'a Rules,
    mappings: &'a Compiled<Mapping>,
    scripts: &'a Compiled<Script>,
    connectors: &'a BTreeMap<String, Option<ConnectorConfig>>,
    connectors_known: bool,
    diags: &'a mut Diagnostics,
    used_connectors: &'a mut Vec<String>,
    /// The project's tenants lists, for webhooks that choose a tenant.
    tenants: &'a BTreeMap<String, crate::flow::tenants::TenantList>,
    /// Connectors built per tenant, which only events with a tenant can use.
    tenant_connectors: &'a BTreeMap<String, crate::flow::TenantConnector>,
    /// Which tenants the pipeline's events have, so a connector built per tenant is known to
    /// serve them.
    event_tenants: EventTenants,
    /// `server.dedup_window`, which a catch-up's lookback should not outrun.
    dedup_window: std::time::Duration,
    /// Some Rhai in this pipeline reads `event.body` (or `event` whole), so bodies must be
    /// parsed whole.
    reads_event_body: bool,
}

impl StepCx<'_> {
    /// Deserialises one raw section of the file, reporting a failure as a diagnostic.
    fn section<T: serde::de::DeserializeOwned>(
        &mut self,
        raw: &serde_json::Value,
        path: &[PathSeg],
    ) -> Option<T> {
        self.file.section(raw, path, self.diags)
    }

    fn error_at(&mut self, path: &[PathSeg], message: impl Into<String>, help: Option<String>) {
        self.error_with(Code::InvalidValue, path, message, help)
    }

    fn error_with(
        &mut self,
        code: Code,
        path: &[PathSeg],
        message: impl Into<String>,
        help: Option<String>,
    ) {
        let at = self.file.doc.spans.value_pos(path);
        let d = self.file.error(at, message).with_code(code);
        self.diags.push(match help {
            Some(h) => d.with_help(h),
            None => d,
        });
    }

    /// Compiles an inline Rhai expression, pointing errors at the YAML scalar's own text.
    fn expr(&mut self, path: &[PathSeg], src: &str) -> Option<Expr> {
        match self.rules.compile_expr(src) {
            Ok(e) => {
                self.reads_event_body |= e.reads_event_body();
                Some(e)
            }
            Err(e) => {
                let at = self.pos_in_scalar(path, src, &e);
                self.diags.push(
                    self.file
                        .error(at, format!("Rhai: {}", e.message))
                        .with_code(Code::Rhai),
                );
                None
            }
        }
    }

    fn pos_in_scalar(&self, path: &[PathSeg], src: &str, e: &RuleError) -> Pos {
        let spans = &self.file.doc.spans;
        let (line, col) = (e.line.unwrap_or(1), e.col.unwrap_or(1));
        match spans.get(path).and_then(|s| s.style) {
            Some(ScalarStyle::Inline { .. }) => {
                let offset: usize = src
                    .split_inclusive('\n')
                    .take(line - 1)
                    .map(str::len)
                    .sum::<usize>()
                    + src
                        .lines()
                        .nth(line - 1)
                        .map_or(0, |l| l.chars().take(col - 1).map(char::len_utf8).sum());
                spans.offset_pos(path, src, offset)
            }
            Some(ScalarStyle::Block) => {
                // A block scalar's text starts on the line after its indicator, indented.
                let start = spans.value_pos(path);
                let file_line = start.line + line;
                let indent = self
                    .file
                    .file
                    .text
                    .lines()
                    .nth(file_line - 1)
                    .map_or(0, |l| l.chars().take_while(|c| *c == ' ').count());
                Pos {
                    line: file_line,
                    col: indent + col,
                }
            }
            None => spans.value_pos(path),
        }
    }

    fn jsonpath(&mut self, path: &[PathSeg], src: &str) -> Option<JsonPath> {
        match JsonPath::parse(src) {
            Ok(p) => Some(p),
            Err(e) => {
                let at = self.file.doc.spans.offset_pos(path, src, e.offset);
                self.diags.push(
                    self.file
                        .error(at, format!("JSONPath `{src}`: {}", e.message))
                        .with_code(Code::Jsonpath),
                );
                None
            }
        }
    }
}

/// The tenants a pipeline's events have, as its source decides.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EventTenants {
    /// The source has its own error, so nothing is known.
    Unknown,
    /// None: a webhook without `tenants:`, a poll, a schedule, a file.
    None,
    /// Tenants of this list: the webhook's `tenants: { list: ... }`.
    Of(String),
}

fn compile_pipeline(
    cx: &mut StepCx<'_>,
    spec: PipelineFile,
    claims: &mut SourceClaims,
) -> Option<Flow> {
    let file = cx.file;
    check_name(file, &spec.pipeline, "pipeline", cx.diags);
    let errors_before = cx.diags.errors().count();

    let source = cx.section::<Source>(&spec.source, &[key("source")]);
    // A source that did not parse has its own error; its steps are not blamed for it.
    cx.event_tenants = match &source {
        Some(Source::Webhook(w)) => w
            .tenants
            .as_ref()
            .map_or(EventTenants::None, |t| EventTenants::Of(t.list.clone())),
        Some(_) => EventTenants::None,
        None => EventTenants::Unknown,
    };
    let webhook = source
        .as_ref()
        .and_then(|source| check_source(cx, source, claims))
        .map(Arc::new);
    let catch_up = match &spec.catch_up {
        Some(raw) => {
            let catch_up = cx.section::<CatchUpConfig>(raw, &[key("catch_up")]);
            if let (Some(c), Some(s)) = (&catch_up, &source) {
                check_catch_up(cx, c, s);
            }
            catch_up
        }
        None => None,
    };
    let trigger = spec
        .trigger
        .as_ref()
        .and_then(|t| cx.expr(&[key("trigger"), key("when")], &t.when));
    if spec.steps.is_empty() {
        cx.error_at(&[key("steps")], "a pipeline needs at least one step", None);
    }
    let mut need = NeedBuilder {
        need: Need::default(),
        open: true,
    };
    match (&spec.trigger, &trigger) {
        (Some(_), Some(t)) => need.add(|n| t.add_reads_to(n)),
        (Some(_), None) => need.all(),
        (None, _) => {}
    }
    let mut steps = compile_steps(cx, &spec.steps, &[key("steps")], Some(&mut need));
    mark_movable_payloads(&mut steps);
    let keys = compile_keys(cx, &spec.keys);
    let need = crate::projection::BodyParser::new(if cx.reads_event_body {
        Need::All
    } else {
        // Keys are read of the body as received, whatever the steps replace.
        let mut need = need.finish();
        for (_, path) in &keys {
            need.add_jsonpath(path.as_str());
        }
        need
    });
    let on_error = match &spec.on_error {
        Some(raw) => {
            let on_error = cx.section::<OnErrorConfig>(raw, &[key("on_error")]);
            if let Some(o) = &on_error {
                check_on_error(cx, o);
            }
            on_error
        }
        None => None,
    };

    let ordering_key = spec.ordering_key.as_ref().and_then(|src| {
        let path = cx.jsonpath(&[key("ordering_key")], src)?;
        let mut need = Need::default();
        need.add_jsonpath(src);
        Some(crate::flow::OrderingKey {
            path,
            parser: crate::projection::BodyParser::new(need),
        })
    });

    if cx.diags.errors().count() > errors_before {
        return None;
    }
    Some(Flow {
        name: spec.pipeline,
        description: spec.description,
        file: file.file.path.clone(),
        source: source?,
        catch_up,
        on_error,
        concurrency: spec.concurrency.filter(|n| *n > 0),
        trigger,
        steps,
        need,
        webhook,
        keys,
        ordering_key,
    })
}

/// Correlation keys an event may carry at most: each is an index entry written with its trail.
pub const MAX_KEYS: usize = 8;

/// `keys:`: each name checked and its JSONPath compiled, plain paths only (one value each,
/// found without a budget to count).
fn compile_keys(
    cx: &mut StepCx<'_>,
    keys: &std::collections::BTreeMap<String, String>,
) -> Vec<(Arc<str>, JsonPath)> {
    if keys.len() > MAX_KEYS {
        cx.error_at(
            &[key("keys")],
            format!(
                "a pipeline declares at most {MAX_KEYS} keys, not {}",
                keys.len()
            ),
            None,
        );
    }
    let mut out = Vec::new();
    for (name, src) in keys {
        let at = [key("keys"), key(name)];
        let good_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !good_name {
            cx.error_at(
                &at,
                format!("key name `{name}`: use letters, digits, `_` and `-` (at most 64)"),
                None,
            );
            continue;
        }
        let Some(path) = cx.jsonpath(&at, src) else {
            continue;
        };
        if !path.is_singular() {
            cx.error_at(
                &at,
                format!("key `{name}`: `{src}` may select several values; a key takes a plain path of names and indexes, such as `$.data.id`"),
                None,
            );
            continue;
        }
        out.push((Arc::from(name.as_str()), path));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
