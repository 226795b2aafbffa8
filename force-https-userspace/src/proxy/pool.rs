//! The backend connection pool: idle HTTP/1.1 connections to each backend, reused for the
//! next request to it. hyper's client drives the connections of requests with a body and of
//! upgrades; requests without a body have connections of their own (`direct.rs`), kept by the
//! same rules ([`Inner`] holds either kind).
//!
//! - A connection goes back to the pool when its response body has been read to the end (at
//!   once for a response without a body). One whose response was not read whole, failed, or
//!   switched protocols (`101`) is never reused: dropping its last [`SendRequest`] closes it.
//! - The most recently used idle connection is taken first (its backend is the least likely
//!   to have timed it out); at most `[proxy] pool_max_idle_per_host` are kept per backend
//!   (and per kind: hyper's, the direct path's), each for at most `[proxy]
//!   pool_idle_timeout_ms` (pruned on every use, and by a task that runs every half of that,
//!   1 to 30 s).
//! - A request sent on an idle connection that turns out to be closed before the request was
//!   written goes on another one (hyper hands the request back): this never repeats a request
//!   the backend may have seen. The upstream phase repeats safe requests the backend closed on
//!   without answering (`upstream.rs`).
//!
//! This replaced hyper-util's legacy client, which spawns a task per request to see the
//! connection idle again, boxes every response future and keys its pool by scheme and
//! authority with SipHash: 10k of the 56k instructions of a proxied request (BENCHMARKS.md).

use foldhash::HashMap;
use std::{
    error::Error as StdError,
    fmt,
    pin::Pin,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hyper::{
    Request, Response, StatusCode,
    body::{Body, Frame, Incoming, SizeHint},
    client::conn::http1::{self, SendRequest},
    http::uri::Authority,
};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Why a request got no response from its backend.
#[derive(Debug)]
pub enum SendError {
    /// The TCP connection could not be made (refused, unreachable, name not resolved).
    Connect(std::io::Error),
    /// No TCP connection within `[proxy] connect_timeout_ms`.
    ConnectTimeout(Duration),
    /// The HTTP exchange failed (the connection closed, a malformed response, …).
    Http(hyper::Error),
    /// The direct path's exchange failed: reading or writing the connection.
    Io(std::io::Error),
    /// The direct path's backend closed the connection before any byte of the response.
    Closed,
    /// The direct path's backend sent a malformed response head.
    Wire(super::h1::WireError),
    /// The direct path's backend gave no response head by the request's deadline (`[proxy]
    /// response_timeout_ms`): a 504.
    ResponseTimeout,
}

impl SendError {
    /// True when the backend closed the connection before any byte of the response (hyper's
    /// "connection closed before message completed"): typically an idle connection the
    /// backend had just closed.
    pub fn is_closed_before_response(&self) -> bool {
        match self {
            SendError::Http(e) => e.is_incomplete_message(),
            SendError::Closed => true,
            _ => false,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Connect(_) => f.write_str("cannot connect"),
            SendError::ConnectTimeout(t) => write!(f, "no connection within {} ms", t.as_millis()),
            SendError::Http(_) | SendError::Io(_) | SendError::Wire(_) => {
                f.write_str("the HTTP exchange failed")
            }
            SendError::Closed => {
                f.write_str("the HTTP exchange failed: connection closed before the response")
            }
            SendError::ResponseTimeout => f.write_str("no response in time"),
        }
    }
}

impl StdError for SendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            SendError::Connect(e) => Some(e),
            SendError::ConnectTimeout(_) | SendError::Closed | SendError::ResponseTimeout => None,
            SendError::Http(e) => Some(e),
            SendError::Io(e) => Some(e),
            SendError::Wire(e) => Some(e),
        }
    }
}

/// The pool's settings (`[proxy]`).
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Idle connections kept per backend.
    pub max_idle_per_backend: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// The most a connection reads ahead of its reader, bytes (hyper's `max_buf_size`; at
    /// least 8 KiB).
    pub max_buf_size: usize,
}

/// Idle connections to every backend; cheap to share (`Clone` is an `Arc`).
pub struct Pool<B> {
    inner: Arc<Senders<B>>,
}

/// hyper's idle connections: their senders.
type Senders<B> = Inner<SendRequest<B>>;

impl<B> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

