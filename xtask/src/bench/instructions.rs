//! `cargo xtask bench --instructions N`: each peer's user-space instructions per request,
//! counted by callgrind, for the phases where this machine's wall clock is too noisy to compare
//! peers (issue 15; BENCHMARKS.md, runs O to Q).
//!
//! Each peer runs under `valgrind --tool=callgrind` on the edge CPU, in the bench's namespaces,
//! with the bench's configs and backend. Per phase, h2load (8 connections; 1 stream each, or 8
//! for HTTP/2) sends a warm-up of N requests, then N, then 2N; callgrind's counters are zeroed
//! before the first counted run and dumped after each. Per request = (second dump − first
//! dump) / N: each run opens the same 8 connections, so their handshakes and the runs' fixed
//! costs cancel, and what is left is N requests' work. Only user space is counted (the kernel's
//! share was equal between the peers in the profiles, and system calls are counted apart).

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::load::Phase;
use super::load::{HOST, PLAIN_HOST};
use super::peers::PeerKind;
use super::{CLIENT_CPU, procs};
use crate::netns;

/// The phases that can be counted: keep-alive load with a fixed request count.
pub const PHASES: [Phase; 3] = [Phase::HttpsH1, Phase::HttpsH2, Phase::HttpProxiedKeepalive];

/// The peers that can be counted: single-process event loops started in the foreground
/// (Caddy's Go runtime and the XDP peer's AF_XDP rings are left out).
pub const PEERS: [PeerKind; 3] = [PeerKind::ForceHttps, PeerKind::Haproxy, PeerKind::Nginx];

/// Fails with what to choose instead when `--peers` or `--phases` name something that cannot be
/// counted.
pub fn check_selection(peers: &[PeerKind], phases: &[Phase]) -> Result<()> {
    if let Some(p) = peers.iter().find(|p| !PEERS.contains(p)) {
        bail!(
            "--instructions counts {}; not {}",
            PEERS.map(PeerKind::name).join(", "),
            p.name()
        );
    }
    if let Some(p) = phases.iter().find(|p| !PHASES.contains(p)) {
        bail!(
            "--instructions counts the phases {}; not {}",
            PHASES.map(Phase::name).join(", "),
            p.name()
        );
    }
    Ok(())
}

/// Connections h2load opens for a counted run (each with 1 stream, 8 for HTTP/2).
const CONNECTIONS: u32 = 8;

/// The longest a counted run may take (a peer under callgrind serves about 2,000 requests a
/// second on this machine).
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// One phase's count.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Count {
    pub phase: Option<Phase>,
    /// User-space instructions per request (callgrind `Ir`).
    pub per_request: Option<f64>,
    /// Requests in the difference (N).
    pub requests: u64,
    /// The load command of a counted run.
    pub command: String,
    pub error: Option<String>,
}

/// The valgrind arguments a peer's command starts with; dumps go to `dir/callgrind.<pid>.<n>`.
pub fn valgrind_prefix(dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--dump-instr=no".into(),
        format!("--callgrind-out-file={}/callgrind.%p", dir.display()),
    ]
}

/// h2load's command line for a counted run of `n` requests (without namespace and pinning).
pub fn command_line(phase: Phase, n: u64) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "h2load".into(),
        "-t1".into(),
        format!("-c{CONNECTIONS}"),
        format!("-m{}", if phase.is_h2() { 8 } else { 1 }),
        format!("-n{n}"),
    ];
    if !phase.is_h2() {
        v.push("--h1".into());
    }
    v.push(match phase {
        Phase::HttpProxiedKeepalive => format!("http://{PLAIN_HOST}/"),
        _ => format!("https://{HOST}/"),
    });
    v
}

/// `requests: N total, N started, N done, N succeeded, …` with every request succeeded.
pub fn all_succeeded(out: &str, n: u64) -> bool {
    out.lines()
        .any(|l| l.starts_with("requests:") && l.contains(&format!(" {n} done, {n} succeeded")))
        && out.contains(&format!("status codes: {n} 2xx"))
}

/// The total of a callgrind dump: its `totals:` line, the last one written (`None` while the
/// file is incomplete).
pub fn dump_total(text: &str) -> Option<u64> {
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The dump files in `dir` (`callgrind.<pid>.<n>`).
fn dumps(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("callgrind.") && n.matches('.').count() == 2)
        .collect()
}

