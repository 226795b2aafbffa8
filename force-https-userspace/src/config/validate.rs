//! The validated layer: [`Config::from_toml`] turns the raw file into a [`Config`], one
//! function per section. Every error carries the span of the value at fault, so it names the
//! file, line and column.

use std::{
    collections::HashMap,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use force_https_proto::{
    host::{DomainPattern, parse_domain_pattern},
    response::RedirectCode,
};
use toml::Spanned;

use super::{
    ACME_PREFIX, AdminConfig, Backend, Config, ConfigError, DEFAULT_CONTROL_SOCKET,
    DEFAULT_FLEET_PREFIX, DEFAULT_STATE_DIR, FleetConfig, FleetTls, HstsConfig, Limits, Site,
    SiteHsts, TlsConfig, XdpConfig,
    raw::{RawCode, RawConfig, RawFleet, RawRedirect, RawSite, RawSiteHsts, RawTls, RawXdp},
};

/// Builds errors positioned in one file's text.
struct At<'a> {
    path: &'a Path,
    text: &'a str,
}

impl At<'_> {
    fn err(&self, span: Option<Range<usize>>, message: String) -> ConfigError {
        let (line, column) = match span {
            Some(s) if s != (0..0) || self.text.is_empty() => {
                let (l, c) = line_col(self.text, s.start);
                (Some(l), Some(c))
            }
            _ => (None, None),
        };
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// The file cannot be read, or [`Config::from_toml`] rejects it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        Self::from_toml(path, &text)
    }

    /// Parses and validates configuration text; `path` is only used in messages.
    ///
    /// # Errors
    /// The first error found, with its line and column in `text`.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let at = At { path, text };
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| at.err(e.span(), e.message().trim_end().to_string()))?;
        let http = listen_addrs(&at, &raw.listen.http, "http")?;
        let https = listen_addrs(&at, &raw.listen.https, "https")?;
        let (https_port, default_host) = redirect(&at, &raw.redirect)?;
        limits(&at, &raw.limits)?;
        let xdp = match &raw.xdp {
            None => None,
            Some(x) => Some(xdp(&at, x)?),
        };
        let admin = admin(&at, &raw)?;
        let log = raw
            .log
            .as_ref()
            .map(|l| l.get_ref().clone())
            .unwrap_or_default();
        if log.buffer == Some(0) || log.buffer.is_some_and(|b| b > 1 << 20) {
            return Err(at.err(
                raw.log.as_ref().map(|l| l.span()),
                format!("log.buffer must be between 1 and {}", 1 << 20),
            ));
        }
        let fleet = match &raw.fleet {
            None => None,
            Some(f) => Some(fleet(&at, f)?),
        };
        let sites = sites(&at, &raw.site, &raw.hsts)?;
        let warnings = preload_warnings(&raw.site, &raw.hsts);
        Ok(Config {
            path: path.to_path_buf(),
            http,
            https,
            state_dir: raw
                .state
                .dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            control_socket: raw
                .state
                .control_socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
            https_port,
            default_host,
            limits: raw.limits,
            proxy: raw.proxy,
            hsts: raw.hsts,
            tls: tls(raw.tls),
            xdp,
            admin,
            log,
            fleet,
            sites,
            warnings,
        })
    }
}

/// `[listen] http` or `https`: socket addresses, no duplicates.
fn listen_addrs(
    at: &At<'_>,
    list: &[Spanned<String>],
    what: &str,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out = Vec::with_capacity(list.len());
    for a in list {
        let addr: SocketAddr = a.get_ref().parse().map_err(|_| {
            at.err(
                Some(a.span()),
                format!(
                    "invalid {what} listen address {:?}: expected IP:PORT, e.g. \"0.0.0.0:80\" or \"[::]:80\"",
                    a.get_ref()
                ),
            )
        })?;
        if out.contains(&addr) {
            return Err(at.err(Some(a.span()), format!("duplicate listen address {addr}")));
        }
        out.push(addr);
    }
    Ok(out)
}

