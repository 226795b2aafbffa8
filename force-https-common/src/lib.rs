//! The contract between the XDP program (`force-https-ebpf`) and the daemon
//! (`force-https-userspace`): map names, map key/value layouts, counter indices and the host
//! hash both sides must compute identically.
//!
//! Everything here is `#[repr(C)]` and `no_std`, so both sides compile the exact same
//! definitions. Userspace enables the `user` feature to get `aya::Pod` impls.
//!
//! # The host map (`FH_HOSTS`)
//!
//! The map is a projection of the daemon's policy table, one entry per table pattern:
//!
//! - key: [`host_key`] of the pattern string — the normalized name for an exact host
//!   (`shop.example.com`, `[2001:db8::1]`), the literal `*.suffix` for a wildcard. 64-bit
//!   FNV-1a.
//! - value: [`HostValue`]: a second, independent 32-bit hash ([`host_check`]) and the length
//!   of the same string, which XDP compares before trusting the entry, plus [`HostValue::flags`].
//!
//! XDP normalizes the request's host the way `force_https_proto::host::normalize_into` does
//! (ASCII lowercase, one trailing dot dropped, port dropped, IPv6 brackets kept), hashes it
//! byte by byte with [`fnv64_step`] / [`fnv32_step`], looks the exact key up first, then the
//! wildcard key of its parent: the hash of `"*."` followed by everything after the first dot
//! (starting from [`WILD_KEY_INIT`] / [`WILD_CHECK_INIT`]). A wrong match needs a 64-bit key
//! collision *and* a 32-bit check collision *and* equal lengths; two patterns of the table
//! whose keys collide are both stored as [`HOST_PASS`] (left to the kernel), so a collision
//! can only cost speed, never correctness.
//!
//! # Flows (`FH_FLOWS`)
//!
//! An LRU map of TCP flows whose first data segment was passed to the kernel (split heads,
//! requests XDP does not answer) or that the AF_XDP responder handed back: later segments of
//! those flows are passed instead of dropped.
#![no_std]

pub mod net;
pub mod uri;

/// Name of the map of TCP ports the XDP program watches (key: port in host order, value: 1).
pub const MAP_PORTS: &str = "FH_PORTS";
/// Name of the per-CPU counter array (index: one of the `STAT_*` constants).
pub const MAP_STATS: &str = "FH_STATS";
/// Name of the host map (key: [`host_key`], value: [`HostValue`]).
pub const MAP_HOSTS: &str = "FH_HOSTS";
/// Name of the LRU map of flows passed to the kernel (key: [`FlowKey`], value: u32, 1).
pub const MAP_FLOWS: &str = "FH_FLOWS";
/// Name of the `XSKMAP` of AF_XDP sockets (key: RX queue index).
pub const MAP_XSKS: &str = "FH_XSKS";
/// Name of the one-entry array holding [`Settings`].
pub const MAP_SETTINGS: &str = "FH_SETTINGS";
/// Name of the XDP program inside the object file.
pub const PROG_NAME: &str = "force_https";
/// Maximum number of listen ports the XDP program can watch.
pub const MAX_PORTS: u32 = 64;
/// Default capacity of the host map (userspace sets the real one from `[xdp] max_hosts`).
pub const DEFAULT_MAX_HOSTS: u32 = 65_536;
/// Default capacity of the flow LRU (userspace sets it from `[xdp] max_flows`).
pub const DEFAULT_MAX_FLOWS: u32 = 65_536;
/// Default size of the XSK map (userspace sets it to the number of RX queues).
pub const DEFAULT_MAX_QUEUES: u32 = 64;

/// The ACME HTTP-01 challenge path prefix. XDP leaves requests under it to the kernel; the
/// daemon exempts them from redirects unless a site sets `acme_exempt = false`.
pub const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

/// Largest TCP payload XDP inspects; longer first segments go to the kernel.
pub const MAX_HEAD: u32 = 2048;
/// Largest fast-path response payload on IPv4: the minimum MSS every host accepts (RFC 9293),
/// since the syncookie hides the client's real MSS (`force_https_proto::frame::MAX_PAYLOAD_V4`).
pub const MAX_RESPONSE_V4: u32 = 536;
/// Largest fast-path response payload on IPv6: minimum MTU 1280 - 40 - 20
/// (`force_https_proto::frame::MAX_PAYLOAD_V6`).
pub const MAX_RESPONSE_V6: u32 = 1220;

