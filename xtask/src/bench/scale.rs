//! The scale part of `cargo xtask bench`: what the number of hosts costs, measured on the real
//! daemon in its own pair of namespaces (edge pinned to CPU 0, client to CPU 1):
//!
//! - RSS of the daemon idle (sockets only, and with the XDP fast path), and with 100k hosts;
//! - the time to start with 1M hosts (state file → policy table → XDP host map), and its RSS;
//! - the latency from `force-https enable` (process start) until the change is in effect on the
//!   fast path, and back with `disable`, with 1M hosts loaded;
//! - the fast path's edge CPU per redirect (new connection each) with 10 hosts and with 1M;
//! - heap allocations per fast-path redirect, with the `count-allocs` build.
//!
//! Hosts are loaded the way a restart loads them: a `state.json` of runtime hosts written
//! before the daemon starts. [`section`] is called by the bench after the peer comparison
//! (or alone with `--only-scale`) and returns the report's "Scale" section.

use std::{
    fmt::Write as _,
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{cpu, topology::Topology};
use crate::cmd;

use super::topology::EDGE_V4 as EDGE_ADDR;
/// The site host enforced from the config.
const SITE_HOST: &str = "bench.example";
/// A site host without backend, toggled by the latency measurement (404 when not enforced).
const TOGGLE_HOST: &str = "toggle.example";

/// What the scale measurements can use (given by the bench).
pub struct ScaleCtx<'a> {
    /// The release `force-https` binary.
    pub force_https: &'a Path,
    /// The bench's scratch directory (the `count-allocs` build is copied there).
    pub scratch: &'a Path,
    /// `--duration`, in seconds.
    pub duration_s: u64,
    /// Hosts of the large table.
    pub big: usize,
}

/// The Markdown lines of the "Scale" section.
pub fn section(ctx: &ScaleCtx) -> Result<Vec<String>> {
    let allocs = build_count_allocs(ctx.scratch)?;
    let opts = Options {
        force_https: ctx.force_https.to_path_buf(),
        force_https_allocs: allocs,
        duration: Duration::from_secs(ctx.duration_s),
        big: ctx.big,
        interrupted: super::interrupted,
    };
    let r = run(&opts)?;
    Ok(report(&r))
}

/// Builds the daemon with `--features count-allocs` and copies it into `scratch`, then puts
/// the normal release build back in place (cargo keeps both, so the second build only
/// relinks).
fn build_count_allocs(scratch: &Path) -> Result<PathBuf> {
    let build = |features: &[&str]| -> Result<()> {
        let mut c = cmd::cargo_cmd();
        c.args([
            "build",
            "--release",
            "-p",
            "force-https-userspace",
            "--bin",
            "force-https",
        ])
        .args(features)
        .current_dir(cmd::workspace_root());
        cmd::run(&mut c)
    };
    build(&["--features", "count-allocs"])?;
    let bin = cmd::target_dir()?.join("release").join("force-https");
    let dest = scratch.join("force-https-count-allocs");
    fs::copy(&bin, &dest).with_context(|| format!("cannot copy {}", bin.display()))?;
    build(&[])?;
    Ok(dest)
}

/// What the scale measurements need.
pub struct Options {
    /// The release daemon.
    pub force_https: PathBuf,
    /// The daemon built with `--features count-allocs`.
    pub force_https_allocs: PathBuf,
    /// Length of each load run.
    pub duration: Duration,
    /// Hosts of the large table (1M).
    pub big: usize,
    /// Set by SIGINT/SIGTERM: stop between steps.
    pub interrupted: fn() -> bool,
}

/// The figures, for the report.
#[derive(Debug, Default, Clone)]
pub struct Results {
    pub rss_idle_sockets_kib: u64,
    pub rss_idle_xdp_kib: u64,
    pub rss_100k_kib: u64,
    pub rss_big_kib: u64,
    pub big_hosts: usize,
    pub big_ready_ms: u64,
    pub big_map_fill_ms: Option<u64>,
    pub enable_cli_ms: Vec<f64>,
    pub enable_effect_ms: Vec<f64>,
    pub disable_effect_ms: Vec<f64>,
    pub fast_path: Vec<FastPathCost>,
    pub allocations: Option<(u64, u64)>,
    pub xdp_mode: String,
}

