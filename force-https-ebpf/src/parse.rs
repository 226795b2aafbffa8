//! Dissection: Ethernet (one 802.1Q tag), IPv4 without options and fragments or IPv6 with
//! TCP as next header, TCP to a port in `FH_PORTS`, into a [`Segment`]. SYN, RST, URG and
//! malformed lengths are decided here already.

use aya_ebpf::programs::XdpContext;
use force_https_common::{
    FlowKey, STAT_PASS_IP, STAT_PASS_NO_LISTENER, STAT_SYN, STAT_TCP_WATCHED,
    net::{
        ETH_HLEN, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_TCP, IPV4_HLEN, IPV6_HLEN, TCP_HLEN,
        TH_ACK, TH_FIN, TH_RST, TH_SYN, TH_URG, VLAN_HLEN,
    },
};

use crate::maps::{FH_PORTS, bump};
use crate::prog::{Decision, Verdict};

/// A TCP segment to a watched port: a plain SYN, or a segment with an ACK and without SYN, RST
/// or URG.
pub struct Segment {
    /// Addresses and ports, client to server.
    pub key: FlowKey,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the TCP header.
    pub l4: usize,
    /// TCP header length (options included), at least 20.
    pub doff: usize,
    /// TCP payload length; the whole segment is inside the frame.
    pub plen: usize,
    pub flags: u8,
    pub v6: bool,
}

/// A pointer to a `T` at `off` in the frame, checked against `data_end`.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// The big-endian u16 at `off` in the frame.
#[inline(always)]
fn be16(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p: *mut [u8; 2] = ptr_at(ctx, off)?;
    // SAFETY: `ptr_at` checked the 2 bytes against `data_end`.
    Some(u16::from_be_bytes(unsafe { *p }))
}

/// `Err(None)`: not TCP to a watched port (passed, not counted further); `Err(Some(..))`:
/// already decided.
#[inline(always)]
pub fn dissect(ctx: &XdpContext) -> Result<Segment, Decision> {
    let mut off = ETH_HLEN;
    let mut proto = be16(ctx, 12).ok_or(None)?;
    if proto == ETH_P_8021Q {
        proto = be16(ctx, 16).ok_or(None)?;
        off += VLAN_HLEN;
    }
    let mut key = FlowKey::default();
    let l3 = off;
    let (l4, l4_total, v6) = match proto {
        ETH_P_IPV4 => {
            let ip: *mut [u8; IPV4_HLEN] = ptr_at(ctx, l3).ok_or(None)?;
            // SAFETY: `ptr_at` checked the 20 bytes against `data_end`; read only.
            let ip = unsafe { &*ip };
            if ip[9] != IPPROTO_TCP {
                return Err(None);
            }
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            if ip[0] != 0x45 || (frag & 0x3fff) != 0 {
                // IP options or a fragment: passed, and counted when it is TCP to a watched
                // port (as far as a first fragment tells).
                let ihl = ((ip[0] & 0x0f) as usize) * 4;
                let watched = frag & 0x1fff == 0
                    && ihl >= 20
                    && ihl <= 60
                    && be16(ctx, l3 + ihl + 2).is_some_and(|p| {
                        // SAFETY: presence test only; the value is not read.
                        unsafe { FH_PORTS.get(&p) }.is_some()
                    });
                if watched {
                    return Err(Some((Verdict::Pass(STAT_PASS_IP), key)));
                }
                return Err(None);
            }
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            key.saddr[..4].copy_from_slice(&ip[12..16]);
            key.daddr[..4].copy_from_slice(&ip[16..20]);
            key.family = 4;
            (
                l3 + IPV4_HLEN,
                total.checked_sub(IPV4_HLEN).ok_or(None)?,
                false,
            )
        }
        ETH_P_IPV6 => {
            let ip: *mut [u8; IPV6_HLEN] = ptr_at(ctx, l3).ok_or(None)?;
            // SAFETY: `ptr_at` checked the 40 bytes against `data_end`; read only.
            let ip = unsafe { &*ip };
            if ip[6] != IPPROTO_TCP {
                return Err(None);
            }
            key.saddr.copy_from_slice(&ip[8..24]);
            key.daddr.copy_from_slice(&ip[24..40]);
            key.family = 6;
            (
                l3 + IPV6_HLEN,
                u16::from_be_bytes([ip[4], ip[5]]) as usize,
                true,
            )
        }
        _ => return Err(None),
    };
    let th: *mut [u8; TCP_HLEN] = ptr_at(ctx, l4).ok_or(None)?;
    // SAFETY: `ptr_at` checked the 20 bytes against `data_end`; read only.
    let t = unsafe { &*th };
    let dport = u16::from_be_bytes([t[2], t[3]]);
    // SAFETY: presence test only; the value is not read.
    unsafe { FH_PORTS.get(&dport) }.ok_or(None)?;
    bump(STAT_TCP_WATCHED);
    key.sport = [t[0], t[1]];
    key.dport = [t[2], t[3]];
    let flags = t[13];
    if flags & TH_SYN != 0 {
        // A plain SYN (ECE and CWR allowed) goes on to `syn`; anything else with SYN set is
        // the kernel's.
        if flags & (TH_ACK | TH_FIN | TH_RST | TH_URG) != 0 {
            return Err(Some((Verdict::Pass(STAT_SYN), key)));
        }
    } else if flags & (TH_RST | TH_URG) != 0 || flags & TH_ACK == 0 {
        return Err(Some((Verdict::Pass(STAT_PASS_NO_LISTENER), key)));
    }
    let doff = ((t[12] >> 4) as usize) * 4;
    if doff < TCP_HLEN || l4_total < doff {
        return Err(Some((Verdict::Pass(STAT_PASS_IP), key)));
    }
    let plen = l4_total - doff;
    if ctx.data() + l4 + l4_total > ctx.data_end() {
        return Err(Some((Verdict::Pass(STAT_PASS_IP), key)));
    }
    Ok(Segment {
        key,
        l3,
        l4,
        doff,
        plen,
        flags,
        v6,
    })
}
