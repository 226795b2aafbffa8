//! The port-80 socket path: the fallback for everything XDP passes, and the whole product
//! where XDP is not available.
//!
//! Each connection's first request head is read here and answered by [`first::first_request`]
//! (the same parser, decision and response builder as the AF_XDP responder, so the bytes are
//! identical), then the connection is closed, lingering so a request body in flight cannot
//! turn the answer into a reset. A connection whose first request is proxied goes, with the
//! bytes already read, to hyper and the proxy service, which decides every later request of
//! the keep-alive connection.

pub mod first;
mod replay;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use force_https_proto::response;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::OwnedSemaphorePermit,
    time::Instant,
};

use crate::{
    edge::Edge,
    metrics::Metrics,
    net::{Shutdown, accept_loop, serve_connection},
    proxy::{ConnInfo, Proxy},
};
use first::{FirstRequest, first_request};
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
    let limits = &edge.settings.limits;
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
                return answer_and_close(stream, response::error_response(408)).await;
            }
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        let table = edge.policy.table();
        match first_request(&edge.settings, &table, &edge.metrics, &buf) {
            FirstRequest::Incomplete => continue,
            FirstRequest::Answer(bytes) => return answer_and_close(stream, &bytes).await,
            FirstRequest::Proxy => break,
        }
    }
    serve_proxied(
        stream,
        peer,
        Bytes::from(buf),
        edge,
        proxy,
        permit,
        shutdown,
    )
    .await
}

/// Hands a connection to hyper, replaying the bytes already read.
async fn serve_proxied(
    stream: TcpStream,
    peer: SocketAddr,
    read: Bytes,
    edge: Arc<Edge>,
    proxy: Arc<Proxy>,
    _permit: OwnedSemaphorePermit,
    shutdown: Shutdown,
) -> io::Result<()> {
    let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(80);
    let limits = &edge.settings.limits;
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
