//! CPU accounting from `/proc/stat`: per-CPU tick counters, their deltas over a run, busy time
//! (everything but idle and iowait), and the "is the machine quiet" sample taken before a run.
//!
//! Busy = user + nice + system + irq + softirq + steal (guest time is already inside user and
//! nice). The edge CPU's busy time over a run, divided by the requests served, is the edge CPU
//! per request; the same over all CPUs is the whole-machine CPU per request.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// The tick counters of one `cpu` line of `/proc/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// Ticks spent doing anything: all but idle and iowait.
    pub fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq + self.steal
    }

    /// All ticks.
    pub fn total(&self) -> u64 {
        self.busy() + self.idle + self.iowait
    }

    /// `self - earlier`, field by field (counters only grow; a wrap gives 0).
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            nice: self.nice.saturating_sub(earlier.nice),
            system: self.system.saturating_sub(earlier.system),
            idle: self.idle.saturating_sub(earlier.idle),
            iowait: self.iowait.saturating_sub(earlier.iowait),
            irq: self.irq.saturating_sub(earlier.irq),
            softirq: self.softirq.saturating_sub(earlier.softirq),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }

    /// busy / total, 0 when no tick passed.
    pub fn utilization(&self) -> f64 {
        ratio(self.busy(), self.total())
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// One read of `/proc/stat`: the aggregate `cpu` line and every `cpuN` line (index N).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub all: CpuTimes,
    pub cpus: Vec<CpuTimes>,
    /// Processes and threads created since boot (the `processes` line).
    pub forks: u64,
}

impl Snapshot {
    /// `self - earlier` for the aggregate and each CPU.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            all: self.all.since(&earlier.all),
            cpus: self
                .cpus
                .iter()
                .zip(&earlier.cpus)
                .map(|(a, b)| a.since(b))
                .collect(),
            forks: self.forks.saturating_sub(earlier.forks),
        }
    }

    /// The counters of CPU `n` (zeros when it does not exist).
    pub fn cpu(&self, n: usize) -> CpuTimes {
        self.cpus.get(n).copied().unwrap_or_default()
    }
}

/// Parses the text of `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Result<Snapshot> {
    let mut snap = Snapshot::default();
    let mut saw_all = false;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        if name == "processes" {
            snap.forks = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            continue;
        }
        let Some(rest) = name.strip_prefix("cpu") else {
            continue;
        };
        let nums: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
        if nums.len() < 4 {
            bail!("short cpu line in /proc/stat: {line:?}");
        }
        let at = |i: usize| nums.get(i).copied().unwrap_or(0);
        let t = CpuTimes {
            user: at(0),
            nice: at(1),
            system: at(2),
            idle: at(3),
            iowait: at(4),
            irq: at(5),
            softirq: at(6),
            steal: at(7),
        };
        if rest.is_empty() {
            snap.all = t;
            saw_all = true;
        } else {
            let n: usize = rest
                .parse()
                .with_context(|| format!("bad cpu name {name:?} in /proc/stat"))?;
            if snap.cpus.len() <= n {
                snap.cpus.resize(n + 1, CpuTimes::default());
            }
            snap.cpus[n] = t;
        }
    }
    if !saw_all {
        bail!("no aggregate `cpu` line in /proc/stat");
    }
    Ok(snap)
}

/// Reads `/proc/stat` now.
pub fn read() -> Result<Snapshot> {
    let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    parse_proc_stat(&text)
}

/// Clock ticks per second of `/proc/stat` (USER_HZ, normally 100).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Where the time of one CPU (or all of them) went during a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Busy CPU seconds.
    pub busy_s: f64,
    /// Busy share of the elapsed CPU time (0..1 per CPU; for all CPUs, of all of them).
    pub utilization: f64,
    /// Shares of the elapsed time spent in user (with nice), system, softirq and irq.
    pub user: f64,
    pub system: f64,
    pub softirq: f64,
    pub irq: f64,
}

