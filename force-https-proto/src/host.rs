//! Host names, from the wire and from the config.
//!
//! Wire side (per request, zero allocation): [`parse_authority`] validates a `Host` header
//! value or the authority of an absolute-form request-target exactly as received, and
//! [`normalize_into`] turns it into the form used for policy lookups and `Location` headers
//! (lowercase, one trailing dot removed, port dropped, IPv6 literals keep their brackets).
//!
//! Config side (allocating, once per load): [`parse_domain_pattern`] turns a configured domain
//! (`shop.example.com`, `*.shop.example.com`, `bücher.example`, `192.0.2.1`, `[2001:db8::1]`)
//! into a [`DomainPattern`] in the same normalized form, internationalized names as A-labels.
//! [`wildcard_parent`] gives the suffix a one-label wildcard would have to carry to match a host.

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
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest normalized host [`normalize_into`] can produce: a DNS name without its trailing
/// dot is at most 253 bytes (bracketed IPv6 literals are shorter). A `[u8; MAX_HOST_LEN]`
/// output buffer always suffices.
pub const MAX_HOST_LEN: usize = 253;

/// Longest DNS label.
const MAX_LABEL_LEN: usize = 63;

/// Why a host name (from the wire or the config) was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostError {
    /// Nothing where a host was expected (`""`, `":80"`).
    Empty,
    /// `user@host`: userinfo is never accepted.
    Userinfo,
    /// A byte that may not appear in a host name (whitespace, control, non-ASCII, or a
    /// punctuation character other than `-`, `.` and `_`).
    InvalidChar(u8),
    /// A bracketed literal that is not a valid IPv6 address (or an unterminated `[`).
    InvalidIpv6,
    /// The port after `:` is not made of decimal digits.
    InvalidPort,
    /// The port is above 65535.
    PortOutOfRange,
    /// An empty label: `a..b`, `.a`, or a lone `.`.
    EmptyLabel,
    /// A label longer than 63 bytes.
    LabelTooLong,
    /// A name longer than 253 bytes (without its trailing dot).
    TooLong,
    /// The output buffer given to [`normalize_into`] is too small.
    BufferTooSmall,
    /// Config: a port, which domain patterns never carry (also unbracketed IPv6 literals).
    PortNotAllowed,
    /// Config: leading or trailing whitespace around the name.
    SurroundingWhitespace,
    /// Config: `*` anywhere but as the whole first label.
    MisplacedWildcard,
    /// Config: a wildcard over fewer than two labels (`*.com`) or over an IP literal.
    WildcardTooBroad,
    /// Config: an internationalized name that UTS #46 processing rejects.
    InvalidIdna,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HostError::Empty => f.write_str("empty host"),
            HostError::Userinfo => f.write_str("userinfo ('@') not allowed in host"),
            HostError::InvalidChar(b) => match b {
                b' ' | b'\t' => f.write_str("whitespace in host"),
                0x00..=0x1f | 0x7f => write!(f, "control character 0x{b:02x} in host"),
                0x80..=0xff => f.write_str("non-ASCII byte in host"),
                _ => write!(f, "invalid character '{}' in host", char::from(b)),
            },
            HostError::InvalidIpv6 => f.write_str("invalid IPv6 literal"),
            HostError::InvalidPort => f.write_str("invalid port (not a number)"),
            HostError::PortOutOfRange => f.write_str("port out of range"),
            HostError::EmptyLabel => f.write_str("empty label in host"),
            HostError::LabelTooLong => f.write_str("label longer than 63 bytes"),
            HostError::TooLong => f.write_str("host longer than 253 bytes"),
            HostError::BufferTooSmall => f.write_str("output buffer too small for host"),
            HostError::PortNotAllowed => {
                f.write_str("port not allowed in a domain name (IPv6 literals need brackets)")
            }
            HostError::SurroundingWhitespace => f.write_str("leading or trailing whitespace"),
            HostError::MisplacedWildcard => f.write_str(
                "wildcard '*' is only allowed as the whole first label ('*.example.com')",
            ),
            HostError::WildcardTooBroad => {
                f.write_str("wildcard needs at least two labels after '*.' and no IP literal")
            }
            HostError::InvalidIdna => f.write_str("invalid internationalized domain name"),
        }
    }
}

