//! The HTTP/1.1 server's wire format for the keep-alive loop (`keepalive/mod.rs`): a request
//! head parsed into the `Request` the proxy service takes, when it is one the loop serves, and
//! a response head written exactly as hyper's HTTP/1.1 server writes it with the listener's
//! settings (port 80: Title-Case names, no `Date`; TLS: names as the map holds them, and
//! `Date`), so that a connection's bytes are the same whichever of the two served a request.
//! Pure: bytes in, values out, no I/O (the `Date` value is given).
//!
//! The response side follows hyper 1.x's `Server::encode` (`proto/h1/role.rs`) rule by rule:
//! the framing fields written as the response carries them, `Content-Length` or
//! `Transfer-Encoding: chunked` added from what is known of the body (RFC 9112 §6.1–§6.3),
//! no body for `HEAD`, `204` and `304` (RFC 9110 §6.4.1), and `Connection: close` added when
//! the connection ends after this response (RFC 9112 §9.6). A test runs both servers on the
//! same exchanges and compares the bytes.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use hyper::{
    HeaderMap, Method, Request, StatusCode, Uri, Version,
    header::{self, HeaderName, HeaderValue},
};

/// The most header fields a request head may hold here (hyper's server default): more, and
/// hyper's server takes the connection and answers.
pub const MAX_HEADERS: usize = 100;

/// What [`parse_request`] made of the bytes read so far.
#[derive(Debug)]
// Returned once per request and matched at once: boxing the request would allocate each time.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    /// The head is not complete yet (and within the limit): read on.
    Partial,
    /// A request this loop serves (its head has been taken out of the buffer).
    Request {
        /// The request, body-less.
        request: Request<()>,
        /// Whether the client allows the connection to carry another request (no
        /// `Connection: close`, RFC 9112 §9.3).
        keep_alive: bool,
    },
    /// Anything else: a request with a body or an upgrade, `Expect`, `TE`, a method other
    /// than `GET` and `HEAD`, HTTP/1.0, a target not in origin form, a head over the limit,
    /// a malformed head. Hyper's server takes the connection from this request on (the
    /// buffer is left as it was).
    Other,
}

/// Where a request head's field names and values are in the read buffer, as byte offsets
/// (name start, name end, value start, value end): kept by the connection and reused, so that
/// parsing a head neither allocates nor clears a table.
pub type FieldOffsets = Vec<(u32, u32, u32, u32)>;

/// Parses the request head at the start of `buf` (RFC 9112 §2–§5). A request this loop serves
/// is a `GET` or `HEAD` in HTTP/1.1 with an origin-form target, no body (`Content-Length`,
/// `Transfer-Encoding`), no `Upgrade`, `Expect` or `TE`, at most [`MAX_HEADERS`] fields
/// and `max_head` bytes: its head is split off `buf` and the request's target and field
/// values share those bytes. Everything else is [`Parsed::Other`], and `buf` is unchanged.
/// `fields` is scratch space.
pub fn parse_request(buf: &mut BytesMut, max_head: usize, fields: &mut FieldOffsets) -> Parsed {
    // Offsets fit in `u32`: a head over 4 GiB is never complete within `max_head`.
    let max_head = max_head.min(u32::MAX as usize);
    let (head_len, method, target, keep_alive) = {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
            Ok(httparse::Status::Complete(n)) if n <= max_head => n,
            Ok(httparse::Status::Partial) if buf.len() <= max_head => return Parsed::Partial,
            _ => return Parsed::Other,
        };
        let method = match req.method {
            Some("GET") => Method::GET,
            Some("HEAD") => Method::HEAD,
            _ => return Parsed::Other,
        };
        let (Some(1), Some(path)) = (req.version, req.path) else {
            return Parsed::Other;
        };
        if !path.starts_with('/') {
            return Parsed::Other;
        }
        let base = buf.as_ptr() as usize;
        // Within the head, so within `max_head` and `u32`.
        let at = |s: &[u8]| {
            let start = (s.as_ptr() as usize - base) as u32;
            (start, start + s.len() as u32)
        };
        let mut keep_alive = true;
        fields.clear();
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            match refusal(name) {
                Some(Field::Refused) => return Parsed::Other,
                // hyper reads options only from a visible-ASCII value: others go to it.
                Some(Field::Connection) if !visible(h.value) => return Parsed::Other,
                Some(Field::Connection) => {
                    for token in h.value.split(|b| *b == b',') {
                        let token = token.trim_ascii();
                        if token.eq_ignore_ascii_case(b"close") {
                            keep_alive = false;
                        } else if token.eq_ignore_ascii_case(b"upgrade") {
                            return Parsed::Other;
                        }
                    }
                }
                None => {}
            }
            let (n0, n1) = at(name);
            let (v0, v1) = at(h.value);
            fields.push((n0, n1, v0, v1));
        }
        (head_len, method, at(path.as_bytes()), keep_alive)
    };
    let head = buf.split_to(head_len).freeze();
    match build(&head, method, target, fields) {
        Some(request) => Parsed::Request {
            request,
            keep_alive,
        },
        None => {
            // Put the head back for hyper: rare (a target `Uri` refuses), so a copy will do.
            let mut whole = BytesMut::with_capacity(head.len() + buf.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buf);
            *buf = whole;
            Parsed::Other
        }
    }
}