/// `[redirect]`: the HTTPS port of Location, and the host of HTTP/1.0 requests without Host.
fn redirect(at: &At<'_>, r: &RawRedirect) -> Result<(u16, Option<String>), ConfigError> {
    let port = *r.https_port.get_ref();
    let https_port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            at.err(
                Some(r.https_port.span()),
                format!("https_port {port} is not a TCP port (1-65535)"),
            )
        })?;
    let default_host = match &r.default_host {
        None => None,
        Some(h) => match parse_domain_pattern(h.get_ref()) {
            Ok(DomainPattern::Exact(name)) => Some(name),
            Ok(DomainPattern::Wildcard(_)) => {
                return Err(at.err(
                    Some(h.span()),
                    "default_host cannot be a wildcard".to_string(),
                ));
            }
            Err(e) => {
                return Err(at.err(
                    Some(h.span()),
                    format!("invalid default_host {:?}: {e}", h.get_ref()),
                ));
            }
        },
    };
    Ok((https_port, default_host))
}

/// The longest `limits.idle_timeout_ms`: `i32::MAX` ms, what `TCP_USER_TIMEOUT` takes
/// (tcp(7)).
pub const MAX_IDLE_TIMEOUT_MS: u64 = i32::MAX as u64;

/// `[limits]`: values that would make the daemon refuse everything, or fail to start.
fn limits(at: &At<'_>, limits: &Limits) -> Result<(), ConfigError> {
    if limits.max_connections == 0 {
        return Err(at.err(None, "limits.max_connections must be at least 1".into()));
    }
    if limits.max_head_bytes < 256 {
        return Err(at.err(None, "limits.max_head_bytes must be at least 256".into()));
    }
    // 0 would time every client out at once.
    for (name, ms) in [
        ("head_timeout_ms", limits.head_timeout_ms),
        ("idle_timeout_ms", limits.idle_timeout_ms),
    ] {
        if ms == 0 {
            return Err(at.err(None, format!("limits.{name} must be at least 1")));
        }
    }
    // The listeners' TCP_USER_TIMEOUT is this, and the kernel takes a C `int` of ms: above
    // it the daemon could not start (EINVAL), though the file was accepted.
    if limits.idle_timeout_ms > MAX_IDLE_TIMEOUT_MS {
        return Err(at.err(
            None,
            format!(
                "limits.idle_timeout_ms must be at most {MAX_IDLE_TIMEOUT_MS} (24.8 days, the \
                 kernel's limit for TCP_USER_TIMEOUT)"
            ),
        ));
    }
    Ok(())
}

/// `[tls]`, with its defaults.
fn tls(t: RawTls) -> TlsConfig {
    TlsConfig {
        default_cert: t.default_cert.map(|s| s.into_inner()),
        session_cache_size: t.session_cache_size.unwrap_or(16 * 1024),
        max_concurrent_streams: t.max_concurrent_streams.unwrap_or(128),
        max_header_bytes: t.max_header_bytes.unwrap_or(64 * 1024),
        handshake_timeout_ms: t.handshake_timeout_ms.unwrap_or(10_000),
    }
}

