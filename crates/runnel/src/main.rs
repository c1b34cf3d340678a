use runnel_protocol::alloc::GuardedAllocator;

/// Keeps a hostile array length in a request from aborting the process; see
/// `runnel_protocol::alloc`.
#[global_allocator]
static ALLOC: GuardedAllocator = GuardedAllocator;

fn main() -> std::process::ExitCode {
    runnel_protocol::alloc::trim_periodically(std::time::Duration::from_secs(5));
    runnel::main()
}
