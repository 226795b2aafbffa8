//! The XDP entry point, its packet parsing and the eligibility decision (bpf target only).
//!
//! For TCP to a watched port (see `force-https-common` for the maps):
//!
//! 1. SYN → PASS (the kernel answers with a syncookie: `tcp_syncookies=2`).
//! 2. RST / URG → PASS.
//! 3. A socket other than the listener exists (`bpf_skc_lookup_tcp`) → PASS; no listener at
//!    all → PASS.
//! 4. The flow is in `FH_FLOWS` (its first data segment went to the kernel) → PASS.
//! 5. No payload: FIN → answered with an ACK right here (`XDP_TX`) when userspace allows it
//!    (`Settings::fin_tx`) and the options are the usual none or NOP,NOP,timestamp; otherwise
//!    the AF_XDP responder ACKs it (PASS when none is bound). Bare ACK → DROP (passed, it would
//!    make the kernel build a socket from the cookie).
//! 6. Payload: the cookie must check out (`bpf_tcp_raw_check_syncookie_*`), else DROP. Then
//!    the head is checked completely: one segment ending with the head, a method, an
//!    origin-form target, HTTP/1.0 or 1.1, exactly one valid `Host`, no body, host in
//!    `FH_HOSTS` and enforced, path not under the ACME prefix, response within the minimum
//!    MSS. Eligible → redirect to the AF_XDP socket of the RX queue (PASS when none is bound);
//!    anything else → the flow goes into `FH_FLOWS` and the segment is PASSed.
//!
//! Verifier strategy: the payload is copied into a per-CPU scratch buffer with
//! `bpf_xdp_load_bytes`, every byte scan is a `bpf_loop` callback (verified once, whatever
//! the length), indices are masked, and scan results travel through the scratch map (volatile
//! accesses), so the verifier never tracks exact offsets across scans.

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_tuple, xdp_action},
    helpers::generated::{
        bpf_loop, bpf_sk_release, bpf_skc_lookup_tcp, bpf_tcp_raw_check_syncookie_ipv4,
        bpf_tcp_raw_check_syncookie_ipv6, bpf_xdp_load_bytes,
    },
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use force_https_common::{
    ANSWER_TTL, ANSWER_WINDOW, DEFAULT_MAX_FLOWS, DEFAULT_MAX_HOSTS, DEFAULT_MAX_QUEUES,
    FNV32_INIT, FNV64_INIT, FlowKey, HOST_ENFORCED, HOST_PASS, HostValue, MAX_HEAD, MAX_PORTS,
    MAX_RESPONSE_V4, MAX_RESPONSE_V6, STAT_BARE_ACK_DROP, STAT_COOKIE_BAD_DROP, STAT_COOKIE_OK,
    STAT_COUNT, STAT_DATA, STAT_FAST_REDIRECT, STAT_FIN_ACK_TX, STAT_FIN_REDIRECT, STAT_FLOW_PASS,
    STAT_PACKETS, STAT_PASS_EXEMPT, STAT_PASS_IP, STAT_PASS_NO_LISTENER, STAT_PASS_NO_XSK,
    STAT_PASS_NOT_ENFORCED, STAT_PASS_NOT_SIMPLE, STAT_PASS_PARTIAL, STAT_PASS_TOO_LARGE,
    STAT_PASS_UNKNOWN_HOST, STAT_SOCKET_PASS, STAT_SYN, STAT_TCP_WATCHED, Settings,
    WILD_CHECK_INIT, WILD_KEY_INIT, fnv32_step, fnv64_step,
};

#[map(name = "FH_PORTS")]
static FH_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

#[map(name = "FH_STATS")]
static FH_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// `BPF_F_NO_PREALLOC`: memory follows the number of hosts, not `max_hosts`.
const BPF_F_NO_PREALLOC: u32 = 1;

#[map(name = "FH_HOSTS")]
static FH_HOSTS: HashMap<u64, HostValue> =
    HashMap::with_max_entries(DEFAULT_MAX_HOSTS, BPF_F_NO_PREALLOC);

#[map(name = "FH_FLOWS")]
static FH_FLOWS: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(DEFAULT_MAX_FLOWS, 0);

#[map(name = "FH_XSKS")]
static FH_XSKS: XskMap = XskMap::with_max_entries(DEFAULT_MAX_QUEUES, 0);

