//! `crossdock dry-run`.
//!
//! A large JSON-lines input runs on three threads: one reads and parses the lines, the command's
//! own runs the events in order (each may read the state the ones before wrote), and one
//! serialises and writes the outcomes. Buffers go back to the thread that allocated them, to be
//! reused or freed there.

use std::collections::BTreeMap;
use std::io::Read;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::Value;

use crate::config::diag::did_you_mean;
use crate::config::env::EnvLookup;
use crate::config::env::Redactor;
use crate::flow::event::{event_info, EventSpec};
use crate::flow::input::{decode, each_json_line, Body, DecodeError, Decoded, InputFormat};
use crate::flow::{load, CompileOptions, Outcome};
use crate::state::overlay::Overlay;
use crate::state::{MemoryStore, StateChange, StateStore};

use super::remote::{RemoteStore, Target};

pub struct Args<'a> {
    pub project: &'a Path,
    pub pipeline: &'a str,
    pub input: &'a str,
    pub json: bool,
    pub headers: &'a [String],
    pub received_at: Option<&'a str>,
    /// `CONNECTOR.OP=FILE`: answers for fetch steps.
    pub fetch: &'a [String],
    /// The running engine's address, to read its state.
    pub url: Option<&'a str>,
    pub env: EnvLookup<'a>,
}