/// [`HostValue::flags`]: the host is enforced (port-80 requests are redirected).
pub const HOST_ENFORCED: u16 = 1;
/// [`HostValue::flags`]: leave every request of this host to the kernel (a site with exempt
/// paths other than the ACME prefix, or a key collision).
pub const HOST_PASS: u16 = 2;

/// Value of the host map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostValue {
    /// [`host_check`] of the pattern string.
    pub check: u32,
    /// Length of the pattern string (`*.suffix` for a wildcard).
    pub len: u16,
    /// `HOST_*` bits.
    pub flags: u16,
}

/// Key of the flow LRU: both addresses (IPv4 in the first 4 bytes, rest zero) and ports as
/// they appear on the wire (network order), of the client-to-server direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    /// Client address.
    pub saddr: [u8; 16],
    /// Server address.
    pub daddr: [u8; 16],
    /// Client port (network order bytes).
    pub sport: [u8; 2],
    /// Server port (network order bytes).
    pub dport: [u8; 2],
    /// 4 or 6.
    pub family: u32,
}

/// Global settings the XDP program reads (index 0 of [`MAP_SETTINGS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Bytes of a redirect besides the host and the path: the longer status line, the
    /// `Location: https://` and `:port` parts and the fixed header lines after the path.
    pub fixed_len: u32,
    /// 1 once userspace has filled the settings; 0 makes XDP pass every data segment.
    pub ready: u32,
    /// 1: XDP answers a client's FIN itself with an ACK (`XDP_TX`); 0: it hands the FIN to
    /// the AF_XDP responder. 0 on a veth in driver mode, where `XDP_TX` frames only reach a
    /// peer that has an XDP program of its own.
    pub fin_tx: u32,
    /// How a SYN to a watched port with a listener is answered: [`SYNACK_KERNEL`],
    /// [`SYNACK_TX`] or [`SYNACK_XSK`].
    pub synack: u32,
    /// MSS advertised in SYN-ACKs made by XDP over IPv4 (the interface MTU - 40).
    pub mss_v4: u32,
    /// MSS advertised in SYN-ACKs made by XDP over IPv6 (the interface MTU - 60).
    pub mss_v6: u32,
}

/// [`Settings::synack`]: SYNs are passed; the kernel answers them (with a syncookie, since
/// `tcp_syncookies = 2`).
pub const SYNACK_KERNEL: u32 = 0;
/// [`Settings::synack`]: XDP answers a SYN itself with a syncookie SYN-ACK (`XDP_TX`).
pub const SYNACK_TX: u32 = 1;
/// [`Settings::synack`]: XDP builds the SYN-ACK in the frame and hands it to the AF_XDP
/// responder, which transmits it unchanged (where `XDP_TX` frames would not reach the peer:
/// a veth in driver mode whose peer has no XDP program).
pub const SYNACK_XSK: u32 = 2;
/// Length of the TCP header of a SYN-ACK made by XDP: 20 bytes and the MSS option.
pub const SYNACK_TCP_HLEN: usize = 24;

/// TTL / hop limit of fast-path answers (AF_XDP and `XDP_TX`).
pub const ANSWER_TTL: u8 = 64;
/// TCP window advertised in fast-path answers.
pub const ANSWER_WINDOW: u16 = 0xffff;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers and arrays without padding.
    unsafe impl aya::Pod for super::HostValue {}
    // SAFETY: as above (16 + 16 + 2 + 2 + 4 bytes, no padding).
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Settings {}
}

