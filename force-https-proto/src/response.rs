//! The one builder of response bytes: the port-80 redirect and the fixed error responses.
//!
//! The socket path and the AF_XDP fast path both answer through this module, so their bytes
//! are identical by construction. A redirect is a [`RedirectPrefix`] built once per
//! (status, host, HTTPS port) and completed per request with the path by
//! [`RedirectPrefix::write`] into a caller buffer, without allocation:
//!
//! ```text
//! HTTP/1.1 301 Moved Permanently\r\n
//! Location: https://HOST[:PORT]PATH\r\n
//! Connection: close\r\n
//! Content-Length: 0\r\n
//! \r\n
//! ```
//!
//! PATH is the request's path and query made a valid URI-reference (RFC 9110 §10.2.2, RFC
//! 3986 §3.3, §3.4): what `force_https_common::uri::is_uri_path_byte` allows and `%XX`
//! triplets as sent, every other byte percent-encoded (`/caf\xC3\xA9` gives `/caf%C3%A9`).
//!
//! Error responses are static byte strings ([`error_response`]); [`error_body`] and
//! [`reason`] give the same texts to the hyper-based paths. `OPTIONS *` is never redirected:
//! [`options_asterisk`] is its local answer.

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

use force_https_common::uri::{is_hex_digit, is_uri_path_byte};

use crate::head::origin_form_prefix;

/// What follows the path in every redirect.
const REDIRECT_SUFFIX: &[u8] = b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// The configured redirect code of a site (`redirect_code = "auto" | 301 | 308`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RedirectCode {
    /// 301 for `GET` and `HEAD`, 308 for every other method.
    #[default]
    Auto,
    /// Always 301.
    Moved301,
    /// Always 308.
    Permanent308,
}

/// The status of a redirect response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedirectStatus {
    /// `301 Moved Permanently`.
    Moved301,
    /// `308 Permanent Redirect`.
    Permanent308,
}

impl RedirectStatus {
    /// The status code: 301 or 308.
    pub fn code(self) -> u16 {
        match self {
            RedirectStatus::Moved301 => 301,
            RedirectStatus::Permanent308 => 308,
        }
    }

    /// The reason phrase: `Moved Permanently` or `Permanent Redirect`.
    pub fn reason(self) -> &'static str {
        match self {
            RedirectStatus::Moved301 => "Moved Permanently",
            RedirectStatus::Permanent308 => "Permanent Redirect",
        }
    }
}

/// The redirect status for a request `method` under the site's `configured` code. With
/// [`RedirectCode::Auto`], exactly `GET` and `HEAD` (method tokens are case-sensitive,
/// RFC 9110 §9.1) give 301 and everything else 308, so that clients keep the method and body.
pub fn for_method(method: &[u8], configured: RedirectCode) -> RedirectStatus {
    match configured {
        RedirectCode::Moved301 => RedirectStatus::Moved301,
        RedirectCode::Permanent308 => RedirectStatus::Permanent308,
        RedirectCode::Auto if method == b"GET" || method == b"HEAD" => RedirectStatus::Moved301,
        RedirectCode::Auto => RedirectStatus::Permanent308,
    }
}

/// Whether a byte of a request-target is refused outright by the redirect builder: C0
/// controls, space and DEL (RFC 5234 `CTL` / `SP`). A request-target never holds them
/// (RFC 9112 §3.2, §3: `parse_head` answers 400), so a path with one is a caller's mistake;
/// refusing it (rather than escaping it) keeps the "invalid request, 400" answer in one place.
fn is_refused_byte(b: u8) -> bool {
    b <= 0x20 || b == 0x7f
}

/// Uppercase hexadecimal digits, for the escapes the builder produces (RFC 3986 §2.1: "URI
/// producers ... should use uppercase hexadecimal digits for all percent-encodings").
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// [`is_uri_path_byte`] as a table, without `%` (which needs a look at what follows): the
/// bytes copied into a `Location` as they are. Built at compile time from the one definition.
static KEPT: [bool; 256] = kept_table();

/// Builds [`KEPT`].
// Indexing a [_; 256] with 0..256 at compile time: out of bounds would not compile.
#[allow(clippy::indexing_slicing)]
const fn kept_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = is_uri_path_byte(b) && b != b'%';
        i += 1;
    }
    t
}

/// Whether `b` is copied into a `Location` as it is (see [`KEPT`]).
#[inline(always)]
fn is_kept(b: u8) -> bool {
    KEPT.get(usize::from(b)).copied().unwrap_or(false)
}

/// Whether `rest` (what follows a `%`) starts with two hex digits: the `%` then starts a
/// `%XX` triplet, which is kept exactly as sent (RFC 3986 §2.1, §2.4: never re-encoded).
#[inline(always)]
fn starts_with_two_hex(rest: &[u8]) -> bool {
    matches!(rest, [h, l, ..] if is_hex_digit(*h) && is_hex_digit(*l))
}