/// The idle connections of one kind (hyper senders, or the direct path's streams), by backend.
pub(super) struct Inner<C> {
    /// Keyed by the backend's authority as written in the configuration (`Authority`'s own
    /// `Hash` lowercases and hashes it a byte at a time: 1k instructions a request), with
    /// foldhash: the keys come from the configuration, so SipHash's resistance to chosen keys
    /// buys nothing for 200 instructions a lookup.
    idle: Mutex<HashMap<Box<str>, Vec<Idle<C>>>>,
    pub(super) settings: PoolSettings,
    reaper: AtomicBool,
    /// Counts the connections opened (`backend_connections`).
    metrics: Arc<Metrics>,
}

/// A connection that may be kept idle and used again.
pub(super) trait Reusable {
    /// Whether the backend has closed it (or it is otherwise unusable).
    fn is_closed(&self) -> bool;
}

impl<B> Reusable for SendRequest<B> {
    fn is_closed(&self) -> bool {
        SendRequest::is_closed(self)
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

impl<C: Reusable> Inner<C> {
    /// No idle connection yet.
    pub(super) fn new(settings: PoolSettings, metrics: Arc<Metrics>) -> Arc<Inner<C>> {
        Arc::new(Inner {
            idle: Mutex::new(HashMap::default()),
            settings,
            reaper: AtomicBool::new(false),
            metrics,
        })
    }

    /// A TCP connection to `backend` within `[proxy] connect_timeout_ms`, Nagle off;
    /// counted.
    pub(super) async fn connect_tcp(
        &self,
        backend: &Authority,
    ) -> Result<tokio::net::TcpStream, SendError> {
        let s = &self.settings;
        // `[v6]` in an authority: the address without its brackets.
        let host = backend.host().trim_start_matches('[').trim_end_matches(']');
        let port = backend.port_u16().unwrap_or(80);
        let stream = match tokio::time::timeout(
            s.connect_timeout,
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        {
            Err(_) => return Err(SendError::ConnectTimeout(s.connect_timeout)),
            Ok(Err(e)) => return Err(SendError::Connect(e)),
            Ok(Ok(stream)) => stream,
        };
        Metrics::inc(&self.metrics.backend_connections);
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Drops the connections idle for longer than the timeout (the oldest are first).
    fn prune(list: &mut Vec<Idle<C>>, now: Instant, timeout: Duration) {
        let stale = list
            .iter()
            .take_while(|i| now.duration_since(i.since) >= timeout || i.conn.is_closed())
            .count();
        if stale > 0 {
            list.drain(..stale);
        }
    }

    /// Drops every connection idle too long or closed, and the backends left without any.
    fn prune_all(&self) {
        let (now, timeout) = (Instant::now(), self.settings.idle_timeout);
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|_, list| {
                list.retain(|i| now.duration_since(i.since) < timeout && !i.conn.is_closed());
                !list.is_empty()
            });
        }
    }

    /// The most recently idle open connection to `backend`.
    pub(super) fn checkout(&self, backend: &Authority) -> Option<C> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(backend.as_str())?;
        Inner::prune(list, Instant::now(), self.settings.idle_timeout);
        while let Some(i) = list.pop() {
            if !i.conn.is_closed() {
                return Some(i.conn);
            }
        }
        None
    }

    /// `conn` is idle again: kept unless the pool is full.
    pub(super) fn put(&self, backend: &Authority, conn: C) {
        if conn.is_closed() {
            return;
        }
        let now = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            let list = match idle.get_mut(backend.as_str()) {
                Some(list) => list,
                None => idle.entry(backend.as_str().into()).or_default(),
            };
            Inner::prune(list, now, self.settings.idle_timeout);
            if list.len() < self.settings.max_idle_per_backend {
                list.push(Idle { conn, since: now });
            }
        }
    }
}

impl<C: Reusable + Send + 'static> Inner<C> {
    /// Starts, once, the task that closes connections idle for too long.
    pub(super) fn start_reaper(self: &Arc<Self>) {
        if self.reaper.load(Relaxed) || self.reaper.swap(true, Relaxed) {
            return;
        }
        let weak: Weak<Inner<C>> = Arc::downgrade(self);
        let every =
            (self.settings.idle_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { break };
                inner.prune_all();
            }
        });
    }
}