/// The fast path under load with a given number of hosts.
#[derive(Debug, Default, Clone)]
pub struct FastPathCost {
    pub hosts: usize,
    pub requests: u64,
    pub rate: f64,
    pub edge_cpu_us: f64,
    pub machine_cpu_us: f64,
    pub fast_share: f64,
    /// Min and max edge CPU µs/req over the passes.
    pub edge_cpu_spread: (f64, f64),
}

/// One daemon in a fresh topology of the bench (namespaces, veth, pinned NAPI: see
/// [`Topology`]); everything is torn down on drop.
struct Edge {
    topo: Topology,
    dir: PathBuf,
    config: PathBuf,
    daemon: Option<Child>,
    bin: PathBuf,
}

impl Edge {
    fn new(tag: &str, bin: &Path) -> Result<Edge> {
        let dir = std::env::temp_dir().join(format!("fhsc-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("state"))?;
        Ok(Edge {
            topo: Topology::create(&[SITE_HOST])?,
            config: dir.join("config.toml"),
            dir,
            daemon: None,
            bin: bin.to_path_buf(),
        })
    }

    fn write_config(&self, xdp: bool) -> Result<()> {
        let mut t = format!(
            "[listen]\nhttp = [\"{EDGE_ADDR}:80\"]\nhttps = []\n\n[state]\ndir = {:?}\ncontrol_socket = {:?}\n\n",
            self.dir.join("state").display().to_string(),
            self.dir.join("control.sock").display().to_string(),
        );
        if xdp {
            let _ = write!(
                t,
                "[xdp]\ninterface = \"{}\"\nmode = \"auto\"\nmax_hosts = 2097152\n\n",
                self.topo.edge_if
            );
        }
        let _ = write!(
            t,
            "[[site]]\nname = \"bench\"\ndomains = [\"{SITE_HOST}\"]\nforce_https = true\n\n\
             [[site]]\nname = \"toggle\"\ndomains = [\"{TOGGLE_HOST}\"]\n"
        );
        fs::write(&self.config, t)?;
        Ok(())
    }

    /// A state file of `n` runtime hosts `h<i>.bulk.example`, all enforced.
    fn seed_hosts(&self, n: usize) -> Result<()> {
        let mut s = String::with_capacity(n * 28 + 32);
        s.push_str("{\"version\":1,\"hosts\":{");
        for i in 0..n {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "\"h{i}.bulk.example\":true");
        }
        s.push_str("}}\n");
        fs::write(self.dir.join("state").join("state.json"), s)?;
        Ok(())
    }

    /// Starts the daemon pinned to CPU 0 and waits until its control socket answers.
    /// Returns the time from spawn to ready.
    fn start(&mut self) -> Result<Duration> {
        let log = fs::File::create(self.dir.join("daemon.log"))?;
        let mut c = Command::new("taskset");
        c.args(["-c", "0", "ip", "netns", "exec", &self.topo.edge])
            .arg(&self.bin)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let t0 = Instant::now();
        self.daemon = Some(c.spawn().context("cannot start force-https")?);
        loop {
            if let Some(st) = self
                .daemon
                .as_mut()
                .and_then(|d| d.try_wait().ok().flatten())
            {
                bail!("force-https exited during startup ({st}):\n{}", self.log());
            }
            if self.cli(&["stats"]).is_ok() {
                let ready = t0.elapsed();
                // The edge veth's NAPI kthread exists once XDP is attached (or GRO is on).
                let _ = self.topo.pin_napi();
                return Ok(ready);
            }
            if t0.elapsed() > Duration::from_secs(180) {
                bail!("force-https not ready after 180 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        let text = fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        strip_ansi(&text)
    }

    fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    fn rss_kib(&self) -> Result<u64> {
        let pid = self.pid().context("daemon not running")?;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        vm_rss_kib(&status).context("no VmRSS in /proc/PID/status")
    }

    /// `force-https ARGS --config F`, returning stdout.
    fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()?;
        if !out.status.success() {
            bail!(
                "force-https {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn stat(&self, name: &str) -> Result<u64> {
        let text = self.cli(&["stats", "--json"])?;
        json_u64(&text, name).with_context(|| format!("no counter {name} in {text}"))
    }

    fn xdp_mode(&self) -> String {
        let log = self.log();
        for m in ["native", "generic"] {
            if log.contains(&format!("mode=\"{m}\"")) || log.contains(&format!("mode={m}")) {
                return m.into();
            }
        }
        "?".into()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: plain kill(2) of the child we started.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if d.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
        // The namespaces go with `topo`.
    }
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> Result<R> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<R> {
            let file = fs::File::open(format!("/var/run/netns/{ns}"))
                .with_context(|| format!("cannot open namespace {ns}"))?;
            // SAFETY: setns on this thread only, with a valid namespace fd.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {ns}: {}", std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
    })
}

/// One request over a new connection; the status code (0 on any failure).
fn status_of_request(host: &str) -> u16 {
    let addr: SocketAddr = format!("{EDGE_ADDR}:80").parse().expect("address");
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let req = format!("GET /l HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|t| t.get(9..12))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Runs `verb TOGGLE_HOST`, then polls until the answer is `want`. Returns (CLI wall time,
/// time from CLI start until in effect), in ms.
fn toggle(e: &Edge, verb: &str, want: u16) -> Result<(f64, f64)> {
    let client = e.topo.client.clone();
    let t0 = Instant::now();
    e.cli(&[verb, TOGGLE_HOST])?;
    let cli = t0.elapsed();
    let effect = in_netns(&client, || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if status_of_request(TOGGLE_HOST) == want {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        None
    })?
    .with_context(|| format!("{verb} {TOGGLE_HOST}: not {want} after 5 s"))?;
    Ok((ms(cli), ms(effect)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs wrk (new connection per request) from the client namespace on CPU 1 against
/// `host`. Returns (requests, requests/s).
fn wrk_close(e: &Edge, host: &str, duration: Duration) -> Result<(u64, f64)> {
    let mut c = Command::new("taskset");
    c.args(["-c", "1", "ip", "netns", "exec", &e.topo.client, "wrk"])
        .args(["-t1", "-c32"])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .args(["-H", &format!("Host: {host}"), "-H", "Connection: close"])
        .arg(format!("http://{EDGE_ADDR}/bench"));
    let out = cmd::output(&mut c)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let requests = wrk_requests(&text).with_context(|| format!("no request count in {text}"))?;
    let rate = wrk_rate(&text).with_context(|| format!("no Requests/sec in {text}"))?;
    Ok((requests, rate))
}

/// The fast path's cost under load (new connection per redirect) with `hosts` hosts.
fn fast_path_cost(opts: &Options, hosts: usize) -> Result<FastPathCost> {
    let mut e = Edge::new(&format!("fp{hosts}"), &opts.force_https)?;
    e.write_config(true)?;
    e.seed_hosts(hosts.saturating_sub(2))?;
    e.start()?;
    let host = if hosts > 2 {
        format!("h{}.bulk.example", (hosts - 2) / 2)
    } else {
        SITE_HOST.to_string()
    };
    // Warm up (ARP, caches), then measure PASSES runs; the median run (by edge CPU) is kept.
    wrk_close(&e, &host, Duration::from_secs(1))?;
    let mut runs = Vec::new();
    for _ in 0..PASSES {
        let fast0 = e.stat("afxdp_redirects_301")?;
        let c0 = cpu::read()?;
        let (requests, rate) = wrk_close(&e, &host, opts.duration)?;
        let d = cpu::read()?.since(&c0);
        let fast = e.stat("afxdp_redirects_301")? - fast0;
        let tick_us = 1e6 / cpu::ticks_per_second();
        let machine: u64 = (0..2).map(|n| d.cpu(n).busy()).sum();
        runs.push(FastPathCost {
            hosts: e.stat("hosts")? as usize,
            requests,
            rate,
            edge_cpu_us: d.cpu(0).busy() as f64 * tick_us / requests.max(1) as f64,
            machine_cpu_us: machine as f64 * tick_us / requests.max(1) as f64,
            // wrk does not count the requests in flight when it stops; the responder does.
            fast_share: (fast as f64 / requests.max(1) as f64).min(1.0),
            edge_cpu_spread: (0.0, 0.0),
        });
    }
    let spread = (
        runs.iter().map(|r| r.edge_cpu_us).fold(f64::MAX, f64::min),
        runs.iter().map(|r| r.edge_cpu_us).fold(0.0, f64::max),
    );
    runs.sort_by(|a, b| a.edge_cpu_us.total_cmp(&b.edge_cpu_us));
    let mut median = runs[runs.len() / 2].clone();
    median.edge_cpu_spread = spread;
    Ok(median)
}

/// Load runs per fast-path measurement.
const PASSES: usize = 3;

/// Runs every scale measurement.
pub fn run(opts: &Options) -> Result<Results> {
    let mut r = Results {
        big_hosts: opts.big,
        ..Results::default()
    };
    let check = || -> Result<()> {
        if (opts.interrupted)() {
            bail!("interrupted");
        }
        Ok(())
    };

    eprintln!("bench scale: RSS idle (sockets only)");
    {
        let mut e = Edge::new("idle-s", &opts.force_https)?;
        e.write_config(false)?;
        e.start()?;
        std::thread::sleep(Duration::from_secs(1));
        r.rss_idle_sockets_kib = e.rss_kib()?;
    }
    check()?;
    eprintln!("bench scale: RSS idle (XDP fast path)");
    {
        let mut e = Edge::new("idle-x", &opts.force_https)?;
        e.write_config(true)?;
        e.start()?;
        std::thread::sleep(Duration::from_secs(1));
        r.rss_idle_xdp_kib = e.rss_kib()?;
        r.xdp_mode = e.xdp_mode();
    }
    check()?;
    eprintln!("bench scale: RSS with 100k hosts (XDP fast path)");
    {
        let mut e = Edge::new("100k", &opts.force_https)?;
        e.write_config(true)?;
        e.seed_hosts(100_000)?;
        e.start()?;
        std::thread::sleep(Duration::from_secs(1));
        r.rss_100k_kib = e.rss_kib()?;
    }
    check()?;
    eprintln!(
        "bench scale: start with {} hosts, then enable/disable latency",
        opts.big
    );
    {
        let mut e = Edge::new("big", &opts.force_https)?;
        e.write_config(true)?;
        e.seed_hosts(opts.big)?;
        let ready = e.start()?;
        r.big_ready_ms = ready.as_millis() as u64;
        r.big_map_fill_ms = map_fill_ms(&e.log());
        std::thread::sleep(Duration::from_secs(1));
        r.rss_big_kib = e.rss_kib()?;
        for _ in 0..20 {
            check()?;
            let (cli, on) = toggle(&e, "enable", 301)?;
            let (_, off) = toggle(&e, "disable", 404)?;
            r.enable_cli_ms.push(cli);
            r.enable_effect_ms.push(on);
            r.disable_effect_ms.push(off);
        }
    }
    for hosts in [10, opts.big] {
        check()?;
        eprintln!("bench scale: fast-path cost with {hosts} hosts");
        r.fast_path.push(fast_path_cost(opts, hosts)?);
    }
    check()?;
    eprintln!("bench scale: allocations per fast-path redirect (count-allocs build)");
    {
        let mut e = Edge::new("alloc", &opts.force_https_allocs)?;
        e.write_config(true)?;
        e.start()?;
        wrk_close(&e, SITE_HOST, Duration::from_secs(1))?;
        let a0 = e.stat("afxdp_allocations")?;
        let f0 = e.stat("afxdp_redirects_301")?;
        wrk_close(&e, SITE_HOST, Duration::from_secs(3))?;
        let allocs = e.stat("afxdp_allocations")? - a0;
        let fast = e.stat("afxdp_redirects_301")? - f0;
        r.allocations = Some((allocs, fast));
    }
    Ok(r)
}

/// The Markdown section of the report.
pub fn report(r: &Results) -> Vec<String> {
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    let stats = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        if s.is_empty() {
            return "n/a".to_string();
        }
        let p = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        format!(
            "median {:.1} ms, p90 {:.1} ms, max {:.1} ms (n={})",
            p(0.5),
            p(0.9),
            s[s.len() - 1],
            s.len()
        )
    };
    let mut out = vec![
        "## Scale: memory, host count, change latency, allocations".to_string(),
        String::new(),
        format!(
            "The daemon alone, pinned to CPU 0; XDP in {} mode on the edge veth. Hosts are \
             runtime hosts loaded from `state.json` at start.",
            r.xdp_mode
        ),
        String::new(),
        "| measurement | result |".into(),
        "|---|---|".into(),
        format!(
            "| RSS idle, sockets only (2 sites) | {} |",
            mib(r.rss_idle_sockets_kib)
        ),
        format!(
            "| RSS idle, XDP fast path (2 sites) | {} |",
            mib(r.rss_idle_xdp_kib)
        ),
        format!("| RSS with 100k hosts (XDP) | {} |", mib(r.rss_100k_kib)),
        format!(
            "| RSS with {} hosts (XDP) | {} |",
            r.big_hosts,
            mib(r.rss_big_kib)
        ),
        format!(
            "| start with {} hosts: spawn → control socket answers (state file, policy table, XDP map) | {} ms |",
            r.big_hosts, r.big_ready_ms
        ),
        format!(
            "| … of which filling the XDP host map | {} |",
            r.big_map_fill_ms
                .map(|m| format!("{m} ms"))
                .unwrap_or_else(|| "n/a".into())
        ),
        format!(
            "| `force-https enable` CLI round trip, {} hosts loaded | {} |",
            r.big_hosts,
            stats(&r.enable_cli_ms)
        ),
        format!(
            "| enable → fast path answers 301 (from CLI start) | {} |",
            stats(&r.enable_effect_ms)
        ),
        format!(
            "| disable → no longer redirected (from CLI start) | {} |",
            stats(&r.disable_effect_ms)
        ),
    ];
    if r.big_hosts == 100_000 {
        // Same figure as the 100k row.
        let dup = format!("| RSS with {} hosts", r.big_hosts);
        out.retain(|l| !l.starts_with(&dup));
    }
    if let Some((allocs, fast)) = r.allocations {
        out.push(format!(
            "| heap allocations per fast-path redirect (`count-allocs` build, responder threads) | {allocs} over {fast} redirects = {:.4} per redirect |",
            allocs as f64 / fast.max(1) as f64
        ));
    }
    out.extend([
        String::new(),
        format!(
            "Fast-path cost against the number of hosts (wrk, new connection per request, \
             median of {PASSES} runs by edge CPU, min–max in brackets):"
        ),
        String::new(),
        "| hosts | redirects (median run) | redirects/s | edge CPU µs/redirect | whole machine µs/redirect | answered by AF_XDP |".into(),
        "|---:|---:|---:|---:|---:|---:|".into(),
    ]);
    for f in &r.fast_path {
        out.push(format!(
            "| {} | {} | {:.0} | {:.1} ({:.1}–{:.1}) | {:.1} | {:.1}% |",
            f.hosts,
            f.requests,
            f.rate,
            f.edge_cpu_us,
            f.edge_cpu_spread.0,
            f.edge_cpu_spread.1,
            f.machine_cpu_us,
            f.fast_share * 100.0
        ));
    }
    out
}

/// `VmRSS:  1234 kB` → 1234.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The `ms=N` of the "XDP host map filled" log line.
fn map_fill_ms(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("XDP host map filled"))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
}

/// The number after `"name":` in a flat JSON object.
fn json_u64(json: &str, name: &str) -> Option<u64> {
    let key = format!("\"{name}\":");
    let rest = &json[json.find(&key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `  123 requests in 10.00s, ...` → 123.
fn wrk_requests(out: &str) -> Option<u64> {
    out.lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `Requests/sec:  1234.56` → 1234.56.
fn wrk_rate(out: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(vm_rss_kib("Name:\tx\nVmRSS:\t  6482 kB\n"), Some(6482));
        assert_eq!(
            map_fill_ms(
                "2026 INFO force_https::paths::xdp: XDP host map filled entries=1000001 ms=2643"
            ),
            Some(2643)
        );
        assert_eq!(json_u64("{\"a\":1,\"hosts\": 42}", "hosts"), Some(42));
        let wrk =
            "Running 10s test\n  98765 requests in 10.00s, 9.42MB read\nRequests/sec:   9876.50\n";
        assert_eq!(wrk_requests(wrk), Some(98765));
        assert_eq!(wrk_rate(wrk), Some(9876.5));
        assert_eq!(strip_ansi("\u{1b}[2mms\u{1b}[0m=3"), "ms=3");
    }
}
