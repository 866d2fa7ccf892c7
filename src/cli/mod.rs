//! The command line: argument parsing and printing, nothing else.
//!
//! Every command calls the library (`flow::load`, `Flow::run`, `testing::run_all`) and turns
//! the answer into text and an exit code. This is the only module that prints.
#![allow(clippy::print_stdout)]

mod check;
mod dlq;
mod dry_run;
mod init;
mod remote;
mod report;
mod run;
mod schema;
mod state;
mod test;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "crossdock",
    version,
    about = "Declarative integration engine for commerce: YAML pipelines, JSONPath mappings, Rhai rules",
    long_about = "crossdock turns a folder of YAML (crossdock.yaml, pipelines/, mappings/, scripts/) into \
running integrations. Validate a project with `check`, try a pipeline on a sample payload with \
`dry-run`, run its test cases with `test`, and serve it with `run`.",
    after_help = "Examples:\n  crossdock run\n  crossdock check\n  crossdock dry-run bigcommerce-carts --input tests/fixtures/bigcommerce/cart-high-value.json\n  crossdock test"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Project folder (the one with crossdock.yaml), for every command; `run`, `check`, `test`
    /// and `init` also take it as their DIR
    #[arg(long, short = 'C', global = true, value_name = "DIR")]
    project: Option<PathBuf>,
    /// How log lines are written to stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Which log lines are written: a level (error, warn, info, debug, trace) or a filter such
    /// as `info,crossdock::event=warn`; overrides CROSSDOCK_LOG
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the project: webhooks, workers, admin API; events are durable before their 202
    #[command(
        after_help = "Listens on `server.listen` of crossdock.yaml (default 127.0.0.1:8787). Each webhook \
source is a POST route; accepted events are written to the inbox in the state folder before the \
answer, and run through their pipeline by workers. Stops cleanly on Ctrl-C or SIGTERM; SIGHUP \
reloads the project. The admin API (/api) needs CROSSDOCK_ADMIN_TOKEN. Logs go to stderr, one \
`Event finished` line per event at info (--log-format json for a log shipper; --log-level or \
CROSSDOCK_LOG, e.g. debug, for more). With OTEL_EXPORTER_OTLP_ENDPOINT set, each event's trace \
(its steps and connector calls) goes to that OpenTelemetry collector over OTLP/HTTP. \
docs/deploy.md has a systemd unit, backups and upgrades.\n\n\
Examples:\n  crossdock run\n  CROSSDOCK_ADMIN_TOKEN=secret crossdock run path/to/project --listen 0.0.0.0:8787"
    )]
    Run {
        /// Project folder (the one with crossdock.yaml); `.` by default
        dir: Option<PathBuf>,
        /// Address to listen on, instead of `server.listen`
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// When an accepted event is on disk: `group` fsyncs before each 202 (shared by
        /// concurrent requests); `periodic` answers at once and flushes every 500 ms
        #[arg(long, value_enum, default_value_t = Flush::Group)]
        flush: Flush,
    },
    /// Inspect and replay dead letters
    #[command(
        after_help = "Works on the state folder directly when the engine is stopped, and through the \
running engine's admin API (CROSSDOCK_ADMIN_TOKEN) when it is running.\n\n\
Examples:\n  crossdock dlq list\n  crossdock dlq show evt_00000000000000a1\n  crossdock dlq retry evt_00000000000000a1\n  crossdock dlq retry --all --pipeline shopify-stock --error backorder"
    )]
    Dlq {
        /// The running engine's address, when it is not `server.listen` (e.g. started with --listen)
        #[arg(long, global = true, value_name = "http://HOST:PORT")]
        url: Option<String>,
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Inspect and remove pending events (accepted, not yet done); accept a reported loss
    #[command(
        after_help = "Works on the state folder directly when the engine is stopped, and through the \
running engine's admin API (CROSSDOCK_ADMIN_TOKEN) when it is running. `accept-loss` needs the \
engine stopped: use it when `crossdock run` refused to start because the state store lost events \
(when restoring the folder from a backup is not possible); the events it lost stay lost.\n\n\
Examples:\n  crossdock inbox list\n  crossdock inbox drop evt_00000000000000a1\n  crossdock inbox accept-loss"
    )]
    Inbox {
        /// The running engine's address, when it is not `server.listen` (e.g. started with --listen)
        #[arg(long, global = true, value_name = "http://HOST:PORT")]
        url: Option<String>,
        #[command(subcommand)]
        command: InboxCommand,
    },
    /// Validate the whole project and print every problem as path:line:col: message
    #[command(
        after_help = "Exits 0 when the project is valid, 1 when it is not.\n\n\
Examples:\n  crossdock check\n  crossdock check path/to/project --strict"
    )]
    Check {
        /// Project folder (the one with crossdock.yaml); `.` by default
        dir: Option<PathBuf>,
        /// Treat an unset ${VAR} without a default as an error, not a warning
        #[arg(long)]
        strict: bool,
        /// Output format: text for people; json (one document) or sarif (SARIF 2.1.0, for
        /// code scanning) on stdout for tools
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Run events through one pipeline without any outside effect
    #[command(
        name = "dry-run",
        after_help = "Connectors are never called: each `send` is shown as an action. State is read \
but never written; the changes a run would make are listed. While `crossdock run` serves the \
project, the state read is the engine's live state, through its admin API \
(CROSSDOCK_ADMIN_TOKEN).\n\
Input: a .json file is one event; a .jsonl/.ndjson file is one event per line; a .csv file is one \
event per row; `-` reads standard input (one JSON document, or JSON lines).\n\
Exits 0 when every event ran without error, 1 otherwise. With --watch, runs again after every \
save of the project or the input file (the debounce of `crossdock run`'s reload), printing the time \
and the files that changed first, until Ctrl-C (exit 0).\n\n\
Examples:\n  crossdock dry-run bigcommerce-carts --input tests/fixtures/bigcommerce/cart-high-value.json\n  \
crossdock dry-run shopify-stock --input order.json --watch\n  \
cat events.jsonl | crossdock dry-run shopify-stock --input - --format json\n  \
crossdock dry-run shopify-stock --input order.json --header X-Shopify-Topic=orders/create"
    )]
    DryRun {
        /// Name of the pipeline to run
        pipeline: String,
        /// Event file (.json, .jsonl, .csv) or `-` for standard input
        #[arg(long, short)]
        input: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// A request header the event arrives with, as NAME=VALUE (repeatable)
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// The time the event is received (RFC 3339); now by default
        #[arg(long)]
        received_at: Option<String>,
        /// The answer a `fetch` step gets, as CONNECTOR.OP=FILE (a JSON file; repeatable)
        #[arg(long = "fetch", value_name = "CONNECTOR.OP=FILE")]
        fetch: Vec<String>,
        /// Read the state of the engine at this address (when it is not `server.listen`)
        #[arg(long, value_name = "http://HOST:PORT")]
        url: Option<String>,
        /// Run again after every save of the project, the input or a --fetch file, until Ctrl-C
        #[arg(long)]
        watch: bool,
    },
    /// Inspect, seed and correct the project's state: customers, stock, reservations, kv
    #[command(
        after_help = "Reads and writes the sled store at the project's `state.path` \
(default .crossdock/state). Reading a project that has no state yet shows empty values. While \
`crossdock run` serves the project (it holds the store), the same commands go through its admin \
API, with CROSSDOCK_ADMIN_TOKEN: reads see its live state, and writes land in it between events. \
Every write is recorded in the audit log (`state audit`), with --actor as its author.\n\n\
Examples:\n  crossdock state customer 42\n  crossdock state customer 42 --lifetime-value 1250.00 --actor alice\n  \
crossdock state stock OAK-CH-01 --set 12\n  \
crossdock state import-stock tests/fixtures/erp/inventory-2026-11-21.csv --sku-column ItemNo --qty-column OnHand\n  \
crossdock state reservation 1073459980\n  crossdock state kv shopify-stock last-sync --set '\"2026-11-21\"'\n  \
crossdock state audit --limit 50"
    )]
    State {
        /// The running engine's address, when it is not `server.listen` (e.g. started with
        /// --listen); given, the command always goes through that engine's admin API
        #[arg(long, global = true, value_name = "http://HOST:PORT")]
        url: Option<String>,
        /// Who makes the change, as the audit log records it ("admin" when not given)
        #[arg(long, global = true, value_name = "NAME")]
        actor: Option<String>,
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Run the pipeline test cases in tests/pipelines/*.yaml
    #[command(
        after_help = "Each case runs with a fresh in-memory state, seeded as the case says. \
Prints one line per case and a summary; exits 1 if any case fails. With --watch, runs again \
after every save of the project, tests/pipelines/ or tests/fixtures/ (the debounce of `crossdock \
run`'s reload), printing the time and the files that changed first; a project that fails `check` \
prints its problems and waits for the next save; Ctrl-C stops (exit 0).\n\n\
Examples:\n  crossdock test\n  crossdock test --filter carts\n  crossdock test --watch"
    )]
    Test {
        /// Project folder; `.` by default
        dir: Option<PathBuf>,
        /// Run only cases whose name or pipeline contains this text
        #[arg(long)]
        filter: Option<String>,
        /// Output format: text for people; json (one document) or junit (JUnit XML, which CI
        /// systems display) on stdout for tools
        #[arg(long, value_enum, default_value_t = TestFormat::Text)]
        format: TestFormat,
        /// Run again after every save, until Ctrl-C
        #[arg(long)]
        watch: bool,
    },
    /// Print the JSON Schema of a kind of project file, for editors and CI
    #[command(
        after_help = "Kinds: project (crossdock.yaml), pipeline (pipelines/*.yaml), mapping \
(mappings/*.yaml), test (tests/pipelines/*.yaml). With --write DIR, writes all four as \
DIR/<kind>.schema.json (crossdock.schema.json for the project) and prints nothing; \
`crossdock schema --write schemas` is how the repository's schemas/ is regenerated. A YAML \
file names its schema on its first line for the YAML language server (VS Code, Neovim):\n  \
# yaml-language-server: $schema=../schemas/pipeline.schema.json\n\n\
`crossdock schema pull CONNECTOR OBJECT...` stores a Salesforce connector's describe answers \
in schemas/CONNECTOR/OBJECT.json, which `check` then verifies every send to those objects \
against, offline.\n\n\
Examples:\n  crossdock schema pipeline\n  crossdock schema --write schemas\n  \
crossdock schema pull salesforce Order Account"
    )]
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Schema {
        #[command(subcommand)]
        command: Option<SchemaCommand>,
        /// project, pipeline, mapping or test
        #[arg(required_unless_present = "write", value_parser = schema_kind)]
        kind: Option<crate::schema::Kind>,
        /// Write every schema into this folder instead
        #[arg(long, value_name = "DIR", conflicts_with = "kind")]
        write: Option<PathBuf>,
    },
    /// Create a new project from a template
    #[command(
        after_help = "The project has a pipeline, a mapping, a script, a test case with its fixture \
and the JSON Schemas its files name; `crossdock check` and `crossdock test` pass on it as it \
is. Refuses to write into a folder where any of its files already exists.\n\n\
Examples:\n  crossdock init my-shop --template shopify-erp-stock\n  crossdock init --list"
    )]
    Init {
        /// Folder to create the project in (created if missing); `.` by default
        dir: Option<PathBuf>,
        /// The template
        #[arg(long, short, default_value = crate::scaffold::TEMPLATES[0].name, value_parser = template_name)]
        template: String,
        /// List the templates and exit
        #[arg(long, conflicts_with = "template")]
        list: bool,
    },
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  crossdock completions bash > /etc/bash_completion.d/crossdock\n  \
crossdock completions zsh > \"${fpath[1]}/_crossdock\"\n  crossdock completions fish > ~/.config/fish/completions/crossdock.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff)
    #[command(after_help = "Examples:\n  crossdock man > /usr/local/share/man/man1/crossdock.1")]
    Man,
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Store a target's own schema of its objects (Salesforce describe answers) in the project
    #[command(after_help = "Asks the connector's org for each object's describe \
(GET /services/data/vXX.X/sobjects/OBJECT/describe, with the connector's OAuth and api_version \
from crossdock.yaml) and writes schemas/CONNECTOR/OBJECT.json, trimmed to the fields' names, \
types, createable/updateable, references and picklist values. Commit the files: `check` reads \
them, never the network, and verifies that every field a send to the object writes exists, \
may be written by its operation and has a compatible type. Pull again after changing the org.\n\n\
Examples:\n  crossdock schema pull salesforce Order OrderItem Account")]
    Pull {
        /// The connector's name in crossdock.yaml (a salesforce connector)
        connector: String,
        /// The sObjects, e.g. Order Account
        #[arg(required = true)]
        objects: Vec<String>,
    },
}

fn schema_kind(name: &str) -> Result<crate::schema::Kind, String> {
    crate::schema::Kind::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = crate::schema::Kind::ALL.iter().map(|k| k.name()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

fn template_name(name: &str) -> Result<String, String> {
    match crate::scaffold::template(name) {
        Some(t) => Ok(t.name.to_string()),
        None => Err(format!(
            "no template `{name}`; the templates are {}",
            crate::scaffold::TEMPLATES
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// A customer's lifetime value, order count, first and last order; the options correct them
    Customer {
        /// Customer id, as the scripts record it
        id: String,
        /// Set the lifetime value (a decimal, e.g. 1250.00)
        #[arg(long, value_name = "DECIMAL")]
        lifetime_value: Option<String>,
        /// Set the order count
        #[arg(long, value_name = "N")]
        orders: Option<i64>,
        /// Set the first order's date (YYYY-MM-DD)
        #[arg(long, value_name = "DATE")]
        first_order: Option<String>,
        /// Set the last order's date (YYYY-MM-DD)
        #[arg(long, value_name = "DATE")]
        last_order: Option<String>,
    },
    /// A SKU's stock: on hand, reserved, available; `--set` changes on hand
    Stock {
        sku: String,
        /// Set the on-hand count
        #[arg(long, value_name = "N")]
        set: Option<i64>,
    },
    /// An order's reservation: status, items and the answer it got
    Reservation { order_id: String },
    /// A value of a pipeline's key-value space (`kv.get` in its scripts); `--set` changes it
    Kv {
        pipeline: String,
        key: String,
        /// Set the value (JSON; null deletes the key)
        #[arg(long, value_name = "JSON")]
        set: Option<String>,
    },
    /// Set on-hand counts from a CSV export (one row per SKU)
    ImportStock {
        /// The CSV file
        file: PathBuf,
        /// Column holding the SKU
        #[arg(long, default_value = "sku")]
        sku_column: String,
        /// Column holding the on-hand quantity
        #[arg(long, default_value = "on_hand")]
        qty_column: String,
        /// Field delimiter
        #[arg(long, default_value_t = ',')]
        delimiter: char,
    },
    /// The audit log of state written by hand, newest first: who, when, which keys, before and after
    Audit {
        /// At most this many entries
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// The dead letters, oldest first
    List {
        /// At most this many
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One dead letter: the event, its body, every attempt's error, the version
    Show { id: String },
    /// Put a dead letter back in the inbox, attempts reset; the effects that succeeded
    /// before are not done again
    Retry {
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Retry every dead letter matching the filters below (all of them without one), at
        /// most 1000 a call
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// With --all: of this pipeline
        #[arg(long, requires = "all")]
        pipeline: Option<String>,
        /// With --all: whose reason contains this text (case ignored)
        #[arg(long, requires = "all")]
        error: Option<String>,
        /// With --all: dead at or after this time (RFC 3339)
        #[arg(long, requires = "all")]
        since: Option<String>,
        /// With --all: dead before this time (RFC 3339)
        #[arg(long, requires = "all")]
        until: Option<String>,
        /// With --all: whose correlation key is NAME:VALUE (order:1001)
        #[arg(long, requires = "all")]
        key: Option<String>,
        /// Do every effect again, also those that succeeded (a `create` makes another record)
        #[arg(long)]
        full: bool,
    },
    /// Delete a dead letter, first running the `undo:` steps it owes (engine running)
    Drop {
        id: String,
        /// Delete it without running the `undo:` steps it owes
        #[arg(long)]
        no_undo: bool,
    },
}

#[derive(Debug, Subcommand)]
enum InboxCommand {
    /// The pending events, oldest first: attempts, interrupted runs, size, last error
    List {
        /// At most this many
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Remove a pending event without running it (its trail says `dropped`)
    Drop { id: String },
    /// Make the ledger agree with the state store after a reported loss
    AcceptLoss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Flush {
    Group,
    Periodic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TestFormat {
    Text,
    Json,
    Junit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Readable lines
    Text,
    /// One JSON object per line
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A readable view
    Text,
    /// One JSON object per event
    Json,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    // Traces only for `run`: the other commands open no event spans.
    let otlp = if matches!(cli.command, Command::Run { .. }) {
        crate::telemetry::Config::from_env(&crate::config::env::process_env)
    } else {
        None
    };
    // Held to the end of `main`: dropping it sends the last spans.
    let _traces = match init_logging(
        cli.log_level.as_deref(),
        default_level,
        cli.log_format,
        otlp,
    ) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let project = cli.project;
    // Rules need a deeper stack than a main thread may have (see `rules::engine::MIN_STACK`).
    let worker = std::thread::Builder::new()
        .name("crossdock".into())
        .stack_size(crate::rules::engine::MIN_STACK)
        .spawn(move || command(cli.command, project));
    match worker.map(|w| w.join()) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => ExitCode::from(101),
        Err(e) => {
            eprintln!("cannot start: {e}");
            ExitCode::from(1)
        }
    }
}

/// The project folder from `--project` and a command's DIR: the two must agree when both are
/// given.
fn project_dir(flag: Option<PathBuf>, positional: Option<PathBuf>) -> Result<PathBuf, ExitCode> {
    match (flag, positional) {
        (Some(a), Some(b)) if a != b => {
            eprintln!(
                "the project folder is given twice ({} and {}); give it once",
                a.display(),
                b.display()
            );
            Err(ExitCode::from(2))
        }
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => Ok(PathBuf::from(".")),
    }
}

fn command(command: Command, project: Option<PathBuf>) -> ExitCode {
    let env = crate::config::env::process_env;
    let positional = match &command {
        Command::Run { dir, .. }
        | Command::Check { dir, .. }
        | Command::Test { dir, .. }
        | Command::Init { dir, .. } => dir.clone(),
        _ => None,
    };
    let project = match project_dir(project, positional) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match command {
        Command::Check { strict, format, .. } => check::run(&project, strict, format, &env),
        Command::DryRun {
            pipeline,
            input,
            format,
            headers,
            received_at,
            fetch,
            url,
            watch,
        } => {
            let once = || {
                dry_run::run(dry_run::Args {
                    project: &project,
                    pipeline: &pipeline,
                    input: &input,
                    json: format == Format::Json,
                    headers: &headers,
                    received_at: received_at.as_deref(),
                    fetch: &fetch,
                    url: url.as_deref(),
                    env: &env,
                })
            };
            if !watch {
                return once();
            }
            if input == "-" {
                eprintln!("--watch needs --input FILE: standard input cannot be read again");
                return ExitCode::from(2);
            }
            let mut extra = vec![PathBuf::from(&input)];
            extra.extend(
                fetch
                    .iter()
                    .filter_map(|f| f.split_once('=').map(|(_, file)| PathBuf::from(file))),
            );
            watch::run(&project, &extra, &env, once)
        }
        Command::Test {
            filter,
            format,
            watch,
            ..
        } => {
            let once = || test::run(&project, filter.as_deref(), format, &env);
            if !watch {
                return once();
            }
            let extra = [
                project.join(crate::testing::TESTS_DIR),
                project.join(crate::testing::FIXTURES_DIR),
            ];
            watch::run(&project, &extra, &env, once)
        }
        Command::State {
            url,
            actor,
            command,
        } => state::run(&project, url.as_deref(), actor.as_deref(), command, &env),
        Command::Run { listen, flush, .. } => run::run(run::Args {
            dir: &project,
            listen,
            flush: match flush {
                Flush::Group => crate::runtime::FlushPolicy::Group,
                Flush::Periodic => crate::runtime::FlushPolicy::Periodic,
            },
        }),
        Command::Dlq { url, command } => {
            let action = match command {
                DlqCommand::List { limit } => dlq::Action::List { limit },
                DlqCommand::Show { id } => dlq::Action::Show { id },
                DlqCommand::Retry {
                    id: Some(id), full, ..
                } => dlq::Action::Retry { id, full },
                DlqCommand::Retry {
                    pipeline,
                    error,
                    since,
                    until,
                    key,
                    full,
                    ..
                } => dlq::Action::RetryAll {
                    filter: dlq::Matching {
                        pipeline,
                        error,
                        since,
                        until,
                        key,
                    },
                    full,
                },
                DlqCommand::Drop { id, no_undo } => dlq::Action::Drop { id, undo: !no_undo },
            };
            dlq::run(&project, url.as_deref(), action, &env)
        }
        Command::Inbox { url, command } => {
            let action = match command {
                InboxCommand::List { limit } => dlq::Action::InboxList { limit },
                InboxCommand::Drop { id } => dlq::Action::InboxDrop { id },
                InboxCommand::AcceptLoss => dlq::Action::AcceptLoss,
            };
            dlq::run(&project, url.as_deref(), action, &env)
        }
        Command::Schema {
            command: Some(SchemaCommand::Pull { connector, objects }),
            ..
        } => schema::pull(&project, &connector, &objects, &env),
        Command::Schema { kind, write, .. } => match (kind, write) {
            (_, Some(dir)) => init::write_schemas(&dir),
            (Some(kind), None) => {
                print!("{}", kind.schema_text());
                ExitCode::SUCCESS
            }
            (None, None) => ExitCode::from(2),
        },
        Command::Init { template, list, .. } => {
            if list {
                init::list();
                ExitCode::SUCCESS
            } else {
                init::run(&project, &template)
            }
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "crossdock", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot write the manual page: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// Logs to stderr: `--log-level`, else CROSSDOCK_LOG, else `default`; and, given a collector,
/// traces to it, whatever the log's level (each layer has its own filter). The guard sends
/// the last spans when dropped.
fn init_logging(
    level: Option<&str>,
    default: &str,
    format: LogFormat,
    otlp: Option<crate::telemetry::Config>,
) -> Result<Option<crate::telemetry::Guard>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, EnvFilter, Layer};
    let filter = match level {
        Some(level) => EnvFilter::try_new(level).map_err(|e| format!("--log-level: {e}"))?,
        None => {
            EnvFilter::try_from_env("CROSSDOCK_LOG").unwrap_or_else(|_| EnvFilter::new(default))
        }
    };
    let log = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        // Each line one object: time, level, target, message and fields, the span's fields
        // (event_id, pipeline) included, for a log shipper to index.
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }
    .with_filter(filter);
    let (traces, guard) = match otlp {
        Some(config) => {
            let (layer, guard) = crate::telemetry::start(config).map_err(|e| e.to_string())?;
            // Only the engine's own spans: the exporter's HTTP client must not trace itself.
            let only_ours = tracing_subscriber::filter::Targets::new()
                .with_target("crossdock", tracing::Level::DEBUG);
            (Some(layer.with_filter(only_ours)), Some(guard))
        }
        None => (None, None),
    };
    // A second subscriber (tests that call `main` twice) is refused; the first one stays.
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(traces)
        .try_init();
    Ok(guard)
}

/// Prints diagnostics to stderr, errors first in file order.
fn print_diagnostics(diags: &crate::config::diag::Diagnostics) {
    for d in diags.iter() {
        eprintln!("{d}\n");
    }
}