impl<B> Pool<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    /// An empty pool; `metrics` counts the connections it opens.
    pub fn new(settings: PoolSettings, metrics: Arc<Metrics>) -> Pool<B> {
        Pool {
            inner: Inner::new(settings, metrics),
        }
    }

    /// Sends `req` (origin-form target, `Host` set) to `backend` on an idle connection, or a
    /// new one, and returns the response head; its body gives the connection back to the
    /// pool once read to the end.
    ///
    /// # Errors
    /// The connection could not be made, or the exchange failed (see [`SendError`]).
    // Not an `async fn`: an `async fn` holds the request twice (rust-lang/rust#62958), and
    // this future is part of every proxied request's (run P).
    #[allow(clippy::manual_async_fn)]
    pub fn send(
        &self,
        backend: &Authority,
        mut req: Request<B>,
    ) -> impl Future<Output = Result<Response<PooledBody<B>>, SendError>> {
        async move {
            self.inner.start_reaper();
            while let Some(mut sender) = self.inner.checkout(backend) {
                // Ready at once unless the connection has not yet taken in the end of its last
                // response; an error means it closed meanwhile.
                if sender.ready().await.is_err() {
                    continue;
                }
                match sender.try_send_request(req).await {
                    Ok(resp) => return Ok(self.pooled(backend, sender, resp)),
                    Err(mut e) => match e.take_message() {
                        // Never written: the connection closed first. Another one.
                        Some(back) => req = back,
                        None => return Err(SendError::Http(e.into_error())),
                    },
                }
            }
            let mut sender = self.connect(backend).await?;
            match sender.send_request(req).await {
                Ok(resp) => Ok(self.pooled(backend, sender, resp)),
                Err(e) => Err(SendError::Http(e)),
            }
        }
    }

    fn pooled(
        &self,
        backend: &Authority,
        sender: SendRequest<B>,
        resp: Response<Incoming>,
    ) -> Response<PooledBody<B>> {
        let (parts, body) = resp.into_parts();
        let back = if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            // The connection is the client's tunnel now.
            None
        } else if body.is_end_stream() {
            self.inner.put(backend, sender);
            None
        } else {
            Some((Arc::downgrade(&self.inner), backend.clone(), sender))
        };
        Response::from_parts(parts, PooledBody { body, back })
    }

    /// A new connection to `backend`, its I/O driven by a task of its own.
    async fn connect(&self, backend: &Authority) -> Result<SendRequest<B>, SendError> {
        let s = &self.inner.settings;
        let stream = self.inner.connect_tcp(backend).await?;
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(s.max_buf_size.max(8192))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("backend connection ended: {e}");
            }
        });
        Ok(sender)
    }
}

/// A backend's response body; gives its connection back to the pool when read to the end.
pub struct PooledBody<B> {
    body: Incoming,
    back: Option<(Weak<Senders<B>>, Authority, SendRequest<B>)>,
}

impl<B> PooledBody<B> {
    fn give_back(&mut self) {
        if let Some((pool, backend, sender)) = self.back.take()
            && let Some(pool) = pool.upgrade()
        {
            pool.put(&backend, sender);
        }
    }
}

