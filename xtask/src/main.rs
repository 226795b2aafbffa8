//! `cargo xtask`: the developer entry point of force-https.
//!
//! - `setup` checks and installs the prerequisites (nightly + rust-src, LLVM dev packages,
//!   bpf-linker, runtime tools);
//! - `test` runs setup, fmt, clippy, the build and the whole test suite;
//! - `demo` runs the daemon in two network namespaces and shows redirects and runtime toggles;
//!   `demo --fleet` shows two edge nodes following one etcd;
//! - `fuzz` runs every cargo-fuzz target of `fuzz/` for a bounded time, seeded from the
//!   committed corpus, and fails on any crash;
//! - `dist` builds the Debian package (cargo-deb) into `target/dist/`;
//! - `pgo` builds the release daemon with profile-guided optimization (trained by a short
//!   bench of its instrumented build) into `target/pgo/use/`;
//! - `bench` compares force-https (with and without the XDP fast path) with nginx, HAProxy and
//!   Caddy on the same machine and writes `target/bench/<timestamp>/{results.json,report.md}`.

mod bench;
mod cmd;
mod demo;
mod dist;
mod fuzz;
mod interrupt;
mod layout;
mod netns;
mod pgo;
mod setup;
mod test;
mod xdp_pass;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Developer tasks for force-https"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the prerequisites and install what is missing (idempotent).
    Setup,
    /// Setup, then fmt --check, clippy -D warnings, build, and the whole test suite.
    Test {
        /// Extra arguments passed to `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
    /// Setup, build, then run the daemon in network namespaces and show what it does (root).
    Demo {
        /// Instead: one etcd and two edge nodes following it (`[fleet]`), shown with curl.
        #[arg(long)]
        fleet: bool,
    },
    /// Runs every fuzz target for a bounded time each, seeded from fuzz/corpus (nightly).
    Fuzz(fuzz::FuzzArgs),
    /// Builds the Debian package (release binary, cargo-deb) into target/dist/.
    Dist(dist::DistArgs),
    /// Builds the package from the debug binary and tests install, remove and purge (root).
    PackageTest,
    /// Benchmarks against nginx, HAProxy and Caddy in network namespaces (root).
    Bench(Box<bench::BenchArgs>),
    /// Builds the release daemon with profile-guided optimization into target/pgo/use/: an
    /// instrumented build, trained by a short `bench` of it, then rebuilt with the profile (root).
    Pgo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::ensure_cargo_bin_on_path();
    let result = match cli.command {
        Command::Setup => setup::run(),
        Command::Test { cargo_test_args } => test::run(&cargo_test_args),
        Command::Demo { fleet } => demo::run(fleet),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Bench(args) => bench::run(*args),
        Command::Pgo => pgo::run().map(|_| ()),
        Command::Dist(args) => dist::run(&args).map(|_| ()),
        Command::PackageTest => dist::test_package(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_passes_everything_after_double_dash() {
        let cli = Cli::try_parse_from(["xtask", "test", "--", "-p", "tests", "--", "--nocapture"])
            .unwrap();
        let Command::Test { cargo_test_args } = cli.command else {
            panic!("not the test command");
        };
        assert_eq!(cargo_test_args, ["-p", "tests", "--", "--nocapture"]);
    }

    #[test]
    fn fuzz_options() {
        let cli = Cli::try_parse_from([
            "xtask",
            "fuzz",
            "--time",
            "30",
            "--target",
            "head_parse",
            "--target",
            "config_parse",
        ])
        .unwrap();
        let Command::Fuzz(a) = cli.command else {
            panic!("not the fuzz command");
        };
        assert_eq!(a.time, Some(30));
        assert_eq!(a.targets, ["head_parse", "config_parse"]);
        assert!(!a.smoke);
    }
}