pub fn run(args: Args<'_>) -> ExitCode {
    let project = match load(args.project, args.env, CompileOptions::default()) {
        Ok((project, _)) => project,
        Err(diags) => {
            super::print_diagnostics(&diags);
            eprintln!(
                "{}; fix the project before a dry run (see `crossdock check`)",
                diags.summary()
            );
            return ExitCode::from(1);
        }
    };
    let Some(flow) = project.pipeline(args.pipeline) else {
        let help = did_you_mean(args.pipeline, project.pipelines.keys().map(String::as_str))
            .unwrap_or_else(|| {
                format!(
                    "pipelines: {}",
                    project
                        .pipelines
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        eprintln!("no pipeline named `{}`; {help}", args.pipeline);
        return ExitCode::from(1);
    };
    let mut headers = BTreeMap::new();
    for h in args.headers {
        match h.split_once(['=', ':']) {
            Some((k, v)) => {
                headers.insert(k.trim().to_string(), v.trim().to_string());
            }
            None => {
                eprintln!("--header `{h}`: write NAME=VALUE");
                return ExitCode::from(2);
            }
        }
    }
    // Every event of one dry run is received when the run starts: the output does not depend
    // on how long the events before took.
    let received_at = args
        .received_at
        .map(str::to_string)
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let spec = EventSpec {
        id: None,
        received_at: Some(received_at),
        headers,
    };

    let mut given = crate::flow::GivenAnswers {
        answers: BTreeMap::new(),
        hint: "give it with --fetch CONNECTOR.OP=FILE",
    };
    for f in args.fetch {
        let Some((key, file)) = f.split_once('=') else {
            eprintln!("--fetch `{f}`: write CONNECTOR.OP=FILE");
            return ExitCode::from(2);
        };
        let answer = std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()));
        match answer {
            Ok(v) => {
                given.answers.insert(key.trim().to_string(), v);
            }
            Err(e) => {
                eprintln!("--fetch {key}: cannot read {file}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    // Reads see the project's state; writes land in an overlay and are only reported.
    let base = match project_state(&project, args.url, args.env) {
        Ok(base) => base,
        Err(e) => {
            eprintln!("{}", project.redactor.redact(&e.to_string()));
            return ExitCode::from(1);
        }
    };
    let overlay = Arc::new(Overlay::new(base));
    let state: Arc<dyn StateStore> = overlay.clone();
    let mut seen: BTreeMap<String, Option<Value>> = BTreeMap::new();
    let mut mark = 0;
    let mut all_ok = true;
    let mut count = 0usize;
    let format = InputFormat::for_path(args.input, Some(&flow.source));
    // Outcomes are written on a thread of their own: serialising and writing them is a
    // quarter of a large dry run's work, and runs beside the next events' flows. Events run
    // here, one after another, because each may read the state changes of the ones before.
    let (sink, printer, done) =
        Printer::start(args.json, project.redactor.clone(), notes(&project));
    let mut batch = Vec::with_capacity(BATCH);
    // Records of printed outcomes, for the next events' mappings to build into.
    let spares: std::cell::RefCell<Vec<Value>> = std::cell::RefCell::default();
    let mut next_event = || {
        count += 1;
        event_info(&flow.name, Some(&spec), count, "dry-run")
    };
    let mut finish = |mut outcome: Outcome, label: Option<String>| -> bool {
        let (touched, next) = overlay.changes_since(mark);
        mark = next;
        outcome.state_changes = new_changes(&touched, &mut seen);
        all_ok &= outcome.ok();
        batch.push((outcome, label));
        if batch.len() < BATCH {
            return true;
        }
        // Printed batches come back here, where they were allocated: their records are built
        // into again, and the rest is freed by this thread (freed on the printer's thread,
        // their memory went back through the allocator's cross-thread queues, which cost this
        // thread a tenth of its time).
        let empty = match done.try_recv() {
            Ok(mut printed) => {
                let mut spares = spares.borrow_mut();
                for (outcome, _) in printed.drain(..) {
                    if spares.len() < 2 * BATCH {
                        spares.push(outcome.into_record());
                    }
                }
                printed
            }
            Err(_) => Vec::with_capacity(BATCH),
        };
        // A closed channel: the printer stopped because the reader went away (`| head`).
        sink.send(std::mem::replace(&mut batch, empty)).is_ok()
    };
    let read = if format == InputFormat::JsonLines && args.input != "-" {
        // JSON lines are read a block at a time (the file may be many megabytes) and parsed
        // ahead on a thread of their own: parsing needs no state, and was a third of the work.
        std::fs::File::open(args.input).and_then(|file| {
            let seen_any = each_parsed_line(file, flow, |line| {
                let event = next_event();
                let outcome = match line.error.take() {
                    Some(message) => flow.unreadable(event, &line.label, message),
                    None => {
                        let (outcome, body) = flow.run_parsed_lending(
                            &project.rules,
                            event,
                            std::mem::take(&mut line.body),
                            &line.bytes,
                            &state,
                            &given,
                            spares.borrow_mut().pop(),
                        );
                        line.body = body.unwrap_or_default();
                        outcome
                    }
                };
                finish(outcome, (!args.json).then(|| line.label.clone()))
            })?;
            if !seen_any {
                let empty = empty_input();
                let outcome = flow.run_body(
                    &project.rules,
                    next_event(),
                    empty.body,
                    &empty.label,
                    &state,
                    &given,
                    crate::flow::RunOptions::keeping(crate::flow::Keep::Lent),
                );
                finish(outcome, None);
            }
            Ok(())
        })
    } else {
        let mut one = |decoded: Decoded<'_>, many: bool| -> bool {
            let outcome = flow.run_body(
                &project.rules,
                next_event(),
                decoded.body,
                &decoded.label,
                &state,
                &given,
                crate::flow::RunOptions::keeping(crate::flow::Keep::Lent),
            );
            finish(outcome, many.then_some(decoded.label))
        };
        read_input(args.input).map(|bytes| {
            let events = decode(&bytes, format);
            let many = events.len() > 1;
            for decoded in events {
                if !one(decoded, many) {
                    break;
                }
            }
        })
    };
    if !batch.is_empty() {
        // An error here is the printer's, and its answer below says so.
        let _ = sink.send(batch);
    }
    drop(sink);
    let printed = printer.join().unwrap_or(false);
    if let Err(e) = read {
        eprintln!("cannot read {}: {e}", args.input);
        return ExitCode::from(1);
    }
    if all_ok && printed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// One line of a JSON-lines input, parsed ahead by [`each_parsed_line`]. Handed back and forth
/// between the threads, so that its buffers are reused rather than freed and allocated again.
#[derive(Default)]
struct ParsedLine {
    label: String,
    /// The line as read: an event that no step changes is shown as it came.
    bytes: Vec<u8>,
    /// What the flow reads of it, unless `error`.
    body: Value,
    error: Option<String>,
}

/// Reads JSON lines from `file` and parses each on a thread of its own, ahead of `each`, which
/// gets them in order on this thread and returns false to stop. Returns whether any event was
/// seen, as [`each_json_line`] does.
fn each_parsed_line(
    file: std::fs::File,
    flow: &crate::flow::Flow,
    mut each: impl FnMut(&mut ParsedLine) -> bool,
) -> std::io::Result<bool> {
    let (sink, parsed) = std::sync::mpsc::sync_channel::<Vec<ParsedLine>>(4);
    let (give_back, used) = std::sync::mpsc::sync_channel::<Vec<ParsedLine>>(4);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut pool: Vec<ParsedLine> = Vec::new();
            let mut batch = Vec::with_capacity(BATCH);
            let seen = each_json_line(file, |decoded| {
                if pool.is_empty() {
                    pool = used.try_recv().unwrap_or_default();
                }
                let mut line = pool.pop().unwrap_or_default();
                line.label = decoded.label;
                line.bytes.clear();
                line.error = match decoded.body {
                    Ok(Body::Json(bytes)) => {
                        line.bytes.extend_from_slice(bytes);
                        flow.parse_into(bytes, &mut line.body)
                            .err()
                            .map(|e| e.to_string())
                    }
                    Ok(Body::Value(value)) => {
                        line.body = value;
                        None
                    }
                    Err(e) => Some(e.to_string()),
                };
                batch.push(line);
                if batch.len() < BATCH {
                    return true;
                }
                // A closed channel: the events stopped (the output's reader went away).
                sink.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .is_ok()
            });
            if !batch.is_empty() {
                let _ = sink.send(batch);
            }
            seen
        });
        for mut lines in parsed {
            if !lines.iter_mut().all(&mut each) {
                break;
            }
            let _ = give_back.try_send(lines);
        }
        reader
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the thread reading the input failed")))
    })
}

/// The one event of an input with nothing in it, so that the output says so.
fn empty_input() -> Decoded<'static> {
    Decoded {
        label: "input".into(),
        body: Err(DecodeError::Empty),
    }
}