/// `[admin]` and its alias `[metrics] listen`: one admin HTTP listener. Both may be given
/// only with the same address. Without `token_file` the listener must be loopback (mutations
/// are then refused, and a listener others can reach would expose the host list unguarded).
fn admin(at: &At<'_>, raw: &RawConfig) -> Result<Option<AdminConfig>, ConfigError> {
    let addr = |s: &Spanned<String>, what: &str| -> Result<SocketAddr, ConfigError> {
        s.get_ref().parse().map_err(|_| {
            at.err(
                Some(s.span()),
                format!(
                    "invalid {what} listen address {:?}: expected IP:PORT, e.g. \"127.0.0.1:9180\"",
                    s.get_ref()
                ),
            )
        })
    };
    let metrics = match &raw.metrics {
        Some(m) => Some((addr(&m.listen, "metrics")?, &m.listen)),
        None => None,
    };
    let admin_listen = match raw.admin.as_ref().and_then(|a| a.listen.as_ref()) {
        Some(l) => Some((addr(l, "admin")?, l)),
        None => None,
    };
    let listen = match (admin_listen, metrics) {
        (Some((a, _)), Some((m, mspan))) if a != m => {
            return Err(at.err(
                Some(mspan.span()),
                format!(
                    "[metrics] listen = \"{m}\" and [admin] listen = \"{a}\" differ, but they are one \
                     listener (the admin listener serves /metrics too): remove the [metrics] section \
                     and keep [admin] listen = \"{a}\", or write the same address in both"
                ),
            ));
        }
        (Some((a, span)), _) => (a, span.span()),
        (None, Some((m, span))) => (m, span.span()),
        (None, None) => {
            return match raw.admin.as_ref().and_then(|a| a.token_file.as_ref()) {
                Some(t) => Err(at.err(
                    Some(t.span()),
                    "[admin] token_file is set but no listener: add [admin] listen = \"127.0.0.1:9180\"".into(),
                )),
                None => Ok(None),
            };
        }
    };
    let token_file = raw
        .admin
        .as_ref()
        .and_then(|a| a.token_file.as_ref())
        .map(|t| t.get_ref().clone());
    if token_file.is_none() && !listen.0.ip().is_loopback() {
        return Err(at.err(
            Some(listen.1),
            format!(
                "the admin listener {} is not a loopback address and [admin] has no token_file: \
                 anyone who reaches it could read the host list. Listen on 127.0.0.1 or [::1], or \
                 set [admin] token_file = \"/etc/force-https/admin.token\" (a file of mode 0600 \
                 holding the bearer token that mutations need)",
                listen.0
            ),
        ));
    }
    if let Some(t) = &token_file
        && (t.as_os_str().is_empty() || !t.is_absolute())
    {
        let span = raw
            .admin
            .as_ref()
            .and_then(|a| a.token_file.as_ref())
            .map(|s| s.span());
        return Err(at.err(
            span,
            format!(
                "[admin] token_file {:?} must be an absolute path",
                t.display().to_string()
            ),
        ));
    }
    Ok(Some(AdminConfig {
        listen: listen.0,
        token_file,
    }))
}

