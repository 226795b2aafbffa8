//! The answers XDP gives itself: the ACK of a client's FIN rewritten in place (`XDP_TX`),
//! and the redirect of a frame to the AF_XDP socket of its RX queue (`FH_XSKS`).

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use force_https_common::{
    ANSWER_TTL, ANSWER_WINDOW, STAT_BARE_ACK_DROP, STAT_FIN_ACK_TX, STAT_FIN_REDIRECT,
    STAT_PASS_NO_XSK,
    net::{IPPROTO_TCP, TH_ACK, TH_FIN},
};

use crate::maps::{FH_SETTINGS, FH_XSKS, bump};
use crate::parse::{Segment, ptr_at};
use crate::prog::Verdict;

/// A segment without payload and without a socket: a FIN is ACKed (here with `XDP_TX` when
/// allowed and possible, else by the AF_XDP responder); a bare ACK is dropped.
#[inline(always)]
pub fn no_payload(ctx: &XdpContext, seg: &Segment) -> Verdict {
    if seg.flags & TH_FIN != 0 {
        let tx = FH_SETTINGS.get(0).is_some_and(|s| s.fin_tx != 0);
        if tx && fin_ack_in_place(ctx, seg.l3, seg.l4, seg.doff, seg.v6).is_some() {
            return Verdict::Tx(STAT_FIN_ACK_TX);
        }
        return Verdict::Xsk(STAT_FIN_REDIRECT);
    }
    Verdict::Drop(STAT_BARE_ACK_DROP)
}

/// Redirects the frame to the AF_XDP socket of its RX queue and counts `stat`; without a
/// socket there, passes it and counts `STAT_PASS_NO_XSK`.
#[inline(always)]
pub fn to_xsk(ctx: &XdpContext, stat: u32) -> u32 {
    to_xsk_or(ctx, stat, xdp_action::XDP_PASS)
}

/// As [`to_xsk`], but without a socket the frame gets `fallback` (`XDP_DROP` for a frame
/// already rewritten into an answer, which the kernel must not receive).
#[inline(always)]
pub fn to_xsk_or(ctx: &XdpContext, stat: u32, fallback: u32) -> u32 {
    // SAFETY: `ctx.ctx` is the kernel's `xdp_md` of this run.
    let queue = unsafe { (*ctx.ctx).rx_queue_index };
    match FH_XSKS.redirect(queue, u64::from(fallback)) {
        Ok(action) => {
            bump(stat);
            action
        }
        Err(_) => {
            bump(STAT_PASS_NO_XSK);
            fallback
        }
    }
}

/// Adds the big-endian 16-bit words of `b` to a one's complement accumulator.
#[inline(always)]
pub fn sum16<const N: usize>(mut acc: u32, b: &[u8; N]) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        acc += u32::from(u16::from_be_bytes([b[i], b[i + 1]]));
        i += 2;
    }
    acc
}

/// The checksum field for a one's complement sum (at most a few hundred words).
#[inline(always)]
pub fn fold(mut acc: u32) -> [u8; 2] {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    (!(acc as u16)).to_be_bytes()
}

/// Turns the Ethernet and IP headers of a received frame around for an answer carrying
/// `tcp_len` bytes of TCP (header and payload): MAC addresses and IP addresses swapped,
/// lengths set, TTL / hop limit [`ANSWER_TTL`]; IPv4 (no options) with DSCP/ECN 0,
/// identification 0, DF and its checksum; IPv6 with traffic class and flow label cleared when
/// `clear_flow`. Returns the one's complement sum of the TCP pseudo-header (addresses,
/// protocol, length), to which the caller adds the TCP bytes. The same headers as
/// `force_https_proto::frame::finish_answer` and `syn_ack_in_place`.
#[inline(always)]
pub fn turn_around(
    ctx: &XdpContext,
    l3: usize,
    v6: bool,
    tcp_len: usize,
    clear_flow: bool,
) -> Option<u32> {
    let eth: *mut [u8; 12] = ptr_at(ctx, 0)?;
    // SAFETY: `ptr_at` checked the 12 bytes against `data_end`; the frame is ours to rewrite
    // and no other reference into it is alive.
    let eth = unsafe { &mut *eth };
    for i in 0..6 {
        eth.swap(i, i + 6);
    }
    let sum = u32::from(IPPROTO_TCP) + tcp_len as u32;
    if v6 {
        let ip: *mut [u8; 40] = ptr_at(ctx, l3)?;
        // SAFETY: as for `eth` (the IP header does not overlap the 12 MAC bytes).
        let ip = unsafe { &mut *ip };
        if clear_flow {
            ip[0] = 0x60;
            ip[1] = 0;
            ip[2] = 0;
            ip[3] = 0;
        }
        let len = (tcp_len as u16).to_be_bytes();
        ip[4] = len[0];
        ip[5] = len[1];
        ip[7] = ANSWER_TTL;
        for i in 8..24 {
            ip.swap(i, i + 16);
        }
        let addrs: *mut [u8; 32] = ptr_at(ctx, l3 + 8)?;
        // SAFETY: checked by `ptr_at`; read only, and `ip` is not used after this.
        Some(sum16(sum, unsafe { &*addrs }))
    } else {
        let ip: *mut [u8; 20] = ptr_at(ctx, l3)?;
        // SAFETY: as for `eth` (the IP header does not overlap the 12 MAC bytes).
        let ip = unsafe { &mut *ip };
        for i in 12..16 {
            ip.swap(i, i + 4);
        }
        let total = ((20 + tcp_len) as u16).to_be_bytes();
        ip[1] = 0; // DSCP/ECN
        ip[2] = total[0];
        ip[3] = total[1];
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
        // SAFETY: checked by `ptr_at`; read only, and `ip` is not used after this.
        Some(sum16(sum, unsafe { &*addrs }))
    }
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
        // SAFETY: `ptr_at` checked the 12 bytes against `data_end`; read only here.
        let o = unsafe { &*o };
        if o[0] != 1 || o[1] != 1 || o[2] != 8 || o[3] != 10 {
            return None;
        }
    }
    let th: *mut [u8; 20] = ptr_at(ctx, l4)?;
    let mut sum = turn_around(ctx, l3, v6, doff, false)?;
    // TCP header.
    // SAFETY: checked by `ptr_at` above; after the IP header, no other live reference.
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
        // SAFETY: checked by `ptr_at`; the options follow the 20-byte TCP header `t`, so the
        // two do not overlap.
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
