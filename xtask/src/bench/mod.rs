//! `cargo xtask bench` (root): force-https against nginx, HAProxy and Caddy on one machine.
//!
//! For each peer, one at a time, in fresh namespaces ([`topology`]): the fixed-response
//! `fh-backend` and the peer start in the edge namespace pinned to CPU 0, the semantics are
//! checked with curl ([`peers::verify`]), then each phase ([`load::Phase`]) runs an unmeasured
//! warm-up and `--passes` measured passes of wrk or h2load pinned to CPU 1 ([`load`]). Around
//! each pass /proc/stat gives the busy time of the edge CPU and of the whole machine ([`cpu`]),
//! and counters tell what happened (new connections per request, kernel sockets per request,
//! the fast-path share). Before each pass the machine must be quiet; a phase whose passes
//! spread over 10% gets up to 2 more ([`summary`]). Results go to
//! `target/bench/<UTC timestamp>/` as `results.json` and `report.md` ([`report`]), with the
//! peers' configs and every load generator's raw output.
//!
//! Cleanup always runs: processes are stopped by pid (`procs`), namespaces deleted
//! (`topology`), the temp dir removed, on success, failure, Ctrl-C/SIGTERM (a flag checked
//! between and during runs) and panic (`Drop`). Every load run is bounded in time.
//!
//! Issue 15 added the phases `http-proxied-keepalive` (a host every peer serves without
//! enforcing HTTPS, proxied on port 80), `https-h1-1mib` and `https-h2-1mib` (a 1 MiB body;
//! MiB/s in the report), and `--sweep N,N,…`: every selected phase at each requests-in-flight
//! value, the peers started afresh per value (one `PeerResult` per peer and value).
//!
//! `--micro` also runs `cargo bench -p force-https-proto` at the end. The scale measurements
//! have an extension point in [`scale`]. `--syn-flood` adds, for the force-https-xdp peer,
//! rounds of redirect-new-conn without and with a bounded hping3 SYN flood ([`flood`]:
//! the rate ratio, target ≥ 90%, and any SYN-RECV socket on the edge).
//!
//! `--instructions N` replaces the timed passes with counts: each peer runs under callgrind
//! and the report gives its user-space instructions per request in the keep-alive phases
//! ([`instructions`]), a measure this shared machine does not move by tens of percent.
//!
//! `--paired N` keeps the timed passes but runs every peer at once, each in its own pair of
//! namespaces ([`topology::Topology::create_nth`]), and each phase as N slices in which every
//! peer gets one pass, back to back: the ratio of two passes seconds apart, and the median of
//! N such ratios with its 95% confidence interval ([`summary::median_ci95`]), where the rounds
//! of `--rounds` compare passes minutes apart. With `--sweep`, one such paired run per
//! requests-in-flight value, one after the other.

mod cpu;
mod flood;
mod install;
mod instructions;
mod load;
mod peers;
mod procs;
mod report;
mod scale;
mod summary;
mod topology;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::{cmd, netns, setup};
use load::{BIG_BODY_BYTES, BIG_PATH, HOST, IN_FLIGHT, LoadGen, PLAIN_HOST, Phase};
use peers::{Files, PeerCtx, PeerKind};
use procs::Procs;
use report::{Meta, Pass, PeerResult, PhaseResult, Quiet, Results};
use topology::Topology;

/// The CPU of the edge: the peer, the backend and the edge veth's receive work.
pub const EDGE_CPU: usize = 0;
/// The CPU of the load generator and the client veth's receive work.
pub const CLIENT_CPU: usize = 1;
/// A CPU busier than this is not quiet.
const QUIET_LIMIT: f64 = 0.10;
/// How long to wait for a quiet machine before a pass, then go on with a warning.
const QUIET_WAIT: Duration = Duration::from_secs(60);
/// Spread (percent of the median) of requests/s or edge CPU per request that asks for more
/// passes.
const SPREAD_LIMIT_PCT: f64 = 10.0;
/// Passes added at most to a noisy phase.
const EXTRA_PASSES: usize = 2;
/// A pass is disturbed when other user-space processes used more than this share of one CPU
/// during it, or when more than `MAX_FORKS` processes were created (the load generator is one,
/// this machine's own services start about one a second, a build next to the bench starts
/// hundreds, many too short-lived to show in the CPU check).
const FOREIGN_LIMIT: f64 = 0.02;
const MAX_FORKS: u64 = 30;
/// Disturbed passes thrown away (and re-run after waiting for a quiet machine) per phase, at
/// most; later ones are kept and flagged.
const MAX_DISCARDED: usize = 5;
/// Open files allowed to xtask and so to everything it starts (RLIMIT_NOFILE, soft and hard):
/// the same for every peer, and enough for HAProxy's `maxconn 16384` (two per connection).
const NOFILE: u64 = 65536;
/// How long a peer and the backend get to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(15);

use crate::interrupt::{
    check as check_interrupted, install as install_signal_handlers, interrupted,
};

/// `cargo xtask bench` options.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Seconds of load per measured pass.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration: u64,
    /// Measured passes per peer and phase (up to 2 more when they spread over 10%).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub passes: u64,
    /// Only these peers (comma-separated), in this order.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub peers: Vec<PeerKind>,
    /// Only these phases (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub phases: Vec<Phase>,
    /// Seconds of unmeasured load before each phase's passes (0: none).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup: u64,
    /// Also run the micro-benchmarks: `cargo bench -p force-https-proto`.
    #[arg(long)]
    pub micro: bool,
    /// Hosts of the large table in the scale measurements (RSS, load time, enable latency,
    /// fast-path cost); 0 skips the scale measurements.
    #[arg(long, default_value_t = 1_000_000)]
    pub scale_hosts: usize,
    /// Only the scale measurements, no peer comparison.
    #[arg(long)]
    pub only_scale: bool,
    /// force-https with the access log on (`[log] access = "json"` to a file in the peer's
    /// scratch directory), to measure its cost against a run without.
    #[arg(long)]
    pub access_log: bool,
    /// The backend answers every request with this file as `text/html` instead of its fixed
    /// 128-byte text body (e.g. force-https-proto/benches/corpus/book-streams-30k.html).
    #[arg(long, value_name = "FILE")]
    pub page: Option<PathBuf>,
    /// force-https with `https_rewrites = true` on the bench site (Automatic HTTPS Rewrites;
    /// `https_rewrite_hosts = ["www.w3.org"]`), to compare with a run without, with `--page`.
    #[arg(long)]
    pub https_rewrites: bool,
    /// Requests in flight in every phase (wrk connections; h2load connections × streams: 4
    /// streams each up to 64, 8 above). Above 64, more than every peer's backend pool of 64
    /// idle connections: how each peer copes with more concurrent requests than it keeps
    /// backend connections.
    #[arg(long, default_value_t = IN_FLIGHT, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub in_flight: u32,
    /// A concurrency sweep (issue 15): runs the selected phases at each of these
    /// requests-in-flight values (comma-separated, e.g. `64,256,512,1024`), in that order, each
    /// peer started afresh for every value with its backend pool sized as `--in-flight` sizes
    /// it. The report's tables get an `in flight` column. Instead of `--in-flight`.
    #[arg(long, value_delimiter = ',', conflicts_with = "in_flight",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub sweep: Vec<u32>,
    /// Who answers port-80 SYNs for the fast-path peer: `xdp` (the default, `[xdp]
    /// answer_syn = true`: a syncookie SYN-ACK sent with XDP_TX) or `kernel` (`answer_syn =
    /// false`), to measure what answering the SYN in XDP saves.
    #[arg(long, value_enum, default_value_t = SynAnswer::Xdp)]
    pub synack: SynAnswer,
    /// After the phases, the force-https-xdp peer runs `--passes` rounds of redirect-new-conn
    /// without and with a bounded hping3 SYN flood to port 80 from the client namespace, and
    /// reports the ratio of the rates (target ≥ 90%) and any SYN-RECV socket on the edge
    /// (issue 11; `flood.rs`).
    #[arg(long)]
    pub syn_flood: bool,
    /// The CPU hping3 runs on during `--syn-flood`: `edge` (the default: the flood's whole
    /// cost, sending included, falls on the edge's CPU, next to the daemon and its XDP work,
    /// which only makes holding the rate harder for the edge) or `client` (next to wrk, which
    /// already saturates that CPU alone, so the flood slows the load generator and the ratio
    /// shows the client's loss, not the edge's; the 2026-11-30 runs).
    #[arg(long, value_enum, default_value_t = FloodCpu::Edge, requires = "syn_flood")]
    pub flood_cpu: FloodCpu,
    /// Instead of the timed passes: each peer's user-space instructions per request, counted
    /// by callgrind with the peer running under valgrind (installed when missing), for the
    /// keep-alive phases (`https-h1`, `https-h2`, `http-proxied-keepalive`) of force-https,
    /// nginx and HAProxy. h2load sends a warm-up of N requests, then N and 2N; the count is the
    /// difference of the two dumps over N, so handshakes cancel (`instructions.rs`). Steady to
    /// about 2% where the wall clock of a shared machine moves by tens of percent (BENCHMARKS.md,
    /// run Q). The report gets an "Instructions per request" table; the scale measurements
    /// are left out. At least 1,000: with a shorter warm-up HAProxy was still filling its
    /// pools, and its HTTP/2 count came out 20% low at N = 500 (4,000 is what run Q used).
    /// Each phase's profile (the 2N run's dump) is kept as `raw/callgrind.<peer>.<phase>`,
    /// for `callgrind_annotate`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1_000..=1_000_000),
          conflicts_with_all = ["sweep", "rounds", "syn_flood", "only_scale"])]
    pub instructions: Option<u64>,
    /// Interleaved rounds: every peer runs every phase once per round (one pass each, no
    /// extra passes), round after round, so that a slow stretch of a shared machine falls on
    /// all peers alike instead of on whichever peer ran then; the report's medians and
    /// spreads are over the rounds. Instead of `--passes`.
    #[arg(long, conflicts_with = "passes", value_parser = clap::value_parser!(u64).range(2..=20))]
    pub rounds: Option<u64>,
    /// Paired slices: every selected peer runs at the same time, each in its own pair of
    /// namespaces (all on the edge CPU, idle but for the one under load), and each phase is N
    /// slices of `--duration` seconds in which every peer gets one pass, back to back, the
    /// order turning by one each slice. A slice's ratio compares passes seconds apart instead
    /// of minutes; the report gives the median ratio with its 95% confidence interval, which
    /// narrows with N where the spread of single passes does not (`report.rs`). For
    /// `--duration 2` or 3 and N of 20 or more. Instead of `--passes` and `--rounds`. With
    /// `--sweep`, every requests-in-flight value in turn gets its own paired run (every peer
    /// started afresh), and the ratios are per value (BENCHMARKS.md, run V).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(6..=200),
          conflicts_with_all = ["passes", "rounds", "instructions", "syn_flood", "only_scale"])]
    pub paired: Option<u64>,
    /// The force-https-xdp peer's XDP mode: `native` (the default; falls back to generic when
    /// it does not attach) or `generic` only. Either way SYN-ACKs and FIN ACKs leave with
    /// XDP_TX (the client end of the veth runs a pass program, `topology.rs`).
    #[arg(long, value_enum, default_value_t = XdpMode::Native)]
    pub xdp_mode: XdpMode,
    /// Software interrupt coalescing on both veth ends, for every peer alike: NAPI polls
    /// that may find nothing before the device's notifications come back on
    /// (`/sys/class/net/IF/napi_defer_hard_irqs`). With `--gro-flush-timeout`: a busy veth is
    /// then polled from a timer instead of woken by every frame sent to it.
    #[arg(long, value_name = "N", requires = "gro_flush_timeout",
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub napi_defer_hard_irqs: Option<u32>,
    /// The timer of `--napi-defer-hard-irqs`, in nanoseconds
    /// (`/sys/class/net/IF/gro_flush_timeout`): the most a frame waits for its poll.
    #[arg(long, value_name = "NS", requires = "napi_defer_hard_irqs",
          value_parser = clap::value_parser!(u64).range(1_000..=10_000_000))]
    pub gro_flush_timeout: Option<u64>,
    /// The transmit queue of the veth ends, for every peer alike: `none` (the default) leaves
    /// veth's `noqueue`, as every earlier run; `edge` gives the edge end the queue a NIC has
    /// (`pfifo_fast`, 1,000 frames), `fifo` both ends. Without a queue, veth drops a frame
    /// sent while the receiving end's 256-frame ring is full: with 1 MiB responses up to a
    /// tenth of the edge's segments were sent again, and retransmission timeouts set the p99.
    /// With one, nothing is dropped, but the load generator's CPU per response rose by half
    /// and became the limit, so the throughput ratios are the client's (BENCHMARKS.md, run
    /// X). The report's `rtx/r` and `seg/r` show the edge's retransmitted and sent segments.
    #[arg(long, value_enum, default_value_t = VethQueue::None)]
    pub veth_queue: VethQueue,
    /// A fixed load: every phase's load generator sends N requests a second in all, whatever
    /// the peer serves, so that the peers' latency (p50/p99) and CPU per request compare at
    /// the same load (issue 15's tail target) instead of each at its own top rate. h2load
    /// spreads the rate over its connections (`--rps`, per connection); the HTTP/1.1 phases
    /// then run `h2load --h1 -m1` instead of wrk, with as many connections as `--in-flight`.
    /// Pick N under every peer's top rate (about two thirds of the slowest): a pass that
    /// serves under 95% of it is flagged, its latency then leaves out the time requests waited
    /// to be sent. Without `--phases`: every phase but the two that open a connection per
    /// request, which h2load cannot run (they are refused).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000_000),
          conflicts_with_all = ["instructions", "syn_flood", "only_scale"])]
    pub rate: Option<u32>,
    /// Benchmark force-https built with profile-guided optimization (`cargo xtask pgo`: an
    /// instrumented build, a short bench of it for training, then the optimized build; about
    /// 15 minutes on two cores) instead of the plain release build. `cargo xtask dist --pgo`
    /// packages the same build.
    #[arg(long, conflicts_with = "force_https_bin")]
    pub pgo: bool,
    /// Benchmark this force-https binary instead of building the release one (an installed
    /// package's `/usr/bin/force-https`, another commit's build; `cargo xtask pgo` trains its
    /// instrumented build this way). fh-backend is still built from the workspace.
    #[arg(long, value_name = "PATH")]
    pub force_https_bin: Option<PathBuf>,
    /// Also run this other force-https build as the peer `baseline` (added to `--peers` when
    /// missing), on sockets with force-https's config. With `--paired`, force-https ÷ baseline
    /// then compares the two builds slice by slice, seconds apart, which separate runs cannot
    /// do on a shared machine (BENCHMARKS.md run AB: one build's ratio to HAProxy was 1.17 in
    /// a run and 1.09 in the next). For example `--pgo --baseline-bin
    /// target/release/force-https` (build that one first: `cargo build --release`).
    #[arg(long, value_name = "PATH",
          conflicts_with_all = ["instructions", "syn_flood", "only_scale"])]
    pub baseline_bin: Option<PathBuf>,
}

