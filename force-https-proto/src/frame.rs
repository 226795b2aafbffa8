//! In-place rewriting of a request frame into its answer (the AF_XDP fast path).
//!
//! The XDP program hands the AF_XDP responder the Ethernet frame of a connection's first data
//! segment (the handshake was answered by a kernel syncookie, so no socket exists). The
//! responder answers in the same buffer: [`parse`] locates the headers and the payload, the
//! caller builds the response payload (with [`crate::response::RedirectPrefix`]) and
//! [`answer_in_place`] turns the frame around:
//!
//! - Ethernet source and destination swapped (an optional 802.1Q tag is kept);
//! - IPv4 (no options, no fragment) or IPv6 (TCP as next header) addresses swapped, lengths
//!   set, TTL / hop limit 64, IPv4 header checksum recomputed;
//! - TCP ports swapped, `seq` = the request's `ack`, `ack` = the request's `seq` + payload
//!   length (+1 when it carried FIN); flags PSH|ACK|FIN with a payload, ACK alone without
//!   (answering a bare FIN); the timestamp option echoed (TSval = the request's TSecr, TSecr =
//!   the request's TSval), every other option turned into NOPs; the TCP checksum computed over
//!   the whole segment (incoming checksums are not trusted: veth hands over partial ones).
//!
//! The answer only depends on the request frame, so a retransmitted request gets the same
//! answer. Nothing here allocates; every function is total (errors, never panics).

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        missing_docs
    )
)]

use std::fmt;

use force_https_common::net::{
    ETH_HLEN, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_TCP, IPV4_HLEN, IPV6_HLEN, TCP_HLEN,
    VLAN_HLEN,
};
/// TCP flag bits (defined in `force-https-common`, shared with the XDP program).
pub use force_https_common::net::{TH_ACK, TH_FIN, TH_PSH, TH_RST, TH_SYN};

/// Largest answer payload on IPv4: 536 bytes, the MSS every host accepts (the syncookie
/// hides the client's own MSS). The XDP program's limit, [`force_https_common::MAX_RESPONSE_V4`].
pub const MAX_PAYLOAD_V4: usize = force_https_common::MAX_RESPONSE_V4 as usize;
/// Largest answer payload on IPv6: 1280 - 40 - 20 ([`force_https_common::MAX_RESPONSE_V6`]).
pub const MAX_PAYLOAD_V6: usize = force_https_common::MAX_RESPONSE_V6 as usize;
/// Shortest Ethernet frame (without FCS); shorter answers are zero-padded.
pub const MIN_FRAME: usize = 60;
/// Window and TTL of answers, shared with the XDP program's own FIN ACKs.
pub use force_https_common::{ANSWER_TTL, ANSWER_WINDOW};

/// Why a frame cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// Shorter than its headers say.
    Truncated,
    /// Neither IPv4 nor IPv6 (after at most one VLAN tag).
    NotIp,
    /// IPv4 options, a fragment, or IPv6 extension headers.
    IpOptions,
    /// Not TCP.
    NotTcp,
    /// Inconsistent lengths (IP total length, TCP data offset).
    BadLength,
    /// The answer does not fit the buffer (or the payload limit).
    TooLarge,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::Truncated => "truncated frame",
            FrameError::NotIp => "not IPv4 or IPv6",
            FrameError::IpOptions => "IP options, fragment or extension headers",
            FrameError::NotTcp => "not TCP",
            FrameError::BadLength => "inconsistent lengths",
            FrameError::TooLarge => "answer too large for the buffer",
        })
    }
}

impl std::error::Error for FrameError {}

/// Where the parts of a TCP frame are, and its sequence fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpFrame {
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the TCP header.
    pub l4: usize,
    /// TCP header length (data offset × 4).
    pub tcp_hlen: usize,
    /// Offset of the payload.
    pub data: usize,
    /// Payload length (from the IP lengths; Ethernet padding excluded).
    pub data_len: usize,
    /// IPv6 (else IPv4).
    pub ipv6: bool,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// TCP flags (the low 8 bits).
    pub flags: u8,
}

impl TcpFrame {
    /// The payload of `frame` (which must be the frame this was parsed from).
    pub fn payload<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        frame
            .get(self.data..self.data.saturating_add(self.data_len))
            .unwrap_or_default()
    }

    /// Largest answer payload for this frame's address family.
    pub fn max_payload(&self) -> usize {
        if self.ipv6 {
            MAX_PAYLOAD_V6
        } else {
            MAX_PAYLOAD_V4
        }
    }

    /// Whether the request carries FIN.
    pub fn fin(&self) -> bool {
        self.flags & TH_FIN != 0
    }
}