/// The thread that renders outcomes and writes them to standard output, in the order sent.
struct Printer;

/// What a call adds that its payload does not show (a signature's parameters), by connector
/// and operation, said once per action in the readable view.
type Notes = BTreeMap<(String, String), String>;

fn notes(project: &crate::flow::Project) -> Notes {
    let mut notes = Notes::new();
    for (name, config) in &project.connectors {
        let kind = config.as_kind();
        for op in kind.operations() {
            if let Some(note) = kind.describe_call(&op) {
                notes.insert((name.clone(), op), note);
            }
        }
    }
    notes
}

/// Outcomes with their labels (for the readable view of many events), handed over in batches:
/// one hand-over per outcome cost a thread wake-up each, more than the printing it moved.
type Printed = Vec<(Outcome, Option<String>)>;
const BATCH: usize = 64;

impl Printer {
    /// The sending end, and the thread, which answers whether every outcome was written.
    fn start(
        json: bool,
        redactor: Redactor,
        notes: Notes,
    ) -> (
        std::sync::mpsc::SyncSender<Printed>,
        std::thread::JoinHandle<bool>,
        std::sync::mpsc::Receiver<Printed>,
    ) {
        // Bounded, so that a slow reader of the output holds the flows back instead of
        // filling memory.
        let (sink, batches) = std::sync::mpsc::sync_channel::<Printed>(4);
        // Printed batches go back to be freed by the thread that made them.
        let (give_back, done) = std::sync::mpsc::sync_channel::<Printed>(4);
        let thread = std::thread::spawn(move || {
            // One write per buffer, not per line: a dry run over a large file prints many.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut text = Vec::new();
            let mut all_shown = true;
            for batch in batches {
                let print = (&batch, json, &redactor, &notes);
                if !Self::print(print, &mut out, &mut text, &mut all_shown) {
                    return false;
                }
                // When the flow thread has not taken the last ones back yet, free these here.
                let _ = give_back.try_send(batch);
            }
            out.flush().is_ok() && all_shown
        });
        (sink, thread, done)
    }

