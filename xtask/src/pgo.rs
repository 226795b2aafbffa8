//! `cargo xtask pgo`: the release daemon built with profile-guided optimization (PGO), for
//! `cargo xtask bench --pgo` and `cargo xtask dist --pgo`.
//!
//! Three steps, as rustc's PGO guide describes
//! (<https://doc.rust-lang.org/rustc/profile-guided-optimization.html>):
//!
//! 1. **Instrumented build** (`-Cprofile-generate`), into `target/pgo/generate/`.
//! 2. **Training**: `cargo xtask bench` runs that binary alone ([`TRAINING_PHASES`], one short
//!    pass each, in the bench's namespaces: HTTPS h1 and h2 keep-alive, new TLS connections,
//!    proxied plain HTTP, socket-path redirects). At its clean exit it writes its counts
//!    (`*.profraw`) into `target/pgo/profiles/`, merged by `llvm-profdata` (rustup's
//!    `llvm-tools` component, the LLVM of the rustc that builds) into
//!    `target/pgo/force-https.profdata`.
//! 3. **Optimized build** (`-Cprofile-use`), into `target/pgo/use/`: the binary that is returned.
//!
//! Both builds name the host target (`--target`), so `RUSTFLAGS` reaches the daemon's crates
//! only, not build scripts or proc macros, and their own target directories keep the plain
//! `target/release` build as it was. A `RUSTFLAGS` set by the caller is kept, the PGO flag
//! added to it. Needs root (the training runs the bench); about 15 minutes on two cores
//! (two fat-LTO builds and a minute of load).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};

use crate::cmd;

/// The bench phases the instrumented daemon is trained on: every request path a platform's
/// edge serves (keep-alive and new connections, HTTPS h1 and h2, proxied plain HTTP, the
/// socket path's redirects). Large bodies are left out: their time is the kernel's and the
/// cipher's, which PGO does not change.
pub const TRAINING_PHASES: &str =
    "https-h1,https-h2,https-new-conn,http-proxied-keepalive,redirect-new-conn,redirect-keepalive";

/// Seconds of load per training phase: a few hundred thousand requests in all, enough for
/// every branch a request takes to be counted many times.
pub const TRAINING_SECONDS: u64 = 4;

/// Where the PGO builds and their profile live, under the target directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `target/pgo/generate`: target directory of the instrumented build.
    pub generate_dir: PathBuf,
    /// `target/pgo/profiles`: the training's raw profiles (`*.profraw`).
    pub profiles: PathBuf,
    /// `target/pgo/force-https.profdata`: the merged profile.
    pub profdata: PathBuf,
    /// `target/pgo/use`: target directory of the optimized build.
    pub use_dir: PathBuf,
}

impl Layout {
    pub fn new(target: &Path) -> Layout {
        let pgo = target.join("pgo");
        Layout {
            generate_dir: pgo.join("generate"),
            profiles: pgo.join("profiles"),
            profdata: pgo.join("force-https.profdata"),
            use_dir: pgo.join("use"),
        }
    }

    /// The daemon a build into `target_dir` for `host` writes.
    pub fn binary(target_dir: &Path, host: &str) -> PathBuf {
        target_dir.join(host).join("release").join("force-https")
    }
}

/// `host: <triple>` from `rustc -vV`.
pub fn parse_host(vv: &str) -> Option<&str> {
    vv.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::trim)
        .filter(|h| !h.is_empty())
}

/// `RUSTFLAGS` for a PGO build: the caller's flags (if any), then `flag`.
pub fn rustflags(existing: Option<OsString>, flag: &str) -> OsString {
    match existing {
        Some(mut f) if !f.is_empty() => {
            f.push(" ");
            f.push(flag);
            f
        }
        _ => flag.into(),
    }
}

