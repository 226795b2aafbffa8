//! An XDP program that passes every frame (`r0 = XDP_PASS; exit`), attached in driver mode
//! through a BPF link to an interface inside a network namespace.
//!
//! A veth end only delivers the frames its peer's driver-mode XDP program sends with `XDP_TX`
//! when it runs an XDP program of its own (the kernel's veth XDP path; GRO alone queues them
//! without waking the receiver). The bench attaches this one to the client end of its veth
//! for every peer alike, so that force-https's fast path can send its SYN-ACKs with `XDP_TX`
//! in driver mode, as it would on a real NIC.
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

/// Attaches the pass program to `ifname` in network namespace `netns` (a name under
/// `/run/netns`), in driver mode.
///
/// # Errors
/// The namespace or interface does not exist, or the kernel refuses the program or the link
/// (not root, no driver-mode XDP on that interface).
pub fn attach(netns: &str, ifname: &str) -> Result<PassProgram> {
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
        // r0 = XDP_PASS (2); exit.
        let insns: [u64; 2] = [
            u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]),
            u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let license = c"GPL";
        let mut load = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            expected_attach_type: BPF_XDP,
            ..ProgLoadAttr::default()
        };
        load.prog_name[..7].copy_from_slice(b"fh_pass");
        let prog = bpf(BPF_PROG_LOAD, &mut load).context("BPF_PROG_LOAD of the pass program")?;
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
