//! The host map (`FH_HOSTS`): the projection of the policy table into what XDP can look up,
//! filled at start and then kept in step by a thread that rewrites only the entries of the
//! patterns each change touched.
//!
//! The key is the 64-bit FNV-1a hash of the pattern; the value carries a second hash and the
//! length of the same string, and the flags (`force-https-common`). Patterns whose keys
//! collide are all left to the kernel.

use std::{
    collections::HashMap as StdHashMap,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    thread::JoinHandle,
    time::Instant,
};

use anyhow::Context;
use aya::maps::{HashMap, IterableMap, MapData};
use force_https_common::{HOST_ENFORCED, HOST_PASS, HostValue, host_check, host_key};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{
    config::ACME_PREFIX,
    edge::Edge,
    metrics::{Counter, CounterSource},
    policy::{BeforeSwap, Change, HostEntry, Notice, PolicyTable},
};

/// Where [`HostMap`] writes: the BPF map, or a plain map in unit tests.
pub(super) trait HostStore {
    fn put(&mut self, k: u64, v: HostValue) -> anyhow::Result<()>;
    fn delete(&mut self, k: u64) -> anyhow::Result<()>;
    /// Writes many entries; by default one by one.
    fn put_many(&mut self, keys: &[u64], values: &[HostValue]) -> anyhow::Result<()> {
        for (k, v) in keys.iter().zip(values) {
            self.put(*k, *v)?;
        }
        Ok(())
    }
}

/// Entries per `BPF_MAP_UPDATE_BATCH` call.
const BATCH: usize = 1 << 16;

/// `BPF_MAP_UPDATE_BATCH` (Linux 5.6): `keys.len()` entries of a hash map in one bpf(2) call.
/// `EINVAL` from a kernel without the command.
fn update_batch(fd: BorrowedFd<'_>, keys: &[u64], values: &[HostValue]) -> std::io::Result<()> {
    /// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
    #[repr(C)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
    let n = keys.len().min(values.len());
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: u32::try_from(n).unwrap_or(u32::MAX),
        map_fd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: `attr` is a valid `bpf_attr` batch member; `keys` and `values` hold `count`
    // u64 keys and `HostValue`s (#[repr(C)], the map's key and value types), alive for the
    // call; the kernel only reads them and writes `attr.count`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &mut attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl HostStore for HashMap<MapData, u64, HostValue> {
    fn put(&mut self, k: u64, v: HostValue) -> anyhow::Result<()> {
        self.insert(k, v, 0)
            .context("cannot add a host to the XDP map (is [xdp] max_hosts large enough?)")
    }

    /// One `BPF_MAP_UPDATE_BATCH` per [`BATCH`] entries; one by one where the kernel has no
    /// batch operations for hash maps (before 5.6).
    fn put_many(&mut self, keys: &[u64], values: &[HostValue]) -> anyhow::Result<()> {
        for (ks, vs) in keys.chunks(BATCH).zip(values.chunks(BATCH)) {
            let fd = self.map().fd().as_fd();
            match update_batch(fd, ks, vs) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
                    for (k, v) in ks.iter().zip(vs) {
                        self.put(*k, *v)?;
                    }
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(
                        "cannot add hosts to the XDP map (is [xdp] max_hosts large enough?)",
                    ));
                }
            }
        }
        Ok(())
    }

    fn delete(&mut self, k: u64) -> anyhow::Result<()> {
        match self.remove(&k) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e).context("cannot remove a host from the XDP map"),
        }
    }
}

/// The host map and what userspace last wrote into it.
pub(super) struct HostMap<M = HashMap<MapData, u64, HostValue>> {
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
            Slot::Many(v) => match v.first() {
                Some(first) => HostValue {
                    flags: first.flags | HOST_PASS,
                    ..*first
                },
                // Never built empty (`without` collapses it); pass everything if it were.
                None => HostValue {
                    check: 0,
                    len: 0,
                    flags: HOST_PASS,
                },
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
                match all.as_slice() {
                    [] => None,
                    [one] => Some(Slot::One(*one)),
                    _ => Some(Slot::Many(all)),
                }
            }
        }
    }
}

