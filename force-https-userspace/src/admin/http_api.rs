//! The admin HTTP listener (`[admin] listen`, alias `[metrics] listen`): the JSON API under
//! `/api/v1`, the dashboard at `/` (assets embedded from `dashboard/`), Prometheus text at
//! `/metrics`, and the API's OpenAPI 3.1 description at `/api/v1/openapi.json`
//! (`openapi.json` beside this file; docs/openapi.json is a copy a unit test keeps identical).
//!
//! A transport of the [`Admin`] service, like the control socket: it parses, authorizes and
//! formats; every operation is the service's.
//!
//! Security (see docs/design.md, "Admin HTTP API"):
//! - mutations (`PUT`, `POST`) need `Authorization: Bearer TOKEN`, the content of
//!   `[admin] token_file` (mode 0600 or 0400, checked at start), compared in constant time;
//!   without a token file they are refused with 403, and the listener must be loopback (the
//!   config enforces it);
//! - mutations need `Content-Type: application/json` (415), which an HTML form cannot send
//!   cross-site; a mutation whose `Origin` is not the listener's own is refused (403); no
//!   cookie is ever read or set; no CORS header is ever sent;
//! - on a loopback listener, a `Host` that is neither `localhost` nor an IP literal is refused
//!   (403), so a DNS-rebinding page cannot read the API through a browser;
//! - bodies are capped at [`MAX_BODY`] (413) and must arrive within [`BODY_TIMEOUT`] (408);
//!   request heads within [`HEAD_TIMEOUT`] (also the keep-alive idle limit), at most
//!   [`MAX_CONNECTIONS`] connections at once.

use std::{convert::Infallible, net::SocketAddr, path::Path, pin::pin, sync::Arc, time::Duration};

use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    HeaderMap, Method, Request, Response, StatusCode,
    body::{Body, Bytes},
    header::{self, HeaderName, HeaderValue},
    service::service_fn,
};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::Semaphore};

use super::{
    Admin,
    protocol::{HostInfo, SiteInfo},
};
use crate::{
    config::AdminConfig,
    metrics::{Metrics, prometheus_text},
    net::{Shutdown, accept_loop, bind_tcp, serve_connection},
    policy::PolicyError,
};

