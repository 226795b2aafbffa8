//! The request head, copied into the scratch buffer: line ends, the request line (method,
//! origin-form target whose bytes need no percent-encoding, version) and the header lines
//! (`Host`, and the body headers `Content-Length` / `Transfer-Encoding`, which make XDP pass).

use core::ffi::c_void;

use aya_ebpf::{helpers::generated::bpf_xdp_load_bytes, programs::XdpContext};
use force_https_common::{
    MAX_HEAD, STAT_PASS_NOT_SIMPLE, STAT_PASS_PARTIAL, STAT_PASS_TARGET_ESCAPE,
    uri::{is_hex_digit, is_uri_path_byte},
};

use crate::scratch::{MAX_LINES, NONE, Sp, run_loop, scratch};

/// Longest `Host` value XDP looks at (a 253-byte name plus `:65535` and some slack).
const MAX_HOST_VALUE: u32 = 264;
/// Longest method token.
const MAX_METHOD: u32 = 16;

/// Records every `\n` (each must follow a `\r`) and flags bytes that never appear in a head
/// XDP answers: controls other than CR/LF/HTAB, DEL, non-ASCII.
#[inline(never)]
extern "C" fn cb_lines(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let i = idx as u32;
    let plen = vget!(s, plen);
    let b = s.at(i);
    if b == b'\n' {
        let n = vget!(s, nl);
        if i == 0 || s.at(i - 1) != b'\r' || n >= MAX_LINES {
            vset!(s, bad, 1);
            return 1;
        }
        s.set_line(n, i);
        vset!(s, nl, n + 1);
    } else if b == b'\r' {
        if i + 1 >= plen || s.at(i + 1) != b'\n' {
            vset!(s, bad, 1);
            return 1;
        }
    } else if (b < 0x20 && b != b'\t') || b >= 0x7f {
        vset!(s, bad, 1);
        return 1;
    }
    0
}

/// The method: uppercase letters up to the first space.
#[inline(never)]
extern "C" fn cb_method(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let i = idx as u32;
    let b = s.at(i);
    if b == b' ' {
        if i > 0 {
            vset!(s, method_end, i);
        }
        return 1;
    }
    if !b.is_ascii_uppercase() {
        return 1;
    }
    0
}

/// The request-target, from `target_start` to the next space: bytes 0x21..=0x7e, no `#`.
/// Sets `escape` for a byte RFC 3986 does not allow in a path or query, or a `%` not followed
/// by two hex digits (the redirect builder percent-encodes those: the answer would be longer
/// than computed here).
#[inline(never)]
extern "C" fn cb_target(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let i = vget!(s, target_start) + idx as u32;
    let b = s.at(i);
    if b == b' ' {
        vset!(s, target_end, i);
        return 1;
    }
    if b == b'#' || b <= 0x20 || b >= 0x7f {
        vset!(s, bad, 1);
        return 1;
    }
    // Reads past the target stop at the space that ends it (not a hex digit); indices are
    // masked.
    if !is_uri_path_byte(b)
        || (b == b'%' && !(is_hex_digit(s.at(i + 1)) && is_hex_digit(s.at(i + 2))))
    {
        vset!(s, escape, 1);
    }
    0
}

/// One header line (line `idx + 1`): the empty line must be the last one; `Host` is
/// recognized, and a `Content-Length` other than 0 or any `Transfer-Encoding` sets `body`:
/// such requests are left to the kernel.
#[inline(never)]
extern "C" fn cb_header(idx: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let k = idx as u32 + 1;
    let start = s.line(k - 1) + 1;
    let nlpos = s.line(k);
    // The line without its CR.
    let end = nlpos.wrapping_sub(1);
    if end <= start {
        // The empty line (or garbage): only allowed as the very last line.
        if end != start || k + 1 != vget!(s, nl) {
            vset!(s, bad, 1);
            return 1;
        }
        return 0;
    }
    let first = s.at(start);
    if first == b' ' || first == b'\t' {
        // obs-fold
        vset!(s, bad, 1);
        return 1;
    }
    let len = end - start;
    if len >= 5 && s.eq_nocase(start, b"host:") {
        if vget!(s, host_start) != NONE {
            vset!(s, bad, 1);
            return 1;
        }
        let mut a = start + 5;
        let mut j = 0;
        while j < 8 {
            let c = s.at(a);
            if a < end && (c == b' ' || c == b'\t') {
                a += 1;
            }
            j += 1;
        }
        let mut e = end;
        j = 0;
        while j < 8 {
            let c = s.at(e - 1);
            if e > a && (c == b' ' || c == b'\t') {
                e -= 1;
            }
            j += 1;
        }
        vset!(s, host_start, a);
        vset!(s, host_end, e);
    } else if len >= 15 && s.eq_nocase(start, b"content-length:") {
        // Only a zero length is a head without a body.
        let mut a = start + 15;
        let c = s.at(a);
        if c == b' ' || c == b'\t' {
            a += 1;
        }
        let mut e = end;
        let c = s.at(e - 1);
        if e > a && (c == b' ' || c == b'\t') {
            e -= 1;
        }
        if !(e == a + 1 && s.at(a) == b'0') {
            vset!(s, body, 1);
            return 1;
        }
    } else if len >= 18 && s.eq_nocase(start, b"transfer-encoding:") {
        vset!(s, body, 1);
        return 1;
    }
    0
}

