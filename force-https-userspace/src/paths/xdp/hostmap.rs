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
pub(super) trait HostStore: Send {
    fn put(&mut self, k: u64, v: HostValue) -> anyhow::Result<()>;
    fn delete(&mut self, k: u64) -> anyhow::Result<()>;
    /// Writes many entries; by default one by one.
    fn put_many(&mut self, keys: &[u64], values: &[HostValue]) -> anyhow::Result<()> {
        for (k, v) in keys.iter().zip(values) {
            self.put(*k, *v)?;
        }
        Ok(())
    }
    /// A writer that several threads can call at once with chunks of distinct keys (as
    /// [`HostStore::put_many`]); by default they take turns.
    fn shared_writer(&mut self) -> impl Fn(&[u64], &[HostValue]) -> anyhow::Result<()> + Sync {
        let store = Mutex::new(self);
        move |keys, values| {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put_many(keys, values)
        }
    }
}

/// Entries per `BPF_MAP_UPDATE_BATCH` call.
const BATCH: usize = 1 << 16;

/// Entries per chunk handed from the projection to the writer at start ([`HostMap::fill`]):
/// small enough that the writer starts early and waits little for the last one.
const CHUNK: usize = 1 << 14;

/// Table entries read ahead of hashing them (see [`project_chunks`]).
const GROUP: usize = 16;

/// Chunks projected ahead of the writers at most.
const PIPELINE: usize = 4;

/// Threads writing chunks at start: the kernel's hash map locks per bucket and allocates
/// entries per CPU, so writes from two CPUs add up; and once the projection is done, its
/// CPU writes too.
const WRITERS: usize = 2;

/// Keys and values of one chunk, in the same order.
type Chunk = (Vec<u64>, Vec<HostValue>);

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

/// `BPF_MAP_UPDATE_ELEM`: one entry (`BPF_ANY`).
fn update_elem(fd: BorrowedFd<'_>, key: &u64, value: &HostValue) -> std::io::Result<()> {
    /// The element member of `union bpf_attr` (include/uapi/linux/bpf.h).
    #[repr(C)]
    struct ElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    let mut attr = ElemAttr {
        map_fd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
        _pad: 0,
        key: key as *const u64 as u64,
        value: value as *const HostValue as u64,
        flags: 0,
    };
    // SAFETY: `attr` is a valid `bpf_attr` element member; `key` and `value` are the map's
    // key and value types (#[repr(C)]), alive for the call, which only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            &mut attr as *mut ElemAttr,
            std::mem::size_of::<ElemAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `keys`/`values` into the hash map `fd`: one `BPF_MAP_UPDATE_BATCH` per [`BATCH`]
/// entries; one by one where the kernel has no batch operations for hash maps (before 5.6).
/// Needs only the descriptor, so several threads can write at once.
fn put_batches(fd: BorrowedFd<'_>, keys: &[u64], values: &[HostValue]) -> anyhow::Result<()> {
    const FULL: &str = "cannot add hosts to the XDP map (is [xdp] max_hosts large enough?)";
    for (ks, vs) in keys.chunks(BATCH).zip(values.chunks(BATCH)) {
        match update_batch(fd, ks, vs) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
                for (k, v) in ks.iter().zip(vs) {
                    update_elem(fd, k, v).map_err(|e| anyhow::Error::new(e).context(FULL))?;
                }
            }
            Err(e) => return Err(anyhow::Error::new(e).context(FULL)),
        }
    }
    Ok(())
}

impl HostStore for HashMap<MapData, u64, HostValue> {
    fn put(&mut self, k: u64, v: HostValue) -> anyhow::Result<()> {
        self.insert(k, v, 0)
            .context("cannot add a host to the XDP map (is [xdp] max_hosts large enough?)")
    }

    /// See [`put_batches`].
    fn put_many(&mut self, keys: &[u64], values: &[HostValue]) -> anyhow::Result<()> {
        put_batches(self.map().fd().as_fd(), keys, values)
    }

    /// [`put_batches`] on the map's descriptor, from any thread.
    fn shared_writer(&mut self) -> impl Fn(&[u64], &[HostValue]) -> anyhow::Result<()> + Sync {
        let fd = self.map().fd().as_fd();
        move |keys, values| put_batches(fd, keys, values)
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
    current: Projection,
}

/// What the map holds, key by key, and for keys that several patterns share, the patterns.
/// Apart so that the common entry takes 16 bytes in the table (24 MiB less at 1M hosts).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Projection {
    /// Key → the value the map holds ([`Slot::value`]).
    values: StdHashMap<u64, HostValue>,
    /// Key → its patterns, for the keys of [`Slot::Many`].
    shared: StdHashMap<u64, Vec<HostValue>>,
}

