//! The SYN answered in XDP: a syncookie SYN-ACK made in place, so the kernel never sees a
//! port-80 handshake the fast path can answer.
//!
//! The cookie comes from the socket helper `bpf_tcp_gen_syncookie` with the listener that
//! `bpf_skc_lookup_tcp` found, never from the raw `bpf_tcp_raw_gen_syncookie_*` helpers: the
//! socket helper also refreshes the listener's "recent SYN queue overflow" stamp
//! (`tcp_synq_overflow`), without which the kernel refuses every cookie 120 s after the last
//! one it issued itself, and so every segment XDP passes (split heads, hosts not enforced,
//! ACME). It needs `tcp_syncookies = 2` and room in the accept queue; when it refuses, the
//! SYN goes to the kernel as before.
//!
//! The SYN-ACK carries the MSS option only (our MSS from [`Settings`], the interface MTU less
//! the headers), a full window and complete checksums: window scale, SACK and ECN travel in
//! the timestamp echo of a kernel cookie, after a per-connection offset XDP cannot compute, so
//! they are not offered. Sequence number = the cookie, acknowledgment = the SYN's + 1.
//!
//! [`Settings`]: force_https_common::Settings

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{bpf_sock, tcphdr},
    helpers::generated::{
        bpf_sk_release, bpf_tcp_gen_syncookie, bpf_xdp_adjust_tail, bpf_xdp_load_bytes,
    },
    programs::XdpContext,
};
use force_https_common::{
    ANSWER_WINDOW, STAT_PASS_NO_LISTENER, STAT_PASS_NO_XSK, STAT_SOCKET_PASS, STAT_SYN,
    STAT_SYN_COOKIE_REFUSED, STAT_SYNACK_TX, STAT_SYNACK_XSK, SYNACK_TCP_HLEN, SYNACK_TX,
    SYNACK_XSK,
    net::{IPV4_HLEN, IPV6_HLEN, TH_ACK, TH_SYN},
};

use crate::answer::{fold, sum16, turn_around};
use crate::lookup::{self, TCP_LISTEN};
use crate::maps::{FH_SETTINGS, FH_XSKS};
use crate::parse::{Segment, ptr_at};
use crate::prog::Verdict;
use crate::scratch::scratch;

/// Answers a SYN (no other flag but ECE/CWR, no payload) to a watched port: with a SYN-ACK
/// sent back (`XDP_TX`) or handed to the responder, as [`Settings::synack`] says, or passed
/// with the counter of the reason.
///
/// [`Settings::synack`]: force_https_common::Settings::synack
#[inline(always)]
pub fn answer(ctx: &XdpContext, seg: &Segment) -> Verdict {
    let Some(settings) = FH_SETTINGS.get(0) else {
        return Verdict::Pass(STAT_SYN);
    };
    let mode = settings.synack;
    let mss = if seg.v6 {
        settings.mss_v6
    } else {
        settings.mss_v4
    };
    if (mode != SYNACK_TX && mode != SYNACK_XSK) || seg.plen != 0 || mss == 0 || mss > 0xffff {
        return Verdict::Pass(STAT_SYN);
    }
    // SAFETY: `ctx.ctx` is the kernel's `xdp_md` of this run.
    let queue = unsafe { (*ctx.ctx).rx_queue_index };
    if mode == SYNACK_XSK && FH_XSKS.get(queue).is_none() {
        // No responder on this queue (stopping, or killed): the kernel answers.
        return Verdict::Pass(STAT_PASS_NO_XSK);
    }
    let cookie = match cookie(ctx, seg) {
        Ok(c) => c,
        Err(stat) => return Verdict::Pass(stat),
    };
    // The SYN-ACK is the headers up to TCP and 24 bytes of TCP: shrink (options) or grow (a
    // SYN without options) the frame. Ethernet padding goes too. On failure the frame is
    // untouched and goes to the kernel.
    let len = ctx.data_end() - ctx.data();
    let want = seg.l4 + SYNACK_TCP_HLEN;
    if want != len {
        let delta = want as i64 - len as i64;
        // SAFETY: the helper checks the new length against the buffer.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } != 0 {
            return Verdict::Pass(STAT_SYN);
        }
    }
    // From here on the frame is changed: anything that fails drops it (the client sends its
    // SYN again).
    if synack_in_place(ctx, seg.l3, seg.l4, seg.v6, cookie, mss as u16).is_none() {
        return Verdict::Drop(STAT_SYN);
    }
    if mode == SYNACK_TX {
        Verdict::Tx(STAT_SYNACK_TX)
    } else {
        Verdict::XskOrDrop(STAT_SYNACK_XSK)
    }
}