/// `[fleet]`: endpoints (`http://` or `https://` URLs with a port), a prefix that starts and
/// ends with `/`, TLS files only with `https://` endpoints (cert and key together), absolute
/// paths, and a password file only with a username. A build without the `fleet` cargo feature
/// refuses the section.
fn fleet(at: &At<'_>, f: &Spanned<RawFleet>) -> Result<FleetConfig, ConfigError> {
    if !cfg!(feature = "fleet") {
        return Err(at.err(
            Some(f.span()),
            "[fleet] needs a force-https built with the cargo feature `fleet` (on by default);              this binary was built without it"
                .into(),
        ));
    }
    let raw = f.get_ref();
    let list = raw.etcd_endpoints.get_ref();
    if list.is_empty() {
        return Err(at.err(
            Some(raw.etcd_endpoints.span()),
            "[fleet] etcd_endpoints is empty: give at least one, e.g. [\"https://10.0.0.5:2379\"]"
                .into(),
        ));
    }
    let mut endpoints = Vec::with_capacity(list.len());
    let mut any_https = false;
    for e in list {
        let url = e.get_ref();
        let (scheme, rest) = match url.split_once("://") {
            Some((s @ ("http" | "https"), rest)) => (s, rest),
            _ => {
                return Err(at.err(
                    Some(e.span()),
                    format!(
                        "invalid etcd endpoint {url:?}: expected http://HOST:PORT or https://HOST:PORT"
                    ),
                ));
            }
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let port_ok = authority
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
        if !port_ok || authority.contains(['/', '@', '?', '#', ' ']) {
            return Err(at.err(
                Some(e.span()),
                format!(
                    "invalid etcd endpoint {url:?}: expected {scheme}://HOST:PORT (no path, no user), e.g. \"{scheme}://10.0.0.5:2379\""
                ),
            ));
        }
        any_https |= scheme == "https";
        endpoints.push(format!("{scheme}://{authority}"));
    }
    let prefix = match &raw.prefix {
        None => DEFAULT_FLEET_PREFIX.to_string(),
        Some(p) => {
            let v = p.get_ref();
            if !v.starts_with('/') || !v.ends_with('/') || v.chars().any(char::is_control) {
                return Err(at.err(
                    Some(p.span()),
                    format!(
                        "[fleet] prefix {v:?} must start and end with \"/\" (e.g. \"/force-https/\") and hold no control character"
                    ),
                ));
            }
            v.clone()
        }
    };
    let absolute = |p: &Path, span: Range<usize>, what: &str| -> Result<(), ConfigError> {
        if p.as_os_str().is_empty() || !p.is_absolute() {
            return Err(at.err(
                Some(span),
                format!(
                    "[fleet] {what} {:?} must be an absolute path",
                    p.display().to_string()
                ),
            ));
        }
        Ok(())
    };
    let tls = match &raw.tls {
        None => None,
        Some(t) => {
            let v = t.get_ref();
            if !any_https {
                return Err(at.err(
                    Some(t.span()),
                    "[fleet] tls is set but every etcd endpoint is http://: use https:// endpoints"
                        .into(),
                ));
            }
            if v.cert.is_some() != v.key.is_some() {
                return Err(at.err(
                    Some(t.span()),
                    "[fleet] tls: cert and key go together (a client certificate and its key)"
                        .into(),
                ));
            }
            for (p, what) in [
                (&v.ca, "tls.ca"),
                (&v.cert, "tls.cert"),
                (&v.key, "tls.key"),
            ] {
                if let Some(p) = p {
                    absolute(p, t.span(), what)?;
                }
            }
            Some(FleetTls {
                ca: v.ca.clone(),
                cert: v.cert.clone(),
                key: v.key.clone(),
            })
        }
    };
    if let Some(pf) = &raw.password_file {
        absolute(pf.get_ref(), pf.span(), "password_file")?;
        if raw.username.is_none() {
            return Err(at.err(
                Some(pf.span()),
                "[fleet] password_file is set without username".into(),
            ));
        }
    }
    if let Some(u) = &raw.username {
        if u.get_ref().is_empty() || u.get_ref().chars().any(char::is_control) {
            return Err(at.err(
                Some(u.span()),
                "[fleet] username is empty or has a control character".into(),
            ));
        }
        if raw.password_file.is_none() {
            return Err(at.err(
                Some(u.span()),
                "[fleet] username is set without password_file (a file of mode 0600 holding the password)"
                    .into(),
            ));
        }
    }
    Ok(FleetConfig {
        etcd_endpoints: endpoints,
        prefix,
        tls,
        username: raw.username.as_ref().map(|u| u.get_ref().clone()),
        password_file: raw.password_file.as_ref().map(|p| p.get_ref().clone()),
    })
}

/// `[xdp]`: interface name and map sizes.
fn xdp(at: &At<'_>, x: &RawXdp) -> Result<XdpConfig, ConfigError> {
    let name = x.interface.get_ref();
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
        return Err(at.err(
            Some(x.interface.span()),
            format!("invalid interface name {name:?}"),
        ));
    }
    let size = |v: &Option<Spanned<u32>>, default: u32, what: &str| match v {
        None => Ok(default),
        Some(v) if *v.get_ref() >= 1 && *v.get_ref() <= 1 << 26 => Ok(*v.get_ref()),
        Some(v) => Err(at.err(
            Some(v.span()),
            format!("{what} must be between 1 and {}", 1u32 << 26),
        )),
    };
    Ok(XdpConfig {
        interface: name.clone(),
        mode: x.mode,
        max_hosts: size(&x.max_hosts, 1 << 20, "max_hosts")?,
        max_flows: size(&x.max_flows, 1 << 16, "max_flows")?,
        answer_syn: x.answer_syn.unwrap_or(true),
        xdp_tx: x.xdp_tx,
    })
}

