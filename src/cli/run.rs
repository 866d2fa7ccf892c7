//! `crossdock run`: start the runtime and the HTTP server, and stop both cleanly on SIGTERM
//! or Ctrl-C.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::runtime::{self, FlushPolicy, Runtime, Settings, StartError};

pub struct Args<'a> {
    pub dir: &'a Path,
    pub listen: Option<String>,
    pub flush: FlushPolicy,
}

pub fn run(args: Args<'_>) -> ExitCode {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Flows run rules on blocking threads: they need the deep stack rules ask for.
        .thread_stack_size(crate::rules::engine::MIN_STACK)
        // A worker about to sleep gives back its free pages when a reopen of the state store
        // asked for it (src/allocator.rs): otherwise they stay with it.
        .on_thread_park(crate::allocator::collect_if_asked)
        .build();
    let tokio = match tokio {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    tokio.block_on(serve(args))
}

async fn serve(args: Args<'_>) -> ExitCode {
    runtime::metrics::install();
    let settings = Settings {
        admin_token: crate::config::env::process_env("CROSSDOCK_ADMIN_TOKEN")
            .filter(|t| !t.is_empty()),
        flush: args.flush,
        ..Settings::default()
    };
    let (runtime, warnings, rx) =
        match Runtime::open(args.dir, crate::config::env::process_env, settings) {
            Ok(opened) => opened,
            Err(StartError::Config(diags)) => {
                super::print_diagnostics(&diags);
                eprintln!("{}", diags.summary());
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("cannot start: {e}");
                return ExitCode::from(1);
            }
        };
    super::print_diagnostics(&warnings);
    match runtime.join_cluster().await {
        Ok(true) => {
            if let Some(link) = runtime.cluster() {
                eprintln!(
                    "cluster node `{}` on NATS {}",
                    link.settings.node,
                    link.settings.shown_url()
                );
            }
        }
        Ok(false) => {}
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::from(1);
        }
    }
    let live = runtime.live();
    for (name, u) in &live.project.unconfigured {
        eprintln!(
            "note: connector `{name}` is not configured ({} unset): its calls go to `{}`",
            u.missing.join(", "),
            u.to
        );
    }
    let listen = args
        .listen
        .unwrap_or_else(|| live.project.config.server.listen.clone());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    // Events run on a runtime of their own (`work_nice` steps below ingress's priority, none by
    // default): kept to the end of `serve`, and shut down without waiting (the drain has waited
    // for what was running).
    let work = match work_runtime(runtime.settings.work_nice) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime for events: {e}");
            return ExitCode::from(1);
        }
    };
    let work_handle = work.handle().clone();
    let _work = WorkRuntime(Some(work));
    let resumed = match runtime.start_on(rx, &work_handle) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot read the inbox: {e}");
            return ExitCode::from(1);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen);
    let signals = StopSignals::listen();
    eprintln!(
        "crossdock serving {} pipelines on http://{addr} (version {}){}",
        live.project.pipelines.len(),
        runtime::short(&live.project.version),
        if resumed > 0 {
            format!("; resuming {resumed} events from the inbox")
        } else {
            String::new()
        }
    );
    let mut routes: Vec<_> = live.routes.iter().collect();
    routes.sort_by(|a, b| a.0.cmp(b.0));
    for (path, route) in routes {
        eprintln!("  POST {path} -> {}", route.pipeline);
    }
    if runtime.settings.admin_token.is_none() {
        eprintln!("  admin API off (set CROSSDOCK_ADMIN_TOKEN to use /api and the console)");
    } else {
        // Not "on http://": scripts that wait for the serving line look for that.
        eprintln!(
            "  console at http://{addr}{} (log in with CROSSDOCK_ADMIN_TOKEN)",
            crate::server::console::PATH
        );
    }
    drop(live);
    tokio::spawn(reload_on_hangup(runtime.clone()));
    // Held to the end of `serve`: dropping it stops the watcher.
    let _watch = match runtime.watch() {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("warning: not watching the project files ({e}); reload with SIGHUP or POST /api/reload");
            None
        }
    };
    let app = crate::server::router(runtime.clone());
    let limits = crate::server::Limits {
        header_timeout: runtime.settings.header_timeout,
        body_timeout: runtime.settings.body_timeout,
        max_connections: runtime.settings.max_connections,
    };
    crate::server::serve(listener, app, limits, shutdown(runtime.clone(), signals)).await;
    if runtime.storage.restart_requested() {
        drop(runtime);
        return restart();
    }
    eprintln!("stopped");
    ExitCode::SUCCESS
}

/// The async runtime that events run on (the workers, their connector calls, retries), apart
/// from the one that serves HTTP, so that its threads can run at a lower priority
/// (`runtime::priority`). Blocking threads it starts (flows that fetch) inherit it.
fn work_runtime(nice: i32) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("crossdock-work")
        .thread_stack_size(crate::rules::engine::MIN_STACK)
        .on_thread_start(move || runtime::priority::lower_this_thread(nice))
        .on_thread_park(crate::allocator::collect_if_asked)
        .build()
}

/// Shuts the work runtime down when `serve` returns, whichever way: a runtime must not be
/// dropped (which blocks) inside another's task.
struct WorkRuntime(Option<tokio::runtime::Runtime>);

impl Drop for WorkRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// SIGTERM and Ctrl-C, listened for from before the engine says it serves: a signal that comes
/// right after that line must drain the engine, not kill it (the default action).
pub(super) struct StopSignals {
    #[cfg(unix)]
    term: std::io::Result<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: std::io::Result<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub(super) fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            StopSignals {
                term: signal(SignalKind::terminate()),
                int: signal(SignalKind::interrupt()),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Resolves at the next SIGTERM or Ctrl-C; can be awaited again after.
    pub(super) async fn recv(&mut self) {
        #[cfg(unix)]
        {
            let (term, int) = match (&mut self.term, &mut self.int) {
                (Ok(term), Ok(int)) => (term, int),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "Cannot listen for SIGTERM and Ctrl-C");
                    return std::future::pending().await;
                }
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves on SIGTERM or Ctrl-C (or a restart the storage asks for), after the runtime has
/// drained.
async fn shutdown(runtime: Arc<Runtime>, mut signals: StopSignals) {
    tokio::select! {
        _ = signals.recv() => {}
        _ = runtime.storage.wait_for_restart() => {}
    }
    eprintln!("draining: finishing running events, new ones get 503");
    runtime.drain().await;
}

/// Starts this program again in this process, with the same arguments: how a store that failed
/// a write is opened afresh (see `runtime::storage`). The inbox on disk is the queue of record,
/// so nothing accepted is lost across it. Returns only if the new start could not be made.
fn restart() -> ExitCode {
    eprintln!("restarting: the state store failed a write and is opened again");
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let error = match std::env::current_exe() {
            Ok(exe) => std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .exec(),
            Err(e) => e,
        };
        eprintln!("cannot restart: {error}; start crossdock again");
    }
    #[cfg(not(unix))]
    eprintln!("start crossdock again to open the state store afresh");
    // EX_TEMPFAIL: a supervisor that restarts on failure brings it back.
    ExitCode::from(75)
}

/// SIGHUP reloads the project, as `POST /api/reload` does.
async fn reload_on_hangup(runtime: Arc<Runtime>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let _ = runtime.reload("SIGHUP").await;
        }
    }
    #[cfg(not(unix))]
    let _ = runtime;
}