/// `--veth-queue`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VethQueue {
    /// veth's own `noqueue`: frames that find the peer's ring full are dropped.
    #[default]
    None,
    /// `pfifo_fast` on the edge end only ([`Topology::queue`]).
    Edge,
    /// `pfifo_fast` on both ends.
    Fifo,
}

/// `--synack`: who answers port-80 SYNs for the fast-path peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SynAnswer {
    /// XDP, with a syncookie SYN-ACK (`answer_syn = true`).
    Xdp,
    /// The kernel (`answer_syn = false`).
    Kernel,
}

/// `--flood-cpu`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FloodCpu {
    #[default]
    /// CPU 0, with the edge.
    Edge,
    /// CPU 1, with the load generator.
    Client,
}

impl FloodCpu {
    /// The CPU's number.
    pub fn cpu(self) -> usize {
        match self {
            FloodCpu::Edge => EDGE_CPU,
            FloodCpu::Client => CLIENT_CPU,
        }
    }
}

/// `--xdp-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpMode {
    Native,
    Generic,
}

impl BenchArgs {
    /// `(napi_defer_hard_irqs, gro_flush_timeout ns)` when both are given.
    fn coalescing(&self) -> Option<(u32, u64)> {
        self.napi_defer_hard_irqs.zip(self.gro_flush_timeout)
    }

    /// The peers to run: `--peers` (without repeats), else the default set; `baseline` added
    /// last with `--baseline-bin` when not listed.
    fn peers(&self) -> Vec<PeerKind> {
        let mut v = if self.peers.is_empty() && self.instructions.is_some() {
            instructions::PEERS.to_vec()
        } else if self.peers.is_empty() {
            PeerKind::ALL.to_vec()
        } else {
            dedup(&self.peers)
        };
        if self.baseline_bin.is_some() && !v.contains(&PeerKind::Baseline) {
            v.push(PeerKind::Baseline);
        }
        v
    }

    /// Checked before anything is installed or built. Errors: the `baseline` peer without
    /// `--baseline-bin`; a `--baseline-bin` or `--force-https-bin` that is not a file.
    fn check_binaries(&self) -> Result<()> {
        if self.baseline_bin.is_none() && self.peers.contains(&PeerKind::Baseline) {
            bail!(
                "the peer `baseline` is another force-https build: name it with --baseline-bin PATH"
            );
        }
        for (flag, b) in [
            ("--force-https-bin", &self.force_https_bin),
            ("--baseline-bin", &self.baseline_bin),
        ] {
            if let Some(b) = b {
                ensure!(b.is_file(), "{flag} {}: no such file", b.display());
            }
        }
        Ok(())
    }

    /// The requests-in-flight values to run: the `--sweep` values (without repeats), else
    /// `--in-flight`.
    fn in_flights(&self) -> Vec<u32> {
        if self.sweep.is_empty() {
            vec![self.in_flight]
        } else {
            dedup(&self.sweep)
        }
    }

    pub(crate) fn phases(&self) -> Vec<Phase> {
        if self.phases.is_empty() && self.instructions.is_some() {
            instructions::PHASES.to_vec()
        } else if self.phases.is_empty() && self.rate.is_some() {
            Phase::ALL.into_iter().filter(|p| p.takes_rate()).collect()
        } else if self.phases.is_empty() {
            Phase::ALL.to_vec()
        } else {
            // Always in the canonical order.
            Phase::ALL
                .into_iter()
                .filter(|p| self.phases.contains(p))
                .collect()
        }
    }
}

/// `--rate`: refuses a phase that cannot run at a fixed rate, and a rate under h2load's
/// smallest per-connection rate (a thousandth of a request a second) at some point.
fn check_rate(rate: u32, phases: &[Phase], points: &[u32]) -> Result<()> {
    if let Some(p) = phases.iter().find(|p| !p.takes_rate()) {
        bail!(
            "--rate: phase {} opens a connection per request, which h2load (the fixed-rate load \
             generator) cannot do; leave it out of --phases",
            p.name()
        );
    }
    for &in_flight in points {
        for &phase in phases {
            let (connections, _) = phase.h2load_split(in_flight);
            if f64::from(rate) / f64::from(connections) < 0.001 {
                bail!(
                    "--rate {rate}: {} connections of phase {} at {in_flight} in flight would \
                     each send under 0.001 requests a second, h2load's smallest rate; raise \
                     --rate or lower --in-flight",
                    connections,
                    phase.name()
                );
            }
        }
    }
    Ok(())
}

fn dedup<T: PartialEq + Copy>(v: &[T]) -> Vec<T> {
    let mut out = Vec::new();
    for x in v {
        if !out.contains(x) {
            out.push(*x);
        }
    }
    out
}

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("xtask: bench: cannot remove {}: {e}", self.0.display());
        }
    }
}

/// What every peer's run shares.
struct Env {
    args: BenchArgs,
    phases: Vec<Phase>,
    bins: ReleaseBins,
    files: Files,
    tmp: PathBuf,
    out_dir: PathBuf,
    max_connections: u64,
    nofile: u64,
    /// The wrk no-resumption shim (`None` when it could not be built).
    no_resume: Option<PathBuf>,
}

/// The release binaries the bench runs.
struct ReleaseBins {
    force_https: PathBuf,
    fh_backend: PathBuf,
    /// `--baseline-bin`, the peer `baseline`'s daemon.
    baseline: Option<PathBuf>,
}

impl ReleaseBins {
    /// The daemon `kind` runs (force-https's for the peers that are not force-https: their
    /// counters are not read).
    fn force_https_of(&self, kind: PeerKind) -> &Path {
        match (kind, &self.baseline) {
            (PeerKind::Baseline, Some(b)) => b,
            _ => &self.force_https,
        }
    }
}

/// An existing file given on the command line (`flag`), made absolute (the daemon is started
/// in another directory and namespace).
fn given_binary(flag: &str, b: &Path) -> Result<PathBuf> {
    ensure!(b.is_file(), "{flag} {}: no such file", b.display());
    std::fs::canonicalize(b).with_context(|| format!("{flag} {}", b.display()))
}