/// Largest request body accepted (413 above).
pub const MAX_BODY: usize = 64 * 1024;
/// Time allowed for a request body once its head is read (408 after).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a request head, and the longest a keep-alive connection may stay idle.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin connections open at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Shortest accepted token, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// The OpenAPI 3.1 description of the API (docs/openapi.json is a copy).
pub const OPENAPI: &str = include_str!("openapi.json");
const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// What a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the dashboard page.
    Index,
    /// `GET /app.js`: the dashboard's script.
    AppJs,
    /// `GET /style.css`: the dashboard's style sheet.
    StyleCss,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /api/v1/info`: version, whether mutations need a token, and `[fleet]`'s prefix and
    /// endpoints (or `null`).
    Info,
    /// `GET /api/v1/hosts`.
    Hosts,
    /// `GET /api/v1/hosts/{host}`.
    Host,
    /// `PUT /api/v1/hosts/{host}`.
    SetHost,
    /// `GET /api/v1/sites`.
    Sites,
    /// `GET /api/v1/sites/{name}`.
    Site,
    /// `PUT /api/v1/sites/{name}`.
    SetSite,
    /// `GET /api/v1/stats`.
    Stats,
    /// `POST /api/v1/reload`.
    Reload,
    /// `GET /api/v1/openapi.json`.
    OpenApi,
}

/// Every route: method, path template (`{x}` is one path segment, percent-decoded) and what
/// it serves. `GET` routes answer `HEAD` too. A unit test checks that each appears in
/// [`OPENAPI`].
pub const ROUTES: &[(Method, &str, Route)] = &[
    (Method::GET, "/", Route::Index),
    (Method::GET, "/app.js", Route::AppJs),
    (Method::GET, "/style.css", Route::StyleCss),
    (Method::GET, "/metrics", Route::Metrics),
    (Method::GET, "/api/v1/info", Route::Info),
    (Method::GET, "/api/v1/hosts", Route::Hosts),
    (Method::GET, "/api/v1/hosts/{host}", Route::Host),
    (Method::PUT, "/api/v1/hosts/{host}", Route::SetHost),
    (Method::GET, "/api/v1/sites", Route::Sites),
    (Method::GET, "/api/v1/sites/{name}", Route::Site),
    (Method::PUT, "/api/v1/sites/{name}", Route::SetSite),
    (Method::GET, "/api/v1/stats", Route::Stats),
    (Method::POST, "/api/v1/reload", Route::Reload),
    (Method::GET, "/api/v1/openapi.json", Route::OpenApi),
];

/// Who may mutate.
enum Auth {
    /// No token file: mutations are refused.
    Disabled,
    /// Mutations need this bearer token.
    Token(Vec<u8>),
}

/// The bound admin listener, ready to serve.
pub struct AdminHttp {
    listener: TcpListener,
    /// The address it is bound to.
    pub addr: SocketAddr,
    api: Api,
}

/// What the request handler needs besides the service.
struct Api {
    auth: Auth,
    /// The listener is loopback: refuse Host names other than `localhost` (DNS rebinding).
    loopback: bool,
}

/// Reads the bearer token from `path`: the file must be a regular file of mode 0600 or 0400
/// (owner only) and hold one token of at least [`MIN_TOKEN_LEN`] visible ASCII characters
/// (surrounding whitespace, such as a final newline, is ignored).
///
/// # Errors
/// The file cannot be read, its mode is wider, or the token is too short or not visible ASCII;
/// the message says how to fix it.
pub fn load_token(path: &Path) -> anyhow::Result<Vec<u8>> {
    let shown = path.display();
    let token = crate::secret::read_secret_file(path, "the admin token file")?;
    if token.len() < MIN_TOKEN_LEN || !token.iter().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!(
            "the admin token file {shown} must hold one token of at least {MIN_TOKEN_LEN} visible \
             ASCII characters (e.g. `head -c 32 /dev/urandom | base64 > {shown}`)"
        );
    }
    Ok(token)
}

/// Loads the token (if any) and binds the admin listener.
///
/// # Errors
/// [`load_token`] fails, or the address cannot be bound.
pub fn bind(cfg: &AdminConfig) -> anyhow::Result<AdminHttp> {
    let auth = match &cfg.token_file {
        Some(p) => Auth::Token(load_token(p)?),
        None => Auth::Disabled,
    };
    Ok(AdminHttp {
        listener: bind_tcp(cfg.listen)?,
        addr: cfg.listen,
        api: Api {
            auth,
            loopback: cfg.listen.ip().is_loopback(),
        },
    })
}

/// Serves the admin listener until shutdown.
pub async fn serve(http: AdminHttp, admin: Arc<Admin>, shutdown: Shutdown) {
    let api = Arc::new(http.api);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let sd = shutdown.clone();
    accept_loop(http.listener, "admin listener", sd, move |stream, _| {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!("admin listener: {MAX_CONNECTIONS} connections open, closing one more");
            return;
        };
        let (admin, api, shutdown) = (admin.clone(), api.clone(), shutdown.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (admin, api) = (admin.clone(), api.clone());
                async move { Ok::<_, Infallible>(handle(&admin, &api, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let _ = serve_connection(pin!(conn), shutdown, |c| c.graceful_shutdown()).await;
            drop(permit);
        });
    })
    .await;
}

type Resp = Response<Full<Bytes>>;

/// The JSON error body: `{"code": "...", "error": "..."}`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    error: &'a str,
}

/// The body of `PUT /api/v1/hosts/{host}` and `PUT /api/v1/sites/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    force_https: bool,
}

/// The answer to `PUT /api/v1/hosts/{host}`.
#[derive(Serialize)]
struct SetHostAnswer {
    /// Patterns whose state changed.
    changed: Vec<String>,
    /// The host after the change; `null` when it left the table (a runtime host released).
    host: Option<HostInfo>,
}

/// The answer to `PUT /api/v1/sites/{name}`.
#[derive(Serialize)]
struct SetSiteAnswer {
    /// Patterns whose state changed.
    changed: Vec<String>,
    /// The site after the change.
    site: Option<SiteInfo>,
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json_response(
        status,
        &ErrorBody {
            code,
            error: message,
        },
    )
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The dashboard's Content-Security-Policy: its own scripts, styles and API only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Headers every admin response carries.
fn harden(r: &mut Resp) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
}

/// Handles one request (any body type, so unit tests can drive it without a socket).
async fn handle<B>(admin: &Arc<Admin>, api: &Api, req: Request<B>) -> Resp
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Metrics::inc(&admin.edge.metrics.admin_requests);
    let mut r = route(admin, api, req).await;
    harden(&mut r);
    r
}

