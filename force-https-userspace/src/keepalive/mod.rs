//! The HTTP/1.1 keep-alive loop of the client-facing listeners: a connection's common
//! requests served without hyper's server.
//!
//! Most requests on a proxied keep-alive connection are `GET`s and `HEAD`s without a body.
//! This loop reads their heads ([`wire::parse_request`]), has the proxy service answer them,
//! and writes the answers as hyper's server would with the listener's settings
//! ([`wire::encode_response_head`], [`Style`]): the same bytes, without the per-request costs
//! of hyper's dispatcher, its header-case writer and its header-read timer (BENCHMARKS.md, run
//! U). Everything else, from the first request that is not one of those (a body, an upgrade,
//! `Expect`, HTTP/1.0, a malformed head, HTTP/2's preface), goes to hyper's server with the
//! bytes already read ([`Ended::ToHyper`], [`Replay`]), which serves the rest of the
//! connection. Port 80 runs it for a connection whose first request is proxied
//! (`paths::http80`), the TLS listener for a connection that did not choose HTTP/2 by ALPN
//! (`paths::tls`).
//!
//! As with hyper's server: a client gets `[limits] idle_timeout_ms` for each request head
//! (from the moment the loop waits for it), after which the connection closes without an
//! answer; a client that closes while its request is served or its response waits for body
//! data cancels them (a read watches for it when nothing of the client's is buffered); a
//! response that cannot be finished (its body failed or fell short of its `Content-Length`)
//! closes the connection; on shutdown a connection with no request begun closes at once, and
//! a busy one after its response, marked `Connection: close` when its head is still to go.

mod replay;
pub mod wire;

pub use replay::Replay;

use std::{
    convert::Infallible,
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    task::Poll,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use hyper::{Method, Request, Response, body::Body as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{
    net::{self, Deadline, Shutdown},
    proxy::Body,
};
use wire::{BodyEncoding, BodyLength, Names, Parsed};

/// Data frames up to this size are copied behind the head (or the previous frame) and sent
/// with it; larger ones are written from their own buffer (hyper's server also copies small
/// frames).
const COPY_MAX: usize = 16 * 1024;

/// The read buffer's size, bytes (hyper's server starts with 8 KiB as well).
const READ_BUF: usize = 8 * 1024;

/// How the loop writes response heads: as the hyper server it stands in for is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// How field names are written (hyper's `title_case_headers`: on for port 80, where
    /// redirects must match the raw answers' bytes).
    pub names: Names,
    /// Whether a response without `Date` gets one (hyper's `auto_date_header`).
    pub date: bool,
}

thread_local! {
    /// The `Date` value of the current second, per thread (hyper caches its own the same way).
    static DATE: std::cell::RefCell<DateCache> = const {
        std::cell::RefCell::new(DateCache {
            second: u64::MAX,
            value: String::new(),
        })
    };
}

/// The `Date` value of the current second (IMF-fixdate, RFC 9110 §5.6.7), made again only
/// when the second changes.
struct DateCache {
    second: u64,
    value: String,
}

impl DateCache {
    fn now(&mut self) -> &[u8] {
        let now = std::time::SystemTime::now();
        let second = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.value = httpdate::fmt_http_date(now);
        }
        self.value.as_bytes()
    }
}

/// How a connection left the loop.
pub enum Ended<S> {
    /// It is closed (or to be dropped): the client closed it, its head timed out, a response
    /// ended it, or the edge is shutting down.
    Closed,
    /// A request the loop does not serve starts at `read`: hyper's server takes the connection
    /// from here. `served`: how many requests the loop answered before (a connection that
    /// spoke HTTP/1.1 must not turn to HTTP/2 afterwards).
    ToHyper { io: S, read: Bytes, served: u64 },
}

