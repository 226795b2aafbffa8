//! Loading and attaching the XDP program, the host-map projection of the policy table, and
//! the counters.
//!
//! The object file is built by `build.rs` (aya-build) and embedded in the binary. The maps
//! named in `force-https-common` are the contract: userspace writes the listen ports into
//! `FH_PORTS`, the response size constants into `FH_SETTINGS`, keeps `FH_HOSTS` equal to the
//! projection of the policy table ([`project`]), puts one AF_XDP socket per RX queue into
//! `FH_XSKS` ([`crate::afxdp`]) and sums the per-CPU counters of `FH_STATS`.
//!
//! Dropping [`XdpHandle`] stops the responders and the map sync and detaches the program. The
//! program is attached through a BPF link owned by this process: if the daemon dies, the
//! kernel detaches it with the last file descriptor, and with no AF_XDP socket left every
//! redirect falls back to `XDP_PASS`. Either way port 80 goes back to the kernel sockets.

use std::{
    collections::HashMap as StdHashMap,
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Instant,
};

use anyhow::{Context, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use force_https_common::{
    FlowKey, HOST_ENFORCED, HOST_PASS, HostValue, MAP_FLOWS, MAP_HOSTS, MAP_PORTS, MAP_SETTINGS,
    MAP_STATS, MAP_XSKS, PROG_NAME, STAT_COUNT, STAT_NAMES, Settings, host_check, host_key,
};
use force_https_proto::response::{RedirectPrefix, RedirectStatus};

use crate::{
    config::{ACME_PREFIX, XdpConfig, XdpMode as ConfigMode},
    daemon::Shared,
    policy::PolicyTable,
};

/// The embedded XDP object.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/force-https-ebpf"));

/// Where the syncookie mode of the daemon's network namespace is set.
const SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";

/// The flow LRU, shared with the responders (which add flows they hand back to the kernel).
pub type FlowMap = Arc<Mutex<HashMap<MapData, FlowKey, u32>>>;

/// An attached XDP program; detached on drop.
pub struct XdpHandle {
    ebpf: Ebpf,
    stats: PerCpuArray<MapData, u64>,
    hosts: Option<HostMap>,
    flows: FlowMap,
    queues: u32,
    sync: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
    responders: Option<crate::afxdp::Responders>,
    /// The interface it is attached to.
    pub interface: String,
    /// The mode it was attached in.
    pub mode: &'static str,
}

impl std::fmt::Debug for XdpHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XdpHandle({} {})", self.interface, self.mode)
    }
}

/// Sets `net.ipv4.tcp_syncookies = 2` in this network namespace: the kernel then answers every
/// SYN with a cookie, which is what lets XDP answer a connection's first request without any
/// kernel socket.
fn enable_syncookies() -> anyhow::Result<()> {
    let before =
        std::fs::read_to_string(SYNCOOKIES).with_context(|| format!("cannot read {SYNCOOKIES}"))?;
    std::fs::write(SYNCOOKIES, "2\n").with_context(|| {
        format!("cannot set net.ipv4.tcp_syncookies=2 (writing {SYNCOOKIES}); the XDP fast path needs it")
    })?;
    tracing::warn!(
        previous = before.trim(),
        "XDP fast path: set net.ipv4.tcp_syncookies=2 in this network namespace. Cost: every \
         TCP handshake on every port now uses syncookies, so clients without TCP timestamps \
         lose window scaling and SACK (and their MSS is rounded down to one of 4 values), on \
         443 too; and a first request sent more than about 2 minutes after the handshake is \
         reset (the cookie has expired)"
    );
    Ok(())
}

/// Number of RX queues of an interface (one AF_XDP socket is bound per queue).
fn rx_queues(interface: &str) -> u32 {
    let dir = format!("/sys/class/net/{interface}/queues");
    let n = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1);
    n.max(1) as u32
}

/// The bytes of a redirect besides host and path, for the longer of the two status lines.
pub fn fixed_response_len(https_port: u16) -> u32 {
    [RedirectStatus::Moved301, RedirectStatus::Permanent308]
        .iter()
        .map(|s| RedirectPrefix::new(*s, "", https_port).response_len(b"/") - 1)
        .max()
        .unwrap_or(0) as u32
}

