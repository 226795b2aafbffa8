//! The HTTP/1.x request-head parser and what force-https needs from a head.
//!
//! [`parse_head`] runs `httparse` over a buffer that may hold a partial head and extracts, in
//! one pass and without allocation, the method, the request-target, the version, the `Host`
//! field(s), whether a body follows and whether the client wants the connection closed.
//! [`classify_target`] sorts the request-target into its four forms (RFC 9112 §3.2) and
//! [`redirect_inputs`] applies the port-80 rules of `docs/design.md` to get the authority and
//! the path of the redirect. [`path_only`] and [`path_has_prefix`] serve exempt-path matching.
//!
//! Every function here is total: malformed network bytes give a [`HeadError`], never a panic.

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

use crate::host::{Authority, HostError, parse_authority};

/// Most header lines a head may carry; more is answered like an oversized head (431).
pub const MAX_HEADERS: usize = 96;

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadError {
    /// Not a parsable HTTP/1.0 or HTTP/1.1 head; the reason comes from the parser.
    Malformed(&'static str),
    /// The head is larger than the configured limit, with a complete request line within the
    /// limit, or it has too many header lines: 431 (RFC 6585 §5).
    TooLarge,
    /// The head is larger than the configured limit and its request line does not end within
    /// the limit: the request-target is longer than force-https parses, 414 (RFC 9112 §3: "A
    /// server that receives a request-target longer than any URI it wishes to parse MUST
    /// respond with a 414 (URI Too Long) status code").
    UriTooLong,
    /// The request-target is not acceptable: control bytes, a fragment, an unknown scheme,
    /// or a form the method does not allow.
    BadTarget,
    /// No `Host` header where one is required.
    MissingHost,
    /// More than one `Host` header line (even with equal values).
    MultipleHost,
    /// A `Host` (or absolute-form authority, or default host) that is not a valid host.
    BadHost(HostError),
    /// A `Content-Length` that is not a decimal number, or several that disagree.
    BadContentLength,
    /// A `Transfer-Encoding` the body length cannot be determined from (RFC 9112 §6.3 item 4:
    /// the server "MUST respond with the 400 (Bad Request) status code"): its final coding is
    /// not `chunked`, `chunked` appears more than once (RFC 9112 §7.1) or with parameters,
    /// a coding is not a token, the field is empty; or it comes with `Content-Length` (RFC
    /// 9112 §6.1, §6.3 item 3: a possible request smuggling attempt) or in an HTTP/1.0
    /// request (RFC 9112 §6.1: the framing is faulty).
    BadTransferEncoding,
}

impl HeadError {
    /// The status code to answer with: 431 for [`HeadError::TooLarge`] (RFC 6585 §5), 414 for
    /// [`HeadError::UriTooLong`] (RFC 9112 §3), 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::UriTooLong => 414,
            _ => 400,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Malformed(why) => write!(f, "malformed request head: {why}"),
            HeadError::TooLarge => f.write_str("request head too large"),
            HeadError::UriTooLong => f.write_str("request-target too long"),
            HeadError::BadTarget => f.write_str("invalid request-target"),
            HeadError::MissingHost => f.write_str("missing Host header"),
            HeadError::MultipleHost => f.write_str("more than one Host header"),
            HeadError::BadHost(e) => write!(f, "invalid host: {e}"),
            HeadError::BadContentLength => f.write_str("invalid Content-Length"),
            HeadError::BadTransferEncoding => f.write_str("invalid Transfer-Encoding"),
        }
    }
}

impl std::error::Error for HeadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HeadError::BadHost(e) => Some(e),
            _ => None,
        }
    }
}

/// The `Host` header field(s) of a head, unvalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostField<'b> {
    /// No `Host` header.
    None,
    /// Exactly one `Host` header, with this value (surrounding whitespace trimmed by the
    /// parser).
    One(&'b [u8]),
    /// Several `Host` header lines.
    Many,
}

/// A complete request head, borrowing from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'b> {
    /// The method token, as received (case preserved).
    pub method: &'b str,
    /// The request-target, as received.
    pub target: &'b [u8],
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Length of the head in bytes, final empty line included; a body starts here.
    pub head_len: usize,
    /// The `Host` header field(s).
    pub host: HostField<'b>,
    /// A body follows: `Content-Length` above 0, or a (valid, chunked) `Transfer-Encoding`.
    pub has_body: bool,
    /// The connection must not be reused after this request: `Connection: close`, or
    /// HTTP/1.0 without `Connection: keep-alive`.
    pub connection_close: bool,
}

/// What [`parse_head`] found in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStatus<'b> {
    /// The head is not complete yet (and still within the limit): read more.
    Partial,
    /// A complete, syntactically valid head.
    Complete(Head<'b>),
    /// The head is refused; answer with [`HeadError::status`] and close.
    Error(HeadError),
}

/// Short reason for each `httparse` error.
fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid or unsupported HTTP version",
    }
}

/// Whether a request-target byte is forbidden outright: controls, space, DEL.
fn is_forbidden_target_byte(b: u8) -> bool {
    b <= 0x20 || b == 0x7f
}

/// Trims optional whitespace (SP / HTAB) on both sides.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let Some((&(b' ' | b'\t'), rest)) = s.split_first() {
        s = rest;
    }
    while let Some((&(b' ' | b'\t'), rest)) = s.split_last() {
        s = rest;
    }
    s
}

/// Parses one `Content-Length` field value: a decimal number, or a list of equal ones
/// (`42, 42`, RFC 9110 §8.6). `None`: not such a value, or over `u64`.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut result: Option<u64> = None;
    for item in value.split(|&b| b == b',') {
        let item = trim_ows(item);
        if item.is_empty() {
            return None;
        }
        let mut n: u64 = 0;
        for &b in item {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        match result {
            Some(prev) if prev != n => return None,
            _ => result = Some(n),
        }
    }
    result
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| trim_ows(item).eq_ignore_ascii_case(token))
}

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is a `token` (RFC 9110 §5.6.2): one or more `tchar`.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// The `Transfer-Encoding` codings of a head, across all its field lines in order (RFC 9110
/// §5.3: several lines are one comma-separated list).
#[derive(Debug, Clone, Copy, Default)]
pub struct TransferCodings {
    /// At least one `Transfer-Encoding` line was seen.
    present: bool,
    /// How many codings are `chunked`.
    chunked: u32,
    /// The last coding seen is `chunked`.
    last_chunked: bool,
    /// A coding is not `token *( OWS ";" OWS token "=" token )`, or `chunked` has parameters.
    invalid: bool,
}

impl TransferCodings {
    /// Adds the codings of one field line. Empty list elements are ignored (RFC 9110
    /// §5.6.1.2); a coding that is not a token with `token=token` parameters (quoted strings
    /// included: no transfer coding force-https knows takes one) marks the field invalid.
    pub fn add_line(&mut self, value: &[u8]) {
        self.present = true;
        for item in value.split(|&b| b == b',') {
            let item = trim_ows(item);
            if item.is_empty() {
                continue;
            }
            let mut parts = item.split(|&b| b == b';');
            let name = trim_ows(parts.next().unwrap_or_default());
            let mut has_params = false;
            for param in parts {
                has_params = true;
                let ok = match param.iter().position(|&b| b == b'=') {
                    Some(eq) => {
                        let (k, v) = param.split_at_checked(eq).unwrap_or_default();
                        is_token(trim_ows(k)) && is_token(trim_ows(v.get(1..).unwrap_or_default()))
                    }
                    None => false,
                };
                self.invalid |= !ok;
            }
            let chunked = name.eq_ignore_ascii_case(b"chunked");
            self.invalid |= !is_token(name) || (chunked && has_params);
            self.chunked = self.chunked.saturating_add(u32::from(chunked));
            self.last_chunked = chunked;
        }
    }

