//! The port-80 socket path: the fallback for everything XDP passes, and the whole product
//! where XDP is not available.
//!
//! Each connection's first request head is read and parsed here, by the same parser the
//! AF_XDP responder uses. Redirects and errors are answered with the bytes of
//! [`force_https_proto::response`], byte for byte what the fast path sends, then the
//! connection is closed (lingering, so a request body in flight cannot turn our answer into a
//! reset). Requests that are proxied hand the connection, with the bytes already read, to
//! hyper and [`crate::proxy::handle`], which then decides every later request of the
//! keep-alive connection.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes};
use force_https_proto::{
    head::{HeadStatus, parse_head, redirect_inputs},
    host::normalize,
    response::{self, RedirectStatus},
};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, watch},
    time::Instant,
};

use crate::{
    daemon::Shared,
    metrics::Metrics,
    policy::{Action, decide},
    proxy::{self, ConnInfo, Scheme},
};

/// How long a closed connection keeps reading (and discarding) what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How much a lingering close reads at most.
const LINGER_BYTES: usize = 1 << 20;

/// Accepts port-80 connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept on port 80 failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        Metrics::inc(&shared.metrics.http_connections);
        let _ = stream.set_nodelay(true);
        match shared.conn_limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, peer, shared, permit, shutdown).await {
                        tracing::debug!(%peer, "port-80 connection: {e}");
                    }
                });
            }
            Err(_) => {
                Metrics::inc(&shared.metrics.connections_rejected);
                tokio::spawn(answer_and_close(stream, response::error_response(503)));
            }
        }
    }
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
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let limits = &shared.config.limits;
    let max = limits.max_head_bytes;
    let deadline = Instant::now() + Duration::from_millis(limits.head_timeout_ms);
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let m = &shared.metrics;

    // Read until the head is complete, too large, invalid, or late.
    let outcome = loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => {
                m.count_status(408);
                return answer_and_close(stream, response::error_response(408)).await;
            }
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf, max) {
            HeadStatus::Partial => continue,
            HeadStatus::Error(e) => break Err(e.status()),
            HeadStatus::Complete(head) => {
                let default_host = shared.config.default_host.as_deref().map(str::as_bytes);
                let t = match redirect_inputs(&head, default_host) {
                    Ok(t) => t,
                    Err(e) => break Err(e.status()),
                };
                let host = normalize(&t.authority);
                let table = shared.policy.table();
                let (entry, action) =
                    decide(&table, &host, head.method, t.path_and_query, t.is_asterisk);
                match action {
                    Action::Redirect(status) => {
                        if let Some(e) = entry {
                            Metrics::inc(&e.stats.redirects);
                        }
                        Metrics::inc(match status {
                            RedirectStatus::Moved301 => &m.redirects_301,
                            RedirectStatus::Permanent308 => &m.redirects_308,
                        });
                        match response::redirect(
                            status,
                            &host,
                            shared.config.https_port,
                            t.path_and_query,
                        ) {
                            Some(bytes) => break Ok(Some(bytes)),
                            None => break Err(400),
                        }
                    }
                    Action::NotFound => break Err(404),
                    Action::Proxy => break Ok(None),
                }
            }
        }
    };
    match outcome {
        Err(status) => {
            m.count_status(status);
            answer_and_close(stream, response::error_response(status)).await
        }
        Ok(Some(redirect)) => answer_and_close(stream, &redirect).await,
        Ok(None) => serve_proxied(stream, peer, Bytes::from(buf), shared, permit, shutdown).await,
    }
}

/// Hands a connection to hyper, replaying the bytes already read.
async fn serve_proxied(
    stream: TcpStream,
    peer: SocketAddr,
    read: Bytes,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let info = ConnInfo {
        peer,
        scheme: Scheme::Http,
    };
    let limits = shared.config.limits.clone();
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| proxy::handle(svc_shared.clone(), info, req));
    let io = TokioIo::new(Replay {
        pending: read,
        inner: stream,
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.idle_timeout_ms))
        .max_buf_size(limits.max_head_bytes.max(8192))
        // Redirects sent from here must be byte-identical to the raw ones (see
        // proxy::redirect_response); backends' own Date headers are forwarded unchanged.
        .title_case_headers(true)
        .auto_date_header(false)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc).with_upgrades();
    tokio::pin!(conn);
    let mut draining = *shutdown.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                return r.map_err(io::Error::other);
            }
            c = shutdown.changed(), if !draining => {
                if c.is_err() || *shutdown.borrow() {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A stream that first yields bytes already read from it.
struct Replay<S> {
    pending: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pending.is_empty() {
            let n = self.pending.len().min(buf.remaining());
            buf.put_slice(&self.pending[..n]);
            self.pending.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
