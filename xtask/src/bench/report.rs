//! The results: their data model (written as `results.json`), the Markdown report
//! (`report.md`: header with machine, kernel, versions, date and command; one table per metric
//! with peers as rows and phases as columns; per-peer details; the method), and small helpers
//! (UTC date, machine facts, criterion output summary).

use std::fmt::Write as _;

use serde::Serialize;

use super::cpu::Usage;
use super::flood::{self, FloodResult};
use super::instructions::Count;
use super::load::{LoadOutput, Phase};
use super::peers::{Checked, PeerKind};
use super::procs::TreeFacts;
use super::summary::{Spread, median, median_ci95, spread};
use super::topology::NapiThread;

/// Everything a bench run produced.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Results {
    pub meta: Meta,
    pub peers: Vec<PeerResult>,
    /// Markdown lines of the scale section (extension point, `scale.rs`).
    pub scale: Vec<String>,
    /// `cargo bench -p force-https-proto` summary lines (`--micro`).
    pub micro: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Meta {
    pub date_utc: String,
    pub command: String,
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    /// `(tool, first line of its version output)`.
    pub versions: Vec<(String, String)>,
    pub duration_s: u64,
    pub passes: usize,
    pub warmup_s: u64,
    pub edge_cpu: usize,
    pub client_cpu: usize,
    /// Requests in flight (the first value of a sweep).
    pub in_flight: u32,
    /// `--sweep`: every requests-in-flight value run (empty without a sweep).
    pub sweep: Vec<u32>,
    /// `--rounds`: the passes are interleaved rounds (pass i of every peer is round i + 1).
    pub rounds: Option<u64>,
    /// `--paired`: the passes are slices (pass i of every peer is slice i + 1, seconds apart).
    pub paired: Option<u64>,
    /// `--rate`: requests per second every phase was driven at (`None`: as fast as served).
    pub rate: Option<u32>,
    pub method: Vec<String>,
    pub warnings: Vec<String>,
    pub interrupted: bool,
    pub elapsed_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PeerResult {
    pub peer: PeerKind,
    /// Requests in flight in this peer's phases (one `PeerResult` per value with `--sweep`).
    pub in_flight: u32,
    pub ok: bool,
    pub error: Option<String>,
    pub notes: Vec<String>,
    pub xdp_mode: Option<String>,
    /// The config's file name (copied to `configs/<peer>-<name>`).
    pub config_file: String,
    pub checked: Option<Checked>,
    pub process: Option<TreeFacts>,
    pub napi: Vec<NapiThread>,
    pub phases: Vec<PhaseResult>,
    /// `--syn-flood`: the redirect rate with and without a SYN flood (force-https-xdp only).
    pub syn_flood: Option<FloodResult>,
    /// `--instructions`: user-space instructions per request, by phase.
    pub instructions: Vec<Count>,
}

impl PeerResult {
    pub fn new(peer: PeerKind) -> PeerResult {
        PeerResult {
            peer,
            in_flight: super::load::IN_FLIGHT,
            ok: false,
            error: None,
            notes: Vec::new(),
            xdp_mode: None,
            config_file: String::new(),
            checked: None,
            process: None,
            napi: Vec::new(),
            phases: Vec::new(),
            syn_flood: None,
            instructions: Vec::new(),
        }
    }

    pub fn phase(&self, p: Phase) -> Option<&PhaseResult> {
        self.phases.iter().find(|r| r.phase == p)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseResult {
    pub phase: Phase,
    pub command: String,
    pub passes: Vec<Pass>,
    /// Passes thrown away because something else ran during them (re-run instead).
    pub discarded: Vec<Pass>,
    pub summary: Option<PhaseSummary>,
    pub error: Option<String>,
}

/// The share of `--rate` a pass must serve for its latency to count as at that rate.
pub const RATE_HELD: f64 = 0.95;

impl PhaseResult {
    /// With `--rate`: a warning when some passes served under [`RATE_HELD`] of it (the peer
    /// could not keep up, so their latency leaves out the wait before sending).
    pub fn rate_shortfall(&self, rate: Option<u32>, peer: &str) -> Option<String> {
        let rate = f64::from(rate.filter(|_| self.phase.takes_rate())?);
        let short: Vec<f64> = self
            .passes
            .iter()
            .map(|p| p.load.rps)
            .filter(|&rps| rps < RATE_HELD * rate)
            .collect();
        let lowest = short.iter().copied().reduce(f64::min)?;
        Some(format!(
            "{peer} / {}: {} of {} passes served under {:.0}% of --rate {rate} (lowest {lowest:.0} requests/s): over this peer's top rate, so their latency is not at that load",
            self.phase.name(),
            short.len(),
            self.passes.len(),
            RATE_HELD * 100.0
        ))
    }
}

/// The quiet-machine check before a pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Quiet {
    /// Per-CPU utilization of the last 1 s sample.
    pub utilization: Vec<f64>,
    pub waited_s: f64,
    pub ok: bool,
}

/// One measured run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Pass {
    pub load: LoadOutput,
    /// Wall time of the CPU window (load generator start to exit).
    pub wall_s: f64,
    pub edge: Usage,
    pub client: Usage,
    pub machine: Usage,
    /// Edge CPU busy time / requests, µs.
    pub edge_us_per_req: f64,
    /// All CPUs' busy time / requests, µs.
    pub machine_us_per_req: f64,
    /// Client TCP active opens / requests.
    pub conns_per_req: Option<f64>,
    /// Edge TCP passive opens (kernel sockets made) / requests.
    pub kernel_sockets_per_req: Option<f64>,
    /// TCP segments the edge namespace retransmitted / requests.
    pub retrans_per_req: Option<f64>,
    /// TCP segments the edge namespace sent (veth and loopback, retransmissions excluded) /
    /// requests.
    pub segs_per_req: Option<f64>,
    /// force-https only: requests its counters saw (redirects or proxied HTTPS requests).
    pub server_counted: Option<u64>,
    /// force-https only: every counter of `force-https stats` that moved during the pass.
    pub server_counters: std::collections::BTreeMap<String, u64>,
    /// force-https-xdp only: share of the redirects answered by the AF_XDP responder.
    pub fast_path_share: Option<f64>,
    pub bytes_per_response: Option<f64>,
    /// NET_RX softirqs per request on the edge and on the client CPU (veth traffic should
    /// raise none: it goes through the pinned NAPI threads).
    pub net_rx_per_req: [f64; 2],
    pub quiet: Quiet,
    /// CPU seconds used during the pass by user-space processes the bench did not start.
    pub foreign_cpu_s: f64,
    /// The biggest of them (`comm (pid) ticks`).
    pub foreign_top: Vec<String>,
    /// Processes and threads created on the machine during the pass (the load generator is
    /// one).
    pub forks: u64,
    /// Foreign CPU or forks above the limits: the pass was disturbed.
    pub disturbed: bool,
}

/// Medians and spreads over the passes of one peer × phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseSummary {
    pub passes: usize,
    pub rps: Spread,
    pub p50_us: Option<Spread>,
    pub p99_us: Option<Spread>,
    pub edge_us_per_req: Spread,
    pub machine_us_per_req: Spread,
    pub edge_utilization: f64,
    pub client_utilization: f64,
    /// Medians of the edge CPU's user / system / softirq shares.
    pub edge_user: f64,
    pub edge_system: f64,
    pub edge_softirq: f64,
    pub conns_per_req: Option<f64>,
    pub kernel_sockets_per_req: Option<f64>,
    pub retrans_per_req: Option<f64>,
    pub segs_per_req: Option<f64>,
    pub fast_path_share: Option<f64>,
    pub bytes_per_response: Option<f64>,
    /// Bytes the client read per second of the load generator's time, in MiB/s (1 MiB =
    /// 2^20 bytes); `None` when the generator reported no byte count.
    pub mib_per_s: Option<Spread>,
    /// Medians of the NET_RX softirqs per request on the edge and client CPU.
    pub net_rx_per_req: [f64; 2],
    pub errors: u64,
    pub bad_status: u64,
    /// Passes thrown away because something else ran during them.
    pub discarded: usize,
    /// Some spread still over the limit after the extra passes.
    pub noisy: bool,
    /// Some pass ran without a quiet machine, or was disturbed and could not be re-run.
    pub not_quiet: bool,
}

