//! An XDP program that passes every frame (`r0 = XDP_PASS; exit`), attached in driver mode
//! through a BPF link to an interface inside a network namespace; or one that passes every
//! frame but those to one IPv4 address, which it drops ([`attach_dropping`]).
//!
//! A veth end only delivers the frames its peer's driver-mode XDP program sends with `XDP_TX`
//! when it runs an XDP program of its own (the kernel's veth XDP path; GRO alone queues them
//! without waking the receiver). The bench attaches this one to the client end of its veth
//! for every peer alike, so that force-https's fast path can send its SYN-ACKs with `XDP_TX`
//! in driver mode, as it would on a real NIC.
//!
//! The dropping variant is for SYN floods from a spoofed source (`cargo xtask bench
//! --syn-flood`): the SYN-ACKs to an address that no host owns never reach the attacker's CPU
//! in a real flood, while on the bench's veth they came back to the client end, where the
//! kernel's receive path and hping3's packet capture spent the load generator's CPU on them.
//! XDP runs before both, so a frame it drops costs the client almost nothing.
//!
//! Loaded and attached with two bpf(2) calls (`BPF_PROG_LOAD`, `BPF_LINK_CREATE`) from a
//! thread that entered the namespace; detached when [`PassProgram`] is dropped (closing the
//! link) or when the namespace is deleted.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result, bail};

/// The attached program; dropping it detaches it.
#[derive(Debug)]
pub struct PassProgram {
    _link: OwnedFd,
    _prog: OwnedFd,
}

/// `BPF_PROG_LOAD`, `BPF_LINK_CREATE` (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
#[cfg(test)]
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// The `prog_load` member of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `link_create` member of `union bpf_attr` (its first four fields).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid, initialized `bpf_attr` member of the given size; the kernel
    // only reads it here and returns a new file descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `r0 = XDP_PASS (2); exit`.
const PASS: [u64; 2] = [insn(0xb7, 0, 0, 0, 2), insn(0x95, 0, 0, 0, 0)];

/// One eBPF instruction (include/uapi/linux/bpf_common.h, Documentation/bpf/standardization):
/// opcode, destination and source registers, 16-bit offset, 32-bit immediate.
const fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    let off = off.to_le_bytes();
    let imm = imm.to_le_bytes();
    u64::from_le_bytes([
        op,
        (src << 4) | (dst & 0x0f),
        off[0],
        off[1],
        imm[0],
        imm[1],
        imm[2],
        imm[3],
    ])
}

/// `XDP_DROP` for an Ethernet frame carrying IPv4 to `dst`, `XDP_PASS` for every other frame
/// (shorter than Ethernet + an IPv4 header, another EtherType, another destination).
fn dropping(dst: std::net::Ipv4Addr) -> [u64; 13] {
    // BPF loads are in host order: the immediates are the values a load of the EtherType's and
    // the address's network-order bytes gives. The address is compared with JMP32, so that no
    // sign extension of the immediate gets in the way.
    let addr = i32::from_ne_bytes(dst.octets());
    let ipv4 = i32::from(u16::from_ne_bytes(0x0800u16.to_be_bytes()));
    [
        insn(0x61, 2, 1, 0, 0),    // r2 = ctx->data (u32)
        insn(0x61, 3, 1, 4, 0),    // r3 = ctx->data_end (u32)
        insn(0xbf, 4, 2, 0, 0),    // r4 = r2
        insn(0x07, 4, 0, 0, 34),   // r4 += 14 (Ethernet) + 20 (IPv4 header)
        insn(0x2d, 4, 3, 6, 0),    // if r4 > r3 goto pass
        insn(0x69, 5, 2, 12, 0),   // r5 = EtherType (u16 at 12)
        insn(0x55, 5, 0, 4, ipv4), // if r5 != 0x0800 goto pass
        insn(0x61, 5, 2, 30, 0),   // r5 = IPv4 destination (u32 at 14 + 16)
        insn(0x56, 5, 0, 2, addr), // if (u32) r5 != dst goto pass
        insn(0xb7, 0, 0, 0, 1),    // r0 = XDP_DROP
        insn(0x95, 0, 0, 0, 0),    // exit
        PASS[0],                   // pass: r0 = XDP_PASS
        PASS[1],                   // exit
    ]
}

/// Attaches the pass program to `ifname` in network namespace `netns` (a name under
/// `/run/netns`), in driver mode.
///
/// # Errors
/// The namespace or interface does not exist, or the kernel refuses the program or the link
/// (not root, no driver-mode XDP on that interface).
// The bench attaches the dropping variant; the black-box tests (tests/src/lib.rs includes this
// file) attach this one.
#[allow(dead_code)]
pub fn attach(netns: &str, ifname: &str) -> Result<PassProgram> {
    attach_insns(netns, ifname, PASS.to_vec())
}