/// Splits `rest` at its first byte that is not [`is_kept`]: (kept run, that byte, after it).
#[inline(always)]
fn next_special(rest: &[u8]) -> (&[u8], Option<(u8, &[u8])>) {
    let run = rest.iter().position(|&b| !is_kept(b)).unwrap_or(rest.len());
    let (kept, tail) = rest.split_at_checked(run).unwrap_or((rest, &[]));
    (kept, tail.split_first().map(|(&b, after)| (b, after)))
}

/// Length of `path_and_query` once written into a `Location` by [`RedirectPrefix::write`]
/// (RFC 3986 §2.1: 3 bytes for each percent-encoded byte, 1 for each byte kept, plus the `/`
/// inserted before an empty or query-only path). Saturating; no allocation.
pub fn location_path_len(path_and_query: &[u8]) -> usize {
    let mut n = origin_form_prefix(path_and_query).len();
    let mut rest = path_and_query;
    loop {
        let (kept, special) = next_special(rest);
        n = n.saturating_add(kept.len());
        let Some((b, after)) = special else {
            return n;
        };
        let kept_percent = b == b'%' && starts_with_two_hex(after);
        n = n.saturating_add(if kept_percent { 1 } else { 3 });
        rest = after;
    }
}

/// Whether `path_and_query` can be the path and query of a redirect: empty, or starting with
/// `/` or `?` (an origin-form path, or the query-only rest of an absolute-form target), and
/// free of controls, space and DEL. Refused in particular: the asterisk-form `*` (RFC 9110
/// §9.3.7: `OPTIONS *` is about the server, there is no resource to redirect to) and an
/// authority-form target.
pub fn is_redirectable_path(path_and_query: &[u8]) -> bool {
    starts_like_a_path(path_and_query) && !path_and_query.iter().any(|&b| is_refused_byte(b))
}

/// Empty, or starting with `/` or `?`.
fn starts_like_a_path(path_and_query: &[u8]) -> bool {
    matches!(path_and_query.first(), None | Some(b'/' | b'?'))
}

/// Writes `path_and_query` into `out` at `*pos` as the path and query of a `Location` URI
/// (RFC 9110 §10.2.2: a URI-reference; RFC 3986 §3.3, §3.4): a `/` first when it is empty
/// or query-only; bytes that [`is_uri_path_byte`] allows copied as they are, `%XX` triplets
/// kept exactly as sent (hex case included), every other byte (non-ASCII, `\`, `"`, `<`,
/// `>`, `^`, `` ` ``, `{`, `|`, `}`, `[`, `]`, `#`, and a `%` that does not start a triplet)
/// written as `%XX` with uppercase hex. `None` when `out` is too small or the path is not
/// [`is_redirectable_path`] (`out` may then have been written to). No allocation.
fn write_location_path(out: &mut [u8], pos: &mut usize, path_and_query: &[u8]) -> Option<()> {
    if !starts_like_a_path(path_and_query) {
        return None;
    }
    put(out, pos, origin_form_prefix(path_and_query))?;
    // Runs of kept bytes are copied at once; the bytes between them one by one.
    let mut rest = path_and_query;
    loop {
        let (kept, special) = next_special(rest);
        put(out, pos, kept)?;
        let Some((b, after)) = special else {
            return Some(());
        };
        if is_refused_byte(b) {
            return None;
        }
        if b == b'%' && starts_with_two_hex(after) {
            // the two hex digits are kept bytes: they go out with the next run
            put(out, pos, b"%")?;
        } else {
            let hi = HEX_UPPER.get(usize::from(b >> 4)).copied()?;
            let lo = HEX_UPPER.get(usize::from(b & 0x0f)).copied()?;
            put(out, pos, &[b'%', hi, lo])?;
        }
        rest = after;
    }
}

/// Copies `src` into `out` at `*pos`, advancing it; `None` when `out` is too small.
fn put(out: &mut [u8], pos: &mut usize, src: &[u8]) -> Option<()> {
    let end = pos.checked_add(src.len())?;
    out.get_mut(*pos..end)?.copy_from_slice(src);
    *pos = end;
    Some(())
}

/// The fixed part of a redirect: status line and `Location: https://HOST[:PORT]`, built once
/// per (status, host, HTTPS port) and completed per request by [`RedirectPrefix::write`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedirectPrefix {
    status: RedirectStatus,
    bytes: Vec<u8>,
}

