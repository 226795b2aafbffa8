//! `cargo xtask bench --syn-flood` (issue 11): the fast-path redirect rate with and without a
//! concurrent SYN flood on port 80, for the force-https-xdp peer.
//!
//! Each round is a pair of measured `redirect-new-conn` passes (wrk, a new connection per
//! request), the first without a flood, the second with one: `hping3 -S -p 80` from the client
//! namespace, started after the quiet-machine check and stopped (SIGINT through `timeout`)
//! when wrk exits. The flood is bounded in count (`FLOOD_RATE` × (duration + 2) SYNs) and in
//! time (`timeout duration + 2`). Its source address, [`FLOOD_SRC`], is inside the test
//! network and owned by no namespace, like a spoofing attacker's: the SYN-ACKs go back to the
//! client end of the veth, whose XDP program drops them (`topology.rs`), as a real flood's
//! SYN-ACKs go to whoever owns the address and never reach the attacker; no RST comes back.
//! hping3 captures its replies on `lo` (`-I lo`): there are none to capture, and on the veth
//! its packet socket got a copy of every frame wrk sent and received (`tpacket_rcv` and
//! `skb_clone` on the client CPU in a profile of the flooded pass). Its SYNs still leave by the
//! route to the edge, through the veth.
//!
//! During the flooded pass a thread inside the edge namespace reads
//! `/proc/thread-self/net/tcp{,6}` every second for sockets in SYN-RECV (no process is forked,
//! so the pass's fork count stays meaningful), and the edge's `TcpExtSyncookiesSent` and
//! `TcpPassiveOpens` before and after. A second is enough: a SYN-RECV socket for a spoofed
//! source lives until its SYN-ACK retransmissions give up (about a minute with the default
//! `tcp_synack_retries`); and every read walks the whole machine's TCP hash table
//! (`established_get_first`, 3.4% of the client CPU at ten reads a second).
//!
//! Where hping3 runs (`--flood-cpu`): a 2-CPU machine has no CPU for the attacker, so it
//! shares one. By default the edge's ([`FloodCpu::Edge`]): its sending costs the edge CPU as
//! well as the SYN-ACKs XDP makes, and wrk keeps the client CPU it saturates without a flood,
//! so the ratio is the edge's: what it still serves while it also carries the attacker. On the
//! client's CPU ([`FloodCpu::Client`]) hping3 takes CPU from wrk, and the ratio is that of
//! the load generator (the 2026-11-30 runs: 57–73%, every round client-bound).
//!
//! The result: per round the requests/s of both passes and their ratio, the SYNs sent and the
//! SYN-ACKs XDP made for them, the most SYN-RECV sockets seen, the kernel's cookies and
//! passive opens; then the medians and the verdict against [`TARGET_RATIO`] (the flooded rate
//! holds at least 90% of the unflooded one).

use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::load::Phase;
use super::summary::median;
use super::topology::EDGE_V4;
use super::{FloodCpu, PeerRun, check_interrupted, fh_counter, one_pass, snmp_value};
use crate::netns;

/// Source address of the flood: in the test network, owned by no namespace.
pub const FLOOD_SRC: &str = "198.51.100.66";
/// hping3's interval between SYNs, µs (`-i u50`: at most 20,000 SYN/s; hping3 itself reaches
/// about 9,000 here).
pub const FLOOD_INTERVAL_US: u64 = 50;
/// SYNs per second the count bound assumes (the interval's rate).
const FLOOD_RATE: u64 = 1_000_000 / FLOOD_INTERVAL_US;
/// The flooded rate must hold this share of the unflooded one.
pub const TARGET_RATIO: f64 = 0.90;
/// Disturbed rounds re-run at most; later ones are kept and flagged.
const MAX_DISCARDED: usize = 3;
/// How often the SYN-RECV sampler looks.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One round: a pass without and a pass with the flood.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FloodRound {
    pub rps_base: f64,
    pub rps_flood: f64,
    /// `rps_flood / rps_base`.
    pub ratio: f64,
    pub edge_us_base: f64,
    pub edge_us_flood: f64,
    /// Edge CPU utilization during the flooded pass.
    pub edge_util_flood: f64,
    /// Client CPU utilization during the flooded pass (wrk's, and hping3's with
    /// `--flood-cpu client`).
    pub client_util_flood: f64,
    /// What the flooded pass observed.
    pub during: During,
    /// wrk's socket errors and non-3xx answers in the flooded pass.
    pub errors_flood: u64,
    pub bad_status_flood: u64,
    /// Either pass was disturbed by other processes.
    pub disturbed: bool,
    /// Derived: the edge CPU the flood cost per SYN, µs: the flooded pass's edge busy time
    /// less its requests at the unflooded pass's cost per request, divided by the SYNs sent.
    pub edge_us_per_flood_syn: Option<f64>,
}

