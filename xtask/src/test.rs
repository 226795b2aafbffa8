//! `cargo xtask test`: everything CI checks, in order, stopping at the first failure.
//!
//! setup → `cargo fmt --all -- --check` → the layout check (`layout.rs`: no import cycle
//! among the userspace modules, request paths independent) → `cargo clippy --workspace --all-targets --exclude
//! force-https-ebpf -- -D warnings` → `cargo build --workspace --bins` → `cargo test --workspace
//! --exclude force-https-ebpf [ARGS]` with `FORCE_HTTPS_BIN` and `FH_BACKEND_BIN` pointing at the
//! binaries just built → the package test (`dist.rs`: the .deb built from the debug binary,
//! installed, checked, removed and purged with dpkg) → the fuzz smoke (`cargo xtask fuzz --smoke`: each target of `fuzz/` for
//! a few seconds). Extra arguments after `--` go to `cargo test`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cmd::{self, Bins};
use crate::setup;

/// The eBPF crate only builds for the bpf target (via the userspace build script).
const EBPF_CRATE: &str = "force-https-ebpf";

pub fn run(cargo_test_args: &[String]) -> Result<()> {
    let start = Instant::now();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let result = steps(cargo_test_args, &mut timings);
    println!("xtask: test summary");
    for (name, d) in &timings {
        println!("xtask:   {name:<8} {:>7.1} s", d.as_secs_f64());
    }
    let total = start.elapsed().as_secs_f64();
    match &result {
        Ok(()) => println!("xtask: test passed in {total:.1} s"),
        Err(_) => println!("xtask: test FAILED after {total:.1} s"),
    }
    result
}

fn steps<'a>(cargo_test_args: &[String], timings: &mut Vec<(&'a str, Duration)>) -> Result<()> {
    let mut step = |name: &'a str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        println!("xtask: == {name} ==");
        let t = Instant::now();
        let r = f();
        timings.push((name, t.elapsed()));
        r.with_context(|| format!("step `{name}` failed"))
    };

    step("setup", &mut setup::run)?;
    step("fmt", &mut || {
        cmd::run(cmd::cargo_cmd().args(["fmt", "--all", "--", "--check"]))
            .context("formatting differs: run `cargo fmt --all`")
    })?;
    step(
        "layout",
        &mut || crate::layout::check(cmd::workspace_root()),
    )?;
    step("clippy", &mut || {
        cmd::run(cmd::cargo_cmd().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--exclude",
            EBPF_CRATE,
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("build", &mut || {
        cmd::run(cmd::cargo_cmd().args(["build", "--workspace", "--bins"]))
    })?;
    step("test", &mut || {
        let bins = Bins::locate()?;
        let mut c = cmd::cargo_cmd();
        c.env("FORCE_HTTPS_BIN", &bins.force_https)
            .env("FH_BACKEND_BIN", &bins.fh_backend)
            .args(["test", "--workspace", "--exclude", EBPF_CRATE])
            .args(cargo_test_args);
        cmd::run(&mut c)
    })?;
    step("package", &mut crate::dist::test_package)?;
    step("fuzz", &mut || {
        crate::fuzz::run(crate::fuzz::FuzzArgs {
            smoke: true,
            ..Default::default()
        })
    })?;
    Ok(())
}