/// Serves requests on `io` until it ends or a request needs hyper's server. `buf` holds what
/// was already read of the connection; `max_head` is the largest request head served here
/// (a larger one goes to hyper's server, which answers it); `idle` bounds the wait for each
/// head; `style` is how hyper's server would write. `service` answers a request (the proxy
/// service).
///
/// Errors: the connection's I/O errors, a response body that failed or fell short, the client
/// gone while a body waited, and a response the service made that cannot be written (a `1xx`
/// status other than `101`, contradictory framing fields: hyper's server refuses them too,
/// and for a `1xx` writes a `500` head first; the proxy service never makes one).
pub async fn serve<S, F, Fut>(
    mut io: S,
    mut buf: BytesMut,
    max_head: usize,
    idle: Duration,
    style: Style,
    mut shutdown: Shutdown,
    service: F,
) -> io::Result<Ended<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(Request<()>) -> Fut,
    Fut: Future<Output = Result<Response<Body>, Infallible>>,
{
    let mut draining = *shutdown.borrow();
    let mut out = Vec::new();
    // The request in flight, in a box made once per connection and reused (as hyper's server
    // does): inline, the service's future would make every connection's task that much larger.
    let mut in_flight: Pin<Box<Option<Fut>>> = Box::pin(None);
    let mut fields = wire::FieldOffsets::new();
    let mut served = 0u64;
    // The head's time limit: one timer per connection (`net::Deadline`), not one per wait.
    let mut head_timer = Deadline::new();
    loop {
        // The next head: parsed from what is buffered, else read, within `idle`.
        let mut deadline = None;
        let (request, keep_alive) = loop {
            match wire::parse_request(&mut buf, max_head, &mut fields) {
                Parsed::Request {
                    request,
                    keep_alive,
                } => break (request, keep_alive),
                Parsed::Other => {
                    let read = buf.freeze();
                    return Ok(Ended::ToHyper { io, read, served });
                }
                Parsed::Partial => {}
            }
            // Shutting down, and no request begun: closed (hyper closes an idle connection
            // at once, a part of a head read or not).
            if draining {
                let _ = io.shutdown().await;
                return Ok(Ended::Closed);
            }
            let deadline = *deadline.get_or_insert_with(|| net::deadline_after(idle));
            if buf.capacity() - buf.len() < READ_BUF / 4 {
                buf.reserve(READ_BUF);
            }
            tokio::select! {
                biased;
                r = io.read_buf(&mut buf) => match r {
                    // The client closed: so does the edge.
                    Ok(0) => {
                        let _ = io.shutdown().await;
                        return Ok(Ended::Closed);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e),
                },
                // The head timed out: closed without an answer (as by hyper's server).
                () = head_timer.until(deadline) => return Ok(Ended::Closed),
                c = shutdown.changed(), if !draining => {
                    draining = c.is_err() || *shutdown.borrow();
                }
            }
        };

        let head_request = request.method() == Method::HEAD;
        served += 1;
        in_flight.set(Some(service(request)));
        // While the service works, a read watches for the client closing (when nothing of it
        // is buffered), as hyper's server does: a client gone cancels its request.
        let mut watch = buf.is_empty();
        let response = loop {
            let answer = std::future::poll_fn(|cx| match in_flight.as_mut().as_pin_mut() {
                Some(f) => f.poll(cx),
                None => Poll::Pending,
            });
            tokio::select! {
                biased;
                r = answer => {
                    let Ok(r) = r;
                    break r;
                }
                r = io.read_buf(&mut buf), if watch => match r {
                    Ok(0) => return Ok(Ended::Closed),
                    Ok(_) => watch = false,
                    Err(e) => return Err(e),
                },
            }
        };
        in_flight.set(None);
        let keep_alive = keep_alive && !draining && !*shutdown.borrow();
        let (mut parts, body) = response.into_parts();
        if !keep_alive {
            wire::mark_close(&mut parts.headers);
        }
        let length = if body.is_end_stream() {
            None
        } else {
            Some(
                body.size_hint()
                    .exact()
                    .map_or(BodyLength::Unknown, BodyLength::Known),
            )
        };
        out.clear();
        let encode = |out: &mut Vec<u8>, date: Option<&[u8]>| {
            let names = style.names;
            wire::encode_response_head(out, &parts, length, head_request, keep_alive, names, date)
        };
        let encoded = if style.date {
            DATE.with_borrow_mut(|d| encode(&mut out, Some(d.now())))
        } else {
            encode(&mut out, None)
        }
        .map_err(|e| io::Error::other(format!("response not written: {e:?}")))?;
        drop(parts);
        let complete = write_body(&mut io, &mut out, encoded.body, body, &mut buf).await?;
        io.flush().await?;
        // The edge began to shut down while the body went: hyper's server closes then too.
        let stopping = !draining && *shutdown.borrow();
        if encoded.last || !complete || encoded.body == BodyEncoding::CloseDelimited || stopping {
            let _ = io.shutdown().await;
            return Ok(Ended::Closed);
        }
    }
}

