//! The port-80 socket path: the fallback for everything XDP passes, and the whole product
//! where XDP is not available.
//!
//! Each connection's first request head is read here and answered by [`first::first_request`]
//! (the same parser, decision and response builder as the AF_XDP responder, so the bytes are
//! identical), then the connection is closed, lingering when a request body or more bytes
//! may be in flight, which could otherwise turn the answer into a reset ([`first::Close`]).
//! A connection whose first request is proxied goes, with the bytes already read, to hyper
//! and the proxy service, which decides every later request of the keep-alive connection.
//!
//! A connection reads the edge's settings once, when accepted, and keeps them to its end
//! (a configuration reload applies to the connections accepted after it). With `[log]
//! access` on, a first request answered here is logged with the head it came with.

pub mod first;
mod replay;

use std::{
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
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
    sync::OwnedSemaphorePermit,
    time::Instant,
};

use crate::{
    access_log::{Decided, Entry, PathTaken},
    edge::{Edge, Settings},
    metrics::Metrics,
    net::{Shutdown, accept_loop, serve_connection},
    proxy::{ConnInfo, Proxy},
};
use first::{Close, FirstRequest, first_request};
use replay::Replay;

/// How long a closed connection keeps reading (and discarding) what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How much a lingering close reads at most.
const LINGER_BYTES: usize = 1 << 20;

/// Accepts port-80 connections until shutdown.
pub async fn serve(listener: TcpListener, edge: Arc<Edge>, proxy: Arc<Proxy>, shutdown: Shutdown) {
    let sd = shutdown.clone();
    accept_loop(listener, "port-80 listener", sd, move |stream, peer| {
        Metrics::inc(&edge.metrics.http_connections);
        let _ = stream.set_nodelay(true);
        match edge.admit() {
            Some(permit) => {
                let (edge, proxy, shutdown) = (edge.clone(), proxy.clone(), shutdown.clone());
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, peer, edge, proxy, permit, shutdown).await {
                        tracing::debug!(%peer, "port-80 connection: {e}");
                    }
                });
            }
            None => {
                Metrics::inc(&edge.metrics.connections_rejected);
                tokio::spawn(answer_and_close(stream, response::error_response(503)));
            }
        }
    })
    .await;
}

/// Writes a complete answer, half-closes, and drains what the client still sends.
async fn answer_and_close(mut stream: TcpStream, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.shutdown().await?;
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => total += n,
        }
    }
    Ok(())
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    edge: Arc<Edge>,
    proxy: Arc<Proxy>,
    permit: OwnedSemaphorePermit,
    shutdown: Shutdown,
) -> io::Result<()> {
    let settings = edge.settings_full();
    let limits = &settings.limits;
    let (accepted, t0) = (SystemTime::now(), Instant::now());
    let deadline = Instant::now() + Duration::from_millis(limits.head_timeout_ms);
    // Most request heads are a few hundred bytes; the buffer grows only for larger ones.
    let mut buf: Vec<u8> = Vec::with_capacity(1024);

    // Read until the head is complete, too large, invalid, or late.
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len().min(limits.max_head_bytes));
        }
        let n = match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => {
                edge.metrics.count_status(408);
                let answer = response::error_response(408);
                if let Some(log) = edge.access_log() {
                    let e = first_entry(&settings, peer, &buf, answer, accepted, t0.elapsed());
                    log.log(e, &edge.metrics);
                }
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
                if let Some(log) = edge.access_log() {
                    let e = first_entry(&settings, peer, &buf, &bytes, accepted, t0.elapsed());
                    log.log(e, &edge.metrics);
                }
                return match close {
                    Close::Linger => answer_and_close(stream, &bytes).await,
                    // Dropped: closed, with a FIN after the answer.
                    Close::Now => stream.write_all(&bytes).await,
                };
            }
            FirstRequest::Proxy => break,
        }
    }
    serve_proxied(
        stream,
        peer,
        Bytes::from(buf),
        &settings,
        proxy,
        permit,
        shutdown,
    )
    .await
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

/// Hands a connection to hyper, replaying the bytes already read.
async fn serve_proxied(
    stream: TcpStream,
    peer: SocketAddr,
    read: Bytes,
    settings: &Settings,
    proxy: Arc<Proxy>,
    _permit: OwnedSemaphorePermit,
    shutdown: Shutdown,
) -> io::Result<()> {
    let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(80);
    let limits = &settings.limits;
    let info = ConnInfo::http(peer, local_port).with_head_limit(limits.max_head_bytes);
    let svc = service_fn(move |req| proxy.clone().handle(info.clone(), req));
    let io = TokioIo::new(Replay {
        pending: read,
        inner: stream,
    });
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
    let conn = builder.serve_connection(io, svc).with_upgrades();
    serve_connection(conn, shutdown, |c| c.graceful_shutdown())
        .await
        .map_err(io::Error::other)
}
