//! The contract between the XDP program (`force-https-ebpf`) and the daemon
//! (`force-https-userspace`): map names, map value layouts and counter indices.
//!
//! Everything here is `#[repr(C)]` and `no_std`, so both sides compile the exact same
//! definitions. Userspace enables the `user` feature to get `aya::Pod` impls.
#![no_std]

/// Name of the map of TCP ports the XDP program watches (key: port in host order, value: 1).
pub const MAP_PORTS: &str = "FH_PORTS";
/// Name of the per-CPU counter array (index: one of the `STAT_*` constants).
pub const MAP_STATS: &str = "FH_STATS";
/// Name of the XDP program inside the object file.
pub const PROG_NAME: &str = "force_https";

/// Maximum number of listen ports the XDP program can watch.
pub const MAX_PORTS: u32 = 64;

/// Every packet the program saw.
pub const STAT_PACKETS: u32 = 0;
/// TCP packets (IPv4 or IPv6) to a watched port.
pub const STAT_TCP_WATCHED: u32 = 1;
/// TCP packets with SYN set (and not ACK) to a watched port.
pub const STAT_SYN: u32 = 2;
/// TCP segments carrying payload to a watched port.
pub const STAT_DATA: u32 = 3;
/// Number of counters in [`MAP_STATS`].
pub const STAT_COUNT: u32 = 4;

/// Human-readable names of the counters, indexed like the `STAT_*` constants.
pub const STAT_NAMES: [&str; STAT_COUNT as usize] = [
    "xdp_packets",
    "xdp_tcp_watched",
    "xdp_syn",
    "xdp_data_segments",
];