impl RedirectPrefix {
    /// Builds the prefix. `host` must be a normalized host (from
    /// [`crate::host::normalize`] or a [`crate::host::DomainPattern`]); it is copied as is.
    /// `:https_port` is added unless it is 443.
    pub fn new(status: RedirectStatus, host: &str, https_port: u16) -> Self {
        let mut bytes = Vec::with_capacity(64 + host.len());
        bytes.extend_from_slice(b"HTTP/1.1 ");
        bytes.extend_from_slice(status.code().to_string().as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(status.reason().as_bytes());
        bytes.extend_from_slice(b"\r\nLocation: https://");
        bytes.extend_from_slice(host.as_bytes());
        if https_port != 443 {
            bytes.push(b':');
            bytes.extend_from_slice(https_port.to_string().as_bytes());
        }
        RedirectPrefix { status, bytes }
    }

    /// The status this prefix answers with.
    pub fn status(&self) -> RedirectStatus {
        self.status
    }

    /// The prefix bytes (status line and `Location` up to the path).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Length of the full response for this `path_and_query`, with the path percent-encoded
    /// as [`RedirectPrefix::write`] writes it (see [`location_path_len`]; a `/` is inserted
    /// before an empty or query-only path). No allocation.
    pub fn response_len(&self, path_and_query: &[u8]) -> usize {
        self.bytes
            .len()
            .saturating_add(location_path_len(path_and_query))
            .saturating_add(REDIRECT_SUFFIX.len())
    }

    /// Writes the full redirect for `path_and_query` into `out` and returns its length, which
    /// is [`RedirectPrefix::response_len`]. The path and query become a valid URI-reference
    /// (RFC 9110 §10.2.2, RFC 3986 §3.3, §3.4): a `/` first when the path is empty or
    /// query-only; the bytes `force_https_common::uri::is_uri_path_byte` allows, and `%XX`
    /// triplets, exactly as sent (hex case included); every other byte (non-ASCII, `\`, `"`,
    /// `<`, `>`, `^`, `` ` ``, `{`, `|`, `}`, `[`, `]`, `#`, and a `%` that does not start a
    /// triplet) as `%XX` with uppercase hex (RFC 3986 §2.1).
    ///
    /// `None` when `out` is shorter than [`RedirectPrefix::response_len`], or when the path
    /// is not [`is_redirectable_path`]: it holds a control byte, space or DEL (never emitted
    /// into a header), or it is not a path at all (`*` of `OPTIONS *`, an authority). No
    /// allocation.
    pub fn write(&self, path_and_query: &[u8], out: &mut [u8]) -> Option<usize> {
        let mut pos = 0;
        put(out, &mut pos, &self.bytes)?;
        write_location_path(out, &mut pos, path_and_query)?;
        put(out, &mut pos, REDIRECT_SUFFIX)?;
        Some(pos)
    }
}

/// Allocating convenience: the full redirect response, built through [`RedirectPrefix`].
/// `None` when the path is not [`is_redirectable_path`] (control bytes, space, DEL, `*`).
pub fn redirect(
    status: RedirectStatus,
    host: &str,
    https_port: u16,
    path_and_query: &[u8],
) -> Option<Vec<u8>> {
    let prefix = RedirectPrefix::new(status, host, https_port);
    let mut out = vec![0; prefix.response_len(path_and_query)];
    let n = prefix.write(path_and_query, &mut out)?;
    out.truncate(n);
    Some(out)
}

/// Builds a fixed `text/plain` error response; the length literal is checked by tests.
macro_rules! error_response {
    ($code:literal, $reason:literal, $len:literal) => {
        concat!(
            "HTTP/1.1 ",
            $code,
            " ",
            $reason,
            "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ",
            $len,
            "\r\nConnection: close\r\n\r\n",
            $code,
            " ",
            $reason,
            "\n"
        )
    };
}

/// (status, reason, body, full response) for every fixed error response.
const ERRORS: &[(u16, &str, &str, &str)] = &[
    FALLBACK,
    (
        400,
        "Bad Request",
        "400 Bad Request\n",
        error_response!("400", "Bad Request", "16"),
    ),
    (
        404,
        "Not Found",
        "404 Not Found\n",
        error_response!("404", "Not Found", "14"),
    ),
    (
        408,
        "Request Timeout",
        "408 Request Timeout\n",
        error_response!("408", "Request Timeout", "20"),
    ),
    (
        414,
        "URI Too Long",
        "414 URI Too Long\n",
        error_response!("414", "URI Too Long", "17"),
    ),
    (
        421,
        "Misdirected Request",
        "421 Misdirected Request\n",
        error_response!("421", "Misdirected Request", "24"),
    ),
    (
        431,
        "Request Header Fields Too Large",
        "431 Request Header Fields Too Large\n",
        error_response!("431", "Request Header Fields Too Large", "36"),
    ),
    (
        508,
        "Loop Detected",
        "508 Loop Detected\n",
        error_response!("508", "Loop Detected", "18"),
    ),
    (
        502,
        "Bad Gateway",
        "502 Bad Gateway\n",
        error_response!("502", "Bad Gateway", "16"),
    ),
    (
        503,
        "Service Unavailable",
        "503 Service Unavailable\n",
        error_response!("503", "Service Unavailable", "24"),
    ),
    (
        504,
        "Gateway Timeout",
        "504 Gateway Timeout\n",
        error_response!("504", "Gateway Timeout", "20"),
    ),
];

/// The 500 entry, the fallback for codes without a fixed response.
const FALLBACK: (u16, &str, &str, &str) = (
    500,
    "Internal Server Error",
    "500 Internal Server Error\n",
    error_response!("500", "Internal Server Error", "26"),
);

/// The entry for `status`, or the 500 one.
fn error_entry(status: u16) -> (u16, &'static str, &'static str, &'static str) {
    ERRORS
        .iter()
        .find(|e| e.0 == status)
        .copied()
        .unwrap_or(FALLBACK)
}

/// The complete fixed response for an error status: 400, 404, 408, 414 (RFC 9112 §3: a
/// request-target longer than the server parses), 421 (RFC 9110 §15.5.20: the connection's
/// certificate does not cover the request's host), 431 (RFC 6585 §5), 500, 502, 503, 504, 508
/// (RFC 5842 §7.2: a request that already went through this edge, `CDN-Loop`). Any
/// other code gives the 500 response.
///
/// ```text
/// HTTP/1.1 400 Bad Request\r\n
/// Content-Type: text/plain; charset=utf-8\r\n
/// Content-Length: 16\r\n
/// Connection: close\r\n
/// \r\n
/// 400 Bad Request\n
/// ```
pub fn error_response(status: u16) -> &'static [u8] {
    error_entry(status).3.as_bytes()
}

