//! The per-CPU scratch value (`FH_SCRATCH`): the copied request head and what the byte scans
//! found, and the safe accessors every scan uses.
//!
//! Scan results travel through this value with volatile accesses ([`vget!`], [`vset!`]) and
//! every buffer index is masked ([`Sp::at`]), so the verifier never tracks exact offsets
//! across scans. Each scan is a `bpf_loop` callback ([`run_loop`]), verified once whatever the
//! length.

use core::ffi::c_void;
use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::helpers::generated::bpf_loop;
use force_https_common::MAX_HEAD;

use crate::maps::FH_SCRATCH;

/// Size of the scratch buffer (a power of two; indices are masked with `MASK`).
pub const BUF: usize = MAX_HEAD as usize;
const MASK: usize = BUF - 1;
/// Most lines in a head XDP looks at (request line + headers + the empty line).
pub const MAX_LINES: u32 = 64;
/// "Not found" in the offset fields.
pub const NONE: u32 = u32::MAX;

/// Per-CPU scratch space: the copied head and what the scans found.
#[repr(C)]
pub struct Scratch {
    pub buf: [u8; BUF],
    /// Offset of every `\n`.
    pub lines: [u32; MAX_LINES as usize],
    pub plen: u32,
    pub nl: u32,
    pub bad: u32,
    pub body: u32,
    /// Request line.
    pub method_end: u32,
    pub target_start: u32,
    pub target_end: u32,
    pub line0_end: u32,
    /// `Host` value (trimmed), absolute offsets.
    pub host_start: u32,
    pub host_end: u32,
    /// Host analysis.
    pub phase: u32,
    pub ipv6: u32,
    pub host_len: u32,
    pub first_dot: u32,
    pub port: u32,
    pub port_digits: u32,
    pub digits_dots_only: u32,
    /// Hashes.
    pub key: u64,
    pub check: u32,
    pub wkey_lo: u32,
    pub wkey: u64,
    pub wcheck: u32,
    /// The target has a byte the redirect builder would percent-encode.
    pub escape: u32,
}

/// A pointer to this CPU's [`Scratch`] value. Only [`scratch`] makes one, from the map lookup
/// the verifier checks (non-null, the whole value in bounds), so the pointer inside is valid
/// for the whole run of the program and its `bpf_loop` callbacks. No reference to the value
/// is ever made: all accesses are raw (volatile for the fields).
#[derive(Clone, Copy)]
pub struct Sp(*mut Scratch);

/// This CPU's scratch value (`None` only if the map lookup failed, which it cannot for index 0).
#[inline(always)]
pub fn scratch() -> Option<Sp> {
    FH_SCRATCH.get_ptr_mut(0).map(Sp)
}

impl Sp {
    /// The raw pointer, for the field accessors [`vget!`] and [`vset!`].
    #[inline(always)]
    pub fn ptr(self) -> *mut Scratch {
        self.0
    }

    /// A byte of the buffer at a masked offset.
    #[inline(always)]
    pub fn at(self, i: u32) -> u8 {
        // SAFETY: `self.0` points to a whole `Scratch` (type invariant) and the index is
        // masked to `BUF - 1`, inside `buf`.
        unsafe { *(addr_of!((*self.0).buf) as *const u8).add(i as usize & MASK) }
    }

    /// The start of the buffer, for `bpf_xdp_load_bytes` (at most `BUF` bytes).
    #[inline(always)]
    pub fn buf_ptr(self) -> *mut c_void {
        // SAFETY: field address of a valid `Scratch` (type invariant); nothing is read.
        unsafe { addr_of_mut!((*self.0).buf) as *mut c_void }
    }

    /// Entry `k` of `lines` (masked).
    #[inline(always)]
    pub fn line(self, k: u32) -> u32 {
        // SAFETY: `self.0` is valid (type invariant); the index is masked to `MAX_LINES - 1`.
        unsafe {
            read_volatile(
                (addr_of!((*self.0).lines) as *const u32).add((k & (MAX_LINES - 1)) as usize),
            )
        }
    }

    /// Sets entry `k` of `lines` (masked).
    #[inline(always)]
    pub fn set_line(self, k: u32, v: u32) {
        // SAFETY: as in `line`.
        unsafe {
            write_volatile(
                (addr_of_mut!((*self.0).lines) as *mut u32).add((k & (MAX_LINES - 1)) as usize),
                v,
            )
        }
    }

    /// Whether the bytes at `off` equal `lit` (which is lowercase), ASCII case-insensitively.
    #[inline(always)]
    pub fn eq_nocase(self, off: u32, lit: &[u8]) -> bool {
        let mut i = 0;
        while i < lit.len() {
            if lower(self.at(off + i as u32)) != lit[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Whether the bytes at `off` equal `lit` exactly.
    #[inline(always)]
    pub fn eq_exact(self, off: u32, lit: &[u8]) -> bool {
        let mut i = 0;
        while i < lit.len() {
            if self.at(off + i as u32) != lit[i] {
                return false;
            }
            i += 1;
        }
        true
    }
}

/// Volatile read of a field of the scratch value behind an [`Sp`].
macro_rules! vget {
    ($s:expr, $f:ident) => {{
        let p: $crate::scratch::Sp = $s;
        // SAFETY: an `Sp` always points to a whole `Scratch` (see `Sp`).
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*p.ptr()).$f)) }
    }};
}

/// Volatile write of a field of the scratch value behind an [`Sp`].
macro_rules! vset {
    ($s:expr, $f:ident, $v:expr) => {{
        let p: $crate::scratch::Sp = $s;
        let v = $v;
        // SAFETY: an `Sp` always points to a whole `Scratch` (see `Sp`).
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*p.ptr()).$f), v) }
    }};
}

#[inline(always)]
pub fn lower(b: u8) -> u8 {
    if b.is_ascii_uppercase() { b | 0x20 } else { b }
}

/// Calls `cb(i)` for `i` in `0..n` until it returns 1 (`bpf_loop`).
#[inline(always)]
pub fn run_loop(n: u32, cb: extern "C" fn(u64, *mut c_void) -> i64) {
    // SAFETY: `cb` is a static function of the `bpf_loop` callback type; the context is null
    // (callbacks find their state in the scratch map) and the flags are 0.
    unsafe {
        bpf_loop(n, cb as *const () as *mut c_void, core::ptr::null_mut(), 0);
    }
}
