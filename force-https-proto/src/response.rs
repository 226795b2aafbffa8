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
//! Error responses are static byte strings ([`error_response`]); [`error_body`] and
//! [`reason`] give the same texts to the hyper-based paths.

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

/// Whether a path byte may be copied into a `Location` header: no controls, space or DEL
/// (which would split or corrupt the response).
fn is_location_byte(b: u8) -> bool {
    b > 0x20 && b != 0x7f
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

    /// Length of the full response for this `path_and_query` (a `/` is inserted before an
    /// empty or query-only path).
    pub fn response_len(&self, path_and_query: &[u8]) -> usize {
        self.bytes
            .len()
            .saturating_add(origin_form_prefix(path_and_query).len())
            .saturating_add(path_and_query.len())
            .saturating_add(REDIRECT_SUFFIX.len())
    }

    /// Writes the full redirect for `path_and_query` (copied byte for byte, `/` inserted
    /// before an empty or query-only one) into `out` and returns its length. `None` when
    /// `out` is shorter than [`RedirectPrefix::response_len`], or when the path holds a
    /// control byte, space or DEL (never emitted into a header). No allocation.
    pub fn write(&self, path_and_query: &[u8], out: &mut [u8]) -> Option<usize> {
        if !path_and_query.iter().all(|&b| is_location_byte(b)) {
            return None;
        }
        let mut pos = 0;
        put(out, &mut pos, &self.bytes)?;
        put(out, &mut pos, origin_form_prefix(path_and_query))?;
        put(out, &mut pos, path_and_query)?;
        put(out, &mut pos, REDIRECT_SUFFIX)?;
        Some(pos)
    }
}

/// Allocating convenience: the full redirect response, built through [`RedirectPrefix`].
/// `None` when the path holds a control byte, space or DEL.
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
        431,
        "Request Header Fields Too Large",
        "431 Request Header Fields Too Large\n",
        error_response!("431", "Request Header Fields Too Large", "36"),
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

/// The complete fixed response for an error status: 400, 404, 408, 431, 500, 502, 503, 504.
/// Any other code gives the 500 response.
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
/// 301 and 308); `"Internal Server Error"` for any other code.
pub fn reason(status: u16) -> &'static str {
    match status {
        301 => RedirectStatus::Moved301.reason(),
        308 => RedirectStatus::Permanent308.reason(),
        _ => error_entry(status).1,
    }
}

/// The answer to `OPTIONS *` (RFC 9110 §9.3.7). (Temporary: replaced by the proto work.)
pub fn options_asterisk() -> &'static [u8] {
    b"HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
}

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
        let raw = "/caf\u{e9}".as_bytes();
        let r = redirect(RedirectStatus::Moved301, "h", 443, raw).unwrap();
        assert!(r.windows(raw.len()).any(|w| w == raw));
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
        for status in [400, 404, 408, 431, 500, 502, 503, 504] {
            check_error(status);
        }
        assert_eq!(
            text(error_response(400)),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n"
        );
        assert_eq!(error_body(431), "431 Request Header Fields Too Large\n");
        // unknown codes fall back to 500
        assert_eq!(error_response(418), error_response(500));
        assert_eq!(error_body(0), "500 Internal Server Error\n");
        assert_eq!(reason(301), "Moved Permanently");
        assert_eq!(reason(308), "Permanent Redirect");
        assert_eq!(reason(999), "Internal Server Error");
    }

    /// Counts allocations made by the current thread, to prove the fast path allocation-free.
    struct CountingAlloc;

    thread_local! {
        static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    // SAFETY: forwards to the system allocator unchanged; only counts.
    unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { std::alloc::System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: same contract as ours.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: CountingAlloc = CountingAlloc;

    fn allocations() -> usize {
        ALLOCATIONS.with(|c| c.get())
    }

    #[test]
    fn fast_path_does_not_allocate() {
        let prefix = RedirectPrefix::new(RedirectStatus::Moved301, "example.com", 8443);
        let reqs: [&[u8]; 4] = [
            b"GET /a%20b?x=%2F&y HTTP/1.1\r\nHost: Example.COM.:80\r\nAccept: */*\r\n\r\n",
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
}