/// Writes `out` (a response head) and the body as `encoding` frames it, as hyper's server
/// does: `Ok(false)` when the body ended right after data that left it short of its
/// `Content-Length` (what there was is sent; the connection must close), an error when it
/// ended short otherwise (what is buffered is not sent) or failed, or when the client closed
/// the connection while the body waited (`read`: the client's bytes, where a pipelined
/// request read meanwhile is kept).
async fn write_body<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    out: &mut Vec<u8>,
    encoding: BodyEncoding,
    mut body: Body,
    read: &mut BytesMut,
) -> io::Result<bool> {
    // The bytes still to send of a `Content-Length` body; `None`: chunked or close-delimited.
    let mut remaining = match encoding {
        // No body to send: the rest is not read (a `HEAD` response's, or none).
        BodyEncoding::Length(0) => {
            io.write_all(out).await?;
            return Ok(true);
        }
        BodyEncoding::Length(n) => Some(n),
        BodyEncoding::Chunked | BodyEncoding::CloseDelimited => None,
    };
    let short = || io::Error::other("the body is shorter than its Content-Length");
    let chunked = encoding == BodyEncoding::Chunked;
    let mut watch = read.is_empty();
    loop {
        // A frame at once if there is one; else what is buffered goes out first.
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)));
        let frame = match polled.await {
            Poll::Ready(f) => f,
            Poll::Pending => {
                if !out.is_empty() {
                    io.write_all(out).await?;
                    out.clear();
                }
                // A TLS stream holds what it was given until flushed.
                io.flush().await?;
                loop {
                    let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
                    tokio::select! {
                        biased;
                        f = next => break f,
                        r = io.read_buf(read), if watch => match r {
                            Ok(0) => return Err(io::ErrorKind::ConnectionAborted.into()),
                            Ok(_) => watch = false,
                            Err(e) => return Err(e),
                        },
                    }
                }
            }
        };
        // The end: `None`, trailers (not sent: the loop serves no request that asked for
        // them with `TE: trailers`), or an empty last data frame.
        let data = match frame {
            Some(Err(e)) => return Err(io::Error::other(e)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => Some(data),
                // An empty frame is skipped, unless it is the last.
                Ok(_) if !body.is_end_stream() => continue,
                _ => None,
            },
            None => None,
        };
        let Some(data) = data else {
            if remaining.is_some_and(|r| r > 0) {
                return Err(short());
            }
            break;
        };
        let data = match remaining.as_mut() {
            None => data,
            Some(r) => {
                let take = data.len().min(usize::try_from(*r).unwrap_or(usize::MAX));
                *r -= take as u64;
                data.slice(..take)
            }
        };
        if chunked {
            wire::chunk_size_line(out, data.len());
        }
        if data.len() <= COPY_MAX {
            out.extend_from_slice(&data);
        } else {
            write_two(io, out, &data).await?;
            out.clear();
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if remaining == Some(0) {
            break;
        }
        if body.is_end_stream() {
            if remaining.is_some() {
                // Short right after its last data: sent, then closed.
                io.write_all(out).await?;
                out.clear();
                return Ok(false);
            }
            break;
        }
    }
    if chunked {
        out.extend_from_slice(wire::LAST_CHUNK);
    }
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(true)
}

