//! The reverse proxy: the hyper service of both client-facing listeners (port-80 connections
//! whose first request was not answered raw, and every TLS connection), built as phases
//! (the pingora model):
//!
//! 1. **request** ([`request`]): the host the request is for (400 when there is none);
//! 2. **decision**: the one policy decision (`crate::policy::decide`), counted once;
//! 3. **answer**: a redirect or local answer ([`local`]), or the **upstream** phase
//!    ([`upstream`]): the backend over pooled HTTP/1.1, bodies streamed both ways,
//!    forwarding headers set from what force-https saw, `Upgrade` tunnelled;
//! 4. **response filters** ([`filters`]): every response, local ones included, passes the
//!    chain; HSTS is the first filter.

#[cfg(test)]
mod alloc_budget;
pub mod direct;
pub mod filters;
pub mod h1;
pub mod local;
pub mod pool;
pub mod request;
pub mod upstream;

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::{Request, Response, body::Incoming};

use crate::{
    access_log,
    config::ProxyConfig,
    edge::Edge,
    policy::{Decision, RequestFacts, Scheme, Via, decide},
};
use filters::{Chain, FilterCtx, Origin};
use upstream::Upstream;

/// A response body's error: hyper's, or the direct upstream path's (`direct.rs`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response force-https sends through hyper.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A client's request body as the proxy service reads it.
#[derive(Debug)]
pub enum RequestBody {
    /// The body hyper's server reads (possibly empty).
    Hyper(Incoming),
    /// None: a request read by the keep-alive loop (`crate::keepalive`), which serves only
    /// requests without a body.
    Empty,
}

impl From<Incoming> for RequestBody {
    fn from(body: Incoming) -> RequestBody {
        RequestBody::Hyper(body)
    }
}

impl From<()> for RequestBody {
    fn from((): ()) -> RequestBody {
        RequestBody::Empty
    }
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Hyper(b) => std::pin::Pin::new(b).poll_frame(cx),
            RequestBody::Empty => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Hyper(b) => b.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            RequestBody::Hyper(b) => b.size_hint(),
            RequestBody::Empty => hyper::body::SizeHint::with_exact(0),
        }
    }
}

/// Which hosts a TLS connection may serve: those its certificate is the one for (RFC 9110
/// §7.4, §15.5.20). Implemented by the TLS path.
pub trait Authority: Send + Sync {
    /// Whether the connection's certificate serves `host` (normalized).
    fn covers(&self, host: &str) -> bool;
}

/// What the TLS handshake settled.
pub struct TlsInfo {
    /// The SNI the client sent, normalized (lowercase, no trailing dot).
    pub sni: Option<String>,
    /// The hosts this connection may serve.
    pub authority: Box<dyn Authority>,
}

/// What the service knows about the client connection.
#[derive(Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The client's IP address as text (`X-Forwarded-For`, `Forwarded`'s `for=`): IPv4 in
    /// dotted form also when the listener saw it as IPv4-mapped IPv6 (RFC 4291 §2.5.5.2),
    /// made once per connection so that its requests share it.
    pub peer_ip_value: hyper::header::HeaderValue,
    /// The port of the listener the connection came in on, as text (`X-Forwarded-Port`),
    /// made once per connection.
    pub local_port_value: hyper::header::HeaderValue,
    /// The listener's scheme.
    pub scheme: Scheme,
    /// TLS details, on the TLS listeners.
    pub tls: Option<Arc<TlsInfo>>,
    /// The largest request head this listener accepts, bytes (`limits.max_head_bytes` on
    /// port 80, `tls.max_header_bytes` on TLS): above it the request phase answers 414 for a
    /// long target and 431 for long header fields.
    pub head_limit: usize,
}

impl ConnInfo {
    /// A port-80 connection from `peer` to the listener on `local_port`.
    pub fn http(peer: SocketAddr, local_port: u16) -> ConnInfo {
        ConnInfo {
            peer,
            peer_ip_value: request::ip_value(peer.ip()),
            local_port_value: request::port_value(local_port),
            scheme: Scheme::Http,
            tls: None,
            head_limit: usize::MAX,
        }
    }