fn rd16(b: &[u8], off: usize) -> Result<u16, FrameError> {
    match b.get(off..off.saturating_add(2)) {
        Some(&[x, y]) => Ok(u16::from_be_bytes([x, y])),
        _ => Err(FrameError::Truncated),
    }
}

fn rd32(b: &[u8], off: usize) -> Result<u32, FrameError> {
    match b.get(off..off.saturating_add(4)) {
        Some(&[a, c, d, e]) => Ok(u32::from_be_bytes([a, c, d, e])),
        _ => Err(FrameError::Truncated),
    }
}

fn rd8(b: &[u8], off: usize) -> Result<u8, FrameError> {
    b.get(off).copied().ok_or(FrameError::Truncated)
}

fn put(b: &mut [u8], off: usize, src: &[u8]) -> Result<(), FrameError> {
    b.get_mut(off..off.saturating_add(src.len()))
        .ok_or(FrameError::Truncated)?
        .copy_from_slice(src);
    Ok(())
}

fn wr8(b: &mut [u8], off: usize, v: u8) -> Result<(), FrameError> {
    *b.get_mut(off).ok_or(FrameError::Truncated)? = v;
    Ok(())
}

fn wr16(b: &mut [u8], off: usize, v: u16) -> Result<(), FrameError> {
    put(b, off, &v.to_be_bytes())
}

fn wr32(b: &mut [u8], off: usize, v: u32) -> Result<(), FrameError> {
    put(b, off, &v.to_be_bytes())
}

/// Swaps the `n` bytes at `a` with the `n` bytes at `c` (non-overlapping).
fn swap(b: &mut [u8], a: usize, c: usize, n: usize) -> Result<(), FrameError> {
    let (lo, hi) = if a < c { (a, c) } else { (c, a) };
    if lo.saturating_add(n) > hi || hi.saturating_add(n) > b.len() {
        return Err(FrameError::Truncated);
    }
    let (first, second) = b.split_at_mut(hi);
    let x = first
        .get_mut(lo..lo.saturating_add(n))
        .ok_or(FrameError::Truncated)?;
    let y = second.get_mut(..n).ok_or(FrameError::Truncated)?;
    x.swap_with_slice(y);
    Ok(())
}

/// Locates the headers of a TCP frame: Ethernet, at most one 802.1Q tag, IPv4 without options
/// or fragmentation, or IPv6 with TCP as next header. No allocation.
pub fn parse(frame: &[u8]) -> Result<TcpFrame, FrameError> {
    let mut l3 = ETH_HLEN;
    let mut proto = rd16(frame, 12)?;
    if proto == ETH_P_8021Q {
        proto = rd16(frame, 16)?;
        l3 += VLAN_HLEN;
    }
    let (l4, l4_len, ipv6) = match proto {
        ETH_P_IPV4 => {
            let vihl = rd8(frame, l3)?;
            if vihl >> 4 != 4 {
                return Err(FrameError::NotIp);
            }
            if vihl & 0x0f != 5 || rd16(frame, l3 + 6)? & 0x3fff != 0 {
                return Err(FrameError::IpOptions);
            }
            if rd8(frame, l3 + 9)? != IPPROTO_TCP {
                return Err(FrameError::NotTcp);
            }
            let total = usize::from(rd16(frame, l3 + 2)?);
            let l4_len = total.checked_sub(IPV4_HLEN).ok_or(FrameError::BadLength)?;
            (l3 + IPV4_HLEN, l4_len, false)
        }
        ETH_P_IPV6 => {
            if rd8(frame, l3)? >> 4 != 6 {
                return Err(FrameError::NotIp);
            }
            match rd8(frame, l3 + 6)? {
                IPPROTO_TCP => {}
                0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 => {
                    return Err(FrameError::IpOptions);
                }
                _ => return Err(FrameError::NotTcp),
            }
            let l4_len = usize::from(rd16(frame, l3 + 4)?);
            (l3 + IPV6_HLEN, l4_len, true)
        }
        _ => return Err(FrameError::NotIp),
    };
    if l4.saturating_add(l4_len) > frame.len() {
        return Err(FrameError::Truncated);
    }
    let tcp_hlen = usize::from(rd8(frame, l4 + 12)? >> 4) * 4;
    if tcp_hlen < TCP_HLEN || tcp_hlen > l4_len {
        return Err(FrameError::BadLength);
    }
    Ok(TcpFrame {
        l3,
        l4,
        tcp_hlen,
        data: l4 + tcp_hlen,
        data_len: l4_len - tcp_hlen,
        ipv6,
        sport: rd16(frame, l4)?,
        dport: rd16(frame, l4 + 2)?,
        seq: rd32(frame, l4 + 4)?,
        ack: rd32(frame, l4 + 8)?,
        flags: rd8(frame, l4 + 13)?,
    })
}