/// The processes of the peer that callgrind runs in: `root` (the process the bench started)
/// and its descendants, as far as `callgrind_control` lists them (`PID 123: cmd`); nginx has
/// a master and a worker, and a wrapper may sit above valgrind.
fn callgrind_pids(root: u32) -> Result<Vec<u32>> {
    let out = Command::new("callgrind_control")
        .stdin(Stdio::null())
        .output()
        .context("cannot run callgrind_control (is valgrind installed?)")?;
    let mut ours = vec![root];
    ours.extend(procs::descendants(root));
    let pids: Vec<u32> = listed_pids(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .filter(|p| ours.contains(p))
        .collect();
    if pids.is_empty() {
        bail!("callgrind_control lists no process of the peer (pid {root} and its children)");
    }
    Ok(pids)
}

/// The pids of `callgrind_control`'s listing.
pub fn listed_pids(listing: &str) -> Vec<u32> {
    listing
        .lines()
        .filter_map(|l| {
            l.strip_prefix("PID ")?
                .split(':')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

/// Runs `callgrind_control ARGS` on `pids`.
fn control(pids: &[u32], args: &[&str]) -> Result<()> {
    let mut c = Command::new("callgrind_control");
    c.args(args).args(pids.iter().map(u32::to_string));
    let out = c
        .stdin(Stdio::null())
        .output()
        .context("cannot run callgrind_control (is valgrind installed?)")?;
    if !out.status.success() {
        bail!(
            "callgrind_control {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Dumps the counters of `pids` and returns the sum of the new dump files' totals, once each
/// has written its file, and the files' names.
fn dump(pids: &[u32], dir: &Path) -> Result<(u64, Vec<String>)> {
    let before = dumps(dir);
    control(pids, &["--dump"])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let new: Vec<String> = dumps(dir).difference(&before).cloned().collect();
        if new.len() >= pids.len() {
            // A file is complete once its total is written (the last line).
            let totals: Option<Vec<u64>> = new
                .iter()
                .map(|n| dump_total(&std::fs::read_to_string(dir.join(n)).unwrap_or_default()))
                .collect();
            if let Some(t) = totals {
                return Ok((t.iter().sum(), new));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "callgrind wrote {} of {} dump files in 30 s",
                new.len(),
                pids.len()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One counted load run of `n` requests from the client namespace; fails unless every
/// request got a 2xx.
fn load(client_ns: &str, phase: Phase, n: u64) -> Result<()> {
    let line = command_line(phase, n);
    let mut c = netns::exec(client_ns, "taskset");
    c.args(["-c", &CLIENT_CPU.to_string()]).args(&line);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", line.join(" ")))?;
    // h2load's summary is a few lines: the pipes cannot fill while it runs.
    super::load::wait_bounded(&mut child, &line, RUN_LIMIT)?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !all_succeeded(&text, n) {
        bail!(
            "`{}`: not every request succeeded:\n{}",
            line.join(" "),
            text.trim()
        );
    }
    Ok(())
}

/// Where a phase's profile is kept: the dump of its 2N-request run, per function, for
/// `callgrind_annotate` (a peer of several processes gets one file each: `.1`, `.2`, …).
pub fn profile_name(peer: &str, phase: Phase) -> String {
    format!("callgrind.{peer}.{}", phase.name())
}

/// Counts every phase of `phases` that can be counted, on the peer whose process is `root`
/// (valgrind's), writing dumps into `dir`; the dump of each phase's 2N-request run is copied
/// into `keep` as [`profile_name`] (`peer` is the peer's name).
pub fn measure(
    client_ns: &str,
    root: u32,
    dir: &Path,
    phases: &[Phase],
    n: u64,
    keep: &Path,
    peer: &str,
) -> Vec<Count> {
    phases
        .iter()
        .map(|&phase| {
            let mut c = Count {
                phase: Some(phase),
                requests: n,
                command: format!(
                    "taskset -c {CLIENT_CPU} {}",
                    command_line(phase, n).join(" ")
                ),
                ..Count::default()
            };
            let counted = (|| -> Result<f64> {
                println!("xtask: bench: counting {} ({n} requests)", phase.name());
                load(client_ns, phase, n)?;
                let pids = callgrind_pids(root)?;
                control(&pids, &["--zero"])?;
                load(client_ns, phase, n)?;
                let (a, _) = dump(&pids, dir)?;
                load(client_ns, phase, 2 * n)?;
                let (b, files) = dump(&pids, dir)?;
                for (i, f) in files.iter().enumerate() {
                    let mut to = profile_name(peer, phase);
                    if files.len() > 1 {
                        to.push_str(&format!(".{}", i + 1));
                    }
                    if let Err(e) = std::fs::copy(dir.join(f), keep.join(&to)) {
                        eprintln!("xtask: bench: cannot keep the profile {to}: {e}");
                    }
                }
                if b <= a {
                    bail!(
                        "callgrind counted no more work for {} requests than for {n} \
                         ({a} then {b} instructions): the requests were not served by the \
                         processes it runs in (pids {pids:?})",
                        2 * n
                    );
                }
                Ok((b - a) as f64 / n as f64)
            })();
            match counted {
                Ok(v) => {
                    println!(
                        "xtask: bench: {}: {v:.0} instructions a request",
                        phase.name()
                    );
                    c.per_request = Some(v);
                }
                Err(e) => c.error = Some(format!("{e:#}")),
            }
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counted_runs_use_a_fixed_number_of_requests() {
        assert_eq!(
            command_line(Phase::HttpsH2, 4000).join(" "),
            format!("h2load -t1 -c8 -m8 -n4000 https://{HOST}/")
        );
        assert_eq!(
            command_line(Phase::HttpsH1, 10).join(" "),
            format!("h2load -t1 -c8 -m1 -n10 --h1 https://{HOST}/")
        );
        assert_eq!(
            command_line(Phase::HttpProxiedKeepalive, 10).join(" "),
            format!("h2load -t1 -c8 -m1 -n10 --h1 http://{PLAIN_HOST}/")
        );
    }

    #[test]
    fn only_what_can_be_counted_is_accepted() {
        assert!(check_selection(&PEERS, &PHASES).is_ok());
        let e = check_selection(&[PeerKind::ForceHttpsXdp], &PHASES).unwrap_err();
        assert!(e.to_string().contains("not force-https-xdp"), "{e}");
        let e = check_selection(&PEERS, &[Phase::HttpsNewConn]).unwrap_err();
        assert!(e.to_string().contains("not https-new-conn"), "{e}");
    }

    #[test]
    fn h2load_output_counts_only_when_every_request_succeeded() {
        let ok = "finished in 1.2s\nrequests: 4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed, 0 errored, 0 timeout\nstatus codes: 4000 2xx, 0 3xx, 0 4xx, 0 5xx\n";
        assert!(all_succeeded(ok, 4000));
        assert!(!all_succeeded(ok, 400));
        let failed = "requests: 4000 total, 4000 started, 4000 done, 3990 succeeded, 10 failed, 0 errored, 0 timeout\nstatus codes: 3990 2xx, 0 3xx, 0 4xx, 10 5xx\n";
        assert!(!all_succeeded(failed, 4000));
        let redirected = "requests: 10 total, 10 started, 10 done, 10 succeeded, 0 failed, 0 errored, 0 timeout\nstatus codes: 0 2xx, 10 3xx, 0 4xx, 0 5xx\n";
        assert!(!all_succeeded(redirected, 10));
    }

    #[test]
    fn the_listing_gives_the_pids() {
        let listing = "PID 1776: /tmp/fh run --config fh.toml\nPID 12: nginx: worker process\n";
        assert_eq!(listed_pids(listing), vec![1776, 12]);
        assert!(listed_pids("").is_empty());
    }

    #[test]
    fn a_dump_total_is_its_totals_line() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\npid: 12\ncmd: x\npart: 2\n\npositions: line\nevents: Ir\nsummary: 123456\n\nfn=(1) main\n5 3\n\ntotals: 123456\n";
        assert_eq!(dump_total(dump), Some(123456));
        // Written up to the header only: not complete yet.
        assert_eq!(
            dump_total("version: 1\nevents: Ir\nsummary: 123456\n"),
            None
        );
    }
}