async fn route<B>(admin: &Arc<Admin>, api: &Api, req: Request<B>) -> Resp
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if api.loopback
        && let Some(why) = foreign_host(req.headers())
    {
        return error(StatusCode::FORBIDDEN, "forbidden_host", &why);
    }
    let path = req.uri().path().to_string();
    let mut allowed: Vec<&str> = Vec::new();
    let mut found = None;
    for (method, template, route) in ROUTES {
        let Some(param) = match_template(template, &path) else {
            continue;
        };
        allowed.push(method.as_str());
        let same =
            method == req.method() || (*method == Method::GET && req.method() == Method::HEAD);
        if same {
            found = Some((*route, param));
        }
    }
    let Some((route, param)) = found else {
        if allowed.is_empty() {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no such resource: {path} (GET /api/v1/openapi.json lists them)"),
            );
        }
        let allow = allowed.join(", ");
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!(
                "{} is not allowed on {path}; allowed: {allow}",
                req.method()
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&allow) {
            r.headers_mut().insert(header::ALLOW, v);
        }
        return r;
    };
    let param = match param.map(|p| percent_decode(&p)).transpose() {
        Ok(p) => p.unwrap_or_default(),
        Err(why) => return error(StatusCode::BAD_REQUEST, "bad_request", &why),
    };
    if matches!(route, Route::SetHost | Route::SetSite | Route::Reload) {
        if let Err(r) = authorize(admin, api, req.headers()) {
            return *r;
        }
        let body = match read_body(req).await {
            Ok(b) => b,
            Err(r) => return *r,
        };
        return mutate(admin, route, param, body).await;
    }
    read(admin, api, route, &param, req.uri().query())
}

/// Why a request's `Host` is refused on a loopback listener: a name other than `localhost`
/// (an IP literal is fine), which only a DNS-rebinding page would send.
fn foreign_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    if name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    Some(format!(
        "Host {host:?} refused: this admin listener is loopback-only and answers to localhost \
         or an IP address (a browser sending another name may be a DNS-rebinding attack)"
    ))
}

/// Checks a mutation's credentials, origin and content type; the error response otherwise.
fn authorize(admin: &Admin, api: &Api, headers: &HeaderMap) -> Result<(), Box<Resp>> {
    let metrics = &admin.edge.metrics;
    let token = match &api.auth {
        Auth::Disabled => {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "mutations_disabled",
                "changes over HTTP are disabled: this admin listener has no token. Set [admin] \
                 token_file = \"/etc/force-https/admin.token\" (a file of mode 0600 holding the \
                 token) and restart, then send Authorization: Bearer <token>; or use the \
                 force-https CLI on the control socket",
            )));
        }
        Auth::Token(t) => t,
    };
    let unauthorized = |challenge: &'static str, code: &str, msg: &str| {
        Metrics::inc(&metrics.admin_auth_failures);
        let mut r = error(StatusCode::UNAUTHORIZED, code, msg);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        Box::new(r)
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "Bearer realm=\"force-https\"",
            "missing_token",
            "missing Authorization header: send Authorization: Bearer <token>, the token being \
             the content of the file named by [admin] token_file",
        ));
    };
    let given = value
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .or_else(|| value.as_bytes().strip_prefix(b"bearer "));
    let Some(given) = given else {
        return Err(unauthorized(
            "Bearer realm=\"force-https\"",
            "missing_token",
            "the Authorization header must be Bearer <token>",
        ));
    };
    if !ct_eq(given.trim_ascii(), token) {
        return Err(unauthorized(
            "Bearer realm=\"force-https\", error=\"invalid_token\"",
            "invalid_token",
            "invalid bearer token: it does not match the content of [admin] token_file",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let same = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| Some(o) == host);
        if !same {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "cross-origin change refused: the Origin of this request is not this admin \
                 listener",
            )));
        }
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Box::new(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "changes need Content-Type: application/json",
        )));
    }
    Ok(())
}

/// Compares two byte strings in time that depends on their lengths only.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

/// Reads a body of at most [`MAX_BODY`] within [`BODY_TIMEOUT`].
async fn read_body<B>(req: Request<B>) -> Result<Bytes, Box<Resp>>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("the request body is larger than {MAX_BODY} bytes"),
        ))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(req.into_body(), MAX_BODY);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(Box::new(error(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            &format!("the request body did not arrive within {BODY_TIMEOUT:?}"),
        ))),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("cannot read the request body: {e}"),
        ))),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