/// Every `[[site]]`: unique names, every domain in one site only.
fn sites(at: &At<'_>, raw: &[RawSite], hsts: &HstsConfig) -> Result<Vec<Site>, ConfigError> {
    let mut sites = Vec::with_capacity(raw.len());
    let mut seen_names: HashMap<String, ()> = HashMap::new();
    let mut seen_domains: HashMap<String, String> = HashMap::new();
    for s in raw {
        let name = s.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(at.err(Some(s.name.span()), "site name is empty".into()));
        }
        if seen_names.insert(name.clone(), ()).is_some() {
            return Err(at.err(Some(s.name.span()), format!("duplicate site name {name:?}")));
        }
        if s.domains.get_ref().is_empty() {
            return Err(at.err(
                Some(s.domains.span()),
                format!("site {name:?} has no domains"),
            ));
        }
        let mut domains = Vec::new();
        for d in s.domains.get_ref() {
            let pat = parse_domain_pattern(d.get_ref()).map_err(|e| {
                at.err(
                    Some(d.span()),
                    format!("invalid domain {:?} in site {name:?}: {e}", d.get_ref()),
                )
            })?;
            let key = pat.to_string();
            if let Some(other) = seen_domains.insert(key.clone(), name.clone()) {
                return Err(at.err(
                    Some(d.span()),
                    format!("domain {key:?} appears in site {other:?} and in site {name:?}"),
                ));
            }
            domains.push(pat);
        }
        let backend = match &s.backend {
            None => None,
            Some(b) => Some(parse_backend(b.get_ref()).map_err(|m| {
                at.err(
                    Some(b.span()),
                    format!("invalid backend {:?} in site {name:?}: {m}", b.get_ref()),
                )
            })?),
        };
        let redirect_code = match &s.redirect_code {
            None => RedirectCode::Auto,
            Some(c) => match c.get_ref() {
                RawCode::Text(t) if t == "auto" => RedirectCode::Auto,
                RawCode::Text(t) if t == "301" => RedirectCode::Moved301,
                RawCode::Text(t) if t == "308" => RedirectCode::Permanent308,
                RawCode::Number(301) => RedirectCode::Moved301,
                RawCode::Number(308) => RedirectCode::Permanent308,
                other => {
                    return Err(at.err(
                        Some(c.span()),
                        format!(
                            "invalid redirect_code {other:?} in site {name:?}: expected \"auto\", 301 or 308"
                        ),
                    ));
                }
            },
        };
        let mut force_paths: Vec<String> = Vec::new();
        for p in &s.force_paths {
            let v = p.get_ref();
            if !v.starts_with('/') || v.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?') {
                return Err(at.err(
                    Some(p.span()),
                    format!(
                        "invalid force path {v:?} in site {name:?}: it must start with '/' and contain no spaces, control characters or '?'"
                    ),
                ));
            }
            if !force_paths.contains(v) {
                force_paths.push(v.clone());
            }
        }
        let mut exempt_paths = Vec::new();
        if s.acme_exempt {
            exempt_paths.push(ACME_PREFIX.to_string());
        }
        for p in &s.exempt_paths {
            let v = p.get_ref();
            if !v.starts_with('/') || v.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(at.err(
                    Some(p.span()),
                    format!(
                        "invalid exempt path {v:?} in site {name:?}: it must start with '/' and contain no spaces or control characters"
                    ),
                ));
            }
            if !exempt_paths.contains(v) {
                exempt_paths.push(v.clone());
            }
        }
        let mut https_rewrite_hosts = Vec::new();
        for h in &s.https_rewrite_hosts {
            let pat = parse_domain_pattern(h.get_ref()).map_err(|e| {
                at.err(
                    Some(h.span()),
                    format!(
                        "invalid host {:?} in https_rewrite_hosts of site {name:?}: {e}",
                        h.get_ref()
                    ),
                )
            })?;
            if !https_rewrite_hosts.contains(&pat) {
                https_rewrite_hosts.push(pat);
            }
        }
        let hsts = match site_hsts(s, hsts) {
            Some(h) => SiteHsts::On(h.header_value()),
            None => SiteHsts::Off,
        };
        sites.push(Site {
            name,
            domains,
            backend,
            force_https: s.force_https,
            redirect_code,
            exempt_paths,
            force_paths,
            hsts,
            tls: s.tls.as_ref().map(|t| t.get_ref().clone()),
            loop_guard: s.loop_guard,
            csp_upgrade_insecure_requests: s.csp_upgrade_insecure_requests,
            https_rewrites: s.https_rewrites,
            https_rewrite_hosts,
        });
    }
    Ok(sites)
}