impl<M: HostStore> HostMap<M> {
    /// An empty projection over `map` (which must be empty too).
    pub(super) fn new(map: M) -> HostMap<M> {
        HostMap {
            map,
            current: StdHashMap::new(),
        }
    }

    /// Entries written now.
    pub(super) fn len(&self) -> usize {
        self.current.len()
    }

    /// Writes the difference between the projection of the whole `table` and the map's
    /// content (at start). Returns the number of entries.
    pub(super) fn sync(&mut self, table: &PolicyTable) -> anyhow::Result<usize> {
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
        // New or changed values in batches (one bpf(2) call per 65536 at start); then `next`
        // is what the map holds.
        let mut keys = Vec::with_capacity(next.len().saturating_sub(self.current.len()));
        let mut values = Vec::with_capacity(keys.capacity());
        for (k, slot) in &next {
            let v = slot.value();
            if self.current.get(k).map(Slot::value) != Some(v) {
                keys.push(*k);
                values.push(v);
            }
        }
        self.map.put_many(&keys, &values)?;
        self.current = next;
        Ok(self.current.len())
    }

    /// Brings the entries of `patterns` in line with `table`, touching nothing else. Returns
    /// the number of map entries written or removed.
    ///
    /// The projection is updated first; then each touched key gets one map operation: new or
    /// changed values in batches (a fleet's full read changes 1M patterns at once), removals
    /// one by one.
    pub(super) fn update(
        &mut self,
        table: &PolicyTable,
        patterns: &[String],
    ) -> anyhow::Result<usize> {
        // Key → the value the map holds for it before this update.
        let mut touched: StdHashMap<u64, Option<HostValue>> = StdHashMap::new();
        for p in patterns {
            let s = p.as_bytes();
            let k = host_key(s);
            let id = HostValue {
                check: host_check(s),
                len: s.len() as u16,
                flags: 0,
            };
            let before = self.current.remove(&k);
            let held = before.as_ref().map(Slot::value);
            let rest = before.and_then(|slot| slot.without(&id));
            let after = match table.get(p) {
                Some(e) => Some(match rest {
                    Some(slot) => slot.with(entry_value(e)),
                    None => Slot::One(entry_value(e)),
                }),
                None => rest,
            };
            touched.entry(k).or_insert(held);
            if let Some(slot) = after {
                self.current.insert(k, slot);
            }
        }
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let mut written = 0;
        for (k, held) in touched {
            let now = self.current.get(&k).map(Slot::value);
            if now == held {
                continue;
            }
            written += 1;
            match now {
                Some(v) => {
                    keys.push(k);
                    values.push(v);
                }
                None => self.map.delete(k)?,
            }
        }
        self.map.put_many(&keys, &values)?;
        Ok(written)
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
    // Paths other than the ACME prefix decide: XDP leaves the whole host to the kernel.
    let path_rules = e.site.as_ref().is_some_and(|site| {
        site.exempt_paths.iter().any(|p| p != ACME_PREFIX) || !site.force_paths.is_empty()
    });
    if path_rules {
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
        match out.entry(k) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let old = std::mem::replace(o.get_mut(), Slot::One(v));
                *o.get_mut() = old.with(v);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Slot::One(v));
            }
        }
    }
    out
}

/// How the host map keeps up with the policy table (gauges, see [`crate::metrics::GAUGES`]).
#[derive(Debug, Default)]
pub(super) struct HostMapStats {
    /// Entries in the map now.
    entries: AtomicU64,
    /// The longest time, µs, from a policy change's publication to the map holding it.
    lag_max_us: AtomicU64,
}

impl CounterSource for HostMapStats {
    fn counters(&self, out: &mut Vec<Counter>) {
        out.push((
            "xdp_host_map_entries",
            "Entries in the XDP host map (one per pattern of the policy table, colliding patterns share one).",
            self.entries.load(Relaxed),
        ));
        out.push((
            "xdp_host_map_lag_max_us",
            "Longest time in microseconds from a policy change's publication to the XDP host map holding it, since start.",
            self.lag_max_us.load(Relaxed),
        ));
    }
}

/// The thread that keeps the host map in step with the policy; stopped and joined on drop.
pub(super) struct HostMapSync {
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<HostMapStats>,
}

