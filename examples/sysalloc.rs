//! `crossdock` on the system allocator, for heap profilers (heaptrack, massif) that see only
//! malloc: the binary's mimalloc hands out memory they cannot attribute (docs/performance.md,
//! "Memory after a burst"). Same commands and arguments as `crossdock`; not for production,
//! where glibc's malloc costs a third of a flow (src/main.rs).
//!
//!   cargo build --release --example sysalloc
//!   heaptrack target/release/examples/sysalloc run PROJECT
//!   SOAK_BIN=target/release/examples/sysalloc tools/soak.sh burst

fn main() -> std::process::ExitCode {
    crossdock::cli::main()
}
