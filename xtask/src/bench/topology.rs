//! The bench network: an edge and a client namespace (`fhb-<pid>-edge`, `fhb-<pid>-cli`) joined
//! by a veth pair, made fresh for every peer and deleted after it (also on failure, Ctrl-C or
//! panic, through `Drop`).
//!
//! | namespace | interface | address | CPU of its receive work |
//! |---|---|---|---|
//! | edge | `fb<pid>e` | 198.51.100.1/24 | 0 (edge) |
//! | client | `fb<pid>c` | 198.51.100.2/24 | 1 (load generator) |
//!
//! Where the kernel's receive work runs. A veth transmit hands the frame to the peer end's
//! receive path. Without NAPI on the receiving end it goes through `netif_rx` and the backlog
//! softirq of the *sending* CPU, so the edge's TCP/IP receive work would be billed to the
//! client CPU and the other way round. veth has a NAPI instance only with XDP attached or GRO
//! on, and even then (veth_xmit) uses it for a TCP frame only when the *sending* end has TSO
//! off (`veth_skb_is_eligible_for_gro`) or the receiving end runs XDP. So both ends get
//! `ethtool -K IF gro on tso off` (the messages here are small: TSO would not aggregate
//! anything) and threaded NAPI (`echo 1 > /sys/class/net/IF/threaded`, run inside the
//! namespace because `ip netns exec` remounts /sys for it). Each end's `napi/<if>-<id>` kthread
//! is pinned to the CPU of its side: the edge's receive path, XDP included, runs on CPU 0, the
//! client's on CPU 1. The threads are looked up again before every pass and pinned again. This
//! was checked with /proc/softirqs: with GRO alone, NET_RX softirqs ran on both CPUs for the
//! other side's traffic; with TSO off too, the veth traffic raises none (loopback traffic
//! between a peer and the backend still does, on the edge CPU where both run). Every pass
//! records the NET_RX softirqs per request on both CPUs, and the report shows where the edge
//! CPU's time went (user / system / softirq).
//!
//! The client end runs an XDP program that passes every frame (`crate::xdp_pass`), for every
//! peer alike: a veth end delivers the frames its peer's driver-mode XDP program sends with
//! `XDP_TX` (force-https's SYN-ACKs) only when it runs one itself. It also gives the client end
//! NAPI whatever the sender's TSO. The only frames it drops are those to the SYN flood's
//! spoofed source (`flood::FLOOD_SRC`, owned by no host): in a real flood their SYN-ACKs go
//! to whoever owns the address, not back to the attacker's CPU.
//!
//! veth is made without a transmit queue (`noqueue`): a frame sent while the receiving end's
//! ring (256 frames, for its XDP program) is full is dropped. With 1 MiB responses that was
//! up to a tenth of the edge's segments, and retransmission timeouts set the p99, the most
//! for the fastest sender. `--veth-queue edge|fifo` gives the edge end (and the client end)
//! the queue a NIC has ([`Topology::queue`]): veth stops it while the ring is full, and
//! nothing is dropped, but the load generator then spends half as much again per response
//! (BENCHMARKS.md, run X). The default stays `none`, as every earlier run.
//!
//! The client namespace gets `ip_local_port_range = 1024 65535` and `tcp_tw_reuse = 1` for the
//! new-connection phases, and a hosts file (`/etc/netns/fhb-<pid>-cli/hosts`, which
//! `ip netns exec` bind-mounts over /etc/hosts) that resolves bench.example (and the bench's
//! other names, such as the not-enforced plain.bench.example) to the edge, so wrk and h2load
//! send the right SNI and Host.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{CLIENT_CPU, EDGE_CPU};
use crate::{cmd, netns};

pub const EDGE_V4: &str = "198.51.100.1";
const EDGE_ADDR: &str = "198.51.100.1/24";
const CLIENT_ADDR: &str = "198.51.100.2/24";

/// The qdisc of `--veth-queue edge` and `fifo` ([`Topology::queue`]).
pub const VETH_QDISC: &str = "pfifo_fast";

/// Whether `tc qdisc show dev IF` output names `kind` as the device's root qdisc.
fn qdisc_is(show: &str, kind: &str) -> bool {
    show.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("qdisc") && w.next() == Some(kind) && l.contains(" root ")
    })
}

/// The client namespace's hosts file: localhost, and every name of `hosts` on the edge.
pub fn hosts_file(hosts: &[&str]) -> String {
    format!("127.0.0.1 localhost\n{EDGE_V4} {}\n", hosts.join(" "))
}