fn parse_set_body(body: &[u8]) -> Result<bool, Box<Resp>> {
    serde_json::from_slice::<SetBody>(body)
        .map(|b| b.force_https)
        .map_err(|e| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("invalid body: {e}; expected {{\"force_https\": true}} or false"),
            ))
        })
}

fn policy_error(e: &PolicyError) -> Resp {
    match e {
        PolicyError::InvalidHost { .. } => {
            error(StatusCode::BAD_REQUEST, "invalid_host", &e.to_string())
        }
        PolicyError::UnknownSite { .. } => {
            error(StatusCode::NOT_FOUND, "unknown_site", &e.to_string())
        }
        PolicyError::FleetUnavailable(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "fleet_unavailable",
            &e.to_string(),
        ),
        PolicyError::Persist(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

/// `PUT` and `POST`: run off the async workers (they fsync, or re-read files).
async fn mutate(admin: &Arc<Admin>, route: Route, param: String, body: Bytes) -> Resp {
    let admin = admin.clone();
    let job = move || -> Resp {
        match route {
            Route::SetHost => {
                let enforce = match parse_set_body(&body) {
                    Ok(v) => v,
                    Err(r) => return *r,
                };
                match admin.set(std::slice::from_ref(&param), enforce) {
                    Ok(changed) => json_response(
                        StatusCode::OK,
                        &SetHostAnswer {
                            changed,
                            host: admin.host(&param).ok().flatten(),
                        },
                    ),
                    Err(e) => policy_error(&e),
                }
            }
            Route::SetSite => {
                let enforce = match parse_set_body(&body) {
                    Ok(v) => v,
                    Err(r) => return *r,
                };
                match admin.set_site(&param, enforce) {
                    Ok(changed) => json_response(
                        StatusCode::OK,
                        &SetSiteAnswer {
                            changed,
                            site: admin.sites().into_iter().find(|s| s.name == param),
                        },
                    ),
                    Err(e) => policy_error(&e),
                }
            }
            _ => {
                // Reload takes no parameters: an empty body or an empty JSON object.
                let empty = body.trim_ascii().is_empty()
                    || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
                        .is_ok_and(|m| m.is_empty());
                if !empty {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "reload takes no parameters: send an empty body or {}",
                    );
                }
                match admin.reload() {
                    Ok(message) => {
                        json_response(StatusCode::OK, &serde_json::json!({ "message": message }))
                    }
                    Err(e) => error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "reload_failed",
                        &format!("{e:#}"),
                    ),
                }
            }
        }
    };
    match tokio::task::spawn_blocking(job).await {
        Ok(r) => r,
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("the change did not complete: {e}"),
        ),
    }
}

/// `GET` routes.
fn read(admin: &Admin, api: &Api, route: Route, param: &str, query: Option<&str>) -> Resp {
    match route {
        Route::Index => text(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        Route::AppJs => text(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        Route::StyleCss => text(StatusCode::OK, "text/css; charset=utf-8", STYLE_CSS),
        Route::OpenApi => text(StatusCode::OK, "application/json", OPENAPI),
        Route::Metrics => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            prometheus_text(&admin.stats()),
        ),
        Route::Info => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "mutations": match api.auth {
                    Auth::Disabled => "disabled",
                    Auth::Token(_) => "token",
                },
                "fleet": admin.fleet_info(),
            }),
        ),
        Route::Hosts => hosts(admin, query),
        Route::Host => match admin.host(param) {
            Ok(Some(h)) => json_response(StatusCode::OK, &h),
            Ok(None) => error(
                StatusCode::NOT_FOUND,
                "unknown_host",
                &format!("no host {param:?} in the table"),
            ),
            Err(e) => policy_error(&e),
        },
        Route::Sites => json_response(StatusCode::OK, &admin.sites()),
        Route::Site => match admin.sites().into_iter().find(|s| s.name == param) {
            Some(s) => json_response(StatusCode::OK, &s),
            None => policy_error(&PolicyError::UnknownSite { name: param.into() }),
        },
        Route::Stats => {
            let map: serde_json::Map<String, serde_json::Value> = admin
                .stats()
                .into_iter()
                .map(|(n, _, v)| (n.to_string(), v.into()))
                .collect();
            json_response(StatusCode::OK, &map)
        }
        Route::SetHost | Route::SetSite | Route::Reload => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "")
        }
    }
}

