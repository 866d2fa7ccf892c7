//! The one sandboxed Rhai engine factory, its [`Limits`] and the wall-clock deadline.
//!
//! Every `rhai::Engine` in crossdock is built by [`build`]. The sandbox:
//! - no file, network or process access: Rhai's standard library has none, `import` is a
//!   disabled keyword and the module resolver is a dummy, so nothing can be loaded from disk;
//! - `eval` is a disabled keyword, so scripts cannot compile code at run time;
//! - strict variables: an unknown variable is a compile error (caught by `crossdock check`);
//! - limits on operations, call depth, expression depth and string/array/map sizes, so a
//!   runaway script fails its event, not the engine;
//! - a deadline checked from `on_progress` (a timeout around a synchronous eval would do
//!   nothing): the deadline lives in a thread-local set by [`Deadline::start`] for the
//!   duration of one evaluation, because one shared engine serves many threads at once. Past
//!   its wall-clock timeout a script is stopped once it has also used the processor for a
//!   quarter of a timeout more, so that a thread a loaded host did not run for a while does
//!   not fail a script that did nothing wrong (where the processor time cannot be read, the
//!   wall clock alone decides);
//! - `print` and `debug` go to `tracing`, never to stdout, at most [`MAX_LOG_LINES`] of them
//!   per event (counted per thread between [`LogBudget::start`] and its drop, which logs how
//!   many more were suppressed).
//!
//! One limit Rhai cannot enforce is the nesting depth of values a script builds
//! (`loop { m = #{m: m} }`): Rhai clones, drops and measures values recursively, so a deep enough
//! value overflows the stack. The size limits do not bound depth usefully (a 100 000-element
//! array can be 100 000 deep), but every nesting step re-measures the whole value, so depth
//! grows with the square root of the time spent. A busy script is stopped after a timeout and
//! a quarter of processor time at most (about 320 ms by default), when it has reached about
//! 900 levels in a debug build and 2 000 to 2 500 in release on a 2-core machine, where a
//! 2 MiB stack overflows at about 900 (debug) and beyond 9 000 (release). Threads that
//! evaluate rules should therefore have at least [`MIN_STACK`] bytes of stack (tokio:
//! `Builder::thread_stack_size`), which leaves an ample margin in both builds.
//!
//! The engine is configured once and then only shared (`Arc<Engine>`): nothing here mutates
//! it per evaluation.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::module_resolvers::DummyModuleResolver;
use rhai::{Dynamic, Engine, OptimizationLevel};

/// Resource limits for every script and expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Rhai operations (roughly: expression nodes evaluated) per evaluation.
    pub max_operations: u64,
    /// Nested function calls (script functions calling each other, recursion).
    pub max_call_levels: usize,
    /// Nesting of expressions at top level, checked at compile time.
    pub max_expr_depth: usize,
    /// Nesting of expressions inside functions, checked at compile time.
    pub max_function_expr_depth: usize,
    /// Bytes of string data in one value (Rhai sums the strings inside arrays and maps).
    pub max_string_size: usize,
    /// Elements in one array, nested arrays included.
    pub max_array_size: usize,
    /// Properties in one object map, nested maps included.
    pub max_map_size: usize,
    /// Wall-clock time one evaluation may take.
    pub timeout: Duration,
}

impl Default for Limits {
    /// Generous for business rules over one webhook body (bodies of a few MB still fit), tight
    /// enough that a runaway script is stopped in a fraction of a second. Call and expression
    /// depths are kept low enough to stay within a 2 MiB thread stack in debug builds.
    fn default() -> Self {
        Limits {
            max_operations: 1_000_000,
            max_call_levels: 24,
            max_expr_depth: 48,
            max_function_expr_depth: 32,
            max_string_size: 8 * 1024 * 1024,
            max_array_size: 100_000,
            max_map_size: 100_000,
            timeout: Duration::from_millis(250),
        }
    }
}

/// Stack size threads that evaluate scripts and expressions should have (see the module docs):
/// 16 MiB, eight times what the default timeout lets a nesting bomb reach in a debug build.
pub const MIN_STACK: usize = 16 * 1024 * 1024;

thread_local! {
    /// The deadline of the evaluation running on this thread, if any.
    static DEADLINE: Cell<Option<Watch>> = const { Cell::new(None) };
    /// Print and debug lines the event running on this thread has logged and had suppressed,
    /// if one is counting.
    static LOG_LINES: Cell<Option<(u32, u64)>> = const { Cell::new(None) };
}

/// Print and debug lines one event's scripts may log: a loop of `print` would otherwise fill
/// the log (and its disk) with one event.
pub const MAX_LOG_LINES: u32 = 100;