    /// Whether a `Transfer-Encoding` line was seen.
    pub fn present(&self) -> bool {
        self.present
    }

    /// Whether the last coding seen is `chunked` (a response's body is then chunked, else
    /// read until the connection closes: RFC 9112 §6.3 item 4).
    pub fn last_chunked(&self) -> bool {
        self.last_chunked
    }

    /// Whether the request framing is acceptable (RFC 9112 §6.1, §6.3 item 4): no
    /// `Transfer-Encoding` at all, or exactly one `chunked`, as the final coding, every coding
    /// valid, in an HTTP/1.1 request without `Content-Length`.
    fn acceptable(&self, version: u8, has_content_length: bool) -> bool {
        !self.present
            || (!self.invalid
                && self.chunked == 1
                && self.last_chunked
                && version >= 1
                && !has_content_length)
    }
}

/// Whether the request line (after the empty lines a server ignores before it, RFC 9112
/// §2.2) ends within `window`.
fn request_line_ends_in(window: &[u8]) -> bool {
    let mut rest = window;
    while let [b'\r', b'\n', tail @ ..] | [b'\n', tail @ ..] = rest {
        rest = tail;
    }
    rest.contains(&b'\n')
}

/// The error for a head that does not fit in `max_head` bytes: [`HeadError::UriTooLong`]
/// when the request line does not end within them (RFC 9112 §3), else
/// [`HeadError::TooLarge`].
fn too_large(window: &[u8]) -> HeadError {
    if request_line_ends_in(window) {
        HeadError::TooLarge
    } else {
        HeadError::UriTooLong
    }
}

/// Parses the request head at the start of `buf`, which may hold only part of it (or the
/// head followed by body bytes).
///
/// Only the first `max_head` bytes are looked at, so the outcome does not depend on how the
/// bytes arrived. No complete head within `max_head` bytes (with `buf.len() >= max_head`)
/// gives [`HeadError::UriTooLong`] (414, RFC 9112 §3) when the request line does not end
/// within them, else [`HeadError::TooLarge`] (431); more than [`MAX_HEADERS`] header lines
/// give [`HeadError::TooLarge`]. Control bytes in the request-target, and the asterisk-form
/// `*` with a method other than `OPTIONS` (RFC 9112 §3.2.4), give [`HeadError::BadTarget`];
/// a `Transfer-Encoding` whose final coding is not `chunked` and the other cases of
/// [`HeadError::BadTransferEncoding`] give that (400, RFC 9112 §6.3 item 4); anything
/// `httparse` rejects (including versions other than HTTP/1.0 and HTTP/1.1, and obs-fold)
/// gives [`HeadError::Malformed`]. No allocation.
pub fn parse_head(buf: &[u8], max_head: usize) -> HeadStatus<'_> {
    let window = buf.get(..max_head).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_head {
                HeadStatus::Error(too_large(window))
            } else {
                HeadStatus::Partial
            };
        }
        Err(httparse::Error::TooManyHeaders) => return HeadStatus::Error(HeadError::TooLarge),
        Err(e) => return HeadStatus::Error(HeadError::Malformed(httparse_reason(e))),
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return HeadStatus::Error(HeadError::Malformed("incomplete request line"));
    };
    let target = path.as_bytes();
    if target.is_empty() || target.iter().any(|&b| is_forbidden_target_byte(b)) {
        return HeadStatus::Error(HeadError::BadTarget);
    }
    if target == b"*" && method != "OPTIONS" {
        return HeadStatus::Error(HeadError::BadTarget);
    }

    let mut host = HostField::None;
    let mut content_length: Option<u64> = None;
    let mut codings = TransferCodings::default();
    let mut close = false;
    let mut keep_alive = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            host = match host {
                HostField::None => HostField::One(h.value),
                _ => HostField::Many,
            };
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = parse_content_length(h.value) else {
                return HeadStatus::Error(HeadError::BadContentLength);
            };
            match content_length {
                Some(prev) if prev != n => {
                    return HeadStatus::Error(HeadError::BadContentLength);
                }
                _ => content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            codings.add_line(h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= has_token(h.value, b"close");
            keep_alive |= has_token(h.value, b"keep-alive");
        }
    }
    if !codings.acceptable(version, content_length.is_some()) {
        return HeadStatus::Error(HeadError::BadTransferEncoding);
    }
    let connection_close = close || (version == 0 && !keep_alive);
    HeadStatus::Complete(Head {
        method,
        target,
        version,
        head_len,
        host,
        has_body: codings.present || content_length.is_some_and(|n| n > 0),
        connection_close,
    })
}

/// The four forms of a request-target (RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target<'b> {
    /// `/path?query`.
    Origin {
        /// The whole target, starting with `/`.
        path_and_query: &'b [u8],
    },
    /// `http://authority/path?query` (or `https://`, scheme case-insensitive).
    Absolute {
        /// The authority as received (may be empty or invalid; validate with
        /// [`parse_authority`]).
        authority: &'b [u8],
        /// Path and query: `/` when the target has neither; starts with `/`, except for a
        /// query-only target (`http://h?q` gives `?q`, which stands for `/?q`: see
        /// [`origin_form_prefix`]).
        path_and_query: &'b [u8],
        /// The scheme was `https`.
        scheme_https: bool,
    },
    /// `*` (only for `OPTIONS`: RFC 9112 §3.2.4; about the server as a whole, RFC 9110
    /// §9.3.7, so never redirected).
    Asterisk,
    /// `host:port` (only for `CONNECT`).
    Authority(&'b [u8]),
}

/// Sorts a request-target into its form.
///
/// Rejected with [`HeadError::BadTarget`]: an empty target, control bytes / space / DEL
/// anywhere, a `#` (fragments are never part of a request-target), a scheme other than
/// `http` / `https`, anything else that is neither origin-, absolute-, asterisk- nor
/// authority-form. Non-ASCII bytes are passed through as received. No allocation.
pub fn classify_target(t: &[u8]) -> Result<Target<'_>, HeadError> {
    if t.is_empty() || t.iter().any(|&b| is_forbidden_target_byte(b) || b == b'#') {
        return Err(HeadError::BadTarget);
    }
    if t.first() == Some(&b'/') {
        return Ok(Target::Origin { path_and_query: t });
    }
    if t == b"*" {
        return Ok(Target::Asterisk);
    }
    let scheme = if starts_with_ignore_case(t, b"http://") {
        Some((7, false))
    } else if starts_with_ignore_case(t, b"https://") {
        Some((8, true))
    } else {
        None
    };
    if let Some((skip, scheme_https)) = scheme {
        let rest = t.get(skip..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at_checked(end).unwrap_or((rest, &[]));
        let path_and_query: &[u8] = if path_and_query.is_empty() {
            b"/"
        } else {
            path_and_query
        };
        return Ok(Target::Absolute {
            authority,
            path_and_query,
            scheme_https,
        });
    }
    if t.iter().any(|&b| b == b'/' || b == b'?') {
        return Err(HeadError::BadTarget);
    }
    Ok(Target::Authority(t))
}

