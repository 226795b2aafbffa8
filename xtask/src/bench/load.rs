//! The load phases and the load generators: which wrk / h2load command each phase runs (always
//! `-t1`, pinned to the client CPU, bounded in time), running it with a hard deadline, and
//! parsing what wrk and h2load print (requests, rate, latency percentiles, errors, bytes).
//!
//! Latency: wrk `--latency` prints p50/p75/p90/p99, measured from writing the request to the
//! end of the response, so for the new-connection phases it leaves out the TCP (and TLS)
//! handshake. h2load prints only min/max/mean/sd, so p50/p99 for h2 come from its
//! `--log-file` (one line per request with its duration in µs).
//!
//! TLS session resumption: wrk resumes the previous session on every reconnect; for the
//! new-TLS-connection phase an `LD_PRELOAD` shim (`NO_RESUME_C`, compiled at bench time)
//! makes it do a full handshake each time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::summary::percentile_sorted;
use super::{CLIENT_CPU, check_interrupted};
use crate::{cmd, netns};

/// The host every peer serves and the certificate names.
pub const HOST: &str = "bench.example";
/// A second host every peer serves on port 80 only, NOT enforced: proxied to the same backend
/// over plain HTTP (the `http-proxied-keepalive` phase), with no redirect and no HSTS.
pub const PLAIN_HOST: &str = "plain.bench.example";
/// The path on which the backend answers a large body (`fh-backend --big-path`), for the
/// `https-h1-1mib` / `https-h2-1mib` phases; every other path gets the small fixed body.
pub const BIG_PATH: &str = "/big";
/// The size of that body: 1 MiB.
pub const BIG_BODY_BYTES: usize = 1 << 20;
/// Requests in flight in every phase by default (`--in-flight`): wrk connections, and h2load
/// connections × streams. Equal to the backend pool size, so no peer needs more backend
/// connections than it keeps.
pub const IN_FLIGHT: u32 = 64;
/// h2load: concurrent streams per connection up to [`IN_FLIGHT`] (16 connections × 4 = 64).
pub const H2_STREAMS: u32 = 4;

/// h2load's connections and streams per connection for `in_flight` requests: 4 streams each up
/// to 64 in flight, 8 above (`-c64 -m8` for 512, the case of issue 15's cliff).
pub fn h2_split(in_flight: u32) -> (u32, u32) {
    let streams = if in_flight <= IN_FLIGHT {
        H2_STREAMS
    } else {
        8
    };
    ((in_flight / streams).max(1), streams)
}
/// Extra time a load generator gets past its duration before it is killed.
const DEADLINE_SLACK: Duration = Duration::from_secs(20);