/// A request field that matters to [`parse_request`].
enum Field {
    /// One the loop leaves to hyper's server (a body, an upgrade, `Expect`, `TE`).
    Refused,
    /// `Connection`.
    Connection,
}

/// What a field name means to [`parse_request`], by length first: most names are none of
/// these.
fn refusal(name: &[u8]) -> Option<Field> {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 if is(b"te") => Some(Field::Refused),
        6 if is(b"expect") => Some(Field::Refused),
        7 if is(b"upgrade") => Some(Field::Refused),
        10 if is(b"connection") => Some(Field::Connection),
        14 if is(b"content-length") => Some(Field::Refused),
        17 if is(b"transfer-encoding") => Some(Field::Refused),
        _ => None,
    }
}

/// The request of a parsed head whose target and values share `head`'s bytes.
fn build(
    head: &Bytes,
    method: Method,
    (t0, t1): (u32, u32),
    fields: &[(u32, u32, u32, u32)],
) -> Option<Request<()>> {
    let uri = Uri::from_maybe_shared(head.slice(t0 as usize..t1 as usize)).ok()?;
    let mut headers = HeaderMap::with_capacity(fields.len());
    for &(n0, n1, v0, v1) in fields {
        let (n0, n1, v0, v1) = (n0 as usize, n1 as usize, v0 as usize, v1 as usize);
        let name = HeaderName::from_bytes(&head[n0..n1]).ok()?;
        // httparse accepted the value (visible ASCII, obs-text, SP and HTAB): what
        // `HeaderValue` allows too, so this check does not refuse it.
        let value = HeaderValue::from_maybe_shared(head.slice(v0..v1)).ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// What is known of a response body's length before it is sent (hyper's `BodyLength`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// Exactly this many bytes.
    Known(u64),
    /// Not known: chunked, or until the connection closes.
    Unknown,
}

/// How a response body goes on the wire (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// Exactly this many bytes (none for `HEAD`, `204` and `304`): the body is not read
    /// further once they are sent.
    Length(u64),
    /// Chunked (RFC 9112 §7.1).
    Chunked,
    /// As it comes, the end being the connection's close.
    CloseDelimited,
}

/// A response head written: how its body goes, and whether the connection ends after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    pub body: BodyEncoding,
    /// The connection closes after this response.
    pub last: bool,
}

/// Why a response head could not be written (hyper refuses the same heads and ends the
/// connection without an answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// A `1xx` status other than `101`: a response must be final.
    Informational,
    /// Framing fields in a wrong order or at odds with each other (`Content-Length` after
    /// `Transfer-Encoding`, two different lengths, a length that is not a number).
    Framing,
}

/// Adds `close` to a response's `Connection` field (hyper's server does when the connection
/// ends after the response to an HTTP/1.1 request: the client asked for it, or the edge is
/// shutting down).
pub fn mark_close(headers: &mut HeaderMap) {
    match headers.entry(header::CONNECTION) {
        header::Entry::Occupied(mut e) => {
            if !e.iter().any(has_close) {
                e.append(HeaderValue::from_static("close"));
            }
        }
        header::Entry::Vacant(e) => {
            e.insert(HeaderValue::from_static("close"));
        }
    }
}

/// Whether a `Connection` value holds the `close` option, as hyper's `connection_close`
/// reads it: only from a value of visible ASCII, spaces and tabs (`HeaderValue::to_str`).
fn has_close(value: &HeaderValue) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}

