//! The direct upstream path: a request without a body (most of them: `GET`, `HEAD`) is
//! written to a pooled backend connection and its response read by the request's own task,
//! with the wire format of `h1.rs`.
//!
//! hyper's client gives each backend connection a task of its own and reaches it through a
//! channel: a proxied request crossed tasks four times and ran hyper's client dispatcher
//! (13.8k of the 63k instructions of an HTTP/2 request). Here the request's task writes the
//! head with one system call and parses the response itself; the body is read as the client
//! takes it, at most `[proxy]`'s read-ahead at a time. 14–20% fewer instructions a proxied
//! request (BENCHMARKS.md, run S).
//!
//! Requests with a body and upgrades keep hyper's client (`pool.rs`): streaming a body up
//! while the response may come early, and handing a connection over to a tunnel, are its
//! strengths. Both paths share the pool's rules (most recently idle first, the idle limit and
//! timeout, a connection reused only once its response was read whole).

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Weak},
    task::{Context, Poll, ready},
};

use bytes::{BufMut, Bytes, BytesMut};
use hyper::{
    Method, Response, StatusCode,
    body::{Body, Frame, SizeHint},
    http::uri::Authority,
};
use tokio::{io::AsyncWriteExt, net::TcpStream, time::Instant};

use super::{
    BoxError,
    h1::{self, Chunk, Chunked, Framing},
    pool::{Inner, PoolSettings, Reusable, SendError},
};
use crate::{metrics::Metrics, net::Deadline};

/// The first read of a response, bytes; reads grow to `[proxy]`'s read-ahead when they fill.
/// A connection keeps a read buffer this large between requests, not a larger one.
const FIRST_READ: usize = 8 * 1024;

/// The room a connection keeps for request heads, bytes: most fit (a browser's request with
/// the forwarding headers is about 600 to 900 bytes); a larger one grows it.
const HEAD_CAPACITY: usize = 1024;

/// The most room for request heads a connection keeps between requests, bytes.
const HEAD_KEEP: usize = 8 * 1024;

/// An idle backend connection of the direct path, with the buffers it keeps between
/// requests (no allocation for them per request).
pub struct Conn {
    stream: TcpStream,
    /// The request head being written.
    head: Vec<u8>,
    /// What was read past the last response; empty between requests.
    read: BytesMut,
    /// The response timeout's timer, kept from request to request.
    timer: Deadline,
}

