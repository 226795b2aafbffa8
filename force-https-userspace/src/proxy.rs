//! The reverse proxy to site backends, and the hyper service that decides per request.
//!
//! Both client-facing paths use [`handle`]: port 80 (for connections whose first request was
//! not answered by the raw fast answer in [`crate::http80`]) and the TLS terminator. It
//! finds the host, asks the policy table, then redirects (port 80 only), proxies, or answers
//! with an error. Proxied requests go to the backend over HTTP/1.1 through one pooled client;
//! bodies stream both ways, forwarding headers are set from what force-https saw (never from
//! what the client claims), hop-by-hop headers are removed, and `Upgrade` requests (WebSocket)
//! are tunnelled. On HTTPS, HSTS is injected for enforced hosts unless the backend set it.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use force_https_proto::{
    host::{normalize, parse_authority},
    response::{self, RedirectStatus},
};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    HeaderMap, Request, Response, StatusCode, Uri, Version,
    body::Incoming,
    header::{self, HeaderName, HeaderValue},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};

use crate::{
    config::{ProxyConfig, SiteHsts},
    daemon::Shared,
    metrics::Metrics,
    policy::{Action, HostEntry},
};

/// The body type of every response force-https sends through hyper.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Port 80.
    Http,
    /// TLS.
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What the service knows about the client connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's scheme.
    pub scheme: Scheme,
}

/// The pooled HTTP/1.1 client to all backends.
pub struct Proxy {
    client: Client<HttpConnector, Incoming>,
    response_timeout: Duration,
}

impl Proxy {
    /// A client with the configured timeouts and pool size.
    pub fn new(cfg: &ProxyConfig) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_millis(cfg.pool_idle_timeout_ms))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .set_host(false)
            .build(connector);
        Proxy {
            client,
            response_timeout: Duration::from_millis(cfg.response_timeout_ms),
        }
    }
}

/// A small local response (error or redirect) with force-https's own bytes.
pub fn local(status: u16) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = Response::new(full(Bytes::from_static(
        response::error_body(status).as_bytes(),
    )));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// The redirect as a hyper response, parsed from the canonical bytes of
/// [`response::redirect`] with its headers in the same order. The port-80 hyper connection
/// writes Title-Case names and no Date header, so the bytes on the wire are exactly those of
/// the raw paths.
fn redirect_response(
    status: RedirectStatus,
    host: &str,
    https_port: u16,
    pq: &[u8],
) -> Response<Body> {
    let Some(bytes) = response::redirect(status, host, https_port, pq) else {
        return local(400);
    };
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut parsed = httparse::Response::new(&mut headers);
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status.code()).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    if parsed.parse(&bytes).is_ok() {
        for h in parsed.headers.iter() {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) {
                r.headers_mut().append(n, v);
            }
        }
    }
    r
}