/// FNV-1a 64 offset basis.
pub const FNV64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV64_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Offset basis of the 32-bit check hash (FNV-1a 32 with a non-standard basis, so that it is
/// independent of the key hash).
pub const FNV32_INIT: u32 = 0x9e37_79b9;
const FNV32_PRIME: u32 = 0x0100_0193;

/// One byte of the 64-bit key hash.
#[inline(always)]
pub const fn fnv64_step(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(FNV64_PRIME)
}

/// One byte of the 32-bit check hash.
#[inline(always)]
pub const fn fnv32_step(h: u32, b: u8) -> u32 {
    (h ^ b as u32).wrapping_mul(FNV32_PRIME)
}

/// Key hash of a whole string.
pub const fn host_key(s: &[u8]) -> u64 {
    let mut h = FNV64_INIT;
    let mut i = 0;
    while i < s.len() {
        h = fnv64_step(h, s[i]);
        i += 1;
    }
    h
}

/// Check hash of a whole string.
pub const fn host_check(s: &[u8]) -> u32 {
    let mut h = FNV32_INIT;
    let mut i = 0;
    while i < s.len() {
        h = fnv32_step(h, s[i]);
        i += 1;
    }
    h
}

/// Key hash state after `"*."`: XDP continues it with the wildcard parent of the host.
pub const WILD_KEY_INIT: u64 = host_key(b"*.");
/// Check hash state after `"*."`.
pub const WILD_CHECK_INIT: u32 = host_check(b"*.");

/// Every packet the program saw.
pub const STAT_PACKETS: u32 = 0;
/// TCP packets (IPv4 or IPv6) to a watched port.
pub const STAT_TCP_WATCHED: u32 = 1;
/// SYNs to a watched port passed to the kernel (it answers with a cookie): answering in XDP
/// is off, or the SYN carries data or flags XDP leaves alone, or its frame has no room.
pub const STAT_SYN: u32 = 2;
/// TCP segments carrying payload to a watched port.
pub const STAT_DATA: u32 = 3;
/// Segments of a connection the kernel has a socket for (established, time-wait), passed.
pub const STAT_SOCKET_PASS: u32 = 4;
/// Segments of flows in the flow LRU, passed.
pub const STAT_FLOW_PASS: u32 = 5;
/// Bare ACKs without a socket (the client's handshake ACK, ACKs of fast answers), dropped.
pub const STAT_BARE_ACK_DROP: u32 = 6;
/// First data segments whose syncookie checked out.
pub const STAT_COOKIE_OK: u32 = 7;
/// Data segments with no socket and a bad or expired cookie, dropped.
pub const STAT_COOKIE_BAD_DROP: u32 = 8;
/// Requests handed to the AF_XDP responder.
pub const STAT_FAST_REDIRECT: u32 = 9;
/// FINs with no socket handed to the AF_XDP responder (it ACKs them).
pub const STAT_FIN_REDIRECT: u32 = 10;
/// Passed: no listening socket matched (or other packets XDP does not handle: RST, URG).
pub const STAT_PASS_NO_LISTENER: u32 = 11;
/// Passed: IP options, fragments, IPv6 extension headers or a truncated frame.
pub const STAT_PASS_IP: u32 = 12;
/// Passed: the segment does not end the head (split head) or holds more than a head.
pub const STAT_PASS_PARTIAL: u32 = 13;
/// Passed: not a request XDP can decide (method, target form, version, header bytes, no or
/// several Host fields, a `Content-Length` or `Transfer-Encoding` header, a head over
/// `MAX_HEAD`).
pub const STAT_PASS_NOT_SIMPLE: u32 = 14;
/// Passed: host not in the map.
pub const STAT_PASS_UNKNOWN_HOST: u32 = 15;
/// Passed: host not enforced.
pub const STAT_PASS_NOT_ENFORCED: u32 = 16;
/// Passed: exempt path (ACME prefix) or a host flagged [`HOST_PASS`].
pub const STAT_PASS_EXEMPT: u32 = 17;
/// Passed: the response would not fit the minimum MSS.
pub const STAT_PASS_TOO_LARGE: u32 = 18;
/// Passed: the redirect found no AF_XDP socket on the RX queue (the responder is not running).
pub const STAT_PASS_NO_XSK: u32 = 19;
/// FINs with no socket answered with an ACK by XDP itself (`XDP_TX`).
pub const STAT_FIN_ACK_TX: u32 = 20;
/// Passed: the request-target has a byte the redirect would percent-encode
/// ([`uri::is_uri_path_byte`]) or a `%` without two hex digits.
pub const STAT_PASS_TARGET_ESCAPE: u32 = 21;
/// SYNs answered by XDP with a syncookie SYN-ACK sent back with `XDP_TX`.
pub const STAT_SYNACK_TX: u32 = 22;
/// SYNs answered by XDP with a syncookie SYN-ACK transmitted by the AF_XDP responder.
pub const STAT_SYNACK_XSK: u32 = 23;
/// SYNs passed because `bpf_tcp_gen_syncookie` refused them (the listener's accept queue is
/// full, `tcp_syncookies` is not 2, or a listener of the other address family).
pub const STAT_SYN_COOKIE_REFUSED: u32 = 24;
/// Number of counters in [`MAP_STATS`].
pub const STAT_COUNT: u32 = 25;

/// Human-readable names of the counters, indexed like the `STAT_*` constants.
pub const STAT_NAMES: [&str; STAT_COUNT as usize] = [
    "xdp_packets",
    "xdp_tcp_watched",
    "xdp_syn_pass",
    "xdp_data_segments",
    "xdp_socket_pass",
    "xdp_flow_pass",
    "xdp_bare_ack_drop",
    "xdp_cookie_ok",
    "xdp_cookie_bad_drop",
    "xdp_fast_redirect",
    "xdp_fin_redirect",
    "xdp_pass_no_listener",
    "xdp_pass_ip",
    "xdp_pass_partial_head",
    "xdp_pass_not_simple",
    "xdp_pass_unknown_host",
    "xdp_pass_not_enforced",
    "xdp_pass_exempt",
    "xdp_pass_too_large",
    "xdp_pass_no_xsk",
    "xdp_fin_ack_tx",
    "xdp_pass_target_escape",
    "xdp_synack_tx",
    "xdp_synack_xsk",
    "xdp_syn_cookie_refused",
];

/// One-line descriptions of the counters (for `force-https stats` and Prometheus `# HELP`),
/// indexed like the `STAT_*` constants.
pub const STAT_HELP: [&str; STAT_COUNT as usize] = [
    "Every packet the program saw.",
    "TCP packets (IPv4 or IPv6) to a watched port.",
    "SYNs to a watched port passed to the kernel (it answers with a cookie): answering in XDP is off, or the SYN carries data or flags XDP leaves alone, or its frame has no room.",
    "TCP segments carrying payload to a watched port.",
    "Segments of a connection the kernel has a socket for (established, time-wait), passed.",
    "Segments of flows in the flow LRU, passed.",
    "Bare ACKs without a socket (the client's handshake ACK, ACKs of fast answers), dropped.",
    "First data segments whose syncookie checked out.",
    "Data segments with no socket and a bad or expired cookie, dropped.",
    "Requests handed to the AF_XDP responder.",
    "FINs with no socket handed to the AF_XDP responder (it ACKs them).",
    "Passed: no listening socket matched (or other packets XDP does not handle: RST, URG).",
    "Passed: IP options, fragments, IPv6 extension headers or a truncated frame.",
    "Passed: the segment does not end the head (split head) or holds more than a head.",
    "Passed: not a request XDP can decide (method, target form, version, header bytes, no or several Host fields, a Content-Length or Transfer-Encoding header, a head over the maximum head size).",
    "Passed: host not in the map.",
    "Passed: host not enforced.",
    "Passed: exempt path (ACME prefix) or a host flagged HOST_PASS.",
    "Passed: the response would not fit the minimum MSS.",
    "Passed: the redirect found no AF_XDP socket on the RX queue (the responder is not running).",
    "FINs with no socket answered with an ACK by XDP itself (XDP_TX).",
    "Passed: the request-target has a byte the redirect would percent-encode, or a % without two hex digits.",
    "SYNs answered by XDP with a syncookie SYN-ACK sent back with XDP_TX.",
    "SYNs answered by XDP with a syncookie SYN-ACK transmitted by the AF_XDP responder.",
    "SYNs passed because bpf_tcp_gen_syncookie refused them (accept queue full, tcp_syncookies not 2, or a listener of the other address family).",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        // FNV-1a 64 reference vectors.
        assert_eq!(host_key(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(host_key(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(host_key(b"foobar"), 0x8594_4171_f739_67e8);
        // The wildcard states continue the hash of "*.".
        let mut h = WILD_KEY_INIT;
        let mut c = WILD_CHECK_INIT;
        for &b in b"example.com" {
            h = fnv64_step(h, b);
            c = fnv32_step(c, b);
        }
        assert_eq!(h, host_key(b"*.example.com"));
        assert_eq!(c, host_check(b"*.example.com"));
    }

    #[test]
    fn layouts() {
        assert_eq!(core::mem::size_of::<HostValue>(), 8);
        assert_eq!(core::mem::size_of::<FlowKey>(), 40);
        assert_eq!(core::mem::size_of::<Settings>(), 24);
    }
}
