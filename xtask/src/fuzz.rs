//! `cargo xtask fuzz`: runs every cargo-fuzz target of `fuzz/` for a bounded time each, one
//! after another, seeded from the committed corpus `fuzz/corpus/<target>/`.
//!
//! The targets are built once (`cargo +nightly fuzz build --sanitizer none`), then each
//! binary runs as `cargo fuzz run` would start it. Each run gets a temporary working corpus (the first corpus directory, where libFuzzer
//! writes what it finds) before the read-only seed directory, so the repository only ever
//! holds the seeds. Prints per target the executions, exec/s, seconds and whether it crashed;
//! fails on any crash, naming the input libFuzzer saved under `fuzz/artifacts/<target>/`.
//! `--smoke` is the short run `cargo xtask test` does.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// Every target of `fuzz/Cargo.toml`, in the order they run.
pub const TARGETS: &[&str] = &[
    "head_parse",
    "frame_rewrite",
    "first_request",
    "config_parse",
    "control_request",
    "html_rewrite",
    "upstream_response",
    "keepalive_head",
];

/// Seconds per target of a campaign, unless `--time` says otherwise.
const DEFAULT_TIME: u64 = 120;
/// Seconds per target of `--smoke`.
const SMOKE_TIME: u64 = 4;
/// At most this many executions per target in `--smoke`.
const SMOKE_RUNS: u64 = 200_000;
/// cargo-fuzz options of both the build and the runs. No sanitizer: the code under test is
/// safe Rust (its `unsafe` is in tests and `Pod` impls only), so AddressSanitizer would find
/// nothing and halve the executions; panics, overflow checks and debug assertions stay on.
const FUZZ_OPTS: &[&str] = &["--sanitizer", "none"];
/// How long a run may exceed its time (startup, loading the corpus, the final merge of
/// stats) before it is killed.
const GRACE: Duration = Duration::from_secs(120);

#[derive(clap::Args, Debug, Default)]
pub struct FuzzArgs {
    /// Seconds per target (default 120; 4 with --smoke).
    #[arg(long)]
    pub time: Option<u64>,
    /// Only this target (repeatable); default: all of them.
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// A short run of each target, bounded in time and executions (what CI runs).
    #[arg(long)]
    pub smoke: bool,
}

/// The outcome of one target's run.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    executions: Option<u64>,
    exec_per_sec: Option<u64>,
    crash_file: Option<String>,
}

/// Installs cargo-fuzz when `cargo fuzz --version` fails (idempotent).
pub fn ensure_cargo_fuzz() -> Result<()> {
    let works = || {
        Command::new(cmd::cargo())
            .args(["fuzz", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if works() {
        println!("xtask: cargo-fuzz ... ok");
        return Ok(());
    }
    println!("xtask: cargo-fuzz ... missing: installing it (about a minute)");
    cmd::run(Command::new(cmd::cargo()).args(["install", "cargo-fuzz", "--locked"]))
        .context("installing cargo-fuzz failed")?;
    if !works() {
        bail!("`cargo fuzz --version` still fails after installing cargo-fuzz");
    }
    Ok(())
}

/// `cargo +nightly …`, through rustup (the `cargo` running xtask is not the rustup proxy).
fn nightly_cargo(fuzz_dir: &Path) -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(fuzz_dir).args(["run", "nightly", "cargo"]);
    // Set for xtask by the outer cargo; the nested toolchain must choose its own.
    for k in ["CARGO", "RUSTC", "RUSTUP_TOOLCHAIN", "CARGO_TARGET_DIR"] {
        c.env_remove(k);
    }
    c
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in &args.targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!(
                    "unknown fuzz target {t:?} (targets: {})",
                    TARGETS.join(", ")
                );
            }
        }
        TARGETS
            .iter()
            .copied()
            .filter(|t| args.targets.iter().any(|a| a == t))
            .collect()
    };
    let secs = args
        .time
        .unwrap_or(if args.smoke { SMOKE_TIME } else { DEFAULT_TIME });
    if secs == 0 {
        bail!("--time must be at least 1 second");
    }
    ensure_cargo_fuzz()?;
    let fuzz_dir = cmd::workspace_root().join("fuzz");

    let t = Instant::now();
    let mut build = nightly_cargo(&fuzz_dir);
    build.args(["fuzz", "build"]).args(FUZZ_OPTS);
    if targets.len() == 1 {
        build.args(&targets);
    }
    cmd::run(&mut build)
        .context("building the fuzz targets failed (is nightly installed? `cargo xtask setup`)")?;
    println!(
        "xtask: fuzz targets built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let host = cmd::stdout_of(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
    let host = host
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("no `host:` in `rustc +nightly -vV`")?;
    let bin_dir = fuzz_dir.join("target").join(host.trim()).join("release");

    // Under /dev/shm when there is one: control_request fsyncs its state files.
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let work = tmp.join(format!("force-https-fuzz-{}", std::process::id()));
    let result = run_all(&fuzz_dir, &bin_dir, &work, &targets, secs, args.smoke);
    let _ = std::fs::remove_dir_all(&work);
    let rows = result?;

    println!(
        "xtask: fuzz summary ({secs} s per target{})",
        if args.smoke { ", smoke" } else { "" }
    );
    println!(
        "xtask:   {:<16} {:>12} {:>9} {:>7}  result",
        "target", "executions", "exec/s", "seconds"
    );
    let mut crashes = Vec::new();
    for (target, o, took) in &rows {
        let num = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |n| n.to_string());
        let result = match &o.crash_file {
            Some(f) => format!("CRASH {f}"),
            None => "ok".to_string(),
        };
        println!(
            "xtask:   {target:<16} {:>12} {:>9} {:>7.0}  {result}",
            num(o.executions),
            num(o.exec_per_sec),
            took.as_secs_f64()
        );
        if o.crash_file.is_some() {
            crashes.push(*target);
        }
    }
    if !crashes.is_empty() {
        bail!(
            "fuzz target(s) crashed: {} (reproduce: cd fuzz && cargo +nightly fuzz run --sanitizer none TARGET CRASH_FILE)",
            crashes.join(", ")
        );
    }
    Ok(())
}

