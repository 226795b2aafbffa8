//! The upstream phase: pooled HTTP/1.1 to every backend, the request rewritten for the
//! backend, timeouts mapped to 502/504, and `Upgrade` (WebSocket) tunnels. A request without
//! a body goes on the direct path (`direct.rs`); one with a body, or an upgrade, on hyper's
//! client (`pool.rs`).
//!
//! A backend may close a kept-alive connection at any moment (its own idle timeout, a restart,
//! `Connection: close` semantics it did not announce); a request sent on a pooled connection
//! the backend has just closed fails with nothing answered. Such a request is sent once more,
//! on another connection, when it is safe to repeat (RFC 9110 §9.2.2): an idempotent method,
//! no request body, not an upgrade, and the failure is the connection closing before any
//! response byte. Both tries fall within `[proxy] response_timeout_ms`.
//!
//! `[proxy] response_timeout_ms` counts from the moment the request, body included, has been
//! sent to the backend (or from the start for a request without a body): a big or slow upload
//! is not a slow backend. A backend that answers before reading the whole body is served at once.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Empty};
use hyper::{
    Method, Request, Response, StatusCode, Uri, Version,
    body::{Body as _, Frame, SizeHint},
    header::{self, HeaderMap, HeaderValue},
    http::uri,
};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::{
    Body, ConnInfo, RequestBody,
    direct::Direct,
    local::{self, full},
    pool::{Pool, PoolSettings, SendError},
    request::{self, set_upstream_fields, strip_hop_by_hop},
};
use crate::{
    config::{Backend, ProxyConfig},
    metrics::Metrics,
    net,
};

/// The most a backend connection buffers ahead of the client, bytes; also the largest
/// response head a backend may send (larger: 502). nginx's default is 4-8 KiB, HAProxy's about
/// 15 KiB. 64 KiB held 23 MB of the 53 MB heap with 200 slow 1 MB transfers (BENCHMARKS.md).
const UPSTREAM_READ_BUF: usize = 32 * 1024;

/// A request body to a backend on hyper's path: the client's, or nothing (an upgrade, `CONNECT`).
type UpstreamBody = Either<Sent, Empty<Bytes>>;

/// The client's request body on its way to the backend; says when it has been sent whole
/// (or has failed, or was dropped), which starts the response timeout.
///
/// A client that stops sending its body for `[limits] idle_timeout_ms` fails the request
/// (`idle` fires; the answer is 408): a dripped upload cannot hold a backend connection and a
/// connection slot forever.
struct Sent {
    inner: RequestBody,
    done: Option<oneshot::Sender<()>>,
    idle: Pin<Box<tokio::time::Sleep>>,
    idle_for: Duration,
    timed_out: Arc<AtomicBool>,
}