impl HostMapSync {
    /// Starts the thread: it applies every change of `changes` (subscribed before the map was
    /// filled, so none is lost), coalescing what queued up meanwhile.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub(super) fn start(
        hosts: HostMap,
        mut changes: UnboundedReceiver<Notice>,
        edge: Arc<Edge>,
        rt: tokio::runtime::Handle,
    ) -> anyhow::Result<HostMapSync> {
        let stats = Arc::new(HostMapStats::default());
        stats.entries.store(hosts.len() as u64, Relaxed);
        let thread_stats = stats.clone();
        let hosts = Arc::new(Mutex::new(hosts));
        // Withdrawals reach the map before the table (see `Withdraw`); the thread then
        // applies every change (the withdrawals again, as no-ops).
        edge.policy
            .set_before_swap(Arc::new(Withdraw(Arc::downgrade(&hosts))));
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("fh-xdp-hosts".into())
            .spawn(move || {
                rt.block_on(async move {
                    loop {
                        let first = tokio::select! {
                            c = changes.recv() => match c { Some(c) => c, None => break },
                            _ = stop_rx.changed() => break,
                        };
                        let oldest = first.at;
                        let mut batch = vec![first.change];
                        while let Ok(n) = changes.try_recv() {
                            batch.push(n.change);
                        }
                        let t0 = Instant::now();
                        let table = edge.policy.table();
                        let mut hosts = hosts.lock().unwrap_or_else(|p| p.into_inner());
                        let res = if batch.contains(&Change::Full) {
                            hosts.sync(&table)
                        } else {
                            batch.iter().try_fold(0, |n, c| match c {
                                Change::Patterns(p) => hosts.update(&table, p).map(|k| n + k),
                                Change::Full => Ok(n),
                            })
                        };
                        let lag = oldest.elapsed().as_micros() as u64;
                        thread_stats.lag_max_us.fetch_max(lag, Relaxed);
                        thread_stats.entries.store(hosts.len() as u64, Relaxed);
                        match res {
                            Ok(n) => tracing::debug!(
                                written = n,
                                entries = hosts.len(),
                                us = t0.elapsed().as_micros() as u64,
                                lag_us = lag,
                                "XDP host map updated"
                            ),
                            Err(e) => tracing::error!("cannot update the XDP host map: {e:#}"),
                        }
                    }
                })
            })
            .context("cannot start the host-map thread")?;
        Ok(HostMapSync {
            stop: Some(stop_tx),
            thread: Some(thread),
            stats,
        })
    }

    /// The map's gauges (entries, lag behind the table).
    pub(super) fn stats(&self) -> Arc<HostMapStats> {
        self.stats.clone()
    }
}

/// Takes hosts that a change withdraws from the fast path (removed, or no longer enforced) out
/// of the map before the table is published, so that XDP stops handing their requests to the
/// responder before the responder stops redirecting them. Additions wait for the thread, which
/// runs after the table is published. Does nothing once the fast path is stopped.
struct Withdraw<M = aya::maps::HashMap<MapData, u64, HostValue>>(Weak<Mutex<HostMap<M>>>);

impl<M: HostStore + Send> BeforeSwap for Withdraw<M> {
    fn before_swap(&self, next: &PolicyTable, patterns: &[String]) {
        let Some(hosts) = self.0.upgrade() else {
            return;
        };
        let withdrawn: Vec<String> = patterns
            .iter()
            .filter(|p| next.get(p).is_none_or(|e| !e.enforced))
            .cloned()
            .collect();
        if withdrawn.is_empty() {
            return;
        }
        let mut hosts = hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = hosts.update(next, &withdrawn) {
            tracing::error!("cannot withdraw hosts from the XDP host map: {e:#}");
        }
    }
}

