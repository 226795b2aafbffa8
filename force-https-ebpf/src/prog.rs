//! The XDP entry point and its packet parsing (compiled for the bpf target only).

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{HashMap, PerCpuArray},
    programs::XdpContext,
};
use force_https_common::{
    MAX_PORTS, STAT_COUNT, STAT_DATA, STAT_PACKETS, STAT_SYN, STAT_TCP_WATCHED,
};

#[map(name = "FH_PORTS")]
static FH_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

#[map(name = "FH_STATS")]
static FH_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_TCP: u8 = 6;

#[inline(always)]
fn bump(idx: u32) {
    if let Some(p) = FH_STATS.get_ptr_mut(idx) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *const T)
}

#[inline(always)]
fn be16(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p: *const [u8; 2] = ptr_at(ctx, off)?;
    Some(u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn byte(ctx: &XdpContext, off: usize) -> Option<u8> {
    let p: *const u8 = ptr_at(ctx, off)?;
    Some(unsafe { *p })
}

#[xdp]
pub fn force_https(ctx: XdpContext) -> u32 {
    bump(STAT_PACKETS);
    let _ = observe(&ctx);
    xdp_action::XDP_PASS
}

/// Finds the TCP header of IPv4/IPv6 packets (one optional VLAN tag) and counts watched ones.
#[inline(always)]
fn observe(ctx: &XdpContext) -> Option<()> {
    let mut off = ETH_HLEN;
    let mut proto = be16(ctx, 12)?;
    if proto == ETH_P_8021Q {
        proto = be16(ctx, 16)?;
        off += 4;
    }
    let (l4, total_l3) = match proto {
        ETH_P_IPV4 => {
            let vihl = byte(ctx, off)?;
            if byte(ctx, off + 9)? != IPPROTO_TCP {
                return None;
            }
            let ihl = ((vihl & 0x0f) as usize) * 4;
            if ihl < 20 {
                return None;
            }
            let total = be16(ctx, off + 2)? as usize;
            (off + ihl, total.checked_sub(ihl)?)
        }
        ETH_P_IPV6 => {
            if byte(ctx, off + 6)? != IPPROTO_TCP {
                return None;
            }
            (off + 40, be16(ctx, off + 4)? as usize)
        }
        _ => return None,
    };
    let dport = be16(ctx, l4 + 2)?;
    unsafe { FH_PORTS.get(&dport) }?;
    bump(STAT_TCP_WATCHED);
    let doff = ((byte(ctx, l4 + 12)? >> 4) as usize) * 4;
    let flags = byte(ctx, l4 + 13)?;
    if flags & 0x12 == 0x02 {
        bump(STAT_SYN);
    }
    if total_l3 > doff {
        bump(STAT_DATA);
    }
    Some(())
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
