//! The command line: argument parsing and printing, nothing else.
//!
//! Every command calls the library (`flow::load`, `Flow::run`, `testing::run_all`) and turns
//! the answer into text and an exit code. This is the only module that prints.
#![allow(clippy::print_stdout)]

mod args;
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

use clap::Parser;

use self::args::{
    CheckFormat, Cli, Command, DlqCommand, Flush, Format, InboxCommand, LogFormat, SchemaCommand,
    StateCommand, TestFormat,
};

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
                    id: None,
                    filter,
                    full,
                    ..
                } => dlq::Action::RetryAll { filter, full },
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