#[map(name = "FH_SETTINGS")]
static FH_SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Size of the scratch buffer (a power of two; indices are masked with `MASK`).
const BUF: usize = MAX_HEAD as usize;
const MASK: usize = BUF - 1;
/// Most lines in a head XDP looks at (request line + headers + the empty line).
const MAX_LINES: u32 = 64;
/// Longest `Host` value XDP looks at (a 253-byte name plus `:65535` and some slack).
const MAX_HOST_VALUE: u32 = 264;
/// Longest method token.
const MAX_METHOD: u32 = 16;
const NONE: u32 = u32::MAX;

/// Per-CPU scratch space: the copied head and what the scans found.
#[repr(C)]
pub struct Scratch {
    buf: [u8; BUF],
    /// Offset of every `\n`.
    lines: [u32; MAX_LINES as usize],
    plen: u32,
    nl: u32,
    bad: u32,
    body: u32,
    /// Request line.
    method_end: u32,
    target_start: u32,
    target_end: u32,
    line0_end: u32,
    /// `Host` value (trimmed), absolute offsets.
    host_start: u32,
    host_end: u32,
    /// Host analysis.
    phase: u32,
    ipv6: u32,
    host_len: u32,
    first_dot: u32,
    port: u32,
    port_digits: u32,
    digits_dots_only: u32,
    /// Hashes.
    key: u64,
    check: u32,
    wkey_lo: u32,
    wkey: u64,
    wcheck: u32,
    pad: u32,
}

#[map(name = "FH_SCRATCH")]
static FH_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_TCP: u8 = 6;
const TCP_LISTEN: u32 = 10;
const BPF_F_CURRENT_NETNS: u64 = u64::MAX;

const TH_FIN: u8 = 0x01;
const TH_SYN: u8 = 0x02;
const TH_RST: u8 = 0x04;
const TH_ACK: u8 = 0x10;
const TH_URG: u8 = 0x20;

macro_rules! vget {
    ($s:expr, $f:ident) => {
        read_volatile(addr_of!((*$s).$f))
    };
}
macro_rules! vset {
    ($s:expr, $f:ident, $v:expr) => {
        write_volatile(addr_of_mut!((*$s).$f), $v)
    };
}

