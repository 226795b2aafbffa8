//! The XDP entry point: runs the steps in order and applies the verdict.
//!
//! For TCP to a watched port (see `force-https-common` for the maps):
//!
//! 1. [`parse`]: RST / URG → PASS; IP options, fragments, bad lengths → PASS.
//! 2. [`syn`], a SYN: with a listener (`bpf_skc_lookup_tcp`), answered right here with a
//!    syncookie SYN-ACK (`bpf_tcp_gen_syncookie`) sent back with `XDP_TX` or through the
//!    AF_XDP responder (`Settings::synack`); else PASS (the kernel answers with its own
//!    syncookie: `tcp_syncookies=2`).
//! 3. [`lookup`]: a socket other than the listener exists (`bpf_skc_lookup_tcp`) → PASS; no
//!    listener at all → PASS. The flow is in `FH_FLOWS` (its first data segment went to the
//!    kernel) → PASS.
//! 4. [`answer`], no payload: FIN → answered with an ACK right here (`XDP_TX`) when userspace
//!    allows it (`Settings::fin_tx`) and the options are the usual none or NOP,NOP,timestamp;
//!    otherwise the AF_XDP responder ACKs it (PASS when none is bound). Bare ACK → DROP
//!    (passed, it would make the kernel build a socket from the cookie).
//! 5. [`eligibility`], payload: the cookie must check out
//!    (`bpf_tcp_raw_check_syncookie_*`), else DROP. Then the head is checked completely
//!    ([`head`], [`lookup`]): one segment ending with the head, a method, an origin-form
//!    target with no byte to percent-encode (`force_https_common::uri`), HTTP/1.0 or 1.1,
//!    exactly one valid `Host`, no `Content-Length` or `Transfer-Encoding`, host in
//!    `FH_HOSTS` and enforced, path not under the ACME prefix, response within the minimum
//!    MSS. Eligible →
//!    redirect to the AF_XDP socket of the RX queue (PASS when none is bound); anything else
//!    → the flow goes into `FH_FLOWS` and the segment is PASSed.
//!
//! Verifier strategy: the payload is copied into a per-CPU scratch buffer with
//! `bpf_xdp_load_bytes`, every byte scan is a `bpf_loop` callback (verified once, whatever
//! the length), indices are masked, and scan results travel through the scratch map (volatile
//! accesses), so the verifier never tracks exact offsets across scans ([`crate::scratch`]).

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use force_https_common::{
    FlowKey, STAT_COOKIE_BAD_DROP, STAT_COOKIE_OK, STAT_DATA, STAT_FAST_REDIRECT, STAT_FLOW_PASS,
    STAT_PACKETS, net::TH_SYN,
};

use crate::maps::{FH_FLOWS, bump};
use crate::{answer, eligibility, lookup, parse, syn};

/// What to do with a packet, and which counter says why.
#[derive(Clone, Copy)]
pub enum Verdict {
    Pass(u32),
    /// Pass and remember the flow, so its later segments are passed too.
    PassFlow(u32),
    Drop(u32),
    /// Hand to the AF_XDP socket of the RX queue.
    Xsk(u32),
    /// Hand to the AF_XDP socket of the RX queue; drop without one (an answer already built
    /// in the frame).
    XskOrDrop(u32),
    /// Send back out of the interface (the frame was rewritten into the answer).
    Tx(u32),
}

/// A verdict and its flow; `None`: not TCP to a watched port (passed, not counted further).
pub type Decision = Option<(Verdict, FlowKey)>;

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
        Some((Verdict::Xsk(stat), _)) => answer::to_xsk(&ctx, stat),
        Some((Verdict::XskOrDrop(stat), _)) => answer::to_xsk_or(&ctx, stat, xdp_action::XDP_DROP),
    }
}

#[inline(always)]
fn classify(ctx: &XdpContext) -> Decision {
    let seg = match parse::dissect(ctx) {
        Ok(seg) => seg,
        Err(decided) => return decided,
    };
    let key = seg.key;
    if seg.flags & TH_SYN != 0 {
        return Some((syn::answer(ctx, &seg), key));
    }
    if let Err(stat) = lookup::listener_only(ctx, &key, seg.v6) {
        return Some((Verdict::Pass(stat), key));
    }
    if lookup::known_flow(&key) {
        return Some((Verdict::Pass(STAT_FLOW_PASS), key));
    }
    if seg.plen == 0 {
        return Some((answer::no_payload(ctx, &seg), key));
    }
    bump(STAT_DATA);
    if !eligibility::syncookie_ok(ctx, &seg)? {
        return Some((Verdict::Drop(STAT_COOKIE_BAD_DROP), key));
    }
    bump(STAT_COOKIE_OK);
    let v = match eligibility::request(ctx, &seg) {
        Ok(()) => Verdict::Xsk(STAT_FAST_REDIRECT),
        Err(stat) => Verdict::PassFlow(stat),
    };
    Some((v, key))
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
