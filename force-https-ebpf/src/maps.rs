//! The maps of the program: the contract with userspace (names and layouts in
//! `force-https-common`) plus the per-CPU scratch buffer, and the counter bump.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, XskMap},
};
use force_https_common::{
    DEFAULT_MAX_FLOWS, DEFAULT_MAX_HOSTS, DEFAULT_MAX_QUEUES, FlowKey, HostValue, MAX_PORTS,
    STAT_COUNT, Settings,
};

use crate::scratch::Scratch;

#[map(name = "FH_PORTS")]
pub static FH_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

#[map(name = "FH_STATS")]
pub static FH_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// `BPF_F_NO_PREALLOC`: memory follows the number of hosts, not `max_hosts`.
const BPF_F_NO_PREALLOC: u32 = 1;

#[map(name = "FH_HOSTS")]
pub static FH_HOSTS: HashMap<u64, HostValue> =
    HashMap::with_max_entries(DEFAULT_MAX_HOSTS, BPF_F_NO_PREALLOC);

#[map(name = "FH_FLOWS")]
pub static FH_FLOWS: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

#[map(name = "FH_XSKS")]
pub static FH_XSKS: XskMap = XskMap::with_max_entries(DEFAULT_MAX_QUEUES, 0);

#[map(name = "FH_SETTINGS")]
pub static FH_SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map(name = "FH_SCRATCH")]
pub static FH_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Adds one to counter `idx` (a `STAT_*` index) of this CPU.
#[inline(always)]
pub fn bump(idx: u32) {
    if let Some(p) = FH_STATS.get_ptr_mut(idx) {
        // SAFETY: a non-null pointer to this CPU's slot of the per-CPU array (the verifier
        // checks the lookup); a plain u64 increment.
        unsafe { *p += 1 };
    }
}