#[inline(always)]
fn bump(idx: u32) {
    if let Some(p) = FH_STATS.get_ptr_mut(idx) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

#[inline(always)]
fn be16(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p: *mut [u8; 2] = ptr_at(ctx, off)?;
    Some(u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn scratch() -> Option<*mut Scratch> {
    FH_SCRATCH.get_ptr_mut(0)
}

/// A byte of the scratch buffer at a masked offset.
#[inline(always)]
unsafe fn at(s: *mut Scratch, i: u32) -> u8 {
    unsafe { *(addr_of!((*s).buf) as *const u8).add(i as usize & MASK) }
}

#[inline(always)]
fn lower(b: u8) -> u8 {
    if b.is_ascii_uppercase() { b | 0x20 } else { b }
}

/// Whether the bytes at `off` equal `lit` (which is lowercase), ASCII case-insensitively.
#[inline(always)]
unsafe fn eq_nocase(s: *mut Scratch, off: u32, lit: &[u8]) -> bool {
    let mut i = 0;
    while i < lit.len() {
        if unsafe { lower(at(s, off + i as u32)) } != lit[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether the bytes at `off` equal `lit` exactly.
#[inline(always)]
unsafe fn eq_exact(s: *mut Scratch, off: u32, lit: &[u8]) -> bool {
    let mut i = 0;
    while i < lit.len() {
        if unsafe { at(s, off + i as u32) } != lit[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[inline(always)]
fn run_loop(n: u32, cb: unsafe extern "C" fn(u64, *mut c_void) -> i64) {
    unsafe {
        bpf_loop(n, cb as *const () as *mut c_void, core::ptr::null_mut(), 0);
    }
}

/// Records every `\n` (each must follow a `\r`) and flags bytes that never appear in a head
/// XDP answers: controls other than CR/LF/HTAB, DEL, non-ASCII.
#[inline(never)]
unsafe extern "C" fn cb_lines(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    unsafe {
        let i = idx as u32;
        let plen = vget!(s, plen);
        let b = at(s, i);
        if b == b'\n' {
            let n = vget!(s, nl);
            if i == 0 || at(s, i - 1) != b'\r' || n >= MAX_LINES {
                vset!(s, bad, 1);
                return 1;
            }
            write_volatile(
                (addr_of_mut!((*s).lines) as *mut u32).add((n & (MAX_LINES - 1)) as usize),
                i,
            );
            vset!(s, nl, n + 1);
        } else if b == b'\r' {
            if i + 1 >= plen || at(s, i + 1) != b'\n' {
                vset!(s, bad, 1);
                return 1;
            }
        } else if (b < 0x20 && b != b'\t') || b >= 0x7f {
            vset!(s, bad, 1);
            return 1;
        }
    }
    0
}

/// The method: uppercase letters up to the first space.
#[inline(never)]
unsafe extern "C" fn cb_method(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    unsafe {
        let i = idx as u32;
        let b = at(s, i);
        if b == b' ' {
            if i > 0 {
                vset!(s, method_end, i);
            }
            return 1;
        }
        if !b.is_ascii_uppercase() {
            return 1;
        }
    }
    0
}

/// The request-target, from `target_start` to the next space: bytes 0x21..=0x7e, no `#`.
#[inline(never)]
unsafe extern "C" fn cb_target(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    unsafe {
        let i = vget!(s, target_start) + idx as u32;
        let b = at(s, i);
        if b == b' ' {
            vset!(s, target_end, i);
            return 1;
        }
        if b == b'#' || b <= 0x20 || b >= 0x7f {
            vset!(s, bad, 1);
            return 1;
        }
    }
    0
}

/// One header line (line `idx + 1`): the empty line must be the last one; `Host`,
/// `Content-Length`, `Transfer-Encoding` are recognized.
#[inline(never)]
unsafe extern "C" fn cb_header(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    unsafe {
        let k = idx as u32 + 1;
        let lines = addr_of!((*s).lines) as *const u32;
        let start = read_volatile(lines.add(((k - 1) & (MAX_LINES - 1)) as usize)) + 1;
        let nlpos = read_volatile(lines.add((k & (MAX_LINES - 1)) as usize));
        // The line without its CR.
        let end = nlpos.wrapping_sub(1);
        if end <= start {
            // The empty line (or garbage): only allowed as the very last line.
            if end != start || k + 1 != vget!(s, nl) {
                vset!(s, bad, 1);
                return 1;
            }
            return 0;
        }
        let first = at(s, start);
        if first == b' ' || first == b'\t' {
            // obs-fold
            vset!(s, bad, 1);
            return 1;
        }
        let len = end - start;
        if len >= 5 && eq_nocase(s, start, b"host:") {
            if vget!(s, host_start) != NONE {
                vset!(s, bad, 1);
                return 1;
            }
            let mut a = start + 5;
            let mut j = 0;
            while j < 8 {
                let c = at(s, a);
                if a < end && (c == b' ' || c == b'\t') {
                    a += 1;
                }
                j += 1;
            }
            let mut e = end;
            j = 0;
            while j < 8 {
                let c = at(s, e - 1);
                if e > a && (c == b' ' || c == b'\t') {
                    e -= 1;
                }
                j += 1;
            }
            vset!(s, host_start, a);
            vset!(s, host_end, e);
        } else if len >= 15 && eq_nocase(s, start, b"content-length:") {
            // Only a zero length is a head without a body.
            let mut a = start + 15;
            let c = at(s, a);
            if c == b' ' || c == b'\t' {
                a += 1;
            }
            let mut e = end;
            let c = at(s, e - 1);
            if e > a && (c == b' ' || c == b'\t') {
                e -= 1;
            }
            if !(e == a + 1 && at(s, a) == b'0') {
                vset!(s, body, 1);
                return 1;
            }
        } else if len >= 18 && eq_nocase(s, start, b"transfer-encoding:") {
            vset!(s, body, 1);
            return 1;
        }
    }
    0
}

/// The `Host` value: `name[.][:port]` or `[v6][:port]`. Finds where the host ends, its first
/// dot, validates bytes and port.
#[inline(never)]
unsafe extern "C" fn cb_host(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    unsafe {
        let i = idx as u32;
        let b = at(s, vget!(s, host_start) + i);
        let phase = vget!(s, phase);
        if phase == 0 {
            if vget!(s, ipv6) != 0 {
                if i == 0 {
                    // the '['
                } else if b == b']' {
                    vset!(s, host_len, i + 1);
                    vset!(s, phase, 1);
                } else if !(b.is_ascii_hexdigit() || b == b':' || b == b'.') {
                    vset!(s, bad, 1);
                    return 1;
                }
            } else if b == b':' {
                vset!(s, host_len, i);
                vset!(s, phase, 2);
            } else if b == b'.' {
                if vget!(s, first_dot) == NONE {
                    vset!(s, first_dot, i);
                }
            } else if b.is_ascii_digit() {
            } else if b.is_ascii_alphabetic() || b == b'-' || b == b'_' {
                vset!(s, digits_dots_only, 0);
            } else {
                vset!(s, bad, 1);
                return 1;
            }
        } else if phase == 1 {
            if b != b':' {
                vset!(s, bad, 1);
                return 1;
            }
            vset!(s, phase, 2);
        } else {
            let d = vget!(s, port_digits);
            if !b.is_ascii_digit() || d >= 5 {
                vset!(s, bad, 1);
                return 1;
            }
            let p = vget!(s, port) * 10 + (b - b'0') as u32;
            if p > 65535 {
                vset!(s, bad, 1);
                return 1;
            }
            vset!(s, port, p);
            vset!(s, port_digits, d + 1);
        }
    }
    0
}

/// Hashes the normalized host (lowercase) and, after its first dot, the wildcard key.
#[inline(never)]
unsafe extern "C" fn cb_hash(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    unsafe {
        let i = idx as u32;
        let b = lower(at(s, vget!(s, host_start) + i));
        vset!(s, key, fnv64_step(vget!(s, key), b));
        vset!(s, check, fnv32_step(vget!(s, check), b));
        let fd = vget!(s, first_dot);
        if fd != NONE && i > fd {
            vset!(s, wkey, fnv64_step(vget!(s, wkey), b));
            vset!(s, wcheck, fnv32_step(vget!(s, wcheck), b));
        }
    }
    0
}

/// What to do with a packet, and which counter says why.
#[derive(Clone, Copy)]
enum Verdict {
    Pass(u32),
    /// Pass and remember the flow, so its later segments are passed too.
    PassFlow(u32),
    Drop(u32),
    /// Hand to the AF_XDP socket of the RX queue.
    Xsk(u32),
    /// Send back out of the interface (the frame was rewritten into the answer).
    Tx(u32),
}

#[xdp]
pub fn force_https(ctx: XdpContext) -> u32 {
    bump(STAT_PACKETS);
    match classify(&ctx) {
        None => xdp_action::XDP_PASS,
        Some((Verdict::Pass(stat), _)) => {
            bump(stat);
            xdp_action::XDP_PASS
        }
        Some((Verdict::PassFlow(stat), key)) => {
            bump(stat);
            let _ = FH_FLOWS.insert(&key, &1, 0);
            xdp_action::XDP_PASS
        }
        Some((Verdict::Drop(stat), _)) => {
            bump(stat);
            xdp_action::XDP_DROP
        }
        Some((Verdict::Tx(stat), _)) => {
            bump(stat);
            xdp_action::XDP_TX
        }
        Some((Verdict::Xsk(stat), _)) => {
            let queue = unsafe { (*ctx.ctx).rx_queue_index };
            match FH_XSKS.redirect(queue, xdp_action::XDP_PASS as u64) {
                Ok(action) => {
                    bump(stat);
                    action
                }
                Err(_) => {
                    bump(STAT_PASS_NO_XSK);
                    xdp_action::XDP_PASS
                }
            }
        }
    }
}

/// `None`: not TCP to a watched port (passed, not counted further).
#[inline(always)]
fn classify(ctx: &XdpContext) -> Option<(Verdict, FlowKey)> {
    let mut off = ETH_HLEN;
    let mut proto = be16(ctx, 12)?;
    if proto == ETH_P_8021Q {
        proto = be16(ctx, 16)?;
        off += 4;
    }
    let mut key = FlowKey::default();
    let l3 = off;
    let (l4, l4_total, v6) = match proto {
        ETH_P_IPV4 => {
            let ip: *mut [u8; 20] = ptr_at(ctx, l3)?;
            let ip = unsafe { &*ip };
            if ip[9] != IPPROTO_TCP {
                return None;
            }
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            if ip[0] != 0x45 || (frag & 0x3fff) != 0 {
                // IP options or a fragment: passed, and counted when it is TCP to a watched
                // port (as far as a first fragment tells).
                let ihl = ((ip[0] & 0x0f) as usize) * 4;
                let watched = frag & 0x1fff == 0
                    && ihl >= 20
                    && ihl <= 60
                    && be16(ctx, l3 + ihl + 2)
                        .is_some_and(|p| unsafe { FH_PORTS.get(&p) }.is_some());
                if watched {
                    return Some((Verdict::Pass(STAT_PASS_IP), key));
                }
                return None;
            }
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            key.saddr[..4].copy_from_slice(&ip[12..16]);
            key.daddr[..4].copy_from_slice(&ip[16..20]);
            key.family = 4;
            (l3 + 20, total.checked_sub(20)?, false)
        }
        ETH_P_IPV6 => {
            let ip: *mut [u8; 40] = ptr_at(ctx, l3)?;
            let ip = unsafe { &*ip };
            if ip[6] != IPPROTO_TCP {
                return None;
            }
            key.saddr.copy_from_slice(&ip[8..24]);
            key.daddr.copy_from_slice(&ip[24..40]);
            key.family = 6;
            (l3 + 40, u16::from_be_bytes([ip[4], ip[5]]) as usize, true)
        }
        _ => return None,
    };
    let th: *mut [u8; 20] = ptr_at(ctx, l4)?;
    let t = unsafe { &*th };
    let dport = u16::from_be_bytes([t[2], t[3]]);
    unsafe { FH_PORTS.get(&dport) }?;
    bump(STAT_TCP_WATCHED);
    key.sport = [t[0], t[1]];
    key.dport = [t[2], t[3]];
    let flags = t[13];
    if flags & TH_SYN != 0 {
        return Some((Verdict::Pass(STAT_SYN), key));
    }
    if flags & (TH_RST | TH_URG) != 0 || flags & TH_ACK == 0 {
        return Some((Verdict::Pass(STAT_PASS_NO_LISTENER), key));
    }
    let doff = ((t[12] >> 4) as usize) * 4;
    if doff < 20 || l4_total < doff {
        return Some((Verdict::Pass(STAT_PASS_IP), key));
    }
    let plen = l4_total - doff;
    if ctx.data() + l4 + l4_total > ctx.data_end() {
        return Some((Verdict::Pass(STAT_PASS_IP), key));
    }

    // Is there a socket besides the listener?
    let sk = unsafe {
        let mut tuple: bpf_sock_tuple = core::mem::zeroed();
        let size = if v6 {
            let t6 = &mut tuple.__bindgen_anon_1.ipv6;
            t6.saddr = core::mem::transmute::<[u8; 16], [u32; 4]>(key.saddr);
            t6.daddr = core::mem::transmute::<[u8; 16], [u32; 4]>(key.daddr);
            t6.sport = u16::from_ne_bytes(key.sport);
            t6.dport = u16::from_ne_bytes(key.dport);
            core::mem::size_of_val(t6)
        } else {
            let t4 = &mut tuple.__bindgen_anon_1.ipv4;
            t4.saddr = u32::from_ne_bytes([key.saddr[0], key.saddr[1], key.saddr[2], key.saddr[3]]);
            t4.daddr = u32::from_ne_bytes([key.daddr[0], key.daddr[1], key.daddr[2], key.daddr[3]]);
            t4.sport = u16::from_ne_bytes(key.sport);
            t4.dport = u16::from_ne_bytes(key.dport);
            core::mem::size_of_val(t4)
        };
        bpf_skc_lookup_tcp(
            ctx.ctx as *mut c_void,
            &mut tuple,
            size as u32,
            BPF_F_CURRENT_NETNS,
            0,
        )
    };
    if sk.is_null() {
        return Some((Verdict::Pass(STAT_PASS_NO_LISTENER), key));
    }
    let state = unsafe { (*(sk as *const bpf_sock)).state };
    unsafe { bpf_sk_release(sk as *mut c_void) };
    if state != TCP_LISTEN {
        return Some((Verdict::Pass(STAT_SOCKET_PASS), key));
    }
    if unsafe { FH_FLOWS.get(&key) }.is_some() {
        return Some((Verdict::Pass(STAT_FLOW_PASS), key));
    }
    if plen == 0 {
        if flags & TH_FIN != 0 {
            let tx = FH_SETTINGS.get(0).is_some_and(|s| s.fin_tx != 0);
            if tx && fin_ack_in_place(ctx, l3, l4, doff, v6).is_some() {
                return Some((Verdict::Tx(STAT_FIN_ACK_TX), key));
            }
            return Some((Verdict::Xsk(STAT_FIN_REDIRECT), key));
        }
        return Some((Verdict::Drop(STAT_BARE_ACK_DROP), key));
    }
    bump(STAT_DATA);
    let cookie = unsafe {
        if v6 {
            let ip: *mut [u8; 40] = ptr_at(ctx, l3)?;
            let th: *mut [u8; 20] = ptr_at(ctx, l4)?;
            bpf_tcp_raw_check_syncookie_ipv6(ip.cast(), th.cast())
        } else {
            let ip: *mut [u8; 20] = ptr_at(ctx, l3)?;
            let th: *mut [u8; 20] = ptr_at(ctx, l4)?;
            bpf_tcp_raw_check_syncookie_ipv4(ip.cast(), th.cast())
        }
    };
    if cookie != 0 {
        return Some((Verdict::Drop(STAT_COOKIE_BAD_DROP), key));
    }
    bump(STAT_COOKIE_OK);
    let v = match http(ctx, (l4 + doff) as u32, plen as u32, v6) {
        Ok(()) => Verdict::Xsk(STAT_FAST_REDIRECT),
        Err(stat) => Verdict::PassFlow(stat),
    };
    Some((v, key))
}

/// Adds the big-endian 16-bit words of `b` to a one's complement accumulator.
#[inline(always)]
fn sum16<const N: usize>(mut acc: u32, b: &[u8; N]) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        acc += u32::from(u16::from_be_bytes([b[i], b[i + 1]]));
        i += 2;
    }
    acc
}

/// The checksum field for a one's complement sum (at most a few hundred words).
#[inline(always)]
fn fold(mut acc: u32) -> [u8; 2] {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    (!(acc as u16)).to_be_bytes()
}

/// Rewrites a client's bare FIN (no kernel socket: the fast path answered and closed the
/// connection) into our ACK of it, the same bytes the AF_XDP responder would send
/// (`force_https_proto::frame::finish_answer` with no payload): addresses and ports swapped,
/// seq = their ack, ack = their seq + 1, ACK only, our window and TTL, the timestamp option
/// echoed, checksums recomputed. `None` (frame untouched) for TCP options other than none or
/// NOP,NOP,timestamp.
#[inline(always)]
fn fin_ack_in_place(ctx: &XdpContext, l3: usize, l4: usize, doff: usize, v6: bool) -> Option<()> {
    let ts = match doff {
        20 => false,
        32 => true,
        _ => return None,
    };
    if ts {
        let o: *mut [u8; 12] = ptr_at(ctx, l4 + 20)?;
        let o = unsafe { &*o };
        if o[0] != 1 || o[1] != 1 || o[2] != 8 || o[3] != 10 {
            return None;
        }
    }
    let th: *mut [u8; 20] = ptr_at(ctx, l4)?;
    let eth: *mut [u8; 12] = ptr_at(ctx, 0)?;
    let eth = unsafe { &mut *eth };
    for i in 0..6 {
        eth.swap(i, i + 6);
    }
    // IP header; `sum` starts as the pseudo-header's.
    let mut sum = u32::from(IPPROTO_TCP) + doff as u32;
    if v6 {
        let ip: *mut [u8; 40] = ptr_at(ctx, l3)?;
        let ip = unsafe { &mut *ip };
        for i in 8..24 {
            ip.swap(i, i + 16);
        }
        ip[7] = ANSWER_TTL;
        let addrs: *mut [u8; 32] = ptr_at(ctx, l3 + 8)?;
        sum = sum16(sum, unsafe { &*addrs });
    } else {
        let ip: *mut [u8; 20] = ptr_at(ctx, l3)?;
        let ip = unsafe { &mut *ip };
        for i in 12..16 {
            ip.swap(i, i + 4);
        }
        ip[1] = 0; // DSCP/ECN
        ip[4] = 0; // identification
        ip[5] = 0;
        ip[6] = 0x40; // DF
        ip[7] = 0;
        ip[8] = ANSWER_TTL;
        ip[10] = 0;
        ip[11] = 0;
        let c = fold(sum16(0, ip));
        ip[10] = c[0];
        ip[11] = c[1];
        let addrs: *mut [u8; 8] = ptr_at(ctx, l3 + 12)?;
        sum = sum16(sum, unsafe { &*addrs });
    }
    // TCP header.
    let t = unsafe { &mut *th };
    t.swap(0, 2);
    t.swap(1, 3);
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    let new_ack = seq.wrapping_add(1).to_be_bytes();
    let new_seq = ack.to_be_bytes();
    t[4..8].copy_from_slice(&new_seq);
    t[8..12].copy_from_slice(&new_ack);
    t[13] = TH_ACK;
    let w = ANSWER_WINDOW.to_be_bytes();
    t[14] = w[0];
    t[15] = w[1];
    t[16] = 0;
    t[17] = 0;
    t[18] = 0;
    t[19] = 0;
    sum = sum16(sum, t);
    if ts {
        let o: *mut [u8; 12] = ptr_at(ctx, l4 + 20)?;
        let o = unsafe { &mut *o };
        for i in 4..8 {
            o.swap(i, i + 4);
        }
        sum = sum16(sum, o);
    }
    let c = fold(sum);
    t[16] = c[0];
    t[17] = c[1];
    Some(())
}

/// Decides whether the request in the payload is answered by the fast path; `Err` holds the
/// counter of the reason it is not.
#[inline(always)]
fn http(ctx: &XdpContext, poff: u32, plen: u32, v6: bool) -> Result<(), u32> {
    let settings = FH_SETTINGS.get(0).ok_or(STAT_PASS_NOT_SIMPLE)?;
    if settings.ready == 0 {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    let fixed = settings.fixed_len;
    if plen < 18 || plen > MAX_HEAD {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    let s = scratch().ok_or(STAT_PASS_NOT_SIMPLE)?;
    unsafe {
        let n = plen & (MAX_HEAD * 2 - 1);
        if n == 0 || n > MAX_HEAD {
            return Err(STAT_PASS_NOT_SIMPLE);
        }
        if bpf_xdp_load_bytes(ctx.ctx, poff, addr_of_mut!((*s).buf) as *mut c_void, n) != 0 {
            return Err(STAT_PASS_NOT_SIMPLE);
        }
        vset!(s, plen, plen);
        vset!(s, nl, 0);
        vset!(s, bad, 0);
        vset!(s, body, 0);
        vset!(s, method_end, NONE);
        vset!(s, target_end, NONE);
        vset!(s, host_start, NONE);
        vset!(s, host_end, NONE);

        // The head must end exactly with the segment.
        let p = vget!(s, plen);
        if !eq_exact(s, p - 4, b"\r\n\r\n") {
            return Err(STAT_PASS_PARTIAL);
        }
        run_loop(plen, cb_lines);
        let nl = vget!(s, nl);
        if vget!(s, bad) != 0 || nl < 3 {
            return Err(STAT_PASS_NOT_SIMPLE);
        }
        // Request line: METHOD SP /target SP HTTP/1.x CR LF
        let line0_end = read_volatile(addr_of!((*s).lines) as *const u32);
        vset!(s, line0_end, line0_end);
        run_loop(MAX_METHOD, cb_method);
        let m = vget!(s, method_end);
        if m == NONE {
            return Err(STAT_PASS_NOT_SIMPLE);
        }
        let ts = m + 1;
        if at(s, ts) != b'/' {
            return Err(STAT_PASS_NOT_SIMPLE);
        }
        vset!(s, target_start, ts);
        let l0 = vget!(s, line0_end);
        if l0 < ts + 10 || l0 > MAX_HEAD {
            return Err(STAT_PASS_NOT_SIMPLE);
        }
        run_loop(l0 - ts, cb_target);
        let te = vget!(s, target_end);
        let l0 = vget!(s, line0_end);
        if vget!(s, bad) != 0 || te == NONE || te + 10 != l0 {
            return Err(STAT_PASS_NOT_SIMPLE);
        }
        if !(eq_exact(s, te, b" HTTP/1.1") || eq_exact(s, te, b" HTTP/1.0")) {
            return Err(STAT_PASS_NOT_SIMPLE);
        }
        let ts = vget!(s, target_start);
        let tlen = te - ts;
        if tlen >= 28 && eq_exact(s, ts, b"/.well-known/acme-challenge/") {
            return Err(STAT_PASS_EXEMPT);
        }

        // Header lines.
        let nl = vget!(s, nl);
        run_loop(nl - 1, cb_header);
        if vget!(s, body) != 0 {
            return Err(STAT_PASS_NOT_SIMPLE);
        }
        let hs = vget!(s, host_start);
        let he = vget!(s, host_end);
        if vget!(s, bad) != 0 || hs == NONE || he <= hs || he - hs > MAX_HOST_VALUE {
            return Err(STAT_PASS_NOT_SIMPLE);
        }

        // Host value.
        vset!(s, phase, 0);
        vset!(s, ipv6, (at(s, hs) == b'[') as u32);
        vset!(s, host_len, NONE);
        vset!(s, first_dot, NONE);
        vset!(s, port, 0);
        vset!(s, port_digits, 0);
        vset!(s, digits_dots_only, 1);
        run_loop(he - hs, cb_host);
        if vget!(s, bad) != 0 {
            return Err(STAT_PASS_NOT_SIMPLE);
        }
        let phase = vget!(s, phase);
        let ipv6 = vget!(s, ipv6);
        let mut hl = vget!(s, host_len);
        if phase == 0 {
            if ipv6 != 0 {
                return Err(STAT_PASS_NOT_SIMPLE);
            }
            hl = vget!(s, host_end) - vget!(s, host_start);
        }
        let hs = vget!(s, host_start);
        if ipv6 == 0 && hl > 0 && at(s, hs + hl - 1) == b'.' {
            hl -= 1;
        }
        if hl == 0 || hl > 253 {
            return Err(STAT_PASS_NOT_SIMPLE);
        }
        vset!(s, host_len, hl);
        let fd = vget!(s, first_dot);
        let fd = if fd != NONE && fd >= hl { NONE } else { fd };
        vset!(s, first_dot, fd);

        // Hashes.
        vset!(s, key, FNV64_INIT);
        vset!(s, check, FNV32_INIT);
        vset!(s, wkey, WILD_KEY_INIT);
        vset!(s, wcheck, WILD_CHECK_INIT);
        run_loop(hl, cb_hash);
        let hl = vget!(s, host_len);
        let key = vget!(s, key);
        let entry = match FH_HOSTS.get(&key) {
            // A key userspace flagged (it may stand for two patterns): the kernel decides.
            Some(v) if v.flags & HOST_PASS != 0 => return Err(STAT_PASS_EXEMPT),
            Some(v) if v.check == vget!(s, check) && v.len as u32 == hl => Some(*v),
            _ => None,
        };
        let entry = match entry {
            Some(e) => e,
            None => {
                // One-label wildcard: the first label must be a real label, and IPv4 literals
                // and IPv6 literals never match a wildcard.
                let fd = vget!(s, first_dot);
                if fd == NONE || fd == 0 || fd > 63 || ipv6 != 0 || vget!(s, digits_dots_only) != 0
                {
                    return Err(STAT_PASS_UNKNOWN_HOST);
                }
                let wkey = vget!(s, wkey);
                match FH_HOSTS.get(&wkey) {
                    Some(v) if v.flags & HOST_PASS != 0 => return Err(STAT_PASS_EXEMPT),
                    Some(v) if v.check == vget!(s, wcheck) && v.len as u32 == hl - fd + 1 => *v,
                    _ => return Err(STAT_PASS_UNKNOWN_HOST),
                }
            }
        };
        if entry.flags & HOST_PASS != 0 {
            return Err(STAT_PASS_EXEMPT);
        }
        if entry.flags & HOST_ENFORCED == 0 {
            return Err(STAT_PASS_NOT_ENFORCED);
        }
        let limit = if v6 { MAX_RESPONSE_V6 } else { MAX_RESPONSE_V4 };
        let te = vget!(s, target_end);
        let ts = vget!(s, target_start);
        if fixed as u64 + hl as u64 + (te - ts) as u64 > limit as u64 {
            return Err(STAT_PASS_TOO_LARGE);
        }
    }
    Ok(())
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