/// Whether a field value is visible ASCII, spaces and tabs (what `HeaderValue::to_str`
/// accepts).
fn visible(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Whether a `Transfer-Encoding` value ends in `chunked` (hyper's `is_chunked_`).
fn ends_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// How field names are written (hyper's `title_case_headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Title-Case: the first letter and each one after a `-` uppercase.
    TitleCase,
    /// As the header map holds them (lowercase).
    AsHeld,
}

/// Appends a field name (lowercase, as `HeaderName` holds it) the way `names` says.
fn put_name(out: &mut Vec<u8>, names: Names, name: &str) {
    match names {
        Names::TitleCase => title_case(out, name),
        Names::AsHeld => out.extend_from_slice(name.as_bytes()),
    }
}

/// Appends a value of a field whose values go on one line (hyper joins `Transfer-Encoding`,
/// `Connection` and `Trailer`): `, value` when the line is open, else the name and the value,
/// opening it. The caller ends the line.
fn join(out: &mut Vec<u8>, line_open: &mut bool, names: Names, name: &str, value: &HeaderValue) {
    if *line_open {
        out.extend_from_slice(b", ");
    } else {
        *line_open = true;
        put_name(out, names, name);
        out.extend_from_slice(b": ");
    }
    out.extend_from_slice(value.as_bytes());
}

/// Appends `name` in Title-Case: the first letter and each one after a `-` uppercase
/// (hyper's `title_case`).
fn title_case(out: &mut Vec<u8>, name: &str) {
    // Copied whole, then the letters that start a word raised in place: a push per byte
    // checked the capacity each time (300 instructions of a proxied request, callgrind:
    // BENCHMARKS.md, run V).
    let start = out.len();
    out.extend_from_slice(name.as_bytes());
    let mut prev = b'-';
    for b in &mut out[start..] {
        let this = *b;
        if prev == b'-' {
            b.make_ascii_uppercase();
        }
        prev = this;
    }
}

/// Whether a response to `method` with `status` may carry a chunked body (hyper's
/// `can_chunked`, also its `can_have_body`).
fn can_chunk(head_request: bool, status: StatusCode) -> bool {
    !head_request
        && !status.is_informational()
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// Whether a response with `status` may carry `Content-Length` (RFC 9110 §8.6).
fn can_have_length(status: StatusCode) -> bool {
    !status.is_informational()
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// Appends the head of a response to an HTTP/1.1 request to `out`, as hyper's server writes
/// it: the status line of the response's version (`HTTP/1.0` or `HTTP/1.1`), status and
/// reason (hyper's `ReasonPhrase` extension, else the canonical phrase), each field in the
/// map's order with its name written as `names` says (the values of `Content-Length`,
/// `Transfer-Encoding`, `Connection` and `Trailer` joined on one line), the framing field
/// `body` calls for when the map has none, and `Date: date` (an IMF-fixdate, RFC 9110 §5.6.7)
/// when `date` is given and the map has none. `body` is `None` for a body known to be empty.
/// `keep_alive`: the client allows another request after this one (the head is marked with
/// [`mark_close`] otherwise). On an error, `out` is as it was.
pub fn encode_response_head(
    out: &mut Vec<u8>,
    response: &hyper::http::response::Parts,
    body: Option<BodyLength>,
    head_request: bool,
    keep_alive: bool,
    names: Names,
    date: Option<&[u8]>,
) -> Result<Encoded, EncodeError> {
    let (status, version, headers) = (response.status, response.version, &response.headers);
    let reason = response
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| r.as_bytes());
    let start = out.len();
    let fail = |out: &mut Vec<u8>, e| {
        out.truncate(start);
        Err(e)
    };
    let mut last = !keep_alive;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        last = true;
    } else if status.is_informational() {
        return Err(EncodeError::Informational);
    }
    out.reserve(30 + headers.len() * 32);
    if version == Version::HTTP_11 && status == StatusCode::OK && reason.is_none() {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(if version == Version::HTTP_10 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        match reason {
            Some(r) => out.extend_from_slice(r),
            None => {
                let r = status.canonical_reason().unwrap_or("<none>");
                out.extend_from_slice(r.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    let chunkable = version != Version::HTTP_10 && can_chunk(head_request, status);
    let mut encoding = BodyEncoding::Length(0);
    let mut wrote_len = false;
    // A framing field whose values go on one line: its line is open.
    let mut line_open = false;
    let mut must_write_chunked = false;
    let mut prev_len: Option<u64> = None;
    let mut prev_name: Option<&HeaderName> = None;
    let mut wrote_date = false;
    for (name, value) in headers {
        if !prev_name.is_some_and(|p| std::ptr::eq(p, name)) {
            if line_open {
                out.extend_from_slice(if must_write_chunked {
                    b", chunked\r\n"
                } else {
                    b"\r\n"
                });
            }
            line_open = false;
            prev_name = Some(name);
        }
        match *name {
            header::CONTENT_LENGTH => {
                if wrote_len && !line_open {
                    return fail(out, EncodeError::Framing);
                }
                match body {
                    Some(BodyLength::Known(len)) => {
                        if !line_open {
                            encoding = BodyEncoding::Length(len);
                            put_name(out, names, "content-length");
                            out.extend_from_slice(b": ");
                            out.extend_from_slice(value.as_bytes());
                            wrote_len = true;
                            line_open = true;
                        }
                        continue;
                    }
                    Some(BodyLength::Unknown) => {
                        let Some(len) = content_length(value.as_bytes()) else {
                            return fail(out, EncodeError::Framing);
                        };
                        match prev_len {
                            Some(prev) if prev != len => return fail(out, EncodeError::Framing),
                            Some(_) => continue,
                            None => {
                                encoding = BodyEncoding::Length(len);
                                put_name(out, names, "content-length");
                                out.extend_from_slice(b": ");
                                out.extend_from_slice(value.as_bytes());
                                wrote_len = true;
                                line_open = true;
                                prev_len = Some(len);
                                continue;
                            }
                        }
                    }
                    None => {
                        if !head_request {
                            continue;
                        }
                    }
                }
                wrote_len = true;
            }
            header::TRANSFER_ENCODING => {
                if wrote_len && !line_open {
                    return fail(out, EncodeError::Framing);
                }
                if !chunkable {
                    continue;
                }
                wrote_len = true;
                must_write_chunked = !ends_chunked(value.as_bytes());
                if !line_open {
                    encoding = BodyEncoding::Chunked;
                }
                join(out, &mut line_open, names, "transfer-encoding", value);
                continue;
            }
            header::CONNECTION => {
                if has_close(value) {
                    last = true;
                }
                join(out, &mut line_open, names, "connection", value);
                continue;
            }
            header::TRAILER => {
                if chunkable {
                    join(out, &mut line_open, names, "trailer", value);
                }
                continue;
            }
            header::DATE => wrote_date = true,
            _ => {}
        }
        put_name(out, names, name.as_str());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if line_open {
        out.extend_from_slice(if must_write_chunked {
            b", chunked\r\n"
        } else {
            b"\r\n"
        });
    }

    if !wrote_len {
        encoding = match body {
            Some(BodyLength::Unknown) if chunkable => {
                put_name(out, names, "transfer-encoding");
                out.extend_from_slice(b": chunked\r\n");
                BodyEncoding::Chunked
            }
            Some(BodyLength::Unknown) => BodyEncoding::CloseDelimited,
            None | Some(BodyLength::Known(0)) => {
                if can_have_length(status) && !head_request {
                    put_name(out, names, "content-length");
                    out.extend_from_slice(b": 0\r\n");
                }
                BodyEncoding::Length(0)
            }
            Some(BodyLength::Known(len)) => {
                if can_have_length(status) {
                    use std::io::Write;
                    put_name(out, names, "content-length");
                    let _ = write!(out, ": {len}\r\n");
                    BodyEncoding::Length(len)
                } else {
                    BodyEncoding::Length(0)
                }
            }
        };
    }
    if !can_chunk(head_request, status) {
        encoding = BodyEncoding::Length(0);
    }
    if let (Some(date), false) = (date, wrote_date) {
        put_name(out, names, "date");
        out.extend_from_slice(b": ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Encoded {
        body: encoding,
        last,
    })
}

/// A `Content-Length` value as hyper reads it: digits only, or `None`.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// Appends a chunk's size line (RFC 9112 §7.1: hex size, CRLF), as hyper writes it.
pub fn chunk_size_line(out: &mut Vec<u8>, len: usize) {
    use std::io::Write;
    let _ = write!(out, "{len:X}\r\n");
}

/// The last chunk and the empty trailer section (RFC 9112 §7.1).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], max_head: usize) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(raw);
        let parsed = parse_request(&mut buf, max_head, &mut FieldOffsets::new());
        (parsed, buf)
    }

    #[test]
    fn plain_gets_and_heads_are_served_here_and_share_the_head() {
        let raw = b"HEAD /a?b HTTP/1.1\r\nHost: x.example\r\nX-Y: 1\r\nX-Y: 2\r\n\r\nGET /next";
        let (parsed, rest) = parse(raw, 16384);
        let Parsed::Request {
            request,
            keep_alive,
        } = parsed
        else {
            panic!("{parsed:?}");
        };
        assert!(keep_alive);
        assert_eq!(request.method(), Method::HEAD);
        assert_eq!(request.uri(), "/a?b");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["host"], "x.example");
        let all: Vec<_> = request.headers().get_all("x-y").iter().collect();
        assert_eq!(all, ["1", "2"]);
        // What follows the head stays for the next request.
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn connection_close_is_seen_in_any_case_and_list() {
        for value in ["close", "Keep-Alive, CLOSE", " foo ,close "] {
            let raw = format!("GET / HTTP/1.1\r\nHost: a\r\nConnection: {value}\r\n\r\n");
            match parse(raw.as_bytes(), 16384).0 {
                Parsed::Request { keep_alive, .. } => assert!(!keep_alive, "{value}"),
                other => panic!("{value}: {other:?}"),
            }
        }
    }

    #[test]
    fn everything_else_is_left_to_hyper_untouched() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\ntransfer-ENCODING: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
            // hyper reads no option from a value with obs-text: left to it.
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, \xff\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost a\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ];
        for raw in cases {
            let (parsed, rest) = parse(raw, 16384);
            assert!(matches!(parsed, Parsed::Other), "{parsed:?}");
            assert_eq!(&rest[..], *raw, "the buffer is left as it was");
        }
        // Too many fields, and a head over the limit, complete or not.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&many, 16384).0, Parsed::Other));
        let long = b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(matches!(parse(long, 40).0, Parsed::Other));
        assert!(matches!(parse(&long[..45], 40).0, Parsed::Other));
        assert!(matches!(parse(&long[..30], 40).0, Parsed::Partial));
    }

    fn parts(status: StatusCode, headers: HeaderMap) -> hyper::http::response::Parts {
        let mut r = hyper::Response::new(());
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        r.into_parts().0
    }

    fn ok(headers: HeaderMap) -> hyper::http::response::Parts {
        parts(StatusCode::OK, headers)
    }

    #[test]
    fn heads_are_written_as_hyper_writes_them() {
        let mut h = HeaderMap::new();
        h.append("content-type", HeaderValue::from_static("text/html"));
        h.append("x-multi", HeaderValue::from_static("1"));
        h.append("x-multi", HeaderValue::from_static("2"));
        h.append("connection", HeaderValue::from_static("keep-alive"));
        let mut out = Vec::new();
        let body = Some(BodyLength::Known(3));
        let e = encode_response_head(&mut out, &ok(h), body, false, true, Names::TitleCase, None);
        assert_eq!(
            e,
            Ok(Encoded {
                body: BodyEncoding::Length(3),
                last: false
            })
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Multi: 1\r\nX-Multi: 2\r\n\
             Connection: keep-alive\r\nContent-Length: 3\r\n\r\n"
        );
        // Contradictory framing: an error, and nothing written.
        let mut h = HeaderMap::new();
        h.append("content-length", HeaderValue::from_static("3"));
        h.append("content-length", HeaderValue::from_static("4"));
        let mut out = b"kept".to_vec();
        let unknown = Some(BodyLength::Unknown);
        let e = encode_response_head(&mut out, &ok(h), unknown, false, true, Names::AsHeld, None);
        assert_eq!(e, Err(EncodeError::Framing));
        assert_eq!(out, b"kept");
        let informational = parts(StatusCode::CONTINUE, HeaderMap::new());
        let e = encode_response_head(
            &mut out,
            &informational,
            None,
            false,
            true,
            Names::AsHeld,
            None,
        );
        assert_eq!(e, Err(EncodeError::Informational));
    }

    #[test]
    fn title_case_raises_each_word_start_as_hyper_does() {
        let mut out = b"> ".to_vec();
        for (name, want) in [
            ("x-backend", "X-Backend"),
            ("content-type", "Content-Type"),
            ("etag", "Etag"),
            ("a--b", "A--B"),
            ("-x-", "-X-"),
            ("x-9z", "X-9z"),
            ("", ""),
        ] {
            out.truncate(2);
            title_case(&mut out, name);
            assert_eq!(&out[2..], want.as_bytes(), "{name}");
            assert_eq!(&out[..2], b"> ", "what came before is kept");
        }
    }
}