impl Drop for HostMapSync {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
        let mut m = HostMap::new(StdHashMap::new());
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
                let Change::Patterns(pats) = c.change else {
                    panic!("full change from set");
                };
                m.update(&p.table(), &pats).unwrap();
            }
            assert_eq!(m.map, projection(&p.table()), "after {batch:?}");
        }
    }

    #[test]
    fn a_reload_sends_what_the_map_needs() {
        // A configuration reload adds a domain, drops one, gives blog a path rule and shop an
        // override-free state change; the patterns it sends bring the map to the projection.
        let d = tempfile::tempdir().unwrap();
        let p = policy(d.path());
        p.set(&["solo.example".into(), "blog.example".into()], true)
            .unwrap();
        let mut changes = p.subscribe_changes();
        let mut m = HostMap::new(StdHashMap::new());
        m.sync(&p.table()).unwrap();
        let text = format!(
            "[state]\ndir = \"{}\"\n[[site]]\nname = \"shop\"\ndomains = [\"shop.example\", \"new.example\"]\n[[site]]\nname = \"blog\"\ndomains = [\"blog.example\"]\nexempt_paths = [\"/healthz\", \"/status\"]\nforce_https = true\n",
            d.path().display()
        );
        let cfg = Config::from_toml(Path::new("t.toml"), &text).unwrap();
        let changed = p.reload(&cfg.sites);
        assert!(changed.contains(&"new.example".to_string()), "{changed:?}");
        assert!(
            changed.contains(&"*.shop.example".to_string()),
            "{changed:?}"
        );
        let Ok(Change::Patterns(pats)) = changes.try_recv().map(|n| n.change) else {
            panic!("no change sent");
        };
        m.update(&p.table(), &pats).unwrap();
        assert_eq!(m.map, projection(&p.table()));
        // The runtime host and the override survived.
        assert!(p.table().get("solo.example").unwrap().enforced);
        let new = m.map.get(&host_key(b"new.example")).unwrap();
        assert_eq!(new.flags & HOST_ENFORCED, 0);
        assert!(m.map.get(&host_key(b"shop.example")).unwrap().flags & HOST_ENFORCED == 0);
    }

    #[test]
    fn withdrawals_reach_the_map_before_the_table() {
        // A map the hook shares, checked from inside the hook: when a host is disabled, the
        // map already has it withdrawn while the live table still enforces it.
        let d = tempfile::tempdir().unwrap();
        let p = Arc::new(policy(d.path()));
        let mut m = HostMap::new(StdHashMap::new());
        m.sync(&p.table()).unwrap();
        let hosts = Arc::new(Mutex::new(m));
        let key = host_key(b"shop.example");
        let enforced = |h: &Arc<Mutex<HostMap<StdHashMap<u64, HostValue>>>>| {
            h.lock()
                .unwrap()
                .map
                .get(&key)
                .map(|v| v.flags & HOST_ENFORCED != 0)
        };

        struct Probe {
            inner: Withdraw<StdHashMap<u64, HostValue>>,
            policy: Arc<Policy>,
            seen: Mutex<Vec<(bool, Option<bool>)>>,
            hosts: Arc<Mutex<HostMap<StdHashMap<u64, HostValue>>>>,
        }
        impl BeforeSwap for Probe {
            fn before_swap(&self, next: &PolicyTable, patterns: &[String]) {
                self.inner.before_swap(next, patterns);
                let live = self
                    .policy
                    .table()
                    .lookup("shop.example")
                    .is_some_and(|e| e.enforced);
                let key = host_key(b"shop.example");
                let map = self
                    .hosts
                    .lock()
                    .unwrap()
                    .map
                    .get(&key)
                    .map(|v| v.flags & HOST_ENFORCED != 0);
                self.seen.lock().unwrap().push((live, map));
            }
        }
        let probe = Arc::new(Probe {
            inner: Withdraw(Arc::downgrade(&hosts)),
            policy: p.clone(),
            seen: Mutex::new(Vec::new()),
            hosts: hosts.clone(),
        });
        p.set_before_swap(probe.clone());
        assert_eq!(enforced(&hosts), Some(true));
        p.set(&["shop.example".into()], false).unwrap();
        // Inside the hook: the table still enforced, the map already not.
        assert_eq!(
            probe.seen.lock().unwrap().last(),
            Some(&(true, Some(false)))
        );
        // Enabling waits for the thread: the map is unchanged before the swap.
        p.set(&["shop.example".into()], true).unwrap();
        assert_eq!(
            probe.seen.lock().unwrap().last(),
            Some(&(false, Some(false)))
        );
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