impl<B> Body for PooledBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.give_back(),
            // Not reusable: the connection closes when its sender is dropped.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::{
        convert::Infallible,
        sync::atomic::{AtomicUsize, Ordering::SeqCst},
    };

    use http_body_util::{BodyExt, Empty, Full};
    use hyper::service::service_fn;

    use super::*;

    /// A listener on 127.0.0.1 that serves each connection it accepts with `serve`, in a task
    /// of its own, and counts them.
    async fn listen<F, Fut>(serve: F) -> (Authority, Arc<AtomicUsize>)
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, SeqCst);
                tokio::spawn(serve(stream));
            }
        });
        (authority, accepted)
    }

    /// A backend that answers every request with `size` bytes; counts its connections.
    async fn backend(size: usize) -> (Authority, Arc<AtomicUsize>) {
        listen(move |stream| async move {
            let svc = service_fn(move |_req| async move {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![b'x'; size]))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        })
        .await
    }

    fn pool(max_idle: usize, idle_ms: u64) -> Pool<Empty<Bytes>> {
        Pool::new(
            PoolSettings {
                max_idle_per_backend: max_idle,
                idle_timeout: Duration::from_millis(idle_ms),
                connect_timeout: Duration::from_secs(2),
                max_buf_size: 32 * 1024,
            },
            Arc::default(),
        )
    }

    fn get(authority: &Authority) -> Request<Empty<Bytes>> {
        Request::builder()
            .uri("/")
            .header("host", authority.as_str())
            .body(Empty::new())
            .unwrap()
    }

    /// A single-threaded runtime with I/O and timers, for the pools' tests.
    pub(in crate::proxy) fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_connection_read_to_the_end_is_reused() {
        rt().block_on(async {
            let (backend, accepted) = backend(100_000).await;
            let pool = pool(8, 60_000);
            for _ in 0..5 {
                let resp = pool.send(&backend, get(&backend)).await.unwrap();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body.len(), 100_000);
            }
            assert_eq!(accepted.load(SeqCst), 1);
        });
    }

    #[test]
    fn a_response_without_a_body_gives_its_connection_back_at_once() {
        rt().block_on(async {
            let (backend, accepted) = backend(0).await;
            let pool = pool(8, 60_000);
            for _ in 0..5 {
                let resp = pool.send(&backend, get(&backend)).await.unwrap();
                assert!(resp.body().is_end_stream());
                drop(resp);
            }
            assert_eq!(accepted.load(SeqCst), 1);
        });
    }

    #[test]
    fn a_response_dropped_unread_never_goes_back() {
        rt().block_on(async {
            let (backend, accepted) = backend(1_000_000).await;
            let pool = pool(8, 60_000);
            for _ in 0..3 {
                let resp = pool.send(&backend, get(&backend)).await.unwrap();
                drop(resp);
            }
            assert_eq!(accepted.load(SeqCst), 3);
        });
    }

    #[test]
    fn the_pool_keeps_at_most_max_idle_and_not_past_the_idle_timeout() {
        rt().block_on(async {
            let (backend, accepted) = backend(10).await;
            // Nothing kept: a connection per request.
            let none = pool(0, 60_000);
            for _ in 0..3 {
                let resp = none.send(&backend, get(&backend)).await.unwrap();
                resp.into_body().collect().await.unwrap();
            }
            assert_eq!(accepted.load(SeqCst), 3);
            // Idle longer than the timeout: a new connection.
            let short = pool(8, 50);
            let resp = short.send(&backend, get(&backend)).await.unwrap();
            resp.into_body().collect().await.unwrap();
            tokio::time::sleep(Duration::from_millis(120)).await;
            let resp = short.send(&backend, get(&backend)).await.unwrap();
            resp.into_body().collect().await.unwrap();
            assert_eq!(accepted.load(SeqCst), 5);
        });
    }

    #[test]
    fn an_unreachable_backend_is_a_connect_error() {
        rt().block_on(async {
            // Bound, then closed: nothing listens there.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
            drop(listener);
            let Err(err) = pool(8, 60_000).send(&authority, get(&authority)).await else {
                panic!("a response from a closed port");
            };
            assert!(matches!(err, SendError::Connect(_)), "{err:?}");
            assert!(!err.is_closed_before_response());
        });
    }
    /// A backend that answers one request per connection, keep-alive, then closes the
    /// connection, so the pool holds a connection the backend has closed; counts its
    /// connections.
    async fn closing_backend() -> (Authority, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        listen(|mut stream| async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            // Closed while the pool holds the connection idle.
            let _ = stream.shutdown().await;
        })
        .await
    }

    #[test]
    fn a_connection_the_backend_closed_while_idle_is_not_used() {
        rt().block_on(async {
            let (backend, accepted) = closing_backend().await;
            let pool = pool(8, 60_000);
            for i in 1..=3 {
                let resp = pool.send(&backend, get(&backend)).await.unwrap();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"ok");
                // Let the backend's close arrive: nothing polls the idle connection until the
                // next request takes it out, which must see the close and open another.
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert_eq!(accepted.load(SeqCst), i);
            }
        });
    }

    #[test]
    fn pruning_drops_an_idle_connection_the_backend_closed() {
        rt().block_on(async {
            let (backend, _) = closing_backend().await;
            let pool = pool(8, 60_000);
            let resp = pool.send(&backend, get(&backend)).await.unwrap();
            resp.into_body().collect().await.unwrap();
            let idle = |pool: &Pool<Empty<Bytes>>| {
                pool.inner
                    .idle
                    .lock()
                    .unwrap()
                    .values()
                    .map(Vec::len)
                    .sum::<usize>()
            };
            // Its task may already have seen the close (then it never went back).
            assert!(idle(&pool) <= 1);
            tokio::time::sleep(Duration::from_millis(50)).await;
            pool.inner.prune_all();
            assert_eq!(idle(&pool), 0);
        });
    }
}
