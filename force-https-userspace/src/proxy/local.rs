//! Responses force-https makes itself on the proxy service: errors, local answers and
//! redirects, all from the bytes of `force_https_proto::response`, so a port-80 keep-alive
//! connection sends exactly what the raw socket path and the fast path send.

use bytes::Bytes;
use force_https_proto::response::{self, RedirectStatus};
use http_body_util::{BodyExt, Full};
use hyper::{
    Response, StatusCode,
    header::{self, HeaderName, HeaderValue},
};

use super::Body;
use crate::policy::LocalAnswer;

/// Marks a response made by force-https (in its extensions, never sent), so the filters can
/// tell it from a backend's.
#[derive(Debug, Clone, Copy)]
pub struct Marker;

/// A body of fixed bytes.
pub fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// Parses a complete response of `force_https_proto::response` into a hyper response with
/// its headers in the same order. The port-80 hyper connection writes Title-Case names and no
/// Date header, so what goes on the wire is the same bytes.
fn from_canonical(bytes: &[u8], fallback: StatusCode) -> Response<Body> {
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut parsed = httparse::Response::new(&mut headers);
    let mut r = Response::new(full(Bytes::new()));
    r.extensions_mut().insert(Marker);
    *r.status_mut() = fallback;
    if let Ok(httparse::Status::Complete(head_len)) = parsed.parse(bytes) {
        if let Some(code) = parsed.code.and_then(|c| StatusCode::from_u16(c).ok()) {
            *r.status_mut() = code;
        }
        for h in parsed.headers.iter() {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) {
                r.headers_mut().append(n, v);
            }
        }
        if let Some(body) = bytes.get(head_len..).filter(|b| !b.is_empty()) {
            *r.body_mut() = full(Bytes::copy_from_slice(body));
        }
    }
    r
}

/// An error or local answer with `status`, body and `Content-Type` from
/// `force_https_proto::response::error_body`. (The framing headers are hyper's: this is the
/// proxy service's answer on a connection that stays open.)
pub fn error(status: u16) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = Response::new(full(Bytes::from_static(
        response::error_body(status).as_bytes(),
    )));
    *r.status_mut() = code;
    r.extensions_mut().insert(Marker);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The complete error response of `force_https_proto::response::error_response`, exactly as
/// the socket path sends it, `Connection: close` included (hyper then closes an HTTP/1
/// connection after it; HTTP/2 drops the field). For errors after which the connection's
/// framing is not worth trusting (414, 431).
pub fn error_closing(status: u16) -> Response<Body> {
    from_canonical(
        response::error_response(status),
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    )
}

/// A `508 Loop Detected` with a short text body naming the cause (RFC 5842 §7.2).
pub fn loop_detected(why: &'static str) -> Response<Body> {
    let mut r = error(508);
    *r.body_mut() = full(Bytes::from_static(why.as_bytes()));
    r
}

/// The answer to `OPTIONS *`, from `force_https_proto::response::options_asterisk`.
pub fn options() -> Response<Body> {
    from_canonical(response::options_asterisk(), StatusCode::OK)
}

/// The redirect of [`response::redirect`] as a hyper response; `None` when the builder
/// refuses the target (a 400).
pub fn redirect(
    status: RedirectStatus,
    host: &str,
    https_port: u16,
    pq: &[u8],
) -> Option<Response<Body>> {
    response::redirect(status, host, https_port, pq)
        .map(|bytes| from_canonical(&bytes, StatusCode::MOVED_PERMANENTLY))
}

/// force-https's own answer on a connection that stays open.
pub fn answer(a: LocalAnswer) -> Response<Body> {
    match a {
        LocalAnswer::Options => options(),
        LocalAnswer::NotFound | LocalAnswer::Misdirected => error(a.status()),
        LocalAnswer::LoopDetected => loop_detected(
            "508 Loop Detected: this request already went through force-https (its CDN-Loop \
             header carries our token), so forwarding it again would loop. Check that the \
             backend does not point back at the edge.\n",
        ),
    }
}
