//! The TLS path: the terminator on 443 and its accept loop. Certificates are in [`certs`].
//!
//! The handshake is read lazily so the SNI can be checked first: with no certificate for it
//! (and no default), the handshake is refused with the `unrecognized_name` alert. Accepted
//! connections serve HTTP/1.1 or HTTP/2 (ALPN) through the proxy service: HTTP/1.1 through
//! the keep-alive loop (`crate::keepalive`) as long as its requests are the common kind,
//! then hyper's server; HTTP/2 through hyper's.

pub mod certs;

use std::{net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use anyhow::{Context, anyhow, bail};
use bytes::BytesMut;
use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::OwnedSemaphorePermit,
};
use tokio_rustls::LazyConfigAcceptor;

pub use certs::CertStore;
use certs::{CertFiles, CertMap};

use crate::{
    config::TlsConfig,
    edge::Edge,
    keepalive::{self, Replay, Style, wire::Names},
    metrics::Metrics,
    net::{Shutdown, accept_loop, serve_connection},
    proxy::{Authority, ConnInfo, Proxy, TlsInfo},
};

/// hyper's executor for the HTTP/2 streams of a connection: each stream's future is boxed
/// once before tokio spawns it. The proxy's request future is several KB (about 7 KB when
/// this was measured, 4.2 KB since); spawned unboxed, it was copied seven times on its way
/// into tokio's task cell (callgrind, `BENCHMARKS.md` run N). HTTP/1.1 connections spawn
/// nothing per request, so they are unaffected.
#[derive(Clone, Copy, Debug)]
struct BoxedStreams;

impl<F> hyper::rt::Executor<F> for BoxedStreams
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Box::pin(fut));
    }
}

/// The certificate a connection presented for the name in its SNI: it may serve the hosts
/// whose certificate (by the current map, so a reload changes nothing for names it did not
/// move) is the same file pair. A client that sent no SNI (an IP literal, a health check by
/// address) chose no name, so nothing is misdirected on its connection.
struct Presented {
    map: Arc<arc_swap::ArcSwap<CertMap>>,
    /// `None`: no SNI.
    files: Option<CertFiles>,
}

impl Authority for Presented {
    fn covers(&self, host: &str) -> bool {
        match &self.files {
            None => true,
            Some(files) => self.map.load().serves_with(host, files),
        }
    }
}

/// The most response data an HTTP/2 stream buffers ahead of the socket, bytes (hyper's
/// default: 400 KiB). The kernel's socket buffer holds what is in flight beyond it.
const H2_SEND_BUF: usize = 64 * 1024;

/// A fatal `unrecognized_name` alert record (TLS 1.2 record layer, as before ServerHello).
const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// What a TLS listener serves with.
pub struct TlsPath {
    /// The shared edge state.
    pub edge: Arc<Edge>,
    /// The proxy service.
    pub proxy: Arc<Proxy>,
    /// The certificates.
    pub certs: Arc<CertStore>,
    /// `[tls]` settings.
    pub settings: TlsConfig,
}

/// Accepts TLS connections until shutdown.
pub async fn serve(listener: TcpListener, path: Arc<TlsPath>, shutdown: Shutdown) {
    let sd = shutdown.clone();
    accept_loop(listener, "TLS listener", sd, move |stream, peer| {
        let m = &path.edge.metrics;
        Metrics::inc(&m.https_connections);
        let _ = stream.set_nodelay(true);
        let Some(permit) = path.edge.admit() else {
            // No HTTP answer is possible before the handshake: just close.
            Metrics::inc(&m.connections_rejected);
            return;
        };
        let (path, shutdown) = (path.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, path, permit, shutdown).await {
                tracing::debug!(%peer, "TLS connection: {e:#}");
            }
        });
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    path: Arc<TlsPath>,
    _permit: OwnedSemaphorePermit,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let store = &path.certs;
    let m = &path.edge.metrics;
    let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(443);
    let timeout = Duration::from_millis(path.settings.handshake_timeout_ms);
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        let sni = start.client_hello().server_name().map(str::to_owned);
        if !store.map.load().knows(sni.as_deref()) {
            return Ok::<_, std::io::Error>(Err((sni, start.io)));
        }
        Ok(Ok(start.into_stream(store.config.clone()).await?))
    };
    let tls = match tokio::time::timeout(timeout, handshake).await {
        Err(_) => {
            Metrics::inc(&m.tls_handshake_failures);
            bail!("TLS handshake timed out");
        }
        Ok(Err(e)) => {
            Metrics::inc(&m.tls_handshake_failures);
            return Err(e).context("TLS handshake");
        }
        Ok(Ok(Err((sni, mut stream)))) => {
            Metrics::inc(&m.tls_unknown_sni);
            Metrics::inc(&m.tls_handshake_failures);
            let _ = stream.write_all(&ALERT_UNRECOGNIZED_NAME).await;
            let _ = stream.shutdown().await;
            bail!("no certificate for SNI {sni:?}");
        }
        Ok(Ok(Ok(tls))) => tls,
    };
    let (sni, h2, tls) = presented_name(tls);
    let presented = sni
        .as_deref()
        .and_then(|name| store.map.load().files_for(Some(name)));
    let info = ConnInfo::https(
        peer,
        local_port,
        Arc::new(TlsInfo {
            sni,
            authority: Box::new(Presented {
                map: store.map.clone(),
                files: presented,
            }),
        }),
    )
    .with_head_limit(path.settings.max_header_bytes);
    if h2 {
        // Boxed, as below: the loop's state and hyper's connection do not share the task.
        return Box::pin(serve_hyper(TokioIo::new(tls), info, &path, shutdown, false)).await;
    }
    // HTTP/1.1 (or no ALPN): the keep-alive loop first, written as hyper's `http1()` below
    // writes (names as held, `Date`).
    let style = Style {
        names: Names::AsHeld,
        date: true,
    };
    let idle = Duration::from_millis(path.edge.settings().limits.idle_timeout_ms);
    let max_head = path.settings.max_header_bytes;
    let service = |req| path.proxy.clone().respond(info.clone(), req);
    let read = BytesMut::new();
    let sd = shutdown.clone();
    match keepalive::serve(tls, read, max_head, idle, style, sd, service).await? {
        keepalive::Ended::Closed => Ok(()),
        // Boxed: only the connections that reach hyper need room for its connection.
        // After requests in HTTP/1.1, HTTP/1.1 only: HTTP/2's preface is then a bad request.
        keepalive::Ended::ToHyper { io, read, served } => {
            let io = TokioIo::new(Replay {
                pending: read,
                inner: io,
            });
            Box::pin(serve_hyper(io, info, &path, shutdown, served > 0)).await
        }
    }
}