impl FloodRound {
    /// The flooded pass was limited by the client CPU, not the edge.
    pub fn client_bound(&self) -> bool {
        self.client_util_flood > 0.9 && self.edge_util_flood < 0.9
    }
}

/// What a flooded pass saw besides wrk's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct During {
    /// SYNs hping3 says it sent.
    pub syns_sent: u64,
    /// Seconds hping3 ran.
    pub flood_s: f64,
    /// SYN-ACKs XDP made during the pass (`xdp_synack_tx` + `xdp_synack_xsk`), wrk's
    /// connections included.
    pub xdp_synacks: Option<u64>,
    /// SYNs XDP passed to the kernel or could not answer (`xdp_syn_pass` +
    /// `xdp_syn_cookie_refused`).
    pub syns_to_kernel: Option<u64>,
    /// wrk's completed requests (one connection each).
    pub requests: u64,
    /// The most edge sockets in SYN-RECV in one sample, and how many samples were taken.
    pub syn_recv_max: u64,
    pub samples: u64,
    /// Growth of the edge's `TcpExtSyncookiesSent` and `TcpPassiveOpens` during the pass.
    pub syncookies_sent: Option<u64>,
    pub passive_opens: Option<u64>,
}

/// The whole measurement.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FloodResult {
    /// The flood's command line (in the client namespace).
    pub command: String,
    /// The CPU it ran on.
    pub flood_cpu: FloodCpu,
    pub rounds: Vec<FloodRound>,
    pub median_rps_base: f64,
    pub median_rps_flood: f64,
    /// Median of the rounds' ratios.
    pub median_ratio: f64,
    /// `median_ratio >= TARGET_RATIO`.
    pub met: bool,
    /// Some sample saw a SYN-RECV socket on the edge.
    pub syn_recv_seen: bool,
    /// Rounds thrown away because other processes ran during them (re-run instead).
    pub discarded: Vec<FloodRound>,
    pub error: Option<String>,
}

/// hping3's arguments for a flood of at most `secs` seconds (after `timeout -s INT SECS`).
pub fn hping3_args(secs: u64) -> Vec<String> {
    [
        "hping3",
        "-q",
        "-I",
        "lo",
        "-S",
        "-p",
        "80",
        "-a",
        FLOOD_SRC,
        "-i",
        &format!("u{FLOOD_INTERVAL_US}"),
        "-c",
        &(FLOOD_RATE * secs).to_string(),
        EDGE_V4,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The flood command as shown in the report.
pub fn shown_command(duration_s: u64, cpu: FloodCpu) -> String {
    let secs = duration_s + 2;
    format!(
        "taskset -c {} timeout -s INT {secs} {}",
        cpu.cpu(),
        hping3_args(secs).join(" ")
    )
}

/// A running flood with its SYN-RECV sampler. Drop stops both.
pub struct Flood {
    child: Option<Child>,
    started: Instant,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<Sample>>,
}

/// What the sampler thread read in the edge namespace.
#[derive(Default)]
struct Sample {
    syn_recv_max: u64,
    samples: u64,
    cookies: [Option<u64>; 2],
    passive: [Option<u64>; 2],
}

impl Flood {
    /// Starts the sampler in `edge_ns`, then hping3 in `client_ns`, pinned to `cpu`.
    pub fn start(client_ns: &str, edge_ns: &str, duration_s: u64, cpu: FloodCpu) -> Result<Flood> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let edge = edge_ns.to_string();
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || sample(&edge, &flag, ready_tx));
        // The sampler has entered the namespace and read the counters before the flood starts.
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.store(true, Ordering::Relaxed);
                let _ = sampler.join();
                bail!("SYN-RECV sampler: {e}");
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                bail!("SYN-RECV sampler did not start");
            }
        }
        let secs = duration_s + 2;
        let mut c = netns::exec(client_ns, "taskset");
        c.args(["-c", &cpu.cpu().to_string(), "timeout", "-s", "INT"])
            .arg(secs.to_string())
            .args(hping3_args(secs))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut flood = Flood {
            child: None,
            started: Instant::now(),
            stop,
            sampler: Some(sampler),
        };
        flood.child = Some(c.spawn().context("cannot start hping3")?);
        Ok(flood)
    }

    /// Stops the flood (SIGINT to `timeout`, which hands it to hping3; SIGKILL after 5 s) and
    /// the sampler; returns what they saw.
    pub fn finish(mut self) -> Result<During> {
        let mut child = self.child.take().context("flood not running")?;
        if child.try_wait()?.is_none() {
            // SAFETY: the pid of our own child, not yet reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let flood_s = self.started.elapsed().as_secs_f64();
        let _ = child.kill();
        let mut text = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut text);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut text);
        }
        let _ = child.wait();
        self.stop.store(true, Ordering::Relaxed);
        let s = self
            .sampler
            .take()
            .context("no sampler")?
            .join()
            .map_err(|_| anyhow::anyhow!("the SYN-RECV sampler panicked"))?;
        let syns_sent = transmitted(&text)
            .with_context(|| format!("no statistics line from hping3:\n{}", text.trim()))?;
        let d = |v: [Option<u64>; 2]| Some(v[1]?.saturating_sub(v[0]?));
        Ok(During {
            syns_sent,
            flood_s,
            syn_recv_max: s.syn_recv_max,
            samples: s.samples,
            syncookies_sent: d(s.cookies),
            passive_opens: d(s.passive),
            ..During::default()
        })
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sampler.take() {
            let _ = h.join();
        }
    }
}

