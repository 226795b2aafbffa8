//! The port-80 socket path: the fallback for everything XDP passes, and the whole product
//! where XDP is not available.
//!
//! Each connection's first request head is read here and answered by [`first::first_request`]
//! (the same parser, decision and response builder as the AF_XDP responder, so the bytes are
//! identical), then the connection is closed, lingering when a request body or more bytes
//! may be in flight, which could otherwise turn the answer into a reset ([`first::Close`]).
//!
//! The accept loop takes sockets without registering them with the runtime
//! ([`Unregistered`]) and reads what already arrived: a whole head answered and closed at
//! once (the common redirect) is answered right there, with one read, one write and one
//! close, and no task. Only a connection that must wait (a head still to come, a lingering
//! close, a proxied request) is registered and gets a task.
//! A connection whose first request is proxied goes, with the bytes already read, to the
//! keep-alive loop ([`crate::keepalive`]) and the proxy service, which decides every later request
//! of the connection; the loop serves `GET`s and `HEAD`s without a body itself and hands the
//! connection to hyper's server at the first other request.
//!
//! A connection reads the edge's settings once, when accepted, and keeps them to its end
//! (a configuration reload applies to the connections accepted after it). With `[log]
//! access` on, a first request answered here is logged with the head it came with.

pub mod first;

use std::{
    io,
    net::SocketAddr,
    pin::pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::{Bytes, BytesMut};
use force_https_proto::{
    head::{HeadStatus, parse_head, redirect_inputs},
    host::normalize,
    response,
};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};

use crate::{
    access_log::{Decided, Entry, PathTaken},
    edge::{Edge, Settings},
    keepalive::{self, Replay, Style, wire::Names},
    metrics::Metrics,
    net::{Shutdown, Unregistered, accept_loop, serve_connection},
    proxy::{ConnInfo, Proxy},
};
use first::{Close, FirstRequest, first_request};

/// What the accept loop reads of a new connection, bytes: a head longer than this is read on
/// by the connection's task.
const AT_ACCEPT_READ: usize = 4096;
/// How long a closed connection keeps reading (and discarding) what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How much a lingering close reads at most.
const LINGER_BYTES: usize = 1 << 20;

/// Accepts port-80 connections until shutdown.
pub async fn serve(listener: TcpListener, edge: Arc<Edge>, proxy: Arc<Proxy>, shutdown: Shutdown) {
    defer_accept(&listener);
    let listener = match Unregistered::new(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("port-80 listener: {e}; no longer accepting");
            return;
        }
    };
    let sd = shutdown.clone();
    accept_loop(listener, "port-80 listener", sd, move |socket, peer| {
        Metrics::inc(&edge.metrics.http_connections);
        let Some(permit) = edge.admit() else {
            Metrics::inc(&edge.metrics.connections_rejected);
            if let Ok(stream) = TcpStream::from_std(socket) {
                tokio::spawn(answer_and_close(stream, response::error_response(503)));
            }
            return;
        };
        let first = First::new(edge.settings_full());
        let Some(next) = first.at_accept(&socket, peer, &edge) else {
            // Answered and closed.
            return;
        };
        let stream = match TcpStream::from_std(socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, "port-80 connection: {e}");
                return;
            }
        };
        let (edge, proxy, shutdown) = (edge.clone(), proxy.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let done = match next {
                Next::Read(buf) => {
                    let _ = stream.set_nodelay(true);
                    connection(stream, peer, edge, proxy, first, buf, shutdown).await
                }
                Next::Proxy(buf) => {
                    let _ = stream.set_nodelay(true);
                    let settings = first.settings;
                    let read = BytesMut::from(Bytes::from(buf));
                    serve_proxied(stream, peer, read, &settings, proxy, shutdown).await
                }
                Next::Linger(answer) => answer_and_close(stream, &answer).await,
                Next::Write(rest) => {
                    let mut stream = stream;
                    stream.write_all(&rest).await
                }
            };
            if let Err(e) = done {
                tracing::debug!(%peer, "port-80 connection: {e}");
            }
        });
    })
    .await;
}

/// Asks the kernel to hand over a connection only once its first bytes arrived
/// (`TCP_DEFER_ACCEPT`, nginx's `listen ... deferred`): the accept loop then finds the request
/// head there and answers it at once. A client that sends nothing is handed over after about
/// a second all the same (the kernel resends its SYN-ACK, and accepts on the ACK to that), and
/// the head timeout runs from then. Not fatal: without it, the head is read when it comes.
fn defer_accept(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    let seconds: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&seconds).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!(
            "port-80 listener: TCP_DEFER_ACCEPT: {}",
            io::Error::last_os_error()
        );
    }
}

/// A connection's first request, from its accept on: the settings it keeps to its end, and
/// when it was accepted.
struct First {
    settings: Arc<Settings>,
    accepted: SystemTime,
    t0: Instant,
}