/// The edge and client namespaces and interfaces of topology `nth` of process `pid`:
/// `fhb-<pid>[-<nth>]-edge`, `fhb-<pid>[-<nth>]-cli`, `fb<pid>[<nth>]e`, `fb<pid>[<nth>]c`
/// (no `nth` for the first). Interface names stay within IFNAMSIZ (15 bytes) for any pid
/// (at most 7 digits, `pid_max` ≤ 4,194,304) and up to 100 topologies.
fn names(pid: u32, nth: usize) -> [String; 4] {
    let (tag, iftag) = match nth {
        0 => (String::new(), String::new()),
        n => (format!("-{n}"), n.to_string()),
    };
    [
        format!("fhb-{pid}{tag}-edge"),
        format!("fhb-{pid}{tag}-cli"),
        format!("fb{pid}{iftag}e"),
        format!("fb{pid}{iftag}c"),
    ]
}

/// A NAPI kthread and the CPU it was pinned to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NapiThread {
    pub name: String,
    pub pid: u32,
    pub cpu: usize,
}

/// The two namespaces and their veth pair. `cleanup` (also on drop) deletes them.
pub struct Topology {
    pub edge: String,
    pub client: String,
    pub edge_if: String,
    pub client_if: String,
    /// Namespaces actually created.
    created: Vec<String>,
    /// `/etc/netns/<client>` when we created it, and `/etc/netns` when we created that too.
    etc_dirs: Vec<PathBuf>,
    /// The pass program on the client end (detached before the namespaces go).
    pass: Option<crate::xdp_pass::PassProgram>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.cleanup();
    }
}

impl Topology {
    /// Creates both namespaces, the veth pair, addresses, sysctls, GRO, threaded NAPI and the
    /// client's hosts file, which resolves every name of `hosts` to the edge.
    pub fn create(hosts: &[&str]) -> Result<Topology> {
        Topology::create_nth(hosts, 0)
    }

    /// As [`Topology::create`], for the `nth` of several that exist at once (`--paired`
    /// runs every peer at the same time, each in its own pair): the names get `-<nth>` (and
    /// the interfaces `<nth>`) after the pid, except for the first, named as `create` names
    /// it. The addresses are the same in every pair: each pair is its own network.
    pub fn create_nth(hosts: &[&str], nth: usize) -> Result<Topology> {
        let [edge, client, edge_if, client_if] = names(std::process::id(), nth);
        let mut t = Topology {
            edge,
            client,
            edge_if,
            client_if,
            created: Vec::new(),
            etc_dirs: Vec::new(),
            pass: None,
        };
        for ns in [t.edge.clone(), t.client.clone()] {
            netns::add(&ns)?;
            t.created.push(ns);
        }
        netns::ip(
            &t.edge,
            &[
                "link",
                "add",
                &t.edge_if,
                "type",
                "veth",
                "peer",
                "name",
                &t.client_if,
                "netns",
                &t.client,
            ],
        )
        .context("cannot create the veth pair")?;
        for (ns, dev, addr) in [
            (&t.edge, &t.edge_if, EDGE_ADDR),
            (&t.client, &t.client_if, CLIENT_ADDR),
        ] {
            netns::ip(ns, &["addr", "add", addr, "dev", dev])?;
            netns::ip(ns, &["link", "set", "lo", "up"])?;
            netns::ip(ns, &["link", "set", dev, "up"])?;
        }
        for kv in [
            "net.ipv4.ip_local_port_range=1024 65535",
            "net.ipv4.tcp_tw_reuse=1",
        ] {
            in_ns(&t.client, &["sysctl", "-q", "-w", kv])?;
        }
        for (ns, dev) in [(&t.edge, &t.edge_if), (&t.client, &t.client_if)] {
            in_ns(ns, &["ethtool", "-K", dev, "gro", "on", "tso", "off"])?;
            in_ns(
                ns,
                &[
                    "sh",
                    "-c",
                    &format!("echo 1 > /sys/class/net/{dev}/threaded"),
                ],
            )?;
        }
        // An XDP program on the client end, for every peer alike: without one, frames the
        // edge's driver-mode XDP program sends with XDP_TX are not delivered (veth). It drops
        // the frames to the SYN flood's spoofed source (nothing else is sent there), as a real
        // flood's SYN-ACKs never reach the attacker (`flood.rs`).
        let flood_src = super::flood::FLOOD_SRC
            .parse()
            .context("the flood's source address")?;
        t.pass = Some(crate::xdp_pass::attach_dropping(
            &t.client,
            &t.client_if,
            flood_src,
        )?);
        t.write_hosts(hosts)?;
        Ok(t)
    }