impl Sent {
    fn new(
        inner: RequestBody,
        done: oneshot::Sender<()>,
        idle_for: Duration,
        timed_out: Arc<AtomicBool>,
    ) -> Sent {
        // Only for a body still to come: a bodyless request is sent without one (`forward`).
        Sent {
            inner,
            done: Some(done),
            idle: Box::pin(tokio::time::sleep(idle_for)),
            idle_for,
            timed_out,
        }
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

impl hyper::body::Body for Sent {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            self.finish();
        }
        match polled {
            Poll::Pending => {
                if self.idle.as_mut().poll(cx).is_ready() {
                    self.timed_out.store(true, Relaxed);
                    self.finish();
                    return Poll::Ready(Some(Err(format!(
                        "the client sent no request body for {} ms",
                        self.idle_for.as_millis()
                    )
                    .into())));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.idle_for;
                self.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The pooled HTTP/1.1 client to all backends.
pub struct Upstream {
    pool: Pool<UpstreamBody>,
    /// Requests without a body (`direct.rs`).
    direct: Direct,
    response_timeout: Duration,
    /// How long a client may pause while sending a request body (`[limits] idle_timeout_ms`).
    body_idle: Duration,
}

impl Upstream {
    /// A client with the `[proxy]` timeouts and pool size; `body_idle` is the longest pause
    /// allowed in a client's request body.
    pub fn new(cfg: &ProxyConfig, body_idle: Duration, metrics: Arc<Metrics>) -> Upstream {
        // A backend connection reads ahead at most UPSTREAM_READ_BUF (hyper's default grows
        // to ~400 KiB): with many slow clients, read-ahead is most of the proxy's memory.
        let settings = PoolSettings {
            max_idle_per_backend: cfg.pool_max_idle_per_host,
            idle_timeout: Duration::from_millis(cfg.pool_idle_timeout_ms),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            max_buf_size: UPSTREAM_READ_BUF,
        };
        Upstream {
            pool: Pool::new(settings, metrics.clone()),
            direct: Direct::new(settings, metrics),
            response_timeout: Duration::from_millis(cfg.response_timeout_ms),
            body_idle,
        }
    }

    /// Sends `req` for `host` to `backend` and returns its response (hop-by-hop headers
    /// removed), or force-https's own 502 (unreachable), 504 (no response head within
    /// `[proxy] response_timeout_ms` of the request being sent) or 408 (the client's request
    /// body stalled), counted.
    // Not an `async fn`: see the comment on the block.
    #[allow(clippy::manual_async_fn)]
    pub fn forward<'a>(
        &'a self,
        m: &'a Metrics,
        conn: &'a ConnInfo,
        backend: &'a Backend,
        host: &'a str,
        req: &'a mut Request<RequestBody>,
    ) -> impl Future<Output = Response<Body>> + 'a {
        // An `async` block, not an `async fn`: an `async fn` keeps each by-value parameter
        // twice in its future (the argument and its moved copy, rust-lang/rust#62958), and
        // this future is part of every proxied request's (run P: 296 bytes less). The request
        // is borrowed for the same reason: taken, it was held by the caller's future, this
        // one, and the direct path's (264 and 224 bytes more).
        async move {
            let upgrade = request::is_upgrade(req);
            if !upgrade && req.body().is_end_stream() && req.method() != Method::CONNECT {
                let te_trailers = take_te_trailers(req.headers_mut());
                return self
                    .forward_direct(m, backend, host, req, conn, te_trailers)
                    .await;
            }
            // Boxed: the rare requests (a body, an upgrade, `CONNECT`) go through hyper's
            // client, whose future was most of every request's (3,208 bytes in a test build,
            // all of it copied at each move of the request future, direct or not). They take
            // the request whole (an empty one is left: no allocation).
            let req = std::mem::replace(req, Request::new(RequestBody::Empty));
            Box::pin(self.forward_hyper(m, conn, backend, host, req, upgrade)).await
        }
    }

    /// [`Upstream::forward`] through hyper's client: a request with a body, an upgrade, or
    /// `CONNECT`.
    // Not an `async fn`: see `forward`.
    #[allow(clippy::manual_async_fn)]
    fn forward_hyper<'a>(
        &'a self,
        m: &'a Metrics,
        conn: &'a ConnInfo,
        backend: &'a Backend,
        host: &'a str,
        mut req: Request<RequestBody>,
        upgrade: bool,
    ) -> impl Future<Output = Response<Body>> + 'a {
        async move {
            let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
            let (mut parts, body) = req.into_parts();
            let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
            let te_trailers = take_te_trailers(&mut parts.headers);
            // Room for what is added below (Host, five forwarding headers, CDN-Loop, TE,
            // Upgrade, Connection) in one step: inserted one by one into a map sized for the
            // client's headers, they made it grow and rehash up to twice (callgrind: 3.1k
            // instructions for the forwarding headers of an HTTP/2 request). A map that cannot
            // grow (`MaxSizeReached`, 32,768 entries) is left to fail as before.
            let _ = parts.headers.try_reserve(10);
            let host_value = request::upstream_host_value(&parts.headers, &parts.uri, conn, host);
            // Origin-form (RFC 9112 §3.2.1), sharing the request's bytes: `Host` names the site.
            parts.uri = Uri::from(
                parts
                    .uri
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| uri::PathAndQuery::from_static("/")),
            );
            parts.version = Version::HTTP_11;
            set_upstream_fields(&mut parts.headers, conn, &host_value, te_trailers);
            if let (true, Some(u)) = (upgrade, upgrade_value) {
                parts.headers.insert(header::UPGRADE, u);
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            // A request without a body (an upgrade, `CONNECT`) is sent whole at once: no body to
            // watch, and its response timeout starts now (one timer, no channel). None of these
            // is repeated: every request that may be (idempotent, no body, no upgrade) takes the
            // direct path.
            let (breq, sent_rx, timed_out) = if body.is_end_stream() {
                (
                    Request::from_parts(parts, Either::Right(Empty::new())),
                    None,
                    None,
                )
            } else {
                let (sent_tx, sent_rx) = oneshot::channel();
                let timed_out = Arc::new(AtomicBool::new(false));
                let sent = Sent::new(body, sent_tx, self.body_idle, timed_out.clone());
                let breq = Request::from_parts(parts, Either::Left(sent));
                (breq, Some(sent_rx), Some(timed_out))
            };

            // The future that sends is the largest part of the request's state, and every move
            // of the request future copies it (BENCHMARKS.md, run N).
            let send = self.pool.send(&backend.uri_authority, breq);
            // Pinned here, once: moved into the block below, it would be held twice.
            let mut send = std::pin::pin!(send);
            // The response timeout starts once the request body has been sent (see the module doc).
            let result = async {
                if let Some(sent_rx) = sent_rx {
                    tokio::select! {
                        biased;
                        r = &mut send => return Ok(r),
                        _ = sent_rx => {}
                    }
                }
                tokio::time::timeout(self.response_timeout, send).await
            }
            .await;
            let mut bresp = match result {
                Ok(Err(e)) if timed_out.is_some_and(|t| t.load(Relaxed)) => {
                    m.count_status(408);
                    tracing::debug!(host, "request body stalled: {}", chain(&e));
                    return local::error_closing(408);
                }
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return unreachable(m, backend, host, Some(e)),
                Err(_) => return unreachable(m, backend, host, None),
            };
            if bresp.status() == StatusCode::SWITCHING_PROTOCOLS
                && let Some(client_upgrade) = client_upgrade
            {
                let backend_upgrade = hyper::upgrade::on(&mut bresp);
                tokio::spawn(async move {
                    match tokio::try_join!(client_upgrade, backend_upgrade) {
                        Ok((c, b)) => {
                            let mut c = TokioIo::new(c);
                            let mut b = TokioIo::new(b);
                            let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
                        }
                        Err(e) => tracing::debug!("upgrade failed: {e}"),
                    }
                });
                let (parts, _) = bresp.into_parts();
                return Response::from_parts(parts, full(Bytes::new()));
            }
            let (mut parts, body) = bresp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
        }
    }

    /// A request without a body, on the direct path (`direct.rs`): its head written with the
    /// client's fields and this edge's (`request::upstream_fields`), without rebuilding the
    /// header map; sent once more, from the same head, on another connection when the backend
    /// closed without answering and the method is idempotent (as on hyper's path), all within
    /// `[proxy] response_timeout_ms`.
    // Not an `async fn`, as `forward`.
    #[allow(clippy::manual_async_fn)]
    fn forward_direct<'a>(
        &'a self,
        m: &'a Metrics,
        backend: &'a Backend,
        host: &'a str,
        req: &'a mut Request<RequestBody>,
        conn: &'a ConnInfo,
        te_trailers: bool,
    ) -> impl Future<Output = Response<Body>> + 'a {
        async move {
            let direct_head = request::DirectHead::new(req, conn, host, te_trailers);
            let head = |out: &mut Vec<u8>| direct_head.encode(out);
            let (to, method) = (&backend.uri_authority, direct_head.method());
            // Both tries by one deadline, timed by the connections' own timers.
            let deadline = net::deadline_after(self.response_timeout);
            let sent = 'sent: {
                // In a block of its own: the first try's result (320 bytes) is not kept in
                // the future while the second goes.
                {
                    let e = match self.direct.send(to, method, &head, deadline).await {
                        Err(e) if e.is_closed_before_response() && is_idempotent(method) => e,
                        r => break 'sent r,
                    };
                    retrying(m, backend, host, &e);
                }
                self.direct.send(to, method, &head, deadline).await
            };
            match sent {
                Ok(bresp) => {
                    let (mut parts, body) = bresp.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    Response::from_parts(parts, body.boxed_unsync())
                }
                Err(SendError::ResponseTimeout) => unreachable(m, backend, host, None),
                Err(e) => unreachable(m, backend, host, Some(e)),
            }
        }
    }
}