impl Reusable for Conn {
    /// Closed, or unusable: anything readable on an idle connection (its end, or bytes no
    /// request asked for). Without a readiness event since the last read, no system call.
    fn is_closed(&self) -> bool {
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// The direct path's idle connections; cheap to share.
#[derive(Clone)]
pub struct Direct {
    inner: Arc<Inner<Conn>>,
}

impl Direct {
    /// An empty pool with the `[proxy]` settings; `metrics` counts the connections it opens.
    pub fn new(settings: PoolSettings, metrics: Arc<Metrics>) -> Direct {
        Direct {
            inner: Inner::new(settings, metrics),
        }
    }

    /// Writes the head of a bodyless `method` request, as `head` appends it to a buffer
    /// (`h1::encode_request`), to `backend` on an idle connection, or a new one, and reads the
    /// response head, by `deadline` (`[proxy] response_timeout_ms` after the request began).
    /// An idle connection that fails while the request is written was closed by the backend
    /// meanwhile: the request goes on another one (the backend cannot have acted on a head it
    /// did not get whole), by the same deadline. The wait for the head is timed by a timer
    /// the connection keeps ([`Deadline`]), not one per request.
    ///
    /// # Errors
    /// See [`SendError`]: `Closed` when the connection closed before any response byte,
    /// `ResponseTimeout` at the deadline (the connection is then closed).
    // Not an `async fn`: the borrowed arguments are held once (rust-lang/rust#62958).
    #[allow(clippy::manual_async_fn)]
    pub fn send<'a>(
        &'a self,
        backend: &'a Authority,
        method: &'a Method,
        head: &'a (dyn Fn(&mut Vec<u8>) + Sync),
        deadline: Instant,
    ) -> impl Future<Output = Result<Response<DirectBody>, SendError>> + 'a {
        async move {
            self.inner.start_reaper();
            loop {
                let (mut conn, reused) = match self.inner.checkout(backend) {
                    Some(c) => (c, true),
                    None => {
                        // Boxed: a new connection is the rare case, and its future (the
                        // connect and its timer) would otherwise be part of every request's.
                        let connect = self.inner.connect_tcp(backend);
                        let connect = Box::pin(tokio::time::timeout_at(deadline, connect));
                        let Ok(stream) = connect.await else {
                            return Err(SendError::ResponseTimeout);
                        };
                        let conn = Conn {
                            stream: stream?,
                            head: Vec::with_capacity(HEAD_CAPACITY),
                            read: BytesMut::new(),
                            timer: Deadline::new(),
                        };
                        (conn, false)
                    }
                };
                conn.head.clear();
                head(&mut conn.head);
                let max = self.inner.settings.max_buf_size.max(FIRST_READ);
                let mut buf = std::mem::take(&mut conn.read);
                let head_request = *method == Method::HEAD;
                let Conn {
                    stream,
                    head: request_head,
                    timer,
                    ..
                } = &mut conn;
                let exchange = async {
                    if let Err(e) = stream.write_all(request_head).await {
                        return Err(Step::Write(e));
                    }
                    read_head(stream, &mut buf, head_request, max)
                        .await
                        .map_err(Step::Read)
                };
                let step = tokio::select! {
                    biased;
                    step = exchange => step,
                    () = timer.until(deadline) => return Err(SendError::ResponseTimeout),
                };
                let h = match step {
                    Ok(h) => h,
                    Err(Step::Write(_)) if reused => continue,
                    Err(Step::Write(e)) => return Err(SendError::Io(e)),
                    Err(Step::Read(e)) => return Err(e),
                };
                if conn.head.capacity() > HEAD_KEEP {
                    // An idle connection does not keep a large head's room.
                    conn.head = Vec::with_capacity(HEAD_CAPACITY);
                }
                return Ok(self.response(backend, h, conn, buf, max));
            }
        }
    }

    fn response(
        &self,
        backend: &Authority,
        h: h1::ResponseHead,
        conn: Conn,
        buf: BytesMut,
        max: usize,
    ) -> Response<DirectBody> {
        let state = match h.framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunked::new()),
            Framing::Close => State::Close,
        };
        let mut body = DirectBody {
            conn: Some(conn),
            buf,
            state,
            back: h
                .keep_alive
                .then(|| (Arc::downgrade(&self.inner), backend.clone())),
            read: FIRST_READ,
            max,
        };
        if matches!(body.state, State::Done) {
            body.finish();
        }
        let mut resp = Response::new(body);
        *resp.status_mut() = h.status;
        *resp.version_mut() = h.version;
        *resp.headers_mut() = h.headers;
        if let Some(reason) = h.reason
            && let Ok(r) = hyper::ext::ReasonPhrase::try_from(reason)
        {
            resp.extensions_mut().insert(r);
        }
        resp
    }
}

/// Where a request's exchange on a connection failed.
enum Step {
    /// Writing the head: on a reused connection, the backend had closed it.
    Write(io::Error),
    /// Reading the response head.
    Read(SendError),
}

/// Reads until a final response head is parsed (`1xx` heads other than `101` are read and
/// dropped, as hyper's client does).
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    head_request: bool,
    max: usize,
) -> Result<h1::ResponseHead, SendError> {
    let mut got_any = false;
    loop {
        if !buf.is_empty() {
            match h1::parse_response(buf, head_request, max).map_err(SendError::Wire)? {
                Some(h) if h.status == StatusCode::SWITCHING_PROTOCOLS => {
                    return Err(SendError::Wire(h1::WireError::Head(
                        "101 to a request without Upgrade",
                    )));
                }
                Some(h) if h.status.is_informational() => continue,
                Some(h) => return Ok(h),
                None => {}
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(FIRST_READ);
        }
        let n = match std::future::poll_fn(|cx| poll_read(stream, cx, buf, max)).await {
            Ok(n) => n,
            Err(e) if !got_any && e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(SendError::Io(e)),
        };
        if n == 0 {
            return Err(if got_any {
                SendError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed within the response head",
                ))
            } else {
                SendError::Closed
            });
        }
        got_any = true;
    }
}