/// The body of [`error_response`] (`"400 Bad Request\n"`), for paths that build their own
/// head (hyper). Same fallback to 500.
pub fn error_body(status: u16) -> &'static str {
    error_entry(status).2
}

/// The reason phrase for the statuses force-https sends (the errors of [`error_response`],
/// 200 of [`options_asterisk`], 301 and 308); `"Internal Server Error"` for any other code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => RedirectStatus::Moved301.reason(),
        308 => RedirectStatus::Permanent308.reason(),
        _ => error_entry(status).1,
    }
}

/// The methods [`options_asterisk`] announces in `Allow` (RFC 9110 §10.2.1).
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// The local answer to `OPTIONS *` (and to `OPTIONS http://host` with an empty path and no
/// query, which stands for it: RFC 9112 §3.2.4), the request that [`crate::head`] reports
/// with [`crate::head::RequestTarget::is_asterisk`]:
///
/// ```text
/// HTTP/1.1 200 OK\r\n
/// Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n
/// Connection: close\r\n
/// Content-Length: 0\r\n
/// \r\n
/// ```
///
/// RFC 9110 §9.3.7: an `OPTIONS` request with the asterisk-form target "applies to the server
/// in general rather than to a specific resource", so there is nothing to redirect; a server
/// answers it itself: `200` with `Allow` (RFC 9110 §9.3.7, §10.2.1) and
/// `Content-Length: 0`, as there is no content (RFC 9110 §8.6). Never a redirect:
/// [`RedirectPrefix::write`] refuses the target `*`.
pub fn options_asterisk() -> &'static [u8] {
    OPTIONS_ASTERISK
}