/// Counts the print and debug lines of one event on the current thread until dropped; then
/// logs one line saying how many more were suppressed, if any.
pub(crate) struct LogBudget {
    previous: Option<(u32, u64)>,
}

impl LogBudget {
    pub(crate) fn start() -> LogBudget {
        LogBudget {
            previous: LOG_LINES.with(|c| c.replace(Some((0, 0)))),
        }
    }
}

impl Drop for LogBudget {
    fn drop(&mut self) {
        let previous = self.previous;
        if let Some((_, suppressed)) = LOG_LINES.with(|c| c.replace(previous)) {
            if suppressed > 0 {
                tracing::warn!(
                    suppressed,
                    "{suppressed} more script print/debug lines of this event were suppressed \
                     (at most {MAX_LOG_LINES} are logged per event)"
                );
            }
        }
    }
}

/// Whether one more print or debug line may be logged; counts it either way. Outside a
/// [`LogBudget`] every line is.
fn admit_log_line() -> bool {
    LOG_LINES.with(|c| match c.get() {
        None => true,
        Some((logged, suppressed)) if logged >= MAX_LOG_LINES => {
            c.set(Some((logged, suppressed.saturating_add(1))));
            false
        }
        Some((logged, suppressed)) => {
            c.set(Some((logged + 1, suppressed)));
            true
        }
    })
}

/// One evaluation's deadline.
#[derive(Clone, Copy)]
struct Watch {
    started: Instant,
    timeout: Duration,
    /// When to look again.
    at: Instant,
    /// This thread's processor time when the timeout first passed: past the timeout, a script
    /// is stopped once it has used the processor for a quarter of a timeout more. A thread the
    /// host did not run for a while (a loaded machine) is given more time instead of failing
    /// a script that did nothing wrong, up to [`STARVED_TIMEOUTS`] timeouts in all.
    cpu_mark: Option<Duration>,
}

/// How many timeouts a starved evaluation may take in all before it is stopped anyway.
const STARVED_TIMEOUTS: u32 = 10;

/// The value `on_progress` terminates a script with when its deadline has passed; recognised
/// again when the error is turned into a `RunError`.
pub(crate) const DEADLINE_TOKEN: &str = "crossdock: deadline exceeded";

/// How many operations pass between two clock reads: reading the clock costs about as much as a
/// few cheap operations, and 64 operations take microseconds.
const CLOCK_EVERY: u64 = 64;

/// Arms the deadline for evaluations on the current thread until dropped.
pub(crate) struct Deadline {
    previous: Option<Watch>,
}

impl Deadline {
    pub(crate) fn start(timeout: Duration) -> Deadline {
        let started = Instant::now();
        // Instant + Duration panics on overflow; an absurd timeout means "no deadline".
        let watch = started.checked_add(timeout).map(|at| Watch {
            started,
            timeout,
            at,
            cpu_mark: None,
        });
        let previous = DEADLINE.with(|d| d.replace(watch));
        Deadline { previous }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        let previous = self.previous;
        DEADLINE.with(|d| d.set(previous));
    }
}

fn past_deadline() -> bool {
    DEADLINE.with(|d| {
        let Some(mut watch) = d.get() else {
            return false;
        };
        let now = Instant::now();
        if now < watch.at {
            return false;
        }
        // Only now, rarely, is the (dearer) processor clock read.
        let Some(cpu) = thread_cpu() else {
            return true;
        };
        let grace = watch.timeout / 4;
        match watch.cpu_mark {
            None => watch.cpu_mark = Some(cpu),
            Some(mark) => {
                let busy = cpu.saturating_sub(mark) >= grace;
                let starved_too_long = watch
                    .timeout
                    .checked_mul(STARVED_TIMEOUTS)
                    .is_some_and(|cap| now.duration_since(watch.started) >= cap);
                if busy || starved_too_long {
                    return true;
                }
            }
        }
        match now.checked_add(grace) {
            Some(at) => watch.at = at,
            None => return true,
        }
        d.set(Some(watch));
        false
    })
}

/// The processor time this thread has used, where the platform tells it without `unsafe`
/// (Linux: `/proc/thread-self/stat`, in 10 ms ticks); `None` elsewhere, where the deadline is
/// wall-clock time only.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // After the command name (which may hold spaces and parentheses): utime and stime are the
    // 12th and 13th fields, in USER_HZ ticks, which Linux fixes at 100 a second for /proc.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        user.saturating_add(system).saturating_mul(10),
    ))
}