/// The host a request is for: the absolute-form / `:authority` authority, else Host, else
/// (HTTP/1.0 only) the default host. `Err` means 400.
fn request_host(req: &Request<Incoming>, default_host: Option<&str>) -> Result<String, ()> {
    let hosts = req.headers().get_all(header::HOST);
    let mut it = hosts.iter();
    let host_header = it.next();
    if it.next().is_some() {
        return Err(());
    }
    let raw: &[u8] = match (req.uri().authority(), host_header) {
        (Some(a), _) => a.as_str().as_bytes(),
        (None, Some(h)) => h.as_bytes(),
        (None, None) => {
            return match (req.version(), default_host) {
                (Version::HTTP_10 | Version::HTTP_09, Some(d)) => Ok(d.to_string()),
                _ => Err(()),
            };
        }
    };
    if req.version() == Version::HTTP_11 && host_header.is_none() {
        return Err(());
    }
    let a = parse_authority(raw).map_err(|_| ())?;
    Ok(normalize(&a))
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

/// Serves one request: the whole per-request policy of both listeners.
pub async fn handle(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let m = &shared.metrics;
    let Ok(host) = request_host(&req, shared.config.default_host.as_deref()) else {
        m.count_status(400);
        return Ok(local(400));
    };
    let table = shared.policy.table();
    let entry = table.lookup(&host).cloned();
    drop(table);
    let asterisk = req.uri().path() == "*";
    let pq = path_and_query(req.uri()).to_string();

    let action = match (&entry, conn.scheme) {
        (None, _) => Action::NotFound,
        (Some(e), Scheme::Http) => e.action(req.method().as_str(), pq.as_bytes(), asterisk),
        (Some(e), Scheme::Https) if e.has_backend() => Action::Proxy,
        (Some(_), Scheme::Https) => Action::NotFound,
    };
    let mut resp = match action {
        Action::Redirect(status) => {
            if let Some(e) = &entry {
                Metrics::inc(&e.stats.redirects);
            }
            Metrics::inc(match status {
                RedirectStatus::Moved301 => &m.redirects_301,
                RedirectStatus::Permanent308 => &m.redirects_308,
            });
            return Ok(redirect_response(
                status,
                &host,
                shared.config.https_port,
                pq.as_bytes(),
            ));
        }
        Action::NotFound => {
            m.count_status(404);
            local(404)
        }
        Action::Proxy => {
            let Some(e) = entry.as_ref() else {
                m.count_status(404);
                return Ok(local(404));
            };
            Metrics::inc(&e.stats.proxied);
            Metrics::inc(match conn.scheme {
                Scheme::Http => &m.proxied_http,
                Scheme::Https => &m.proxied_https,
            });
            forward(&shared, conn, e, &host, req).await
        }
    };
    if conn.scheme == Scheme::Https
        && let Some(e) = &entry
    {
        add_hsts(&shared, e, resp.headers_mut());
    }
    Ok(resp)
}

/// Injects HSTS for an enforced host, unless the backend set its own.
fn add_hsts(shared: &Shared, e: &HostEntry, headers: &mut HeaderMap) {
    if !e.enforced {
        return;
    }
    if headers.contains_key(header::STRICT_TRANSPORT_SECURITY) {
        Metrics::inc(&shared.metrics.hsts_from_backend);
        return;
    }
    let value = match e.site.as_ref().map(|s| &s.hsts) {
        Some(SiteHsts::Off) => return,
        Some(SiteHsts::On(v)) => v.clone(),
        None => shared.config.hsts.header_value(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, v);
        Metrics::inc(&shared.metrics.hsts_injected);
    }
}

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those named in `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(n);
    }
    headers.remove(header::PROXY_AUTHORIZATION);
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Sets the forwarding headers from what force-https saw, replacing client-sent values.
fn set_forwarding(headers: &mut HeaderMap, conn: ConnInfo, host_value: &HeaderValue) {
    for n in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
    ] {
        headers.remove(n);
    }
    let ip = conn.peer.ip().to_canonical();
    let proto = conn.scheme.as_str();
    if let Ok(v) = HeaderValue::from_str(&ip.to_string()) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    headers.insert("x-forwarded-host", host_value.clone());
    let for_ = if ip.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip.to_string()
    };
    let host_q = host_value.to_str().unwrap_or("").replace(['"', '\\'], "");
    if let Ok(v) = HeaderValue::from_str(&format!("for={for_};host=\"{host_q}\";proto={proto}")) {
        headers.insert(header::FORWARDED, v);
    }
}

async fn forward(
    shared: &Shared,
    conn: ConnInfo,
    entry: &HostEntry,
    host: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let m = &shared.metrics;
    let Some(backend) = entry.site.as_ref().and_then(|s| s.backend.as_ref()) else {
        m.count_status(404);
        return local(404);
    };
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let uri: Uri = match format!("{}{}", backend.url, path_and_query(req.uri())).parse() {
        Ok(u) => u,
        Err(_) => {
            m.count_status(400);
            return local(400);
        }
    };
    let (mut parts, body) = req.into_parts();
    let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
    let te_trailers = parts
        .headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    strip_hop_by_hop(&mut parts.headers);
    let host_value = match parts.headers.get(header::HOST).cloned() {
        Some(h) if conn.scheme == Scheme::Http => h,
        _ => match parts.uri.authority().map(|a| a.as_str()) {
            Some(a) => HeaderValue::from_str(a).unwrap_or_else(|_| HeaderValue::from_static("")),
            None => parts
                .headers
                .get(header::HOST)
                .cloned()
                .or_else(|| HeaderValue::from_str(host).ok())
                .unwrap_or_else(|| HeaderValue::from_static("")),
        },
    };
    parts.headers.insert(header::HOST, host_value.clone());
    set_forwarding(&mut parts.headers, conn, &host_value);
    if te_trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let (true, Some(u)) = (upgrade, upgrade_value) {
        parts.headers.insert(header::UPGRADE, u);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let breq = Request::from_parts(parts, body);

    let result = tokio::time::timeout(
        shared.proxy.response_timeout,
        shared.proxy.client.request(breq),
    )
    .await;
    let mut bresp = match result {
        Err(_) => {
            m.count_status(504);
            tracing::warn!(backend = %backend.authority, host, "backend timed out");
            return local(504);
        }
        Ok(Err(e)) => {
            m.count_status(502);
            tracing::warn!(backend = %backend.authority, host, "backend unreachable: {e}");
            return local(502);
        }
        Ok(Ok(r)) => r,
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
    Response::from_parts(parts, body.boxed())
}