/// A site's HSTS parameters: the global `[hsts]` with the site's own values over it, or
/// `None` for `hsts = false`.
fn site_hsts(s: &RawSite, global: &HstsConfig) -> Option<HstsConfig> {
    match s.hsts.as_ref().map(|h| h.get_ref()) {
        None | Some(RawSiteHsts::Enabled(true)) => Some(global.clone()),
        Some(RawSiteHsts::Enabled(false)) => None,
        Some(RawSiteHsts::Custom(o)) => Some(HstsConfig {
            max_age: o.max_age.unwrap_or(global.max_age),
            include_subdomains: o.include_subdomains.unwrap_or(global.include_subdomains),
            preload: o.preload.unwrap_or(global.preload),
        }),
    }
}

/// The smallest `max-age` the browsers' preload lists accept (hstspreload.org): one year.
const PRELOAD_MIN_MAX_AGE: u64 = 31_536_000;

/// Warnings for sites whose HSTS has `preload` but would not be accepted for preloading:
/// without `includeSubDomains`, or with `max-age` under a year.
fn preload_warnings(raw: &[RawSite], global: &HstsConfig) -> Vec<String> {
    let mut out = Vec::new();
    for s in raw {
        let Some(h) = site_hsts(s, global) else {
            continue;
        };
        if !h.preload {
            continue;
        }
        let name = s.name.get_ref();
        if !h.include_subdomains {
            out.push(format!(
                "site {name:?}: hsts preload = true without include_subdomains (hstspreload.org requires includeSubDomains)"
            ));
        }
        if h.max_age < PRELOAD_MIN_MAX_AGE {
            out.push(format!(
                "site {name:?}: hsts preload = true with max_age = {} < {PRELOAD_MIN_MAX_AGE} (hstspreload.org requires at least one year)",
                h.max_age
            ));
        }
    }
    out
}

/// Parses `http://host:port` (an optional trailing `/` is allowed).
pub(super) fn parse_backend(s: &str) -> Result<Backend, String> {
    let uri: hyper::Uri = s.parse().map_err(|e| format!("{e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "scheme {other:?} is not supported: backends are reached over plain http://"
            ));
        }
        None => return Err("expected http://HOST:PORT".into()),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| "expected http://HOST:PORT".to_string())?;
    if authority.as_str().contains('@') {
        return Err("user information is not allowed".into());
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("a backend is a scheme and authority only, without path or query".into());
    }
    let authority = if authority.port().is_some() {
        authority.as_str().to_string()
    } else {
        format!("{}:80", authority.as_str())
    };
    let uri_authority = authority.parse().map_err(|e| format!("{authority}: {e}"))?;
    Ok(Backend {
        url: format!("http://{authority}"),
        authority,
        uri_authority,
    })
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    let column = text
        .get(line_start..offset)
        .map(|s| s.chars().count() + 1)
        .unwrap_or(1);
    (line, column)
}
