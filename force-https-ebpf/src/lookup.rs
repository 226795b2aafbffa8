//! Lookups: the kernel socket of a segment (`bpf_skc_lookup_tcp`), the flow LRU
//! (`FH_FLOWS`), and the request's host in `FH_HOSTS`: the `Host` value is validated and
//! normalized (lowercase, trailing dot and port dropped, IPv6 brackets kept) and hashed byte
//! by byte, then the exact key and the one-label wildcard key of its parent are looked up.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{bpf_sock, bpf_sock_tuple},
    helpers::generated::{bpf_sk_release, bpf_skc_lookup_tcp},
    programs::XdpContext,
};
use force_https_common::{
    FNV32_INIT, FNV64_INIT, FlowKey, HOST_PASS, HostValue, STAT_PASS_EXEMPT, STAT_PASS_NO_LISTENER,
    STAT_PASS_NOT_SIMPLE, STAT_PASS_UNKNOWN_HOST, STAT_SOCKET_PASS, WILD_CHECK_INIT, WILD_KEY_INIT,
    fnv32_step, fnv64_step,
};

use crate::maps::{FH_FLOWS, FH_HOSTS};
use crate::scratch::{NONE, Sp, lower, run_loop, scratch};

/// `TCP_LISTEN` of `bpf_sock::state`.
pub const TCP_LISTEN: u32 = 10;
const BPF_F_CURRENT_NETNS: u64 = u64::MAX;

/// The kernel socket of the segment's 4-tuple (`bpf_skc_lookup_tcp`: a connection's own
/// socket, time-wait included, else the listener), or null. A non-null result holds a
/// reference the caller must give back with `bpf_sk_release` on every path.
#[inline(always)]
pub fn socket(ctx: &XdpContext, key: &FlowKey, v6: bool) -> *mut bpf_sock {
    // SAFETY: `bpf_sock_tuple` is plain integers (all-zero is valid); the union member written
    // is the one whose size is passed to the helper, together with the program's own context.
    unsafe {
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
    }
}

/// `Ok` when only the listener matches the segment; `Err` holds the pass counter when there is
/// no socket at all or a connection's own socket.
#[inline(always)]
pub fn listener_only(ctx: &XdpContext, key: &FlowKey, v6: bool) -> Result<(), u32> {
    let sk = socket(ctx, key, v6);
    if sk.is_null() {
        return Err(STAT_PASS_NO_LISTENER);
    }
    // SAFETY: a non-null socket pointer from the helper (the verifier tracks it and allows
    // reading `state`), released exactly once, right after the read.
    let state = unsafe { (*sk).state };
    // SAFETY: as above.
    unsafe { bpf_sk_release(sk as *mut c_void) };
    if state != TCP_LISTEN {
        return Err(STAT_SOCKET_PASS);
    }
    Ok(())
}

/// Whether the flow was handed to the kernel before.
#[inline(always)]
pub fn known_flow(key: &FlowKey) -> bool {
    // SAFETY: presence test only; the value is not read.
    unsafe { FH_FLOWS.get(key) }.is_some()
}

/// The `Host` value: `name[.][:port]` or `[v6][:port]`. Finds where the host ends, its first
/// dot, validates bytes and port.
#[inline(never)]
extern "C" fn cb_host(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let i = idx as u32;
    let b = s.at(vget!(s, host_start) + i);
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
    0
}

/// Hashes the normalized host (lowercase) and, after its first dot, the wildcard key.
#[inline(never)]
extern "C" fn cb_hash(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let i = idx as u32;
    let b = lower(s.at(vget!(s, host_start) + i));
    vset!(s, key, fnv64_step(vget!(s, key), b));
    vset!(s, check, fnv32_step(vget!(s, check), b));
    let fd = vget!(s, first_dot);
    if fd != NONE && i > fd {
        vset!(s, wkey, fnv64_step(vget!(s, wkey), b));
        vset!(s, wcheck, fnv32_step(vget!(s, wcheck), b));
    }
    0
}

/// Validates the `Host` value `hs..he` and sets `host_len` (the normalized length: no port,
/// no trailing dot) and `first_dot`. `Ok` holds (`host_len`, whether it is an IPv6 literal).
#[inline(always)]
pub fn normalize_host(s: Sp, hs: u32, he: u32) -> Result<(u32, u32), u32> {
    vset!(s, phase, 0);
    vset!(s, ipv6, (s.at(hs) == b'[') as u32);
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
    if ipv6 == 0 && hl > 0 && s.at(hs + hl - 1) == b'.' {
        hl -= 1;
    }
    if hl == 0 || hl > 253 {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    vset!(s, host_len, hl);
    let fd = vget!(s, first_dot);
    let fd = if fd != NONE && fd >= hl { NONE } else { fd };
    vset!(s, first_dot, fd);
    Ok((hl, ipv6))
}

/// Hashes the normalized host and finds its entry: the exact name, else the wildcard of its
/// parent. `hl` and `ipv6` are what [`normalize_host`] returned. `Ok` holds the entry and the
/// normalized host length.
#[inline(always)]
pub fn host_entry(s: Sp, hl: u32, ipv6: u32) -> Result<(HostValue, u32), u32> {
    vset!(s, key, FNV64_INIT);
    vset!(s, check, FNV32_INIT);
    vset!(s, wkey, WILD_KEY_INIT);
    vset!(s, wcheck, WILD_CHECK_INIT);
    run_loop(hl, cb_hash);
    let hl = vget!(s, host_len);
    let key = vget!(s, key);
    // SAFETY: the entry is copied out right away; a concurrent update can only give an old or
    // a new value, both valid `HostValue`s.
    let entry = match unsafe { FH_HOSTS.get(&key) } {
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
            if fd == NONE || fd == 0 || fd > 63 || ipv6 != 0 || vget!(s, digits_dots_only) != 0 {
                return Err(STAT_PASS_UNKNOWN_HOST);
            }
            let wkey = vget!(s, wkey);
            // SAFETY: as above.
            match unsafe { FH_HOSTS.get(&wkey) } {
                Some(v) if v.flags & HOST_PASS != 0 => return Err(STAT_PASS_EXEMPT),
                Some(v) if v.check == vget!(s, wcheck) && v.len as u32 == hl - fd + 1 => *v,
                _ => return Err(STAT_PASS_UNKNOWN_HOST),
            }
        }
    };
    Ok((entry, hl))
}