/// Serves a TLS connection with hyper's servers: HTTP/2, or HTTP/1.1 from the first request
/// the keep-alive loop leaves to it (HTTP/2 with prior knowledge too, hyper reading the
/// preface, unless `http1_only`).
async fn serve_hyper<I>(
    io: I,
    info: ConnInfo,
    path: &TlsPath,
    shutdown: Shutdown,
    http1_only: bool,
) -> anyhow::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let proxy = path.proxy.clone();
    let svc = service_fn(move |req| proxy.clone().handle(info.clone(), req));
    let mut builder = auto::Builder::new(BoxedStreams);
    let tls_cfg = &path.settings;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(
            path.edge.settings().limits.idle_timeout_ms,
        ))
        // Twice the limit: the proxy service answers 414/431 (with HSTS) up to there.
        .max_buf_size(tls_cfg.max_header_bytes.saturating_mul(2).max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(tls_cfg.max_concurrent_streams)
        // Response data an HTTP/2 stream holds ahead of the socket (hyper's default 400 KiB
        // per stream was most of the memory of 200 slow downloads on one connection).
        .max_send_buf_size(H2_SEND_BUF)
        .max_header_list_size(u32::try_from(tls_cfg.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    if http1_only {
        builder = builder.http1_only();
    }
    let conn = pin!(builder.serve_connection_with_upgrades(io, svc));
    serve_connection(conn, shutdown, |c| c.graceful_shutdown())
        .await
        .map_err(|e| anyhow!("{e}"))
}

/// The name the client asked for (SNI, lowercase, without a final dot), whether it chose
/// HTTP/2 by ALPN, and the stream. A function of its own, taking the stream by value: borrowed
/// in the connection's `async fn`, the stream kept a slot of its own (1.2 KB) in the task for
/// the connection's whole life, beside the copy that is driven (run P).
fn presented_name(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
) -> (
    Option<String>,
    bool,
    tokio_rustls::server::TlsStream<TcpStream>,
) {
    let session = tls.get_ref().1;
    let sni = session
        .server_name()
        .map(|s| s.trim_end_matches('.').to_ascii_lowercase());
    let h2 = session.alpn_protocol() == Some(b"h2");
    (sni, h2, tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an `async fn` of five parameters returns, without calling it.
    fn future_size<A, B, C, D, E, F: Future>(_: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Bytes of a TLS connection's task, at most: 4,792 measured 2026-12-01 (run P; 4,832 in a
    /// test build), 8,800 before the connection was pinned once where it is built and the TLS
    /// stream stopped keeping a slot of its own; 5,448 in a test build with the keep-alive
    /// loop (run U): the TLS stream (about 1.1 KB) and the loop's state, with hyper's
    /// connection boxed apart (HTTP/2, and HTTP/1.1 from the first request the loop hands
    /// over). Every open connection holds this much, idle or not.
    const CONNECTION_BUDGET: usize = 5504;

    #[test]
    fn a_connection_task_stays_within_its_size_budget() {
        let size = future_size(connection);
        eprintln!("TLS connection future: {size} bytes");
        assert!(
            size <= CONNECTION_BUDGET,
            "a TLS connection's future is now {size} bytes (budget {CONNECTION_BUDGET}): box what \
             made it grow, or raise the budget and say why"
        );
    }

    #[test]
    fn unrecognized_name_alert_bytes() {
        // ContentType alert(21), TLS 1.2, length 2, level fatal(2), description 112.
        assert_eq!(ALERT_UNRECOGNIZED_NAME, [21, 3, 3, 0, 2, 2, 112]);
    }
}