fn opt_median(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = v.flatten().collect();
    median(&v)
}

/// The spreads that decide whether more passes are run: requests/s and edge CPU per request.
pub fn key_spreads(passes: &[Pass]) -> Vec<Option<Spread>> {
    let rps: Vec<f64> = passes.iter().map(|p| p.load.rps).collect();
    let cpu: Vec<f64> = passes.iter().map(|p| p.edge_us_per_req).collect();
    vec![spread(&rps), spread(&cpu)]
}

/// Summarizes the passes; `None` when there is none.
pub fn summarize(passes: &[Pass], spread_limit_pct: f64) -> Option<PhaseSummary> {
    let m = |f: &dyn Fn(&Pass) -> f64| -> Vec<f64> { passes.iter().map(f).collect() };
    let rps = spread(&m(&|p| p.load.rps))?;
    let edge = spread(&m(&|p| p.edge_us_per_req))?;
    let machine = spread(&m(&|p| p.machine_us_per_req))?;
    let lat = |f: &dyn Fn(&Pass) -> Option<f64>| {
        let v: Vec<f64> = passes.iter().filter_map(f).collect();
        spread(&v)
    };
    Some(PhaseSummary {
        passes: passes.len(),
        rps,
        p50_us: lat(&|p| p.load.p50_us),
        p99_us: lat(&|p| p.load.p99_us),
        edge_us_per_req: edge,
        machine_us_per_req: machine,
        edge_utilization: median(&m(&|p| p.edge.utilization)).unwrap_or(0.0),
        client_utilization: median(&m(&|p| p.client.utilization)).unwrap_or(0.0),
        edge_user: median(&m(&|p| p.edge.user)).unwrap_or(0.0),
        edge_system: median(&m(&|p| p.edge.system)).unwrap_or(0.0),
        edge_softirq: median(&m(&|p| p.edge.softirq)).unwrap_or(0.0),
        conns_per_req: opt_median(passes.iter().map(|p| p.conns_per_req)),
        kernel_sockets_per_req: opt_median(passes.iter().map(|p| p.kernel_sockets_per_req)),
        retrans_per_req: opt_median(passes.iter().map(|p| p.retrans_per_req)),
        segs_per_req: opt_median(passes.iter().map(|p| p.segs_per_req)),
        fast_path_share: opt_median(passes.iter().map(|p| p.fast_path_share)),
        bytes_per_response: opt_median(passes.iter().map(|p| p.bytes_per_response)),
        mib_per_s: lat(&|p| mib_per_s(&p.load)),
        net_rx_per_req: [
            median(&m(&|p| p.net_rx_per_req[0])).unwrap_or(0.0),
            median(&m(&|p| p.net_rx_per_req[1])).unwrap_or(0.0),
        ],
        errors: passes.iter().map(|p| p.load.errors).sum(),
        bad_status: passes.iter().map(|p| p.load.bad_status).sum(),
        discarded: 0,
        noisy: rps.spread_pct > spread_limit_pct || edge.spread_pct > spread_limit_pct,
        not_quiet: passes.iter().any(|p| !p.quiet.ok || p.disturbed),
    })
}

