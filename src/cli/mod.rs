//! The command line: argument parsing and printing, nothing else.
//!
//! Every command calls the library (`flow::load`, `Flow::run`, `testing::run_all`) and turns
//! the answer into text and an exit code. This is the only module that prints.
#![allow(clippy::print_stdout)]

mod check;
mod dlq;
mod dry_run;
mod run;
mod state;
mod test;

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
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the project: webhooks, workers, admin API; events are durable before their 202
    #[command(
        after_help = "Listens on `server.listen` of crossdock.yaml (default 127.0.0.1:8787). Each webhook \
source is a POST route; accepted events are written to the inbox in the state folder before the \
answer, and run through their pipeline by workers. Stops cleanly on Ctrl-C or SIGTERM; SIGHUP \
reloads the project. The admin API (/api) needs CROSSDOCK_ADMIN_TOKEN. Logs go to stderr; set \
CROSSDOCK_LOG (e.g. debug) for more.\n\n\
Examples:\n  crossdock run\n  CROSSDOCK_ADMIN_TOKEN=secret crossdock run path/to/project --listen 0.0.0.0:8787"
    )]
    Run {
        /// Project folder (the one with crossdock.yaml)
        #[arg(default_value = ".")]
        dir: PathBuf,
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
Examples:\n  crossdock dlq list\n  crossdock dlq show evt_00000000000000a1\n  crossdock dlq retry evt_00000000000000a1"
    )]
    Dlq {
        /// Project folder
        #[arg(long, default_value = ".", global = true)]
        project: PathBuf,
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
        /// Project folder
        #[arg(long, default_value = ".", global = true)]
        project: PathBuf,
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
        /// Project folder (the one with crossdock.yaml)
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Treat an unset ${VAR} without a default as an error, not a warning
        #[arg(long)]
        strict: bool,
    },
    /// Run events through one pipeline without any outside effect
    #[command(
        name = "dry-run",
        after_help = "Connectors are never called: each `send` is shown as an action. State is read \
but never written; the changes a run would make are listed.\n\
Input: a .json file is one event; a .jsonl/.ndjson file is one event per line; a .csv file is one \
event per row; `-` reads standard input (one JSON document, or JSON lines).\n\
Exits 0 when every event ran without error, 1 otherwise.\n\n\
Examples:\n  crossdock dry-run bigcommerce-carts --input tests/fixtures/bigcommerce/cart-high-value.json\n  \
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
        /// Project folder
        #[arg(long, default_value = ".")]
        project: PathBuf,
        /// A request header the event arrives with, as NAME=VALUE (repeatable)
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// The time the event is received (RFC 3339); now by default
        #[arg(long)]
        received_at: Option<String>,
        /// The answer a `fetch` step gets, as CONNECTOR.OP=FILE (a JSON file; repeatable)
        #[arg(long = "fetch", value_name = "CONNECTOR.OP=FILE")]
        fetch: Vec<String>,
    },
    /// Inspect and seed the project's state: customers, stock, reservations
    #[command(
        after_help = "Reads and writes the sled store at the project's `state.path` \
(default .crossdock/state). Reading a project that has no state yet shows empty values.\n\n\
Examples:\n  crossdock state customer 42\n  crossdock state stock OAK-CH-01 --set 12\n  \
crossdock state import-stock tests/fixtures/erp/inventory-2026-11-21.csv --sku-column ItemNo --qty-column OnHand\n  \
crossdock state reservation 1073459980"
    )]
    State {
        /// Project folder
        #[arg(long, default_value = ".", global = true)]
        project: PathBuf,
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Run the pipeline test cases in tests/pipelines/*.yaml
    #[command(
        after_help = "Each case runs with a fresh in-memory state, seeded as the case says. \
Prints one line per case and a summary; exits 1 if any case fails.\n\n\
Examples:\n  crossdock test\n  crossdock test --filter carts"
    )]
    Test {
        /// Project folder
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Run only cases whose name or pipeline contains this text
        #[arg(long)]
        filter: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// A customer's lifetime value, order count, first and last order
    Customer {
        /// Customer id, as the scripts record it
        id: String,
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
        id: String,
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
enum Format {
    /// A readable view
    Text,
    /// One JSON object per event
    Json,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    });
    // Rules need a deeper stack than a main thread may have (see `rules::engine::MIN_STACK`).
    let worker = std::thread::Builder::new()
        .name("crossdock".into())
        .stack_size(crate::rules::engine::MIN_STACK)
        .spawn(move || command(cli.command));
    match worker.map(|w| w.join()) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => ExitCode::from(101),
        Err(e) => {
            eprintln!("cannot start: {e}");
            ExitCode::from(1)
        }
    }
}

fn command(command: Command) -> ExitCode {
    let env = crate::config::env::process_env;
    match command {
        Command::Check { dir, strict } => check::run(&dir, strict, &env),
        Command::DryRun {
            pipeline,
            input,
            format,
            project,
            headers,
            received_at,
            fetch,
        } => dry_run::run(dry_run::Args {
            project: &project,
            pipeline: &pipeline,
            input: &input,
            json: format == Format::Json,
            headers: &headers,
            received_at: received_at.as_deref(),
            fetch: &fetch,
            env: &env,
        }),
        Command::Test { dir, filter } => test::run(&dir, filter.as_deref(), &env),
        Command::State { project, command } => state::run(&project, command, &env),
        Command::Run { dir, listen, flush } => run::run(run::Args {
            dir: &dir,
            listen,
            flush: match flush {
                Flush::Group => crate::runtime::FlushPolicy::Group,
                Flush::Periodic => crate::runtime::FlushPolicy::Periodic,
            },
        }),
        Command::Dlq {
            project,
            url,
            command,
        } => {
            let action = match command {
                DlqCommand::List { limit } => dlq::Action::List { limit },
                DlqCommand::Show { id } => dlq::Action::Show { id },
                DlqCommand::Retry { id, full } => dlq::Action::Retry { id, full },
                DlqCommand::Drop { id, no_undo } => dlq::Action::Drop { id, undo: !no_undo },
            };
            dlq::run(&project, url.as_deref(), action, &env)
        }
        Command::Inbox {
            project,
            url,
            command,
        } => {
            let action = match command {
                InboxCommand::List { limit } => dlq::Action::InboxList { limit },
                InboxCommand::Drop { id } => dlq::Action::InboxDrop { id },
                InboxCommand::AcceptLoss => dlq::Action::AcceptLoss,
            };
            dlq::run(&project, url.as_deref(), action, &env)
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CROSSDOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints diagnostics to stderr, errors first in file order.
fn print_diagnostics(diags: &crate::config::diag::Diagnostics) {
    for d in diags.iter() {
        eprintln!("{d}\n");
    }
}