/// `GET /api/v1/hosts[?q=TEXT][&limit=N]`: the hosts whose pattern or site contains `q`, the
/// first `limit` of them; `X-Total-Count` says how many matched.
fn hosts(admin: &Admin, query: Option<&str>) -> Resp {
    let mut q = String::new();
    let mut limit = usize::MAX;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = match percent_decode(&v.replace('+', " ")) {
            Ok(v) => v,
            Err(why) => return error(StatusCode::BAD_REQUEST, "bad_request", &why),
        };
        match k {
            "q" => q = v.trim().to_ascii_lowercase(),
            "limit" => match v.parse() {
                Ok(n) => limit = n,
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        &format!("limit {v:?} is not a number"),
                    );
                }
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("unknown query parameter {k:?} (known: q, limit)"),
                );
            }
        }
    }
    let all = admin.list();
    let matching: Vec<&HostInfo> = all
        .iter()
        .filter(|h| {
            q.is_empty() || h.host.contains(&q) || h.site.as_deref().is_some_and(|s| s.contains(&q))
        })
        .collect();
    let total = matching.len();
    let page: Vec<&HostInfo> = matching.into_iter().take(limit).collect();
    let mut r = json_response(StatusCode::OK, &page);
    r.headers_mut().insert(
        HeaderName::from_static("x-total-count"),
        HeaderValue::from(total as u64),
    );
    r
}

/// Matches `path` against a template; `Some(None)` for a fixed path, `Some(Some(segment))`
/// for a template with one `{x}` segment.
fn match_template(template: &str, path: &str) -> Option<Option<String>> {
    let mut param = None;
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(param),
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') => {
                if ps.is_empty() {
                    return None;
                }
                param = Some(ps.to_string());
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("invalid percent-escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn openapi_copy_is_identical_and_lists_every_route() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let copy = std::fs::read_to_string(&docs).unwrap();
        assert!(
            copy == OPENAPI,
            "docs/openapi.json differs from force-https-userspace/src/admin/openapi.json: copy \
             the latter over the former"
        );
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"].as_str().unwrap().get(..3), Some("3.1"));
        for (method, template, _) in ROUTES {
            let op = &doc["paths"][template][method.as_str().to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "{method} {template} is served but missing from openapi.json"
            );
        }
        // And nothing documented that is not served.
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for m in ops.as_object().unwrap().keys() {
                if m == "parameters" {
                    continue;
                }
                assert!(
                    ROUTES
                        .iter()
                        .any(|(rm, t, _)| t == path && rm.as_str().eq_ignore_ascii_case(m)),
                    "openapi.json documents {m} {path}, which the router does not serve"
                );
            }
        }
    }

    #[test]
    fn templates() {
        assert_eq!(match_template("/api/v1/hosts", "/api/v1/hosts"), Some(None));
        assert_eq!(match_template("/api/v1/hosts", "/api/v1/hosts/"), None);
        assert_eq!(
            match_template("/api/v1/hosts/{host}", "/api/v1/hosts/a.example"),
            Some(Some("a.example".into()))
        );
        assert_eq!(
            match_template("/api/v1/hosts/{host}", "/api/v1/hosts/"),
            None
        );
        assert_eq!(
            match_template("/api/v1/hosts/{host}", "/api/v1/hosts/a/b"),
            None
        );
        assert_eq!(match_template("/", "/"), Some(None));
        assert_eq!(percent_decode("%2A.example").unwrap(), "*.example");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").is_err());
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!ct_eq(b"0123456789abcdef", b"0123456789abcdeg"));
        assert!(!ct_eq(b"0123456789abcdef", b"0123456789abcde"));
        assert!(!ct_eq(b"", b"x"));
    }

    #[test]
    fn host_header_on_loopback() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(v).unwrap());
            foreign_host(&m)
        };
        assert_eq!(h("127.0.0.1:9180"), None);
        assert_eq!(h("localhost:9180"), None);
        assert_eq!(h("[::1]:9180"), None);
        assert_eq!(h("LOCALHOST"), None);
        assert!(h("evil.example:9180").is_some());
        assert_eq!(foreign_host(&HeaderMap::new()), None);
    }

    #[test]
    fn token_file_modes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t");
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        for (mode, ok) in [(0o600, true), (0o400, true), (0o644, false), (0o640, false)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = load_token(&p);
            assert_eq!(r.is_ok(), ok, "{mode:o}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("chmod 600"), "{e}");
            }
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_token(&p).unwrap(), b"0123456789abcdef0123");
        std::fs::write(&p, "short\n").unwrap();
        assert!(load_token(&p).is_err());
    }
}