    /// A TLS connection from `peer` to the listener on `local_port`.
    pub fn https(peer: SocketAddr, local_port: u16, tls: Arc<TlsInfo>) -> ConnInfo {
        ConnInfo {
            peer,
            peer_ip_value: request::ip_value(peer.ip()),
            local_port_value: request::port_value(local_port),
            scheme: Scheme::Https,
            tls: Some(tls),
            head_limit: usize::MAX,
        }
    }

    /// The same connection with a head limit.
    pub fn with_head_limit(mut self, bytes: usize) -> ConnInfo {
        self.head_limit = bytes;
        self
    }

    fn via(&self) -> Via {
        match self.scheme {
            Scheme::Http => Via::Socket,
            Scheme::Https => Via::Tls,
        }
    }
}

/// The proxy service: the edge it decides with, the backend client, the filter chain.
pub struct Proxy {
    edge: Arc<Edge>,
    upstream: Upstream,
    filters: Chain,
}

/// The outcome of the phases before the upstream one.
pub enum Early<'t> {
    /// Answered here (redirect, local answer or error), before any filter.
    Answer(Response<Body>, Option<&'t Arc<crate::policy::HostEntry>>),
    /// To be proxied for `host` with this decision.
    Upstream(String, Decision<'t>),
}

impl Proxy {
    /// The service of `edge`, with the `[proxy]` settings and the standard filter chain.
    pub fn new(edge: Arc<Edge>, cfg: &ProxyConfig) -> Proxy {
        let filters = Chain::standard(cfg, edge.metrics.clone());
        Proxy::with_filters(edge, cfg, filters)
    }

    /// The service with another filter chain.
    pub fn with_filters(edge: Arc<Edge>, cfg: &ProxyConfig, filters: Chain) -> Proxy {
        let body_idle = std::time::Duration::from_millis(edge.settings().limits.idle_timeout_ms);
        let upstream = Upstream::new(cfg, body_idle, edge.metrics.clone());
        Proxy {
            edge,
            upstream,
            filters,
        }
    }

    /// The request and decision phases for `req` on `conn`, counted: either the answer, or
    /// what the upstream phase needs. No I/O.
    pub fn early<'t, B>(
        &self,
        table: &'t crate::policy::PolicyTable,
        conn: &ConnInfo,
        req: &Request<B>,
    ) -> Early<'t> {
        let m = &self.edge.metrics;
        let settings = self.edge.settings();
        if let Some(status) = request::over_limit(req, conn.head_limit) {
            m.count_status(status);
            let host = request::host(req, settings.default_host.as_deref());
            let sni = conn.tls.as_ref().and_then(|t| t.sni.as_deref());
            let entry = host.as_deref().or(sni).and_then(|h| table.lookup(h));
            return Early::Answer(local::error_closing(status), entry);
        }
        let Some(host) = request::host(req, settings.default_host.as_deref()) else {
            m.count_status(400);
            // No usable host: HSTS follows the name the client connected to (its SNI).
            let sni = conn.tls.as_ref().and_then(|t| t.sni.as_deref());
            return Early::Answer(local::error(400), sni.and_then(|s| table.lookup(s)));
        };
        let pq = request::path_and_query(req.uri());
        let facts = RequestFacts {
            scheme: conn.scheme,
            host: &host,
            method: req.method().as_str().as_bytes(),
            path_and_query: pq.as_bytes(),
            asterisk: req.uri().path() == "*",
            misdirected: conn
                .tls
                .as_ref()
                .is_some_and(|t| !t.authority.covers(&host)),
            looped: request::has_cdn_loop_token(req.headers()),
        };
        let decision = decide(table, &facts);
        match decision {
            Decision::Redirect { entry, status } => {
                match local::redirect(status, &host, settings.https_port, pq.as_bytes()) {
                    Some(resp) => {
                        decision.count(conn.via(), m);
                        Early::Answer(resp, Some(entry))
                    }
                    None => {
                        m.count_status(400);
                        Early::Answer(local::error(400), Some(entry))
                    }
                }
            }
            Decision::Local { entry, answer } => {
                decision.count(conn.via(), m);
                Early::Answer(local::answer(answer), entry)
            }
            Decision::Proxy { .. } => {
                decision.count(conn.via(), m);
                Early::Upstream(host, decision)
            }
        }
    }

    /// Serves one request through every phase: one of hyper's servers (`Incoming`), or the
    /// keep-alive loop (`()`, no body). It never fails: the `Result` is the shape both
    /// servers take, so that neither wraps the future (a wrapping `async` block held it twice,
    /// 5.5 KB instead of 2.7 KB, copied at each move).
    // Not an `async fn`: see the comment on the block.
    #[allow(clippy::manual_async_fn)]
    pub fn handle<B: Into<RequestBody>>(
        self: Arc<Self>,
        conn: ConnInfo,
        req: Request<B>,
    ) -> impl Future<Output = Result<Response<Body>, Infallible>> {
        // An `async` block, not an `async fn`: an `async fn` keeps each by-value parameter
        // twice in its future (the argument and its moved copy, rust-lang/rust#62958): the
        // request and the connection's facts were 368 of this future's bytes (run P).
        // Mapped here, not in the block: the block would hold both requests.
        let mut req: Request<RequestBody> = req.map(Into::into);
        async move {
            let access = (self.edge.access_log()).map(|log| {
                access_log::Pending::start(log, &req, conn.peer.ip(), conn.tls.is_some())
            });
            // The snapshot is only read here: the upstream phase awaits with owned values.
            let early = {
                let table = self.edge.policy.table();
                match self.early(&table, &conn, &req) {
                    Early::Answer(resp, entry) => Ok((resp, entry.cloned())),
                    Early::Upstream(host, decision) => Err((host, decision.entry().cloned())),
                }
            };
            // What the response filters need of the request: its host, target (a `Uri` clone
            // shares its bytes), method and Accept-Encoding (a `HeaderValue` clone shares its
            // bytes too: no allocation).
            let mut requested: Option<(
                String,
                hyper::Uri,
                hyper::Method,
                Option<hyper::header::HeaderValue>,
            )> = None;
            let (resp, entry, origin) = match early {
                Ok((resp, entry)) => (resp, entry, Origin::Local),
                Err((host, entry)) => {
                    // Set before the request goes, not after: the future would hold these
                    // fields twice (152 bytes).
                    let (host, ..) = requested.insert((
                        host,
                        req.uri().clone(),
                        req.method().clone(),
                        req.headers().get(hyper::header::ACCEPT_ENCODING).cloned(),
                    ));
                    if filters::https_rewrites::applies(conn.scheme, entry.as_ref()) {
                        filters::https_rewrites::restrict_accept_encoding(req.headers_mut());
                    }
                    let backend = entry
                        .as_ref()
                        .and_then(|e| e.site.as_ref())
                        .and_then(|s| s.backend.as_ref());
                    let (resp, origin) = match backend {
                        Some(b) => {
                            let resp = self
                                .upstream
                                .forward(&self.edge.metrics, &conn, b, host, &mut req)
                                .await;
                            let origin = if resp.extensions().get::<local::Marker>().is_some() {
                                Origin::Local
                            } else {
                                Origin::Upstream
                            };
                            (resp, origin)
                        }
                        None => (local::error(404), Origin::Local),
                    };
                    (resp, entry, origin)
                }
            };
            // Which hosts are enforced when the response arrives (Automatic HTTPS Rewrites).
            let table = std::sync::Arc::clone(&*self.edge.policy.table());
            let ctx = FilterCtx {
                conn,
                entry: entry.as_ref(),
                settings: &self.edge.settings(),
                metrics: &self.edge.metrics,
                table: Some(&table),
                origin,
                request: requested
                    .as_ref()
                    .map(|(host, uri, method, ae)| filters::Requested {
                        host: host.as_str(),
                        path_and_query: request::path_and_query(uri),
                        method,
                        accept_encoding: ae.as_ref().and_then(|v| v.to_str().ok()),
                    }),
            };
            let resp = self.filters.apply(&ctx, resp);
            if let Some(a) = access {
                a.finish(&resp, requested.is_some(), &self.edge.metrics);
            }
            Ok(resp)
        }
    }
}
