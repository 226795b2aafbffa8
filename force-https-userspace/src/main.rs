//! The `force-https` binary: see `force-https --help`.

/// The benchmark build counts the responders' allocations (see `force_https::allocs`).
#[cfg(feature = "count-allocs")]
#[global_allocator]
static GLOBAL: force_https::allocs::Counting = force_https::allocs::Counting;

fn main() -> std::process::ExitCode {
    force_https::cli::main()
}