/// Build a sandboxed engine with `limits`, the crossdock functions and the state handle types.
///
/// This is the only place in the crate that calls `Engine::new`.
pub fn build(limits: &Limits) -> Engine {
    let mut engine = Engine::new();

    // No loading of code from anywhere: `import` and `eval` do not parse, and even a module
    // path that slipped through would resolve to nothing.
    engine.set_module_resolver(DummyModuleResolver::new());
    engine.disable_symbol("import");
    engine.disable_symbol("eval");

    engine.set_strict_variables(true);
    // `record.missing` is `()`, as in JSON-minded languages: records are sparse.
    engine.set_fail_on_invalid_map_property(false);
    // Simple optimisation folds only built-in operators; `Full` would call registered pure
    // functions with constant arguments at compile time, and ours read state.
    engine.set_optimization_level(OptimizationLevel::Simple);

    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_function_expr_depth);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);

    engine.on_progress(|ops| {
        if ops % CLOCK_EVERY == 0 && past_deadline() {
            Some(Dynamic::from(DEADLINE_TOKEN))
        } else {
            None
        }
    });

    engine.on_print(|text| {
        if admit_log_line() {
            tracing::info!(text, "Script print");
        }
    });
    engine.on_debug(|text, source, pos| {
        if !admit_log_line() {
            return;
        }
        tracing::debug!(
            text,
            script = source.unwrap_or(""),
            line = pos.line(),
            "Script debug"
        );
    });

    super::functions::register(&mut engine);
    super::digest::register(&mut engine);
    super::decisions::register(&mut engine);
    super::handles::register(&mut engine);
    engine
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_per_thread_and_restored() {
        // Past the timeout the processor clock is looked at first: two looks decide.
        let past = || past_deadline() || past_deadline();
        assert!(!past());
        {
            let _outer = Deadline::start(Duration::ZERO);
            assert!(past());
            std::thread::spawn(move || assert!(!past())).join().unwrap();
            {
                let _inner = Deadline::start(Duration::from_secs(60));
                assert!(!past());
            }
            assert!(past());
        }
        assert!(!past());
        let _huge = Deadline::start(Duration::MAX);
        assert!(!past());
    }

    #[test]
    fn a_script_the_host_does_not_run_is_given_time_and_a_busy_one_is_not() {
        let limits = Limits {
            max_operations: 0,
            timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let mut engine = build(&limits);
        // Sleeping passes time without using the processor, as a starved thread does.
        engine.register_fn("nap", |ms: rhai::INT| {
            std::thread::sleep(Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
        });
        let run = |src: &str| {
            let _deadline = Deadline::start(limits.timeout);
            let started = Instant::now();
            let stopped = engine
                .run(src)
                .err()
                .map(|e| matches!(*e, rhai::EvalAltResult::ErrorTerminated(..)));
            (stopped, started.elapsed())
        };
        // Busy past the timeout: stopped after about a timeout and a quarter.
        let (stopped, took) = run("loop {}");
        assert_eq!(stopped, Some(true));
        assert!(took < Duration::from_secs(5), "{took:?}");
        let work = "let x = 0; for i in 0..2000 { x += i; }";
        if thread_cpu().is_some() {
            // Nearly four timeouts without the processor, then some work: not stopped.
            assert_eq!(
                run(&format!("nap(250); nap(250); nap(250); {work}")).0,
                None
            );
            // Without it for longer than STARVED_TIMEOUTS timeouts: stopped all the same.
            // (A little work between naps: the clock is read every CLOCK_EVERY operations.)
            let (stopped, took) =
                run("let x = 0; for i in 0..12 { nap(200); for j in 0..100 { x += j; } }");
            assert_eq!(stopped, Some(true));
            assert!(took >= Duration::from_millis(2000), "{took:?}");
        } else {
            // The wall clock alone decides.
            assert_eq!(run(&format!("nap(250); {work}")).0, Some(true));
        }
    }

    #[test]
    fn log_lines_are_capped_per_budget_and_counted_past_it() {
        assert!(admit_log_line(), "no budget, no cap");
        let budget = LogBudget::start();
        let engine = build(&Limits::default());
        engine
            .run("for i in 0..1000 { print(i); debug(i); }")
            .unwrap();
        assert_eq!(LOG_LINES.with(Cell::get), Some((MAX_LOG_LINES, 1900)));
        {
            let _nested = LogBudget::start();
            assert!(admit_log_line());
        }
        assert!(!admit_log_line(), "the outer budget is back");
        drop(budget);
        assert_eq!(LOG_LINES.with(Cell::get), None);
    }

    #[test]
    fn sandbox_refuses_import_and_eval() {
        let engine = build(&Limits::default());
        assert!(engine.compile(r#"import "x" as y;"#).is_err());
        assert!(engine.compile(r#"eval("1")"#).is_err());
        assert!(engine.compile("let a = b;").is_err(), "strict variables");
        // Calling eval through a function pointer does not work either.
        assert!(engine
            .eval::<Dynamic>(r#"call(Fn("eval"), "1 + 1")"#)
            .is_err());
    }
}
