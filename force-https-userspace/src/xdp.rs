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
    MAP_STATS, MAP_XSKS, PROG_NAME, STAT_COUNT, STAT_HELP, STAT_NAMES, Settings, host_check,
    host_key,
};
use force_https_proto::response::{RedirectPrefix, RedirectStatus};

use crate::{
    config::{ACME_PREFIX, XdpConfig, XdpMode as ConfigMode},
    daemon::Shared,
    policy::{Change, HostEntry, PolicyTable},
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
    /// Dropped last: the syncookie mode goes back once the program is detached.
    _syncookies: RestoreSyncookies,
}

/// Restores `tcp_syncookies` on drop.
struct RestoreSyncookies(Option<String>);

impl Drop for RestoreSyncookies {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            restore_syncookies(&previous);
        }
    }
}

impl std::fmt::Debug for XdpHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XdpHandle({} {})", self.interface, self.mode)
    }
}

/// Sets `net.ipv4.tcp_syncookies = 2` in this network namespace: the kernel then answers every
/// SYN with a cookie, which is what lets XDP answer a connection's first request without any
/// kernel socket. Returns the previous value, which [`XdpHandle`] puts back on drop.
fn enable_syncookies() -> anyhow::Result<String> {
    let before =
        std::fs::read_to_string(SYNCOOKIES).with_context(|| format!("cannot read {SYNCOOKIES}"))?;
    let before = before.trim().to_string();
    std::fs::write(SYNCOOKIES, "2\n").with_context(|| {
        format!("cannot set net.ipv4.tcp_syncookies=2 (writing {SYNCOOKIES}); the XDP fast path needs it")
    })?;
    tracing::warn!(
        previous = before.as_str(),
        "XDP fast path: set net.ipv4.tcp_syncookies=2 in this network namespace. Cost: every \
         TCP handshake on every port now uses syncookies, so clients without TCP timestamps \
         lose window scaling and SACK (and their MSS is rounded down to one of 4 values), on \
         443 too; and a first request sent more than about 2 minutes after the handshake is \
         reset (the cookie has expired)"
    );
    Ok(before)
}