/// Copies the payload (`plen` bytes at `poff`, at most `MAX_HEAD`) into this CPU's scratch
/// buffer and resets the scan results.
#[inline(always)]
pub fn load(ctx: &XdpContext, poff: u32, plen: u32) -> Result<Sp, u32> {
    let s = scratch().ok_or(STAT_PASS_NOT_SIMPLE)?;
    let n = plen & (MAX_HEAD * 2 - 1);
    if n == 0 || n > MAX_HEAD {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    // SAFETY: the destination is the scratch buffer of `MAX_HEAD` bytes and `n <= MAX_HEAD`
    // (checked just above, in a form the verifier sees); the helper checks the source range
    // against the frame.
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, poff, s.buf_ptr(), n) } != 0 {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    vset!(s, plen, plen);
    vset!(s, nl, 0);
    vset!(s, bad, 0);
    vset!(s, body, 0);
    vset!(s, escape, 0);
    vset!(s, method_end, NONE);
    vset!(s, target_end, NONE);
    vset!(s, host_start, NONE);
    vset!(s, host_end, NONE);
    Ok(s)
}

/// The head must end exactly with the segment; records its line ends.
#[inline(always)]
pub fn lines(s: Sp, plen: u32) -> Result<(), u32> {
    let p = vget!(s, plen);
    if !s.eq_exact(p - 4, b"\r\n\r\n") {
        return Err(STAT_PASS_PARTIAL);
    }
    run_loop(plen, cb_lines);
    let nl = vget!(s, nl);
    if vget!(s, bad) != 0 || nl < 3 {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    Ok(())
}

/// The request line: `METHOD SP /target SP HTTP/1.x CR LF`, origin-form only (so never
/// `OPTIONS *`), a target without bytes to percent-encode. Sets `target_start` and
/// `target_end`; `Ok` holds `target_end`.
#[inline(always)]
pub fn request_line(s: Sp) -> Result<u32, u32> {
    let line0_end = s.line(0);
    vset!(s, line0_end, line0_end);
    run_loop(MAX_METHOD, cb_method);
    let m = vget!(s, method_end);
    if m == NONE {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    let ts = m + 1;
    if s.at(ts) != b'/' {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    vset!(s, target_start, ts);
    let l0 = vget!(s, line0_end);
    if l0 < ts + 10 || l0 > MAX_HEAD {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    run_loop(l0 - ts, cb_target);
    let te = vget!(s, target_end);
    let l0 = vget!(s, line0_end);
    if vget!(s, bad) != 0 || te == NONE || te + 10 != l0 {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    if !(s.eq_exact(te, b" HTTP/1.1") || s.eq_exact(te, b" HTTP/1.0")) {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    if vget!(s, escape) != 0 {
        return Err(STAT_PASS_TARGET_ESCAPE);
    }
    Ok(te)
}

/// Whether the target (ending at `te`) starts with `prefix`.
#[inline(always)]
pub fn target_starts_with(s: Sp, te: u32, prefix: &[u8]) -> bool {
    let ts = vget!(s, target_start);
    let tlen = te - ts;
    tlen >= prefix.len() as u32 && s.eq_exact(ts, prefix)
}

/// The header lines: no body, no obs-fold, exactly one `Host`. `Ok` holds the trimmed `Host`
/// value's start and end.
#[inline(always)]
pub fn headers(s: Sp) -> Result<(u32, u32), u32> {
    let nl = vget!(s, nl);
    run_loop(nl - 1, cb_header);
    if vget!(s, body) != 0 {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    let hs = vget!(s, host_start);
    let he = vget!(s, host_end);
    if vget!(s, bad) != 0 || hs == NONE || he <= hs || he - hs > MAX_HOST_VALUE {
        return Err(STAT_PASS_NOT_SIMPLE);
    }
    Ok((hs, he))
}