pub fn run(args: BenchArgs) -> Result<()> {
    if !cmd::is_root() {
        bail!(
            "`cargo xtask bench` must run as root: it creates network namespaces, pins kernel \
             threads and installs packages"
        );
    }
    let start = Instant::now();
    let snap = cpu::read()?;
    if snap.cpus.len() <= CLIENT_CPU {
        bail!(
            "the bench needs at least 2 CPUs (edge on CPU {EDGE_CPU}, load on CPU {CLIENT_CPU}); /proc/stat shows {}",
            snap.cpus.len()
        );
    }
    args.check_binaries()?;
    install_signal_handlers();
    let nofile = raise_nofile()?;
    let max_connections = peers::max_connections(nofile);
    let peers = if args.only_scale {
        Vec::new()
    } else {
        args.peers()
    };
    let phases = args.phases();
    let points = args.in_flights();

    if args.instructions.is_some() {
        instructions::check_selection(&peers, &phases)?;
    }
    if let Some(rate) = args.rate {
        check_rate(rate, &phases, &points)?;
    }

    setup::run()?;
    check_interrupted()?;
    let mut packages: Vec<&str> = install::TOOLS.to_vec();
    packages.extend(peers.iter().filter_map(|p| p.package()));
    if args.instructions.is_some() {
        packages.push("valgrind");
    }
    install::ensure(&packages)?;
    check_interrupted()?;

    let target = cmd::target_dir()?;
    let pgo_bin = if args.pgo {
        Some(crate::pgo::run().context("the PGO build failed")?)
    } else {
        None
    };
    check_interrupted()?;
    let mut build = cmd::cargo_cmd();
    build.args(["build", "--release"]);
    if args.force_https_bin.is_none() && pgo_bin.is_none() {
        build.args(["-p", "force-https-userspace", "--bin", "force-https"]);
    }
    build.args(["-p", "force-https-tests", "--bin", "fh-backend"]);
    cmd::run(&mut build).context("building the release binaries failed")?;
    check_interrupted()?;
    let force_https = match (&args.force_https_bin, &pgo_bin) {
        (Some(b), _) => given_binary("--force-https-bin", b)?,
        (None, Some(b)) => b.clone(),
        (None, None) => target.join("release").join("force-https"),
    };
    let bins = ReleaseBins {
        force_https,
        fh_backend: target.join("release").join("fh-backend"),
        baseline: match &args.baseline_bin {
            Some(b) => Some(given_binary("--baseline-bin", b)?),
            None => None,
        },
    };

    // xtask itself (polling, counters) stays off the edge CPU from here on.
    topology::set_affinity(0, CLIENT_CPU).context("cannot pin xtask to the client CPU")?;

    let (date, stamp) = report::utc_now();
    let out_dir = target.join("bench").join(&stamp);
    for sub in ["configs", "raw", "logs"] {
        std::fs::create_dir_all(out_dir.join(sub))
            .with_context(|| format!("cannot create {}", out_dir.join(sub).display()))?;
    }
    let tmp = make_temp_dir()?;
    let files = make_certificate(&tmp.0)?;
    let no_resume = match load::build_no_resume_shim(&tmp.0) {
        Ok(so) => Some(so),
        Err(e) => {
            eprintln!("xtask: bench: warning: {e:#}; wrk will resume TLS sessions");
            None
        }
    };

    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let (cpu_model, cores) = report::parse_cpuinfo(&cpuinfo);
    let mut results = Results {
        meta: Meta {
            date_utc: date,
            command: shown_command(),
            cpu_model,
            cores,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            versions: versions(&peers, &bins),
            duration_s: args.duration,
            passes: args.paired.or(args.rounds).unwrap_or(args.passes) as usize,
            warmup_s: args.warmup,
            edge_cpu: EDGE_CPU,
            client_cpu: CLIENT_CPU,
            in_flight: points.first().copied().unwrap_or(args.in_flight),
            rounds: args.rounds,
            paired: args.paired,
            rate: args.rate,
            sweep: if points.len() > 1 {
                points.clone()
            } else {
                Vec::new()
            },
            method: {
                let mut notes = method_notes(nofile, max_connections, &points);
                if args.pgo {
                    notes.push(format!(
                        "force-https build: profile-guided optimization (`--pgo`, `cargo xtask pgo`): the release build instrumented, trained by one {}-second pass of each of {} (force-https alone), rebuilt with the merged profile: {}",
                        crate::pgo::TRAINING_SECONDS,
                        crate::pgo::TRAINING_PHASES.replace(',', ", "),
                        bins.force_https.display()
                    ));
                } else if args.force_https_bin.is_some() {
                    notes.push(format!(
                        "force-https build: {} (`--force-https-bin`), not the workspace's release build",
                        bins.force_https.display()
                    ));
                }
                if let Some(b) = &bins.baseline {
                    notes.push(format!(
                        "baseline: another force-https build, {} (`--baseline-bin`), on sockets with force-https's config; force-https ÷ baseline compares the two builds",
                        b.display()
                    ));
                }
                if let Some(n) = args.rounds {
                    notes.push(format!(
                        "Rounds: {n} interleaved rounds; in each, every peer is started afresh and runs every phase once (one pass after its warm-up, no extra passes), peer after peer, so that a slow stretch of the machine falls on every peer alike. Medians and spreads are over the rounds."
                    ));
                }
                if let Some(n) = args.paired {
                    notes.push(format!(
                        "Paired slices: every peer runs at once, each in its own pair of namespaces with its own backend (all on the edge CPU; only the one under load is busy). Each phase is {n} slices; in a slice every peer gets one pass of {} s (after the usual quiet check), back to back, the order turning by one peer each slice. A slice's ratio compares passes seconds apart. Medians and spreads are over the slices; the ratios come with a 95% confidence interval for their median (sign test: from the order statistics, whatever the distribution).",
                        args.duration
                    ));
                }
                if let Some((defer, timeout)) = args.coalescing() {
                    notes.push(format!(
                        "Interrupt coalescing (`--napi-defer-hard-irqs {defer} --gro-flush-timeout {timeout}`), on both veth ends for every peer: napi_defer_hard_irqs = {defer}, gro_flush_timeout = {timeout} ns. A veth that was busy is polled again from a timer after {:.0} µs instead of being woken by the next frame sent to it.",
                        timeout as f64 / 1000.0
                    ));
                }
                if let Some(rate) = args.rate {
                    notes.push(format!(
                        "Fixed rate (`--rate {rate}`): every phase's load generator sends {rate} requests a second in all, whatever the peer, so latency and CPU per request compare at the same load; h2load spreads it over its connections (`--rps`, per connection), and the HTTP/1.1 phases run `h2load --h1 -m1` with {} connections instead of wrk. Latency is h2load's per-request duration from its log, from the request's start: a pass under 95% of the rate is flagged, as its latency then leaves out the time requests waited to be sent. The rate ratios are then ~1 by design: compare CPU per request and p99.",
                        points.first().copied().unwrap_or(args.in_flight)
                    ));
                }
                notes.push(match args.veth_queue {
                    VethQueue::None => "Transmit queues (`--veth-queue none`, the default): veth's own `noqueue`, as in every earlier run: a frame sent while the receiving end's 256-frame ring is full is dropped and TCP sends it again (`rtx/r`); with large responses, retransmission timeouts then set the p99 (BENCHMARKS.md, run X).".into(),
                    VethQueue::Edge => format!(
                        "Transmit queues (`--veth-queue edge`): the edge end of every peer's veth gets `{}` (1,000 frames), the queue a NIC has; veth stops it while the receiving end's ring is full, so a burst waits instead of being dropped.",
                        topology::VETH_QDISC
                    ),
                    VethQueue::Fifo => format!(
                        "Transmit queues (`--veth-queue fifo`): both ends of every peer's veth get `{}` (1,000 frames), the queue a NIC has; veth stops it while the receiving end's ring is full, so a burst waits instead of being dropped.",
                        topology::VETH_QDISC
                    ),
                });
                notes
            },
            ..Meta::default()
        },
        ..Results::default()
    };
    if no_resume.is_none() {
        results.meta.warnings.push(
            "the wrk no-resumption shim could not be compiled (no C compiler?): the new-TLS-connection phase measured RESUMED sessions (wrk reuses the session on reconnect)".into(),
        );
    }

    let env = Env {
        args: args.clone(),
        phases: phases.clone(),
        bins,
        files,
        tmp: tmp.0.clone(),
        out_dir: out_dir.clone(),
        max_connections,
        nofile,
        no_resume,
    };
    let rounds = match env.args.paired {
        Some(slices) => {
            for &in_flight in &points {
                if points.len() > 1 {
                    println!("xtask: bench: ==== {in_flight} requests in flight ====");
                }
                bench_paired(
                    &env,
                    &peers,
                    in_flight,
                    &points,
                    slices,
                    &mut results,
                    start,
                )?;
            }
            0
        }
        None => env.args.rounds.unwrap_or(1),
    };
    for round in 1..=rounds {
        if rounds > 1 {
            println!("xtask: bench: ==== round {round} of {rounds} ====");
        }
        bench_round(
            &env,
            &peers,
            &points,
            &mut results,
            &out_dir,
            &phases,
            start,
        )?;
        if interrupted() {
            break;
        }
    }
    if rounds > 1 {
        // The spread warnings of the rounds' medians (each round's single pass has none).
        for r in &results.peers {
            let name = peer_name(r.peer, r.in_flight, points.len());
            for ph in &r.phases {
                if let Some(s) = ph.summary.as_ref().filter(|s| s.noisy) {
                    results.meta.warnings.push(format!(
                        "{} / {}: spread over {SPREAD_LIMIT_PCT:.0}% over {} rounds",
                        name,
                        ph.phase.name(),
                        s.passes
                    ));
                }
            }
        }
    }
    results.meta.interrupted = interrupted();

    if !interrupted() && args.scale_hosts > 0 && args.instructions.is_none() {
        let ctx = scale::ScaleCtx {
            force_https: &env.bins.force_https,
            scratch: &env.tmp,
            duration_s: args.duration,
            big: args.scale_hosts,
        };
        results.scale = scale::section(&ctx)?;
    }
    if args.micro && !interrupted() {
        results.micro = Some(run_micro(&out_dir)?);
    }
    results.meta.elapsed_s = start.elapsed().as_secs_f64();
    // Counted runs have no timed passes: the report shows their counts instead.
    let timed: &[Phase] = if args.instructions.is_some() {
        &[]
    } else {
        &phases
    };
    write_results(&out_dir, &results, timed)?;
    drop(tmp);

    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap_or_default();
    println!("\n{md}");
    println!(
        "xtask: bench: results in {} (results.json, report.md, configs/, raw/, logs/); {:.0} s",
        out_dir.display(),
        start.elapsed().as_secs_f64()
    );
    check_interrupted()
}

/// A peer's name in messages: with `--sweep`, it carries the requests in flight.
fn peer_name(kind: PeerKind, in_flight: u32, points: usize) -> String {
    if points > 1 {
        format!("{} @{in_flight}", kind.name())
    } else {
        kind.name().to_string()
    }
}

/// One round: every peer at every requests-in-flight value, its results merged into
/// `results` and written out after each peer.
fn bench_round(
    env: &Env,
    peers: &[PeerKind],
    points: &[u32],
    results: &mut Results,
    out_dir: &Path,
    phases: &[Phase],
    start: Instant,
) -> Result<()> {
    for &in_flight in points {
        for &kind in peers {
            if interrupted() {
                return Ok(());
            }
            // With --sweep, the peer's name in messages carries the requests in flight.
            let name = peer_name(kind, in_flight, points.len());
            println!("xtask: bench: ==== {name} ====");
            let r = bench_peer(kind, env, in_flight);
            if let Some(e) = &r.error {
                eprintln!("xtask: bench: {name} failed: {e}");
                results
                    .meta
                    .warnings
                    .push(format!("{} failed: {}", name, first_line(e)));
            }
            if let Some(f) = &r.syn_flood {
                if let Some(e) = &f.error {
                    results.meta.warnings.push(format!(
                        "{} / syn-flood failed: {}",
                        name,
                        first_line(e)
                    ));
                } else if !f.met || f.syn_recv_seen {
                    results.meta.warnings.push(format!(
                        "{} / syn-flood: the flooded redirect rate held {:.1}% of the unflooded one (target ≥ {:.0}%){}",
                        name,
                        f.median_ratio * 100.0,
                        flood::TARGET_RATIO * 100.0,
                        if f.syn_recv_seen {
                            "; SYN-RECV sockets appeared on the edge"
                        } else {
                            ""
                        }
                    ));
                }
            }
            for ph in &r.phases {
                results
                    .meta
                    .warnings
                    .extend(ph.rate_shortfall(env.args.rate, &name));
                if let Some(s) = &ph.summary {
                    if s.not_quiet {
                        results.meta.warnings.push(format!(
                            "{} / {}: the machine was not quiet (< {:.0}% per CPU) before some pass",
                            name,
                            ph.phase.name(),
                            QUIET_LIMIT * 100.0
                        ));
                    }
                    if s.noisy {
                        results.meta.warnings.push(format!(
                            "{} / {}: spread over {SPREAD_LIMIT_PCT:.0}% after {} passes",
                            name,
                            ph.phase.name(),
                            s.passes
                        ));
                    }
                }
            }
            merge_round(&mut results.peers, r);
            results.meta.elapsed_s = start.elapsed().as_secs_f64();
            write_results(out_dir, results, phases)?;
        }
    }
    Ok(())
}

/// Adds a round's `r` to the results: a peer and requests-in-flight value seen in an
/// earlier round gets this round's passes appended to its phases (medians and spreads then
/// cover every round); a new one is added as it is.
fn merge_round(peers: &mut Vec<PeerResult>, r: PeerResult) {
    let Some(old) = peers
        .iter_mut()
        .find(|p| p.peer == r.peer && p.in_flight == r.in_flight)
    else {
        peers.push(r);
        return;
    };
    old.ok &= r.ok;
    if old.error.is_none() {
        old.error = r.error;
    }
    for n in r.notes {
        if !old.notes.contains(&n) {
            old.notes.push(n);
        }
    }
    for ph in r.phases {
        match old.phases.iter_mut().find(|p| p.phase == ph.phase) {
            Some(o) => {
                o.passes.extend(ph.passes);
                o.discarded.extend(ph.discarded);
                if o.error.is_none() {
                    o.error = ph.error;
                }
                o.summary = report::summarize(&o.passes, SPREAD_LIMIT_PCT);
                if let Some(s) = o.summary.as_mut() {
                    s.discarded = o.discarded.len();
                }
            }
            None => old.phases.push(ph),
        }
    }
}