impl std::error::Error for HostError {}

/// A validated authority as received: host and optional port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Authority<'a> {
    /// The host exactly as received (case and one trailing dot preserved), without the port;
    /// IPv6 literals include their brackets (`[2001:db8::1]`).
    pub host: &'a [u8],
    /// The port, if one was given (`host:` with an empty port gives `None`).
    pub port: Option<u16>,
}

impl Authority<'_> {
    /// Whether the host is a bracketed IPv6 literal.
    pub fn is_ipv6(&self) -> bool {
        self.host.first() == Some(&b'[')
    }
}

/// Bytes allowed in a host name: letters, digits, `-`, `.`, `_` (the one list is
/// [`byte_class`]).
fn is_name_byte(b: u8) -> bool {
    !matches!(byte_class(b), ByteClass::Other)
}

/// What a byte is in a host name.
#[derive(Clone, Copy)]
enum ByteClass {
    /// A byte of a label: a letter, a digit, `-` or `_`.
    Name,
    /// The label separator.
    Dot,
    /// Not allowed in a name.
    Other,
}

/// The [`ByteClass`] of a byte.
const fn byte_class(b: u8) -> ByteClass {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => ByteClass::Name,
        b'.' => ByteClass::Dot,
        _ => ByteClass::Other,
    }
}

/// [`byte_class`] of every byte value, built at compile time: one load a byte where the
/// `match` compiles to several range tests (100 instructions a request's `Host`, run P).
// The index is below 256 by the loop's bound; evaluated by the compiler, so it cannot panic
// at run time.
#[allow(clippy::indexing_slicing)]
static NAME_CLASS: [ByteClass; 256] = {
    let mut table = [ByteClass::Other; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = byte_class(i as u8);
        i += 1;
    }
    table
};

/// Validates a DNS-style name that carries no trailing dot: allowed bytes, no empty label,
/// labels of at most 63 bytes, at most 253 bytes in all. When several faults are present,
/// the first byte not allowed wins, then the total length, then the first faulty label.
/// One pass over the bytes (this runs on every request of every path).
fn validate_name(name: &[u8]) -> Result<(), HostError> {
    if name.is_empty() {
        return Err(HostError::EmptyLabel);
    }
    let mut label_fault = None;
    let mut label_len = 0usize;
    for &b in name {
        match NAME_CLASS
            .get(usize::from(b))
            .copied()
            .unwrap_or(ByteClass::Other)
        {
            ByteClass::Name => {
                label_len += 1;
                if label_len == MAX_LABEL_LEN + 1 && label_fault.is_none() {
                    label_fault = Some(HostError::LabelTooLong);
                }
            }
            ByteClass::Dot => {
                if label_len == 0 && label_fault.is_none() {
                    label_fault = Some(HostError::EmptyLabel);
                }
                label_len = 0;
            }
            ByteClass::Other => return Err(HostError::InvalidChar(b)),
        }
    }
    if label_len == 0 && label_fault.is_none() {
        label_fault = Some(HostError::EmptyLabel);
    }
    if name.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    label_fault.map_or(Ok(()), Err)
}

/// Validates the inside of `[...]` as an IPv6 address (no zone identifier, no IPvFuture).
fn validate_ipv6(inner: &[u8]) -> Result<(), HostError> {
    let text = std::str::from_utf8(inner).map_err(|_| HostError::InvalidIpv6)?;
    text.parse::<Ipv6Addr>()
        .map(|_| ())
        .map_err(|_| HostError::InvalidIpv6)
}

/// Parses a port: decimal digits only, at most 65535 (leading zeros allowed, RFC 3986).
/// An empty port means no port.
fn parse_port(digits: &[u8]) -> Result<Option<u16>, HostError> {
    if digits.is_empty() {
        return Ok(None);
    }
    let mut value: u32 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(HostError::InvalidPort);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u32::from(b - b'0')))
            .ok_or(HostError::PortOutOfRange)?;
        if value > u32::from(u16::MAX) {
            return Err(HostError::PortOutOfRange);
        }
    }
    u16::try_from(value)
        .map(Some)
        .map_err(|_| HostError::PortOutOfRange)
}