/// The cookie for this SYN from the listener's own helper; `Err` holds the pass counter (no
/// socket, a connection's socket, or the helper refused).
#[inline(always)]
fn cookie(ctx: &XdpContext, seg: &Segment) -> Result<u32, u32> {
    let sk = lookup::socket(ctx, &seg.key, seg.v6);
    if sk.is_null() {
        return Err(STAT_PASS_NO_LISTENER);
    }
    // SAFETY: a non-null socket pointer from the helper (the verifier tracks it and allows
    // reading `state`); released exactly once below, whatever happened in between.
    let state = unsafe { (*(sk as *const bpf_sock)).state };
    let r = if state == TCP_LISTEN {
        gen_cookie(ctx, seg, sk as *mut c_void)
    } else {
        -1
    };
    // SAFETY: as above.
    unsafe { bpf_sk_release(sk as *mut c_void) };
    if state != TCP_LISTEN {
        return Err(STAT_SOCKET_PASS);
    }
    if r < 0 {
        return Err(STAT_SYN_COOKIE_REFUSED);
    }
    Ok(r as u32)
}

/// `bpf_tcp_gen_syncookie` on the SYN's headers: the IP header in the frame (fixed size), the
/// TCP header (options included, so the client's MSS is read) copied into the scratch buffer
/// so that its variable length is a bounded size the verifier accepts. Negative: refused.
#[inline(always)]
fn gen_cookie(ctx: &XdpContext, seg: &Segment, sk: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return -1 };
    // 20..=60 (a multiple of 4, checked by `parse`), in a form whose bounds the verifier
    // sees on the register itself: 20 + (doff - 20) & 0x3c.
    let th_len = 20 + ((seg.doff as u32).wrapping_sub(20) & 0x3c);
    // SAFETY: the destination is the scratch buffer (2048 bytes) and `th_len <= 80`; the
    // helper checks the source range against the frame.
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, seg.l4 as u32, s.buf_ptr(), th_len) } != 0 {
        return -1;
    }
    let th = s.buf_ptr() as *mut tcphdr;
    if seg.v6 {
        let Some(ip) = ptr_at::<[u8; IPV6_HLEN]>(ctx, seg.l3) else {
            return -1;
        };
        // SAFETY: `sk` is the referenced listener; `ip` covers the 40 bytes passed (checked by
        // `ptr_at`), `th` the `th_len` bytes just copied; the helper only reads them.
        unsafe { bpf_tcp_gen_syncookie(sk, ip.cast(), IPV6_HLEN as u32, th, th_len) }
    } else {
        let Some(ip) = ptr_at::<[u8; IPV4_HLEN]>(ctx, seg.l3) else {
            return -1;
        };
        // SAFETY: as above, with the 20-byte IPv4 header.
        unsafe { bpf_tcp_gen_syncookie(sk, ip.cast(), IPV4_HLEN as u32, th, th_len) }
    }
}

/// Rewrites the SYN (the frame already cut or grown to `l4 + 24` bytes) into the SYN-ACK:
/// MACs, addresses and ports swapped; IPv4 without options, DF, TTL 64, or IPv6 with traffic
/// class and flow label 0, hop limit 64; seq = `cookie`, ack = their seq + 1, SYN|ACK, the
/// data offset of 24 bytes, [`ANSWER_WINDOW`], the MSS option; both checksums computed. The
/// same bytes as `force_https_proto::frame::syn_ack_in_place`.
#[inline(always)]
fn synack_in_place(
    ctx: &XdpContext,
    l3: usize,
    l4: usize,
    v6: bool,
    cookie: u32,
    mss: u16,
) -> Option<()> {
    let sum = turn_around(ctx, l3, v6, SYNACK_TCP_HLEN, true)?;
    let th: *mut [u8; SYNACK_TCP_HLEN] = ptr_at(ctx, l4)?;
    // SAFETY: checked by `ptr_at`; after the IP header, no other live reference.
    let t = unsafe { &mut *th };
    t.swap(0, 2);
    t.swap(1, 3);
    let their_seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let seq = cookie.to_be_bytes();
    let ack = their_seq.wrapping_add(1).to_be_bytes();
    t[4..8].copy_from_slice(&seq);
    t[8..12].copy_from_slice(&ack);
    t[12] = ((SYNACK_TCP_HLEN / 4) as u8) << 4;
    t[13] = TH_SYN | TH_ACK;
    let w = ANSWER_WINDOW.to_be_bytes();
    t[14] = w[0];
    t[15] = w[1];
    t[16] = 0;
    t[17] = 0;
    t[18] = 0;
    t[19] = 0;
    let m = mss.to_be_bytes();
    t[20] = 2;
    t[21] = 4;
    t[22] = m[0];
    t[23] = m[1];
    let c = fold(sum16(sum, t));
    t[16] = c[0];
    t[17] = c[1];
    Some(())
}