impl Projection {
    fn with_capacity(n: usize) -> Projection {
        Projection {
            values: StdHashMap::with_capacity(n),
            shared: StdHashMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn value(&self, k: u64) -> Option<HostValue> {
        self.values.get(&k).copied()
    }

    /// Takes the slot of `k` out.
    fn take(&mut self, k: u64) -> Option<Slot> {
        let v = self.values.remove(&k)?;
        Some(match self.shared.remove(&k) {
            Some(all) => Slot::Many(all),
            None => Slot::One(v),
        })
    }

    /// Sets the slot of `k`.
    fn put(&mut self, k: u64, slot: Slot) {
        self.values.insert(k, slot.value());
        match slot {
            Slot::One(_) => {
                self.shared.remove(&k);
            }
            Slot::Many(all) => {
                self.shared.insert(k, all);
            }
        }
    }

    /// Adds pattern value `v` under `k`; true when another pattern has the key too.
    fn add(&mut self, k: u64, v: HostValue) -> bool {
        match self.values.entry(k) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(v);
                false
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let old = match self.shared.remove(&k) {
                    Some(all) => Slot::Many(all),
                    None => Slot::One(*o.get()),
                };
                let slot = old.with(v);
                o.insert(slot.value());
                if let Slot::Many(all) = slot {
                    self.shared.insert(k, all);
                }
                true
            }
        }
    }
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
            current: Projection::default(),
        }
    }

    /// Entries written now.
    pub(super) fn len(&self) -> usize {
        self.current.len()
    }

    /// Writes the difference between the projection of the whole `table` and the map's
    /// content (at start: all of it, see [`HostMap::fill`]). Returns the number of entries.
    pub(super) fn sync(&mut self, table: &PolicyTable) -> anyhow::Result<usize> {
        if self.current.is_empty() {
            return self.fill(table);
        }
        let next = project(table);
        let stale: Vec<u64> = self
            .current
            .values
            .keys()
            .filter(|k| !next.values.contains_key(k))
            .copied()
            .collect();
        for k in stale {
            self.remove(k)?;
        }
        // New or changed values in batches; then `next` is what the map holds.
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for (k, v) in &next.values {
            let v = *v;
            if self.current.value(*k) != Some(v) {
                keys.push(*k);
                values.push(v);
            }
        }
        self.map.put_many(&keys, &values)?;
        self.current = next;
        Ok(self.current.len())
    }

    /// Writes the projection of `table` into the empty map, projecting and writing at once:
    /// this thread hashes the patterns in chunks of [`CHUNK`] entries and builds the
    /// bookkeeping while [`WRITERS`] threads write the finished chunks (with 1M hosts the
    /// two halves cost about the same: walking the table and hashing, and the kernel
    /// allocating and linking each entry). A key that several patterns share is written
    /// again at the end with its shared value ([`Slot::value`]); until then the map holds one
    /// of the patterns' own entries, which nothing reads before the program is told the map
    /// is ready. Without threads, the chunks are written in turn.
    ///
    /// On error the map may hold part of the projection and the bookkeeping stays empty.
    fn fill(&mut self, table: &PolicyTable) -> anyhow::Result<usize> {
        self.fill_by(table, host_key)
    }

    /// [`HostMap::fill`] with the keys of `key` (tests make keys collide with it).
    fn fill_by(&mut self, table: &PolicyTable, key: fn(&[u8]) -> u64) -> anyhow::Result<usize> {
        let t0 = Instant::now();
        let mut next = Projection::with_capacity(table.len());
        let mut shared: Vec<u64> = Vec::new();
        let write = self.map.shared_writer();
        let written = pipe_chunks(&write, WRITERS, |emit| {
            next.values.clear();
            next.shared.clear();
            shared.clear();
            project_chunks(table, key, &mut next, &mut shared, emit);
        });
        drop(write);
        written?;
        let t_written = t0.elapsed();
        shared.sort_unstable();
        shared.dedup();
        let values: Vec<HostValue> = shared.iter().filter_map(|k| next.value(*k)).collect();
        self.map.put_many(&shared, &values)?;
        tracing::debug!(
            entries = next.len(),
            shared = shared.len(),
            written_us = t_written.as_micros() as u64,
            us = t0.elapsed().as_micros() as u64,
            "XDP host map filled (projection and writes piped)"
        );
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
            let before = self.current.take(k);
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
                self.current.put(k, slot);
            }
        }
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let mut written = 0;
        for (k, held) in touched {
            let now = self.current.value(k);
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
        self.current.take(k);
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
fn project(table: &PolicyTable) -> Projection {
    project_by(table, host_key)
}

/// [`project`] with the keys of `key`.
fn project_by(table: &PolicyTable, key: fn(&[u8]) -> u64) -> Projection {
    let mut out = Projection::with_capacity(table.len());
    for e in table.iter() {
        let v = entry_value(e);
        out.add(key(e.pattern.as_bytes()), v);
    }
    out
}

/// The projection of `table` (as [`project`]) into `next`, handing each [`CHUNK`] of entries
/// to `emit` in table order as it is hashed; `emit` returns false to stop. Keys that several
/// patterns share go to `shared` (once per extra pattern): `emit` received one of the
/// patterns' own values for them, `next` has the shared one.
fn project_chunks(
    table: &PolicyTable,
    key: fn(&[u8]) -> u64,
    next: &mut Projection,
    shared: &mut Vec<u64>,
    emit: &mut dyn FnMut(Chunk) -> bool,
) {
    let mut keys = Vec::with_capacity(CHUNK.min(table.len()));
    let mut values = Vec::with_capacity(keys.capacity());
    let mut entries = table.iter();
    let mut group: Vec<&HostEntry> = Vec::with_capacity(GROUP);
    loop {
        group.clear();
        group.extend(entries.by_ref().take(GROUP).map(|e| &**e));
        if group.is_empty() {
            break;
        }
        // Read every entry of the group and the first byte of its pattern before hashing:
        // the entries and strings lie all over the heap, and their cache misses then overlap
        // instead of queuing one behind the other.
        let mut touched = 0u8;
        for e in &group {
            touched ^= e.pattern.as_bytes().first().copied().unwrap_or(0)
                ^ u8::from(e.enforced)
                ^ u8::from(e.site.is_some());
        }
        std::hint::black_box(touched);
        for &e in &group {
            if !project_entry(e, key, next, shared, &mut keys, &mut values) {
                continue;
            }
            let full = (
                std::mem::replace(&mut keys, Vec::with_capacity(CHUNK)),
                std::mem::replace(&mut values, Vec::with_capacity(CHUNK)),
            );
            if !emit(full) {
                return;
            }
        }
    }
    if !keys.is_empty() {
        emit((keys, values));
    }
}

/// Adds `e` to `next` (and its key to `shared` if taken) and to the chunk `keys`/`values`;
/// true when the chunk is full.
fn project_entry(
    e: &HostEntry,
    key: fn(&[u8]) -> u64,
    next: &mut Projection,
    shared: &mut Vec<u64>,
    keys: &mut Vec<u64>,
    values: &mut Vec<HostValue>,
) -> bool {
    let v = entry_value(e);
    let k = key(e.pattern.as_bytes());
    if next.add(k, v) {
        shared.push(k);
    }
    keys.push(k);
    values.push(v);
    keys.len() == CHUNK
}

/// Runs `produce` on this thread, handing every chunk it emits to one of `writers` threads
/// that call `write` on it ([`PIPELINE`] chunks queue at most), and returns the first error
/// of a write. `emit` returns false once a write has failed (`produce` should then stop).
/// Where no thread can be started, `produce` runs again from the start with `emit` writing
/// on this thread.
fn pipe_chunks<W, P>(write: &W, writers: usize, mut produce: P) -> anyhow::Result<()>
where
    W: Fn(&[u64], &[HostValue]) -> anyhow::Result<()> + Sync,
    P: FnMut(&mut dyn FnMut(Chunk) -> bool),
{
    let failed = std::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(PIPELINE);
    let rx = Mutex::new(rx);
    let piped = std::thread::scope(|scope| -> std::io::Result<anyhow::Result<()>> {
        let mut threads = Vec::with_capacity(writers);
        for i in 0..writers.max(1) {
            let (rx, failed) = (&rx, &failed);
            let t = std::thread::Builder::new()
                .name(format!("fh-xdp-fill{i}"))
                .spawn_scoped(scope, move || -> anyhow::Result<()> {
                    loop {
                        let chunk = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((keys, values)) = chunk else {
                            return Ok(());
                        };
                        if let Err(e) = write(&keys, &values) {
                            failed.store(true, Relaxed);
                            return Err(e);
                        }
                    }
                });
            match t {
                Ok(t) => threads.push(t),
                // Fewer writers; none at all: write on this thread.
                Err(e) if threads.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        produce(&mut |chunk| !failed.load(Relaxed) && tx.send(chunk).is_ok());
        drop(tx);
        let mut res = Ok(());
        for t in threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a host-map writer thread failed")));
            if res.is_ok() {
                res = r;
            }
        }
        Ok(res)
    });
    match piped {
        Ok(res) => res,
        Err(e) => {
            tracing::debug!("no thread to fill the XDP host map ({e}): filling in turn");
            let mut res = Ok(());
            produce(&mut |(keys, values)| match write(&keys, &values) {
                Ok(()) => true,
                Err(e) => {
                    res = Err(e);
                    false
                }
            });
            res
        }
    }
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
        project(table).values
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

    /// A policy of `n` runtime hosts (every third one not enforced) besides the sites.
    fn big_policy(dir: &Path, n: usize) -> Policy {
        let p = policy(dir);
        let hosts: Vec<String> = (0..n).map(|i| format!("h{i}.bulk.example")).collect();
        let off: Vec<String> = hosts.iter().step_by(3).cloned().collect();
        p.set(&hosts, true).unwrap();
        p.set(&off, false).unwrap();
        p
    }

    #[test]
    fn the_piped_fill_writes_the_projection() {
        // Several chunks, written by several threads, equal the one-thread projection; with
        // keys made to collide (8 keys for all hosts), the shared keys end up passed.
        let d = tempfile::tempdir().unwrap();
        let p = big_policy(d.path(), 2 * CHUNK + 123);
        let table = p.table();
        let mut m = HostMap::new(StdHashMap::new());
        assert_eq!(m.sync(&table).unwrap(), table.len());
        assert_eq!(m.map, projection(&table));
        assert_eq!(m.current, project(&table));

        fn few(s: &[u8]) -> u64 {
            host_key(s) % 8
        }
        let mut m = HostMap::new(StdHashMap::new());
        assert_eq!(m.fill_by(&table, few).unwrap(), 8);
        let want = project_by(&table, few);
        assert_eq!(m.map, want.values);
        assert_eq!(m.current, want);
        assert_eq!(want.shared.len(), 8);
        assert!(m.map.values().all(|v| v.flags & HOST_PASS != 0));
    }

    /// A store that fails once it holds `room` entries.
    struct Full {
        map: StdHashMap<u64, HostValue>,
        room: usize,
    }
    impl HostStore for Full {
        fn put(&mut self, k: u64, v: HostValue) -> anyhow::Result<()> {
            anyhow::ensure!(self.map.len() < self.room, "map full");
            self.map.insert(k, v);
            Ok(())
        }
        fn delete(&mut self, k: u64) -> anyhow::Result<()> {
            self.map.remove(&k);
            Ok(())
        }
    }

    #[test]
    fn a_failed_fill_reports_the_error_and_keeps_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = big_policy(d.path(), 3 * CHUNK);
        let mut m = HostMap::new(Full {
            map: StdHashMap::new(),
            room: CHUNK + 5,
        });
        let e = m.sync(&p.table()).unwrap_err();
        assert!(format!("{e:#}").contains("map full"), "{e:#}");
        assert_eq!(m.len(), 0);
        // The writers stopped at the first failure (each holds one more chunk at most).
        assert!(m.map.map.len() <= CHUNK + 5);
    }

    #[test]
    fn every_chunk_is_written_once_by_any_number_of_writers() {
        for writers in [0, 1, 2, 5] {
            let got = Mutex::new(Vec::new());
            let write = |k: &[u64], _: &[HostValue]| {
                got.lock().unwrap().extend_from_slice(k);
                Ok(())
            };
            pipe_chunks(&write, writers, |emit| {
                for c in 0..50u64 {
                    let keys: Vec<u64> = (c * 10..c * 10 + 10).collect();
                    assert!(emit((keys, vec![HostValue::default(); 10])));
                }
            })
            .unwrap();
            let mut got = got.into_inner().unwrap();
            got.sort_unstable();
            assert_eq!(got, (0..500).collect::<Vec<u64>>(), "{writers} writers");
        }
    }

    #[test]
    fn the_projection_keeps_shared_keys_apart() {
        let a = HostValue {
            check: 1,
            len: 5,
            flags: HOST_ENFORCED,
        };
        let b = HostValue { check: 2, ..a };
        let mut p = Projection::default();
        assert!(!p.add(7, a));
        assert!(p.add(7, b));
        assert_eq!(p.value(7), Some(Slot::One(a).with(b).value()));
        assert_eq!(p.take(7), Some(Slot::Many(vec![a, b])));
        assert!(p.is_empty() && p.shared.is_empty());
        p.put(7, Slot::Many(vec![a, b]));
        p.put(7, Slot::One(b));
        assert_eq!((p.value(7), p.shared.len()), (Some(b), 0));
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