/// Parses and validates a `Host` header value or the authority of an absolute-form
/// request-target, as it arrives from the network (`host`, `host:port`, `host.`, `[v6]:port`).
///
/// Rejected: empty host, userinfo, whitespace/control/non-ASCII bytes, any punctuation but
/// `-`, `.`, `_` in a name, an invalid bracketed IPv6 literal, a non-numeric port or one above
/// 65535, empty labels (`a..b`, `.a`, `.`), labels over 63 bytes, names over 253 bytes.
/// One trailing dot is accepted (and kept; [`normalize_into`] removes it). An empty port
/// (`host:`) is accepted as no port (RFC 3986). No allocation.
pub fn parse_authority(raw: &[u8]) -> Result<Authority<'_>, HostError> {
    // Most authorities are a name alone: one pass over the bytes settles them. A name that
    // passes `validate_name` whole has no `@`, `[`, `:` or trailing dot, so the general
    // parse would return the same (unit test). The general one made four passes (460
    // instructions of a 13-byte `:authority`, callgrind).
    if validate_name(raw).is_ok() {
        return Ok(Authority {
            host: raw,
            port: None,
        });
    }
    parse_authority_general(raw)
}

/// [`parse_authority`] for every form: ports, IPv6 literals, a trailing dot, and the errors.
fn parse_authority_general(raw: &[u8]) -> Result<Authority<'_>, HostError> {
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    if raw.contains(&b'@') {
        return Err(HostError::Userinfo);
    }
    if raw.first() == Some(&b'[') {
        let close = raw
            .iter()
            .position(|&b| b == b']')
            .ok_or(HostError::InvalidIpv6)?;
        let (host, rest) = raw
            .split_at_checked(close.saturating_add(1))
            .ok_or(HostError::InvalidIpv6)?;
        let inner = host.get(1..close).ok_or(HostError::InvalidIpv6)?;
        validate_ipv6(inner)?;
        let port = match rest.split_first() {
            None => None,
            Some((b':', digits)) => parse_port(digits)?,
            Some((&b, _)) => return Err(HostError::InvalidChar(b)),
        };
        return Ok(Authority { host, port });
    }
    let (host, port) = match raw.iter().position(|&b| b == b':') {
        None => (raw, None),
        Some(colon) => {
            let (host, rest) = raw.split_at_checked(colon).ok_or(HostError::Empty)?;
            let digits = rest.get(1..).unwrap_or_default();
            if digits.contains(&b':') {
                // An unbracketed IPv6 literal or garbage.
                return Err(HostError::InvalidChar(b':'));
            }
            (host, parse_port(digits)?)
        }
    };
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    let name = host.strip_suffix(b".").unwrap_or(host);
    validate_name(name)?;
    Ok(Authority { host, port })
}

/// The host part of `a` without its one trailing dot.
fn host_without_dot<'a>(a: &Authority<'a>) -> &'a [u8] {
    match a.host.strip_suffix(b".") {
        Some(stripped) if !stripped.is_empty() => stripped,
        _ => a.host,
    }
}

/// Writes the normalized host of `a` into `out` and returns its length: ASCII-lowercased,
/// one trailing dot removed, port dropped, IPv6 literals with their brackets and otherwise as
/// received (lowercased, not re-formatted). No allocation; a `[u8; MAX_HOST_LEN]` buffer is
/// always large enough for an authority from [`parse_authority`].
pub fn normalize_into(a: &Authority<'_>, out: &mut [u8]) -> Result<usize, HostError> {
    let src = host_without_dot(a);
    let dst = out.get_mut(..src.len()).ok_or(HostError::BufferTooSmall)?;
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_ascii_lowercase();
    }
    Ok(src.len())
}

/// Allocating convenience over [`normalize_into`].
pub fn normalize(a: &Authority<'_>) -> String {
    let src = host_without_dot(a);
    match std::str::from_utf8(src) {
        // Always ASCII from `parse_authority`: lowercased a word at a time.
        Ok(text) => text.to_ascii_lowercase(),
        Err(_) => src
            .iter()
            .map(|&b| char::from(b.to_ascii_lowercase()))
            .collect(),
    }
}

/// A configured domain: an exact name or a one-label wildcard, normalized (lowercase, no
/// trailing dot, A-labels; IPv6 literals bracketed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DomainPattern {
    /// Matches exactly this host (a name, an IPv4 literal or a bracketed IPv6 literal).
    Exact(String),
    /// `*.suffix`: matches any host made of exactly one label followed by `.suffix`.
    /// Holds the suffix without `*.`.
    Wildcard(String),
}