/// The client's read throughput of one run in MiB/s (2^20 bytes), from the bytes and the time
/// the load generator reported.
pub fn mib_per_s(load: &LoadOutput) -> Option<f64> {
    let bytes = load.bytes?;
    (load.seconds > 0.0).then(|| bytes as f64 / load.seconds / (1u64 << 20) as f64)
}

/// `12,345`-style grouping of a rounded number.
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A duration in µs as ms with 2 decimals, or µs below 1 ms.
pub fn fmt_latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn flags(s: &PhaseSummary) -> String {
    let mut f = String::new();
    if s.noisy {
        f.push_str(" ⚠noisy");
    }
    if s.not_quiet {
        f.push_str(" ⚠busy");
    }
    if s.errors > 0 || s.bad_status > 0 {
        f.push_str(" ⚠errors");
    }
    f
}

/// One Markdown table: a row per peer, a column per phase, cells from `cell`.
fn table(
    out: &mut String,
    peers: &[PeerResult],
    phases: &[Phase],
    cell: &dyn Fn(&PhaseSummary) -> String,
) {
    // With a concurrency sweep, a column for the requests in flight (rows grouped by it).
    let sweep = is_sweep(peers);
    let _ = write!(out, "| peer |");
    if sweep {
        out.push_str(" in flight |");
    }
    for p in phases {
        let _ = write!(out, " {} |", p.title());
    }
    out.push('\n');
    out.push_str("|---|");
    if sweep {
        out.push_str("---:|");
    }
    for _ in phases {
        out.push_str("---:|");
    }
    out.push('\n');
    for peer in peers {
        let _ = write!(out, "| {} |", peer.peer.name());
        if sweep {
            let _ = write!(out, " {} |", peer.in_flight);
        }
        for p in phases {
            let c = match peer.phase(*p) {
                Some(PhaseResult {
                    summary: Some(s), ..
                }) => cell(s),
                Some(PhaseResult { error: Some(_), .. }) => "failed".into(),
                _ if !peer.ok && peer.phases.is_empty() => "not run".into(),
                _ => "–".into(),
            };
            let _ = write!(out, " {c} |");
        }
        out.push('\n');
    }
    out.push('\n');
}

/// Whether the peers ran at more than one requests-in-flight value (`--sweep`).
fn is_sweep(peers: &[PeerResult]) -> bool {
    peers.windows(2).any(|w| w[0].in_flight != w[1].in_flight)
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// The Markdown report.
/// force-https (either peer) over another peer, for one phase, round by round.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedRatio {
    /// `peer / phase` (with the requests in flight when a sweep ran several).
    pub label: String,
    pub other: &'static str,
    /// force-https's requests/s over the other's, per round.
    pub rps: Spread,
    /// force-https's edge CPU per request over the other's, per round.
    pub cpu: Spread,
    /// 95% confidence intervals for the medians of `rps` and `cpu` (`None` under 6 rounds).
    pub rps_ci: Option<(f64, f64)>,
    pub cpu_ci: Option<(f64, f64)>,
    /// force-https's p99 latency over the other's, per round (`None` when a pass has none),
    /// with its interval: issue 15's tail target, met at 95% when the interval is under 1.
    pub p99: Option<Spread>,
    pub p99_ci: Option<(f64, f64)>,
}

/// The per-round ratios of every force-https peer to every other peer at the same requests
/// in flight, for the phases both ran in every round (pass i of each is round i + 1; a phase
/// whose pass counts differ, because a peer failed in some round, is left out).
pub fn paired_ratios(peers: &[PeerResult], phases: &[Phase]) -> Vec<PairedRatio> {
    let ours = |k: PeerKind| matches!(k, PeerKind::ForceHttps | PeerKind::ForceHttpsXdp);
    let sweep = peers.iter().any(|p| p.in_flight != peers[0].in_flight);
    let mut out = Vec::new();
    for a in peers.iter().filter(|p| ours(p.peer)) {
        for b in peers
            .iter()
            .filter(|p| !ours(p.peer) && p.in_flight == a.in_flight)
        {
            for &ph in phases {
                let (Some(pa), Some(pb)) = (a.phase(ph), b.phase(ph)) else {
                    continue;
                };
                if pa.passes.is_empty() || pa.passes.len() != pb.passes.len() {
                    continue;
                }
                let pairs = pa.passes.iter().zip(&pb.passes);
                let rps: Vec<f64> = pairs
                    .clone()
                    .map(|(x, y)| x.load.rps / y.load.rps)
                    .collect();
                let cpu: Vec<f64> = pairs
                    .clone()
                    .map(|(x, y)| x.edge_us_per_req / y.edge_us_per_req)
                    .collect();
                let p99: Option<Vec<f64>> = pairs
                    .map(|(x, y)| Some(x.load.p99_us? / y.load.p99_us?))
                    .collect();
                let (rps_ci, cpu_ci) = (median_ci95(&rps), median_ci95(&cpu));
                let p99_ci = p99.as_deref().and_then(median_ci95);
                let p99 = p99.as_deref().and_then(spread);
                let (Some(rps), Some(cpu)) = (spread(&rps), spread(&cpu)) else {
                    continue;
                };
                let label = if sweep {
                    format!("{} / {} @{}", a.peer.name(), ph.name(), a.in_flight)
                } else {
                    format!("{} / {}", a.peer.name(), ph.name())
                };
                out.push(PairedRatio {
                    label,
                    other: b.peer.name(),
                    rps,
                    cpu,
                    rps_ci,
                    cpu_ci,
                    p99,
                    p99_ci,
                });
            }
        }
    }
    out
}