/// Sets RLIMIT_NOFILE to `NOFILE`, or when the hard limit cannot be raised (no
/// CAP_SYS_RESOURCE, as in some containers) the soft limit to the hard one. Returns the limit.
fn raise_nofile() -> Result<u64> {
    let set = |n: libc::rlim_t| {
        let lim = libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        };
        // SAFETY: a valid rlimit struct for the duration of the call.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
    };
    if set(NOFILE as libc::rlim_t) {
        return Ok(NOFILE);
    }
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into our struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if !set(cur.rlim_max) {
        bail!(
            "cannot set RLIMIT_NOFILE to {}: {}",
            cur.rlim_max,
            std::io::Error::last_os_error()
        );
    }
    Ok(cur.rlim_max)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn write_results(out_dir: &Path, results: &Results, phases: &[Phase]) -> Result<()> {
    let json = serde_json::to_string_pretty(results).context("cannot serialize the results")?;
    std::fs::write(out_dir.join("results.json"), json).context("cannot write results.json")?;
    std::fs::write(out_dir.join("report.md"), report::markdown(results, phases))
        .context("cannot write report.md")?;
    Ok(())
}

/// `cargo xtask ARGS` as typed.
fn shown_command() -> String {
    let mut c = Command::new("cargo");
    c.arg("xtask").args(std::env::args_os().skip(1));
    cmd::show(&c)
}

fn make_temp_dir() -> Result<TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("fhb-{}-{nanos:x}", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let guard = TempDir(dir);
    std::fs::set_permissions(&guard.0, std::fs::Permissions::from_mode(0o755))?;
    Ok(guard)
}

/// One throw-away self-signed ECDSA P-256 certificate for bench.example (and a wildcard),
/// used by every peer.
fn make_certificate(dir: &Path) -> Result<Files> {
    let files = Files {
        cert: dir.join("bench-cert.pem"),
        key: dir.join("bench-key.pem"),
        combined: dir.join("bench-combined.pem"),
    };
    let wildcard = format!("*.{HOST}");
    let mut c = cmd::self_signed_cert(&files.cert, &files.key, &[HOST, &wildcard]);
    cmd::stdout_of(&mut c).context("cannot make the bench certificate")?;
    let mut combined = std::fs::read(&files.cert)?;
    combined.extend(std::fs::read(&files.key)?);
    std::fs::write(&files.combined, combined)?;
    Ok(files)
}

/// The version line of every tool in the comparison.
fn versions(peers: &[PeerKind], bins: &ReleaseBins) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let mut seen_fh = false;
    for p in peers {
        if *p == PeerKind::Baseline {
            v.push((p.name().to_string(), p.version(bins.force_https_of(*p))));
        } else if p.is_force_https() {
            if seen_fh {
                continue;
            }
            seen_fh = true;
            v.push(("force-https".to_string(), p.version(&bins.force_https)));
        } else {
            v.push((p.name().to_string(), p.version(&bins.force_https)));
        }
    }
    for (tool, args) in [
        ("wrk", vec!["-v"]),
        ("h2load", vec!["--version"]),
        ("openssl", vec!["version"]),
        ("curl", vec!["--version"]),
    ] {
        v.push((
            tool.into(),
            peers::first_line(Command::new(tool).args(args)),
        ));
    }
    v
}

/// How everything is measured, for the report.
fn method_notes(nofile: u64, max_connections: u64, points: &[u32]) -> Vec<String> {
    let mut notes = method_notes_at(
        nofile,
        max_connections,
        points.first().copied().unwrap_or(IN_FLIGHT),
    );
    if points.len() > 1 {
        let at: Vec<String> = points
            .iter()
            .map(|&n| {
                let (c, m) = load::h2_split(n);
                format!(
                    "{n} (wrk -c{n}; h2load -c{c} -m{m}; backend pools of {})",
                    peers::backend_pool(n)
                )
            })
            .collect();
        notes.push(format!(
            "Concurrency sweep (`--sweep`): every phase at each of these requests in flight, every peer started afresh for each value: {}. The load line above is the first value's.",
            at.join(", ")
        ));
    }
    notes
}

fn method_notes_at(nofile: u64, max_connections: u64, in_flight: u32) -> Vec<String> {
    vec![
        format!(
            "Topology: namespaces fhb-<pid>-edge and fhb-<pid>-cli joined by a veth pair (198.51.100.1 / .2), created fresh for every peer and deleted after it; the fixed-response fh-backend ({} bytes of body) on {} in the edge namespace.",
            peers::FIXED_BODY_BYTES,
            peers::BACKEND
        ),
        format!(
            "Pinning: peer (all its processes and threads) and backend with `taskset -c {EDGE_CPU}`; wrk / h2load `-t1` with `taskset -c {CLIENT_CPU}`; xtask itself on CPU {CLIENT_CPU}. Single worker: nginx worker_processes 1, HAProxy nbthread 1, Caddy GOMAXPROCS=1, force-https's tokio runtime sized by the affinity (one scheduler thread; the thread counts are listed per peer)."
        ),
        format!(
            "Kernel work on the right CPU: veth delivers into the receiving end's NAPI, which by default runs as softirq on the *sending* CPU. Both veth ends get GRO on (which gives veth a NAPI instance; attaching XDP does too) and TSO off (veth uses its NAPI for a TCP frame only when the sending end has no TSO or the receiving end runs XDP; with GRO alone, NET_RX softirqs for the edge's traffic ran on the client CPU and the other way round, seen in /proc/softirqs), and threaded NAPI (`echo 1 > /sys/class/net/IF/threaded` inside the namespace); the edge end's `napi/<if>-<id>` kthread is pinned to CPU {EDGE_CPU} (it runs XDP and the edge's TCP/IP receive path), the client end's to CPU {CLIENT_CPU}. The per-peer section lists the kthreads; the user/system/softirq table shows where the edge CPU's time went."
        ),
        "CPU per request: busy time (user+nice+system+irq+softirq+steal, i.e. all but idle and iowait) from /proc/stat over the window from starting to the exit of the load generator, divided by the requests it completed. Edge = cpu0 line; whole machine = the aggregate cpu line (both CPUs: includes the load generator).".into(),
        format!(
            "Quiet machine: before each pass both CPUs must be under {:.0}% busy over a 1 s sample; otherwise wait (up to {} s), then go on and flag it.",
            QUIET_LIMIT * 100.0,
            QUIET_WAIT.as_secs()
        ),
        format!(
            "Passes: medians over the passes; a phase whose requests/s or edge CPU per request spreads over {SPREAD_LIMIT_PCT:.0}% gets up to {EXTRA_PASSES} more passes."
        ),
        format!(
            "Disturbed passes: around each pass the CPU time of every user-space process the bench did not start is read from /proc/PID/stat, and the processes created from /proc/stat; a pass during which they used over {:.0}% of a CPU or over {MAX_FORKS} processes were created is thrown away and re-run (up to {MAX_DISCARDED} times per phase; results.json keeps them under `discarded`).",
            FOREIGN_LIMIT * 100.0
        ),
        format!(
            "Load: {in_flight} requests in flight in every phase (wrk -c{in_flight}; h2load -c{} -m{}), and every peer's backend pool keeps {} idle keep-alive connections, so no peer churns backend connections.",
            load::h2_split(in_flight).0,
            load::h2_split(in_flight).1,
            peers::backend_pool(in_flight),
        ),
        format!(
            "Open files: RLIMIT_NOFILE {nofile} for every process (the hard limit here, when {NOFILE} could not be set); client connection limit {max_connections} for every peer (force-https max_connections, nginx worker_connections, HAProxy maxconn; Caddy has none)."
        ),
        "Client namespace: net.ipv4.ip_local_port_range = 1024 65535, net.ipv4.tcp_tw_reuse = 1; no busy polling anywhere (the AF_XDP responder sleeps in poll() when idle).".into(),
        "Redirect phases: the response is checked to be `301` with `Location: https://bench.example/…` with curl before the runs; during runs wrk's non-2xx/3xx count, the bytes read per response, and for force-https its own counters (redirects sent) are recorded.".into(),
        "Keep-alive redirects: force-https (socket and XDP path) sends `Connection: close` with every redirect, so its keep-alive phase opens a new connection per request too; `c/r` in \"What actually happened\" shows what each peer did.".into(),
        "New TLS connection per request, with full handshakes: wrk 4.1 reuses one SSL object per connection slot (SSL_shutdown + SSL_clear) and SSL_clear keeps the session, so by default every reconnect resumes (checked against nginx's $ssl_session_reused: 3439 of 3441 reconnects resumed over TLS 1.3). The bench compiles a 15-line LD_PRELOAD shim (`wrk-no-resume.so`, source in xtask/src/bench/load.rs) that drops the session after SSL_clear: with it none resumed. So every connection of that phase is a full TLS 1.3 handshake (ECDHE X25519 + ECDSA P-256 signature), the group and cipher listed per peer.".into(),
        "veth caveat for the XDP peer: with an XDP program attached, veth runs it on an xdp_buff made from each received skb, and copies the skb when it is cloned or lacks XDP headroom (veth_convert_skb_to_xdp_buff), which is the case for TCP segments from a local socket; it also turns TSO off on the other end. So on this machine every packet to the edge pays that, on port 443 too. A NIC's driver-mode XDP runs on the receive buffer itself.".into(),
        format!(
            "Issue 15's phases: `http-proxied-keepalive` is port 80 over keep-alive for {PLAIN_HOST}, a host every peer serves WITHOUT enforcing HTTPS, proxied over plain HTTP to the same backend pool (checked before the runs: 200 from the backend, no Location, no HSTS); force-https counts it as `proxied_http`. `https-h1-1mib` / `https-h2-1mib` fetch {BIG_PATH}, where the backend answers {BIG_BODY_BYTES} bytes (`fh-backend --big-path {BIG_PATH} --big-bytes {BIG_BODY_BYTES}`; every other path keeps the small body); the throughput table gives MiB/s = bytes the client read / the load generator's time."
        ),
        "Latency: wrk --latency (p50/p99, request write to response end; handshakes excluded); h2 from h2load's --log-file per-request durations (h2load itself prints only min/max/mean/sd).".into(),
    ]
}

/// Runs one peer through all phases; never fails: errors are recorded in the result. The XDP
/// peer falls back from native to generic mode when native does not start.
fn bench_peer(kind: PeerKind, env: &Env, in_flight: u32) -> PeerResult {
    let mut r = PeerResult::new(kind);
    r.in_flight = in_flight;
    let res = start_peer(kind, env, in_flight, 0, &mut r).and_then(|mut live| {
        let res = measure_peer(&mut live, env, in_flight, &mut r);
        live.finish(&env.out_dir, res.is_err());
        res
    });
    match res {
        Ok(()) => r.ok = true,
        Err(e) => r.error = Some(format!("{e:#}")),
    }
    r
}

/// A peer up and checked in its own topology, with its backend: what its passes need.
struct LivePeer {
    kind: PeerKind,
    /// Declared before `topo`, so dropped (processes stopped) before the namespaces go.
    procs: Procs,
    topo: Topology,
    /// Its scratch directory.
    dir: PathBuf,
    /// Its configuration file.
    config: PathBuf,
    pid: u32,
}

impl LivePeer {
    /// Stops the peer and its backend (after printing their output when `failed`), keeps
    /// their logs in the report's `logs/`, and deletes the namespaces.
    fn finish(mut self, out_dir: &Path, failed: bool) {
        if failed {
            let logs = self.procs.logs(40);
            eprintln!(
                "xtask: bench: output of {}'s processes:\n{logs}",
                self.kind.name()
            );
        }
        self.procs.stop_all();
        copy_logs(&self.dir, out_dir, self.kind);
    }
}

/// What a pass of `live` runs with. A free function over the fields it reads, so that a
/// caller can hold it and `live.procs` mutably at once.
fn peer_run<'a>(
    kind: PeerKind,
    env: &'a Env,
    topo: &'a Topology,
    dir: &'a Path,
    config: &'a Path,
    in_flight: u32,
) -> PeerRun<'a> {
    PeerRun {
        kind,
        args: &env.args,
        topo,
        force_https: env.bins.force_https_of(kind),
        fh_config: kind.is_force_https().then_some(config),
        load_gen: LoadGen {
            client_ns: &topo.client,
            scratch: dir,
            no_resume: env.no_resume.as_deref(),
            in_flight,
            rate: env.args.rate,
        },
        out_dir: &env.out_dir,
    }
}