    fn write_hosts(&mut self, hosts: &[&str]) -> Result<()> {
        let base = PathBuf::from("/etc/netns");
        if !base.exists() {
            std::fs::create_dir(&base).context("cannot create /etc/netns")?;
            self.etc_dirs.push(base.clone());
        }
        let dir = base.join(&self.client);
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        self.etc_dirs.push(dir.clone());
        std::fs::write(dir.join("hosts"), hosts_file(hosts))
            .context("cannot write the client namespace's hosts file")?;
        Ok(())
    }

    /// Software interrupt coalescing on both ends (`--napi-defer-hard-irqs`,
    /// `--gro-flush-timeout`): after a poll that did work, up to `defer` polls come from a
    /// timer `timeout_ns` later instead of the next frame's wake-up. Set on the device, so
    /// the NAPI instances made later (an XDP attach) inherit it; read back to make sure.
    pub fn coalesce(&self, defer: u32, timeout_ns: u64) -> Result<()> {
        for (ns, dev) in [(&self.edge, &self.edge_if), (&self.client, &self.client_if)] {
            let sys = format!("/sys/class/net/{dev}");
            let got = in_ns(
                ns,
                &[
                    "sh",
                    "-c",
                    &format!(
                        "echo {defer} > {sys}/napi_defer_hard_irqs && \
                         echo {timeout_ns} > {sys}/gro_flush_timeout && \
                         cat {sys}/napi_defer_hard_irqs {sys}/gro_flush_timeout"
                    ),
                ],
            )
            .with_context(|| format!("cannot set interrupt coalescing on {dev}"))?;
            let want = format!("{defer}\n{timeout_ns}");
            if got.trim() != want {
                bail!("{dev}: interrupt coalescing reads back {got:?}, not {want:?}");
            }
        }
        Ok(())
    }

    /// A transmit queue on the edge end, and on the client end too when `client_too`
    /// (`--veth-queue edge|fifo`): `pfifo_fast`, the qdisc the kernel
    /// gives a device that has a queue (`net.core.default_qdisc`), 1,000 frames long
    /// (txqueuelen). veth is made without one (`noqueue`). With no queue, a frame sent while
    /// the receiving end's ring (256 frames, the XDP pass program's) is full is dropped and TCP
    /// must retransmit it; with a queue, veth stops the queue while the ring is full, the frame
    /// waits, and TCP's own limits (TCP small queues) slow the sender, as a NIC's queue does.
    /// Read back to make sure.
    pub fn queue(&self, client_too: bool) -> Result<()> {
        let ends = [(&self.edge, &self.edge_if), (&self.client, &self.client_if)];
        for (ns, dev) in &ends[..if client_too { 2 } else { 1 }] {
            in_ns(
                ns,
                &["tc", "qdisc", "replace", "dev", dev, "root", VETH_QDISC],
            )
            .with_context(|| format!("cannot give {dev} a {VETH_QDISC} queue"))?;
            let got = in_ns(ns, &["tc", "qdisc", "show", "dev", dev])?;
            if !qdisc_is(&got, VETH_QDISC) {
                bail!("{dev}: `tc qdisc show` reads {got:?}, not {VETH_QDISC}");
            }
        }
        Ok(())
    }

    /// Finds the NAPI kthreads of both veth ends and pins them (edge → `EDGE_CPU`, client →
    /// `CLIENT_CPU`). Fails when the edge end has none (its receive work would not be on the
    /// edge CPU).
    pub fn pin_napi(&self) -> Result<Vec<NapiThread>> {
        let mut out = Vec::new();
        for (dev, cpu) in [(&self.edge_if, EDGE_CPU), (&self.client_if, CLIENT_CPU)] {
            let threads = napi_threads(dev);
            if threads.is_empty() {
                bail!("no napi/{dev}-* kthread: threaded NAPI is not active on {dev}");
            }
            for (pid, name) in threads {
                set_affinity(pid, cpu)
                    .with_context(|| format!("cannot pin {name} (pid {pid}) to CPU {cpu}"))?;
                out.push(NapiThread { name, pid, cpu });
            }
        }
        Ok(out)
    }

