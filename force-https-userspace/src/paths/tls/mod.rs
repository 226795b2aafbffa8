//! The TLS path: the terminator on 443 and its accept loop. Certificates are in [`certs`].
//!
//! The handshake is read lazily so the SNI can be checked first: with no certificate for it
//! (and no default), the handshake is refused with the `unrecognized_name` alert. Accepted
//! connections serve HTTP/1.1 or HTTP/2 (ALPN) through the proxy service: HTTP/1.1 through
//! the keep-alive loop (`crate::keepalive`) as long as its requests are the common kind,
//! then hyper's server; HTTP/2 through hyper's. A connection hyper serves as HTTP/2, or may
//! (its first bytes are a part of HTTP/2's preface), is ended when its client goes quiet for
//! `[limits] idle_timeout_ms` (`net::serve_until_idle`): hyper has no such timeout for HTTP/2,
//! nor while it reads the bytes that choose the protocol. An HTTP/2 stream whose response
//! waits as long for the client's flow-control window is reset (`streams.rs`).

pub mod certs;
mod streams;

use std::{net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use anyhow::{Context, anyhow, bail};
use bytes::BytesMut;
use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::OwnedSemaphorePermit,
};
use tokio_rustls::LazyConfigAcceptor;

pub use certs::CertStore;
use certs::{CertFiles, CertMap};
use streams::{GuardedStreams, WatchResponse};

use crate::{
    config::TlsConfig,
    edge::Edge,
    keepalive::{self, Replay, Style, wire::Names},
    metrics::Metrics,
    net::{ReadActivity, Shutdown, accept_loop, serve_connection, serve_until_idle},
    proxy::{Authority, ConnInfo, Proxy, TlsInfo},
};

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
        return Box::pin(serve_hyper(tls, info, &path, shutdown, false)).await;
    }
    // HTTP/1.1 (or no ALPN): the keep-alive loop first, written as hyper's `http1()` below
    // writes (names as held, `Date`).
    let style = Style {
        names: Names::AsHeld,
        date: true,
    };
    let idle = Duration::from_millis(path.edge.settings().limits.idle_timeout_ms);
    let max_head = path.settings.max_header_bytes;
    let service = |req| path.proxy.clone().handle(info.clone(), req);
    let read = BytesMut::new();
    let sd = shutdown.clone();
    match keepalive::serve(tls, read, max_head, idle, style, sd, service).await? {
        keepalive::Ended::Closed => Ok(()),
        // Boxed: only the connections that reach hyper need room for its connection.
        // After requests in HTTP/1.1, HTTP/1.1 only: HTTP/2's preface is then a bad request.
        // Before any, bytes that cannot begin the preface are HTTP/1.1 too (as hyper's
        // version check would find): only HTTP/2 with prior knowledge is left to hyper.
        keepalive::Ended::ToHyper { io, read, served } => {
            let http1_only = served > 0 || !could_be_h2(&read);
            let io = Replay {
                pending: read,
                inner: io,
            };
            Box::pin(serve_hyper(io, info, &path, shutdown, http1_only)).await
        }
    }
}

/// Serves a TLS connection with hyper's servers: HTTP/2, or HTTP/1.1 from the first request
/// the keep-alive loop leaves to it (HTTP/2 with prior knowledge too, hyper reading the
/// preface, unless `http1_only`).
///
/// Unless `http1_only` (hyper's HTTP/1.1 server has its own timeout between requests), a
/// client that sends nothing for `[limits] idle_timeout_ms` is asked to leave (HTTP/2:
/// `GOAWAY`), then dropped if it stays quiet as long again ([`serve_until_idle`]); while
/// requests are open, HTTP/2 `PING`s every half of that (at most 30 s) keep a live client from
/// looking quiet, and one that does not answer in 20 s is dropped.
async fn serve_hyper<T>(
    io: T,
    info: ConnInfo,
    path: &TlsPath,
    shutdown: Shutdown,
    http1_only: bool,
) -> anyhow::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, seen) = ReadActivity::new(io);
    let proxy = path.proxy.clone();
    // HTTP/2 data a TLS record at a time (`streams.rs`); HTTP/1.1 bodies as they come.
    let pieces = !http1_only;
    // The request's future is boxed where it is made: it is several KB, and hyper's HTTP/2
    // server moves each stream's future three times before tokio's task cell holds it (into
    // its stream state, to the executor, into the cell), a copy of the whole size each.
    // HTTP/1.1 pays the allocation too (one service type serves both): no change in its
    // instructions per request (callgrind, BENCHMARKS.md run Y).
    let svc = service_fn(move |req| {
        WatchResponse::new(Box::pin(proxy.clone().handle(info.clone(), req)), pieces)
    });
    let idle = Duration::from_millis(path.edge.settings().limits.idle_timeout_ms);
    let mut builder = auto::Builder::new(GuardedStreams {
        idle,
        metrics: path.edge.metrics.clone(),
    });
    let tls_cfg = &path.settings;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
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
        .keep_alive_interval(Some(h2_ping_interval(idle)));
    if http1_only {
        builder = builder.http1_only();
    }
    let conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), svc));
    let m = &path.edge.metrics;
    let served = if http1_only {
        serve_connection(conn, shutdown, |c| c.graceful_shutdown()).await
    } else {
        serve_until_idle(
            conn,
            shutdown,
            |c| c.graceful_shutdown(),
            &seen,
            idle,
            || Metrics::inc(&m.tls_idle_shutdowns),
        )
        .await
    };
    served.map_err(|e| anyhow!("{e}"))
}

/// How long an HTTP/2 connection with open streams may be without a frame from its client
/// before the edge sends a `PING` (hyper's keep-alive): half the idle timeout, so that a live
/// client's answer always comes before it, and at most 30 s.
fn h2_ping_interval(idle: Duration) -> Duration {
    (idle / 2).clamp(Duration::from_millis(1), Duration::from_secs(30))
}

/// HTTP/2's connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a connection that begins with `read` may be HTTP/2 with prior knowledge: `read`
/// is the preface, or the start of it, or begins with it.
fn could_be_h2(read: &[u8]) -> bool {
    H2_PREFACE.starts_with(&read[..read.len().min(H2_PREFACE.len())])
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
    fn only_the_prefaces_start_may_be_http2() {
        for read in [
            &b""[..],
            b"P",
            b"PRI * HTTP/2.0\r\n",
            H2_PREFACE,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04",
        ] {
            assert!(could_be_h2(read), "{read:?}");
        }
        for read in [
            &b"POST / HTTP/1.1\r\n"[..],
            b"PRI * HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r",
        ] {
            assert!(!could_be_h2(read), "{read:?}");
        }
    }

    #[test]
    fn unrecognized_name_alert_bytes() {
        // ContentType alert(21), TLS 1.2, length 2, level fatal(2), description 112.
        assert_eq!(ALERT_UNRECOGNIZED_NAME, [21, 3, 3, 0, 2, 2, 112]);
    }
}