impl DomainPattern {
    /// Whether a normalized host (as from [`normalize`]) matches this pattern.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            DomainPattern::Exact(name) => name == host,
            DomainPattern::Wildcard(suffix) => wildcard_parent(host) == Some(suffix.as_str()),
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(name) => f.write_str(name),
            DomainPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// Parses a domain from the config (or the control socket / CLI) into a [`DomainPattern`].
///
/// Accepts names (lowercased, one trailing dot removed, internationalized names converted to
/// A-labels by UTS #46), `*.name` with at least two labels after `*.`, IPv4 literals and
/// bracketed IPv6 literals (lowercased as written). Rejects surrounding whitespace, ports,
/// paths, userinfo, `*` anywhere else, `*.com`-style wildcards, empty names.
pub fn parse_domain_pattern(s: &str) -> Result<DomainPattern, HostError> {
    if s.is_empty() {
        return Err(HostError::Empty);
    }
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return Err(HostError::SurroundingWhitespace);
    }
    if s.contains('@') {
        return Err(HostError::Userinfo);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let Some(inner) = rest.strip_suffix(']') else {
            return Err(if rest.contains("]:") {
                HostError::PortNotAllowed
            } else {
                HostError::InvalidIpv6
            });
        };
        validate_ipv6(inner.as_bytes())?;
        return Ok(DomainPattern::Exact(s.to_ascii_lowercase()));
    }
    let (wildcard, rest) = match s.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if rest.contains('*') {
        return Err(HostError::MisplacedWildcard);
    }
    // ASCII pre-check for precise messages; the A-label result is validated again below.
    for c in rest.chars().filter(char::is_ascii) {
        match c {
            ':' => return Err(HostError::PortNotAllowed),
            c if is_name_byte(c as u8) => {}
            c => return Err(HostError::InvalidChar(c as u8)),
        }
    }
    let ascii = idna::domain_to_ascii(rest).map_err(|_| HostError::InvalidIdna)?;
    let name = match ascii.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped,
        Some(_) => return Err(HostError::EmptyLabel),
        None => ascii.as_str(),
    };
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    validate_name(name.as_bytes())?;
    if wildcard {
        if name.parse::<Ipv4Addr>().is_ok() || !name.contains('.') {
            return Err(HostError::WildcardTooBroad);
        }
        return Ok(DomainPattern::Wildcard(name.to_owned()));
    }
    Ok(DomainPattern::Exact(name.to_owned()))
}