pub fn markdown(r: &Results, phases: &[Phase]) -> String {
    let m = &r.meta;
    let mut o = String::new();
    let _ = writeln!(o, "# force-https benchmark, {}\n", m.date_utc);
    let _ = writeln!(o, "- Command: `{}`", m.command);
    let _ = writeln!(
        o,
        "- Machine: {}, {} cores; CPU {} = edge (peer, backend, edge veth receive), CPU {} = load generator (and client veth receive)",
        m.cpu_model, m.cores, m.edge_cpu, m.client_cpu
    );
    let _ = writeln!(o, "- Kernel: {}", m.kernel);
    let counted = r.peers.iter().any(|p| !p.instructions.is_empty());
    if counted {
        o.push_str("- Runs: each peer under callgrind, counted runs of a fixed number of requests (`--instructions`, below); no timed passes\n");
    } else {
        let _ = writeln!(
            o,
            "- Runs: {} s per pass, {} passes (up to 2 more when requests/s or edge CPU per request spread over 10%), {} s unmeasured warm-up per phase, {} requests in flight",
            m.duration_s,
            m.passes,
            m.warmup_s,
            if m.sweep.len() > 1 {
                let v: Vec<String> = m.sweep.iter().map(|n| n.to_string()).collect();
                format!("{} (sweep)", v.join(", "))
            } else {
                m.in_flight.to_string()
            }
        );
    }
    let _ = writeln!(
        o,
        "- Total time: {:.0} s{}",
        m.elapsed_s,
        if m.interrupted {
            " (INTERRUPTED: partial results)"
        } else {
            ""
        }
    );
    o.push_str("- Versions:\n");
    for (tool, v) in &m.versions {
        let _ = writeln!(o, "  - {tool}: `{v}`");
    }
    if !m.warnings.is_empty() {
        o.push_str("\n**Warnings**\n\n");
        for w in &m.warnings {
            let _ = writeln!(o, "- {w}");
        }
    }

    if phases.is_empty() {
        instructions_table(&mut o, &r.peers);
    } else {
        timed_tables(&mut o, r, phases);
    }

    for p in &r.peers {
        if let Some(f) = &p.syn_flood {
            let _ = writeln!(o, "## SYN flood ({})\n", p.peer.name());
            flood::markdown(f, &mut o);
            o.push('\n');
        }
    }

    o.push_str("## Peers\n\n");
    let sweep = is_sweep(&r.peers);
    for p in &r.peers {
        if sweep {
            let _ = writeln!(o, "### {} ({} in flight)\n", p.peer.name(), p.in_flight);
        } else {
            let _ = writeln!(o, "### {}\n", p.peer.name());
        }
        if let Some(e) = &p.error {
            let _ = writeln!(o, "- **FAILED**: {}", e.lines().next().unwrap_or(""));
        }
        if !p.config_file.is_empty() {
            let _ = writeln!(o, "- Config: `configs/{}-{}`", p.peer.name(), p.config_file);
        }
        if let Some(mode) = &p.xdp_mode {
            let _ = writeln!(o, "- XDP attach mode: {mode}");
        }
        if let Some(c) = &p.checked {
            let _ = writeln!(o, "- Checked: {}", c.redirect);
            let _ = writeln!(o, "- Checked: {}", c.https_h1);
            let _ = writeln!(o, "- Checked: {}", c.https_h2);
            for line in [&c.plain_http, &c.big_h1, &c.big_h2] {
                if !line.is_empty() {
                    let _ = writeln!(o, "- Checked: {line}");
                }
            }
            let _ = writeln!(
                o,
                "- TLS with an OpenSSL client (as wrk and h2load): {}, {}, key exchange {}, ALPN {}",
                c.tls.protocol, c.tls.cipher, c.tls.key_exchange, c.tls.alpn
            );
        }
        if let Some(t) = &p.process {
            let _ = writeln!(
                o,
                "- Process tree: {} process(es), {} thread(s), CPUs allowed: {}",
                t.processes,
                t.threads,
                t.cpus_allowed.join(", ")
            );
        }
        if !p.napi.is_empty() {
            let list: Vec<String> = p
                .napi
                .iter()
                .map(|n| format!("{} → CPU {}", n.name, n.cpu))
                .collect();
            let _ = writeln!(o, "- NAPI kthreads: {}", list.join(", "));
        }
        for n in &p.notes {
            let _ = writeln!(o, "- {n}");
        }
        for ph in &p.phases {
            if let Some(e) = &ph.error {
                let _ = writeln!(
                    o,
                    "- {} failed: {}",
                    ph.phase.name(),
                    e.lines().next().unwrap_or("")
                );
            }
        }
        o.push('\n');
    }

    o.push_str("## Load commands\n\nRun in the client namespace, where bench.example resolves to the edge (198.51.100.1):\n\n");
    let mut seen = Vec::new();
    for p in &r.peers {
        for ph in &p.phases {
            if !seen.contains(&(ph.phase, p.in_flight)) {
                seen.push((ph.phase, p.in_flight));
                if sweep {
                    let _ = writeln!(
                        o,
                        "- {} at {} in flight: `{}`",
                        ph.phase.name(),
                        p.in_flight,
                        ph.command
                    );
                } else {
                    let _ = writeln!(o, "- {}: `{}`", ph.phase.name(), ph.command);
                }
            }
        }
    }

    o.push_str("\n## Method\n\n");
    for l in &m.method {
        let _ = writeln!(o, "- {l}");
    }

    o.push_str("\n## Scale\n\n");
    if r.scale.is_empty() {
        o.push_str("_Not measured yet: extension point `scale::section` in xtask/src/bench/scale.rs (RSS idle and with 100k hosts, 1M-host load time, fast-path cost 10 vs 1M hosts, enable latency, allocations per redirect)._\n");
    } else {
        for l in &r.scale {
            o.push_str(l);
            o.push('\n');
        }
    }
    if let Some(micro) = &r.micro {
        o.push_str("\n## Micro-benchmarks (`cargo bench -p force-https-proto`)\n\n");
        if micro.is_empty() {
            o.push_str("_No criterion results found; see micro.txt._\n");
        }
        for l in micro {
            let _ = writeln!(o, "- `{l}`");
        }
    }
    o
}