/// Rewrites the TCP options of an answer: the timestamp option echoed, everything else NOPs.
fn rewrite_options(frame: &mut [u8], start: usize, end: usize) -> Result<(), FrameError> {
    let mut i = start;
    while i < end {
        let kind = rd8(frame, i)?;
        match kind {
            0 => {
                // End of options: the rest is padding already.
                return Ok(());
            }
            1 => i += 1,
            _ => {
                let len = usize::from(rd8(frame, i + 1).unwrap_or(0));
                if len < 2 || i + len > end {
                    // Malformed: blank out the rest.
                    for j in i..end {
                        wr8(frame, j, 1)?;
                    }
                    return Ok(());
                }
                if kind == 8 && len == 10 {
                    // TSval <-> TSecr: our TSval is what the client last echoed from us.
                    swap(frame, i + 2, i + 6, 4)?;
                } else {
                    for j in i..i + len {
                        wr8(frame, j, 1)?;
                    }
                }
                i += len;
            }
        }
    }
    Ok(())
}

/// Adds `data` as big-endian 16-bit words to a one's complement accumulator.
fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        if let &[a, b] = w {
            acc += u64::from(u16::from_be_bytes([a, b]));
        }
    }
    if let &[last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([last, 0]));
    }
    acc
}

/// Folds an accumulator into the final one's complement checksum.
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The IPv4 header checksum of the header at `l3` (its checksum field taken as zero).
fn ipv4_checksum(frame: &[u8], l3: usize) -> Result<u16, FrameError> {
    let h = frame.get(l3..l3 + IPV4_HLEN).ok_or(FrameError::Truncated)?;
    let acc = sum_words(h, 0) - u64::from(rd16(h, 10)?);
    Ok(fold(acc))
}

/// The TCP checksum of the segment `frame[l4..l4 + seg_len]` (its checksum field taken as
/// zero) with the pseudo-header of the IP header at `l3`.
fn tcp_checksum(
    frame: &[u8],
    l3: usize,
    l4: usize,
    seg_len: usize,
    ipv6: bool,
) -> Result<u16, FrameError> {
    let mut acc = if ipv6 {
        let addrs = frame.get(l3 + 8..l3 + 40).ok_or(FrameError::Truncated)?;
        sum_words(addrs, 0) + (seg_len as u64 >> 16) + (seg_len as u64 & 0xffff)
    } else {
        let addrs = frame.get(l3 + 12..l3 + 20).ok_or(FrameError::Truncated)?;
        sum_words(addrs, 0) + seg_len as u64
    };
    acc += u64::from(IPPROTO_TCP);
    let seg = frame.get(l4..l4 + seg_len).ok_or(FrameError::Truncated)?;
    acc = sum_words(seg, acc) - u64::from(rd16(seg, 16)?);
    Ok(fold(acc))
}