/// Whether the client's request asks for trailers (`TE: trailers`, which the backend request
/// carries on: RFC 9110 §10.1.4), read before its hop-by-hop fields (`TE` among them) are
/// removed from `headers`.
fn take_te_trailers(headers: &mut HeaderMap) -> bool {
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    strip_hop_by_hop(headers);
    te_trailers
}

/// A request goes once more because its backend closed the connection before answering:
/// counted (`backend_retries`) and logged at debug level.
fn retrying(m: &Metrics, backend: &Backend, host: &str, e: &SendError) {
    Metrics::inc(&m.backend_retries);
    tracing::debug!(
        backend = %backend.authority,
        host,
        "backend closed the connection before answering; sending once more: {}",
        chain(e)
    );
}

/// force-https's own answer when the backend gave none: 502, or 504 when `e` is `None` (no
/// response within `[proxy] response_timeout_ms`); counted and logged.
fn unreachable(m: &Metrics, backend: &Backend, host: &str, e: Option<SendError>) -> Response<Body> {
    match e {
        None => {
            m.count_status(504);
            tracing::warn!(backend = %backend.authority, host, "backend timed out");
            local::error(504)
        }
        Some(e) => {
            m.count_status(502);
            tracing::warn!(
                backend = %backend.authority,
                host,
                "backend unreachable: {}",
                chain(&e)
            );
            local::error(502)
        }
    }
}

/// Methods a client may repeat automatically after a connection failure (RFC 9110 §9.2.2).
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// An error and its causes, `: `-separated (the outer error names only the phase).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    // Bounded: error chains are short; stop after a few links in any case.
    for _ in 0..8 {
        let Some(c) = cause else { break };
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