/// The date and time in UTC: `(YYYY-MM-DD HH:MM:SS UTC, YYYYMMDDTHHMMSSZ)`.
pub fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc_strings(secs)
}

/// Both forms of a Unix time.
pub fn utc_strings(secs: u64) -> (String, String) {
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    (
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC"),
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `(model name, number of processors)` from the text of /proc/cpuinfo.
pub fn parse_cpuinfo(text: &str) -> (String, usize) {
    let model = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = text
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim() == "processor")
        })
        .count();
    (model, cores)
}

/// The result lines of criterion's output: `name: [low estimate high]` (the `change:` blocks,
/// comparisons with an earlier run, are left out).
pub fn criterion_summary(out: &str) -> Vec<String> {
    let mut res = Vec::new();
    let mut last_name = String::new();
    let mut in_change = false;
    for line in out.lines() {
        let starts_blank = line.starts_with(char::is_whitespace);
        let t = line.trim();
        if t == "change:" || t.starts_with("change:") {
            in_change = true;
            continue;
        }
        if let Some(at) = line.find("time:") {
            let inline = line[..at].trim();
            if !starts_blank && !inline.is_empty() {
                last_name = inline.to_string();
                in_change = false;
            }
            if in_change {
                in_change = false;
                continue;
            }
            let value = line[at + "time:".len()..].trim();
            res.push(format!("{last_name}: {value}"));
        } else if !starts_blank && !t.is_empty() {
            let skip = [
                "Benchmarking",
                "Gnuplot",
                "Found",
                "Running",
                "Compiling",
                "Finished",
                "warning",
            ];
            if !skip.iter().any(|s| t.starts_with(s)) {
                last_name = t.to_string();
                in_change = false;
            }
        }
    }
    res
}