/// For a normalized host, the suffix a one-label wildcard would have to carry to match it:
/// `"a.b.example.com"` gives `Some("b.example.com")`. `None` for single-label hosts and for
/// IP literals (IPv4 or bracketed IPv6). No allocation.
pub fn wildcard_parent(host: &str) -> Option<&str> {
    if host.starts_with('[') || host.parse::<Ipv4Addr>().is_ok() {
        return None;
    }
    let (first, rest) = host.split_once('.')?;
    if first.is_empty() || rest.is_empty() {
        return None;
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(s: &str) -> Result<(String, Option<u16>), HostError> {
        parse_authority(s.as_bytes()).map(|a| (normalize(&a), a.port))
    }

    fn norm(s: &str) -> String {
        auth(s).unwrap().0
    }

    /// `validate_name` as it was before its one-pass form: four passes, each fault class in
    /// turn. The one-pass form must give the same answer for every input.
    fn validate_name_by_passes(name: &[u8]) -> Result<(), HostError> {
        if name.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        // The allowed bytes written out again, not taken from `byte_class`, so that the
        // comparison checks the classes too.
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if let Some(&b) = name.iter().find(|&&b| !allowed(b)) {
            return Err(HostError::InvalidChar(b));
        }
        if name.len() > MAX_HOST_LEN {
            return Err(HostError::TooLong);
        }
        for label in name.split(|&b| b == b'.') {
            if label.is_empty() {
                return Err(HostError::EmptyLabel);
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(HostError::LabelTooLong);
            }
        }
        Ok(())
    }

    /// A fixed xorshift64 sequence from `state` (not 0): generated inputs, the same every run.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn the_one_pass_authority_agrees_with_the_general_parse() {
        // Every input the fast path takes must parse the same as before it; the others go to
        // the general parse anyway. Names, ports, userinfo, IPv6 literals and trailing dots,
        // from a fixed xorshift sequence.
        const PARTS: &[&[u8]] = &[
            b"a",
            b"Z",
            b"0",
            b"-",
            b"_",
            b".",
            b"..",
            b":",
            b":443",
            b":99999",
            b"@",
            b"[",
            b"]",
            b"[::1]",
            b"[2001:db8::1]:8080",
            b" ",
            b"\xc3",
            b"bench.example",
            b"",
            b"www.example.com.",
            b"x:",
            b":x",
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut fast = 0;
        for _ in 0..200_000 {
            let mut raw = Vec::new();
            for _ in 0..(next() % 5) {
                raw.extend_from_slice(PARTS[(next() % PARTS.len() as u64) as usize]);
            }
            let got = parse_authority(&raw);
            assert_eq!(
                got,
                parse_authority_general(&raw),
                "{:?}",
                String::from_utf8_lossy(&raw)
            );
            fast += usize::from(validate_name(&raw).is_ok());
        }
        assert!(fast > 10_000, "the fast path ran: {fast}");
        let long = [b"a".repeat(63), b"b".repeat(64)].join(&b'.');
        assert_eq!(parse_authority(&long), parse_authority_general(&long));
        let too_long = vec![b"a".repeat(63); 5].join(&b'.');
        assert_eq!(parse_authority(&too_long), Err(HostError::TooLong));
    }

    #[test]
    fn one_pass_name_validation_agrees_with_the_four_passes() {
        // Names built from runs of one byte, so that labels of 0, 1, 62–64 bytes and totals
        // around 253 come up often; a fixed xorshift sequence keeps the run reproducible.
        const BYTES: &[u8] = b"aZ0-_.. @\xc3:";
        const RUNS: &[usize] = &[0, 1, 2, 30, 62, 63, 64, 65, 120, 200, 252, 253, 254];
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let mut faults = [0usize; 5];
        for _ in 0..200_000 {
            let mut name = Vec::new();
            for _ in 0..(next() % 6) {
                let b = BYTES[(next() % BYTES.len() as u64) as usize];
                let n = RUNS[(next() % RUNS.len() as u64) as usize];
                name.extend(std::iter::repeat_n(b, n.min(300 - name.len().min(300))));
            }
            let expected = validate_name_by_passes(&name);
            assert_eq!(
                validate_name(&name),
                expected,
                "{:?}",
                String::from_utf8_lossy(&name)
            );
            let kind = match expected {
                Ok(()) => 0,
                Err(HostError::InvalidChar(_)) => 1,
                Err(HostError::TooLong) => 2,
                Err(HostError::EmptyLabel) => 3,
                Err(_) => 4,
            };
            faults[kind] += 1;
        }
        // Every outcome was reached, so the comparison covered each order of precedence.
        assert!(faults.iter().all(|&n| n > 100), "{faults:?}");
        // And every byte value, alone and inside a name (the byte classes).
        for b in 0..=255u8 {
            for name in [vec![b], vec![b'a', b, b'a'], vec![b'a', b'.', b]] {
                assert_eq!(validate_name(&name), validate_name_by_passes(&name), "{b}");
            }
        }
    }

    #[test]
    fn normalize_lowercases_every_ascii_host_and_keeps_other_bytes() {
        let a = Authority {
            host: b"WwW.Ex-Ample_1.COM.",
            port: None,
        };
        assert_eq!(normalize(&a), "www.ex-ample_1.com");
        let v6 = Authority {
            host: b"[2001:DB8::A]",
            port: Some(8080),
        };
        assert_eq!(normalize(&v6), "[2001:db8::a]");
        // Not from `parse_authority` (its fields are public): each byte becomes a char.
        let raw = Authority {
            host: b"A\xe9",
            port: None,
        };
        assert_eq!(normalize(&raw), "a\u{e9}");
    }

    #[test]
    fn lowercase_and_trailing_dot() {
        assert_eq!(norm("Example.COM"), "example.com");
        assert_eq!(norm("example.com."), "example.com");
        assert_eq!(norm("Example.Com.:8080"), "example.com");
        // as received in the Authority
        let a = parse_authority(b"Example.COM.:80").unwrap();
        assert_eq!(a.host, b"Example.COM.");
        assert_eq!(a.port, Some(80));
    }

    #[test]
    fn port_handling() {
        assert_eq!(auth("h:80").unwrap(), ("h".into(), Some(80)));
        assert_eq!(auth("h:0080").unwrap(), ("h".into(), Some(80)));
        assert_eq!(auth("h:65535").unwrap(), ("h".into(), Some(65535)));
        assert_eq!(auth("h:").unwrap(), ("h".into(), None));
        assert_eq!(auth("h").unwrap(), ("h".into(), None));
        assert_eq!(auth("h:65536"), Err(HostError::PortOutOfRange));
        assert_eq!(auth("h:99999"), Err(HostError::PortOutOfRange));
        assert_eq!(
            auth("h:99999999999999999999999999"),
            Err(HostError::PortOutOfRange)
        );
        assert_eq!(auth("h:x"), Err(HostError::InvalidPort));
        assert_eq!(auth("h:8x"), Err(HostError::InvalidPort));
        assert_eq!(auth("h:-1"), Err(HostError::InvalidPort));
        assert_eq!(auth("h: 80"), Err(HostError::InvalidPort));
        assert_eq!(auth("h:80:80"), Err(HostError::InvalidChar(b':')));
        assert_eq!(auth(":80"), Err(HostError::Empty));
    }

    #[test]
    fn ipv6_literals() {
        let a = parse_authority(b"[2001:DB8::1]:80").unwrap();
        assert_eq!(a.host, b"[2001:DB8::1]");
        assert_eq!(a.port, Some(80));
        assert!(a.is_ipv6());
        assert_eq!(normalize(&a), "[2001:db8::1]");
        assert_eq!(norm("[::1]"), "[::1]");
        assert_eq!(norm("[::ffff:192.0.2.1]"), "[::ffff:192.0.2.1]");
        // not re-formatted
        assert_eq!(norm("[2001:db8:0:0::1]"), "[2001:db8:0:0::1]");
        assert_eq!(auth("[::1"), Err(HostError::InvalidIpv6));
        assert_eq!(auth("[]"), Err(HostError::InvalidIpv6));
        assert_eq!(auth("[::g]"), Err(HostError::InvalidIpv6));
        assert_eq!(auth("[fe80::1%25eth0]"), Err(HostError::InvalidIpv6));
        assert_eq!(auth("[v1.x]"), Err(HostError::InvalidIpv6));
        assert_eq!(auth("[192.0.2.1]"), Err(HostError::InvalidIpv6));
        assert_eq!(auth("[::1]x"), Err(HostError::InvalidChar(b'x')));
        assert_eq!(auth("[::1]:x"), Err(HostError::InvalidPort));
        assert_eq!(auth("[::1]:70000"), Err(HostError::PortOutOfRange));
        assert_eq!(auth("[::1]:"), Ok(("[::1]".into(), None)));
        assert_eq!(auth("::1"), Err(HostError::InvalidChar(b':')));
        assert_eq!(auth("2001:db8::1"), Err(HostError::InvalidChar(b':')));
        assert_eq!(auth("[\u{e9}::1]"), Err(HostError::InvalidIpv6));
    }

    #[test]
    fn rejected_hosts() {
        assert_eq!(auth(""), Err(HostError::Empty));
        assert_eq!(auth("a b"), Err(HostError::InvalidChar(b' ')));
        assert_eq!(auth("a\tb"), Err(HostError::InvalidChar(b'\t')));
        assert_eq!(auth("a\0b"), Err(HostError::InvalidChar(0)));
        assert_eq!(auth("a/b"), Err(HostError::InvalidChar(b'/')));
        assert_eq!(auth("a?b"), Err(HostError::InvalidChar(b'?')));
        assert_eq!(auth("a%2eb"), Err(HostError::InvalidChar(b'%')));
        assert_eq!(auth("a~b"), Err(HostError::InvalidChar(b'~')));
        assert_eq!(auth("a]b"), Err(HostError::InvalidChar(b']')));
        assert_eq!(auth("user@h"), Err(HostError::Userinfo));
        assert_eq!(auth("@h"), Err(HostError::Userinfo));
        assert_eq!(auth("b\u{fc}cher.de"), Err(HostError::InvalidChar(0xc3)));
        assert_eq!(auth("."), Err(HostError::EmptyLabel));
        assert_eq!(auth(".:80"), Err(HostError::EmptyLabel));
        assert_eq!(auth("a..b"), Err(HostError::EmptyLabel));
        assert_eq!(auth(".a"), Err(HostError::EmptyLabel));
        assert_eq!(auth("a.."), Err(HostError::EmptyLabel));
        let long_label = "a".repeat(64);
        assert_eq!(auth(&long_label), Err(HostError::LabelTooLong));
        assert!(auth(&"a".repeat(63)).is_ok());
        // 4 * 63 + 3 dots = 255 > 253
        let long_name = vec!["a".repeat(63); 4].join(".");
        assert_eq!(auth(&long_name), Err(HostError::TooLong));
        // 253 bytes exactly, and with its trailing dot
        let max_name = format!("{}.{}", vec!["a".repeat(63); 3].join("."), "b".repeat(61));
        assert_eq!(max_name.len(), 253);
        assert!(auth(&max_name).is_ok());
        assert!(auth(&format!("{max_name}.")).is_ok());
    }

    #[test]
    fn accepted_hosts() {
        for h in [
            "localhost",
            "a-b.c_d.example",
            "192.0.2.1",
            "xn--bcher-kva.example",
            "1",
        ] {
            assert_eq!(norm(h), h, "{h}");
        }
    }

    #[test]
    fn normalize_into_buffer() {
        let a = parse_authority(b"WWW.Example.COM.:8080").unwrap();
        let mut buf = [0u8; MAX_HOST_LEN];
        let n = normalize_into(&a, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"www.example.com");
        let mut small = [0u8; 4];
        assert_eq!(
            normalize_into(&a, &mut small),
            Err(HostError::BufferTooSmall)
        );
        // a hand-built authority of a lone dot is left alone rather than emptied
        let dot = Authority {
            host: b".",
            port: None,
        };
        assert_eq!(normalize(&dot), ".");
    }

    #[test]
    fn error_messages() {
        assert_eq!(HostError::Empty.to_string(), "empty host");
        assert_eq!(
            HostError::InvalidChar(b'/').to_string(),
            "invalid character '/' in host"
        );
        assert_eq!(
            HostError::InvalidChar(b' ').to_string(),
            "whitespace in host"
        );
        assert_eq!(
            HostError::InvalidChar(0x0a).to_string(),
            "control character 0x0a in host"
        );
        assert_eq!(
            HostError::InvalidChar(0xc3).to_string(),
            "non-ASCII byte in host"
        );
        assert_eq!(HostError::PortOutOfRange.to_string(), "port out of range");
        assert_eq!(HostError::InvalidIpv6.to_string(), "invalid IPv6 literal");
        assert_eq!(
            HostError::LabelTooLong.to_string(),
            "label longer than 63 bytes"
        );
    }

    fn pat(s: &str) -> Result<DomainPattern, HostError> {
        parse_domain_pattern(s)
    }

    fn exact(s: &str) -> Result<DomainPattern, HostError> {
        Ok(DomainPattern::Exact(s.into()))
    }

    fn wild(s: &str) -> Result<DomainPattern, HostError> {
        Ok(DomainPattern::Wildcard(s.into()))
    }

    #[test]
    fn domain_patterns_accepted() {
        assert_eq!(pat("shop.example.com"), exact("shop.example.com"));
        assert_eq!(pat("Shop.Example.COM."), exact("shop.example.com"));
        assert_eq!(pat("localhost"), exact("localhost"));
        assert_eq!(pat("*.shop.example.com"), wild("shop.example.com"));
        assert_eq!(pat("*.Example.COM."), wild("example.com"));
        assert_eq!(pat("bücher.example"), exact("xn--bcher-kva.example"));
        assert_eq!(pat("BÜCHER.example"), exact("xn--bcher-kva.example"));
        assert_eq!(pat("*.bücher.example"), wild("xn--bcher-kva.example"));
        assert_eq!(pat("xn--bcher-kva.example"), exact("xn--bcher-kva.example"));
        assert_eq!(pat("例え.テスト"), exact("xn--r8jz45g.xn--zckzah"));
        assert_eq!(pat("a_b.example"), exact("a_b.example"));
        assert_eq!(pat("192.0.2.1"), exact("192.0.2.1"));
        assert_eq!(pat("[2001:DB8::1]"), exact("[2001:db8::1]"));
        assert_eq!(pat("[::1]"), exact("[::1]"));
    }

    #[test]
    fn domain_patterns_rejected() {
        assert_eq!(pat(""), Err(HostError::Empty));
        assert_eq!(pat("."), Err(HostError::EmptyLabel));
        assert_eq!(pat(" example.com"), Err(HostError::SurroundingWhitespace));
        assert_eq!(pat("example.com "), Err(HostError::SurroundingWhitespace));
        assert_eq!(pat("example.com\n"), Err(HostError::SurroundingWhitespace));
        assert_eq!(pat("exa mple.com"), Err(HostError::InvalidChar(b' ')));
        assert_eq!(pat("example.com:80"), Err(HostError::PortNotAllowed));
        assert_eq!(pat("example.com:"), Err(HostError::PortNotAllowed));
        assert_eq!(pat("[::1]:80"), Err(HostError::PortNotAllowed));
        assert_eq!(pat("::1"), Err(HostError::PortNotAllowed));
        assert_eq!(pat("[::1"), Err(HostError::InvalidIpv6));
        assert_eq!(pat("[::g]"), Err(HostError::InvalidIpv6));
        assert_eq!(pat("example.com/path"), Err(HostError::InvalidChar(b'/')));
        assert_eq!(pat("http://example.com"), Err(HostError::PortNotAllowed));
        assert_eq!(pat("user@example.com"), Err(HostError::Userinfo));
        assert_eq!(pat("*"), Err(HostError::MisplacedWildcard));
        assert_eq!(pat("*."), Err(HostError::Empty));
        assert_eq!(pat("*.com"), Err(HostError::WildcardTooBroad));
        assert_eq!(pat("*.com."), Err(HostError::WildcardTooBroad));
        assert_eq!(pat("*.192.0.2.1"), Err(HostError::WildcardTooBroad));
        assert_eq!(pat("*.*.example.com"), Err(HostError::MisplacedWildcard));
        assert_eq!(pat("a.*.example.com"), Err(HostError::MisplacedWildcard));
        assert_eq!(pat("*a.example.com"), Err(HostError::MisplacedWildcard));
        assert_eq!(pat("**.example.com"), Err(HostError::MisplacedWildcard));
        assert_eq!(pat("example.com.."), Err(HostError::EmptyLabel));
        assert_eq!(pat("a..b"), Err(HostError::EmptyLabel));
        assert_eq!(pat(&"a".repeat(64)), Err(HostError::LabelTooLong));
        assert_eq!(pat("xn--a.example"), Err(HostError::InvalidIdna));
        // fullwidth colon maps to ':' under UTS #46 and is caught afterwards
        assert!(pat("example.com\u{ff1a}80").is_err());
    }

    #[test]
    fn domain_pattern_display_and_match() {
        let w = pat("*.Shop.Example.com").unwrap();
        assert_eq!(w.to_string(), "*.shop.example.com");
        assert!(w.matches("a.shop.example.com"));
        assert!(!w.matches("shop.example.com"));
        assert!(!w.matches("a.b.shop.example.com"));
        let e = pat("shop.example.com").unwrap();
        assert_eq!(e.to_string(), "shop.example.com");
        assert!(e.matches("shop.example.com"));
        assert!(!e.matches("a.shop.example.com"));
        // a pattern round-trips through its Display
        assert_eq!(pat(&w.to_string()).unwrap(), w);
    }

    #[test]
    fn wildcard_parents() {
        assert_eq!(wildcard_parent("a.b.example.com"), Some("b.example.com"));
        assert_eq!(wildcard_parent("b.example.com"), Some("example.com"));
        assert_eq!(wildcard_parent("example.com"), Some("com"));
        assert_eq!(wildcard_parent("localhost"), None);
        assert_eq!(wildcard_parent(""), None);
        assert_eq!(wildcard_parent("192.0.2.1"), None);
        assert_eq!(wildcard_parent("[2001:db8::1]"), None);
        assert_eq!(wildcard_parent(".com"), None);
        assert_eq!(wildcard_parent("a."), None);
    }
}
