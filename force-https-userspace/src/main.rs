//! The `force-https` binary: see `force-https --help`.

fn main() -> std::process::ExitCode {
    force_https::cli::main()
}