/// One measured workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Port 80, a new TCP connection per request (`Connection: close`), expecting 301.
    RedirectNewConn,
    /// Port 80 over keep-alive (wrk's default), expecting 301; peers that close after a
    /// redirect make this new connections anyway.
    RedirectKeepalive,
    /// HTTPS, HTTP/1.1 keep-alive, proxied to the backend.
    HttpsH1,
    /// HTTPS, HTTP/2 (h2load), proxied to the backend.
    HttpsH2,
    /// HTTPS, a new TCP connection and a full TLS handshake per request.
    HttpsNewConn,
    /// Port 80, keep-alive, for [`PLAIN_HOST`] (not enforced): proxied to the backend over
    /// plain HTTP, expecting 200 (issue 15).
    HttpProxiedKeepalive,
    /// HTTPS, HTTP/1.1 keep-alive, a 1 MiB body ([`BIG_PATH`]) from the backend.
    #[value(name = "https-h1-1mib")]
    #[serde(rename = "https-h1-1mib")]
    HttpsH1Big,
    /// HTTPS, HTTP/2 (h2load), a 1 MiB body ([`BIG_PATH`]) from the backend.
    #[value(name = "https-h2-1mib")]
    #[serde(rename = "https-h2-1mib")]
    HttpsH2Big,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::RedirectNewConn,
        Phase::RedirectKeepalive,
        Phase::HttpsH1,
        Phase::HttpsH2,
        Phase::HttpsNewConn,
        Phase::HttpProxiedKeepalive,
        Phase::HttpsH1Big,
        Phase::HttpsH2Big,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::RedirectNewConn => "redirect-new-conn",
            Phase::RedirectKeepalive => "redirect-keepalive",
            Phase::HttpsH1 => "https-h1",
            Phase::HttpsH2 => "https-h2",
            Phase::HttpsNewConn => "https-new-conn",
            Phase::HttpProxiedKeepalive => "http-proxied-keepalive",
            Phase::HttpsH1Big => "https-h1-1mib",
            Phase::HttpsH2Big => "https-h2-1mib",
        }
    }

    /// A short column title for the Markdown tables.
    pub fn title(self) -> &'static str {
        match self {
            Phase::RedirectNewConn => "301, new conn",
            Phase::RedirectKeepalive => "301, keep-alive",
            Phase::HttpsH1 => "HTTPS h1 keep-alive",
            Phase::HttpsH2 => "HTTPS h2",
            Phase::HttpsNewConn => "HTTPS, new TLS conn",
            Phase::HttpProxiedKeepalive => "HTTP proxied keep-alive",
            Phase::HttpsH1Big => "HTTPS h1 1 MiB",
            Phase::HttpsH2Big => "HTTPS h2 1 MiB",
        }
    }

    /// Whether the load generator is h2load (else wrk).
    pub fn is_h2(self) -> bool {
        matches!(self, Phase::HttpsH2 | Phase::HttpsH2Big)
    }

    /// Whether the phase fetches the 1 MiB body (throughput in MiB/s is reported for it).
    pub fn is_big(self) -> bool {
        matches!(self, Phase::HttpsH1Big | Phase::HttpsH2Big)
    }

    /// Whether the phase is plain HTTP proxied from port 80 (force-https counts it as
    /// `proxied_http`, not `proxied_https`).
    pub fn is_plain_proxied(self) -> bool {
        self == Phase::HttpProxiedKeepalive
    }

    /// Whether the phase expects redirects (port 80) rather than proxied 200s.
    pub fn is_redirect(self) -> bool {
        matches!(self, Phase::RedirectNewConn | Phase::RedirectKeepalive)
    }

    /// Whether the phase can run at a fixed rate (`--rate`): every phase but the two that open
    /// a connection per request, which h2load cannot do (it keeps its connections).
    pub fn takes_rate(self) -> bool {
        !matches!(self, Phase::RedirectNewConn | Phase::HttpsNewConn)
    }

    /// Whether the load generator is h2load: the HTTP/2 phases, and every phase at a fixed
    /// rate (else wrk).
    pub fn uses_h2load(self, rate: Option<u32>) -> bool {
        self.is_h2() || (rate.is_some() && self.takes_rate())
    }

    /// h2load's connections and streams per connection for `in_flight` requests: the HTTP/2
    /// phases' [`h2_split`], one stream per connection for HTTP/1.1 (`--h1`).
    pub fn h2load_split(self, in_flight: u32) -> (u32, u32) {
        if self.is_h2() {
            h2_split(in_flight)
        } else {
            (in_flight, 1)
        }
    }

    /// The load generator's command line (without the namespace and CPU pinning).
    /// `log` is h2load's per-request log file. `rate` (`--rate`): requests per second in all,
    /// spread evenly over the connections with h2load's `--rps` (per connection), HTTP/1.1
    /// phases then with `h2load --h1 -m1` instead of wrk; ignored for the phases that do not
    /// [take a rate](Self::takes_rate).
    pub fn command_line(
        self,
        duration_s: u64,
        log: &Path,
        in_flight: u32,
        rate: Option<u32>,
    ) -> Vec<String> {
        let rate = rate.filter(|_| self.takes_rate());
        let (connections, streams) = self.h2load_split(in_flight);
        let wrk = |url: String, close: bool| {
            let mut v: Vec<String> = [
                "wrk",
                "-t1",
                &format!("-c{in_flight}"),
                &format!("-d{duration_s}s"),
                "--latency",
                "--timeout",
                "5s",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if close {
                v.push("-H".into());
                v.push("Connection: close".into());
            }
            v.push(url);
            v
        };
        let h2load = |url: String| {
            let mut v: Vec<String> = vec![
                "h2load".into(),
                "-t1".into(),
                format!("-c{connections}"),
                format!("-m{streams}"),
            ];
            if !self.is_h2() {
                v.push("--h1".into());
            }
            if let Some(rate) = rate {
                v.push(format!("--rps={}", per_connection_rate(rate, connections)));
            }
            v.extend([
                "-D".into(),
                duration_s.to_string(),
                format!("--log-file={}", log.display()),
                url,
            ]);
            v
        };
        let http = format!("http://{HOST}/");
        let https = format!("https://{HOST}/");
        let (url, close) = match self {
            Phase::RedirectNewConn => (http, true),
            Phase::RedirectKeepalive => (http, false),
            Phase::HttpsH1 | Phase::HttpsH2 => (https, false),
            Phase::HttpsNewConn => (https, true),
            Phase::HttpProxiedKeepalive => (format!("http://{PLAIN_HOST}/"), false),
            Phase::HttpsH1Big | Phase::HttpsH2Big => (format!("https://{HOST}{BIG_PATH}"), false),
        };
        if self.uses_h2load(rate) {
            h2load(url)
        } else {
            wrk(url, close)
        }
    }
}

