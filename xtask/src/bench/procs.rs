//! The processes the bench starts (a peer and its backend), with their output in log files,
//! and how they are stopped: SIGTERM, a grace period, then SIGKILL, always reaped, also on drop.
//! Only our own children are signalled, by pid; and process-tree facts (threads, CPU affinity)
//! are read from /proc for the report.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cmd;

/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A process we started.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

/// The processes of one peer's run; stopped in reverse order on `stop_all` and on drop.
#[derive(Default)]
pub struct Procs {
    list: Vec<Proc>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl Procs {
    /// Starts `c` with stdin closed and stdout/stderr in `dir/<name>.log`, in its own process
    /// group (so a Ctrl-C reaches only xtask, which then stops it in order). Returns its pid.
    pub fn spawn(&mut self, name: &str, mut c: Command, dir: &Path) -> Result<u32> {
        use std::os::unix::process::CommandExt;
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone().context("cannot duplicate the log file")?;
        println!("xtask: bench: starting {name}: {}", cmd::show(&c));
        let child = c
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pid = child.id();
        self.list.push(Proc {
            name: name.into(),
            child,
            log,
        });
        Ok(pid)
    }

    /// Fails when one of the processes has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for p in &mut self.list {
            if let Some(status) = p.child.try_wait().context("cannot poll a child")? {
                let out = tail(&p.log, 30);
                let last = out
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                bail!("{} exited ({status}): {last}\nlast output:\n{out}", p.name);
            }
        }
        Ok(())
    }

    /// The last lines of every process's log.
    pub fn logs(&self, lines: usize) -> String {
        let mut s = String::new();
        for p in &self.list {
            s.push_str(&format!("---- {} ({}) ----\n", p.name, p.log.display()));
            s.push_str(&tail(&p.log, lines));
            s.push('\n');
        }
        s
    }

    /// Stops every process, last started first. Idempotent.
    pub fn stop_all(&mut self) {
        while let Some(mut p) = self.list.pop() {
            stop(&mut p);
        }
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// SIGTERM, up to `STOP_GRACE` to exit, then SIGKILL; always reaped.
fn stop(p: &mut Proc) {
    let pid = p.child.id();
    if let Ok(Some(_)) = p.child.try_wait() {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let start = Instant::now();
    while start.elapsed() < STOP_GRACE {
        if let Ok(Some(_)) = p.child.try_wait() {
            println!("xtask: bench: stopped {} (pid {pid})", p.name);
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = p.child.kill();
    let _ = p.child.wait();
    println!(
        "xtask: bench: killed {} (pid {pid}) after {} s",
        p.name,
        STOP_GRACE.as_secs()
    );
}

/// What a peer's process tree looks like once it is up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TreeFacts {
    /// Processes in the tree (the started one and its descendants).
    pub processes: usize,
    /// Threads over all of them.
    pub threads: usize,
    /// The distinct `Cpus_allowed_list` values of all threads.
    pub cpus_allowed: Vec<String>,
}

/// The parent pid from the text of `/proc/PID/stat` (the comm may contain spaces and `)`).
pub fn ppid_from_stat(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The fields of `/proc/PID/stat` the bench uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub ppid: u32,
    /// A kernel thread (`PF_KTHREAD` in the flags).
    pub kthread: bool,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
}

/// Parses the text of `/proc/PID/stat`.
pub fn parse_stat(stat: &str) -> Option<Stat> {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        comm,
        ppid: num(1)? as u32,
        kthread: num(6)? & PF_KTHREAD != 0,
        ticks: num(11)? + num(12)?,
    })
}

/// `/proc/PID/stat` of every process (pid → fields).
pub fn all_stats() -> BTreeMap<u32, Stat> {
    let mut m = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(st) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            {
                m.insert(pid, st);
            }
        }
    }
    m
}

