// glibc's malloc spent about a third of a flow's and of the state writer's time on arena locks
// and on frees of memory another thread allocated; mimalloc does neither (docs/performance.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    crossdock::allocator::mimalloc_is_global();
    crossdock::cli::main()
}