/// h2load's `--rps` (requests a second per connection) for `rate` in all over `connections`,
/// to a thousandth.
pub fn per_connection_rate(rate: u32, connections: u32) -> String {
    let per = f64::from(rate) / f64::from(connections.max(1));
    let s = format!("{per:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What one load run reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LoadOutput {
    /// Completed requests (wrk: all responses; h2load: succeeded).
    pub requests: u64,
    /// The generator's own measurement time.
    pub seconds: f64,
    pub rps: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Bytes read by the client (wrk's rounded figure; h2load's exact one).
    pub bytes: Option<u64>,
    /// Socket errors (wrk: connect+read+write+timeout; h2load: failed+errored+timeout).
    pub errors: u64,
    /// Responses with an unexpected class (wrk: not 2xx/3xx; h2load: 4xx/5xx).
    pub bad_status: u64,
    /// The error breakdown as printed.
    pub error_detail: String,
}

/// A duration as wrk prints it (`812.00us`, `1.23ms`, `2.00s`, `1.00m`, `1.00h`), in µs.
pub fn parse_duration_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(n * mult)
}

/// A size as wrk prints it (`123.00B`, `4.50KB`, `3.17MB`, `1.20GB`; binary multiples).
pub fn parse_size_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((n * mult).round() as u64)
}