/// One read of at most `limit` bytes into `buf`'s spare room: the bytes read, 0 at the end
/// of the stream. Through `AsyncRead`: a short read clears the socket's readiness (tokio's
/// `PollEvented`), so the next idle check ([`Conn::is_closed`]) makes no system call.
fn poll_read(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    limit: usize,
) -> Poll<io::Result<usize>> {
    tokio_util::io::poll_read_buf(Pin::new(stream), cx, &mut (&mut *buf).limit(limit))
}

enum State {
    /// This many body bytes are still to come.
    Length(u64),
    Chunked(Chunked),
    /// Until the backend closes.
    Close,
    Done,
}

/// A response body read by the direct path; its connection goes back to the pool once the
/// body has been read whole (when the response allows it), and closes if it is dropped first.
pub struct DirectBody {
    conn: Option<Conn>,
    /// Read but not yet handed out.
    buf: BytesMut,
    state: State,
    back: Option<(Weak<Inner<Conn>>, Authority)>,
    /// The next read's size, bytes: doubles while reads fill it, up to `max`.
    read: usize,
    max: usize,
}

impl DirectBody {
    /// The body is complete: its connection goes back to the pool when nothing follows it.
    fn finish(&mut self) {
        self.state = State::Done;
        let conn = self.conn.take();
        if let (Some(mut conn), Some((pool, backend))) = (conn, self.back.take())
            && self.buf.is_empty()
            && let Some(pool) = pool.upgrade()
        {
            if self.buf.capacity() <= FIRST_READ {
                // Its bytes are reused in place once the body's last piece is dropped.
                conn.read = std::mem::take(&mut self.buf);
            }
            pool.put(&backend, conn);
        }
    }

    fn fail(&mut self, e: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = State::Done;
        self.conn = None;
        self.back = None;
        Poll::Ready(Some(Err(e.into())))
    }

    /// Reads more of the body into `buf`: the bytes read, 0 at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(conn) = &mut self.conn else {
            return Poll::Ready(Ok(0));
        };
        if self.buf.is_empty() && self.buf.capacity() < self.read {
            // Allocated at the size asked for (`reserve` may double it).
            self.buf = BytesMut::with_capacity(self.read);
        } else if self.buf.capacity() - self.buf.len() < self.read {
            self.buf.reserve(self.read);
        }
        let n = ready!(poll_read(&mut conn.stream, cx, &mut self.buf, self.read))?;
        if n == self.read {
            self.read = (self.read * 2).min(self.max);
        }
        Poll::Ready(Ok(n))
    }
}