/// The tables of the timed passes: requests/s, CPU per request, latency, what happened.
fn timed_tables(o: &mut String, r: &Results, phases: &[Phase]) {
    o.push_str(
        "\nEach cell is the median over the passes; `(x%)` is the spread, (max − min) / median. ",
    );
    o.push_str("⚠noisy: spread still over 10% after the extra passes; ⚠busy: the machine was not quiet before a pass, or something else ran during one and it could not be re-run; ⚠errors: socket errors or unexpected statuses (see results.json); ◦client-bound: the edge CPU was under 90% busy while the load generator's was over 90%, so the rate is the load generator's limit (compare CPU per request).\n\n");

    o.push_str("## Requests per second\n\n");
    table(o, &r.peers, phases, &|s| {
        let bound = if s.edge_utilization < 0.9 && s.client_utilization > 0.9 {
            " ◦client-bound"
        } else {
            ""
        };
        format!(
            "{} ({:.0}%){}{bound}",
            thousands(s.rps.median),
            s.rps.spread_pct,
            flags(s)
        )
    });
    let big: Vec<Phase> = phases.iter().copied().filter(|p| p.is_big()).collect();
    if !big.is_empty() {
        o.push_str("## Throughput of the 1 MiB phases (MiB/s)\n\nBytes the client read (bodies and headers) per second of the load generator's time, 1 MiB = 2^20 bytes.\n\n");
        table(o, &r.peers, &big, &|s| match &s.mib_per_s {
            Some(t) => format!("{:.0} ({:.0}%)", t.median, t.spread_pct),
            None => "n/a".into(),
        });
    }
    let pairs = paired_ratios(&r.peers, phases);
    let heading = match (r.meta.rounds, r.meta.paired) {
        (_, Some(_)) => Some(
            "## force-https against each peer, slice by slice\n\nEvery peer ran at once (each idle but when under load) and got one pass per slice, back to back, so a slice's ratio compares passes seconds apart: force-https's requests/s, edge CPU per request and p99 latency over the other peer's, per slice. Each cell: the median of the slices, `[` its 95% confidence interval `]` (sign test; a target is met at 95% when the whole interval is on its side), then the range of single slices.",
        ),
        (Some(_), None) => Some(
            "## force-https against each peer, round by round\n\nIn a round every peer ran back to back, so the ratio within a round is the comparison a drifting machine disturbs least: force-https's requests/s, edge CPU per request and p99 latency over the other peer's, per round; the median of the rounds, `[` its 95% confidence interval `]` from 6 rounds on, then their range.",
        ),
        (None, None) => None,
    };
    if let Some(heading) = heading.filter(|_| !pairs.is_empty()) {
        o.push_str(heading);
        o.push_str(
            "\n\n| phase | against | requests/s ratio | edge CPU ratio | p99 ratio |\n|---|---|---:|---:|---:|\n",
        );
        let cell = |s: &Spread, ci: Option<(f64, f64)>| {
            let ci = ci.map_or(String::new(), |(a, b)| format!(" [{a:.2}–{b:.2}]"));
            format!("{:.2}{ci} ({:.2}–{:.2})", s.median, s.min, s.max)
        };
        for p in &pairs {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                p.label,
                p.other,
                cell(&p.rps, p.rps_ci),
                cell(&p.cpu, p.cpu_ci),
                p.p99.as_ref().map_or("–".into(), |s| cell(s, p.p99_ci))
            );
        }
        o.push('\n');
    }
    o.push_str("## Edge CPU per request (µs)\n\nBusy time of the edge CPU (all of /proc/stat's cpu0 but idle and iowait: the peer, the backend, and the kernel's receive work for the edge, XDP included) over the run, divided by the requests served.\n\n");
    table(o, &r.peers, phases, &|s| {
        format!(
            "{:.1} ({:.0}%)",
            s.edge_us_per_req.median, s.edge_us_per_req.spread_pct
        )
    });
    o.push_str("## Whole-machine CPU per request (µs)\n\nBusy time of all CPUs (edge + load generator + anything else) divided by the requests served.\n\n");
    table(o, &r.peers, phases, &|s| {
        format!(
            "{:.1} ({:.0}%)",
            s.machine_us_per_req.median, s.machine_us_per_req.spread_pct
        )
    });
    o.push_str("## Latency p50 / p99\n\nwrk: from writing the request to the end of the response (the TCP/TLS handshake of the new-connection phases is not included). h2load: per-request durations from its log file.\n\n");
    table(o, &r.peers, phases, &|s| match (&s.p50_us, &s.p99_us) {
        (Some(a), Some(b)) => format!("{} / {}", fmt_latency(a.median), fmt_latency(b.median)),
        _ => "n/a".into(),
    });
    o.push_str("## CPU utilization, edge / load generator\n\nAn edge CPU under 100% means the single-threaded load generator (or the network path) was the limit, not the peer: compare CPU per request then.\n\n");
    table(o, &r.peers, phases, &|s| {
        format!(
            "{} / {}",
            pct(s.edge_utilization),
            pct(s.client_utilization)
        )
    });
    o.push_str("## Where the edge CPU's time went\n\nuser / system / softirq shares of the edge CPU's elapsed time; then NET_RX softirqs per request on the edge · client CPU. With threaded NAPI the veth receive path is system time of the pinned `napi/…` kthreads and raises no NET_RX softirq; what remains is loopback traffic between the peer and the backend (both on the edge CPU).\n\n");
    table(o, &r.peers, phases, &|s| {
        format!(
            "{} / {} / {}; {:.2} · {:.2}",
            pct(s.edge_user),
            pct(s.edge_system),
            pct(s.edge_softirq),
            s.net_rx_per_req[0],
            s.net_rx_per_req[1]
        )
    });
    o.push_str("## What actually happened\n\n`c/r`: new client TCP connections per response; `k/r`: sockets the edge kernel created per response (TCP passive opens); `B/r`: bytes the client read per response; `seg/r`: TCP segments the edge namespace sent per response (to the client and, over loopback, to the backend; retransmissions excluded); `rtx/r`: TCP segments it sent again per response (left out when none); `fast`: share of the redirects answered by the XDP/AF_XDP fast path; `re-run`: passes thrown away because other processes ran during them.\n\n");
    table(o, &r.peers, phases, &|s| {
        let mut parts = Vec::new();
        if let Some(c) = s.conns_per_req {
            parts.push(format!("c/r {c:.2}"));
        }
        if let Some(k) = s.kernel_sockets_per_req {
            parts.push(format!("k/r {k:.2}"));
        }
        if let Some(b) = s.bytes_per_response {
            parts.push(format!("B/r {b:.0}"));
        }
        if let Some(x) = s.segs_per_req {
            parts.push(format!("seg/r {x:.1}"));
        }
        if let Some(x) = s.retrans_per_req.filter(|&x| x > 0.0) {
            parts.push(format!("rtx/r {x:.2}"));
        }
        if let Some(f) = s.fast_path_share {
            parts.push(format!("fast {}", pct(f)));
        }
        if s.errors > 0 || s.bad_status > 0 {
            parts.push(format!("err {} bad {}", s.errors, s.bad_status));
        }
        if s.discarded > 0 {
            parts.push(format!("re-run {}", s.discarded));
        }
        parts.join(", ")
    });
}

