//! The TOML configuration: its types, loading and validation.
//!
//! Parsing happens in two steps. serde reads the raw file (unknown keys are rejected), keeping
//! the spans of the values that need semantic checks; [`Config::from_toml`] then validates
//! those values. Every error names the file, line and column, so `force-https check` can point
//! at the exact place.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use force_https_proto::{
    host::{DomainPattern, parse_domain_pattern},
    response::RedirectCode,
};
use serde::Deserialize;
use toml::Spanned;

/// Default location of the configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/force-https/config.toml";
/// Default control socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/force-https/control.sock";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/force-https";
/// The ACME HTTP-01 challenge prefix, exempt from redirects unless `acme_exempt = false`.
pub const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

/// A configuration error with its position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(
                f,
                "{}: line {l}, column {c}: {}",
                self.path.display(),
                self.message
            ),
            _ => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// Raw (serde) layer.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    redirect: RawRedirect,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    proxy: ProxyConfig,
    #[serde(default)]
    hsts: HstsConfig,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    xdp: Option<RawXdp>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    site: Vec<RawSite>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    #[serde(default = "default_http")]
    http: Vec<Spanned<String>>,
    #[serde(default = "default_https")]
    https: Vec<Spanned<String>>,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            http: default_http(),
            https: default_https(),
        }
    }
}

fn unspanned(v: &[&str]) -> Vec<Spanned<String>> {
    v.iter()
        .map(|s| Spanned::new(0..0, (*s).to_string()))
        .collect()
}
fn default_http() -> Vec<Spanned<String>> {
    unspanned(&["0.0.0.0:80", "[::]:80"])
}
fn default_https() -> Vec<Spanned<String>> {
    unspanned(&["0.0.0.0:443", "[::]:443"])
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawState {
    dir: Option<PathBuf>,
    control_socket: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedirect {
    #[serde(default = "default_https_port")]
    https_port: Spanned<i64>,
    default_host: Option<Spanned<String>>,
}

impl Default for RawRedirect {
    fn default() -> Self {
        Self {
            https_port: default_https_port(),
            default_host: None,
        }
    }
}

fn default_https_port() -> Spanned<i64> {
    Spanned::new(0..0, 443)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    default_cert: Option<Spanned<TlsFiles>>,
    #[serde(default)]
    session_cache_size: Option<usize>,
    #[serde(default)]
    max_concurrent_streams: Option<u32>,
    #[serde(default)]
    max_header_bytes: Option<usize>,
    #[serde(default)]
    handshake_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawXdp {
    interface: Spanned<String>,
    #[serde(default)]
    mode: XdpMode,
    #[serde(default)]
    max_hosts: Option<Spanned<u32>>,
    #[serde(default)]
    max_flows: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    name: Spanned<String>,
    domains: Spanned<Vec<Spanned<String>>>,
    backend: Option<Spanned<String>>,
    #[serde(default)]
    force_https: bool,
    #[serde(default)]
    redirect_code: Option<Spanned<RawCode>>,
    #[serde(default)]
    exempt_paths: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    acme_exempt: bool,
    #[serde(default)]
    hsts: Option<Spanned<RawSiteHsts>>,
    #[serde(default)]
    tls: Option<Spanned<TlsFiles>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCode {
    Text(String),
    Number(i64),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSiteHsts {
    Enabled(bool),
    Custom(HstsOverride),
}

/// Per-site HSTS parameters; unset fields come from `[hsts]`.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HstsOverride {
    /// `max-age` in seconds.
    pub max_age: Option<u64>,
    /// Add `includeSubDomains`.
    pub include_subdomains: Option<bool>,
    /// Add `preload`.
    pub preload: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Validated layer.

/// Resource limits of the client-facing listeners.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent client connections over all listeners; above it new ones get 503.
    pub max_connections: usize,
    /// Largest request head accepted on port 80 (431 above).
    pub max_head_bytes: usize,
    /// Time allowed for a complete request head (408 after).
    pub head_timeout_ms: u64,
    /// Keep-alive idle timeout on proxied connections.
    pub idle_timeout_ms: u64,
    /// How long SIGTERM waits for in-flight connections before exiting anyway.
    pub drain_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 16384,
            max_head_bytes: 16 * 1024,
            head_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            drain_timeout_ms: 30_000,
        }
    }
}

/// Reverse-proxy settings shared by every site.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// TCP connect timeout to a backend (502 after).
    pub connect_timeout_ms: u64,
    /// Time for the backend to send response headers (504 after).
    pub response_timeout_ms: u64,
    /// Idle pooled connections kept per backend.
    pub pool_max_idle_per_host: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 3_000,
            response_timeout_ms: 30_000,
            pool_max_idle_per_host: 64,
            pool_idle_timeout_ms: 90_000,
        }
    }
}