/// Puts the syncookie mode back as it was before [`enable_syncookies`], unless somebody else
/// changed it meanwhile.
fn restore_syncookies(previous: &str) {
    let now = std::fs::read_to_string(SYNCOOKIES).unwrap_or_default();
    if now.trim() != "2" || previous == "2" {
        return;
    }
    match std::fs::write(SYNCOOKIES, format!("{previous}\n")) {
        Ok(()) => tracing::info!(
            restored = previous,
            "XDP fast path stopped: net.ipv4.tcp_syncookies restored"
        ),
        Err(e) => tracing::warn!("cannot restore net.ipv4.tcp_syncookies={previous}: {e}"),
    }
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
    let syncookies_before = enable_syncookies()?;
    // Put it back if anything below fails.
    let restore = RestoreSyncookies(Some(syncookies_before));
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
                fin_tx: 0,
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
                    _syncookies: restore,
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

/// Fills the host map, then keeps it in step with the policy (a thread fed by
/// `Policy::subscribe_changes`, which writes only the entries of the patterns a change
/// touched), and starts the AF_XDP responders.
pub fn start(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let mut guard = shared.xdp.lock().unwrap_or_else(|p| p.into_inner());
    let Some(handle) = guard.as_mut() else {
        return Ok(());
    };
    let mut hosts = handle
        .hosts
        .take()
        .ok_or_else(|| anyhow!("XDP already started"))?;
    // Subscribe first: a change racing with the fill is then applied (again) afterwards.
    let mut changes = shared.policy.subscribe_changes();
    let t0 = Instant::now();
    let n = hosts.sync(&shared.policy.table())?;
    tracing::info!(
        entries = n,
        ms = t0.elapsed().as_millis() as u64,
        "XDP host map filled"
    );
    let fin_tx = fin_tx_works(&handle.interface, handle.mode);
    set_ready(&mut handle.ebpf, shared.config.https_port, fin_tx)?;
    tracing::debug!(
        fin_tx,
        "client FINs answered by XDP_TX (else by the AF_XDP responder)"
    );

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let rt = tokio::runtime::Handle::current();
    let sh = shared.clone();
    let thread = std::thread::Builder::new()
        .name("fh-xdp-hosts".into())
        .spawn(move || {
            rt.block_on(async move {
                loop {
                    let first = tokio::select! {
                        c = changes.recv() => match c { Some(c) => c, None => break },
                        _ = stop_rx.changed() => break,
                    };
                    // Coalesce what queued up meanwhile.
                    let mut batch = vec![first];
                    while let Ok(c) = changes.try_recv() {
                        batch.push(c);
                    }
                    let t0 = Instant::now();
                    let table = sh.policy.table();
                    let res = if batch.contains(&Change::Full) {
                        hosts.sync(&table)
                    } else {
                        batch.iter().try_fold(0, |n, c| match c {
                            Change::Patterns(p) => hosts.update(&table, p).map(|k| n + k),
                            Change::Full => Ok(n),
                        })
                    };
                    match res {
                        Ok(n) => tracing::debug!(
                            written = n,
                            entries = hosts.current.len(),
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

/// Whether `XDP_TX` frames reach the wire: always in generic mode; in driver mode on a real
/// device, but not on a veth (or another virtual device), whose peer would need an XDP
/// program of its own (shared/docs/fastpath-notes.md).
fn fin_tx_works(interface: &str, mode: &str) -> bool {
    mode == "generic"
        || std::path::Path::new(&format!("/sys/class/net/{interface}/device")).exists()
}

fn set_ready(ebpf: &mut Ebpf, https_port: u16, fin_tx: bool) -> anyhow::Result<()> {
    let mut settings: Array<_, Settings> = Array::try_from(
        ebpf.map_mut(MAP_SETTINGS)
            .ok_or_else(|| anyhow!("map {MAP_SETTINGS} missing from the XDP object"))?,
    )?;
    settings.set(
        0,
        Settings {
            fixed_len: fixed_response_len(https_port),
            ready: 1,
            fin_tx: u32::from(fin_tx),
        },
        0,
    )?;
    Ok(())
}

/// Where [`HostMap`] writes: the BPF map, or a plain map in unit tests.
trait HostStore {
    fn put(&mut self, k: u64, v: HostValue) -> anyhow::Result<()>;
    fn delete(&mut self, k: u64) -> anyhow::Result<()>;
}

impl HostStore for HashMap<MapData, u64, HostValue> {
    fn put(&mut self, k: u64, v: HostValue) -> anyhow::Result<()> {
        self.insert(k, v, 0)
            .context("cannot add a host to the XDP map (is [xdp] max_hosts large enough?)")
    }

    fn delete(&mut self, k: u64) -> anyhow::Result<()> {
        match self.remove(&k) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e).context("cannot remove a host from the XDP map"),
        }
    }
}

/// The host map and what userspace last wrote into it.
struct HostMap<M = HashMap<MapData, u64, HostValue>> {
    map: M,
    current: StdHashMap<u64, Slot>,
}

/// The patterns of the table that share one map key (almost always one). A pattern is
/// identified by its check hash and length, which is all XDP can tell patterns apart by.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    One(HostValue),
    Many(Vec<HostValue>),
}

impl Slot {
    /// What the map holds for this key: the entry, or, for colliding patterns, an entry that
    /// leaves every request to the kernel.
    fn value(&self) -> HostValue {
        match self {
            Slot::One(v) => *v,
            Slot::Many(v) => HostValue {
                flags: v[0].flags | HOST_PASS,
                ..v[0]
            },
        }
    }

    fn same_pattern(a: &HostValue, b: &HostValue) -> bool {
        a.check == b.check && a.len == b.len
    }

    fn with(self, v: HostValue) -> Slot {
        match self {
            Slot::One(o) if Slot::same_pattern(&o, &v) => Slot::One(v),
            Slot::One(o) => Slot::Many(vec![o, v]),
            Slot::Many(mut all) => {
                match all.iter_mut().find(|o| Slot::same_pattern(o, &v)) {
                    Some(o) => *o = v,
                    None => all.push(v),
                }
                Slot::Many(all)
            }
        }
    }

    fn without(self, v: &HostValue) -> Option<Slot> {
        match self {
            Slot::One(o) if Slot::same_pattern(&o, v) => None,
            Slot::One(o) => Some(Slot::One(o)),
            Slot::Many(mut all) => {
                all.retain(|o| !Slot::same_pattern(o, v));
                match all.len() {
                    0 => None,
                    1 => Some(Slot::One(all[0])),
                    _ => Some(Slot::Many(all)),
                }
            }
        }
    }
}

impl<M: HostStore> HostMap<M> {
    /// Writes the difference between the projection of the whole `table` and the map's
    /// content (at start). Returns the number of entries.
    fn sync(&mut self, table: &PolicyTable) -> anyhow::Result<usize> {
        let next = project(table);
        let stale: Vec<u64> = self
            .current
            .keys()
            .filter(|k| !next.contains_key(k))
            .copied()
            .collect();
        for k in stale {
            self.remove(k)?;
        }
        for (k, slot) in next {
            if self.current.get(&k) != Some(&slot) {
                self.write(k, slot)?;
            }
        }
        Ok(self.current.len())
    }

    /// Brings the entries of `patterns` in line with `table`, touching nothing else. Returns
    /// the number of map entries written or removed.
    fn update(&mut self, table: &PolicyTable, patterns: &[String]) -> anyhow::Result<usize> {
        let mut written = 0;
        for p in patterns {
            let s = p.as_bytes();
            let k = host_key(s);
            let id = HostValue {
                check: host_check(s),
                len: s.len() as u16,
                flags: 0,
            };
            let before = self.current.get(&k).cloned();
            let rest = before.clone().and_then(|slot| slot.without(&id));
            let after = match table.get(p) {
                Some(e) => Some(match rest {
                    Some(slot) => slot.with(entry_value(e)),
                    None => Slot::One(entry_value(e)),
                }),
                None => rest,
            };
            if before == after {
                continue;
            }
            written += 1;
            match after {
                Some(slot) => self.write(k, slot)?,
                None => self.remove(k)?,
            }
        }
        Ok(written)
    }

    fn write(&mut self, k: u64, slot: Slot) -> anyhow::Result<()> {
        if self.current.get(&k).map(Slot::value) != Some(slot.value()) {
            self.map.put(k, slot.value())?;
        }
        self.current.insert(k, slot);
        Ok(())
    }

    fn remove(&mut self, k: u64) -> anyhow::Result<()> {
        self.map.delete(k)?;
        self.current.remove(&k);
        Ok(())
    }
}

/// The map value of one table entry.
fn entry_value(e: &HostEntry) -> HostValue {
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
    HostValue {
        check: host_check(s),
        len: s.len() as u16,
        flags,
    }
}

/// The host map as the policy table dictates it: one entry per pattern (see
/// `force-https-common`); patterns whose keys collide are all left to the kernel.
fn project(table: &PolicyTable) -> StdHashMap<u64, Slot> {
    let mut out: StdHashMap<u64, Slot> = StdHashMap::with_capacity(table.len());
    for e in table.iter() {
        let v = entry_value(e);
        let k = host_key(e.pattern.as_bytes());
        let slot = match out.remove(&k) {
            Some(slot) => slot.with(v),
            None => Slot::One(v),
        };
        out.insert(k, slot);
    }
    out
}

impl XdpHandle {
    /// The XDP counters summed over CPUs, then the responders' counters: name, help, value.
    pub fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut v: Vec<(&'static str, &'static str, u64)> = (0..STAT_COUNT)
            .map(|i| {
                let v = self
                    .stats
                    .get(&i, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (STAT_NAMES[i as usize], STAT_HELP[i as usize], v)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::policy::Policy;
    use std::path::Path;

    impl HostStore for StdHashMap<u64, HostValue> {
        fn put(&mut self, k: u64, v: HostValue) -> anyhow::Result<()> {
            self.insert(k, v);
            Ok(())
        }
        fn delete(&mut self, k: u64) -> anyhow::Result<()> {
            self.remove(&k);
            Ok(())
        }
    }

    fn projection(table: &PolicyTable) -> StdHashMap<u64, HostValue> {
        project(table)
            .into_iter()
            .map(|(k, s)| (k, s.value()))
            .collect()
    }

    fn policy(dir: &Path) -> Policy {
        let text = format!(
            "[state]\ndir = \"{}\"\n[[site]]\nname = \"shop\"\ndomains = [\"shop.example\", \"*.shop.example\"]\nforce_https = true\n[[site]]\nname = \"blog\"\ndomains = [\"blog.example\"]\nexempt_paths = [\"/healthz\"]\n",
            dir.display()
        );
        Policy::load(&Config::from_toml(Path::new("t.toml"), &text).unwrap()).unwrap()
    }

    #[test]
    fn incremental_updates_equal_the_full_projection() {
        let d = tempfile::tempdir().unwrap();
        let p = policy(d.path());
        let mut changes = p.subscribe_changes();
        let mut m = HostMap {
            map: StdHashMap::new(),
            current: StdHashMap::new(),
        };
        m.sync(&p.table()).unwrap();
        assert_eq!(m.map, projection(&p.table()));
        let hosts = [
            "shop.example",
            "*.shop.example",
            "a.shop.example",
            "blog.example",
            "solo.example",
            "*.wild.example",
        ];
        // A fixed pseudo-random walk of enable/disable batches.
        let mut x: u32 = 12345;
        for _ in 0..300 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            let batch: Vec<String> = hosts
                .iter()
                .enumerate()
                .filter(|(i, _)| (x >> (8 + i)) & 1 == 1)
                .map(|(_, h)| h.to_string())
                .collect();
            if batch.is_empty() {
                continue;
            }
            p.set(&batch, (x >> 20) & 1 == 1).unwrap();
            while let Ok(c) = changes.try_recv() {
                let Change::Patterns(pats) = c else {
                    panic!("full change from set");
                };
                m.update(&p.table(), &pats).unwrap();
            }
            assert_eq!(m.map, projection(&p.table()), "after {batch:?}");
        }
    }

    #[test]
    fn colliding_patterns_are_passed_and_recover() {
        let a = HostValue {
            check: 1,
            len: 5,
            flags: HOST_ENFORCED,
        };
        let b = HostValue {
            check: 2,
            len: 5,
            flags: HOST_ENFORCED,
        };
        let both = Slot::One(a).with(b);
        assert_eq!(both.value().flags, HOST_ENFORCED | HOST_PASS);
        assert_eq!(both.clone().without(&a), Some(Slot::One(b)));
        assert_eq!(Slot::One(a).without(&a), None);
        // Updating a pattern in place keeps one entry.
        let a2 = HostValue { flags: 0, ..a };
        assert_eq!(Slot::One(a).with(a2), Slot::One(a2));
    }
}