/// Starts `kind` in topology `nth` ([`Topology::create_nth`]); `r` gets its notes and what
/// was checked. The XDP peer tries its `--xdp-mode` and falls back from native to generic
/// when native does not start.
fn start_peer(
    kind: PeerKind,
    env: &Env,
    in_flight: u32,
    nth: usize,
    r: &mut PeerResult,
) -> Result<LivePeer> {
    let modes: &[&str] = if kind == PeerKind::ForceHttpsXdp {
        match env.args.xdp_mode {
            XdpMode::Native => &["native", "generic"],
            XdpMode::Generic => &["generic"],
        }
    } else {
        &["-"]
    };
    let mut notes = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        *r = PeerResult::new(kind);
        r.in_flight = in_flight;
        r.notes = notes.clone();
        match start_peer_in(kind, mode, env, in_flight, nth, r) {
            Ok(live) => return Ok(live),
            Err(e) if i + 1 < modes.len() && !interrupted() => {
                let msg = format!("{e:#}");
                eprintln!(
                    "xtask: bench: {} did not start in XDP {mode} mode: {msg}; trying {}",
                    kind.name(),
                    modes[i + 1]
                );
                notes.push(format!(
                    "XDP {mode} mode did not work ({}); fell back to {} mode",
                    first_line(&msg),
                    modes[i + 1]
                ));
            }
            Err(e) => return Err(e),
        }
    }
    bail!("{}: no XDP mode left to try", kind.name())
}

/// Topology, backend, peer and checks, in one XDP mode (`-` for the other peers).
fn start_peer_in(
    kind: PeerKind,
    xdp_mode: &str,
    env: &Env,
    in_flight: u32,
    nth: usize,
    r: &mut PeerResult,
) -> Result<LivePeer> {
    let Env {
        args,
        bins,
        files,
        tmp,
        out_dir,
        max_connections,
        nofile,
        ..
    } = env;
    let (tmp, out_dir) = (tmp.as_path(), out_dir.as_path());
    let dir = tmp.join(kind.name());
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let topo = Topology::create_nth(&[HOST, PLAIN_HOST], nth)?;
    if let Some((defer, timeout)) = args.coalescing() {
        topo.coalesce(defer, timeout)?;
    }
    if args.veth_queue != VethQueue::None {
        topo.queue(args.veth_queue == VethQueue::Fifo)?;
    }
    let mut live = LivePeer {
        kind,
        procs: Procs::default(),
        topo,
        config: dir.join("unwritten"),
        dir,
        pid: 0,
    };
    let result = (|| -> Result<()> {
        let LivePeer {
            procs,
            topo,
            dir,
            config,
            pid,
            ..
        } = &mut live;
        let mut backend = netns::exec(&topo.edge, "taskset");
        backend
            .args(["-c", &EDGE_CPU.to_string()])
            .arg(&bins.fh_backend)
            .args(["--listen", peers::BACKEND, "--name", "bench"])
            .args(["--big-path", BIG_PATH, "--big-bytes"])
            .arg(BIG_BODY_BYTES.to_string());
        match &args.page {
            Some(page) => backend.arg("--fixed-file").arg(page),
            None => backend
                .arg("--fixed-bytes")
                .arg(peers::FIXED_BODY_BYTES.to_string()),
        };
        procs.spawn("fh-backend", backend, dir)?;
        let edge = topo.edge.clone();
        wait_until(procs, "the backend answers", || {
            netns::exec(&edge, "curl")
                .args(["-s", "-o", "/dev/null", "--max-time", "1"])
                .arg(format!("http://{}/", peers::BACKEND))
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })?;

        let ctx = PeerCtx {
            files,
            force_https: bins.force_https_of(kind),
            dir,
            edge_ns: &topo.edge,
            edge_if: &topo.edge_if,
            xdp_mode,
            max_connections: *max_connections,
            nofile: *nofile,
            access_log: args.access_log,
            https_rewrites: args.https_rewrites,
            backend_pool: peers::backend_pool(in_flight),
            answer_syn: args.synack == SynAnswer::Xdp,
            callgrind: args.instructions.is_some(),
        };
        peers::prepare_dirs(kind, dir)?;
        let (name, text) = peers::config(kind, &ctx);
        *config = dir.join(&name);
        r.config_file = name.clone();
        std::fs::write(&*config, &text)?;
        std::fs::write(
            out_dir
                .join("configs")
                .join(format!("{}-{name}", kind.name())),
            &text,
        )?;
        peers::check_config(kind, &ctx, config)?;
        *pid = procs.spawn(kind.name(), peers::command(kind, &ctx, config), dir)?;
        let client = topo.client.clone();
        wait_until(
            procs,
            &format!("{} redirects on port 80", kind.name()),
            || {
                peers::curl(&client, &[&format!("http://{HOST}/")])
                    .map(|s| s.status == 301)
                    .unwrap_or(false)
            },
        )?;
        // The XDP program attaches before the port-80 listener answers; pin whatever NAPI
        // threads exist now.
        r.napi = topo.pin_napi()?;
        if kind == PeerKind::ForceHttpsXdp {
            let link = topo.edge_link();
            let mode = if link.contains("xdpgeneric") {
                "generic (xdpgeneric)"
            } else if link.contains("prog/xdp") {
                "native (driver)"
            } else {
                bail!("no XDP program on {} after start:\n{link}", topo.edge_if);
            };
            r.xdp_mode = Some(mode.to_string());
        }
        let body_len = match &args.page {
            Some(p) => std::fs::metadata(p)
                .with_context(|| format!("--page {}", p.display()))?
                .len() as usize,
            None => peers::FIXED_BODY_BYTES,
        };
        r.checked = Some(peers::verify(&topo.client, &files.cert, body_len)?);
        r.process = Some(procs::tree_facts(*pid));
        println!(
            "xtask: bench: {} is up and checked; process tree {:?}",
            kind.name(),
            r.process
        );
        Ok(())
    })();
    match result {
        Ok(()) => Ok(live),
        Err(e) => {
            live.finish(out_dir, true);
            Err(e)
        }
    }
}

/// Every phase (or the instruction counts) of a started peer.
fn measure_peer(live: &mut LivePeer, env: &Env, in_flight: u32, r: &mut PeerResult) -> Result<()> {
    let LivePeer {
        kind,
        procs,
        topo,
        dir,
        config,
        pid,
    } = live;
    let (kind, args, phases) = (*kind, &env.args, &env.phases);
    let run = peer_run(kind, env, topo, dir, config, in_flight);
    if let Some(n) = args.instructions {
        r.instructions = instructions::measure(
            &topo.client,
            *pid,
            dir,
            phases,
            n,
            &env.out_dir.join("raw"),
            kind.name(),
        );
        for c in &r.instructions {
            if let (Some(e), Some(p)) = (&c.error, c.phase) {
                eprintln!("xtask: bench: {} / {}: {e}", kind.name(), p.name());
            }
        }
        add_observations(kind, r);
        return Ok(());
    }
    for &phase in phases {
        check_interrupted()?;
        let pr = run_phase(&run, procs, phase);
        if let Some(e) = &pr.error {
            eprintln!("xtask: bench: {} / {}: {e}", kind.name(), phase.name());
        }
        let failed = pr.error.is_some();
        r.phases.push(pr);
        if failed {
            // A dead peer ends the peer; a failed phase does not.
            procs.check_alive()?;
            check_interrupted()?;
        }
    }
    if args.syn_flood && kind == PeerKind::ForceHttpsXdp {
        check_interrupted()?;
        println!("xtask: bench: {} / syn-flood", kind.name());
        let f = flood::measure(&run);
        if let Some(e) = &f.error {
            eprintln!("xtask: bench: {} / syn-flood: {e}", kind.name());
        }
        r.syn_flood = Some(f);
    }
    add_observations(kind, r);
    Ok(())
}

/// Notes about what the numbers mean for this peer.
fn add_observations(kind: PeerKind, r: &mut PeerResult) {
    if let Some(c) = r
        .phase(Phase::RedirectKeepalive)
        .and_then(|p| p.summary.as_ref())
        .and_then(|s| s.conns_per_req)
    {
        let note = if c > 0.9 {
            format!(
                "redirect-keepalive: {c:.2} new connections per request: {} closes the connection after each redirect, so this phase measured new connections too",
                kind.name()
            )
        } else {
            format!(
                "redirect-keepalive: {c:.3} new connections per request: connections were kept alive"
            )
        };
        r.notes.push(note);
    }
    // force-https's own trouble counters, summed over the passes of each phase.
    for ph in &r.phases {
        let mut sums: BTreeMap<&str, u64> = BTreeMap::new();
        for pass in &ph.passes {
            for (k, v) in &pass.server_counters {
                if is_trouble_counter(k) {
                    *sums.entry(k.as_str()).or_default() += v;
                }
            }
        }
        if !sums.is_empty() {
            let answered: u64 = ph.passes.iter().filter_map(|p| p.server_counted).sum();
            let list: Vec<String> = sums.iter().map(|(k, v)| format!("{k} {v}")).collect();
            r.notes.push(format!(
                "{}: force-https counted {} during the passes (of {answered} requests it answered){}",
                ph.phase.name(),
                list.join(", "),
                if sums.contains_key("afxdp_tx_ring_full") {
                    "; batches of answers that waited for room in the TX ring (kept, sent later)"
                } else {
                    ""
                }
            ));
        }
    }
    if kind == PeerKind::ForceHttpsXdp {
        for p in [Phase::RedirectNewConn, Phase::RedirectKeepalive] {
            if let Some(s) = r.phase(p).and_then(|ph| ph.summary.as_ref())
                && let Some(f) = s.fast_path_share
            {
                r.notes.push(format!(
                    "{}: {:.1}% of the redirects were answered by the AF_XDP fast path; edge kernel sockets per request {:.3}",
                    p.name(),
                    f * 100.0,
                    s.kernel_sockets_per_req.unwrap_or(f64::NAN)
                ));
            }
        }
    }
}

/// Counters of `force-https stats` that mean something went wrong or was refused
/// (`xdp_bare_ack_drop` is the fast path working as designed).
fn is_trouble_counter(name: &str) -> bool {
    name != "xdp_bare_ack_drop"
        && ([
            "drop", "full", "fallback", "fail", "rejected", "timeout", "no_xsk",
        ]
        .iter()
        .any(|w| name.contains(w))
            || name.starts_with("responses_"))
}

fn copy_logs(dir: &Path, out_dir: &Path, kind: PeerKind) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log") {
            let dest = out_dir.join("logs").join(format!(
                "{}-{}",
                kind.name(),
                p.file_name().unwrap_or_default().to_string_lossy()
            ));
            let _ = std::fs::copy(&p, dest);
        }
    }
}