/// The arguments of the training run: `cargo xtask bench` on `bin` alone.
pub fn training_args(bin: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = [
        "bench",
        "--peers",
        "force-https",
        "--phases",
        TRAINING_PHASES,
        "--passes",
        "1",
        "--warmup",
        "0",
        "--scale-hosts",
        "0",
        "--duration",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    a.push(TRAINING_SECONDS.to_string().into());
    a.push("--force-https-bin".into());
    a.push(bin.into());
    a
}

/// The host triple of the rustc that builds the workspace.
fn host_triple() -> Result<String> {
    let vv = cmd::stdout_of(
        Command::new("rustc")
            .current_dir(cmd::workspace_root())
            .arg("-vV"),
    )
    .context("cannot run rustc -vV")?;
    parse_host(&vv)
        .map(str::to_string)
        .with_context(|| format!("no `host:` line in rustc -vV: {vv}"))
}

/// `llvm-profdata` of the rustc that builds (rustup's `llvm-tools`, installed when missing):
/// its profile format is the one that rustc's LLVM writes and reads.
fn llvm_profdata(host: &str) -> Result<PathBuf> {
    let sysroot = cmd::stdout_of(
        Command::new("rustc")
            .current_dir(cmd::workspace_root())
            .args(["--print", "sysroot"]),
    )
    .context("cannot run rustc --print sysroot")?;
    let tool = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-profdata");
    if tool.exists() {
        println!("xtask: llvm-tools ... ok");
        return Ok(tool);
    }
    println!("xtask: llvm-tools ... missing: installing it (rustup component add llvm-tools)");
    cmd::run(
        Command::new("rustup")
            .current_dir(cmd::workspace_root())
            .args(["component", "add", "llvm-tools"]),
    )
    .context("installing rustup's llvm-tools failed")?;
    ensure!(
        tool.exists(),
        "{} is still missing after `rustup component add llvm-tools`",
        tool.display()
    );
    Ok(tool)
}

/// `cargo build --release` of the daemon for `host` into `target_dir`, with `flag` added to
/// `RUSTFLAGS`.
fn build(host: &str, target_dir: &Path, flag: &str) -> Result<()> {
    let mut c = cmd::cargo_cmd();
    c.args([
        "build",
        "--release",
        "-p",
        "force-https-userspace",
        "--bin",
        "force-https",
        "--target",
        host,
        "--target-dir",
    ])
    .arg(target_dir)
    .env("RUSTFLAGS", rustflags(std::env::var_os("RUSTFLAGS"), flag));
    println!("xtask: pgo: RUSTFLAGS={flag}");
    cmd::run(&mut c)
}

/// Builds, trains and rebuilds the daemon; returns the optimized binary
/// (`target/pgo/use/<host>/release/force-https`). Errors: not root, a failed build, a
/// training run that failed or left no profile, a failed merge.
pub fn run() -> Result<PathBuf> {
    if !cmd::is_root() {
        bail!("`cargo xtask pgo` must run as root: its training run is a `cargo xtask bench`");
    }
    let target = cmd::target_dir()?;
    let layout = Layout::new(&target);
    let host = host_triple()?;
    let profdata_tool = llvm_profdata(&host)?;

    println!("xtask: pgo: 1/3 the instrumented build");
    if layout.profiles.exists() {
        std::fs::remove_dir_all(&layout.profiles)
            .with_context(|| format!("cannot clean {}", layout.profiles.display()))?;
    }
    std::fs::create_dir_all(&layout.profiles)
        .with_context(|| format!("cannot create {}", layout.profiles.display()))?;
    let generate_flag = format!("-Cprofile-generate={}", layout.profiles.display());
    build(&host, &layout.generate_dir, &generate_flag).context("the instrumented build failed")?;
    let instrumented = Layout::binary(&layout.generate_dir, &host);
    // The build's own profiles, if any (none with --target; kept out of the merge anyway).
    clean_profiles(&layout.profiles)?;

    println!("xtask: pgo: 2/3 training: the instrumented daemon under the bench's load");
    let xtask = std::env::current_exe().context("cannot find the xtask binary")?;
    cmd::run(Command::new(&xtask).args(training_args(&instrumented)))
        .context("the training run (cargo xtask bench) failed")?;
    let raw = profiles_in(&layout.profiles)?;
    ensure!(
        !raw.is_empty(),
        "the training run left no profile in {}: the instrumented daemon did not exit cleanly",
        layout.profiles.display()
    );
    cmd::run(
        Command::new(&profdata_tool)
            .arg("merge")
            .arg("-o")
            .arg(&layout.profdata)
            .args(&raw),
    )
    .context("llvm-profdata merge failed")?;

    println!("xtask: pgo: 3/3 the optimized build");
    let use_flag = format!("-Cprofile-use={}", layout.profdata.display());
    build(&host, &layout.use_dir, &use_flag).context("the optimized build failed")?;
    let bin = Layout::binary(&layout.use_dir, &host);
    ensure!(bin.exists(), "{} was not built", bin.display());
    println!("xtask: pgo: {}", bin.display());
    Ok(bin)
}

/// The `*.profraw` files in `dir`.
fn profiles_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "profraw") {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

/// Removes every `*.profraw` in `dir`.
fn clean_profiles(dir: &Path) -> Result<()> {
    for p in profiles_in(dir)? {
        std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_from_rustc() {
        let vv = "rustc 1.95.0 (abc 2026-01-01)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\nLLVM version: 22.1.2\n";
        assert_eq!(parse_host(vv), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(parse_host("rustc 1.95.0\n"), None);
        assert_eq!(parse_host("host: \n"), None);
    }

    #[test]
    fn rustflags_keep_the_callers() {
        assert_eq!(rustflags(None, "-Cx"), OsString::from("-Cx"));
        assert_eq!(rustflags(Some("".into()), "-Cx"), OsString::from("-Cx"));
        assert_eq!(
            rustflags(Some("-Ctarget-cpu=native".into()), "-Cx"),
            OsString::from("-Ctarget-cpu=native -Cx")
        );
    }

    #[test]
    fn layout_under_target() {
        let l = Layout::new(Path::new("/t"));
        assert_eq!(l.generate_dir, Path::new("/t/pgo/generate"));
        assert_eq!(l.profiles, Path::new("/t/pgo/profiles"));
        assert_eq!(l.profdata, Path::new("/t/pgo/force-https.profdata"));
        assert_eq!(
            Layout::binary(&l.use_dir, "x86_64-unknown-linux-gnu"),
            Path::new("/t/pgo/use/x86_64-unknown-linux-gnu/release/force-https")
        );
    }

    #[test]
    fn training_is_a_bench_of_the_instrumented_binary_that_the_bench_accepts() {
        use clap::Parser;
        let args = training_args(Path::new("/t/pgo/generate/h/release/force-https"));
        let mut argv: Vec<OsString> = vec!["cargo xtask".into()];
        argv.extend(args.iter().cloned());
        let cli = crate::Cli::try_parse_from(&argv).unwrap();
        let crate::Command::Bench(bench) = cli.command else {
            panic!("not the bench command");
        };
        assert_eq!(
            bench.force_https_bin.as_deref(),
            Some(Path::new("/t/pgo/generate/h/release/force-https"))
        );
        assert!(!bench.pgo);
        assert_eq!(bench.passes, 1);
        assert_eq!(bench.scale_hosts, 0);
        assert_eq!(bench.phases().len(), TRAINING_PHASES.split(',').count());
    }
}