/// Loads the program, fills the port map and the settings, and attaches it to the configured
/// interface. The host map is filled and the responders started by [`XdpHandle::start`].
pub fn attach(cfg: &XdpConfig, ports: &[u16], https_port: u16) -> anyhow::Result<XdpHandle> {
    raise_memlock();
    enable_syncookies()?;
    let queues = rx_queues(&cfg.interface);
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_HOSTS, cfg.max_hosts)
        .map_max_entries(MAP_FLOWS, cfg.max_flows)
        .map_max_entries(MAP_XSKS, queues)
        .load(OBJECT)
        .context("cannot load the XDP object (is this root with CAP_BPF?)")?;
    {
        let mut map: HashMap<_, u16, u8> = HashMap::try_from(
            ebpf.map_mut(MAP_PORTS)
                .ok_or_else(|| anyhow!("map {MAP_PORTS} missing from the XDP object"))?,
        )?;
        for p in ports {
            map.insert(p, 1, 0)
                .with_context(|| format!("cannot add port {p} to {MAP_PORTS}"))?;
        }
    }
    let stats = PerCpuArray::try_from(
        ebpf.take_map(MAP_STATS)
            .ok_or_else(|| anyhow!("map {MAP_STATS} missing from the XDP object"))?,
    )?;
    let hosts: HashMap<MapData, u64, HostValue> = HashMap::try_from(
        ebpf.take_map(MAP_HOSTS)
            .ok_or_else(|| anyhow!("map {MAP_HOSTS} missing from the XDP object"))?,
    )?;
    let flows: HashMap<MapData, FlowKey, u32> = HashMap::try_from(
        ebpf.take_map(MAP_FLOWS)
            .ok_or_else(|| anyhow!("map {MAP_FLOWS} missing from the XDP object"))?,
    )?;
    {
        let mut settings: Array<_, Settings> = Array::try_from(
            ebpf.map_mut(MAP_SETTINGS)
                .ok_or_else(|| anyhow!("map {MAP_SETTINGS} missing from the XDP object"))?,
        )?;
        // `ready` stays 0 until the host map is filled: until then every data segment is
        // passed to the kernel.
        settings.set(
            0,
            Settings {
                fixed_len: fixed_response_len(https_port),
                ready: 0,
            },
            0,
        )?;
    }
    let prog: &mut Xdp = ebpf
        .program_mut(PROG_NAME)
        .ok_or_else(|| anyhow!("program {PROG_NAME} missing from the XDP object"))?
        .try_into()?;
    prog.load().context("the kernel rejected the XDP program")?;
    if let Some(n) = prog
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count())
    {
        tracing::debug!(verified_instructions = n, "XDP program verified");
    }
    let attempts: &[(XdpMode, &'static str)] = match cfg.mode {
        ConfigMode::Native => &[(XdpMode::Driver, "native")],
        ConfigMode::Generic => &[(XdpMode::Skb, "generic")],
        ConfigMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
    };
    let mut last = None;
    for (mode, name) in attempts {
        match prog.attach(&cfg.interface, *mode) {
            Ok(_) => {
                return Ok(XdpHandle {
                    ebpf,
                    stats,
                    hosts: Some(HostMap {
                        map: hosts,
                        current: StdHashMap::new(),
                    }),
                    flows: Arc::new(Mutex::new(flows)),
                    queues,
                    sync: None,
                    responders: None,
                    interface: cfg.interface.clone(),
                    mode: name,
                });
            }
            Err(e) => last = Some(anyhow::Error::new(e).context(format!("{name} mode"))),
        }
    }
    Err(last
        .unwrap_or_else(|| anyhow!("no attach mode"))
        .context(format!(
            "cannot attach XDP to interface {:?}",
            cfg.interface
        )))
}