/// The number right after `label` in `text` (e.g. `connect 3` → 3 for label `connect`).
fn number_after(text: &str, label: &str) -> Option<u64> {
    let at = text.find(label)? + label.len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Parses wrk's output (with `--latency`).
pub fn parse_wrk(out: &str) -> Result<LoadOutput> {
    let mut r = LoadOutput::default();
    let mut in_distribution = false;
    let mut saw_total = false;
    for line in out.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_distribution = true;
            continue;
        }
        if in_distribution {
            let mut f = t.split_whitespace();
            match (f.next(), f.next()) {
                (Some("50%"), Some(v)) => r.p50_us = parse_duration_us(v),
                (Some("99%"), Some(v)) => r.p99_us = parse_duration_us(v),
                (Some(p), Some(_)) if p.ends_with('%') => {}
                _ => in_distribution = false,
            }
            if in_distribution {
                continue;
            }
        }
        if let Some((count, rest)) = t.split_once(" requests in ") {
            r.requests = count
                .trim()
                .parse()
                .with_context(|| format!("bad request count in {t:?}"))?;
            let mut parts = rest.split(',');
            r.seconds = parts
                .next()
                .and_then(parse_duration_us)
                .map(|us| us / 1e6)
                .with_context(|| format!("bad duration in {t:?}"))?;
            r.bytes = parts
                .next()
                .and_then(|b| b.trim().strip_suffix(" read"))
                .and_then(parse_size_bytes);
            saw_total = true;
        } else if let Some(rest) = t.strip_prefix("Socket errors:") {
            r.errors = ["connect", "read", "write", "timeout"]
                .iter()
                .filter_map(|l| number_after(rest, l))
                .sum();
            r.error_detail = rest.trim().to_string();
        } else if let Some(rest) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.bad_status = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = t.strip_prefix("Requests/sec:") {
            r.rps = rest.trim().parse().unwrap_or(0.0);
        }
    }
    if !saw_total {
        bail!("no `N requests in T` line in wrk's output");
    }
    if r.rps == 0.0 && r.seconds > 0.0 {
        r.rps = r.requests as f64 / r.seconds;
    }
    Ok(r)
}

/// Parses h2load's summary; `Err` when it did not negotiate `protocol` (`h2`, or `http/1.1`
/// with `--h1`).
pub fn parse_h2load(out: &str, protocol_wanted: &str) -> Result<LoadOutput> {
    let mut r = LoadOutput::default();
    let mut saw_requests = false;
    let mut protocol = None;
    for line in out.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("finished in ") {
            let mut parts = rest.split(',');
            r.seconds = parts
                .next()
                .and_then(parse_duration_us)
                .map(|us| us / 1e6)
                .unwrap_or(0.0);
            r.rps = parts
                .next()
                .and_then(|p| p.trim().strip_suffix(" req/s"))
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(0.0);
        } else if let Some(rest) = t.strip_prefix("requests:") {
            let get = |label: &str| {
                rest.split(',').find_map(|part| {
                    let part = part.trim();
                    let (n, l) = part.split_once(' ')?;
                    (l.trim() == label).then(|| n.parse::<u64>().ok())?
                })
            };
            r.requests = get("succeeded").context("no `succeeded` count in h2load's output")?;
            r.errors = ["failed", "errored", "timeout"]
                .iter()
                .filter_map(|l| get(l))
                .sum();
            r.error_detail = rest.trim().to_string();
            saw_requests = true;
        } else if let Some(rest) = t.strip_prefix("status codes:") {
            r.bad_status = rest
                .split(',')
                .filter_map(|part| {
                    let (n, class) = part.trim().split_once(' ')?;
                    matches!(class, "4xx" | "5xx").then(|| n.parse::<u64>().ok())?
                })
                .sum();
        } else if let Some(rest) = t.strip_prefix("traffic:") {
            r.bytes = rest
                .split_once('(')
                .and_then(|(_, b)| b.split_once(')'))
                .and_then(|(n, _)| n.parse().ok());
        } else if let Some(p) = t.strip_prefix("Application protocol:") {
            protocol = Some(p.trim().to_string());
        }
    }
    if !saw_requests {
        bail!("no `requests:` line in h2load's output");
    }
    if protocol.as_deref() != Some(protocol_wanted) {
        bail!("h2load did not negotiate {protocol_wanted} (application protocol {protocol:?})");
    }
    Ok(r)
}

/// p50 and p99 (µs) from an h2load `--log-file` (`start_us \t status \t duration_us`).
pub fn h2load_log_percentiles(log: &str) -> (Option<f64>, Option<f64>) {
    let mut d: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    d.sort_unstable();
    (
        percentile_sorted(&d, 50.0).map(|v| v as f64),
        percentile_sorted(&d, 99.0).map(|v| v as f64),
    )
}