/// The bytes of [`options_asterisk`].
const OPTIONS_ASTERISK: &[u8] = concat!(
    "HTTP/1.1 200 OK\r\nAllow: ",
    "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS",
    "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
)
.as_bytes();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::{HeadStatus, parse_head, redirect_inputs};
    use crate::host::{MAX_HOST_LEN, normalize_into};

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn exact_301_bytes() {
        let r = redirect(RedirectStatus::Moved301, "example.com", 443, b"/a?b").unwrap();
        assert_eq!(
            text(&r),
            "HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.com/a?b\r\n\
             Connection: close\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn exact_308_bytes_with_port() {
        let r = redirect(RedirectStatus::Permanent308, "example.com", 8443, b"/").unwrap();
        assert_eq!(
            text(&r),
            "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://example.com:8443/\r\n\
             Connection: close\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn ipv6_and_query_only_paths() {
        let r = redirect(RedirectStatus::Moved301, "[2001:db8::1]", 443, b"?q").unwrap();
        assert!(text(&r).contains("\r\nLocation: https://[2001:db8::1]/?q\r\n"));
        let r = redirect(RedirectStatus::Moved301, "h", 443, b"").unwrap();
        assert!(text(&r).contains("\r\nLocation: https://h/\r\n"));
    }

    #[test]
    fn path_byte_for_byte() {
        let path = b"/a%20b?x=%2F&y";
        let r = redirect(RedirectStatus::Moved301, "h", 443, path).unwrap();
        assert!(text(&r).contains("\r\nLocation: https://h/a%20b?x=%2F&y\r\n"));
    }

    /// The `Location` of a 301 for `shop.example.test` and `path`.
    fn loc(path: &[u8]) -> String {
        let r = redirect(RedirectStatus::Moved301, "shop.example.test", 443, path).unwrap();
        let prefix = RedirectPrefix::new(RedirectStatus::Moved301, "shop.example.test", 443);
        assert_eq!(r.len(), prefix.response_len(path), "{path:?}");
        let t = text(&r);
        assert!(t.is_ascii(), "{t:?}");
        location(&t).to_owned()
    }

    #[test]
    fn non_ascii_is_percent_encoded() {
        let r = redirect(
            RedirectStatus::Moved301,
            "shop.example.test",
            443,
            b"/caf\xC3\xA9",
        )
        .unwrap();
        assert_eq!(
            r,
            b"HTTP/1.1 301 Moved Permanently\r\n\
              Location: https://shop.example.test/caf%C3%A9\r\n\
              Connection: close\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(loc(b"/\x80\xff"), "https://shop.example.test/%80%FF");
        // in the query too
        assert_eq!(
            loc("/s?q=caf\u{e9}&x=\u{1f600}".as_bytes()),
            "https://shop.example.test/s?q=caf%C3%A9&x=%F0%9F%98%80"
        );
    }

    #[test]
    fn backslash_is_percent_encoded() {
        let r = redirect(
            RedirectStatus::Permanent308,
            "shop.example.test",
            443,
            b"/\\evil.example/x",
        )
        .unwrap();
        assert_eq!(
            r,
            b"HTTP/1.1 308 Permanent Redirect\r\n\
              Location: https://shop.example.test/%5Cevil.example/x\r\n\
              Connection: close\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(
            loc(b"/\\\\evil.example"),
            "https://shop.example.test/%5C%5Cevil.example"
        );
        assert_eq!(loc(b"?\\x"), "https://shop.example.test/?%5Cx");
    }

    #[test]
    fn every_byte_outside_pchar_is_encoded() {
        let cases: [(&[u8], &str); 16] = [
            (b"/\"", "/%22"),
            (b"/<", "/%3C"),
            (b"/>", "/%3E"),
            (b"/^", "/%5E"),
            (b"/`", "/%60"),
            (b"/{", "/%7B"),
            (b"/|", "/%7C"),
            (b"/}", "/%7D"),
            (b"/[", "/%5B"),
            (b"/]", "/%5D"),
            (b"/#", "/%23"),
            (b"/\\", "/%5C"),
            (b"/\x80", "/%80"),
            (b"/\xC3\xA9", "/%C3%A9"),
            (b"/\xff", "/%FF"),
            (
                b"/<script>alert(1)</script>?a=\"b\"&c={d}|[e]^`f`",
                "/%3Cscript%3Ealert(1)%3C/script%3E?a=%22b%22&c=%7Bd%7D%7C%5Be%5D%5E%60f%60",
            ),
        ];
        for (path, want) in cases {
            assert_eq!(
                loc(path),
                format!("https://shop.example.test{want}"),
                "{path:?}"
            );
        }
        // every byte value: kept exactly when uri.rs allows it, else %XX (uppercase), or
        // refused (controls, space, DEL)
        for b in 0..=255u8 {
            let path = [b'/', b];
            let got = redirect(RedirectStatus::Moved301, "h", 443, &path);
            if b <= 0x20 || b == 0x7f {
                assert_eq!(got, None, "{b:#x}");
                continue;
            }
            let got = location(&text(&got.unwrap())).to_owned();
            let want = if is_uri_path_byte(b) && b != b'%' {
                format!("https://h/{}", b as char)
            } else {
                format!("https://h/%{b:02X}")
            };
            assert_eq!(got, want, "{b:#x}");
        }
    }

    #[test]
    fn existing_escapes_are_kept() {
        assert_eq!(loc(b"/a%2Fb"), "https://shop.example.test/a%2Fb");
        assert_eq!(
            loc(b"/a%2fb%c3%A9"),
            "https://shop.example.test/a%2fb%c3%A9"
        );
        assert_eq!(loc(b"/?q=%20%7e"), "https://shop.example.test/?q=%20%7e");
        // a '%' that does not start a %XX triplet is itself escaped
        assert_eq!(loc(b"/100%"), "https://shop.example.test/100%25");
        assert_eq!(loc(b"/a%4"), "https://shop.example.test/a%254");
        assert_eq!(loc(b"/a%zz"), "https://shop.example.test/a%25zz");
        assert_eq!(loc(b"/a%g1"), "https://shop.example.test/a%25g1");
        assert_eq!(loc(b"/a%%41"), "https://shop.example.test/a%25%41");
        assert_eq!(loc(b"/%%%"), "https://shop.example.test/%25%25%25");
        assert_eq!(loc(b"/?%"), "https://shop.example.test/?%25");
        assert_eq!(loc(b"/%C3%A9%"), "https://shop.example.test/%C3%A9%25");
        // allowed sub-delims, ':' '@' '/' '?' and unreserved bytes stay
        let keep = b"/AZaz09-._~!$&'()*+,;=:@/?/?";
        assert_eq!(
            loc(keep),
            format!("https://shop.example.test{}", text(keep))
        );
        // lengths
        assert_eq!(location_path_len(b"/a%2Fb"), 6);
        assert_eq!(location_path_len(b"/caf\xC3\xA9"), 10);
        assert_eq!(location_path_len(b"/%"), 4);
        assert_eq!(location_path_len(b"?q"), 3);
        assert_eq!(location_path_len(b""), 1);
    }

    #[test]
    fn asterisk_is_never_redirected() {
        let p = RedirectPrefix::new(RedirectStatus::Permanent308, "shop.example.test", 443);
        assert_eq!(p.write(b"*", &mut [0u8; 256]), None);
        assert_eq!(
            redirect(RedirectStatus::Permanent308, "shop.example.test", 443, b"*"),
            None
        );
        // nor an authority-form target or anything else that is not a path
        for bad in [&b"h:443"[..], b"a/b", b"#x", b"%2F"] {
            assert_eq!(p.write(bad, &mut [0u8; 256]), None, "{bad:?}");
            assert!(!is_redirectable_path(bad));
        }
        for good in [&b""[..], b"/", b"?q", b"/*"] {
            assert!(is_redirectable_path(good));
        }
        assert_eq!(
            options_asterisk(),
            b"HTTP/1.1 200 OK\r\n\
              Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n\
              Connection: close\r\nContent-Length: 0\r\n\r\n"
        );
        assert!(text(options_asterisk()).contains(&format!("\r\nAllow: {ALLOWED_METHODS}\r\n")));
        assert_eq!(reason(200), "OK");
    }

    #[test]
    fn encoded_length_is_exact() {
        let p = RedirectPrefix::new(RedirectStatus::Moved301, "shop.example.test", 8443);
        for path in [
            &b"/caf\xC3\xA9"[..],
            b"/\\evil.example/x",
            b"?<>",
            b"/a%2Fb%",
            b"/%%",
            b"/%4",
            b"",
            b"/\xff\xff\xff\xff",
        ] {
            let len = p.response_len(path);
            let mut exact = vec![0u8; len];
            assert_eq!(p.write(path, &mut exact), Some(len), "{path:?}");
            let mut short = vec![0u8; len - 1];
            assert_eq!(p.write(path, &mut short), None, "{path:?}");
            let mut big = vec![0u8; len + 10];
            assert_eq!(p.write(path, &mut big), Some(len), "{path:?}");
            assert_eq!(big[..len], exact[..]);
            assert_eq!(
                len,
                p.as_bytes().len() + location_path_len(path) + REDIRECT_SUFFIX.len()
            );
        }
        // each escape is three bytes
        assert_eq!(p.response_len(b"/\xC3\xA9") - p.response_len(b"/"), 6);
    }

    #[test]
    fn refuses_header_injection() {
        for bad in [
            &b"/a\r\nSet-Cookie: x"[..],
            b"/a b",
            b"/\x00",
            b"/\x7f",
            b"/\t",
        ] {
            assert_eq!(redirect(RedirectStatus::Moved301, "h", 443, bad), None);
            let p = RedirectPrefix::new(RedirectStatus::Moved301, "h", 443);
            assert_eq!(p.write(bad, &mut [0u8; 256]), None);
        }
    }

    #[test]
    fn write_into_buffer() {
        let p = RedirectPrefix::new(RedirectStatus::Moved301, "example.com", 443);
        assert_eq!(p.status(), RedirectStatus::Moved301);
        assert!(p.as_bytes().ends_with(b"Location: https://example.com"));
        let path = b"/x/y?z";
        let len = p.response_len(path);
        let mut buf = [0u8; 512];
        assert_eq!(p.write(path, &mut buf), Some(len));
        assert_eq!(
            &buf[..len],
            &redirect(RedirectStatus::Moved301, "example.com", 443, path).unwrap()[..]
        );
        // exactly the right size works, one byte less does not, nor does empty
        let mut exact = vec![0u8; len];
        assert_eq!(p.write(path, &mut exact), Some(len));
        let mut short = vec![0u8; len - 1];
        assert_eq!(p.write(path, &mut short), None);
        assert_eq!(p.write(path, &mut []), None);
        // query-only path counts its inserted '/'
        assert_eq!(p.response_len(b"?q"), p.response_len(b"/?q"));
        let mut exact = vec![0u8; p.response_len(b"?q")];
        assert_eq!(p.write(b"?q", &mut exact), Some(exact.len()));
        let mut short = vec![0u8; p.response_len(b"?q") - 1];
        assert_eq!(p.write(b"?q", &mut short), None);
    }

    #[test]
    fn methods() {
        use RedirectCode::Auto;
        use RedirectStatus::{Moved301, Permanent308};
        assert_eq!(for_method(b"GET", Auto), Moved301);
        assert_eq!(for_method(b"HEAD", Auto), Moved301);
        for m in [
            "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "PROPFIND",
        ] {
            assert_eq!(for_method(m.as_bytes(), Auto), Permanent308, "{m}");
        }
        assert_eq!(for_method(b"get", Auto), Permanent308);
        assert_eq!(for_method(b"Head", Auto), Permanent308);
        assert_eq!(for_method(b"GET ", Auto), Permanent308);
        assert_eq!(for_method(b"POST", RedirectCode::Moved301), Moved301);
        assert_eq!(for_method(b"HEAD", RedirectCode::Moved301), Moved301);
        assert_eq!(for_method(b"GET", RedirectCode::Permanent308), Permanent308);
        assert_eq!(for_method(b"PUT", RedirectCode::Permanent308), Permanent308);
        assert_eq!(RedirectCode::default(), Auto);
        assert_eq!(Moved301.code(), 301);
        assert_eq!(Permanent308.code(), 308);
        assert_eq!(Moved301.reason(), "Moved Permanently");
        assert_eq!(Permanent308.reason(), "Permanent Redirect");
    }

    /// Parses `Content-Length` out of a fixed response and checks it against the body.
    fn check_error(status: u16) {
        let r = error_response(status);
        let t = text(r);
        let (head, body) = t.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        assert_eq!(
            lines.next().unwrap(),
            format!("HTTP/1.1 {status} {}", reason(status))
        );
        let cl: usize = lines
            .clone()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(cl, body.len(), "status {status}");
        assert_eq!(body, error_body(status));
        assert_eq!(body, format!("{status} {}\n", reason(status)));
        assert!(
            lines
                .clone()
                .any(|l| l == "Content-Type: text/plain; charset=utf-8")
        );
        assert!(lines.any(|l| l == "Connection: close"));
    }

    #[test]
    fn error_responses() {
        for status in [400, 404, 408, 414, 421, 431, 500, 502, 503, 504, 508] {
            check_error(status);
        }
        assert_eq!(
            text(error_response(400)),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n"
        );
        assert_eq!(error_body(431), "431 Request Header Fields Too Large\n");
        assert_eq!(
            text(error_response(414)),
            "HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 17\r\nConnection: close\r\n\r\n414 URI Too Long\n"
        );
        assert_eq!(error_body(414), "414 URI Too Long\n");
        assert_eq!(reason(414), "URI Too Long");
        // unknown codes fall back to 500
        assert_eq!(error_response(418), error_response(500));
        assert_eq!(error_body(0), "500 Internal Server Error\n");
        assert_eq!(reason(301), "Moved Permanently");
        assert_eq!(reason(308), "Permanent Redirect");
        assert_eq!(reason(999), "Internal Server Error");
    }

    use crate::test_alloc::allocations;

    #[test]
    fn fast_path_does_not_allocate() {
        let prefix = RedirectPrefix::new(RedirectStatus::Moved301, "example.com", 8443);
        let reqs: [&[u8]; 6] = [
            b"GET /a%20b?x=%2F&y HTTP/1.1\r\nHost: Example.COM.:80\r\nAccept: */*\r\n\r\n",
            b"GET /caf\xC3\xA9/\\x?q=<%> HTTP/1.1\r\nHost: h\r\n\r\n",
            b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"GET http://[2001:DB8::1]:80?q HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h",
        ];
        let mut out = [0u8; 1024];
        let mut host = [0u8; MAX_HOST_LEN];
        let before = allocations();
        let mut written = 0;
        for req in reqs {
            if let HeadStatus::Complete(head) = parse_head(req, 16384)
                && let Ok(rt) = redirect_inputs(&head, Some(b"default.example"))
            {
                let n = normalize_into(&rt.authority, &mut host).unwrap_or(0);
                let status = for_method(head.method.as_bytes(), RedirectCode::Auto);
                written += n + status.code() as usize;
                written += prefix.write(rt.path_and_query, &mut out).unwrap_or(0);
            }
        }
        assert_eq!(allocations(), before, "the fast path allocated");
        assert!(written > 0);
    }

    /// The whole fast path, request bytes to response bytes, without allocation in between.
    fn respond(req: &[u8], code: RedirectCode, https_port: u16) -> String {
        let HeadStatus::Complete(head) = parse_head(req, 16384) else {
            panic!("incomplete");
        };
        let rt = redirect_inputs(&head, None).unwrap();
        let mut host = [0u8; MAX_HOST_LEN];
        let n = normalize_into(&rt.authority, &mut host).unwrap();
        let host = std::str::from_utf8(&host[..n]).unwrap();
        let status = for_method(head.method.as_bytes(), code);
        let prefix = RedirectPrefix::new(status, host, https_port);
        let mut out = [0u8; 1024];
        let len = prefix.write(rt.path_and_query, &mut out).unwrap();
        text(&out[..len])
    }

    fn location(resp: &str) -> &str {
        resp.split("\r\n")
            .find_map(|l| l.strip_prefix("Location: "))
            .unwrap()
    }

    #[test]
    fn end_to_end() {
        let r = respond(
            b"GET /p HTTP/1.1\r\nHost: Example.COM.:80\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert!(r.starts_with("HTTP/1.1 301 Moved Permanently\r\n"));
        assert_eq!(location(&r), "https://example.com/p");
        let r = respond(
            b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert!(r.starts_with("HTTP/1.1 301 "));
        let r = respond(
            b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
            RedirectCode::Auto,
            8443,
        );
        assert!(r.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"));
        assert_eq!(location(&r), "https://h:8443/f");
        let r = respond(
            b"get / HTTP/1.1\r\nHost: h\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert!(r.starts_with("HTTP/1.1 308 "));
        let r = respond(
            b"POST / HTTP/1.1\r\nHost: h\r\n\r\n",
            RedirectCode::Moved301,
            443,
        );
        assert!(r.starts_with("HTTP/1.1 301 "));
        let r = respond(
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            RedirectCode::Permanent308,
            443,
        );
        assert!(r.starts_with("HTTP/1.1 308 "));
        let r = respond(
            b"GET / HTTP/1.1\r\nHost: [2001:DB8::1]:80\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert_eq!(location(&r), "https://[2001:db8::1]/");
        let r = respond(
            b"GET http://Abs.Example HTTP/1.1\r\nHost: other\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert_eq!(location(&r), "https://abs.example/");
        let r = respond(
            b"GET http://h?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert_eq!(location(&r), "https://h/?x=1");
        let r = respond(
            b"GET /a%20b?x=%2F&y HTTP/1.1\r\nHost: h\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert_eq!(location(&r), "https://h/a%20b?x=%2F&y");
        assert!(r.ends_with("\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
    }

    /// The examples of the conformance report, request bytes to response bytes.
    #[test]
    fn end_to_end_encoding() {
        let r = respond(
            b"GET /caf\xC3\xA9 HTTP/1.1\r\nHost: shop.example.test\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert_eq!(
            r,
            "HTTP/1.1 301 Moved Permanently\r\nLocation: https://shop.example.test/caf%C3%A9\r\n\
             Connection: close\r\nContent-Length: 0\r\n\r\n"
        );
        let r = respond(
            b"GET /\\evil.example/x HTTP/1.1\r\nHost: shop.example.test\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert_eq!(
            r,
            "HTTP/1.1 301 Moved Permanently\r\nLocation: https://shop.example.test/%5Cevil.example/x\r\n\
             Connection: close\r\nContent-Length: 0\r\n\r\n"
        );
        // absolute-form, path and query
        let r = respond(
            b"GET http://Shop.Example.Test/caf\xC3\xA9?q=\xC3\xA9 HTTP/1.1\r\nHost: x\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert_eq!(location(&r), "https://shop.example.test/caf%C3%A9?q=%C3%A9");
        let r = respond(
            b"GET http://h?<x>%zz HTTP/1.1\r\nHost: h\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert_eq!(location(&r), "https://h/?%3Cx%3E%25zz");
        let r = respond(
            b"PUT /a%2Fb/{x}|%e9 HTTP/1.1\r\nHost: h\r\n\r\n",
            RedirectCode::Auto,
            8443,
        );
        assert_eq!(location(&r), "https://h:8443/a%2Fb/%7Bx%7D%7C%e9");
    }

    /// `OPTIONS *` reaches no redirect: the parser flags it, and the builder refuses it.
    #[test]
    fn options_asterisk_end_to_end() {
        for req in [
            &b"OPTIONS * HTTP/1.1\r\nHost: shop.example.test\r\n\r\n"[..],
            b"OPTIONS http://shop.example.test HTTP/1.1\r\nHost: shop.example.test\r\n\r\n",
            b"OPTIONS * HTTP/1.0\r\n\r\n",
        ] {
            let HeadStatus::Complete(head) = parse_head(req, 16384) else {
                panic!("incomplete");
            };
            let rt = redirect_inputs(&head, Some(b"shop.example.test")).unwrap();
            assert!(rt.is_asterisk, "{req:?}");
            assert_eq!(rt.path_and_query, b"*");
            let status = for_method(head.method.as_bytes(), RedirectCode::Auto);
            let prefix = RedirectPrefix::new(status, "shop.example.test", 443);
            assert_eq!(prefix.write(rt.path_and_query, &mut [0u8; 512]), None);
        }
        // with a path it is an ordinary request for a resource
        let r = respond(
            b"OPTIONS http://shop.example.test/ HTTP/1.1\r\nHost: shop.example.test\r\n\r\n",
            RedirectCode::Auto,
            443,
        );
        assert_eq!(
            r,
            "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://shop.example.test/\r\n\
             Connection: close\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