impl Usage {
    pub fn of(t: &CpuTimes, ticks_per_s: f64) -> Usage {
        let total = t.total();
        Usage {
            busy_s: t.busy() as f64 / ticks_per_s,
            utilization: t.utilization(),
            user: ratio(t.user + t.nice, total),
            system: ratio(t.system, total),
            softirq: ratio(t.softirq, total),
            irq: ratio(t.irq, total),
        }
    }
}

/// The per-CPU counts of one softirq (e.g. `NET_RX`) from the text of /proc/softirqs.
pub fn parse_softirq(text: &str, name: &str) -> Option<Vec<u64>> {
    let tag = format!("{name}:");
    let line = text.lines().find(|l| l.trim_start().starts_with(&tag))?;
    Some(
        line.trim_start()[tag.len()..]
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect(),
    )
}

/// NET_RX softirqs raised so far on each CPU.
pub fn net_rx_softirqs() -> Vec<u64> {
    std::fs::read_to_string("/proc/softirqs")
        .ok()
        .and_then(|t| parse_softirq(&t, "NET_RX"))
        .unwrap_or_default()
}

/// Utilization of each CPU over `window` (a quiet-machine probe).
pub fn sample(window: Duration) -> Result<Vec<f64>> {
    let a = read()?;
    std::thread::sleep(window);
    let b = read()?;
    Ok(b.since(&a).cpus.iter().map(CpuTimes::utilization).collect())
}

/// True when every CPU's utilization is below `limit`.
pub fn is_quiet(utilizations: &[f64], limit: f64) -> bool {
    utilizations.iter().all(|u| *u < limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "cpu  100 5 50 1000 10 1 4 0 0 0\n\
                     cpu0 60 5 30 400 5 1 4 0 0 0\n\
                     cpu1 40 0 20 600 5 0 0 0 0 0\n\
                     intr 1 2 3\nctxt 99\nprocesses 1000\n";
    const B: &str = "cpu  300 5 150 1200 12 1 54 0 0 0\n\
                     cpu0 220 5 100 410 6 1 54 0 0 0\n\
                     cpu1 80 0 50 790 6 0 0 0 0 0\nprocesses 1003\n";

    #[test]
    fn parses_aggregate_and_each_cpu() {
        let s = parse_proc_stat(A).unwrap();
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.all.user, 100);
        assert_eq!(s.cpu(0).softirq, 4);
        assert_eq!(s.cpu(1).idle, 600);
        assert_eq!(s.cpu(7), CpuTimes::default());
        assert!(parse_proc_stat("intr 1\n").is_err());
    }

    #[test]
    fn busy_excludes_idle_and_iowait() {
        let d = parse_proc_stat(B)
            .unwrap()
            .since(&parse_proc_stat(A).unwrap());
        let c0 = d.cpu(0);
        // user 160 + system 70 + softirq 50 = 280 busy; idle 10 + iowait 1.
        assert_eq!(c0.busy(), 280);
        assert_eq!(c0.total(), 291);
        let u = Usage::of(&c0, 100.0);
        assert!((u.busy_s - 2.8).abs() < 1e-9);
        assert!((u.softirq - 50.0 / 291.0).abs() < 1e-9);
        assert_eq!(d.all.busy(), 200 + 100 + 50);
        assert_eq!(d.forks, 3);
        assert!(is_quiet(&[0.01, 0.04], 0.1));
        assert!(!is_quiet(&[0.01, 0.4], 0.1));
    }

    #[test]
    fn softirqs() {
        let t = "                    CPU0       CPU1\n          HI:          0          1\n      NET_RX:     112464     224894\n         RCU:         5          6\n";
        assert_eq!(parse_softirq(t, "NET_RX"), Some(vec![112464, 224894]));
        assert_eq!(parse_softirq(t, "HI"), Some(vec![0, 1]));
        assert_eq!(parse_softirq(t, "NET_TX"), None);
    }

    #[test]
    fn short_cpu_lines_are_errors_and_old_kernels_pad_with_zero() {
        assert!(parse_proc_stat("cpu 1 2 3\n").is_err());
        let s = parse_proc_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(s.all.steal, 0);
        assert_eq!(s.all.busy(), 6);
    }
}