/// CPU used between two `all_stats` reads by user-space processes that are neither `root` nor
/// its descendants (kernel threads are left out: they may be doing our network work).
/// Returns the ticks and the biggest consumers as `comm (pid) ticks`.
pub fn foreign_ticks(
    before: &BTreeMap<u32, Stat>,
    after: &BTreeMap<u32, Stat>,
    root: u32,
) -> (u64, Vec<String>) {
    let is_ours = |mut pid: u32| {
        for _ in 0..64 {
            if pid == root {
                return true;
            }
            match after.get(&pid).or_else(|| before.get(&pid)) {
                Some(s) if s.ppid != 0 && s.ppid != pid => pid = s.ppid,
                _ => return false,
            }
        }
        false
    };
    let mut users: Vec<(u64, String)> = after
        .iter()
        .filter(|(pid, s)| !s.kthread && !is_ours(**pid))
        .filter_map(|(pid, s)| {
            let was = before
                .get(pid)
                .filter(|b| b.comm == s.comm)
                .map_or(0, |b| b.ticks);
            let d = s.ticks.saturating_sub(was);
            (d > 0).then(|| (d, format!("{} ({pid}) {d}", s.comm)))
        })
        .collect();
    users.sort_by_key(|u| std::cmp::Reverse(u.0));
    let total = users.iter().map(|(d, _)| d).sum();
    (total, users.into_iter().take(5).map(|(_, s)| s).collect())
}

/// `root` and all its descendants.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(ppid_from_stat)
            {
                parents.push((pid, pp));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// Threads and CPU affinity of `root`'s process tree.
pub fn tree_facts(root: u32) -> TreeFacts {
    let pids = descendants(root);
    let mut f = TreeFacts {
        processes: pids.len(),
        ..TreeFacts::default()
    };
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            f.threads += 1;
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            if let Some(v) = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            {
                let v = v.trim().to_string();
                if !f.cpus_allowed.contains(&v) {
                    f.cpus_allowed.push(v);
                }
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_parsing() {
        assert_eq!(
            ppid_from_stat("1234 (nginx: worker) S 1200 1234 1234 0 -1"),
            Some(1200)
        );
        assert_eq!(ppid_from_stat("5 (a) b)) R 7 5 5"), Some(7));
        assert_eq!(ppid_from_stat("garbage"), None);
    }

    #[test]
    fn stat_fields() {
        let s =
            parse_stat("42 (rust c) R 7 42 42 0 -1 4194560 10 0 0 0 150 25 0 0 20 0 1").unwrap();
        assert_eq!(s.comm, "rust c");
        assert_eq!((s.ppid, s.kthread, s.ticks), (7, false, 175));
        let k = parse_stat("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 3 4 0 0").unwrap();
        assert!(k.kthread);
    }

    #[test]
    fn foreign_cpu_leaves_out_our_tree_and_kernel_threads() {
        let st = |comm: &str, ppid: u32, kthread: bool, ticks: u64| Stat {
            comm: comm.into(),
            ppid,
            kthread,
            ticks,
        };
        let mut before = BTreeMap::new();
        before.insert(10, st("xtask", 1, false, 5));
        before.insert(11, st("wrk", 10, false, 0));
        before.insert(12, st("nginx", 10, false, 0));
        before.insert(13, st("nginx", 12, false, 0));
        before.insert(20, st("rustc", 1, false, 100));
        before.insert(30, st("napi/x", 2, true, 0));
        let mut after = before.clone();
        for (pid, t) in [(10, 6), (11, 500), (13, 900), (20, 130), (30, 300)] {
            after.get_mut(&pid).unwrap().ticks = t;
        }
        after.insert(21, st("cc1", 20, false, 40));
        let (total, top) = foreign_ticks(&before, &after, 10);
        assert_eq!(total, 30 + 40);
        assert_eq!(
            top,
            vec!["cc1 (21) 40".to_string(), "rustc (20) 30".to_string()]
        );
    }

    #[test]
    fn own_tree_has_this_process() {
        let me = std::process::id();
        assert_eq!(descendants(me)[0], me);
        let f = tree_facts(me);
        assert!(f.processes >= 1 && f.threads >= 1, "{f:?}");
        assert!(!f.cpus_allowed.is_empty());
    }
}