/// C source of an `LD_PRELOAD` shim for wrk in the new-TLS-connection phase. wrk 4.1 keeps one
/// `SSL` object per connection slot and reuses it for the next connection (`SSL_shutdown` +
/// `SSL_clear`), and `SSL_clear` keeps the session, so every reconnect resumes it (a TLS 1.3
/// PSK from the server's ticket, or a TLS 1.2 session id): measured with nginx's
/// `$ssl_session_reused`, 3439 of 3441 reconnects resumed. The shim drops the session after
/// `SSL_clear`, so each connection is a full handshake (none of 1895 resumed).
const NO_RESUME_C: &str = r#"/* cargo xtask bench: wrk forgets the TLS session of a closed connection. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
int SSL_clear(void *ssl) {
    static int (*real_clear)(void *);
    static int (*set_session)(void *, void *);
    if (!real_clear) {
        real_clear = (int (*)(void *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(void *, void *))dlsym(RTLD_NEXT, "SSL_set_session");
    }
    int r = real_clear(ssl);
    if (r == 1 && set_session)
        set_session(ssl, NULL);
    return r;
}
"#;

/// File name of the compiled shim.
pub const NO_RESUME_SO: &str = "wrk-no-resume.so";

/// Compiles the no-resumption shim into `dir` with the system C compiler.
pub fn build_no_resume_shim(dir: &Path) -> Result<PathBuf> {
    let src = dir.join("wrk-no-resume.c");
    let so = dir.join(NO_RESUME_SO);
    std::fs::write(&src, NO_RESUME_C).context("cannot write the shim's source")?;
    let mut c = Command::new("cc");
    c.args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl");
    cmd::stdout_of(&mut c).context("cannot compile the wrk no-resumption shim")?;
    Ok(so)
}

/// Runs load generators in the client namespace.
pub struct LoadGen<'a> {
    pub client_ns: &'a str,
    /// Where the output and h2load's request log go.
    pub scratch: &'a Path,
    /// The no-resumption shim for the new-TLS-connection phase (`None`: wrk resumes).
    pub no_resume: Option<&'a Path>,
    /// Requests in flight (`--in-flight`).
    pub in_flight: u32,
    /// `--rate`: requests per second in all, or `None` for as many as the peer serves.
    pub rate: Option<u32>,
}