/// The sampler thread: enters `edge_ns`, reads the cookie and passive-open counters, then
/// counts SYN-RECV sockets every `SAMPLE_EVERY` until `stop`, and reads the counters again.
fn sample(
    edge_ns: &str,
    stop: &AtomicBool,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> Sample {
    let mut s = Sample::default();
    let entered = (|| -> Result<(), String> {
        let path = format!("/run/netns/{edge_ns}");
        let f = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: a valid namespace fd; setns changes only this thread's network namespace.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    })();
    if let Err(e) = entered {
        let _ = ready.send(Err(e));
        return s;
    }
    let counters = || {
        let read = |f: &str| std::fs::read_to_string(format!("/proc/thread-self/net/{f}")).ok();
        (
            read("netstat").and_then(|t| snmp_value(&t, "TcpExt", "SyncookiesSent")),
            read("snmp").and_then(|t| snmp_value(&t, "Tcp", "PassiveOpens")),
        )
    };
    (s.cookies[0], s.passive[0]) = counters();
    let _ = ready.send(Ok(()));
    while !stop.load(Ordering::Relaxed) {
        let n: u64 = ["tcp", "tcp6"]
            .iter()
            .map(|f| {
                std::fs::read_to_string(format!("/proc/thread-self/net/{f}"))
                    .map(|t| syn_recv_count(&t))
                    .unwrap_or(0)
            })
            .sum();
        s.syn_recv_max = s.syn_recv_max.max(n);
        s.samples += 1;
        // Wake up often enough to stop soon after the flood does.
        let next = Instant::now() + SAMPLE_EVERY;
        while !stop.load(Ordering::Relaxed) && Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    (s.cookies[1], s.passive[1]) = counters();
    s
}

/// Lines of /proc/net/tcp{,6} in state 03 (SYN_RECV).
pub fn syn_recv_count(text: &str) -> u64 {
    text.lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(3) == Some("03"))
        .count() as u64
}

/// N from hping3's `N packets transmitted, ...` (older builds print `tramitted`).
pub fn transmitted(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.contains("packets tra"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Warm-up, then `passes` rounds of an unflooded and a flooded redirect-new-conn pass.
pub fn measure(run: &PeerRun) -> FloodResult {
    let mut r = FloodResult {
        command: shown_command(run.args.duration, run.args.flood_cpu),
        flood_cpu: run.args.flood_cpu,
        ..FloodResult::default()
    };
    if let Err(e) = rounds(run, &mut r) {
        r.error = Some(format!("{e:#}"));
    }
    let base: Vec<f64> = r.rounds.iter().map(|x| x.rps_base).collect();
    let flood: Vec<f64> = r.rounds.iter().map(|x| x.rps_flood).collect();
    let ratios: Vec<f64> = r.rounds.iter().map(|x| x.ratio).collect();
    if !r.rounds.is_empty() {
        r.median_rps_base = median(&base).unwrap_or(0.0);
        r.median_rps_flood = median(&flood).unwrap_or(0.0);
        r.median_ratio = median(&ratios).unwrap_or(0.0);
        r.met = r.median_ratio >= TARGET_RATIO;
    }
    r.syn_recv_seen = r.rounds.iter().any(|x| x.during.syn_recv_max > 0);
    r
}

fn rounds(run: &PeerRun, r: &mut FloodResult) -> Result<()> {
    let phase = Phase::RedirectNewConn;
    let args = run.args;
    if args.warmup > 0 {
        run.load_gen.warm_up(phase, args.warmup)?;
    }
    let want = args.passes as usize;
    let mut n = 0;
    while r.rounds.len() < want {
        check_interrupted()?;
        n += 1;
        run.topo.pin_napi()?;
        let (base, _) = one_pass(run, phase, 100 + 2 * n, false)?;
        run.topo.pin_napi()?;
        let (flooded, during) = one_pass(run, phase, 101 + 2 * n, true)?;
        let mut during = during.context("the flooded pass saw no flood")?;
        let dc = |name: &str| {
            let a = fh_counter(&flooded.fh_before, name)?;
            let b = fh_counter(&flooded.fh_after, name)?;
            Some(b.saturating_sub(a))
        };
        during.xdp_synacks = dc("xdp_synack_tx").map(|tx| tx + dc("xdp_synack_xsk").unwrap_or(0));
        during.syns_to_kernel =
            dc("xdp_syn_pass").map(|p| p + dc("xdp_syn_cookie_refused").unwrap_or(0));
        during.requests = flooded.pass.load.requests;
        let round = FloodRound {
            rps_base: base.pass.load.rps,
            rps_flood: flooded.pass.load.rps,
            ratio: if base.pass.load.rps > 0.0 {
                flooded.pass.load.rps / base.pass.load.rps
            } else {
                0.0
            },
            edge_us_base: base.pass.edge_us_per_req,
            edge_us_flood: flooded.pass.edge_us_per_req,
            edge_util_flood: flooded.pass.edge.utilization,
            client_util_flood: flooded.pass.client.utilization,
            errors_flood: flooded.pass.load.errors,
            bad_status_flood: flooded.pass.load.bad_status,
            disturbed: base.pass.disturbed || flooded.pass.disturbed,
            edge_us_per_flood_syn: (during.syns_sent > 0).then(|| {
                let flood_s = flooded.pass.edge.busy_s
                    - flooded.pass.load.requests as f64 * base.pass.edge_us_per_req / 1e6;
                flood_s.max(0.0) * 1e6 / during.syns_sent as f64
            }),
            during,
        };
        println!(
            "xtask: bench: syn-flood round {n}: {:.0} req/s without, {:.0} with the flood ({:.1}%); {} SYNs sent in {:.1} s, XDP SYN-ACKs {:?}, SYN-RECV max {}, cookies sent by the kernel {:?}, passive opens {:?}",
            round.rps_base,
            round.rps_flood,
            round.ratio * 100.0,
            round.during.syns_sent,
            round.during.flood_s,
            round.during.xdp_synacks,
            round.during.syn_recv_max,
            round.during.syncookies_sent,
            round.during.passive_opens
        );
        if round.disturbed && r.discarded.len() < MAX_DISCARDED {
            eprintln!("xtask: bench: syn-flood round {n} disturbed by other processes: re-run");
            r.discarded.push(round);
        } else {
            r.rounds.push(round);
        }
    }
    Ok(())
}

/// The report section.
pub fn markdown(r: &FloodResult, o: &mut String) {
    use std::fmt::Write as _;
    let place = match r.flood_cpu {
        FloodCpu::Client => "next to wrk on the client CPU (it takes CPU from the load generator)",
        FloodCpu::Edge => {
            "on the edge's CPU (its sending costs the edge CPU too; wrk has the client CPU alone, as without the flood)"
        }
    };
    let _ = writeln!(
        o,
        "Flood: `{}` in the client namespace, {place}, during the second pass of each round (redirect-new-conn; the first pass of the round has no flood). The client end's XDP program drops the SYN-ACKs to the spoofed source, as a real flood's never reach the attacker.\n",
        r.command
    );
    if let Some(e) = &r.error {
        let _ = writeln!(o, "- **FAILED**: {}\n", e.lines().next().unwrap_or(""));
    }
    o.push_str("| round | req/s without | req/s with flood | ratio | SYNs sent (SYN/s) | XDP SYN-ACKs − requests | SYNs to the kernel | SYN-RECV max (samples) | kernel cookies sent | passive opens | edge CPU µs/req without / with | edge CPU µs per flood SYN (derived) | edge / client CPU with |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let opt = |v: Option<u64>| v.map_or("n/a".to_string(), |v| v.to_string());
    for (i, x) in r.rounds.iter().enumerate() {
        let d = &x.during;
        let rate = if d.flood_s > 0.0 {
            d.syns_sent as f64 / d.flood_s
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "| {}{} | {:.0} | {:.0} | {:.1}%{} | {} ({:.0}) | {} | {} | {} ({}) | {} | {} | {:.1} / {:.1} | {} | {:.0}% / {:.0}% |",
            i + 1,
            if x.disturbed { " ⚠busy" } else { "" },
            x.rps_base,
            x.rps_flood,
            x.ratio * 100.0,
            if x.client_bound() {
                " ◦client-bound"
            } else {
                ""
            },
            d.syns_sent,
            rate,
            d.xdp_synacks
                .map_or("n/a".into(), |s| (s as i64 - d.requests as i64).to_string()),
            opt(d.syns_to_kernel),
            d.syn_recv_max,
            d.samples,
            opt(d.syncookies_sent),
            opt(d.passive_opens),
            x.edge_us_base,
            x.edge_us_flood,
            x.edge_us_per_flood_syn
                .map_or("n/a".into(), |v| format!("{v:.1}")),
            x.edge_util_flood * 100.0,
            x.client_util_flood * 100.0,
        );
    }
    o.push_str("\n◦client-bound: in the flooded pass the client CPU was over 90% busy and the edge CPU under 90%: the load generator, not the edge, set the rate. `edge CPU µs per flood SYN` is derived: the flooded pass's edge CPU busy time less its requests at the unflooded pass's cost per request, divided by the SYNs sent; with the flood on the edge's CPU it includes hping3's own sending.\n");
    if !r.discarded.is_empty() {
        let _ = writeln!(
            o,
            "\n{} round(s) disturbed by other processes were thrown away and re-run (results.json `discarded`).",
            r.discarded.len()
        );
    }
    let _ = writeln!(
        o,
        "\nMedians: {:.0} req/s without, {:.0} with the flood; median ratio **{:.1}%** (target ≥ {:.0}%): **{}**. SYN-RECV sockets on the edge during the floods: **{}**.",
        r.median_rps_base,
        r.median_rps_flood,
        r.median_ratio * 100.0,
        TARGET_RATIO * 100.0,
        if r.met { "met" } else { "MISSED" },
        if r.syn_recv_seen { "SEEN" } else { "none" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hping3_output() {
        let t = "HPING 198.51.100.1 (x 198.51.100.1): S set, 40 headers + 0 data bytes\n\n--- 198.51.100.1 hping statistic ---\n40000 packets transmitted, 0 packets received, 100% packet loss\n";
        assert_eq!(transmitted(t), Some(40_000));
        assert_eq!(
            transmitted("7 packets tramitted, 0 packets received"),
            Some(7)
        );
        assert_eq!(transmitted("HPING x"), None);
    }

    #[test]
    fn syn_recv_lines() {
        let t = "  sl  local_address rem_address   st tx_queue\n   0: 0100007F:0050 00000000:0000 0A 0\n   1: 016433C6:0050 426433C6:9C40 03 0\n   2: 016433C6:0050 426433C6:9C41 03 0\n";
        assert_eq!(syn_recv_count(t), 2);
        assert_eq!(syn_recv_count(""), 0);
    }

    #[test]
    fn bounded_command() {
        let c = shown_command(10, FloodCpu::Edge);
        assert!(
            c.starts_with("taskset -c 0 timeout -s INT 12 hping3"),
            "{c}"
        );
        assert!(shown_command(10, FloodCpu::Client).starts_with("taskset -c 1 "));
        assert!(c.contains("-c 240000"), "{c}");
        assert!(c.contains(&format!("-a {FLOOD_SRC}")), "{c}");
        assert!(!c.contains("rand-source") && !c.contains("--flood"), "{c}");
    }
}
