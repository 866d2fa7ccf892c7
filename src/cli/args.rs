//! The command line's arguments: the commands, their options and help texts, as clap derives
//! them. Parses nothing by hand and runs nothing (`mod.rs` dispatches).

use std::path::PathBuf;

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
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
    /// Project folder (the one with crossdock.yaml), for every command; `run`, `check`, `test`
    /// and `init` also take it as their DIR
    #[arg(long, short = 'C', global = true, value_name = "DIR")]
    pub(super) project: Option<PathBuf>,
    /// How log lines are written to stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(super) log_format: LogFormat,
    /// Which log lines are written: a level (error, warn, info, debug, trace) or a filter such
    /// as `info,crossdock::event=warn`; overrides CROSSDOCK_LOG
    #[arg(long, global = true, value_name = "LEVEL")]
    pub(super) log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
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
pub(super) enum SchemaCommand {
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

/// `state customer`'s corrections, each left as it is when not given.
#[derive(Debug, clap::Args)]
pub(super) struct CustomerFix {
    /// Set the lifetime value (a decimal, e.g. 1250.00)
    #[arg(long, value_name = "DECIMAL")]
    pub(super) lifetime_value: Option<String>,
    /// Set the order count
    #[arg(long, value_name = "N")]
    pub(super) orders: Option<i64>,
    /// Set the first order's date (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    pub(super) first_order: Option<String>,
    /// Set the last order's date (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    pub(super) last_order: Option<String>,
}

/// `state import-stock`'s file and how to read it.
#[derive(Debug, clap::Args)]
pub(super) struct StockCsv {
    /// The CSV file
    pub(super) file: PathBuf,
    /// Column holding the SKU
    #[arg(long, default_value = "sku")]
    pub(super) sku_column: String,
    /// Column holding the on-hand quantity
    #[arg(long, default_value = "on_hand")]
    pub(super) qty_column: String,
    /// Field delimiter
    #[arg(long, default_value_t = ',')]
    pub(super) delimiter: char,
}

impl CustomerFix {
    /// Whether any correction is given: then the command writes.
    pub(super) fn any(&self) -> bool {
        self.lifetime_value.is_some()
            || self.orders.is_some()
            || self.first_order.is_some()
            || self.last_order.is_some()
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum StateCommand {
    /// A customer's lifetime value, order count, first and last order; the options correct them
    Customer {
        /// Customer id, as the scripts record it
        id: String,
        #[command(flatten)]
        fix: CustomerFix,
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
        #[command(flatten)]
        csv: StockCsv,
    },
    /// The audit log of state written by hand, newest first: who, when, which keys, before and after
    Audit {
        /// At most this many entries
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum DlqCommand {
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
        #[command(flatten)]
        filter: super::dlq::Matching,
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
pub(super) enum InboxCommand {
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
pub(super) enum Flush {
    Group,
    Periodic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum CheckFormat {
    Text,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum TestFormat {
    Text,
    Json,
    Junit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum LogFormat {
    /// Readable lines
    Text,
    /// One JSON object per line
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Format {
    /// A readable view
    Text,
    /// One JSON object per event
    Json,
}
