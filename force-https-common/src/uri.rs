//! Which bytes may stand as they are in the path and query of a `Location` URI.
//!
//! RFC 3986 §3.3 (path) and §3.4 (query): `pchar = unreserved / pct-encoded / sub-delims / ":"
//! / "@"`, and the query adds `/` and `?`. The redirect builder (`force-https-proto::response`)
//! percent-encodes every other byte of a request-target (and a `%` that does not start a
//! `%XX` triplet); the XDP program passes requests with such bytes to the kernel instead of
//! handing them to the responder. One definition, so both paths agree byte for byte.

/// Whether `b` may appear unescaped in a URI path or query (RFC 3986 §3.3, §3.4). `%` is
/// included, but is only kept when it starts a `%XX` triplet (see [`is_hex_digit`]).
#[inline(always)]
pub const fn is_uri_path_byte(b: u8) -> bool {
    matches!(
        b,
        b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@'
            | b'/'
            | b'?'
            | b'%'
    )
}

/// Whether `b` is a hexadecimal digit (RFC 3986 §2.1 `HEXDIG`, either case).
#[inline(always)]
pub const fn is_hex_digit(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_unsafe_bytes() {
        for b in b"/a-Z_0~!$&'()*+,;=:@?%" {
            assert!(is_uri_path_byte(*b), "{}", *b as char);
        }
        for b in b"\\\"<>^`{|}# []\x7f\x80\xff\x00\t" {
            assert!(!is_uri_path_byte(*b), "{b:#x}");
        }
    }
}