/// ASCII case-insensitive `starts_with`.
fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// What a redirect (or a policy lookup) needs from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestTarget<'b> {
    /// The authority the request is for (validated; normalize with
    /// [`crate::host::normalize_into`]).
    pub authority: Authority<'b>,
    /// Path and query byte for byte, as received (the redirect builder percent-encodes what
    /// a `Location` may not hold); starts with `/` except for a query-only absolute-form
    /// target (`?q`, standing for `/?q`, see [`origin_form_prefix`]). `*` for an
    /// asterisk-form request (see `is_asterisk`), which no redirect is built for
    /// ([`crate::response::RedirectPrefix::write`] refuses it).
    pub path_and_query: &'b [u8],
    /// The request is for the server as a whole, not a resource (RFC 9110 §9.3.7): `OPTIONS *`,
    /// or `OPTIONS http://host` with an empty path and no query, which stands for it (RFC 9112
    /// §3.2.4). Never redirect it: answer it locally with
    /// [`crate::response::options_asterisk`] (or proxy it). `path_and_query` is then `*`.
    pub is_asterisk: bool,
}

/// Applies the port-80 rules to a parsed head: which authority the request is for, and
/// which path and query.
///
/// - Any request with several `Host` lines: [`HeadError::MultipleHost`]; with an invalid
///   `Host`: [`HeadError::BadHost`] (RFC 9112 §3.2).
/// - HTTP/1.1 without `Host`: [`HeadError::MissingHost`], absolute-form included.
/// - Absolute-form: the target's authority wins over `Host` (RFC 9112 §3.2.2); an empty path
///   becomes `/`.
/// - HTTP/1.0 without `Host` (and not absolute-form): `default_host` (validated like a `Host`
///   value), else [`HeadError::MissingHost`].
/// - Asterisk-form with a method other than `OPTIONS` (RFC 9112 §3.2.4), and authority-form
///   (`CONNECT`; this is not a forward proxy): [`HeadError::BadTarget`].
/// - `OPTIONS *`, and `OPTIONS` with an absolute-form target with an empty path and no query
///   (RFC 9112 §3.2.4): [`RequestTarget::is_asterisk`], `path_and_query` `*`.
///
/// No allocation.
pub fn redirect_inputs<'b>(
    head: &Head<'b>,
    default_host: Option<&'b [u8]>,
) -> Result<RequestTarget<'b>, HeadError> {
    let target = classify_target(head.target)?;
    let host_header = match head.host {
        HostField::Many => return Err(HeadError::MultipleHost),
        HostField::One(value) => Some(parse_authority(value).map_err(HeadError::BadHost)?),
        HostField::None => None,
    };
    let (path_and_query, is_asterisk): (&'b [u8], bool) = match target {
        Target::Authority(_) => return Err(HeadError::BadTarget),
        Target::Asterisk if head.method != "OPTIONS" => return Err(HeadError::BadTarget),
        Target::Asterisk => (b"*", true),
        Target::Origin { path_and_query } => (path_and_query, false),
        Target::Absolute {
            authority,
            path_and_query,
            ..
        } => {
            if head.version >= 1 && host_header.is_none() {
                return Err(HeadError::MissingHost);
            }
            let authority = parse_authority(authority).map_err(HeadError::BadHost)?;
            // RFC 9112 §3.2.4: `OPTIONS http://h` (empty path, no query) is `OPTIONS *` sent
            // through a proxy.
            let is_asterisk = head.method == "OPTIONS" && absolute_form_is_bare(head.target);
            return Ok(RequestTarget {
                authority,
                path_and_query: if is_asterisk { b"*" } else { path_and_query },
                is_asterisk,
            });
        }
    };
    let authority = match host_header {
        Some(a) => a,
        None if head.version == 0 => match default_host {
            Some(d) => parse_authority(d).map_err(HeadError::BadHost)?,
            None => return Err(HeadError::MissingHost),
        },
        None => return Err(HeadError::MissingHost),
    };
    Ok(RequestTarget {
        authority,
        path_and_query,
        is_asterisk,
    })
}

/// Whether an absolute-form target has neither a path nor a query (`http://h`, not
/// `http://h/` nor `http://h?q`).
fn absolute_form_is_bare(target: &[u8]) -> bool {
    let rest = match target.windows(3).position(|w| w == b"://") {
        Some(i) => target.get(i.saturating_add(3)..).unwrap_or_default(),
        None => return false,
    };
    !rest.iter().any(|&b| b == b'/' || b == b'?')
}

/// What has to be written before `path_and_query` to make it an origin-form path: `/` when
/// it does not start with `/` (empty or query-only), nothing otherwise.
pub fn origin_form_prefix(path_and_query: &[u8]) -> &'static [u8] {
    if path_and_query.first() == Some(&b'/') {
        b""
    } else {
        b"/"
    }
}

/// The path part of `path_and_query` (up to the first `?`); `/` when that is empty.
pub fn path_only(path_and_query: &[u8]) -> &[u8] {
    let path = match path_and_query.iter().position(|&b| b == b'?') {
        Some(q) => path_and_query.get(..q).unwrap_or_default(),
        None => path_and_query,
    };
    if path.is_empty() { b"/" } else { path }
}

/// Whether the path part of `path_and_query` starts with `prefix`, byte-wise and
/// case-sensitively, with no percent-decoding (for exempt paths).
///
/// Hardening: a path containing `..` or `%2e` (any case) never matches, so that a dot
/// segment cannot carry an exempt prefix to another resource on the backend
/// (`/.well-known/acme-challenge/../../admin`); such requests are redirected instead.
pub fn path_has_prefix(path_and_query: &[u8], prefix: &[u8]) -> bool {
    let path = path_only(path_and_query);
    if !path.starts_with(prefix) {
        return false;
    }
    let dot_segment = path.windows(2).any(|w| w == b"..")
        || path.windows(3).any(|w| w.eq_ignore_ascii_case(b"%2e"));
    !dot_segment
}

/// Longest path [`path_may_have_prefix`] normalizes; a longer one counts as matching.
pub const MAX_NORMALIZED_PATH: usize = 4096;

/// Whether the path part of `path_and_query` starts with `prefix` under any reading a backend
/// may give it (for forced prefixes, `force_paths`, where erring means an extra redirect to
/// HTTPS, never a resource served over HTTP): the raw path, or the path with every `%XX`
/// decoded, `\` read as `/`, and dot segments removed (RFC 3986 §5.2.4). So `/%61dmin/`,
/// `/public/../admin/` and `/public/%2e%2e/admin/` all fall under `/admin/`. Matching stays
/// case-sensitive. A path over [`MAX_NORMALIZED_PATH`] bytes counts as matching. No
/// allocation.
pub fn path_may_have_prefix(path_and_query: &[u8], prefix: &[u8]) -> bool {
    let path = path_only(path_and_query);
    if path.starts_with(prefix) {
        return true;
    }
    let mut decoded = [0u8; MAX_NORMALIZED_PATH];
    let mut n = 0;
    let mut i = 0;
    while let Some(&b) = path.get(i) {
        let (byte, used) = match (b, path.get(i + 1), path.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                (hex_value(h) * 16 + hex_value(l), 3)
            }
            (b'\\', _, _) => (b'/', 1),
            (b, _, _) => (b, 1),
        };
        let Some(slot) = decoded.get_mut(n) else {
            return true;
        };
        *slot = byte;
        n += 1;
        i += used;
    }
    let mut out = [0u8; MAX_NORMALIZED_PATH];
    let len = remove_dot_segments(decoded.get(..n).unwrap_or_default(), &mut out);
    out.get(..len).is_some_and(|p| p.starts_with(prefix))
}