fn run_all(
    fuzz_dir: &Path,
    bin_dir: &Path,
    work: &Path,
    targets: &[&str],
    secs: u64,
    smoke: bool,
) -> Result<Vec<(&'static str, Outcome, Duration)>> {
    let mut rows = Vec::new();
    for &target in targets {
        let seeds = fuzz_dir.join("corpus").join(target);
        if !seeds.is_dir() {
            bail!("no seed corpus {}", seeds.display());
        }
        let dir = work.join(target);
        let corpus = dir.join("corpus");
        let state = dir.join("state");
        for d in [&corpus, &state] {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let artifacts = fuzz_dir.join("artifacts").join(target);
        std::fs::create_dir_all(&artifacts)
            .with_context(|| format!("cannot create {}", artifacts.display()))?;
        // The binary itself, as `cargo fuzz run` would start it, without another build.
        let mut c = Command::new(bin_dir.join(target));
        c.current_dir(fuzz_dir)
            .env("FH_FUZZ_STATE_DIR", &state)
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(format!("-max_total_time={secs}"))
            .args(["-print_final_stats=1", "-timeout=10", "-rss_limit_mb=2048"])
            .arg(&corpus)
            .arg(&seeds);
        if smoke {
            c.arg(format!("-runs={SMOKE_RUNS}"));
        }
        let t = Instant::now();
        let o = run_one(c, &dir.join("log"), Duration::from_secs(secs) + GRACE)
            .with_context(|| format!("fuzz target {target}"))?;
        let name = TARGETS
            .iter()
            .copied()
            .find(|t| *t == target)
            .unwrap_or("?");
        let took = t.elapsed();
        let mut o = o;
        // libFuzzer's average is whole executions per whole second: 0 under a second.
        if o.exec_per_sec.is_none_or(|r| r == 0)
            && let Some(n) = o.executions
        {
            o.exec_per_sec = Some((n as f64 / took.as_secs_f64().max(0.001)) as u64);
        }
        rows.push((name, o, took));
    }
    Ok(rows)
}

/// Runs one `cargo fuzz run`, echoing libFuzzer's milestones and keeping its whole output in
/// `log`; killed (with its process group) after `limit`.
fn run_one(mut c: Command, log: &Path, limit: Duration) -> Result<Outcome> {
    println!("xtask: $ {}", cmd::show(&c));
    c.stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::show(&c)))?;
    let pid = child.id();
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let log_path = log.to_path_buf();
    let reader = std::thread::spawn(move || -> Vec<String> {
        let mut file = std::fs::File::create(&log_path).ok();
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            if is_milestone(&line) {
                println!("  {line}");
            }
            lines.push(line);
        }
        lines
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() > limit {
            // SAFETY: kill has no memory-safety preconditions; the group is our child's.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let lines = reader.join().unwrap_or_default();
    let mut o = parse_output(&lines);
    match status {
        None => bail!(
            "still running after {} s: killed (log {})",
            limit.as_secs(),
            log.display()
        ),
        Some(s) if !s.success() && o.crash_file.is_none() => {
            for l in lines.iter().rev().take(40).rev() {
                eprintln!("  {l}");
            }
            if o.executions.is_none() {
                bail!("failed before fuzzing ({s}); output above");
            }
            o.crash_file = Some(format!("(no input saved; exit {s})"));
        }
        Some(_) => {}
    }
    if o.crash_file.is_some() {
        for l in lines.iter().rev().take(40).rev() {
            eprintln!("  {l}");
        }
    }
    Ok(o)
}

/// The lines worth showing while a target runs.
fn is_milestone(line: &str) -> bool {
    line.contains("INITED")
        || line.contains("DONE")
        || line.starts_with("stat::")
        || line.contains("==ERROR")
        || line.contains("panicked")
        || line.contains("Test unit written to")
        || line.contains("SUMMARY")
        || line.contains("error:")
}

/// Executions, exec/s and the crash file from libFuzzer's output: `stat::` lines
/// (`-print_final_stats=1`), else the last `#N ... exec/s: R` status line.
fn parse_output(lines: &[String]) -> Outcome {
    let mut o = Outcome::default();
    for l in lines {
        if let Some(v) = l.strip_prefix("stat::number_of_executed_units:") {
            o.executions = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("stat::average_exec_per_sec:") {
            o.exec_per_sec = v.trim().parse().ok();
        } else if let Some(p) = l.split("Test unit written to ").nth(1) {
            o.crash_file = Some(p.trim().to_string());
        } else if let Some(rest) = l.strip_prefix('#')
            && o.executions.is_none()
        {
            let n = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            let rate = rest
                .split("exec/s: ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|r| r.parse().ok());
            if n.is_some() {
                o.executions = n;
                o.exec_per_sec = rate.or(o.exec_per_sec);
            }
        }
    }
    // A `#N` line can precede the final stats; the stats win.
    if let Some(v) = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
    {
        o.executions = v.trim().parse().ok();
    }
    o
}

/// The seed directory of each target, for the unit test.
#[cfg(test)]
fn seeds(target: &str) -> std::path::PathBuf {
    cmd::workspace_root().join("fuzz/corpus").join(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_final_stats() {
        let lines: Vec<String> = [
            "INFO: Seed: 1",
            "#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb",
            "#1048576\tpulse  cov: 10 ft: 11 corp: 1/1b lim: 4 exec/s: 349525 rss: 31Mb",
            "#1234567\tDONE   cov: 10 ft: 11 corp: 1/1b lim: 4 exec/s: 41152 rss: 31Mb",
            "Done 1234567 runs in 30 second(s)",
            "stat::number_of_executed_units: 1234567",
            "stat::average_exec_per_sec:     41152",
            "stat::new_units_added:          3",
        ]
        .map(String::from)
        .to_vec();
        let o = parse_output(&lines);
        assert_eq!(o.executions, Some(1_234_567));
        assert_eq!(o.exec_per_sec, Some(41152));
        assert_eq!(o.crash_file, None);
    }

    #[test]
    fn parses_a_crash() {
        let lines: Vec<String> = [
            "#77\tNEW    cov: 10 ft: 11 corp: 2/3b lim: 4 exec/s: 0 rss: 30Mb L: 2/2 MS: 1 ChangeBit-",
            "thread '<unnamed>' panicked at fuzz_targets/x.rs:3:5:",
            "==123== ERROR: libFuzzer: deadly signal",
            "artifact_prefix='/w/fuzz/artifacts/x/'; Test unit written to /w/fuzz/artifacts/x/crash-abc",
            "stat::number_of_executed_units: 80",
            "stat::average_exec_per_sec:     0",
        ]
        .map(String::from)
        .to_vec();
        let o = parse_output(&lines);
        assert_eq!(o.executions, Some(80));
        assert_eq!(
            o.crash_file.as_deref(),
            Some("/w/fuzz/artifacts/x/crash-abc")
        );
    }

    #[test]
    fn targets_match_the_fuzz_crate_and_have_seeds() {
        let manifest =
            std::fs::read_to_string(cmd::workspace_root().join("fuzz/Cargo.toml")).unwrap();
        let bins: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|n| *n != "force-https-fuzz")
            .collect();
        let mut want = TARGETS.to_vec();
        want.sort_unstable();
        let mut bins = bins;
        bins.sort_unstable();
        assert_eq!(bins, want);
        for t in TARGETS {
            let n = std::fs::read_dir(seeds(t)).map(|d| d.count()).unwrap_or(0);
            assert!(n >= 10, "{t}: {n} seeds");
        }
    }
}