impl Body for DirectBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) if !this.buf.is_empty() => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(this.buf.len());
                    let data = this.buf.split_to(n).freeze();
                    *left -= n as u64;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Chunked(d) => match d.decode(&mut this.buf) {
                    Err(e) => return this.fail(e),
                    Ok(Chunk::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Chunk::End(trailers)) => {
                        this.finish();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    Ok(Chunk::More) => {}
                },
                State::Close if !this.buf.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
                }
                State::Length(_) | State::Close => {}
            }
            match ready!(this.poll_fill(cx)) {
                Err(e) => return this.fail(e),
                Ok(0) if matches!(this.state, State::Close) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return this.fail(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backend closed the connection before the end of the body",
                    ));
                }
                Ok(_) => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering::SeqCst},
        time::Duration,
    };

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::proxy::pool::tests::rt;
    use hyper::HeaderMap;

    /// A request head with `Host: b.example` and no other field.
    fn head(method: &Method, out: &mut Vec<u8>) {
        h1::encode_request(method, "/", b"b.example", &HeaderMap::new(), [], out);
    }

    /// The body of `body` and its trailers.
    async fn collect(body: DirectBody) -> Result<(Vec<u8>, Option<HeaderMap>), BoxError> {
        use http_body_util::BodyExt;
        let c = body.collect().await?;
        let trailers = c.trailers().cloned();
        Ok((c.to_bytes().to_vec(), trailers))
    }

    /// A backend that answers each request head it reads with `answer`, and closes after
    /// the first when `close`; counts its connections.
    async fn backend(answer: &'static [u8], close: bool) -> (Authority, Arc<AtomicUsize>) {
        backend_after(answer, close, Duration::ZERO).await
    }

    /// [`backend`], answering each head `delay` after it came.
    async fn backend_after(
        answer: &'static [u8],
        close: bool,
        delay: Duration,
    ) -> (Authority, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, SeqCst);
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut b = [0u8; 4096];
                    loop {
                        let Ok(n) = s.read(&mut b).await else { return };
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&b[..n]);
                        while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            got.drain(..end + 4);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            if s.write_all(answer).await.is_err() {
                                return;
                            }
                            if close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (authority, accepted)
    }

    fn direct() -> Direct {
        counted().0
    }

    /// A pool and the metrics it counts in.
    fn counted() -> (Direct, Arc<Metrics>) {
        let settings = PoolSettings {
            max_idle_per_backend: 8,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            max_buf_size: 32 * 1024,
        };
        let m = Arc::new(Metrics::default());
        (Direct::new(settings, m.clone()), m)
    }

    fn get<'a>(
        d: &'a Direct,
        a: &'a Authority,
    ) -> impl Future<Output = Result<Response<DirectBody>, SendError>> + 'a {
        get_by(d, a, Instant::now() + Duration::from_secs(10))
    }

    fn get_by<'a>(
        d: &'a Direct,
        a: &'a Authority,
        deadline: Instant,
    ) -> impl Future<Output = Result<Response<DirectBody>, SendError>> + 'a {
        d.send(a, &Method::GET, &|out| head(&Method::GET, out), deadline)
    }

    #[test]
    fn the_response_timeout_counts_from_each_request() {
        rt().block_on(async {
            let delay = Duration::from_millis(300);
            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            let (a, accepted) = backend_after(ok, false, delay).await;
            let d = direct();
            let t0 = Instant::now();
            let r = get_by(&d, &a, t0 + Duration::from_secs(1)).await.unwrap();
            assert_eq!(collect(r.into_body()).await.unwrap().0, b"ok");
            // The connection's timer is still set for t0 + 1 s; the next request, begun at
            // 0.9 s, has until 1.9 s, and its answer comes at 1.2 s: the old deadline
            // passing meanwhile does not end it.
            tokio::time::sleep_until(t0 + Duration::from_millis(900)).await;
            let r = get_by(&d, &a, Instant::now() + Duration::from_secs(1)).await;
            assert_eq!(collect(r.unwrap().into_body()).await.unwrap().0, b"ok");
            assert_eq!(accepted.load(SeqCst), 1, "one connection, reused");
            // A deadline shorter than the backend's delay: `ResponseTimeout` at the deadline,
            // and that connection is not used again.
            let t = Instant::now();
            let r = get_by(&d, &a, t + Duration::from_millis(100)).await;
            assert!(matches!(r, Err(SendError::ResponseTimeout)));
            let waited = t.elapsed();
            assert!(
                waited >= Duration::from_millis(100) && waited < delay,
                "timed out after {waited:?}"
            );
            let r = get(&d, &a).await.unwrap();
            assert_eq!(collect(r.into_body()).await.unwrap().0, b"ok");
            assert_eq!(accepted.load(SeqCst), 2);
        });
    }

    #[test]
    fn length_body_and_reuse() {
        rt().block_on(async {
            let (a, accepted) = backend(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello",
                false,
            )
            .await;
            let (d, m) = counted();
            for _ in 0..3 {
                let r = get(&d, &a).await.unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(r.headers()["x-a"], "b");
                assert_eq!(collect(r.into_body()).await.unwrap().0, b"hello");
            }
            assert_eq!(accepted.load(SeqCst), 1, "one connection, reused");
            assert_eq!(m.backend_connections.load(SeqCst), 1);
        });
    }

    #[test]
    fn chunked_with_trailers_informational_and_reason() {
        rt().block_on(async {
            let (a, accepted) = backend(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 299 Fine Thanks\r\n\
                  transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\
                  grpc-status: 0\r\n\r\n",
                false,
            )
            .await;
            let d = direct();
            for _ in 0..2 {
                let r = get(&d, &a).await.unwrap();
                assert_eq!(r.status(), 299);
                let reason = r.extensions().get::<hyper::ext::ReasonPhrase>().unwrap();
                assert_eq!(reason.as_bytes(), b"Fine Thanks");
                let (body, trailers) = collect(r.into_body()).await.unwrap();
                assert_eq!(body, b"abcde");
                assert_eq!(trailers.unwrap()["grpc-status"], "0");
            }
            assert_eq!(accepted.load(SeqCst), 1);
        });
    }

    #[test]
    fn close_delimited_and_connection_close_are_not_reused() {
        rt().block_on(async {
            let (a, accepted) = backend(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true).await;
            let d = direct();
            for _ in 0..2 {
                let r = get(&d, &a).await.unwrap();
                assert_eq!(collect(r.into_body()).await.unwrap().0, b"until the end");
            }
            assert_eq!(accepted.load(SeqCst), 2);
            let (a, accepted) = backend(
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                false,
            )
            .await;
            for _ in 0..2 {
                let r = get(&d, &a).await.unwrap();
                assert_eq!(collect(r.into_body()).await.unwrap().0, b"ok");
            }
            assert_eq!(accepted.load(SeqCst), 2);
        });
    }

    #[test]
    fn head_and_bodiless_statuses() {
        rt().block_on(async {
            let (a, accepted) =
                backend(b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n", false).await;
            let d = direct();
            for _ in 0..2 {
                let deadline = Instant::now() + Duration::from_secs(10);
                let r = d
                    .send(&a, &Method::HEAD, &|out| head(&Method::HEAD, out), deadline)
                    .await
                    .unwrap();
                assert_eq!(r.headers()["content-length"], "500");
                assert!(r.body().is_end_stream());
            }
            assert_eq!(accepted.load(SeqCst), 1);
        });
    }

    #[test]
    fn faults_are_errors() {
        rt().block_on(async {
            let d = direct();
            // Closed before any byte: `Closed`, which the upstream phase may repeat.
            let (a, _) = backend(b"", true).await;
            let r = get(&d, &a).await;
            assert!(r.is_err_and(|e| e.is_closed_before_response()));
            // A malformed head.
            let (a, _) = backend(b"HTTP/1.1 2000 OK\r\n\r\n", false).await;
            assert!(matches!(get(&d, &a).await, Err(SendError::Wire(_))));
            // 101 to a request that asked for no upgrade.
            let (a, _) = backend(b"HTTP/1.1 101 Switching\r\nupgrade: x\r\n\r\n", false).await;
            assert!(matches!(get(&d, &a).await, Err(SendError::Wire(_))));
            // A body cut short.
            let (a, accepted) =
                backend(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", true).await;
            let r = get(&d, &a).await.unwrap();
            assert!(collect(r.into_body()).await.is_err());
            // A bad chunk; the connection is not reused after either.
            let (b, _) = backend(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                false,
            )
            .await;
            let r = get(&d, &b).await.unwrap();
            assert!(collect(r.into_body()).await.is_err());
            let _ = get(&d, &a).await;
            assert_eq!(accepted.load(SeqCst), 2);
        });
    }

    #[test]
    fn an_idle_connection_the_backend_closed_is_not_used() {
        rt().block_on(async {
            let (a, accepted) =
                backend(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
            let d = direct();
            // The backend closes after answering, yet says nothing: the connection goes
            // back to the pool, and is found closed at the next checkout.
            let r = get(&d, &a).await.unwrap();
            assert_eq!(collect(r.into_body()).await.unwrap().0, b"ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
            let r = get(&d, &a).await.unwrap();
            assert_eq!(collect(r.into_body()).await.unwrap().0, b"ok");
            assert_eq!(accepted.load(SeqCst), 2);
        });
    }

    #[test]
    fn a_large_body_is_read_in_bounded_pieces() {
        static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let wire = BIG.get_or_init(|| {
            let mut v = b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n".to_vec();
            v.extend(std::iter::repeat_n(b'x', 1 << 20));
            v
        });
        rt().block_on(async {
            let (a, _) = backend(wire.as_slice(), false).await;
            let d = direct();
            let mut body = get(&d, &a).await.unwrap().into_body();
            let (mut total, mut largest) = (0, 0);
            while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                let n = f.unwrap().into_data().unwrap().len();
                total += n;
                largest = largest.max(n);
            }
            assert_eq!(total, 1 << 20);
            assert!(largest <= 32 * 1024, "{largest}");
        });
    }
}