/// Waits for a load generator started from `line`, killing it (and reaping it) when it runs
/// past `limit` or a signal asks the bench to stop.
pub fn wait_bounded(child: &mut Child, line: &[String], limit: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if let Err(e) = check_interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{}` did not finish within {} s; killed",
                line.join(" "),
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl LoadGen<'_> {
    /// Runs the phase's load generator, pinned to the client CPU, killed if it overruns its
    /// duration by `DEADLINE_SLACK`. Returns the parsed output and the raw text.
    pub fn run(&self, phase: Phase, duration_s: u64) -> Result<(LoadOutput, String)> {
        let scratch = self.scratch;
        let log = scratch.join("h2load-requests.log");
        let _ = std::fs::remove_file(&log);
        let line = phase.command_line(duration_s, &log, self.in_flight, self.rate);
        let mut c = netns::exec(self.client_ns, "taskset");
        c.args(["-c", &CLIENT_CPU.to_string()]).args(&line);
        if phase == Phase::HttpsNewConn
            && let Some(so) = self.no_resume
        {
            c.env("LD_PRELOAD", so);
        }
        let out_path = scratch.join("load.out");
        let out = std::fs::File::create(&out_path)
            .with_context(|| format!("cannot create {}", out_path.display()))?;
        let err = out.try_clone()?;
        use std::os::unix::process::CommandExt;
        let mut child = c
            .stdin(Stdio::null())
            .process_group(0)
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start `{}`", cmd::show(&c)))?;
        let status = wait_bounded(
            &mut child,
            &line,
            Duration::from_secs(duration_s) + DEADLINE_SLACK,
        )?;
        // A run cut short by a signal is not a measurement.
        check_interrupted()?;
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if !status.success() {
            bail!("`{}` failed ({status}):\n{}", line.join(" "), text.trim());
        }
        let parsed = if phase.uses_h2load(self.rate) {
            let protocol = if phase.is_h2() { "h2" } else { "http/1.1" };
            let mut r = parse_h2load(&text, protocol)?;
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            (r.p50_us, r.p99_us) = h2load_log_percentiles(&log_text);
            let _ = std::fs::remove_file(&log);
            r
        } else {
            parse_wrk(&text)?
        };
        Ok((parsed, text))
    }

    /// An unmeasured run (warm-up): the same load, shorter.
    pub fn warm_up(&self, phase: Phase, seconds: u64) -> Result<()> {
        self.run(phase, seconds).map(|_| ())
    }

    /// The exact shell line of a phase, as shown in the report.
    pub fn shown_command(&self, phase: Phase, duration_s: u64) -> String {
        let line = phase.command_line(
            duration_s,
            Path::new("REQUESTS.log"),
            self.in_flight,
            self.rate,
        );
        let mut c = Command::new("taskset");
        c.args(["-c", &CLIENT_CPU.to_string()]).args(&line);
        if phase == Phase::HttpsNewConn && self.no_resume.is_some() {
            c.env("LD_PRELOAD", NO_RESUME_SO);
        }
        cmd::show(&c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 10s test @ http://bench.example/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  12.34ms   78.90%
    Req/Sec    50.12k     2.34k   55.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.40ms
     90%    1.80ms
     99%    3.20ms
  498765 requests in 10.00s, 75.12MB read
  Socket errors: connect 0, read 12, write 3, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  49876.50
Transfer/sec:      7.51MB
";

    #[test]
    fn wrk_output() {
        let r = parse_wrk(WRK).unwrap();
        assert_eq!(r.requests, 498765);
        assert!((r.seconds - 10.0).abs() < 1e-9);
        assert!((r.rps - 49876.5).abs() < 1e-9);
        assert_eq!(r.p50_us, Some(812.0));
        assert_eq!(r.p99_us, Some(3200.0));
        assert_eq!(r.bytes, Some((75.12f64 * 1024.0 * 1024.0).round() as u64));
        assert_eq!(r.errors, 16);
        assert_eq!(r.bad_status, 5);
        assert_eq!(r.error_detail, "connect 0, read 12, write 3, timeout 1");
    }

    #[test]
    fn wrk_clean_output_and_garbage() {
        let clean = "  1 threads and 4 connections\n  Latency Distribution\n     50%    3.89ms\n     99%   33.60ms\n  827 requests in 1.01s, 3.17MB read\nRequests/sec:    822.36\n";
        let r = parse_wrk(clean).unwrap();
        assert_eq!((r.requests, r.errors, r.bad_status), (827, 0, 0));
        assert_eq!(r.p99_us, Some(33600.0));
        assert!(parse_wrk("unable to connect to bench.example:80 Connection refused").is_err());
    }

    const H2LOAD: &str = "starting benchmark...
spawning thread #0: 16 total client(s). Timing-based test with 0s of warm-up time and 10s of main duration for measurements.
Application protocol: h2
finished in 10.00s, 45678.90 req/s, 5.67MB/s
requests: 456789 total, 456800 started, 456789 done, 456700 succeeded, 89 failed, 0 errored, 0 timeout
status codes: 456700 2xx, 0 3xx, 80 4xx, 9 5xx
traffic: 56.78MB (59538432) total, 1.23MB (1289748) headers (space savings 95.00%), 40.00MB (41943040) data
                     min         max         mean         sd        +/- sd
time for request:      123us     12.34ms      1.23ms       456us    78.90%
";

    #[test]
    fn h2load_output() {
        let r = parse_h2load(H2LOAD, "h2").unwrap();
        assert_eq!(r.requests, 456700);
        assert!((r.seconds - 10.0).abs() < 1e-9);
        assert!((r.rps - 45678.9).abs() < 1e-9);
        assert_eq!(r.errors, 89);
        assert_eq!(r.bad_status, 89);
        assert_eq!(r.bytes, Some(59538432));
        let h1 = H2LOAD.replace("Application protocol: h2", "Application protocol: http/1.1");
        assert!(parse_h2load(&h1, "h2").is_err());
        assert_eq!(parse_h2load(&h1, "http/1.1").unwrap().requests, 456700);
        assert!(parse_h2load(H2LOAD, "http/1.1").is_err());
        assert!(parse_h2load("connect failed", "h2").is_err());
    }

    #[test]
    fn h2load_log() {
        let mut log = String::new();
        for i in 1..=200u64 {
            log.push_str(&format!("1700000000{i:06}\t200\t{}\n", i * 10));
        }
        assert_eq!(h2load_log_percentiles(&log), (Some(1000.0), Some(1980.0)));
        assert_eq!(h2load_log_percentiles(""), (None, None));
    }

    #[test]
    fn shim_and_shown_command() {
        let dir = std::env::temp_dir().join(format!("fhb-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        if cmd::which("cc").is_some() {
            let so = build_no_resume_shim(&dir).unwrap();
            assert!(so.is_file());
        }
        let g = LoadGen {
            client_ns: "x",
            scratch: &dir,
            no_resume: Some(Path::new("/x/wrk-no-resume.so")),
            in_flight: IN_FLIGHT,
            rate: None,
        };
        assert!(
            g.shown_command(Phase::HttpsNewConn, 10)
                .starts_with("LD_PRELOAD=wrk-no-resume.so taskset -c 1 wrk")
        );
        assert!(
            g.shown_command(Phase::HttpsH1, 10)
                .starts_with("taskset -c 1 wrk")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration_us("1.5s"), Some(1.5e6));
        assert_eq!(parse_duration_us("2.00m"), Some(120e6));
        assert_eq!(parse_duration_us("12"), None);
        assert_eq!(parse_size_bytes("123.00B"), Some(123));
        assert_eq!(parse_size_bytes("1.00KB"), Some(1024));
        assert_eq!(parse_size_bytes("1.0XB"), None);
    }

    #[test]
    fn phase_commands() {
        let p = Path::new("/t/l.log");
        assert_eq!(
            Phase::RedirectNewConn
                .command_line(5, p, IN_FLIGHT, None)
                .join(" "),
            "wrk -t1 -c64 -d5s --latency --timeout 5s -H Connection: close http://bench.example/"
        );
        assert_eq!(
            Phase::HttpsH1.command_line(5, p, IN_FLIGHT, None).join(" "),
            "wrk -t1 -c64 -d5s --latency --timeout 5s https://bench.example/"
        );
        assert_eq!(
            Phase::HttpsH2.command_line(5, p, IN_FLIGHT, None).join(" "),
            "h2load -t1 -c16 -m4 -D 5 --log-file=/t/l.log https://bench.example/"
        );
        assert_eq!(h2_split(IN_FLIGHT), (16, H2_STREAMS));
        assert_eq!(h2_split(512), (64, 8));
        assert_eq!(
            Phase::HttpsH2.command_line(5, p, 512, None).join(" "),
            "h2load -t1 -c64 -m8 -D 5 --log-file=/t/l.log https://bench.example/"
        );
        assert!(Phase::RedirectKeepalive.is_redirect() && !Phase::HttpsNewConn.is_redirect());
    }

    #[test]
    fn fixed_rate_commands() {
        let p = Path::new("/t/l.log");
        let at = |ph: Phase, in_flight: u32| ph.command_line(5, p, in_flight, Some(400)).join(" ");
        assert_eq!(
            at(Phase::HttpsH1Big, IN_FLIGHT),
            "h2load -t1 -c64 -m1 --h1 --rps=6.25 -D 5 --log-file=/t/l.log https://bench.example/big"
        );
        assert_eq!(
            at(Phase::HttpsH2Big, IN_FLIGHT),
            "h2load -t1 -c16 -m4 --rps=25 -D 5 --log-file=/t/l.log https://bench.example/big"
        );
        assert_eq!(
            at(Phase::HttpProxiedKeepalive, 3),
            "h2load -t1 -c3 -m1 --h1 --rps=133.333 -D 5 --log-file=/t/l.log http://plain.bench.example/"
        );
        assert_eq!(
            at(Phase::RedirectKeepalive, IN_FLIGHT),
            "h2load -t1 -c64 -m1 --h1 --rps=6.25 -D 5 --log-file=/t/l.log http://bench.example/"
        );
        // The phases that open a connection per request keep wrk, without a rate.
        for ph in [Phase::RedirectNewConn, Phase::HttpsNewConn] {
            assert!(!ph.takes_rate() && !ph.uses_h2load(Some(400)));
            assert_eq!(
                ph.command_line(5, p, IN_FLIGHT, Some(400)),
                ph.command_line(5, p, IN_FLIGHT, None)
            );
        }
        for ph in Phase::ALL {
            assert_eq!(ph.uses_h2load(Some(1)), ph.takes_rate(), "{ph:?}");
            assert_eq!(ph.uses_h2load(None), ph.is_h2(), "{ph:?}");
        }
        assert_eq!(per_connection_rate(400, 64), "6.25");
        assert_eq!(per_connection_rate(400, 16), "25");
        assert_eq!(per_connection_rate(1, 3), "0.333");
        assert_eq!(per_connection_rate(5, 0), "5");
    }

    #[test]
    fn issue_15_phase_commands() {
        let p = Path::new("/t/l.log");
        assert_eq!(
            Phase::HttpProxiedKeepalive
                .command_line(5, p, IN_FLIGHT, None)
                .join(" "),
            "wrk -t1 -c64 -d5s --latency --timeout 5s http://plain.bench.example/"
        );
        assert_eq!(
            Phase::HttpsH1Big
                .command_line(5, p, IN_FLIGHT, None)
                .join(" "),
            "wrk -t1 -c64 -d5s --latency --timeout 5s https://bench.example/big"
        );
        assert_eq!(
            Phase::HttpsH2Big
                .command_line(5, p, IN_FLIGHT, None)
                .join(" "),
            "h2load -t1 -c16 -m4 -D 5 --log-file=/t/l.log https://bench.example/big"
        );
        assert_eq!(
            Phase::HttpsH2Big.command_line(5, p, 1024, None).join(" "),
            "h2load -t1 -c128 -m8 -D 5 --log-file=/t/l.log https://bench.example/big"
        );
        for ph in Phase::ALL {
            assert!(!ph.is_redirect() || !ph.is_plain_proxied(), "{ph:?}");
            assert_eq!(
                ph.is_h2(),
                ph.command_line(5, p, IN_FLIGHT, None)[0] == "h2load",
                "{ph:?}"
            );
            assert_eq!(ph.is_big(), ph.name().ends_with("-1mib"), "{ph:?}");
            // The CLI names, report names and JSON names agree.
            use clap::ValueEnum;
            let v = ph.to_possible_value().unwrap();
            assert_eq!(v.get_name(), ph.name());
            assert_eq!(
                serde_json::to_value(ph).unwrap(),
                serde_json::json!(ph.name())
            );
        }
        assert!(Phase::HttpsH1Big.is_big() && !Phase::HttpsH1.is_big());
        assert!(Phase::HttpProxiedKeepalive.is_plain_proxied());
    }
}