/// Attaches a program that drops the frames to `dst` and passes every other one, as
/// [`attach`] does.
///
/// # Errors
/// As [`attach`].
pub fn attach_dropping(netns: &str, ifname: &str, dst: std::net::Ipv4Addr) -> Result<PassProgram> {
    attach_insns(netns, ifname, dropping(dst).to_vec())
}

/// Loads an XDP program (GPL, named `fh_pass`), returning its descriptor.
fn load(insns: &[u64]) -> std::io::Result<OwnedFd> {
    let license = c"GPL";
    let mut load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_XDP,
        ..ProgLoadAttr::default()
    };
    load.prog_name[..7].copy_from_slice(b"fh_pass");
    bpf(BPF_PROG_LOAD, &mut load)
}

fn attach_insns(netns: &str, ifname: &str, insns: Vec<u64>) -> Result<PassProgram> {
    let ns_path = format!("/run/netns/{netns}");
    let ifname = ifname.to_string();
    std::thread::spawn(move || -> Result<PassProgram> {
        let ns = std::fs::File::open(&ns_path).with_context(|| format!("cannot open {ns_path}"))?;
        // SAFETY: plain syscall on a namespace file we opened; only this thread moves.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns({ns_path}): {}", std::io::Error::last_os_error());
        }
        let name = CString::new(ifname.clone()).context("interface name")?;
        // SAFETY: a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {ifname} in {ns_path}");
        }
        let prog = load(&insns).context("BPF_PROG_LOAD of the pass program")?;
        let mut link = LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags: XDP_FLAGS_DRV_MODE,
        };
        let link = bpf(BPF_LINK_CREATE, &mut link)
            .with_context(|| format!("cannot attach the pass program to {ifname} (driver mode)"))?;
        Ok(PassProgram {
            _link: link,
            _prog: prog,
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the attach thread panicked"))?
}

/// The `test` member of `union bpf_attr` (`BPF_PROG_TEST_RUN`), up to `duration`.
#[cfg(test)]
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
}

/// What the program returns for `frame` (`BPF_PROG_TEST_RUN`; root).
#[cfg(test)]
fn verdict(insns: &[u64], frame: &[u8]) -> std::io::Result<u32> {
    let prog = load(insns)?;
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    // SAFETY: `attr` is a valid `bpf_attr` test member; the kernel reads `frame` and writes
    // at most `data_size_out` bytes to `out`, both alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(attr.retval)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const XDP_DROP: u32 = 1;
    const XDP_PASS: u32 = 2;

    /// An Ethernet frame with an IPv4 header (no options) from `src` to `dst` and 20 bytes of
    /// TCP header after it; EtherType `ethertype`.
    fn frame(ethertype: u16, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&src.octets());
        f[30..34].copy_from_slice(&dst.octets());
        f
    }

    /// Only root may load XDP programs: under CI=true a missing privilege fails the test.
    fn may_load() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root || std::env::var("CI").as_deref() != Ok("true"),
            "loading XDP programs needs root (CI runs as root)"
        );
        root
    }

    #[test]
    fn the_dropping_program_drops_only_ipv4_frames_to_its_address() {
        if !may_load() {
            return;
        }
        let flood = Ipv4Addr::new(198, 51, 100, 66);
        let client = Ipv4Addr::new(198, 51, 100, 2);
        let edge = Ipv4Addr::new(198, 51, 100, 1);
        // An address whose last octet has its high bit set (a negative immediate as i32).
        let high = Ipv4Addr::new(198, 51, 100, 200);
        for dst in [flood, high] {
            let p = dropping(dst);
            let v = |f: &[u8]| verdict(&p, f).expect("BPF_PROG_TEST_RUN");
            assert_eq!(v(&frame(0x0800, edge, dst)), XDP_DROP, "{dst}");
            assert_eq!(v(&frame(0x0800, edge, client)), XDP_PASS, "{dst}");
            assert_eq!(v(&frame(0x0800, dst, edge)), XDP_PASS, "source {dst}");
            assert_eq!(v(&frame(0x86dd, edge, dst)), XDP_PASS, "IPv6 EtherType");
            assert_eq!(v(&frame(0x0806, edge, dst)), XDP_PASS, "ARP EtherType");
            // Too short for an IPv4 header: passed, never read past its end.
            assert_eq!(v(&frame(0x0800, edge, dst)[..33]), XDP_PASS, "short");
            assert_eq!(
                v(&frame(0x0800, edge, dst)[..14]),
                XDP_PASS,
                "Ethernet only"
            );
        }
        assert_eq!(
            verdict(&PASS, &frame(0x0800, edge, flood)).expect("run"),
            XDP_PASS
        );
    }
}
