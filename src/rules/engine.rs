//! The one sandboxed Rhai engine factory, its [`Limits`] and the wall-clock deadline.
//!
//! Every `rhai::Engine` in crossdock is built by [`build`]. The sandbox:
//! - no file, network or process access: Rhai's standard library has none, `import` is a
//!   disabled keyword and the module resolver is a dummy, so nothing can be loaded from disk;
//! - `eval` is a disabled keyword, so scripts cannot compile code at run time;
//! - strict variables: an unknown variable is a compile error (caught by `crossdock check`);
//! - limits on operations, call depth, expression depth and string/array/map sizes, so a
//!   runaway script fails its event, not the engine;
//! - a wall-clock deadline checked from `on_progress` (a timeout around a synchronous eval
//!   would do nothing): the deadline lives in a thread-local set by [`Deadline::start`] for
//!   the duration of one evaluation, because one shared engine serves many threads at once;
//! - `print` and `debug` go to `tracing`, never to stdout.
//!
//! One limit Rhai cannot enforce is the nesting depth of values a script builds
//! (`loop { m = #{m: m} }`): Rhai clones, drops and measures values recursively, so a deep enough
//! value overflows the stack. The size limits do not bound depth usefully (a 100 000-element
//! array can be 100 000 deep), but every nesting step re-measures the whole value, so depth
//! grows with the square root of the time spent: within the default 250 ms a script reaches
//! about 900 levels in a debug build and 2 500 in release on a 2-core machine, where a 2 MiB
//! stack overflows at about 900 (debug) and beyond 9 000 (release). Threads that evaluate rules
//! should therefore have at least [`MIN_STACK`] bytes of stack (tokio:
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
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The value `on_progress` terminates a script with when its deadline has passed; recognised
/// again when the error is turned into a `RunError`.
pub(crate) const DEADLINE_TOKEN: &str = "crossdock: deadline exceeded";

/// How many operations pass between two clock reads: reading the clock costs about as much as a
/// few cheap operations, and 64 operations take microseconds.
const CLOCK_EVERY: u64 = 64;

/// Arms the wall-clock deadline for evaluations on the current thread until dropped.
pub(crate) struct Deadline {
    previous: Option<Instant>,
}

impl Deadline {
    pub(crate) fn start(timeout: Duration) -> Deadline {
        // Instant + Duration panics on overflow; an absurd timeout means "no deadline".
        let at = Instant::now().checked_add(timeout);
        let previous = DEADLINE.with(|d| d.replace(at));
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
    DEADLINE.with(|d| d.get().is_some_and(|at| Instant::now() >= at))
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

    engine.on_print(|text| tracing::info!(text, "Script print"));
    engine.on_debug(|text, source, pos| {
        tracing::debug!(
            text,
            script = source.unwrap_or(""),
            line = pos.line(),
            "Script debug"
        );
    });

    super::functions::register(&mut engine);
    super::handles::register(&mut engine);
    engine
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_per_thread_and_restored() {
        assert!(!past_deadline());
        {
            let _outer = Deadline::start(Duration::ZERO);
            assert!(past_deadline());
            std::thread::spawn(|| assert!(!past_deadline()))
                .join()
                .unwrap();
            {
                let _inner = Deadline::start(Duration::from_secs(60));
                assert!(!past_deadline());
            }
            assert!(past_deadline());
        }
        assert!(!past_deadline());
        let _huge = Deadline::start(Duration::MAX);
        assert!(!past_deadline());
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