/// What a connection's task does after the accept loop read what was there.
enum Next {
    /// Read on: the head is not complete (these are its first bytes).
    Read(Vec<u8>),
    /// Hand the connection and these bytes to the proxy service.
    Proxy(Vec<u8>),
    /// Send this answer with a lingering close.
    Linger(Vec<u8>),
    /// Send the rest of an answer the socket did not take at once, then close.
    Write(Vec<u8>),
}

impl First {
    fn new(settings: Arc<Settings>) -> First {
        First {
            settings,
            accepted: SystemTime::now(),
            t0: Instant::now(),
        }
    }

    /// Reads what already arrived on a socket just accepted, and when it is a whole request
    /// head answered here and closed at once (a redirect), answers it from the accept loop:
    /// one read, one write, one close, no task and no registration with the runtime. `None`
    /// when the connection is done; else what its task does.
    fn at_accept(
        &self,
        socket: &std::net::TcpStream,
        peer: SocketAddr,
        edge: &Edge,
    ) -> Option<Next> {
        use std::io::{Read, Write};
        let mut read = [0u8; AT_ACCEPT_READ];
        let n = match (&*socket).read(&mut read) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(_) => return None,
        };
        let buf = &read[..n];
        if n == 0 {
            return Some(Next::Read(Vec::new()));
        }
        let table = edge.policy.table();
        match first_request(&self.settings, &table, &edge.metrics, buf) {
            FirstRequest::Incomplete => Some(Next::Read(buf.to_vec())),
            FirstRequest::Proxy => Some(Next::Proxy(buf.to_vec())),
            FirstRequest::Answer(answer, close) => {
                self.log(edge, peer, buf, &answer);
                match close {
                    Close::Linger => Some(Next::Linger(answer)),
                    Close::Now => match (&*socket).write(&answer) {
                        Ok(n) if n == answer.len() => None,
                        Ok(n) => Some(Next::Write(answer[n..].to_vec())),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            Some(Next::Write(answer))
                        }
                        Err(_) => None,
                    },
                }
            }
        }
    }

    /// Logs a first request answered here, when the access log is on.
    fn log(&self, edge: &Edge, peer: SocketAddr, buf: &[u8], answer: &[u8]) {
        if let Some(log) = edge.access_log() {
            let e = first_entry(
                &self.settings,
                peer,
                buf,
                answer,
                self.accepted,
                self.t0.elapsed(),
            );
            log.log(e, &edge.metrics);
        }
    }
}

/// Writes a complete answer, half-closes, and drains what the client still sends.
async fn answer_and_close(mut stream: TcpStream, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.shutdown().await?;
    let deadline = Instant::now() + LINGER;
    // On the heap, and only here: held in the future, these 4 KiB made every port-80
    // connection's task that large, a proxied keep-alive one too (run P).
    let mut sink = vec![0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => total += n,
        }
    }
    Ok(())
}

/// Reads a connection's first request head on from `buf` (what the accept loop read), and
/// answers it or hands the connection to the proxy service.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    edge: Arc<Edge>,
    proxy: Arc<Proxy>,
    first: First,
    mut buf: Vec<u8>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let settings = first.settings.clone();
    let limits = &settings.limits;
    let deadline = first.t0 + Duration::from_millis(limits.head_timeout_ms);
    // Most request heads are a few hundred bytes; the buffer grows only for larger ones.
    buf.reserve(1024usize.saturating_sub(buf.len()));

    // Read until the head is complete, too large, invalid, or late.
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len().min(limits.max_head_bytes));
        }
        let n = match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => {
                edge.metrics.count_status(408);
                let answer = response::error_response(408);
                first.log(&edge, peer, &buf, answer);
                return answer_and_close(stream, answer).await;
            }
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        let table = edge.policy.table();
        match first_request(&settings, &table, &edge.metrics, &buf) {
            FirstRequest::Incomplete => continue,
            FirstRequest::Answer(bytes, close) => {
                first.log(&edge, peer, &buf, &bytes);
                return match close {
                    Close::Linger => answer_and_close(stream, &bytes).await,
                    // Dropped: closed, with a FIN after the answer.
                    Close::Now => stream.write_all(&bytes).await,
                };
            }
            FirstRequest::Proxy => break,
        }
    }
    let read = BytesMut::from(Bytes::from(buf));
    serve_proxied(stream, peer, read, &settings, proxy, shutdown).await
}