/// Global HSTS parameters (RFC 6797).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HstsConfig {
    /// `max-age` in seconds.
    pub max_age: u64,
    /// Add `includeSubDomains`.
    pub include_subdomains: bool,
    /// Add `preload`.
    pub preload: bool,
}

impl Default for HstsConfig {
    fn default() -> Self {
        Self {
            max_age: 31_536_000,
            include_subdomains: false,
            preload: false,
        }
    }
}

impl HstsConfig {
    /// The header value, e.g. `max-age=31536000; includeSubDomains`.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// TLS settings of the 443 listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate for unknown or missing SNI; without it those get `unrecognized_name`.
    pub default_cert: Option<TlsFiles>,
    /// Entries in the server-side session cache.
    pub session_cache_size: usize,
    /// HTTP/2 concurrent streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest request header block accepted (HTTP/1 and HTTP/2).
    pub max_header_bytes: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout_ms: u64,
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode when the driver supports it, else generic.
    #[default]
    Auto,
    /// Driver mode only.
    Native,
    /// Generic (skb) mode.
    Generic,
}

/// The `[xdp]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpConfig {
    /// The edge interface.
    pub interface: String,
    /// Attach mode.
    pub mode: XdpMode,
    /// Capacity of the host map (`max_hosts`, default 1048576): one entry per exact name or
    /// wildcard of the policy table.
    pub max_hosts: u32,
    /// Capacity of the LRU of flows handed to the kernel (`max_flows`, default 65536): split
    /// heads and requests XDP does not answer.
    pub max_flows: u32,
}

/// HSTS of one site: off, or the header value to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteHsts {
    /// `hsts = false`: never injected.
    Off,
    /// The header value injected on HTTPS responses of enforced hosts.
    On(String),
}

/// A site's backend, `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `host:port` as written.
    pub authority: String,
    /// The backend URL as written.
    pub url: String,
}

/// One `[[site]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Unique name.
    pub name: String,
    /// Exact names and one-label wildcards, normalized (A-labels, lowercase).
    pub domains: Vec<DomainPattern>,
    /// Where requests that are not redirected go.
    pub backend: Option<Backend>,
    /// Whether the site's hosts are enforced (before runtime overrides).
    pub force_https: bool,
    /// Which redirect status to use.
    pub redirect_code: RedirectCode,
    /// Path prefixes never redirected (ACME's included unless `acme_exempt = false`).
    pub exempt_paths: Vec<String>,
    /// HSTS injection on HTTPS.
    pub hsts: SiteHsts,
    /// The site's certificate.
    pub tls: Option<TlsFiles>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Port-80 listeners.
    pub http: Vec<SocketAddr>,
    /// TLS listeners.
    pub https: Vec<SocketAddr>,
    /// Where runtime state is persisted.
    pub state_dir: PathBuf,
    /// The control socket.
    pub control_socket: PathBuf,
    /// HTTPS port written into Location (omitted when 443).
    pub https_port: u16,
    /// Host used for HTTP/1.0 requests without Host.
    pub default_host: Option<String>,
    /// Connection limits.
    pub limits: Limits,
    /// Proxy settings.
    pub proxy: ProxyConfig,
    /// Global HSTS.
    pub hsts: HstsConfig,
    /// TLS settings.
    pub tls: TlsConfig,
    /// The XDP fast path, when configured.
    pub xdp: Option<XdpConfig>,
    /// Prometheus endpoint, when configured.
    pub metrics_listen: Option<SocketAddr>,
    /// The sites.
    pub sites: Vec<Site>,
}