/// Turns the request frame `frame` (parsed as `req`) into its answer, in place, and returns
/// the answer's frame length.
///
/// `write_payload` gets the payload area (at most [`TcpFrame::max_payload`] bytes, and no more
/// than the buffer holds) and returns how many bytes it wrote there, or `None` when the
/// payload does not fit: the frame is then left untouched and [`FrameError::TooLarge`]
/// returned. With a payload the answer carries PSH|ACK|FIN; with none (answering a bare FIN)
/// only ACK. The request's payload is overwritten: copy what `write_payload` needs from it
/// first.
pub fn answer_in_place(
    frame: &mut [u8],
    req: &TcpFrame,
    write_payload: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> Result<usize, FrameError> {
    // Check the request is what was parsed before touching anything.
    if req.data > frame.len() || req.l4 + TCP_HLEN > req.data {
        return Err(FrameError::Truncated);
    }
    let room = (frame.len() - req.data).min(req.max_payload());
    let area = frame
        .get_mut(req.data..req.data + room)
        .ok_or(FrameError::Truncated)?;
    let n = write_payload(area).ok_or(FrameError::TooLarge)?;
    if n > room {
        return Err(FrameError::TooLarge);
    }
    finish_answer(frame, req, n)
}

/// Rewrites the headers of a request frame whose answer payload of `n` bytes is already in
/// place at `req.data`. Returns the answer's frame length (zero-padded to [`MIN_FRAME`] when
/// the buffer allows).
pub fn finish_answer(frame: &mut [u8], req: &TcpFrame, n: usize) -> Result<usize, FrameError> {
    let seg_len = req.tcp_hlen + n;
    let end = req.data.checked_add(n).ok_or(FrameError::TooLarge)?;
    if end > frame.len() || n > req.max_payload() {
        return Err(FrameError::TooLarge);
    }
    // Ethernet.
    swap(frame, 0, 6, 6)?;
    // IP.
    let l3 = req.l3;
    if req.ipv6 {
        swap(frame, l3 + 8, l3 + 24, 16)?;
        wr16(
            frame,
            l3 + 4,
            u16::try_from(seg_len).map_err(|_| FrameError::TooLarge)?,
        )?;
        wr8(frame, l3 + 7, ANSWER_TTL)?;
    } else {
        swap(frame, l3 + 12, l3 + 16, 4)?;
        let total = u16::try_from(IPV4_HLEN + seg_len).map_err(|_| FrameError::TooLarge)?;
        wr8(frame, l3 + 1, 0)?; // DSCP/ECN
        wr16(frame, l3 + 2, total)?;
        wr16(frame, l3 + 4, 0)?; // identification
        wr16(frame, l3 + 6, 0x4000)?; // DF
        wr8(frame, l3 + 8, ANSWER_TTL)?;
        let c = ipv4_checksum(frame, l3)?;
        wr16(frame, l3 + 10, c)?;
    }
    // TCP.
    let l4 = req.l4;
    swap(frame, l4, l4 + 2, 2)?;
    let fin = u32::from(req.fin());
    let ack = req.seq.wrapping_add(req.data_len as u32).wrapping_add(fin);
    wr32(frame, l4 + 4, req.ack)?;
    wr32(frame, l4 + 8, ack)?;
    let flags = if n > 0 {
        TH_PSH | TH_ACK | TH_FIN
    } else {
        TH_ACK
    };
    wr8(frame, l4 + 13, flags)?; // data offset byte (l4 + 12) unchanged
    wr16(frame, l4 + 14, ANSWER_WINDOW)?;
    wr16(frame, l4 + 18, 0)?; // urgent pointer
    rewrite_options(frame, l4 + TCP_HLEN, l4 + req.tcp_hlen)?;
    let c = tcp_checksum(frame, l3, l4, seg_len, req.ipv6)?;
    wr16(frame, l4 + 16, c)?;
    // Pad short frames.
    let mut len = end;
    if len < MIN_FRAME && frame.len() >= MIN_FRAME {
        for b in frame.get_mut(len..MIN_FRAME).unwrap_or_default() {
            *b = 0;
        }
        len = MIN_FRAME;
    }
    Ok(len)
}

/// Length of the TCP header of a SYN-ACK made by the fast path: 20 bytes and the MSS option
/// ([`force_https_common::SYNACK_TCP_HLEN`]).
pub const SYNACK_TCP_HLEN: usize = force_https_common::SYNACK_TCP_HLEN;

/// Turns the SYN frame `frame` (parsed as `syn`) into the SYN-ACK the XDP program answers it
/// with, in place, and returns its frame length (`syn.l4 + 24`, not padded: drivers pad short
/// frames). The reference for the program's own builder (`force-https-ebpf/src/syn.rs`),
/// which must produce the same bytes:
///
/// - Ethernet source and destination swapped (an 802.1Q tag is kept);
/// - IPv4: no options, DSCP/ECN 0, total length 44, identification 0, DF, TTL 64, checksum;
///   IPv6: traffic class and flow label 0, payload length 24, hop limit 64; addresses swapped;
/// - TCP: ports swapped, `seq` = `cookie`, `ack` = the SYN's `seq` + 1, data offset 6 (24
///   bytes), SYN|ACK, window [`ANSWER_WINDOW`], urgent pointer 0, the one option MSS = `mss`
///   (RFC 9293 3.2: kind 2, length 4), checksum over the pseudo-header.
///
/// No window scale, SACK or timestamp option is offered: with a syncookie they would have to
/// be encoded in the timestamp, after a per-connection offset only the kernel knows.
///
/// # Errors
/// [`FrameError::Truncated`] when `frame` is shorter than `syn.l4 + 24` bytes; the frame is
/// then untouched.
pub fn syn_ack_in_place(
    frame: &mut [u8],
    syn: &TcpFrame,
    cookie: u32,
    mss: u16,
) -> Result<usize, FrameError> {
    let end = syn.l4 + SYNACK_TCP_HLEN;
    if frame.len() < end {
        return Err(FrameError::Truncated);
    }
    swap(frame, 0, 6, 6)?;
    let l3 = syn.l3;
    if syn.ipv6 {
        wr32(frame, l3, 0x6000_0000)?;
        wr16(frame, l3 + 4, SYNACK_TCP_HLEN as u16)?;
        wr8(frame, l3 + 7, ANSWER_TTL)?;
        swap(frame, l3 + 8, l3 + 24, 16)?;
    } else {
        wr8(frame, l3, 0x45)?;
        wr8(frame, l3 + 1, 0)?;
        wr16(frame, l3 + 2, (IPV4_HLEN + SYNACK_TCP_HLEN) as u16)?;
        wr16(frame, l3 + 4, 0)?;
        wr16(frame, l3 + 6, 0x4000)?;
        wr8(frame, l3 + 8, ANSWER_TTL)?;
        swap(frame, l3 + 12, l3 + 16, 4)?;
        let c = ipv4_checksum(frame, l3)?;
        wr16(frame, l3 + 10, c)?;
    }
    let l4 = syn.l4;
    swap(frame, l4, l4 + 2, 2)?;
    wr32(frame, l4 + 4, cookie)?;
    wr32(frame, l4 + 8, syn.seq.wrapping_add(1))?;
    wr8(frame, l4 + 12, ((SYNACK_TCP_HLEN / 4) as u8) << 4)?;
    wr8(frame, l4 + 13, TH_SYN | TH_ACK)?;
    wr16(frame, l4 + 14, ANSWER_WINDOW)?;
    wr16(frame, l4 + 18, 0)?;
    wr8(frame, l4 + 20, 2)?;
    wr8(frame, l4 + 21, 4)?;
    wr16(frame, l4 + 22, mss)?;
    let c = tcp_checksum(frame, l3, l4, SYNACK_TCP_HLEN, syn.ipv6)?;
    wr16(frame, l4 + 16, c)?;
    Ok(end)
}

/// Whether the IPv4 header checksum (if IPv4) and the TCP checksum of a frame are right.
/// For tests and fuzzers.
pub fn checksums_ok(frame: &[u8]) -> bool {
    let Ok(f) = parse(frame) else {
        return false;
    };
    if !f.ipv6 {
        match (ipv4_checksum(frame, f.l3), rd16(frame, f.l3 + 10)) {
            (Ok(c), Ok(have)) if c == have => {}
            _ => return false,
        }
    }
    match (
        tcp_checksum(frame, f.l3, f.l4, f.tcp_hlen + f.data_len, f.ipv6),
        rd16(frame, f.l4 + 16),
    ) {
        (Ok(c), Ok(have)) => c == have,
        _ => false,
    }
}

/// The TCP timestamp option of a parsed frame: (TSval, TSecr).
pub fn timestamps(frame: &[u8], f: &TcpFrame) -> Option<(u32, u32)> {
    let mut i = f.l4 + TCP_HLEN;
    let end = f.l4 + f.tcp_hlen;
    while i < end {
        match rd8(frame, i).ok()? {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(rd8(frame, i + 1).ok()?);
                if len < 2 {
                    return None;
                }
                if kind == 8 && len == 10 {
                    return Some((rd32(frame, i + 2).ok()?, rd32(frame, i + 6).ok()?));
                }
                i += len;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{RedirectPrefix, RedirectStatus};

    const CMAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const SMAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    /// Builds a request frame: client 198.51.100.2:40000 (or 2001:db8::2) → server :80.
    fn request(ipv6: bool, vlan: bool, payload: &[u8], flags: u8, ts: bool) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&SMAC);
        f.extend_from_slice(&CMAC);
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        }
        let opts: &[u8] = if ts {
            &[1, 1, 8, 10, 0, 0, 0, 7, 0xaa, 0xbb, 0xcc, 0xdd]
        } else {
            &[]
        };
        let tcp_len = 20 + opts.len() + payload.len();
        let l3 = f.len() + 2;
        if ipv6 {
            f.extend_from_slice(&[0x86, 0xdd]);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.extend_from_slice(&[6, 63]);
            f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        } else {
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 63, 6, 0, 0]);
            f.extend_from_slice(&[198, 51, 100, 2, 198, 51, 100, 1]);
        }
        let l4 = f.len();
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&80u16.to_be_bytes());
        f.extend_from_slice(&1000u32.to_be_bytes());
        f.extend_from_slice(&5000u32.to_be_bytes());
        f.push((((20 + opts.len()) / 4) as u8) << 4);
        f.push(flags);
        f.extend_from_slice(&502u16.to_be_bytes());
        f.extend_from_slice(&[0xde, 0xad, 0, 0]); // bogus (partial) checksum
        f.extend_from_slice(opts);
        f.extend_from_slice(payload);
        let _ = (l3, l4);
        f
    }

    fn with_room(mut f: Vec<u8>) -> Vec<u8> {
        f.resize(2048, 0xee);
        f
    }

    #[test]
    fn parse_v4_v6_vlan() {
        for (v6, vlan) in [(false, false), (true, false), (false, true), (true, true)] {
            let f = request(v6, vlan, b"GET / HTTP/1.1\r\n\r\n", TH_ACK | TH_PSH, true);
            let p = parse(&f).unwrap();
            assert_eq!(p.ipv6, v6);
            assert_eq!(p.l3, if vlan { 18 } else { 14 });
            assert_eq!(p.tcp_hlen, 32);
            assert_eq!(p.payload(&f), b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!((p.sport, p.dport, p.seq, p.ack), (40000, 80, 1000, 5000));
            assert_eq!(timestamps(&f, &p), Some((7, 0xaabb_ccdd)));
        }
    }

    #[test]
    fn syn_ack_from_a_syn() {
        for (v6, vlan, ts) in [
            (false, false, true),
            (true, false, true),
            (false, true, false),
            (true, true, false),
        ] {
            let syn = request(v6, vlan, b"", TH_SYN, ts);
            let p = parse(&syn).unwrap();
            let mut f = with_room(syn.clone());
            let n = syn_ack_in_place(&mut f, &p, 0x0102_0304, 1460).unwrap();
            assert_eq!(n, p.l4 + 24);
            let f = &f[..n];
            let a = parse(f).unwrap();
            assert_eq!((a.sport, a.dport), (80, 40000));
            assert_eq!((a.seq, a.ack), (0x0102_0304, 1001));
            assert_eq!(a.flags, TH_SYN | TH_ACK);
            assert_eq!((a.tcp_hlen, a.data_len), (24, 0));
            assert_eq!(&f[a.l4 + 20..a.l4 + 24], &[2, 4, 0x05, 0xb4]);
            assert_eq!(&f[a.l4 + 14..a.l4 + 16], &ANSWER_WINDOW.to_be_bytes());
            assert!(checksums_ok(f));
            assert_eq!(&f[..6], &CMAC);
            assert_eq!(&f[6..12], &SMAC);
            if v6 {
                assert_eq!(&f[a.l3..a.l3 + 8], &[0x60, 0, 0, 0, 0, 24, 6, ANSWER_TTL]);
                assert_eq!(f[a.l3 + 23], 1);
                assert_eq!(f[a.l3 + 39], 2);
            } else {
                assert_eq!(
                    &f[a.l3..a.l3 + 10],
                    &[0x45, 0, 0, 44, 0, 0, 0x40, 0, ANSWER_TTL, 6]
                );
                assert_eq!(
                    &f[a.l3 + 12..a.l3 + 20],
                    &[198, 51, 100, 1, 198, 51, 100, 2]
                );
            }
        }
        // A SYN without options grows by the 4 option bytes, if the buffer has them.
        let syn = request(false, false, b"", TH_SYN, false);
        let p = parse(&syn).unwrap();
        let mut short = syn.clone();
        assert_eq!(
            syn_ack_in_place(&mut short, &p, 1, 536),
            Err(FrameError::Truncated)
        );
        assert_eq!(short, syn, "untouched on error");
        let mut roomy = with_room(syn);
        assert_eq!(syn_ack_in_place(&mut roomy, &p, 1, 536), Ok(p.l4 + 24));
        assert!(checksums_ok(&roomy[..p.l4 + 24]));
    }

    #[test]
    fn parse_rejects() {
        let good = request(false, false, b"x", TH_ACK, false);
        assert!(parse(&good).is_ok());
        assert_eq!(parse(&good[..30]), Err(FrameError::Truncated));
        assert_eq!(parse(&[]), Err(FrameError::Truncated));
        let mut opts = good.clone();
        opts[14] = 0x46;
        assert_eq!(parse(&opts), Err(FrameError::IpOptions));
        let mut frag = good.clone();
        frag[20] = 0x20; // MF
        assert_eq!(parse(&frag), Err(FrameError::IpOptions));
        let mut udp = good.clone();
        udp[23] = 17;
        assert_eq!(parse(&udp), Err(FrameError::NotTcp));
        let mut arp = good.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(parse(&arp), Err(FrameError::NotIp));
        let mut long = good.clone();
        long[16] = 0x10; // total length beyond the frame
        assert_eq!(parse(&long), Err(FrameError::Truncated));
        let mut doff = good.clone();
        doff[14 + 20 + 12] = 0x40; // data offset 16 bytes
        assert_eq!(parse(&doff), Err(FrameError::BadLength));
        let mut ext = request(true, false, b"x", TH_ACK, false);
        ext[20] = 0; // hop-by-hop
        assert_eq!(parse(&ext), Err(FrameError::IpOptions));
    }

    fn answer(v6: bool, vlan: bool, payload: &[u8], flags: u8, ts: bool) -> (Vec<u8>, usize) {
        let mut f = with_room(request(v6, vlan, payload, flags, ts));
        let req = parse(&f).unwrap();
        let prefix = RedirectPrefix::new(RedirectStatus::Moved301, "example.com", 443);
        let n = answer_in_place(&mut f, &req, |out| prefix.write(b"/a?b", out)).unwrap();
        (f, n)
    }

    #[test]
    fn answer_fields() {
        for (v6, vlan, ts, fin) in [
            (false, false, true, false),
            (true, false, true, true),
            (false, true, false, true),
            (true, true, false, false),
        ] {
            let payload = b"GET /a?b HTTP/1.1\r\nHost: example.com\r\n\r\n";
            let flags = TH_ACK | TH_PSH | if fin { TH_FIN } else { 0 };
            let (f, n) = answer(v6, vlan, payload, flags, ts);
            let f = &f[..n];
            assert!(checksums_ok(f), "v6={v6} vlan={vlan}");
            let a = parse(f).unwrap();
            assert_eq!(&f[0..6], &CMAC);
            assert_eq!(&f[6..12], &SMAC);
            assert_eq!((a.sport, a.dport), (80, 40000));
            assert_eq!(a.seq, 5000);
            assert_eq!(a.ack, 1000 + payload.len() as u32 + u32::from(fin));
            assert_eq!(a.flags, TH_PSH | TH_ACK | TH_FIN);
            let expected =
                crate::response::redirect(RedirectStatus::Moved301, "example.com", 443, b"/a?b")
                    .unwrap();
            assert_eq!(a.payload(f), &expected[..]);
            if ts {
                assert_eq!(timestamps(f, &a), Some((0xaabb_ccdd, 7)));
            } else {
                assert_eq!(timestamps(f, &a), None);
            }
            if v6 {
                let l3 = a.l3;
                assert_eq!(f[l3 + 23], 1, "source is the server");
                assert_eq!(f[l3 + 39], 2, "destination is the client");
                assert_eq!(f[l3 + 7], ANSWER_TTL);
            } else {
                let l3 = a.l3;
                assert_eq!(&f[l3 + 12..l3 + 20], &[198, 51, 100, 1, 198, 51, 100, 2]);
                assert_eq!(f[l3 + 8], ANSWER_TTL);
            }
        }
    }

    #[test]
    fn retransmission_gets_the_same_answer() {
        let payload = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let a = answer(false, false, payload, TH_ACK | TH_PSH, true);
        let b = answer(false, false, payload, TH_ACK | TH_PSH, true);
        assert_eq!(a.0[..a.1], b.0[..b.1]);
    }

    #[test]
    fn bare_fin_gets_an_ack() {
        let mut f = with_room(request(false, false, b"", TH_ACK | TH_FIN, true));
        let req = parse(&f).unwrap();
        let n = answer_in_place(&mut f, &req, |_| Some(0)).unwrap();
        let f = &f[..n];
        assert_eq!(n, 14 + 20 + 32);
        assert!(checksums_ok(f));
        let a = parse(f).unwrap();
        assert_eq!(a.flags, TH_ACK);
        assert_eq!(a.seq, 5000);
        assert_eq!(a.ack, 1001);
        assert_eq!(a.data_len, 0);
        // Without options it is padded to the Ethernet minimum.
        let mut f = with_room(request(false, false, b"", TH_ACK | TH_FIN, false));
        let req = parse(&f).unwrap();
        assert_eq!(answer_in_place(&mut f, &req, |_| Some(0)), Ok(MIN_FRAME));
        assert!(checksums_ok(&f[..MIN_FRAME]));
    }

    #[test]
    fn too_large_leaves_the_frame() {
        let mut f = with_room(request(
            false,
            false,
            b"GET / HTTP/1.1\r\n\r\n",
            TH_ACK,
            true,
        ));
        let before = f.clone();
        let req = parse(&f).unwrap();
        let mut long = vec![b'a'; 600];
        long[0] = b'/';
        let prefix = RedirectPrefix::new(RedirectStatus::Moved301, "example.com", 443);
        assert_eq!(
            answer_in_place(&mut f, &req, |out| prefix.write(&long, out)),
            Err(FrameError::TooLarge)
        );
        // Only the payload area may have been scribbled on; the headers are intact.
        assert_eq!(f[..req.data], before[..req.data]);
        // A closure lying about its length is caught too.
        assert_eq!(
            answer_in_place(&mut f, &req, |_| Some(100_000)),
            Err(FrameError::TooLarge)
        );
        // IPv6 allows more.
        let mut f = with_room(request(
            true,
            false,
            b"GET / HTTP/1.1\r\n\r\n",
            TH_ACK,
            true,
        ));
        let req = parse(&f).unwrap();
        assert!(answer_in_place(&mut f, &req, |out| prefix.write(&long, out)).is_ok());
        // A buffer without room for the answer.
        let mut f = request(false, false, b"GET / HTTP/1.1\r\n\r\n", TH_ACK, true);
        let req = parse(&f).unwrap();
        assert_eq!(
            answer_in_place(&mut f, &req, |out| prefix.write(b"/", out)),
            Err(FrameError::TooLarge)
        );
    }

    #[test]
    fn options_are_blanked_but_timestamps() {
        let mut f = request(false, false, b"x", TH_ACK, true);
        // Replace the two leading NOPs + timestamp by SACK-ish junk + timestamp.
        let l4 = 34;
        f[l4 + 20] = 1;
        f[l4 + 21] = 1;
        let mut g = with_room(f);
        let req = parse(&g).unwrap();
        // A SACK block option instead of the leading NOPs would be longer; emulate an unknown
        // 2-byte option.
        g[l4 + 20] = 30;
        g[l4 + 21] = 2;
        let n = answer_in_place(&mut g, &req, |_| Some(0)).unwrap();
        assert_eq!(&g[l4 + 20..l4 + 22], &[1, 1]);
        assert!(checksums_ok(&g[..n]));
        // Malformed options become NOPs.
        let mut h = with_room(request(false, false, b"x", TH_ACK, true));
        h[l4 + 22] = 8;
        h[l4 + 23] = 40;
        let req = parse(&h).unwrap();
        let n = answer_in_place(&mut h, &req, |_| Some(0)).unwrap();
        assert!(h[l4 + 22..l4 + 32].iter().all(|&b| b == 1));
        assert!(checksums_ok(&h[..n]));
    }

    #[test]
    fn checksum_reference() {
        // RFC 1071 example words.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&data, 0)), !0xddf2);
    }

    #[test]
    fn no_panics_on_garbage() {
        let mut x: u32 = 12345;
        for len in 0..200 {
            let mut f: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            if len > 14 {
                f[12] = 0x08;
                f[13] = 0;
                f[14] = 0x45;
            }
            if let Ok(req) = parse(&f) {
                let _ = answer_in_place(&mut f, &req, |out| {
                    out.first_mut().map(|b| {
                        *b = b'H';
                        1
                    })
                });
            }
        }
    }
}