/// The access log entry of a first request answered here: the head re-read from `buf` (only
/// when the log is on), the status and body length from the `answer` bytes.
fn first_entry(
    settings: &Settings,
    peer: SocketAddr,
    buf: &[u8],
    answer: &[u8],
    time: SystemTime,
    duration: Duration,
) -> Entry {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (method, target, host) = match parse_head(buf, settings.limits.max_head_bytes) {
        HeadStatus::Complete(h) => {
            let default_host = settings.default_host.as_deref().map(str::as_bytes);
            let host = redirect_inputs(&h, default_host)
                .ok()
                .map(|t| normalize(&t.authority));
            (h.method.to_string(), lossy(h.target), host)
        }
        // A head refused before it was complete or valid: what the request line shows.
        _ => {
            let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
            let mut parts = line.split(|b| *b == b' ');
            let method = lossy(parts.next().unwrap_or_default());
            let target = lossy(parts.next().unwrap_or_default());
            (method, target, None)
        }
    };
    // "HTTP/1.1 301 ..." and the body after the empty line.
    let status = answer
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (answer.len() - p - 4) as u64);
    Entry {
        time,
        client: peer.ip(),
        host,
        method,
        target: target.trim_end_matches('\r').to_string(),
        status,
        bytes: body,
        duration,
        path: PathTaken::Http80,
        decision: if matches!(status, 301 | 308) {
            Decided::Redirect
        } else {
            Decided::Local
        },
    }
}

/// Serves a proxied connection: the keep-alive loop first, then hyper's server from the
/// first request the loop leaves to it.
async fn serve_proxied(
    stream: TcpStream,
    peer: SocketAddr,
    read: BytesMut,
    settings: &Settings,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(80);
    let limits = &settings.limits;
    let info = ConnInfo::http(peer, local_port).with_head_limit(limits.max_head_bytes);
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let service = |req| proxy.clone().handle(info.clone(), req);
    // As `hyper1_builder` writes.
    let style = Style {
        names: Names::TitleCase,
        date: false,
    };
    let max_head = limits.max_head_bytes;
    let ended = keepalive::serve(
        stream,
        read,
        max_head,
        idle,
        style,
        shutdown.clone(),
        service,
    )
    .await?;
    match ended {
        keepalive::Ended::Closed => Ok(()),
        // Boxed: hyper's connection is as large as the loop's state, and only the connections
        // that reach it need room for it.
        keepalive::Ended::ToHyper {
            io: stream, read, ..
        } => Box::pin(serve_hyper(stream, read, info, settings, proxy, shutdown)).await,
    }
}

/// Hands a connection to hyper, replaying the bytes already read.
async fn serve_hyper<S>(
    stream: S,
    read: Bytes,
    info: ConnInfo,
    settings: &Settings,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
) -> io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| proxy.clone().handle(info.clone(), req));
    let io = TokioIo::new(Replay {
        pending: read,
        inner: stream,
    });
    let builder = hyper1_builder(&settings.limits);
    let conn = pin!(builder.serve_connection(io, svc).with_upgrades());
    serve_connection(conn, shutdown, |c| c.graceful_shutdown())
        .await
        .map_err(io::Error::other)
}

/// hyper's HTTP/1.1 server as port 80 uses it; the keep-alive loop writes what it would
/// (its `Style`; `keepalive`'s tests check the bytes against a server built the same way).
fn hyper1_builder(limits: &crate::config::Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.idle_timeout_ms))
        // Twice the limit, so that heads up to that size reach the proxy service, which answers
        // 414 or 431 as the socket path does; above it hyper answers 431 itself.
        .max_buf_size(limits.max_head_bytes.saturating_mul(2).max(8192))
        // Redirects sent from here must be byte-identical to the raw ones (see
        // proxy::local::redirect); backends' own Date headers are forwarded unchanged.
        .title_case_headers(true)
        .auto_date_header(false)
        .keep_alive(true);
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an `async fn` of seven parameters returns, without calling it.
    fn future_size<A, B, C, D, E, G, H, F: Future>(_: fn(A, B, C, D, E, G, H) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Bytes of a port-80 connection's task when it gets one (a head still to come, a
    /// lingering close, a proxied keep-alive connection), at most: 1,704 measured 2026-12-01
    /// (run P; 1,744 in a test build), 4,792 while the lingering close held its 4 KiB buffer
    /// in the future; 2,192 in a test build with the keep-alive loop (run U), whose own state
    /// (1.2 KB, its body writer 0.5 KB of it, and the read that watches for the client
    /// closing) takes the place of hyper's connection (boxed now, for the connections the loop
    /// hands over), and whose request in flight is boxed once per connection, as hyper's
    /// server does.
    const CONNECTION_BUDGET: usize = 2304;

    #[test]
    fn a_connection_task_stays_within_its_size_budget() {
        let size = future_size(connection);
        eprintln!("port-80 connection future: {size} bytes");
        assert!(
            size <= CONNECTION_BUDGET,
            "a port-80 connection's future is now {size} bytes (budget {CONNECTION_BUDGET}): box \
             what made it grow, or raise the budget and say why"
        );
    }
}