/// Polls `ready` every 100 ms up to `START_TIMEOUT`; fails early when a process exits or on a
/// signal.
fn wait_until(procs: &mut Procs, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    loop {
        check_interrupted()?;
        procs.check_alive()?;
        if ready() {
            return Ok(());
        }
        if start.elapsed() > START_TIMEOUT {
            bail!(
                "timed out after {} s waiting until {what}",
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Counters read around a pass.
#[derive(Default)]
struct Counters {
    client_active_opens: Option<u64>,
    edge_passive_opens: Option<u64>,
    /// TCP segments the edge namespace sent again (`Tcp: RetransSegs`): losses on the veth,
    /// or between the peer and its backend.
    edge_retrans_segs: Option<u64>,
    /// TCP segments the edge namespace sent (`Tcp: OutSegs`), retransmissions excluded.
    edge_out_segs: Option<u64>,
    fh: Option<serde_json::Value>,
}

fn read_counters(topo: &Topology, force_https: &Path, fh_config: Option<&Path>) -> Counters {
    let snmp = |ns: &str| topology::in_ns(ns, &["cat", "/proc/net/snmp"]).ok();
    let tcp = |text: &Option<String>, field: &str| {
        text.as_deref().and_then(|t| snmp_value(t, "Tcp", field))
    };
    let (client, edge) = (snmp(&topo.client), snmp(&topo.edge));
    let fh = fh_config.and_then(|cfg| {
        let out = Command::new(force_https)
            .args(["stats", "--json", "--config"])
            .arg(cfg)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    });
    Counters {
        client_active_opens: tcp(&client, "ActiveOpens"),
        edge_passive_opens: tcp(&edge, "PassiveOpens"),
        edge_retrans_segs: tcp(&edge, "RetransSegs"),
        edge_out_segs: tcp(&edge, "OutSegs"),
        fh,
    }
}

/// The value of `field` in the `prefix:` table of /proc/net/snmp (a header line of names, then
/// a line of values).
pub fn snmp_value(text: &str, prefix: &str, field: &str) -> Option<u64> {
    let tag = format!("{prefix}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&tag));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// The counters of `force-https stats --json` that changed between two reads.
fn counter_deltas(
    a: &Option<serde_json::Value>,
    b: &Option<serde_json::Value>,
) -> BTreeMap<String, u64> {
    let (Some(serde_json::Value::Object(a)), Some(serde_json::Value::Object(b))) = (a, b) else {
        return BTreeMap::new();
    };
    b.iter()
        .filter_map(|(k, v)| {
            let d = v.as_u64()?.saturating_sub(a.get(k)?.as_u64()?);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

fn fh_counter(v: &Option<serde_json::Value>, name: &str) -> Option<u64> {
    v.as_ref()?.get(name)?.as_u64()
}

fn delta(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(b?.saturating_sub(a?))
}

/// What the phases of one peer share.
struct PeerRun<'a> {
    kind: PeerKind,
    args: &'a BenchArgs,
    topo: &'a Topology,
    force_https: &'a Path,
    /// The config of a force-https peer, for `force-https stats`.
    fh_config: Option<&'a Path>,
    load_gen: LoadGen<'a>,
    out_dir: &'a Path,
}

/// Warm-up, then passes until enough and calm enough.
fn run_phase(run: &PeerRun, procs: &mut Procs, phase: Phase) -> PhaseResult {
    let PeerRun {
        kind,
        args,
        topo,
        load_gen,
        ..
    } = run;
    let mut pr = PhaseResult {
        phase,
        command: load_gen.shown_command(phase, args.duration),
        passes: Vec::new(),
        discarded: Vec::new(),
        summary: None,
        error: None,
    };
    let res = (|| -> Result<()> {
        if args.warmup > 0 {
            println!(
                "xtask: bench: {} / {}: warm-up {} s",
                kind.name(),
                phase.name(),
                args.warmup
            );
            load_gen.warm_up(phase, args.warmup)?;
        }
        // With --rounds, one pass per round: the rounds are the passes.
        let (min, max) = match args.rounds {
            Some(_) => (1, 1),
            None => (args.passes as usize, args.passes as usize + EXTRA_PASSES),
        };
        loop {
            check_interrupted()?;
            let enough = pr.passes.len() >= min
                && !summary::needs_more_passes(
                    &report::key_spreads(&pr.passes),
                    pr.passes.len(),
                    max,
                    SPREAD_LIMIT_PCT,
                );
            if enough {
                break;
            }
            // The CPU pinning must hold for every pass (a restart of a napi thread would
            // lose it).
            topo.pin_napi()?;
            let n = pr.passes.len() + pr.discarded.len() + 1;
            let pass = one_pass(run, phase, n, false)?.0.pass;
            print_pass(*kind, phase, n, &pass);
            procs.check_alive()?;
            if pass.disturbed && pr.discarded.len() < MAX_DISCARDED {
                pr.discarded.push(pass);
                continue;
            }
            pr.passes.push(pass);
        }
        Ok(())
    })();
    pr.summary = report::summarize(&pr.passes, SPREAD_LIMIT_PCT);
    if let Some(s) = pr.summary.as_mut() {
        s.discarded = pr.discarded.len();
    }
    if let Err(e) = res {
        pr.error = Some(format!("{e:#}"));
    }
    pr
}

/// The progress line of pass `n`, and a warning when it was disturbed.
fn print_pass(kind: PeerKind, phase: Phase, n: usize, pass: &Pass) {
    println!(
        "xtask: bench: {} / {} pass {n}: {:.0} req/s, edge {:.1} µs/req ({:.0}% busy), machine {:.1} µs/req, p50 {:?} µs, p99 {:?} µs, errors {} bad {}",
        kind.name(),
        phase.name(),
        pass.load.rps,
        pass.edge_us_per_req,
        pass.edge.utilization * 100.0,
        pass.machine_us_per_req,
        pass.load.p50_us,
        pass.load.p99_us,
        pass.load.errors,
        pass.load.bad_status
    );
    if pass.disturbed {
        eprintln!(
            "xtask: bench: {} / {} pass {n} disturbed: {:.2} CPU s used by other processes ({}), {} processes created",
            kind.name(),
            phase.name(),
            pass.foreign_cpu_s,
            pass.foreign_top.join(", "),
            pass.forks
        );
    }
}

/// `--paired`: starts every peer at once (each in its own topology), then runs each phase as
/// `slices` slices, every peer one pass per slice, the order turning each slice. A peer that
/// fails to start, or fails a pass, is reported and left out of the rest (of the run, or of
/// that phase); the others go on. Disturbed passes are kept and counted in the warnings, not
/// re-run: a re-run would break the pairing of the slice.
fn bench_paired(
    env: &Env,
    peers: &[PeerKind],
    in_flight: u32,
    points: &[u32],
    slices: u64,
    results: &mut Results,
    start: Instant,
) -> Result<()> {
    let (args, out_dir) = (&env.args, env.out_dir.as_path());
    // The results of the sweep's earlier values (`--sweep`), kept ahead of this value's.
    let earlier = std::mem::take(&mut results.peers);
    let name = |kind: PeerKind| peer_name(kind, in_flight, points.len());
    let mut live: Vec<(LivePeer, PeerResult)> = Vec::new();
    let mut failed: Vec<PeerResult> = Vec::new();
    for (nth, &kind) in peers.iter().enumerate() {
        if interrupted() {
            break;
        }
        println!("xtask: bench: ==== {} (starting) ====", name(kind));
        let mut r = PeerResult::new(kind);
        r.in_flight = in_flight;
        match start_peer(kind, env, in_flight, nth, &mut r) {
            Ok(l) => live.push((l, r)),
            Err(e) => {
                let msg = format!("{e:#}");
                eprintln!("xtask: bench: {} failed: {msg}", name(kind));
                results
                    .meta
                    .warnings
                    .push(format!("{} failed: {}", name(kind), first_line(&msg)));
                r.error = Some(msg);
                failed.push(r);
            }
        }
    }
    let outcome = (|| -> Result<()> {
        for &phase in &env.phases {
            check_interrupted()?;
            println!(
                "xtask: bench: ==== {} ({slices} paired slices) ====",
                phase.name()
            );
            let mut prs: Vec<PhaseResult> = live
                .iter()
                .map(|_| PhaseResult {
                    phase,
                    command: String::new(),
                    passes: Vec::new(),
                    discarded: Vec::new(),
                    summary: None,
                    error: None,
                })
                .collect();
            for (i, (l, _)) in live.iter_mut().enumerate() {
                let run = peer_run(l.kind, env, &l.topo, &l.dir, &l.config, in_flight);
                prs[i].command = run.load_gen.shown_command(phase, args.duration);
                if args.warmup > 0 {
                    println!(
                        "xtask: bench: {} / {}: warm-up {} s",
                        l.kind.name(),
                        phase.name(),
                        args.warmup
                    );
                    if let Err(e) = run.load_gen.warm_up(phase, args.warmup) {
                        prs[i].error = Some(format!("{e:#}"));
                    }
                }
            }
            for slice in 0..slices as usize {
                check_interrupted()?;
                for k in 0..live.len() {
                    let i = (slice + k) % live.len();
                    if prs[i].error.is_some() {
                        continue;
                    }
                    let (l, _) = &mut live[i];
                    let run = peer_run(l.kind, env, &l.topo, &l.dir, &l.config, in_flight);
                    let pass = l
                        .topo
                        .pin_napi()
                        .and_then(|_| one_pass(&run, phase, slice + 1, false));
                    match pass.and_then(|p| l.procs.check_alive().map(|()| p)) {
                        Ok(p) => {
                            print_pass(l.kind, phase, slice + 1, &p.0.pass);
                            prs[i].passes.push(p.0.pass);
                        }
                        Err(e) => {
                            let msg = format!("{e:#}");
                            eprintln!("xtask: bench: {} / {}: {msg}", name(l.kind), phase.name());
                            prs[i].error = Some(msg);
                        }
                    }
                }
            }
            for ((_, r), mut pr) in live.iter_mut().zip(prs) {
                pr.summary = report::summarize(&pr.passes, SPREAD_LIMIT_PCT);
                results
                    .meta
                    .warnings
                    .extend(pr.rate_shortfall(args.rate, &name(r.peer)));
                if pr.summary.as_ref().is_some_and(|s| s.not_quiet) {
                    results.meta.warnings.push(format!(
                        "{} / {}: the machine was not quiet (< {:.0}% per CPU) before some slice",
                        name(r.peer),
                        phase.name(),
                        QUIET_LIMIT * 100.0
                    ));
                }
                let disturbed = pr.passes.iter().filter(|p| p.disturbed).count();
                if disturbed > 0 {
                    results.meta.warnings.push(format!(
                        "{} / {}: {disturbed} of {} slices disturbed by other processes (kept: a re-run would break the pairing)",
                        name(r.peer),
                        phase.name(),
                        pr.passes.len()
                    ));
                }
                r.phases.push(pr);
            }
            results.peers = earlier
                .iter()
                .cloned()
                .chain(live.iter().map(|(_, r)| r.clone()))
                .chain(failed.iter().cloned())
                .collect();
            results.meta.elapsed_s = start.elapsed().as_secs_f64();
            write_results(out_dir, results, &env.phases)?;
        }
        Ok(())
    })();
    for (l, r) in &mut live {
        r.ok = r.phases.iter().all(|p| p.error.is_none());
        add_observations(l.kind, r);
    }
    results.peers = earlier
        .into_iter()
        .chain(live.iter().map(|(_, r)| r.clone()))
        .chain(failed)
        .collect();
    for (l, r) in live {
        l.finish(out_dir, !r.ok);
    }
    outcome
}

/// Waits for a quiet machine (or gives up after `QUIET_WAIT`).
fn wait_quiet() -> Result<Quiet> {
    let start = Instant::now();
    loop {
        check_interrupted()?;
        let u = cpu::sample(Duration::from_secs(1))?;
        let ok = cpu::is_quiet(&u, QUIET_LIMIT);
        if ok || start.elapsed() >= QUIET_WAIT {
            if !ok {
                eprintln!(
                    "xtask: bench: warning: machine not quiet after {} s (CPU utilization {u:.2?}); measuring anyway",
                    QUIET_WAIT.as_secs()
                );
            }
            return Ok(Quiet {
                utilization: u,
                waited_s: start.elapsed().as_secs_f64(),
                ok,
            });
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A measured pass and force-https's counters around it.
struct PassRun {
    pass: Pass,
    fh_before: Option<serde_json::Value>,
    fh_after: Option<serde_json::Value>,
}

/// One measured run with its CPU and counter deltas; with `flood`, a bounded SYN flood runs
/// during the load ([`flood::Flood`]), started after the quiet check.
fn one_pass(
    run: &PeerRun,
    phase: Phase,
    n: usize,
    flood: bool,
) -> Result<(PassRun, Option<flood::During>)> {
    let PeerRun {
        kind,
        args,
        topo,
        force_https,
        fh_config,
        load_gen,
        out_dir,
    } = run;
    let (kind, fh_config) = (*kind, *fh_config);
    let quiet = wait_quiet()?;
    let before = read_counters(topo, force_https, fh_config);
    let flood = if flood {
        Some(flood::Flood::start(
            &topo.client,
            &topo.edge,
            args.duration,
            args.flood_cpu,
        )?)
    } else {
        None
    };
    let t0 = Instant::now();
    let procs_a = procs::all_stats();
    let rx_a = cpu::net_rx_softirqs();
    let a = cpu::read()?;
    let (out, raw) = load_gen.run(phase, args.duration)?;
    let b = cpu::read()?;
    let rx_b = cpu::net_rx_softirqs();
    let procs_b = procs::all_stats();
    let wall_s = t0.elapsed().as_secs_f64();
    let during = flood.map(flood::Flood::finish).transpose()?;
    let after = read_counters(topo, force_https, fh_config);
    let _ = std::fs::write(
        out_dir
            .join("raw")
            .join(format!("{}-{}-{n}.txt", kind.name(), phase.name())),
        &raw,
    );
    if out.requests == 0 {
        bail!("no request completed:\n{}", raw.trim());
    }
    let d = b.since(&a);
    let hz = cpu::ticks_per_second();
    let (foreign, foreign_top) = procs::foreign_ticks(&procs_a, &procs_b, std::process::id());
    let foreign_cpu_s = foreign as f64 / hz;
    let edge = cpu::Usage::of(&d.cpu(EDGE_CPU), hz);
    let client = cpu::Usage::of(&d.cpu(CLIENT_CPU), hz);
    let machine = cpu::Usage::of(&d.all, hz);
    let reqs = out.requests as f64;
    let per_req = |x: Option<u64>| x.map(|v| v as f64 / reqs);

    let (server_counted, fast_path_share) = if kind.is_force_https() {
        let dc = |name: &str| delta(fh_counter(&before.fh, name), fh_counter(&after.fh, name));
        if phase.is_redirect() {
            let sock = dc("redirects_301");
            let fast = dc("afxdp_redirects_301");
            let total = match (sock, fast) {
                (Some(s), Some(f)) => Some(s + f),
                (s, f) => s.or(f),
            };
            let share = match (fast, total) {
                (Some(f), Some(t)) if t > 0 && kind == PeerKind::ForceHttpsXdp => {
                    Some(f as f64 / t as f64)
                }
                _ => None,
            };
            (total, share)
        } else if phase.is_plain_proxied() {
            (dc("proxied_http"), None)
        } else {
            (dc("proxied_https"), None)
        }
    } else {
        (None, None)
    };

    let pass = Pass {
        wall_s,
        edge_us_per_req: edge.busy_s * 1e6 / reqs,
        machine_us_per_req: machine.busy_s * 1e6 / reqs,
        edge,
        client,
        machine,
        conns_per_req: per_req(delta(before.client_active_opens, after.client_active_opens)),
        kernel_sockets_per_req: per_req(delta(before.edge_passive_opens, after.edge_passive_opens)),
        retrans_per_req: per_req(delta(before.edge_retrans_segs, after.edge_retrans_segs)),
        segs_per_req: per_req(delta(before.edge_out_segs, after.edge_out_segs)),
        server_counted,
        server_counters: counter_deltas(&before.fh, &after.fh),
        fast_path_share,
        bytes_per_response: out.bytes.map(|b| b as f64 / reqs),
        net_rx_per_req: [EDGE_CPU, CLIENT_CPU].map(|c| {
            let at = |v: &[u64]| v.get(c).copied().unwrap_or(0);
            at(&rx_b).saturating_sub(at(&rx_a)) as f64 / reqs
        }),
        quiet,
        disturbed: foreign_cpu_s > FOREIGN_LIMIT * wall_s || d.forks > MAX_FORKS,
        foreign_cpu_s,
        foreign_top,
        forks: d.forks,
        load: out,
    };
    Ok((
        PassRun {
            pass,
            fh_before: before.fh,
            fh_after: after.fh,
        },
        during,
    ))
}

/// `cargo bench -p force-https-proto`, output in micro.txt; returns criterion's result lines.
fn run_micro(out_dir: &Path) -> Result<Vec<String>> {
    // Benchmarks may use both CPUs: undo xtask's own pinning for the child.
    let mut shown = Command::new("taskset");
    shown
        .args(["-c", "0,1"])
        .arg(cmd::cargo())
        .args(["bench", "-p", "force-https-proto"]);
    shown.current_dir(cmd::workspace_root());
    println!("xtask: bench: $ {}", cmd::show(&shown));
    let out = cmd::output(&mut shown)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(out_dir.join("micro.txt"), &text)?;
    if !out.status.success() {
        bail!(
            "`cargo bench -p force-https-proto` failed ({}); output in {}",
            out.status,
            out_dir.join("micro.txt").display()
        );
    }
    Ok(report::criterion_summary(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        b: BenchArgs,
    }

    fn one_pass_result(peer: PeerKind, rps: f64) -> PeerResult {
        let pass = Pass {
            load: load::LoadOutput {
                requests: 1000,
                rps,
                // A p99 that follows the rate, so that its ratios are the rate's.
                p99_us: Some(rps * 10.0),
                ..load::LoadOutput::default()
            },
            edge_us_per_req: 1e6 / rps,
            machine_us_per_req: 2e6 / rps,
            ..Pass::default()
        };
        let mut r = PeerResult::new(peer);
        r.ok = true;
        r.phases.push(PhaseResult {
            phase: Phase::HttpsH1,
            command: String::new(),
            passes: vec![pass.clone()],
            discarded: Vec::new(),
            summary: report::summarize(&[pass], SPREAD_LIMIT_PCT),
            error: None,
        });
        r
    }

    #[test]
    fn rounds_merge_into_one_result_per_peer() {
        let mut peers = Vec::new();
        for rps in [100.0, 120.0, 110.0] {
            merge_round(&mut peers, one_pass_result(PeerKind::ForceHttps, rps));
            merge_round(&mut peers, one_pass_result(PeerKind::Nginx, rps / 2.0));
        }
        assert_eq!(peers.len(), 2);
        let s = peers[0].phases[0].summary.as_ref().unwrap();
        assert_eq!(peers[0].phases[0].passes.len(), 3);
        assert_eq!(s.passes, 3);
        assert_eq!(s.rps.median, 110.0);
        assert!(s.noisy, "18% between rounds");
        assert_eq!(
            peers[1].phases[0].summary.as_ref().unwrap().rps.median,
            55.0
        );
        let t = T::try_parse_from(["x", "--rounds", "5"]).unwrap();
        assert_eq!(t.b.rounds, Some(5));
        assert!(T::try_parse_from(["x", "--rounds", "5", "--passes", "3"]).is_err());
        assert!(T::try_parse_from(["x", "--rounds", "1"]).is_err());
    }

    #[test]
    fn paired_ratios_are_per_round() {
        let mut peers = Vec::new();
        // force-https at half of nginx's rate in round 1, equal in rounds 2 and 3.
        for (ours, theirs) in [(50.0, 100.0), (80.0, 80.0), (120.0, 120.0)] {
            merge_round(&mut peers, one_pass_result(PeerKind::ForceHttps, ours));
            merge_round(&mut peers, one_pass_result(PeerKind::Nginx, theirs));
        }
        let pairs = report::paired_ratios(&peers, &[Phase::HttpsH1]);
        assert_eq!(pairs.len(), 1);
        let p = &pairs[0];
        assert_eq!(
            (p.label.as_str(), p.other),
            ("force-https / https-h1", "nginx")
        );
        assert_eq!((p.rps.median, p.rps.min, p.rps.max), (1.0, 0.5, 1.0));
        assert_eq!((p.cpu.median, p.cpu.max), (1.0, 2.0));
        // A peer that missed a round: no pairing.
        merge_round(&mut peers, one_pass_result(PeerKind::Nginx, 90.0));
        assert!(report::paired_ratios(&peers, &[Phase::HttpsH1]).is_empty());
        // The report shows the section with --rounds only.
        peers[1].phases[0].passes.pop();
        let mut results = Results {
            peers: peers.clone(),
            ..Results::default()
        };
        let title = "## force-https against each peer, round by round";
        assert!(!report::markdown(&results, &[Phase::HttpsH1]).contains(title));
        results.meta.rounds = Some(3);
        let md = report::markdown(&results, &[Phase::HttpsH1]);
        assert!(md.contains(title), "{md}");
        assert!(
            md.contains("| force-https / https-h1 | nginx | 1.00 (0.50–1.00) | 1.00 (1.00–2.00) |"),
            "{md}"
        );
    }

    #[test]
    fn a_paired_sweep_pairs_the_peers_at_each_value() {
        // Two values, 6 slices each: force-https at 1.2× HAProxy's rate at 64 in flight and
        // 0.8× at 512. Each value's results come after the earlier ones' (`bench_paired`).
        let mut peers = Vec::new();
        for (in_flight, ratio) in [(64, 1.2), (512, 0.8)] {
            for k in 0..6 {
                let theirs = 100.0 + k as f64;
                for (kind, rps) in [
                    (PeerKind::ForceHttps, theirs * ratio),
                    (PeerKind::Haproxy, theirs),
                ] {
                    let mut r = one_pass_result(kind, rps);
                    r.in_flight = in_flight;
                    merge_round(&mut peers, r);
                }
            }
        }
        assert_eq!(peers.len(), 4, "one result per peer and value");
        let pairs = report::paired_ratios(&peers, &[Phase::HttpsH1]);
        let got: Vec<(&str, f64)> = pairs
            .iter()
            .map(|p| (p.label.as_str(), (p.rps.median * 100.0).round() / 100.0))
            .collect();
        assert_eq!(
            got,
            [
                ("force-https / https-h1 @64", 1.2),
                ("force-https / https-h1 @512", 0.8)
            ]
        );
        let mut results = Results {
            peers,
            ..Results::default()
        };
        results.meta.paired = Some(6);
        results.meta.sweep = vec![64, 512];
        let md = report::markdown(&results, &[Phase::HttpsH1]);
        assert!(
            md.contains("| force-https / https-h1 @512 | haproxy | 0.80 ["),
            "{md}"
        );
    }

    #[test]
    fn paired_slices_get_their_section_with_a_confidence_interval() {
        let mut peers = Vec::new();
        // 10 slices: force-https's rate over HAProxy's is 0.90, 0.91, …, 0.99 (in a shuffled
        // order); the interval for n = 10 is ranks 2 and 9: 0.91–0.98.
        for k in [3, 7, 0, 9, 5, 1, 8, 2, 6, 4] {
            merge_round(
                &mut peers,
                one_pass_result(PeerKind::ForceHttps, 90.0 + k as f64),
            );
            merge_round(&mut peers, one_pass_result(PeerKind::Haproxy, 100.0));
        }
        let pairs = report::paired_ratios(&peers, &[Phase::HttpsH1]);
        let (a, b) = pairs[0].rps_ci.unwrap();
        assert!(
            (a - 0.91).abs() < 1e-9 && (b - 0.98).abs() < 1e-9,
            "{a} {b}"
        );
        let mut results = Results {
            peers,
            ..Results::default()
        };
        results.meta.paired = Some(10);
        let md = report::markdown(&results, &[Phase::HttpsH1]);
        assert!(
            md.contains("## force-https against each peer, slice by slice"),
            "{md}"
        );
        // The p99 ratio comes last (here it follows the rate), and is left out when a pass
        // has no p99.
        assert!(
            md.contains("| force-https / https-h1 | haproxy | 0.94 [0.91–0.98] (0.90–0.99) | 1.06 [1.02–1.10] (1.01–1.11) | 0.94 [0.91–0.98] (0.90–0.99) |"),
            "{md}"
        );
        results.peers[0].phases[0].passes[4].load.p99_us = None;
        let md = report::markdown(&results, &[Phase::HttpsH1]);
        assert!(md.contains("(1.01–1.11) | – |"), "{md}");
        // Paired slices conflict with the other ways of repeating passes.
        for other in [&["--passes", "3"][..], &["--rounds", "3"]] {
            let mut argv = vec!["x", "--paired", "20"];
            argv.extend_from_slice(other);
            assert!(T::try_parse_from(argv).is_err(), "{other:?}");
        }
        assert!(T::try_parse_from(["x", "--paired", "5"]).is_err());
        assert_eq!(
            T::try_parse_from(["x", "--paired", "20"]).unwrap().b.paired,
            Some(20)
        );
        // A paired sweep: one paired run per requests-in-flight value.
        let t = T::try_parse_from(["x", "--paired", "20", "--sweep", "64,512,1024"]).unwrap();
        assert_eq!(
            (t.b.paired, t.b.in_flights()),
            (Some(20), vec![64, 512, 1024])
        );
    }

    #[test]
    fn fixed_rate() {
        // Without --phases, --rate runs every phase h2load can run at a fixed rate.
        let t = T::try_parse_from(["x", "--rate", "400"]).unwrap();
        assert_eq!(t.b.rate, Some(400));
        let phases = t.b.phases();
        assert!(
            !phases.contains(&Phase::RedirectNewConn) && !phases.contains(&Phase::HttpsNewConn)
        );
        assert_eq!(phases.len(), Phase::ALL.len() - 2);
        assert!(check_rate(400, &phases, &[64, 1024]).is_ok());
        // A phase that opens a connection per request is refused, with its name.
        let e = check_rate(400, &[Phase::HttpsH1, Phase::HttpsNewConn], &[64]).unwrap_err();
        assert!(e.to_string().contains("https-new-conn"), "{e}");
        // h2load's smallest per-connection rate is a thousandth of a request a second.
        assert!(check_rate(1, &[Phase::HttpsH2], &[64]).is_ok());
        let e = check_rate(1, &[Phase::HttpsH1], &[2048]).unwrap_err();
        assert!(e.to_string().contains("2048 connections"), "{e}");
        for bad in [
            &["--rate", "0"][..],
            &["--rate", "x"],
            &["--rate", "5", "--syn-flood"],
        ] {
            let mut argv = vec!["x"];
            argv.extend_from_slice(bad);
            assert!(T::try_parse_from(argv).is_err(), "{bad:?}");
        }
        // A pass under 95% of the rate is flagged.
        let mut pr = PhaseResult {
            phase: Phase::HttpsH1Big,
            command: String::new(),
            passes: Vec::new(),
            discarded: Vec::new(),
            summary: None,
            error: None,
        };
        for rps in [399.0, 380.0, 300.0] {
            pr.passes.push(Pass {
                load: load::LoadOutput {
                    rps,
                    ..load::LoadOutput::default()
                },
                ..Pass::default()
            });
        }
        assert_eq!(pr.rate_shortfall(None, "nginx"), None);
        let w = pr.rate_shortfall(Some(400), "nginx").unwrap();
        assert!(w.starts_with("nginx / https-h1-1mib: 1 of 3 passes served under 95% of --rate 400 (lowest 300 requests/s)"), "{w}");
        pr.passes.truncate(2);
        assert_eq!(pr.rate_shortfall(Some(400), "nginx"), None);
    }

    #[test]
    fn baseline_is_another_build_named_on_the_command_line() {
        // --baseline-bin adds the peer, last, once.
        let t = T::try_parse_from([
            "x",
            "--peers",
            "force-https,haproxy",
            "--baseline-bin",
            "/b/force-https",
        ])
        .unwrap();
        assert_eq!(
            t.b.peers(),
            [PeerKind::ForceHttps, PeerKind::Haproxy, PeerKind::Baseline]
        );
        t.b.check_binaries().unwrap_err(); // /b/force-https does not exist
        let t = T::try_parse_from([
            "x",
            "--peers",
            "baseline,force-https",
            "--baseline-bin",
            "/b/force-https",
        ])
        .unwrap();
        assert_eq!(t.b.peers(), [PeerKind::Baseline, PeerKind::ForceHttps]);
        // Not in the default peers.
        let t = T::try_parse_from(["x"]).unwrap();
        assert!(!t.b.peers().contains(&PeerKind::Baseline));
        // The peer without its binary: a clear error.
        let t = T::try_parse_from(["x", "--peers", "force-https,baseline"]).unwrap();
        let e = t.b.check_binaries().unwrap_err().to_string();
        assert!(e.contains("--baseline-bin PATH"), "{e}");
        // A binary that is not there: named before anything is built.
        let t = T::try_parse_from(["x", "--baseline-bin", "/nonexistent/force-https"]).unwrap();
        let e = t.b.check_binaries().unwrap_err().to_string();
        assert_eq!(e, "--baseline-bin /nonexistent/force-https: no such file");
        let here = std::env::current_exe().unwrap();
        let t =
            T::try_parse_from(["x".as_ref(), "--baseline-bin".as_ref(), here.as_os_str()]).unwrap();
        t.b.check_binaries().unwrap();
        // Counted and flood runs have no place for it.
        for other in [&["--instructions", "100"][..], &["--syn-flood"][..]] {
            let mut argv = vec!["x", "--baseline-bin", "/b"];
            argv.extend_from_slice(other);
            assert!(T::try_parse_from(argv).is_err(), "{other:?}");
        }
        // Each peer runs its own daemon.
        let bins = ReleaseBins {
            force_https: "/a".into(),
            fh_backend: "/f".into(),
            baseline: Some("/b".into()),
        };
        assert_eq!(bins.force_https_of(PeerKind::ForceHttps), Path::new("/a"));
        assert_eq!(
            bins.force_https_of(PeerKind::ForceHttpsXdp),
            Path::new("/a")
        );
        assert_eq!(bins.force_https_of(PeerKind::Baseline), Path::new("/b"));
        assert_eq!(bins.force_https_of(PeerKind::Nginx), Path::new("/a"));
    }

    #[test]
    fn args_and_filters() {
        let t = T::try_parse_from(["x"]).unwrap();
        assert_eq!(t.b.duration, 10);
        assert_eq!(t.b.passes, 3);
        assert_eq!(t.b.peers(), PeerKind::ALL.to_vec());
        assert_eq!(t.b.phases(), Phase::ALL.to_vec());
        let t = T::try_parse_from([
            "x",
            "--peers",
            "nginx,force-https-xdp,nginx",
            "--phases",
            "https-h2,redirect-new-conn",
            "--duration",
            "5",
            "--micro",
        ])
        .unwrap();
        assert_eq!(t.b.peers(), vec![PeerKind::Nginx, PeerKind::ForceHttpsXdp]);
        assert_eq!(t.b.phases(), vec![Phase::RedirectNewConn, Phase::HttpsH2]);
        assert!(t.b.micro);
        assert!(!t.b.syn_flood);
        assert_eq!(t.b.xdp_mode, XdpMode::Native);
        assert_eq!(
            T::try_parse_from(["x", "--xdp-mode", "generic"])
                .unwrap()
                .b
                .xdp_mode,
            XdpMode::Generic
        );
        assert!(T::try_parse_from(["x", "--syn-flood"]).unwrap().b.syn_flood);
        assert_eq!(
            T::try_parse_from(["x", "--syn-flood"]).unwrap().b.flood_cpu,
            FloodCpu::Edge
        );
        let t = T::try_parse_from(["x", "--syn-flood", "--flood-cpu", "client"]).unwrap();
        assert_eq!(t.b.flood_cpu, FloodCpu::Client);
        // Only with --syn-flood.
        assert!(T::try_parse_from(["x", "--flood-cpu", "client"]).is_err());
        assert!(T::try_parse_from(["x", "--peers", "apache"]).is_err());
        assert!(T::try_parse_from(["x", "--duration", "0"]).is_err());
    }

    #[test]
    fn interrupt_coalescing_takes_both_values() {
        assert_eq!(T::try_parse_from(["x"]).unwrap().b.coalescing(), None);
        let t = T::try_parse_from([
            "x",
            "--napi-defer-hard-irqs",
            "2",
            "--gro-flush-timeout",
            "20000",
        ])
        .unwrap();
        assert_eq!(t.b.coalescing(), Some((2, 20_000)));
        // One without the other does nothing useful: refused.
        assert!(T::try_parse_from(["x", "--napi-defer-hard-irqs", "2"]).is_err());
        assert!(T::try_parse_from(["x", "--gro-flush-timeout", "20000"]).is_err());
        // 0 turns coalescing off, which is the default anyway; a timeout under 1 µs or over
        // 10 ms is a typo.
        assert!(
            T::try_parse_from([
                "x",
                "--napi-defer-hard-irqs",
                "0",
                "--gro-flush-timeout",
                "20000"
            ])
            .is_err()
        );
        assert!(
            T::try_parse_from([
                "x",
                "--napi-defer-hard-irqs",
                "2",
                "--gro-flush-timeout",
                "20"
            ])
            .is_err()
        );
    }

    #[test]
    fn sweep_and_new_phases() {
        let t = T::try_parse_from(["x"]).unwrap();
        assert_eq!(t.b.in_flights(), vec![IN_FLIGHT]);
        let t = T::try_parse_from(["x", "--in-flight", "512"]).unwrap();
        assert_eq!(t.b.in_flights(), vec![512]);
        let t = T::try_parse_from(["x", "--sweep", "64,256,512,1024,256"]).unwrap();
        assert_eq!(t.b.in_flights(), vec![64, 256, 512, 1024]);
        assert!(T::try_parse_from(["x", "--sweep", "64,0"]).is_err());
        assert!(T::try_parse_from(["x", "--sweep", "64,5000"]).is_err());
        assert!(T::try_parse_from(["x", "--sweep", "64", "--in-flight", "8"]).is_err());
        let t = T::try_parse_from([
            "x",
            "--phases",
            "https-h2-1mib,http-proxied-keepalive,https-h1-1mib,https-h1",
        ])
        .unwrap();
        assert_eq!(
            t.b.phases(),
            vec![
                Phase::HttpsH1,
                Phase::HttpProxiedKeepalive,
                Phase::HttpsH1Big,
                Phase::HttpsH2Big
            ]
        );
        // The method notes: one load line for one value, and the sweep's values listed.
        let one = method_notes(65536, 16384, &[64]);
        assert!(
            one.iter()
                .any(|l| l.starts_with("Load: 64 requests in flight"))
        );
        assert!(!one.iter().any(|l| l.contains("Concurrency sweep")));
        let sweep = method_notes(65536, 16384, &[64, 512]);
        assert!(
            sweep
                .iter()
                .any(|l| l.contains("512 (wrk -c512; h2load -c64 -m8; backend pools of 512)"))
        );
    }

    #[test]
    fn snmp() {
        let t = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin ActiveOpens PassiveOpens\nTcp: 1 200 17 42\nUdp: InDatagrams\nUdp: 5\n";
        assert_eq!(snmp_value(t, "Tcp", "ActiveOpens"), Some(17));
        assert_eq!(snmp_value(t, "Tcp", "PassiveOpens"), Some(42));
        assert_eq!(snmp_value(t, "Tcp", "Nope"), None);
        assert_eq!(snmp_value(t, "TcpExt", "X"), None);
    }

    #[test]
    fn server_counter_deltas() {
        let a = Some(serde_json::json!({"x": 1, "y": 5, "z": 7}));
        let b = Some(serde_json::json!({"x": 4, "y": 5, "w": 2}));
        let d = counter_deltas(&a, &b);
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            vec![("x".to_string(), 3)]
        );
        assert!(counter_deltas(&None, &b).is_empty());
    }

    #[test]
    fn trouble_counters() {
        for c in [
            "afxdp_tx_ring_full",
            "afxdp_dropped",
            "xdp_cookie_bad_drop",
            "responses_502",
            "tls_handshake_failures",
        ] {
            assert!(is_trouble_counter(c), "{c}");
        }
        for c in ["xdp_bare_ack_drop", "afxdp_redirects_301", "proxied_https"] {
            assert!(!is_trouble_counter(c), "{c}");
        }
    }

    #[test]
    fn deltas() {
        assert_eq!(delta(Some(5), Some(9)), Some(4));
        assert_eq!(delta(None, Some(9)), None);
        assert_eq!(delta(Some(9), Some(5)), Some(0));
    }
}
