//! Whether a connection's first data segment goes to the AF_XDP responder: the syncookie
//! checks out, and the head is one the responder answers with a redirect that fits the
//! minimum MSS. Decided completely here: a frame handed to AF_XDP cannot go back.

use aya_ebpf::{
    helpers::generated::{bpf_tcp_raw_check_syncookie_ipv4, bpf_tcp_raw_check_syncookie_ipv6},
    programs::XdpContext,
};
use force_https_common::{
    ACME_PREFIX, HOST_ENFORCED, HOST_PASS, MAX_HEAD, MAX_RESPONSE_V4, MAX_RESPONSE_V6,
    STAT_PASS_EXEMPT, STAT_PASS_NOT_ENFORCED, STAT_PASS_NOT_SIMPLE, STAT_PASS_TOO_LARGE,
};

use crate::maps::FH_SETTINGS;
use crate::parse::{Segment, ptr_at};
use crate::{head, lookup};

/// Whether the segment carries a valid syncookie (`None`: headers not in the frame).
#[inline(always)]
pub fn syncookie_ok(ctx: &XdpContext, seg: &Segment) -> Option<bool> {
    let cookie = if seg.v6 {
        let ip: *mut [u8; 40] = ptr_at(ctx, seg.l3)?;
        let th: *mut [u8; 20] = ptr_at(ctx, seg.l4)?;
        // SAFETY: both headers were checked against `data_end` by `ptr_at`; the helper only
        // reads them.
        unsafe { bpf_tcp_raw_check_syncookie_ipv6(ip.cast(), th.cast()) }
    } else {
        let ip: *mut [u8; 20] = ptr_at(ctx, seg.l3)?;
        let th: *mut [u8; 20] = ptr_at(ctx, seg.l4)?;
        // SAFETY: as above.
        unsafe { bpf_tcp_raw_check_syncookie_ipv4(ip.cast(), th.cast()) }
    };
    Some(cookie == 0)
}

/// Decides whether the request in the payload is answered by the fast path; `Err` holds the
/// counter of the reason it is not.
#[inline(always)]
pub fn request(ctx: &XdpContext, seg: &Segment) -> Result<(), u32> {
    let poff = (seg.l4 + seg.doff) as u32;
    let plen = seg.plen as u32;
    let settings = FH_SETTINGS.get(0).ok_or(STAT_PASS_NOT_SIMPLE)?;
    if settings.ready == 0 {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    let fixed = settings.fixed_len;
    if plen < 18 || plen > MAX_HEAD {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    let s = head::load(ctx, poff, plen)?;
    head::lines(s, plen)?;
    let te = head::request_line(s)?;
    if head::target_starts_with(s, te, ACME_PREFIX.as_bytes()) {
        return Err(STAT_PASS_EXEMPT);
    }
    let (hs, he) = head::headers(s)?;
    let (hl, ipv6) = lookup::normalize_host(s, hs, he)?;
    let (entry, hl) = lookup::host_entry(s, hl, ipv6)?;
    if entry.flags & HOST_PASS != 0 {
        return Err(STAT_PASS_EXEMPT);
    }
    if entry.flags & HOST_ENFORCED == 0 {
        return Err(STAT_PASS_NOT_ENFORCED);
    }
    let limit = if seg.v6 {
        MAX_RESPONSE_V6
    } else {
        MAX_RESPONSE_V4
    };
    let te = vget!(s, target_end);
    let ts = vget!(s, target_start);
    if fixed as u64 + hl as u64 + (te - ts) as u64 > limit as u64 {
        return Err(STAT_PASS_TOO_LARGE);
    }
    Ok(())
}