fn hex_value(h: u8) -> u8 {
    match h {
        b'0'..=b'9' => h - b'0',
        b'a'..=b'f' => h - b'a' + 10,
        b'A'..=b'F' => h - b'A' + 10,
        _ => 0,
    }
}

/// RFC 3986 §5.2.4 on an absolute path, into `out` (at least as long as `path`); returns the
/// length written. Segments are read between `/`; `.` is dropped, `..` drops the segment
/// before it (never above the root).
fn remove_dot_segments(path: &[u8], out: &mut [u8]) -> usize {
    let mut len = 0;
    let mut segments = path.split(|&b| b == b'/').peekable();
    // A path starts with `/`: the first piece is empty.
    if path.first() == Some(&b'/') {
        segments.next();
    }
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            b"." | b".." => {
                if seg == b".." {
                    // Back to the `/` before the last segment.
                    let cut = out
                        .get(..len)
                        .and_then(|o| o.iter().rposition(|&b| b == b'/'))
                        .unwrap_or(0);
                    len = cut;
                }
                if last {
                    // `/a/..` ends on a directory: `/`.
                    if let Some(slot) = out.get_mut(len) {
                        *slot = b'/';
                        len += 1;
                    }
                }
            }
            _ => {
                let end = len + 1 + seg.len();
                if let Some(dst) = out.get_mut(len..end) {
                    if let Some((slash, rest)) = dst.split_first_mut() {
                        *slash = b'/';
                        rest.copy_from_slice(seg);
                    }
                    len = end;
                }
            }
        }
    }
    if len == 0
        && let Some(slot) = out.get_mut(0)
    {
        *slot = b'/';
        len = 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::normalize;

    #[test]
    fn forced_prefixes_under_every_reading() {
        let m = |p: &str| path_may_have_prefix(p.as_bytes(), b"/admin/");
        for yes in [
            "/admin/",
            "/admin/x?y",
            "/%61dmin/",
            "/%61%64min/users",
            "/public/../admin/",
            "/public/%2e%2e/admin/",
            "/public/%2E%2E/admin/x",
            "/./admin/",
            "/a/b/../../admin/",
            "/../admin/",
            "/admin%2f",
            "\\admin\\",
            "/public\\..\\admin/",
        ] {
            assert!(m(yes), "{yes}");
        }
        for no in [
            "/",
            "/Admin/",
            "/administrator",
            "/public/admin/",
            "/admin",
            "/x?/admin/",
            "/admin%2",
        ] {
            assert!(!m(no), "{no}");
        }
        // Too long to normalize: forced.
        let long = format!("/{}", "a".repeat(MAX_NORMALIZED_PATH + 10));
        assert!(m(&long));
        let mut out = [0u8; 64];
        let n = remove_dot_segments(b"/a/b/./c/../d/..", &mut out);
        assert_eq!(&out[..n], b"/a/b/");
        let n = remove_dot_segments(b"/..", &mut out);
        assert_eq!(&out[..n], b"/");
    }

    const MAX: usize = 16 * 1024;

    fn complete(buf: &[u8]) -> Head<'_> {
        match parse_head(buf, MAX) {
            HeadStatus::Complete(h) => h,
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    fn error(buf: &[u8]) -> HeadError {
        match parse_head(buf, MAX) {
            HeadStatus::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Outcome of the whole port-80 pipeline: (normalized host, path) or the error.
    fn inputs(
        buf: &[u8],
        default_host: Option<&'static [u8]>,
    ) -> Result<(String, String), HeadError> {
        let head = match parse_head(buf, MAX) {
            HeadStatus::Complete(h) => h,
            HeadStatus::Error(e) => return Err(e),
            HeadStatus::Partial => panic!("partial"),
        };
        let rt = redirect_inputs(&head, default_host)?;
        Ok((
            normalize(&rt.authority),
            String::from_utf8_lossy(rt.path_and_query).into_owned(),
        ))
    }

    /// `has_body` of a complete head, or its error.
    trait Outcome {
        fn body_or_error(&self) -> Result<bool, HeadError>;
    }

    impl Outcome for HeadStatus<'_> {
        fn body_or_error(&self) -> Result<bool, HeadError> {
            match self {
                HeadStatus::Complete(h) => Ok(h.has_body),
                HeadStatus::Error(e) => Err(*e),
                HeadStatus::Partial => panic!("partial"),
            }
        }
    }

    fn ok(host: &str, path: &str) -> Result<(String, String), HeadError> {
        Ok((host.into(), path.into()))
    }

    #[test]
    fn simple_get() {
        let buf = b"GET /a?b HTTP/1.1\r\nHost: Example.COM.:80\r\n\r\nbody";
        let h = complete(buf);
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, b"/a?b");
        assert_eq!(h.version, 1);
        assert_eq!(h.head_len, buf.len() - 4);
        assert_eq!(h.host, HostField::One(b"Example.COM.:80"));
        assert!(!h.has_body);
        assert!(!h.connection_close);
        assert_eq!(inputs(buf, None), ok("example.com", "/a?b"));
    }

    #[test]
    fn percent_encoding_and_query_byte_for_byte() {
        let buf = b"GET /a%20b?x=%2F&y HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(inputs(buf, None), ok("h", "/a%20b?x=%2F&y"));
        let buf = b"GET //x/../%2e%2E/?q=a?b HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(inputs(buf, None), ok("h", "//x/../%2e%2E/?q=a?b"));
    }

    #[test]
    fn absolute_form_authority_wins() {
        let buf = b"GET http://Target.Example:8080/p?q HTTP/1.1\r\nHost: other.example\r\n\r\n";
        assert_eq!(inputs(buf, None), ok("target.example", "/p?q"));
        let buf = b"GET HTTPS://t.example/p HTTP/1.1\r\nHost: other\r\n\r\n";
        assert_eq!(inputs(buf, None), ok("t.example", "/p"));
        let buf = b"GET http://[2001:DB8::1]:80/ HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(inputs(buf, None), ok("[2001:db8::1]", "/"));
    }

    #[test]
    fn absolute_form_empty_path() {
        let buf = b"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(inputs(buf, None), ok("h", "/"));
        let buf = b"GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(inputs(buf, None), ok("h", "?q=1"));
    }

    #[test]
    fn absolute_form_host_rules() {
        // HTTP/1.1 still needs a Host header, and a valid, single one
        let buf = b"GET http://h/ HTTP/1.1\r\n\r\n";
        assert_eq!(inputs(buf, None), Err(HeadError::MissingHost));
        let buf = b"GET http://h/ HTTP/1.1\r\nHost: a b\r\n\r\n";
        assert_eq!(
            inputs(buf, None),
            Err(HeadError::BadHost(HostError::InvalidChar(b' ')))
        );
        let buf = b"GET http://h/ HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n";
        assert_eq!(inputs(buf, None), Err(HeadError::MultipleHost));
        // HTTP/1.0 takes the target's authority without a Host header
        let buf = b"GET http://h/x HTTP/1.0\r\n\r\n";
        assert_eq!(inputs(buf, None), ok("h", "/x"));
        // invalid authorities in the target
        let buf = b"GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(
            inputs(buf, None),
            Err(HeadError::BadHost(HostError::Userinfo))
        );
        let buf = b"GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(inputs(buf, None), Err(HeadError::BadHost(HostError::Empty)));
    }

    #[test]
    fn http10_default_host() {
        let buf = b"GET /x HTTP/1.0\r\n\r\n";
        assert_eq!(inputs(buf, None), Err(HeadError::MissingHost));
        assert_eq!(
            inputs(buf, Some(b"Default.Example")),
            ok("default.example", "/x")
        );
        assert_eq!(
            inputs(buf, Some(b"bad host")),
            Err(HeadError::BadHost(HostError::InvalidChar(b' ')))
        );
        // a Host header wins over the default
        let buf = b"GET /x HTTP/1.0\r\nHost: h\r\n\r\n";
        assert_eq!(inputs(buf, Some(b"d")), ok("h", "/x"));
        // the default is only for HTTP/1.0
        let buf = b"GET /x HTTP/1.1\r\n\r\n";
        assert_eq!(inputs(buf, Some(b"d")), Err(HeadError::MissingHost));
        // HTTP/1.0 with a duplicate or invalid Host is still refused
        let buf = b"GET /x HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n";
        assert_eq!(inputs(buf, Some(b"d")), Err(HeadError::MultipleHost));
        let buf = b"GET /x HTTP/1.0\r\nHost: a/b\r\n\r\n";
        assert_eq!(
            inputs(buf, Some(b"d")),
            Err(HeadError::BadHost(HostError::InvalidChar(b'/')))
        );
    }

    #[test]
    fn http11_host_rules() {
        let r = |host: &[u8]| {
            let mut buf = b"GET / HTTP/1.1\r\nHost: ".to_vec();
            buf.extend_from_slice(host);
            buf.extend_from_slice(b"\r\n\r\n");
            inputs(&buf, None)
        };
        let bad = |e| Err(HeadError::BadHost(e));
        assert_eq!(r(b"a b"), bad(HostError::InvalidChar(b' ')));
        assert_eq!(r(b"a/b"), bad(HostError::InvalidChar(b'/')));
        assert_eq!(r(b"user@h"), bad(HostError::Userinfo));
        assert_eq!(r(b"[::1"), bad(HostError::InvalidIpv6));
        assert_eq!(r(b"h:99999"), bad(HostError::PortOutOfRange));
        assert_eq!(r(b"h:x"), bad(HostError::InvalidPort));
        assert_eq!(
            r("b\u{fc}cher.de".as_bytes()),
            bad(HostError::InvalidChar(0xc3))
        );
        assert_eq!(r(b""), bad(HostError::Empty));
        assert_eq!(r(b"h:80"), ok("h", "/"));
        assert_eq!(r(b"[2001:db8::1]:80"), ok("[2001:db8::1]", "/"));
        // case-insensitive header name, duplicates even when equal
        let buf = b"GET / HTTP/1.1\r\nhOsT: h\r\n\r\n";
        assert_eq!(inputs(buf, None), ok("h", "/"));
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nHOST: h\r\n\r\n";
        assert_eq!(complete(buf).host, HostField::Many);
        assert_eq!(inputs(buf, None), Err(HeadError::MultipleHost));
        let buf = b"GET / HTTP/1.1\r\nX-Host: h\r\n\r\n";
        assert_eq!(inputs(buf, None), Err(HeadError::MissingHost));
    }

    #[test]
    fn asterisk_and_authority_forms() {
        let buf = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = complete(buf);
        let rt = redirect_inputs(&head, None).unwrap();
        assert!(rt.is_asterisk);
        assert_eq!(rt.path_and_query, b"*");
        assert_eq!(normalize(&rt.authority), "h");
        // `*` is for OPTIONS only (RFC 9112 §3.2.4), already refused by parse_head
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "TRACE", "options", "PRI",
        ] {
            let buf = format!("{m} * HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(error(buf.as_bytes()), HeadError::BadTarget, "{m}");
            assert_eq!(HeadError::BadTarget.status(), 400);
        }
        // the absolute-form of OPTIONS * (RFC 9112 §3.2.4): empty path, no query
        for target in ["http://Shop.Example.Test", "HTTPS://shop.example.test:80"] {
            let buf = format!("OPTIONS {target} HTTP/1.1\r\nHost: other\r\n\r\n");
            let head = complete(buf.as_bytes());
            let rt = redirect_inputs(&head, None).unwrap();
            assert!(rt.is_asterisk, "{target}");
            assert_eq!(rt.path_and_query, b"*");
            assert_eq!(normalize(&rt.authority), "shop.example.test");
        }
        // ... but not with a path or a query, nor for another method
        for (req, path) in [
            ("OPTIONS http://h/ HTTP/1.1", "/"),
            ("OPTIONS http://h?q HTTP/1.1", "?q"),
            ("OPTIONS http://h/* HTTP/1.1", "/*"),
            ("GET http://h HTTP/1.1", "/"),
            ("OPTIONS / HTTP/1.1", "/"),
            ("OPTIONS /* HTTP/1.1", "/*"),
        ] {
            let buf = format!("{req}\r\nHost: h\r\n\r\n");
            let head = complete(buf.as_bytes());
            let rt = redirect_inputs(&head, None).unwrap();
            assert!(!rt.is_asterisk, "{req}");
            assert_eq!(rt.path_and_query, path.as_bytes(), "{req}");
        }
        // HTTP/1.0 OPTIONS * takes the default host like any other request
        let head = complete(b"OPTIONS * HTTP/1.0\r\n\r\n");
        let rt = redirect_inputs(&head, Some(b"d.example")).unwrap();
        assert!(rt.is_asterisk);
        assert_eq!(normalize(&rt.authority), "d.example");
        assert_eq!(redirect_inputs(&head, None), Err(HeadError::MissingHost));
        // a Host is still required, and must be valid
        let head = complete(b"OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!(redirect_inputs(&head, None), Err(HeadError::MissingHost));
        assert!(!absolute_form_is_bare(b"*"));
        assert!(!absolute_form_is_bare(b"/x"));
        assert!(absolute_form_is_bare(b"http://h:8080"));
        let buf = b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n";
        assert_eq!(complete(buf).target, b"h:443");
        assert_eq!(inputs(buf, None), Err(HeadError::BadTarget));
    }

    #[test]
    fn classify() {
        assert_eq!(
            classify_target(b"/p?q"),
            Ok(Target::Origin {
                path_and_query: b"/p?q"
            })
        );
        assert_eq!(classify_target(b"*"), Ok(Target::Asterisk));
        assert_eq!(classify_target(b"h:443"), Ok(Target::Authority(b"h:443")));
        // neither form, looks like an authority: refused by redirect_inputs / parse_authority
        assert_eq!(classify_target(b"**"), Ok(Target::Authority(b"**")));
        assert_eq!(
            classify_target(b"HtTp://h"),
            Ok(Target::Absolute {
                authority: b"h",
                path_and_query: b"/",
                scheme_https: false
            })
        );
        assert_eq!(
            classify_target(b"https://h:8443/a/b?c"),
            Ok(Target::Absolute {
                authority: b"h:8443",
                path_and_query: b"/a/b?c",
                scheme_https: true
            })
        );
        assert_eq!(
            classify_target(b"http://h?q"),
            Ok(Target::Absolute {
                authority: b"h",
                path_and_query: b"?q",
                scheme_https: false
            })
        );
        for bad in [
            &b""[..],
            b"/a b",
            b"/a\x00",
            b"/a\x7f",
            b"/a\tb",
            b"/a\r\nX: y",
            b"/a#frag",
            b"ftp://h/",
            b"http:/h",
            b"h/x",
        ] {
            assert_eq!(classify_target(bad), Err(HeadError::BadTarget), "{bad:?}");
        }
    }

    #[test]
    fn control_byte_in_target() {
        // httparse refuses these itself; whichever layer catches them, the answer is 400
        for buf in [
            &b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(error(buf).status(), 400, "{buf:?}");
        }
        // parse_head's own check, behind httparse's
        assert!(is_forbidden_target_byte(b' '));
        assert!(is_forbidden_target_byte(0));
        assert!(is_forbidden_target_byte(0x7f));
        assert!(!is_forbidden_target_byte(b'~'));
    }

    #[test]
    fn too_large() {
        // a 16 KiB head with no end
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
        buf.resize(MAX, b'a');
        assert_eq!(
            parse_head(&buf, MAX),
            HeadStatus::Error(HeadError::TooLarge)
        );
        assert_eq!(HeadError::TooLarge.status(), 431);
        // one byte less is still partial
        assert_eq!(parse_head(&buf[..MAX - 1], MAX), HeadStatus::Partial);
        // complete but over the limit
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_head(&buf, MAX),
            HeadStatus::Error(HeadError::TooLarge)
        );
        // exactly at the limit is fine
        let mut exact = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
        exact.resize(MAX - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(parse_head(&exact, MAX), HeadStatus::Complete(h) if h.head_len == MAX));
        // too many header lines
        let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_head(&many, MAX),
            HeadStatus::Error(HeadError::TooLarge)
        );
    }

    /// RFC 9112 §3: a request-target longer than the server parses is 414, not 431.
    #[test]
    fn uri_too_long() {
        // the example: GET / + 17,000 'a', limit 16 KiB
        let mut buf = b"GET /".to_vec();
        buf.extend(std::iter::repeat_n(b'a', 17_000));
        assert_eq!(
            parse_head(&buf, MAX),
            HeadStatus::Error(HeadError::UriTooLong)
        );
        assert_eq!(HeadError::UriTooLong.status(), 414);
        assert_eq!(HeadError::UriTooLong.to_string(), "request-target too long");
        // the same with the rest of the head: still 414, however the bytes arrived
        let mut whole = buf.clone();
        whole.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            parse_head(&whole, MAX),
            HeadStatus::Error(HeadError::UriTooLong)
        );
        for cut in [MAX, MAX + 1, 17_005, whole.len() - 1] {
            assert_eq!(
                parse_head(&whole[..cut], MAX),
                HeadStatus::Error(HeadError::UriTooLong),
                "{cut}"
            );
        }
        assert_eq!(parse_head(&whole[..MAX - 1], MAX), HeadStatus::Partial);
        // garbage after the limit does not change the verdict
        let mut garbage = buf.clone();
        garbage.extend_from_slice(b" HTTP/9.9\r\n\x00\r\n\r\n");
        assert_eq!(
            parse_head(&garbage, MAX),
            HeadStatus::Error(HeadError::UriTooLong)
        );
        // the request line ends exactly at the limit: its end is in, the headers are not
        let mut line = b"GET /".to_vec();
        line.resize(MAX - b" HTTP/1.1\r\n".len(), b'a');
        line.extend_from_slice(b" HTTP/1.1\r\n");
        assert_eq!(line.len(), MAX);
        let mut head = line.clone();
        head.extend_from_slice(b"Host: h\r\n\r\n");
        assert_eq!(
            parse_head(&head, MAX),
            HeadStatus::Error(HeadError::TooLarge)
        );
        // one byte longer: the line end (LF) is past the limit
        let mut longer = b"GET /a".to_vec();
        longer.extend_from_slice(&head[5..]);
        assert_eq!(
            parse_head(&longer, MAX),
            HeadStatus::Error(HeadError::UriTooLong)
        );
        // CR at the limit, LF after it
        assert_eq!(
            parse_head(&longer[..MAX], MAX),
            HeadStatus::Error(HeadError::UriTooLong)
        );
        // a long (but fitting) target with headers that push the head over: 431
        let mut big = b"GET /".to_vec();
        big.resize(12_000, b'a');
        big.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\nX-Pad: ");
        big.resize(MAX + 100, b'b');
        assert_eq!(
            parse_head(&big, MAX),
            HeadStatus::Error(HeadError::TooLarge)
        );
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_head(&big, MAX),
            HeadStatus::Error(HeadError::TooLarge)
        );
        // absolute-form and query count alike
        let mut abs = b"GET http://h/?q=".to_vec();
        abs.resize(MAX + 1, b'x');
        assert_eq!(
            parse_head(&abs, MAX),
            HeadStatus::Error(HeadError::UriTooLong)
        );
        // a small limit
        assert_eq!(
            parse_head(b"GET /0123456789 HTTP/1.1\r\n", 16),
            HeadStatus::Error(HeadError::UriTooLong)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 16),
            HeadStatus::Error(HeadError::TooLarge)
        );
        // leading empty lines (ignored before the request line, RFC 9112 §2.2)
        assert_eq!(
            parse_head(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 24),
            HeadStatus::Error(HeadError::TooLarge)
        );
        assert_eq!(
            parse_head(
                b"\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
                24
            ),
            HeadStatus::Error(HeadError::UriTooLong)
        );
        assert!(request_line_ends_in(b"\nGET / HTTP/1.1\n"));
        assert!(!request_line_ends_in(b"\r\n\n\r\n"));
        assert!(!request_line_ends_in(b""));
    }

    /// RFC 9112 §6.3 item 4, §6.1, §7.1: request framing by Transfer-Encoding.
    #[test]
    fn transfer_encoding() {
        let req = |te_lines: &[&str], version: &str| {
            let mut b = format!("POST /p HTTP/{version}\r\nHost: shop.example.test\r\n");
            for l in te_lines {
                b.push_str(l);
                b.push_str("\r\n");
            }
            b.push_str("\r\n");
            parse_head(b.as_bytes(), MAX).body_or_error()
        };
        let bad = Err(HeadError::BadTransferEncoding);
        assert_eq!(HeadError::BadTransferEncoding.status(), 400);
        assert_eq!(
            HeadError::BadTransferEncoding.to_string(),
            "invalid Transfer-Encoding"
        );
        for (lines, want_ok) in [
            // accepted: chunked exactly once, last
            (&["Transfer-Encoding: chunked"][..], true),
            (&["Transfer-Encoding: CHUNKED"], true),
            (&["Transfer-Encoding: gzip, chunked"], true),
            (
                &["Transfer-Encoding: gzip;level=1 , x-custom ;a=b;c=d, chunked"],
                true,
            ),
            (
                &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
                true,
            ),
            (&["transfer-encoding:\tdeflate,chunked\t"], true),
            // empty list elements are ignored (RFC 9110 §5.6.1.2)
            (&["Transfer-Encoding: , chunked,"], true),
            (&["Transfer-Encoding:", "Transfer-Encoding: chunked"], true),
            // the example: final coding not chunked
            (&["Transfer-Encoding: chunked, identity"], false),
            (&["Transfer-Encoding: identity"], false),
            (&["Transfer-Encoding: gzip"], false),
            (&["Transfer-Encoding: chunked, gzip"], false),
            (
                &["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"],
                false,
            ),
            (
                &["Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
                false,
            ),
            // chunked twice
            (&["Transfer-Encoding: chunked, chunked"], false),
            (
                &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
                false,
            ),
            (&["Transfer-Encoding: chunked, gzip, chunked"], false),
            // empty values
            (&["Transfer-Encoding:"], false),
            (&["Transfer-Encoding: "], false),
            (&["Transfer-Encoding: ,"], false),
            (&["Transfer-Encoding: , ,"], false),
            // not a token, parameters on chunked, quoted strings
            (&["Transfer-Encoding: chunked;x=1"], false),
            (&["Transfer-Encoding: chunked;"], false),
            (&["Transfer-Encoding: gzip;=1, chunked"], false),
            (&["Transfer-Encoding: gzip;x, chunked"], false),
            (&["Transfer-Encoding: gzip;x=\"a, chunked\""], false),
            (&["Transfer-Encoding: g(z), chunked"], false),
            (&["Transfer-Encoding: \"chunked\""], false),
            (&["Transfer-Encoding: chunked chunked"], false),
            (&["Transfer-Encoding: xchunked"], false),
            (&["Transfer-Encoding: chunkedx"], false),
            // with Content-Length (RFC 9112 §6.1, §6.3 item 3)
            (&["Transfer-Encoding: chunked", "Content-Length: 5"], false),
            (&["Content-Length: 0", "Transfer-Encoding: chunked"], false),
            (&["Content-Length: 5", "Transfer-Encoding: gzip"], false),
        ] {
            let got = req(lines, "1.1");
            if want_ok {
                assert!(matches!(got, Ok(true)), "{lines:?}: {got:?}");
            } else {
                assert_eq!(got, bad, "{lines:?}");
            }
        }
        // HTTP/1.0 with any Transfer-Encoding: faulty framing (RFC 9112 §6.1)
        assert_eq!(req(&["Transfer-Encoding: chunked"], "1.0"), bad);
        assert_eq!(req(&["Transfer-Encoding: identity"], "1.0"), bad);
        assert_eq!(
            req(&["Transfer-Encoding: chunked", "Content-Length: 3"], "1.0"),
            bad
        );
        // obs-fold is refused by the parser (400 all the same)
        assert_eq!(
            req(&["Transfer-Encoding: gzip,", " chunked"], "1.1"),
            Err(HeadError::Malformed("invalid header name"))
        );
        assert_eq!(
            req(&["Transfer-Encoding: chunked", "\tidentity"], "1.1"),
            Err(HeadError::Malformed("invalid header name"))
        );
        // without Transfer-Encoding nothing changes
        assert_eq!(req(&[], "1.1"), Ok(false));
        assert_eq!(req(&["Content-Length: 3"], "1.0"), Ok(true));
        // the example of the report, on the whole pipeline
        let buf = b"POST /p HTTP/1.1\r\nHost: shop.example.test\r\n\
                    Transfer-Encoding: chunked, identity\r\n\r\n";
        assert_eq!(inputs(buf, None), Err(HeadError::BadTransferEncoding));
        assert_eq!(error(buf).status(), 400);
    }

    #[test]
    fn partial_heads() {
        let full = b"GET /path HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
        for n in 0..full.len() {
            assert_eq!(
                parse_head(&full[..n], MAX),
                HeadStatus::Partial,
                "prefix {n}"
            );
        }
        assert!(matches!(parse_head(full, MAX), HeadStatus::Complete(_)));
    }

    #[test]
    fn body_and_connection() {
        let h = complete(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
        assert!(h.has_body);
        let h = complete(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.has_body);
        let h = complete(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n");
        assert!(h.has_body);
        let h = complete(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(h.has_body);
        assert_eq!(
            error(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n"),
            HeadError::BadContentLength
        );
        assert_eq!(
            error(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            HeadError::BadContentLength
        );
        assert_eq!(
            error(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"),
            HeadError::BadContentLength
        );
        assert_eq!(
            error(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            HeadError::BadContentLength
        );
        assert_eq!(
            error(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n"),
            HeadError::BadContentLength
        );
        let h = complete(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(h.connection_close);
        let h = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(h.connection_close);
        let h = complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(!h.connection_close);
        let h = complete(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n");
        assert!(!h.connection_close);
    }

    #[test]
    fn error_status_and_display() {
        assert_eq!(HeadError::MissingHost.status(), 400);
        assert_eq!(HeadError::BadTarget.status(), 400);
        assert_eq!(HeadError::Malformed("x").status(), 400);
        assert_eq!(
            HeadError::BadHost(HostError::Userinfo).to_string(),
            "invalid host: userinfo ('@') not allowed in host"
        );
        assert_eq!(
            HeadError::MultipleHost.to_string(),
            "more than one Host header"
        );
        let e: &dyn std::error::Error = &HeadError::BadHost(HostError::Empty);
        assert!(e.source().is_some());
    }

    #[test]
    fn path_helpers() {
        assert_eq!(path_only(b"/a/b?c=d?e"), b"/a/b");
        assert_eq!(path_only(b"/a"), b"/a");
        assert_eq!(path_only(b"?q"), b"/");
        assert_eq!(path_only(b""), b"/");
        assert_eq!(origin_form_prefix(b"/a"), b"");
        assert_eq!(origin_form_prefix(b"?q"), b"/");
        assert_eq!(origin_form_prefix(b""), b"/");
        let acme = b"/.well-known/acme-challenge/";
        assert!(path_has_prefix(
            b"/.well-known/acme-challenge/tok_EN-1",
            acme
        ));
        assert!(path_has_prefix(b"/.well-known/acme-challenge/t?x=..", acme));
        assert!(!path_has_prefix(b"/.well-known/acme-challenge", acme));
        assert!(!path_has_prefix(b"/.WELL-KNOWN/acme-challenge/t", acme));
        assert!(!path_has_prefix(b"/x?/.well-known/acme-challenge/t", acme));
        assert!(!path_has_prefix(
            b"/.well-known/acme-challenge/../../admin",
            acme
        ));
        assert!(!path_has_prefix(
            b"/.well-known/acme-challenge/%2E%2e/admin",
            acme
        ));
        assert!(!path_has_prefix(
            b"/.well-known/acme-challenge/.%2e/admin",
            acme
        ));
        assert!(path_has_prefix(b"/healthz", b"/healthz"));
        assert!(path_has_prefix(b"/healthz?full=1", b"/healthz"));
        assert!(path_has_prefix(b"/healthzz", b"/healthz"));
        assert!(!path_has_prefix(b"/health", b"/healthz"));
        assert!(path_has_prefix(b"?q", b"/"));
    }

    /// Mutated requests never panic anywhere in the pipeline (a poor man's fuzzer).
    #[test]
    fn mutations_never_panic() {
        let seeds: [&[u8]; 5] = [
            b"GET /a?b HTTP/1.1\r\nHost: Example.COM.:80\r\nContent-Length: 3\r\n\r\n",
            b"GET http://[2001:db8::1]:8080/p HTTP/1.0\r\nConnection: close\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
            b"GET https://u@h?q HTTP/1.1\r\nHost: [::1]\r\n\r\n",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let interesting = b"\0\r\n :/?#@[]%.*\x7f\xff\t,";
        for i in 0..20_000u64 {
            let seed = seeds[(i % 5) as usize];
            let mut buf = seed.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % (buf.len() + 1);
                let byte = if next() % 2 == 0 {
                    interesting[(next() as usize) % interesting.len()]
                } else {
                    next() as u8
                };
                match next() % 3 {
                    0 if at < buf.len() => buf[at] = byte,
                    1 if at < buf.len() => {
                        buf.remove(at);
                    }
                    _ => buf.insert(at, byte),
                }
            }
            let cut = (next() as usize) % (buf.len() + 1);
            for b in [&buf[..], &buf[..cut]] {
                if let HeadStatus::Complete(head) = parse_head(b, 64) {
                    let _ = classify_target(head.target);
                    if let Ok(rt) = redirect_inputs(&head, Some(b"d")) {
                        let mut out = [0u8; 64];
                        let _ = crate::host::normalize_into(&rt.authority, &mut out);
                        let _ = path_has_prefix(rt.path_and_query, b"/.well-known/");
                    }
                }
                let _ = parse_head(b, 1 << 14);
                let _ = crate::host::parse_authority(b);
            }
        }
    }

    /// Odd requests, each with its exact outcome through parse_head + redirect_inputs.
    #[test]
    fn corpus() {
        type Outcome = Result<(String, String), HeadError>;
        let malformed = |why: &'static str| -> Outcome { Err(HeadError::Malformed(why)) };
        let long = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Long: {}\r\n\r\n",
            "v".repeat(12000)
        );
        let cases: Vec<(&[u8], Outcome)> = vec![
            // 1. tab as OWS around a header value
            (b"GET / HTTP/1.1\r\nHost:\th\t\r\n\r\n", ok("h", "/")),
            // 2. no space after the colon
            (b"GET / HTTP/1.1\r\nHost:h\r\n\r\n", ok("h", "/")),
            // 3. obs-fold continuation line
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
                malformed("invalid header name"),
            ),
            // 4. LF-only line endings
            (b"GET /lf HTTP/1.1\nHost: h\n\n", ok("h", "/lf")),
            // 5. mixed CRLF / LF
            (b"GET /m HTTP/1.1\r\nHost: h\n\r\n", ok("h", "/m")),
            // 6. very long header value (under the limit)
            (long.as_bytes(), ok("h", "/")),
            // 7. empty header value
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n",
                ok("h", "/"),
            ),
            // 8. empty Host value
            (
                b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
                Err(HeadError::BadHost(HostError::Empty)),
            ),
            // 9. absolute https:// target
            (
                b"GET https://h/s HTTP/1.1\r\nHost: x\r\n\r\n",
                ok("h", "/s"),
            ),
            // 10. OPTIONS *
            (b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", ok("h", "*")),
            // 11. CONNECT authority-form
            (
                b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
                Err(HeadError::BadTarget),
            ),
            // 12. lowercase method is a different (valid) token
            (b"get /l HTTP/1.1\r\nHost: h\r\n\r\n", ok("h", "/l")),
            // 13. HTTP/2 preface
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                malformed("invalid or unsupported HTTP version"),
            ),
            // 14. HTTP/0.9 simple request
            (b"GET /\r\n\r\n", malformed("invalid token in request line")),
            // 15. NUL byte in a header value
            (
                b"GET / HTTP/1.1\r\nHost: h\x00x\r\n\r\n",
                malformed("invalid header value"),
            ),
            // 16. header name with a space
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX Y: z\r\n\r\n",
                malformed("invalid header name"),
            ),
            // 17. space before the colon
            (
                b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
                malformed("invalid header name"),
            ),
            // 18. leading empty line before the request line
            (b"\r\nGET /e HTTP/1.1\r\nHost: h\r\n\r\n", ok("h", "/e")),
            // 19. two spaces between method and target
            (
                b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
                malformed("invalid token in request line"),
            ),
            // 20. lowercase version
            (
                b"GET / http/1.1\r\nHost: h\r\n\r\n",
                malformed("invalid or unsupported HTTP version"),
            ),
            // 21. HTTP/1.2
            (
                b"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
                malformed("invalid or unsupported HTTP version"),
            ),
            // 22. bare CR line ending
            (
                b"GET / HTTP/1.1\rHost: h\r\n\r\n",
                malformed("invalid line ending"),
            ),
            // 23. non-ASCII (UTF-8) Host value
            (
                "GET / HTTP/1.1\r\nHost: bücher.de\r\n\r\n".as_bytes(),
                Err(HeadError::BadHost(HostError::InvalidChar(0xc3))),
            ),
            // 24. Host with trailing whitespace is trimmed by the parser
            (b"GET / HTTP/1.1\r\nHost: h  \r\n\r\n", ok("h", "/")),
            // 25. fragment in the target
            (
                b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n",
                Err(HeadError::BadTarget),
            ),
            // 26. absolute-form with an empty path and a query
            (
                b"GET http://H.?q HTTP/1.1\r\nHost: x\r\n\r\n",
                ok("h", "?q"),
            ),
            // 27. method with a non-token byte
            (
                b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
                malformed("invalid token in request line"),
            ),
            // 28. Host header in odd case, value with port and trailing dot
            (
                b"GET /x HTTP/1.1\r\nHOST: WWW.H.COM.:8080\r\n\r\n",
                ok("www.h.com", "/x"),
            ),
            // 29. TLS ClientHello on port 80
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                malformed("invalid token in request line"),
            ),
            // 30. missing target
            (
                b"GET HTTP/1.1\r\nHost: h\r\n\r\n",
                malformed("invalid token in request line"),
            ),
            // 31. raw UTF-8 in the path is passed through
            (
                "GET /caf\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n".as_bytes(),
                ok("h", "/caf\u{e9}"),
            ),
            // 32. header line without a colon
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
                malformed("invalid header name"),
            ),
            // 33. HTTP/1.0 absolute-form with a Host that disagrees
            (b"GET http://a/ HTTP/1.0\r\nHost: b\r\n\r\n", ok("a", "/")),
            // 34. invalid UTF-8 in the target
            (
                b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n",
                malformed("invalid token in request line"),
            ),
        ];
        assert!(cases.len() >= 25);
        let mismatches: Vec<String> = cases
            .iter()
            .enumerate()
            .filter_map(|(i, (buf, want))| {
                let got = inputs(buf, None);
                (&got != want).then(|| {
                    format!(
                        "case {}: {:?}: got {got:?}, want {want:?}",
                        i + 1,
                        String::from_utf8_lossy(buf)
                    )
                })
            })
            .collect();
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }
}