impl Config {
    /// Reads and validates a configuration file.
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
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |span: Option<Range<usize>>, message: String| {
            let (line, column) = match span {
                Some(s) if s != (0..0) || text.is_empty() => {
                    let (l, c) = line_col(text, s.start);
                    (Some(l), Some(c))
                }
                _ => (None, None),
            };
            ConfigError {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| err(e.span(), e.message().trim_end().to_string()))?;

        let addrs = |list: &[Spanned<String>],
                     what: &str|
         -> Result<Vec<SocketAddr>, ConfigError> {
            let mut out = Vec::with_capacity(list.len());
            for a in list {
                let addr: SocketAddr = a.get_ref().parse().map_err(|_| {
                    err(
                        Some(a.span()),
                        format!(
                            "invalid {what} listen address {:?}: expected IP:PORT, e.g. \"0.0.0.0:80\" or \"[::]:80\"",
                            a.get_ref()
                        ),
                    )
                })?;
                if out.contains(&addr) {
                    return Err(err(
                        Some(a.span()),
                        format!("duplicate listen address {addr}"),
                    ));
                }
                out.push(addr);
            }
            Ok(out)
        };
        let http = addrs(&raw.listen.http, "http")?;
        let https = addrs(&raw.listen.https, "https")?;

        let port = *raw.redirect.https_port.get_ref();
        let https_port = u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                err(
                    Some(raw.redirect.https_port.span()),
                    format!("https_port {port} is not a TCP port (1-65535)"),
                )
            })?;
        let default_host = match &raw.redirect.default_host {
            None => None,
            Some(h) => match parse_domain_pattern(h.get_ref()) {
                Ok(DomainPattern::Exact(name)) => Some(name),
                Ok(DomainPattern::Wildcard(_)) => {
                    return Err(err(
                        Some(h.span()),
                        "default_host cannot be a wildcard".to_string(),
                    ));
                }
                Err(e) => {
                    return Err(err(
                        Some(h.span()),
                        format!("invalid default_host {:?}: {e}", h.get_ref()),
                    ));
                }
            },
        };

        let limits = raw.limits;
        if limits.max_connections == 0 {
            return Err(err(
                None,
                "limits.max_connections must be at least 1".into(),
            ));
        }
        if limits.max_head_bytes < 256 {
            return Err(err(
                None,
                "limits.max_head_bytes must be at least 256".into(),
            ));
        }

        let tls = TlsConfig {
            default_cert: raw.tls.default_cert.map(|s| s.into_inner()),
            session_cache_size: raw.tls.session_cache_size.unwrap_or(16 * 1024),
            max_concurrent_streams: raw.tls.max_concurrent_streams.unwrap_or(128),
            max_header_bytes: raw.tls.max_header_bytes.unwrap_or(64 * 1024),
            handshake_timeout_ms: raw.tls.handshake_timeout_ms.unwrap_or(10_000),
        };

        let xdp = match raw.xdp {
            None => None,
            Some(x) => {
                let name = x.interface.get_ref();
                if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                    return Err(err(
                        Some(x.interface.span()),
                        format!("invalid interface name {name:?}"),
                    ));
                }
                let size = |v: Option<Spanned<u32>>, default: u32, what: &str| match v {
                    None => Ok(default),
                    Some(v) if *v.get_ref() >= 1 && *v.get_ref() <= 1 << 26 => Ok(*v.get_ref()),
                    Some(v) => Err(err(
                        Some(v.span()),
                        format!("{what} must be between 1 and {}", 1u32 << 26),
                    )),
                };
                Some(XdpConfig {
                    interface: name.clone(),
                    mode: x.mode,
                    max_hosts: size(x.max_hosts, 1 << 20, "max_hosts")?,
                    max_flows: size(x.max_flows, 1 << 16, "max_flows")?,
                })
            }
        };

        let metrics_listen = match raw.metrics {
            None => None,
            Some(m) => Some(m.listen.get_ref().parse().map_err(|_| {
                err(
                    Some(m.listen.span()),
                    format!("invalid metrics listen address {:?}", m.listen.get_ref()),
                )
            })?),
        };

        let mut sites = Vec::with_capacity(raw.site.len());
        let mut seen_names: HashMap<String, ()> = HashMap::new();
        let mut seen_domains: HashMap<String, String> = HashMap::new();
        for s in raw.site {
            let name = s.name.get_ref().trim().to_string();
            if name.is_empty() {
                return Err(err(Some(s.name.span()), "site name is empty".into()));
            }
            if seen_names.insert(name.clone(), ()).is_some() {
                return Err(err(
                    Some(s.name.span()),
                    format!("duplicate site name {name:?}"),
                ));
            }
            if s.domains.get_ref().is_empty() {
                return Err(err(
                    Some(s.domains.span()),
                    format!("site {name:?} has no domains"),
                ));
            }
            let mut domains = Vec::new();
            for d in s.domains.get_ref() {
                let pat = parse_domain_pattern(d.get_ref()).map_err(|e| {
                    err(
                        Some(d.span()),
                        format!("invalid domain {:?} in site {name:?}: {e}", d.get_ref()),
                    )
                })?;
                let key = pat.to_string();
                if let Some(other) = seen_domains.insert(key.clone(), name.clone()) {
                    return Err(err(
                        Some(d.span()),
                        format!("domain {key:?} appears in site {other:?} and in site {name:?}"),
                    ));
                }
                domains.push(pat);
            }
            let backend = match &s.backend {
                None => None,
                Some(b) => Some(parse_backend(b.get_ref()).map_err(|m| {
                    err(
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
                        return Err(err(
                            Some(c.span()),
                            format!(
                                "invalid redirect_code {other:?} in site {name:?}: expected \"auto\", 301 or 308"
                            ),
                        ));
                    }
                },
            };
            let mut exempt_paths = Vec::new();
            if s.acme_exempt {
                exempt_paths.push(ACME_PREFIX.to_string());
            }
            for p in &s.exempt_paths {
                let v = p.get_ref();
                if !v.starts_with('/') || v.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(err(
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
            let hsts = match s.hsts.as_ref().map(|h| h.get_ref()) {
                None | Some(RawSiteHsts::Enabled(true)) => SiteHsts::On(raw.hsts.header_value()),
                Some(RawSiteHsts::Enabled(false)) => SiteHsts::Off,
                Some(RawSiteHsts::Custom(o)) => SiteHsts::On(
                    HstsConfig {
                        max_age: o.max_age.unwrap_or(raw.hsts.max_age),
                        include_subdomains: o
                            .include_subdomains
                            .unwrap_or(raw.hsts.include_subdomains),
                        preload: o.preload.unwrap_or(raw.hsts.preload),
                    }
                    .header_value(),
                ),
            };
            sites.push(Site {
                name,
                domains,
                backend,
                force_https: s.force_https,
                redirect_code,
                exempt_paths,
                hsts,
                tls: s.tls.map(|t| t.into_inner()),
            });
        }

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
            limits,
            proxy: raw.proxy,
            hsts: raw.hsts,
            tls,
            xdp,
            metrics_listen,
            sites,
        })
    }

    /// Whether any certificate is configured (the TLS listeners need one).
    pub fn has_certificates(&self) -> bool {
        self.tls.default_cert.is_some() || self.sites.iter().any(|s| s.tls.is_some())
    }
}

/// Parses `http://host:port` (an optional trailing `/` is allowed).
fn parse_backend(s: &str) -> Result<Backend, String> {
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
    Ok(Backend {
        url: format!("http://{authority}"),
        authority,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("test.toml"), t)
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.http.len(), 2);
        assert_eq!(c.https.len(), 2);
        assert_eq!(c.https_port, 443);
        assert_eq!(c.limits.max_head_bytes, 16384);
        assert_eq!(c.limits.head_timeout_ms, 10_000);
        assert_eq!(c.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert!(c.sites.is_empty());
    }

    #[test]
    fn full_example() {
        let c = parse(
            r#"
[listen]
http  = ["0.0.0.0:80", "[::]:80"]
https = ["0.0.0.0:443", "[::]:443"]
[state]
dir = "/var/lib/force-https"
control_socket = "/run/force-https/control.sock"
[hsts]
max_age = 31536000
include_subdomains = false
preload = false
[[site]]
name = "shop"
domains = ["Shop.Example.com.", "*.shop.example.com", "bücher.example"]
backend = "http://127.0.0.1:8080"
force_https = true
redirect_code = "auto"
exempt_paths = ["/.well-known/acme-challenge/", "/healthz"]
tls = { cert = "/etc/force-https/shop.pem", key = "/etc/force-https/shop.key" }
"#,
        )
        .unwrap();
        let s = &c.sites[0];
        assert_eq!(s.domains[0].to_string(), "shop.example.com");
        assert_eq!(s.domains[1].to_string(), "*.shop.example.com");
        assert_eq!(s.domains[2].to_string(), "xn--bcher-kva.example");
        assert_eq!(s.exempt_paths, vec![ACME_PREFIX, "/healthz"]);
        assert_eq!(s.backend.as_ref().unwrap().authority, "127.0.0.1:8080");
        assert_eq!(s.hsts, SiteHsts::On("max-age=31536000".into()));
    }

    #[test]
    fn unknown_key_has_line() {
        let e = parse("[listen]\nhttp = []\nbogus = 1\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("bogus"), "{e}");
    }

    #[test]
    fn bad_domain_has_line() {
        let e = parse("[[site]]\nname = \"a\"\ndomains = [\"ok.example\", \"bad host\"]\n")
            .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("bad host"), "{e}");
    }

    #[test]
    fn bad_backend() {
        for b in [
            "https://x:1",
            "ftp://x",
            "127.0.0.1:8080",
            "http://x/path",
            "http://u@x:1",
        ] {
            let t =
                format!("[[site]]\nname = \"a\"\ndomains = [\"a.example\"]\nbackend = \"{b}\"\n");
            let e = parse(&t).unwrap_err();
            assert_eq!(e.line, Some(4), "{b}: {e}");
        }
    }

    #[test]
    fn duplicate_domain_across_sites() {
        let e = parse(
            "[[site]]\nname = \"a\"\ndomains = [\"x.example\"]\n[[site]]\nname = \"b\"\ndomains = [\"X.example.\"]\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
    }

    #[test]
    fn redirect_codes() {
        for (v, want) in [
            ("\"auto\"", RedirectCode::Auto),
            ("301", RedirectCode::Moved301),
            ("\"308\"", RedirectCode::Permanent308),
        ] {
            let t =
                format!("[[site]]\nname = \"a\"\ndomains = [\"a.example\"]\nredirect_code = {v}\n");
            assert_eq!(parse(&t).unwrap().sites[0].redirect_code, want);
        }
        let e = parse("[[site]]\nname = \"a\"\ndomains = [\"a.example\"]\nredirect_code = 302\n")
            .unwrap_err();
        assert_eq!(e.line, Some(4));
    }

    #[test]
    fn site_hsts_forms() {
        let c = parse(
            "[hsts]\nmax_age = 10\n[[site]]\nname = \"a\"\ndomains = [\"a.example\"]\nhsts = false\n[[site]]\nname = \"b\"\ndomains = [\"b.example\"]\nhsts = { preload = true, include_subdomains = true }\n",
        )
        .unwrap();
        assert_eq!(c.sites[0].hsts, SiteHsts::Off);
        assert_eq!(
            c.sites[1].hsts,
            SiteHsts::On("max-age=10; includeSubDomains; preload".into())
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse("[listen]\nhttp = [\"0.0.0.0:80\"\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn bad_listen_and_port() {
        assert_eq!(
            parse("[listen]\nhttp = [\"nope\"]\n").unwrap_err().line,
            Some(2)
        );
        assert_eq!(
            parse("[redirect]\nhttps_port = 70000\n").unwrap_err().line,
            Some(2)
        );
    }

    #[test]
    fn acme_exempt_can_be_disabled() {
        let c = parse(
            "[[site]]\nname = \"a\"\ndomains = [\"a.example\"]\nacme_exempt = false\nexempt_paths = [\"/x\"]\n",
        )
        .unwrap();
        assert_eq!(c.sites[0].exempt_paths, vec!["/x"]);
    }

    #[test]
    fn xdp_section() {
        assert!(parse("").unwrap().xdp.is_none());
        let x = parse("[xdp]\ninterface = \"eth0\"\n").unwrap().xdp.unwrap();
        assert_eq!(
            x,
            XdpConfig {
                interface: "eth0".into(),
                mode: XdpMode::Auto,
                max_hosts: 1 << 20,
                max_flows: 1 << 16,
            }
        );
        let x = parse(
            "[xdp]\ninterface = \"eth1\"\nmode = \"native\"\nmax_hosts = 10\nmax_flows = 20\n",
        )
        .unwrap()
        .xdp
        .unwrap();
        assert_eq!(
            (x.mode, x.max_hosts, x.max_flows),
            (XdpMode::Native, 10, 20)
        );
        assert_eq!(
            parse("[xdp]\ninterface = \"eth0\"\nmax_flows = 0\n")
                .unwrap_err()
                .line,
            Some(3)
        );
        assert_eq!(
            parse("[xdp]\ninterface = \"eth0\"\nmode = \"turbo\"\n")
                .unwrap_err()
                .line,
            Some(3)
        );
        assert!(parse("[xdp]\ninterface = \"a/b\"\n").is_err());
    }
}