    /// Writes a batch; false when the reader went away.
    fn print(
        (batch, json, redactor, notes): (&Printed, bool, &Redactor, &Notes),
        out: &mut impl Write,
        text: &mut Vec<u8>,
        all_shown: &mut bool,
    ) -> bool {
        for (outcome, label) in batch {
            text.clear();
            if json {
                if let Err(e) = outcome.write_json(text) {
                    eprintln!("cannot print the outcome of {}: {e}", outcome.event_id);
                    *all_shown = false;
                    continue;
                }
            } else {
                text.extend_from_slice(render(outcome, label.as_deref(), notes).as_bytes());
            }
            text.push(b'\n');
            let shown = redactor.redact_bytes(text);
            if out.write_all(&shown).is_err() {
                // The reader went away (`| head`): nothing more can be shown.
                return false;
            }
        }
        true
    }
}

/// The project's sled state when it exists (a dry run never creates one), else empty; while
/// an engine serves the project, its live state, read through its admin API.
fn project_state(
    project: &crate::flow::Project,
    url: Option<&str>,
    env: EnvLookup<'_>,
) -> Result<Arc<dyn StateStore>, super::remote::RemoteError> {
    Ok(
        match super::remote::locate(project, url, None, env, false)? {
            Target::Local(Some(store)) => store,
            Target::Local(None) => Arc::new(MemoryStore::default()),
            Target::Engine(admin) => Arc::new(RemoteStore::new(admin)),
        },
    )
}

fn read_input(path: &str) -> std::io::Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

/// The changes the last event made, from the keys it touched: those whose value differs from
/// what the events before it left (or from the store, for a key no event changed yet).
fn new_changes(
    touched: &[StateChange],
    seen: &mut BTreeMap<String, Option<Value>>,
) -> Vec<StateChange> {
    let mut out = Vec::new();
    for c in touched {
        let previous = seen.get(&c.key).unwrap_or(&c.before);
        if *previous != c.after {
            out.push(StateChange {
                key: c.key.clone(),
                before: previous.clone(),
                after: c.after.clone(),
            });
            seen.insert(c.key.clone(), c.after.clone());
        }
    }
    out
}

/// The readable view: the same facts as the JSON, laid out for a person.
fn render(o: &Outcome, label: Option<&str>, notes: &Notes) -> String {
    let mut s = String::new();
    let from = label.map(|l| format!(" ({l})")).unwrap_or_default();
    s.push_str(&format!("── {} · event {}{from}\n", o.pipeline, o.event_id));
    if !o.triggered {
        if o.errors.is_empty() {
            s.push_str("not triggered: the trigger did not match; the event would be acknowledged and skipped\n");
        }
    } else if o.filtered {
        s.push_str("triggered, then dropped by a filter\n");
    } else {
        s.push_str("triggered\n");
    }
    if o.actions.is_empty() {
        s.push_str("actions: none\n");
    } else {
        s.push_str(&format!("actions ({}):\n", o.actions.len()));
        for (i, a) in o.actions.iter().enumerate() {
            let object = a
                .object
                .as_ref()
                .map(|x| format!(" {x}"))
                .unwrap_or_default();
            let key = a
                .key
                .as_ref()
                .map(|k| format!(" by {k}"))
                .unwrap_or_default();
            s.push_str(&format!(
                "  {}. {} {}{object}{key}\n",
                i + 1,
                a.connector,
                a.op
            ));
            s.push_str(&indent(&pretty(&a.payload), 5));
            if let Some(note) = notes.get(&(a.connector.to_string(), a.op.to_string())) {
                s.push_str(&indent(note, 5));
            }
        }
    }
    if !o.state_changes.is_empty() {
        s.push_str("state changes:\n");
        for c in &o.state_changes {
            let show =
                |v: &Option<Value>| v.as_ref().map_or("(none)".to_string(), |v| v.to_string());
            s.push_str(&format!(
                "  {}: {} → {}\n",
                c.key,
                show(&c.before),
                show(&c.after)
            ));
        }
    }
    if o.errors.is_empty() {
        s.push_str("errors: none\n");
    } else {
        s.push_str("errors:\n");
        for e in &o.errors {
            s.push_str(&format!("  {e}\n"));
        }
    }
    s
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}