/// Writes `a` then `b`, both in one system call when the socket takes them.
async fn write_two<S: AsyncWrite + Unpin>(io: &mut S, a: &[u8], b: &[u8]) -> io::Result<()> {
    let mut a = a;
    let mut b = b;
    while !a.is_empty() {
        let n = io
            .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n < a.len() {
            a = &a[n..];
        } else {
            b = &b[n - a.len()..];
            a = &[];
        }
    }
    io.write_all(b).await
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        convert::Infallible,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::Context,
    };

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::{
        StatusCode, Version,
        body::{Frame, SizeHint},
        header::{HeaderName, HeaderValue},
        service::service_fn,
    };
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt, DuplexStream},
        time::Instant,
    };

    use super::*;
    use crate::{config::Limits, proxy::BoxError};

    /// A body of frames whose length is not known in advance.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl hyper::body::Body for Frames {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
        fn size_hint(&self) -> SizeHint {
            SizeHint::default()
        }
    }

    fn full(b: &'static str) -> Body {
        Full::new(Bytes::from_static(b.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    fn frames(parts: &[&'static str], trailers: bool) -> Body {
        let mut f: VecDeque<_> = parts
            .iter()
            .map(|p| Frame::data(Bytes::from_static(p.as_bytes())))
            .collect();
        if trailers {
            let mut t = hyper::HeaderMap::new();
            t.insert("x-trailer", HeaderValue::from_static("1"));
            f.push_back(Frame::trailers(t));
        }
        Frames(f).boxed_unsync()
    }

    /// The canned answers both servers give, by path.
    fn respond<B>(req: Request<B>) -> Response<Body> {
        let mut r = Response::new(full(""));
        let mut headers = hyper::HeaderMap::new();
        let h = &mut headers;
        let set = |h: &mut hyper::HeaderMap, n: &'static str, v: &'static str| {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        };
        match req.uri().path() {
            "/len" => {
                set(h, "content-type", "text/plain");
                set(h, "set-cookie", "a=1");
                set(h, "x-backend", "one");
                set(h, "set-cookie", "b=2");
                set(h, "content-length", "5");
                *r.body_mut() = full("hello");
            }
            "/nolen" => *r.body_mut() = full("hello"),
            "/stream" => {
                set(h, "cache-control", "no-store");
                *r.body_mut() = frames(&["abc", "", "defgh"], false);
            }
            "/trailers" => *r.body_mut() = frames(&["abc"], true),
            "/big" => {
                let big = "x".repeat(100_000).leak();
                *r.body_mut() = frames(&["head", big, "tail"], false);
            }
            "/204" => {
                *r.status_mut() = StatusCode::NO_CONTENT;
                set(h, "content-length", "0");
            }
            "/304" => {
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                set(h, "etag", "\"e\"");
                set(h, "content-length", "10");
            }
            "/404" => {
                *r.status_mut() = StatusCode::NOT_FOUND;
                *r.body_mut() = full("nope");
            }
            "/reason" => {
                *r.status_mut() = StatusCode::from_u16(299).unwrap();
                let reason = hyper::ext::ReasonPhrase::from_static(b"Fine Thanks");
                r.extensions_mut().insert(reason);
                *r.body_mut() = full("ok");
            }
            "/v10" => {
                *r.version_mut() = Version::HTTP_10;
                set(h, "content-length", "2");
                *r.body_mut() = full("ok");
            }
            "/v10stream" => {
                *r.version_mut() = Version::HTTP_10;
                *r.body_mut() = frames(&["a", "b"], false);
            }
            "/gzip" => {
                set(h, "transfer-encoding", "gzip");
                *r.body_mut() = frames(&["zz"], false);
            }
            "/connection" => {
                set(h, "connection", "keep-alive");
                *r.body_mut() = full("ok");
            }
            "/close" => {
                set(h, "connection", "close");
                *r.body_mut() = full("bye");
            }
            "/short" => {
                set(h, "content-length", "10");
                *r.body_mut() = frames(&["12345"], false);
            }
            _ => *r.body_mut() = full("other"),
        }
        *r.headers_mut() = headers;
        r
    }

    fn limits() -> Limits {
        Limits {
            idle_timeout_ms: 1_000,
            ..Limits::default()
        }
    }

    /// Port 80's style, and the TLS listener's.
    const STYLES: [Style; 2] = [
        Style {
            names: Names::TitleCase,
            date: false,
        },
        Style {
            names: Names::AsHeld,
            date: true,
        },
    ];

    /// hyper's HTTP/1.1 server as the listener of `style` configures it
    /// (`paths::http80::hyper1_builder`, `paths::tls`'s `http1()`).
    fn builder(style: Style) -> hyper::server::conn::http1::Builder {
        let l = limits();
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(l.idle_timeout_ms))
            .max_buf_size(l.max_head_bytes * 2)
            .title_case_headers(style.names == Names::TitleCase)
            .auto_date_header(style.date)
            .keep_alive(true);
        b
    }

    /// The bytes with every `Date` value blanked (the two servers may write it a second
    /// apart).
    fn without_dates(bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        let mut out = String::new();
        for line in text.split_inclusive("\r\n") {
            if line.starts_with("date: ") || line.starts_with("Date: ") {
                out.push_str("date: -\r\n");
            } else {
                out.push_str(line);
            }
        }
        out
    }

    /// Sends `input` and reads until the server closes.
    async fn exchange(mut client: DuplexStream, input: &[u8]) -> Vec<u8> {
        client.write_all(input).await.unwrap();
        let mut got = Vec::new();
        let read = client.read_to_end(&mut got);
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the server closes")
            .unwrap();
        got
    }

    async fn via_hyper(input: &[u8], style: Style) -> String {
        let (client, server) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let svc = service_fn(|req| async { Ok::<_, Infallible>(respond(req)) });
            let _ = builder(style)
                .serve_connection(TokioIo::new(server), svc)
                .await;
        });
        without_dates(&exchange(client, input).await)
    }

    /// The bytes written by the loop (with hyper's server after it, as on port 80), and how
    /// many requests the loop answered itself.
    async fn via_loop(input: &[u8], style: Style) -> (String, usize) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let served = Arc::new(AtomicUsize::new(0));
        let counted = served.clone();
        tokio::spawn(async move {
            let l = limits();
            let idle = Duration::from_millis(l.idle_timeout_ms);
            let service = |req: Request<()>| {
                counted.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, Infallible>(respond(req)) }
            };
            let buf = BytesMut::new();
            let ended = serve(
                server,
                buf,
                l.max_head_bytes,
                idle,
                style,
                shutdown,
                service,
            );
            if let Ok(Ended::ToHyper { io, read, .. }) = ended.await {
                let svc = service_fn(|req| async { Ok::<_, Infallible>(respond(req)) });
                let io = TokioIo::new(Replay {
                    pending: read,
                    inner: io,
                });
                let _ = builder(style).serve_connection(io, svc).await;
            }
        });
        let got = exchange(client, input).await;
        (without_dates(&got), served.load(Ordering::Relaxed))
    }

    /// A last request, after which both servers close the connection.
    const LAST: &str =
        "GET /len HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, close\r\n\r\n";

    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: a.example\r\n\r\n")
    }

    #[tokio::test]
    async fn the_loop_writes_what_hyper_writes() {
        let paths = [
            "/len",
            "/nolen",
            "/stream",
            "/trailers",
            "/big",
            "/204",
            "/304",
            "/404",
            "/reason",
            "/v10",
            "/gzip",
            "/connection",
            "/",
        ];
        let mut all = String::new();
        for p in paths {
            all.push_str(&get(p));
            all.push_str(&format!("HEAD {p} HTTP/1.1\r\nHost: a.example\r\n\r\n"));
        }
        let last = LAST;
        // Every request pipelined, and the same one by one in conversations of their own.
        let mut conversations = vec![(format!("{all}{last}"), paths.len() * 2 + 1)];
        for p in paths {
            conversations.push((format!("{}{last}", get(p)), 2));
        }
        // These end the connection: the last request is never read.
        for p in ["/close", "/v10stream", "/short"] {
            conversations.push((format!("{}{last}", get(p)), 1));
        }
        for style in STYLES {
            for (input, n) in &conversations {
                let want = via_hyper(input.as_bytes(), style).await;
                let (got, served) = via_loop(input.as_bytes(), style).await;
                assert_eq!(got, want, "for {input:?} in {style:?}");
                assert_eq!(served, *n, "the loop served {served} of {input:?}");
            }
        }
    }

    #[tokio::test]
    async fn other_requests_go_to_hyper_with_what_was_read() {
        let cases = [
            // A body, mid-connection: hyper serves it and the rest.
            format!(
                "{}POST /len HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\nabc{}",
                get("/len"),
                get("/nolen")
            ),
            // HTTP/1.0 first, then chunked, Expect, an upgrade, absolute form, malformed.
            "GET /len HTTP/1.0\r\nHost: a.example\r\n\r\n".to_string(),
            format!(
                "{}POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
                get("/stream")
            ),
            "GET /len HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n".to_string(),
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
                .to_string(),
            "GET http://a.example/len HTTP/1.1\r\nHost: a.example\r\n\r\n".to_string(),
            format!("{}GET /len HTTP/1.1\r\nHost a.example\r\n\r\n", get("/len")),
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n".to_string(),
            "GET /len HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n".to_string(),
        ];
        for style in STYLES {
            for input in &cases {
                let input = format!("{input}{LAST}");
                let want = via_hyper(input.as_bytes(), style).await;
                let (got, _) = via_loop(input.as_bytes(), style).await;
                assert_eq!(got, want, "for {input:?} in {style:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_closing_client_and_a_draining_edge_get_connection_close() {
        let input = "GET /len HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        let (text, served) = via_loop(input.as_bytes(), STYLES[0]).await;
        assert_eq!(served, 1);
        assert!(
            text.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\nhello"),
            "{text}"
        );
        let (text, _) = via_loop(input.as_bytes(), STYLES[1]).await;
        assert!(
            text.ends_with("content-length: 5\r\nconnection: close\r\ndate: -\r\n\r\nhello"),
            "{text}"
        );

        // Shutting down: the request read is answered, marked, and the connection closes.
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (tx, shutdown) = tokio::sync::watch::channel(false);
        tx.send(true).unwrap();
        let task = tokio::spawn(async move {
            let read = BytesMut::from(get("/nolen").as_bytes());
            let service = |req: Request<()>| async move { Ok::<_, Infallible>(respond(req)) };
            let idle = Duration::from_secs(5);
            matches!(
                serve(server, read, 16384, idle, STYLES[0], shutdown, service).await,
                Ok(Ended::Closed)
            )
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(task.await.unwrap());
        assert_eq!(
            String::from_utf8_lossy(&got),
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"
        );
    }

    /// The head's limit counts from each wait's start, not from the connection's first: the
    /// one timer, set by the first wait, is moved when it fires early (`net::Deadline`).
    #[tokio::test(start_paused = true)]
    async fn each_head_gets_the_whole_idle_time() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let start = Instant::now();
        tokio::spawn(async move {
            let service = |req: Request<()>| async move { Ok::<_, Infallible>(respond(req)) };
            let idle = Duration::from_secs(1);
            let read = BytesMut::new();
            serve(server, read, 16384, idle, STYLES[0], shutdown, service).await
        });
        let mut got = Vec::new();
        for _ in 0..2 {
            // 0.9 s into each wait: a timer kept from the first wait (due at 1.0 s) would
            // have closed the connection before the second request.
            tokio::time::sleep(Duration::from_millis(900)).await;
            client.write_all(get("/len").as_bytes()).await.unwrap();
            let mut chunk = [0u8; 4096];
            let n = client.read(&mut chunk).await.unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
        let answered = String::from_utf8_lossy(&got)
            .matches("HTTP/1.1 200")
            .count();
        assert_eq!(answered, 2, "{}", String::from_utf8_lossy(&got));
        // No third head: closed a whole idle time after the second answer (at 1.8 s).
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        let closed = start.elapsed();
        assert!(
            closed >= Duration::from_millis(2800) && closed < Duration::from_millis(2850),
            "closed after {closed:?}"
        );
    }

    #[tokio::test]
    async fn a_head_that_does_not_come_closes_the_connection() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let service = |req: Request<()>| async move { Ok::<_, Infallible>(respond(req)) };
            let idle = Duration::from_millis(200);
            let read = BytesMut::from(&b"GET /len HTTP/1.1\r\nHo"[..]);
            matches!(
                serve(server, read, 16384, idle, STYLES[0], shutdown, service).await,
                Ok(Ended::Closed)
            )
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(task.await.unwrap());
        assert!(got.is_empty());
    }

    /// Sets its flag when dropped.
    struct Dropped(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn a_client_that_leaves_cancels_its_request() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = dropped.clone();
        let task = tokio::spawn(async move {
            // A request the backend never answers.
            let service = |_: Request<()>| {
                let guard = Dropped(flag.clone());
                async move {
                    std::future::pending::<()>().await;
                    drop(guard);
                    Ok::<_, Infallible>(Response::new(full("")))
                }
            };
            let idle = Duration::from_secs(30);
            let ended = serve(
                server,
                BytesMut::new(),
                16384,
                idle,
                STYLES[0],
                shutdown,
                service,
            );
            matches!(ended.await, Ok(Ended::Closed))
        });
        client.write_all(get("/len").as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.shutdown().await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(closed.expect("the loop ends").unwrap());
        assert!(dropped.load(Ordering::Relaxed), "the request is cancelled");
    }

    #[tokio::test]
    async fn shutting_down_closes_a_connection_with_only_part_of_a_head() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (tx, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let service = |req: Request<()>| async move { Ok::<_, Infallible>(respond(req)) };
            let read = BytesMut::from(&b"GET /len HTTP/1.1\r\nHo"[..]);
            let idle = Duration::from_secs(30);
            let ended = serve(server, read, 16384, idle, STYLES[0], shutdown, service);
            matches!(ended.await, Ok(Ended::Closed))
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(true).unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(closed.expect("the loop ends at once").unwrap());
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
    }
}