/// Fills the host map, then keeps it in step with the policy (a thread woken by
/// `Policy::subscribe`), and starts the AF_XDP responders.
pub fn start(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let mut guard = shared.xdp.lock().unwrap_or_else(|p| p.into_inner());
    let Some(handle) = guard.as_mut() else {
        return Ok(());
    };
    let mut hosts = handle
        .hosts
        .take()
        .ok_or_else(|| anyhow!("XDP already started"))?;
    let t0 = Instant::now();
    let n = hosts.sync(&shared.policy.table())?;
    tracing::info!(
        entries = n,
        ms = t0.elapsed().as_millis() as u64,
        "XDP host map filled"
    );
    set_ready(&mut handle.ebpf, shared.config.https_port)?;

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut rx = shared.policy.subscribe();
    let rt = tokio::runtime::Handle::current();
    let sh = shared.clone();
    let thread = std::thread::Builder::new()
        .name("fh-xdp-hosts".into())
        .spawn(move || {
            rt.block_on(async move {
                loop {
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { break },
                        _ = stop_rx.changed() => break,
                    }
                    let t0 = Instant::now();
                    match hosts.sync(&sh.policy.table()) {
                        Ok(n) => tracing::debug!(
                            entries = n,
                            us = t0.elapsed().as_micros() as u64,
                            "XDP host map updated"
                        ),
                        Err(e) => tracing::error!("cannot update the XDP host map: {e:#}"),
                    }
                }
            })
        })
        .context("cannot start the host-map thread")?;
    handle.sync = Some((stop_tx, thread));

    let responders = crate::afxdp::start(
        &mut handle.ebpf,
        &handle.interface,
        handle.queues,
        handle.flows.clone(),
        shared,
    )?;
    handle.responders = Some(responders);
    Ok(())
}

fn set_ready(ebpf: &mut Ebpf, https_port: u16) -> anyhow::Result<()> {
    let mut settings: Array<_, Settings> = Array::try_from(
        ebpf.map_mut(MAP_SETTINGS)
            .ok_or_else(|| anyhow!("map {MAP_SETTINGS} missing from the XDP object"))?,
    )?;
    settings.set(
        0,
        Settings {
            fixed_len: fixed_response_len(https_port),
            ready: 1,
        },
        0,
    )?;
    Ok(())
}

/// The host map and what userspace last wrote into it.
struct HostMap {
    map: HashMap<MapData, u64, HostValue>,
    current: StdHashMap<u64, HostValue>,
}

impl HostMap {
    /// Writes the difference between the projection of `table` and the map's content.
    /// Returns the number of entries.
    fn sync(&mut self, table: &PolicyTable) -> anyhow::Result<usize> {
        let next = project(table);
        let stale: Vec<u64> = self
            .current
            .keys()
            .filter(|k| !next.contains_key(k))
            .copied()
            .collect();
        for k in stale {
            match self.map.remove(&k) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e).context("cannot remove a host from the XDP map"),
            }
            self.current.remove(&k);
        }
        for (k, v) in &next {
            if self.current.get(k) != Some(v) {
                self.map.insert(k, v, 0).context(
                    "cannot add a host to the XDP map (is [xdp] max_hosts large enough?)",
                )?;
                self.current.insert(*k, *v);
            }
        }
        Ok(self.current.len())
    }
}

/// The host map as the policy table dictates it: one entry per pattern (see
/// `force-https-common`), keys colliding → both entries left to the kernel.
pub fn project(table: &PolicyTable) -> StdHashMap<u64, HostValue> {
    let entries = table.entries();
    let mut out: StdHashMap<u64, HostValue> = StdHashMap::with_capacity(entries.len());
    for e in entries {
        let s = e.pattern.as_bytes();
        let mut flags = 0;
        if e.enforced {
            flags |= HOST_ENFORCED;
        }
        let other_exempt = e
            .site
            .as_ref()
            .is_some_and(|site| site.exempt_paths.iter().any(|p| p != ACME_PREFIX));
        if other_exempt {
            flags |= HOST_PASS;
        }
        let v = HostValue {
            check: host_check(s),
            len: s.len() as u16,
            flags,
        };
        match out.entry(host_key(s)) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(v);
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                // Two patterns, one key: neither can be trusted by XDP.
                slot.get_mut().flags |= HOST_PASS;
            }
        }
    }
    out
}

impl XdpHandle {
    /// The counters summed over CPUs, with their names, then the responders' counters.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<(&'static str, u64)> = (0..STAT_COUNT)
            .map(|i| {
                let v = self
                    .stats
                    .get(&i, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (STAT_NAMES[i as usize], v)
            })
            .collect();
        if let Some(r) = &self.responders {
            v.extend(r.counters());
        }
        v
    }
}

impl Drop for XdpHandle {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.sync.take() {
            let _ = stop.send(true);
            let _ = thread.join();
        }
        // Stop the responders (their sockets leave the XSK map as they close), then the
        // program is detached when `ebpf` drops.
        self.responders.take();
    }
}

/// Older kernels charge BPF maps to RLIMIT_MEMLOCK; lift it (best effort).
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}