    /// `ip -d link show` of the edge interface (shows the XDP attachment).
    pub fn edge_link(&self) -> String {
        cmd::output(Command::new("ip").args([
            "-n",
            &self.edge,
            "-d",
            "link",
            "show",
            &self.edge_if,
        ]))
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
    }

    /// Deletes both namespaces (the veth pair goes with them) and the hosts file. Idempotent.
    pub fn cleanup(&mut self) {
        self.pass = None;
        for ns in self.created.drain(..).rev() {
            let left = netns::pids(&ns);
            if !left.is_empty() {
                eprintln!("xtask: bench: warning: processes still in {ns}: {left:?}");
            }
            if let Err(e) = netns::del(&ns) {
                eprintln!("xtask: bench: cleanup: {e:#}");
            }
        }
        for dir in self.etc_dirs.drain(..).rev() {
            let r = if dir.join("hosts").exists() {
                std::fs::remove_dir_all(&dir)
            } else {
                std::fs::remove_dir(&dir)
            };
            if let Err(e) = r {
                eprintln!(
                    "xtask: bench: cleanup: cannot remove {}: {e}",
                    dir.display()
                );
            }
        }
    }
}

/// Runs a command inside a namespace; fails with its stderr.
pub fn in_ns(ns: &str, args: &[&str]) -> Result<String> {
    let mut c = netns::exec(ns, args[0]);
    c.args(&args[1..]);
    cmd::stdout_of(&mut c)
}

/// `(pid, name)` of the kthreads named `napi/<dev>-<id>`.
pub fn napi_threads(dev: &str) -> Vec<(u32, String)> {
    let prefix = format!("napi/{dev}-");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut v: Vec<(u32, String)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let comm = comm.trim_end();
            is_napi_thread_of(comm, &prefix).then(|| (pid, comm.to_string()))
        })
        .collect();
    v.sort();
    v
}

/// `napi/<dev>-<digits>`.
fn is_napi_thread_of(comm: &str, prefix: &str) -> bool {
    comm.strip_prefix(prefix)
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// Pins a task (thread) to one CPU.
pub fn set_affinity(pid: u32, cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(
            pid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        )
    };
    if rc != 0 {
        bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_qdisc_is_read_from_tc() {
        let fast = "qdisc pfifo_fast 8001: root refcnt 2 bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1\n";
        assert!(qdisc_is(fast, VETH_QDISC));
        assert!(!qdisc_is("qdisc noqueue 0: root refcnt 2\n", VETH_QDISC));
        assert!(!qdisc_is(
            "qdisc pfifo 8002: root refcnt 3 limit 1000p\n",
            VETH_QDISC
        ));
        assert!(!qdisc_is(
            "qdisc pfifo_fast 8003: parent 1:1 bands 3\n",
            VETH_QDISC
        ));
        assert!(!qdisc_is("", VETH_QDISC));
    }

    #[test]
    fn topologies_side_by_side_get_their_own_names() {
        assert_eq!(
            names(4242, 0),
            ["fhb-4242-edge", "fhb-4242-cli", "fb4242e", "fb4242c"]
        );
        assert_eq!(
            names(4242, 2),
            ["fhb-4242-2-edge", "fhb-4242-2-cli", "fb42422e", "fb42422c"]
        );
        for nth in 0..100 {
            let [_, _, e, c] = names(4_194_304, nth);
            assert!(e.len() <= 15 && c.len() <= 15, "{e} {c}");
        }
    }

    #[test]
    fn hosts_file_names_every_host() {
        assert_eq!(
            hosts_file(&["bench.example", "plain.bench.example"]),
            "127.0.0.1 localhost\n198.51.100.1 bench.example plain.bench.example\n"
        );
        assert_eq!(
            hosts_file(&["bench.example"]),
            "127.0.0.1 localhost\n198.51.100.1 bench.example\n"
        );
    }

    #[test]
    fn napi_thread_names() {
        assert!(is_napi_thread_of("napi/fb123e-8193", "napi/fb123e-"));
        assert!(!is_napi_thread_of("napi/fb123e-", "napi/fb123e-"));
        assert!(!is_napi_thread_of("napi/fb1234e-1", "napi/fb123e-"));
        assert!(!is_napi_thread_of("napi/fb123e-1x", "napi/fb123e-"));
    }
}