/// `--instructions`: user-space instructions per request, peers as rows, phases as columns,
/// then each peer over force-https.
fn instructions_table(o: &mut String, peers: &[PeerResult]) {
    let phases: Vec<Phase> = super::instructions::PHASES
        .into_iter()
        .filter(|ph| {
            peers
                .iter()
                .any(|p| p.instructions.iter().any(|c| c.phase == Some(*ph)))
        })
        .collect();
    if phases.is_empty() {
        return;
    }
    let count = |p: &PeerResult, ph: Phase| {
        p.instructions
            .iter()
            .find(|c| c.phase == Some(ph))
            .and_then(|c| c.per_request)
    };
    o.push_str("## Instructions per request (callgrind)\n\nUser-space instructions (`Ir`) of the peer's processes per request, from callgrind: the difference of two dumps, after N and after 2N more requests of the same 8 connections, over N (handshakes and start-up cancel). The kernel's work is not counted. Two runs back to back differed by 2.2% at most (BENCHMARKS.md, run Q).\n\n| peer |");
    for ph in &phases {
        let _ = write!(o, " {} |", ph.title());
    }
    o.push_str("\n|---|");
    for _ in &phases {
        o.push_str("---:|");
    }
    o.push('\n');
    let base = peers.iter().find(|p| p.peer == PeerKind::ForceHttps);
    for p in peers {
        let _ = write!(o, "| {} |", p.peer.name());
        for &ph in &phases {
            let cell = match count(p, ph) {
                None => "error".to_string(),
                Some(v) => match base.and_then(|b| count(b, ph)) {
                    Some(fh) if p.peer != PeerKind::ForceHttps && v > 0.0 => {
                        format!("{} (force-https ÷ this: {:.2})", thousands(v), fh / v)
                    }
                    _ => thousands(v),
                },
            };
            let _ = write!(o, " {cell} |");
        }
        o.push('\n');
    }
    o.push('\n');
    for p in peers {
        for c in &p.instructions {
            if let (Some(ph), Some(e)) = (c.phase, &c.error) {
                let _ = writeln!(o, "- {} / {}: {e}", p.peer.name(), ph.name());
            }
        }
    }
    o.push_str("Load commands (client namespace; the counted runs send N, then 2N requests):\n\n");
    for &ph in &phases {
        if let Some(c) = peers
            .iter()
            .flat_map(|p| &p.instructions)
            .find(|c| c.phase == Some(ph))
        {
            let _ = writeln!(o, "- {}: `{}`", ph.name(), c.command);
        }
    }
    o.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(
            utc_strings(0),
            ("1970-01-01 00:00:00 UTC".into(), "19700101T000000Z".into())
        );
        // 2024-02-29 12:34:56 UTC
        assert_eq!(utc_strings(1_709_210_096).1, "20240229T123456Z");
        assert_eq!(utc_strings(951_782_400).0, "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn cpuinfo() {
        let t =
            "processor\t: 0\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n";
        assert_eq!(parse_cpuinfo(t), ("AMD EPYC".into(), 2));
    }

    #[test]
    fn number_formats() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
        assert_eq!(fmt_latency(812.0), "812 µs");
        assert_eq!(fmt_latency(3200.0), "3.20 ms");
    }

    #[test]
    fn criterion_lines() {
        let out = "Benchmarking redirect/build: Warming up\nredirect/build         time:   [45.1 ns 45.4 ns 45.8 ns]\n\
                   a/very/long/benchmark/name/here\n                        time:   [1.0 µs 1.1 µs 1.2 µs]\n\
                   Found 3 outliers among 100 measurements (3.00%)\n\
                   head/parse_head/curl    time:   [89.062 ns 90.477 ns 92.268 ns]\n\
                                           thrpt:  [806.20 MiB/s 822.16 MiB/s 835.23 MiB/s]\n\
                                    change:\n\
                                           time:   [-38.034% -34.466% -30.599%] (p = 0.00 < 0.05)\n\
                                           Performance has improved.\n";
        assert_eq!(
            criterion_summary(out),
            vec![
                "redirect/build: [45.1 ns 45.4 ns 45.8 ns]".to_string(),
                "a/very/long/benchmark/name/here: [1.0 µs 1.1 µs 1.2 µs]".to_string(),
                "head/parse_head/curl: [89.062 ns 90.477 ns 92.268 ns]".to_string(),
            ]
        );
    }

    fn pass(rps: f64, cpu: f64) -> Pass {
        Pass {
            load: LoadOutput {
                requests: 1000,
                rps,
                p50_us: Some(100.0),
                ..LoadOutput::default()
            },
            edge_us_per_req: cpu,
            machine_us_per_req: cpu * 2.0,
            conns_per_req: Some(1.0),
            quiet: Quiet {
                ok: true,
                ..Quiet::default()
            },
            ..Pass::default()
        }
    }

    #[test]
    fn summaries_and_report() {
        let passes = vec![pass(100.0, 10.0), pass(90.0, 11.0), pass(110.0, 9.0)];
        let s = summarize(&passes, 10.0).unwrap();
        assert_eq!(s.rps.median, 100.0);
        assert!(s.noisy);
        assert_eq!(s.conns_per_req, Some(1.0));
        assert_eq!(s.p99_us, None);
        assert!(summarize(&[], 10.0).is_none());

        let mut peer = PeerResult::new(PeerKind::Nginx);
        peer.ok = true;
        peer.phases.push(PhaseResult {
            phase: Phase::RedirectNewConn,
            command: "wrk".into(),
            passes,
            discarded: Vec::new(),
            summary: Some(s),
            error: None,
        });
        let mut failed = PeerResult::new(PeerKind::Caddy);
        failed.error = Some("caddy exited".into());
        let r = Results {
            peers: vec![peer, failed],
            ..Results::default()
        };
        let md = markdown(&r, &[Phase::RedirectNewConn, Phase::HttpsH2]);
        assert!(md.contains("| nginx | 100 (20%) ⚠noisy | – |"), "{md}");
        assert!(md.contains("| caddy | not run | not run |"), "{md}");
        assert!(md.contains("**FAILED**: caddy exited"));
        assert!(md.contains("extension point `scale::section`"));
        assert!(!md.contains("in flight |"), "{md}");
        assert!(!md.contains("MiB/s"), "{md}");
    }

    #[test]
    fn counted_runs_get_the_instructions_table_and_no_timed_tables() {
        let count = |phase, v: Option<f64>| Count {
            phase: Some(phase),
            per_request: v,
            requests: 4000,
            command: format!("h2load {}", Phase::name(phase)),
            error: v
                .is_none()
                .then(|| "callgrind wrote 0 of 1 dump files in 30 s".into()),
        };
        let mut fh = PeerResult::new(PeerKind::ForceHttps);
        fh.instructions = vec![
            count(Phase::HttpsH1, Some(50_000.0)),
            count(Phase::HttpsH2, Some(63_000.0)),
        ];
        let mut hap = PeerResult::new(PeerKind::Haproxy);
        hap.instructions = vec![
            count(Phase::HttpsH1, Some(55_000.0)),
            count(Phase::HttpsH2, None),
        ];
        let r = Results {
            peers: vec![fh, hap],
            ..Results::default()
        };
        let md = markdown(&r, &[]);
        assert!(
            md.contains("## Instructions per request (callgrind)"),
            "{md}"
        );
        assert!(
            md.contains("| peer | HTTPS h1 keep-alive | HTTPS h2 |\n"),
            "{md}"
        );
        assert!(md.contains("| force-https | 50,000 | 63,000 |"), "{md}");
        assert!(
            md.contains("| haproxy | 55,000 (force-https ÷ this: 0.91) | error |"),
            "{md}"
        );
        assert!(
            md.contains("- haproxy / https-h2: callgrind wrote 0 of 1"),
            "{md}"
        );
        assert!(md.contains("- https-h1: `h2load https-h1`"), "{md}");
        assert!(md.contains("no timed passes"), "{md}");
        assert!(!md.contains("## Requests per second"), "{md}");
    }

    #[test]
    fn throughput_and_sweep_tables() {
        let big = |rps: f64| Pass {
            load: LoadOutput {
                requests: 1000,
                seconds: 10.0,
                rps,
                bytes: Some((rps * 10.0) as u64 * (1 << 20)),
                ..LoadOutput::default()
            },
            edge_us_per_req: 100.0,
            quiet: Quiet {
                ok: true,
                ..Quiet::default()
            },
            ..Pass::default()
        };
        assert_eq!(mib_per_s(&big(250.0).load), Some(250.0));
        assert_eq!(mib_per_s(&LoadOutput::default()), None);
        let peer = |kind, in_flight, rps| {
            let passes = vec![big(rps), big(rps)];
            let mut p = PeerResult::new(kind);
            p.ok = true;
            p.in_flight = in_flight;
            p.phases.push(PhaseResult {
                phase: Phase::HttpsH1Big,
                command: "wrk".into(),
                summary: summarize(&passes, 10.0),
                passes,
                discarded: Vec::new(),
                error: None,
            });
            p
        };
        let r = Results {
            peers: vec![
                peer(PeerKind::ForceHttps, 64, 300.0),
                peer(PeerKind::Haproxy, 64, 250.0),
            ],
            ..Results::default()
        };
        let md = markdown(&r, &[Phase::HttpsH1, Phase::HttpsH1Big]);
        assert!(
            md.contains("## Throughput of the 1 MiB phases (MiB/s)"),
            "{md}"
        );
        assert!(
            md.contains("| peer | HTTPS h1 1 MiB |\n|---|---:|\n| force-https | 300 (0%) |"),
            "{md}"
        );
        assert!(md.contains("| haproxy | – | 250 (0%) |"), "{md}");
        assert!(!md.contains("in flight |"), "{md}");

        let r = Results {
            peers: vec![
                peer(PeerKind::ForceHttps, 64, 300.0),
                peer(PeerKind::Haproxy, 64, 250.0),
                peer(PeerKind::ForceHttps, 512, 200.0),
            ],
            ..Results::default()
        };
        let md = markdown(&r, &[Phase::HttpsH1Big]);
        assert!(
            md.contains("| peer | in flight | HTTPS h1 1 MiB |\n|---|---:|---:|\n"),
            "{md}"
        );
        assert!(md.contains("| force-https | 512 | 200 (0%) |"), "{md}");
        assert!(md.contains("### force-https (512 in flight)"), "{md}");
        assert!(
            md.contains("- https-h1-1mib at 64 in flight: `wrk`"),
            "{md}"
        );
    }
}
