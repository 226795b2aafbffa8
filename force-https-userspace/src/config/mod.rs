//! The TOML configuration: the validated types every other module reads.
//!
//! Parsing happens in two steps, ripgrep-style: [`raw`] is the file as serde reads it
//! (unknown keys rejected, spans kept), and [`validate`] checks it section by section into a
//! [`Config`] ([`Config::load`], [`Config::from_toml`]). Every error names the file, line and
//! column, so `force-https check` can point at the exact place.

mod raw;
mod validate;

use std::{fmt, net::SocketAddr, path::PathBuf};

use force_https_proto::{host::DomainPattern, response::RedirectCode};
use serde::Deserialize;

/// Default location of the configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/force-https/config.toml";
/// Default control socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/force-https/control.sock";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/force-https";
/// The ACME HTTP-01 challenge prefix, exempt from redirects unless `acme_exempt = false`
/// (defined once, in the contract with the XDP program).
pub use force_https_common::ACME_PREFIX;

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
    /// Keep-alive idle timeout on client connections, ms: an HTTP/1.1 connection between
    /// requests is closed after it, an HTTP/2 one that sent nothing gets `GOAWAY` after it
    /// and is closed after as long again. Also the longest pause in a request body (408), and
    /// in the client's reading of a response (`TCP_USER_TIMEOUT` on the listeners).
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
    /// Idle pooled connections kept per backend (default 1024). Keep it at least the number
    /// of requests a backend has in flight at peaks: the pool opens a connection for a
    /// request that finds none idle, and closes the ones over this number once they are
    /// idle again, so a smaller pool opens and closes a backend connection per request at
    /// that load (BENCHMARKS.md: with 512 requests in flight, 64 cost 20-30% of the rate).
    /// Connections of requests without a body (the direct path) and of the others are kept
    /// apart, each up to this number: a backend may have twice as many idle connections.
    pub pool_max_idle_per_host: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout_ms: u64,
    /// Memory for the decoders and encoders of compressed HTML responses being rewritten
    /// (`https_rewrites`), over all of them at once, bytes (default 16 MiB). Each reserves an
    /// upper bound of what its codecs hold: 96 KiB to decode gzip or deflate, 1.5 × the
    /// stream's window + 768 KiB to decode br (2.3 MiB for a 1 MiB window), 448 KiB to
    /// re-encode gzip or deflate, 256 KiB to re-encode br. A response that does not fit
    /// passes through unmodified (counted in `https_rewrites_passed_codec_memory`); the
    /// `https_rewrites_codec_memory_bytes` gauge shows what is reserved. 0: compressed HTML is
    /// never rewritten.
    pub https_rewrites_codec_memory_bytes: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 3_000,
            response_timeout_ms: 30_000,
            pool_max_idle_per_host: 1024,
            pool_idle_timeout_ms: 90_000,
            https_rewrites_codec_memory_bytes: 16 << 20,
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
    pub fn header_value(&self) -> hyper::header::HeaderValue {
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        // Digits, letters, `=`, `;` and spaces: always a valid value. The fallback is never
        // reached; it keeps the policy on rather than telling browsers to drop it (max-age=0).
        hyper::header::HeaderValue::from_maybe_shared(bytes::Bytes::from(v))
            .unwrap_or_else(|_| hyper::header::HeaderValue::from_static("max-age=31536000"))
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
    /// `answer_syn` (default true): XDP answers port-80 SYNs itself with a syncookie SYN-ACK
    /// (MSS option only: no window scaling, SACK or timestamps on port-80 connections). false:
    /// the kernel answers them (with its own syncookie, window scaling and SACK encoded in the
    /// timestamp), at the cost of the TCP stack's work per connection.
    pub answer_syn: bool,
    /// `xdp_tx`: whether frames the program sends back with `XDP_TX` (SYN-ACKs, FIN ACKs)
    /// reach the wire on this interface. Unset: detected (yes in generic mode and on a real
    /// device; no on a virtual device in driver mode, e.g. a veth, whose peer would need an
    /// XDP program of its own). `true` for a veth whose peer runs one; `false` to send every
    /// fast-path answer through the AF_XDP responder.
    pub xdp_tx: Option<bool>,
}

/// The `[admin]` section: the admin HTTP listener (JSON API under `/api/v1`, the dashboard at
/// `/`, Prometheus text at `/metrics`). `[metrics] listen` is an alias of `listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where the admin HTTP listener binds.
    pub listen: SocketAddr,
    /// `token_file`: a file (mode 0600 or 0400) holding the bearer token that mutations
    /// (`PUT`, `POST`) need. Without it the listener must be a loopback address and every
    /// mutation is refused (403); reads are allowed.
    pub token_file: Option<PathBuf>,
}

/// The default `[fleet] prefix`.
pub const DEFAULT_FLEET_PREFIX: &str = "/force-https/";

/// `[fleet] tls`: how the daemon authenticates etcd and itself to etcd (every file PEM).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetTls {
    /// `ca`: the CA that signed etcd's certificate (else the system's roots are not used: the
    /// connection needs a CA).
    pub ca: Option<PathBuf>,
    /// `cert`: the client certificate chain (etcd's `--client-cert-auth`), with `key`.
    pub cert: Option<PathBuf>,
    /// `key`: the client private key, with `cert`.
    pub key: Option<PathBuf>,
}

/// The `[fleet]` section: etcd is the source of truth for which hosts are enforced
/// (docs/design.md, "Fleet (etcd)").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `etcd_endpoints`: `http://IP:PORT` or `https://HOST:PORT` URLs, at least one.
    pub etcd_endpoints: Vec<String>,
    /// `prefix` (default `/force-https/`, always ending in `/`): the keys are
    /// `<prefix>hosts/<host>`.
    pub prefix: String,
    /// `tls`: required for `https://` endpoints that need a private CA or client certificates.
    pub tls: Option<FleetTls>,
    /// `username`, with `password_file`: etcd's authentication.
    pub username: Option<String>,
    /// `password_file`: a file whose content (surrounding whitespace removed) is the password.
    pub password_file: Option<PathBuf>,
}

/// `[log] access`: whether and how requests are logged.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessFormat {
    /// No access log (the default).
    #[default]
    Off,
    /// One JSON object per line and request (docs/design.md, "Access log").
    Json,
}

/// The `[log]` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `access = "off" | "json"`.
    pub access: AccessFormat,
    /// `path`: the file access lines are appended to (created mode 0640, reopened on every
    /// reload so logrotate can move it); standard output when absent.
    pub path: Option<PathBuf>,
    /// `buffer`: access lines that may wait for the writer (default 8192); beyond it lines
    /// are dropped and counted (`access_log_dropped`), never waited for.
    pub buffer: Option<usize>,
}

/// HSTS of one site: off, or the header value to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteHsts {
    /// `hsts = false`: never injected.
    Off,
    /// The header value injected on HTTPS responses of enforced hosts (made once: every
    /// response shares its bytes).
    On(hyper::header::HeaderValue),
}

/// A site's backend, `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `host:port` as written.
    pub authority: String,
    /// The backend URL as written.
    pub url: String,
    /// `authority` parsed once: every request forwarded to this backend shares its bytes.
    pub uri_authority: hyper::http::uri::Authority,
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
    /// `force_paths`: when not empty, only requests under one of these path prefixes are
    /// redirected (exempt and ACME paths still win); the rest of the site is served over HTTP
    /// as for a host that is not enforced, without HSTS.
    pub force_paths: Vec<String>,
    /// HSTS injection on HTTPS.
    pub hsts: SiteHsts,
    /// The site's certificate.
    pub tls: Option<TlsFiles>,
    /// `loop_guard` (default true): a backend redirect to `http://` on the same host is turned
    /// into `https://`, or answered `508` when it points back at the URL just requested.
    pub loop_guard: bool,
    /// `csp_upgrade_insecure_requests` (default false): HTTPS responses of enforced hosts
    /// carry the `upgrade-insecure-requests` CSP directive.
    pub csp_upgrade_insecure_requests: bool,
    /// `https_rewrites` (default false): Automatic HTTPS Rewrites of the `http://` links in
    /// HTML responses proxied over HTTPS for enforced hosts.
    pub https_rewrites: bool,
    /// `https_rewrite_hosts`: hosts (exact names and `*.` wildcards) known to serve HTTPS
    /// besides the ones enforced here, whose `http://` links are upgraded too.
    pub https_rewrite_hosts: Vec<DomainPattern>,
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
    /// The admin HTTP listener (`[admin]`, or its alias `[metrics] listen`), when configured.
    pub admin: Option<AdminConfig>,
    /// `[log]`: the access log.
    pub log: LogConfig,
    /// `[fleet]`: etcd as the source of truth for which hosts are enforced, when configured.
    pub fleet: Option<FleetConfig>,
    /// The sites.
    pub sites: Vec<Site>,
    /// Problems that do not make the file invalid, one line each (`force-https check`
    /// prints them): a site that preloads HSTS without `include_subdomains` or with a
    /// `max_age` under a year.
    pub warnings: Vec<String>,
}

impl Config {
    /// Whether any certificate is configured (the TLS listeners need one).
    pub fn has_certificates(&self) -> bool {
        self.tls.default_cert.is_some() || self.sites.iter().any(|s| s.tls.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
        assert_eq!(c.proxy.https_rewrites_codec_memory_bytes, 16 << 20);
    }

    #[test]
    fn limits_that_would_refuse_every_client_are_refused() {
        for (toml, want) in [
            (
                "max_connections = 0",
                "limits.max_connections must be at least 1",
            ),
            (
                "max_head_bytes = 255",
                "limits.max_head_bytes must be at least 256",
            ),
            (
                "head_timeout_ms = 0",
                "limits.head_timeout_ms must be at least 1",
            ),
            (
                "idle_timeout_ms = 0",
                "limits.idle_timeout_ms must be at least 1",
            ),
            (
                "idle_timeout_ms = 2147483648",
                "limits.idle_timeout_ms must be at most 2147483647",
            ),
        ] {
            let e = parse(&format!("[limits]\n{toml}\n")).unwrap_err();
            assert!(e.to_string().contains(want), "{toml}: {e}");
        }
        let c = parse("[limits]\nidle_timeout_ms = 1\nhead_timeout_ms = 1\n").unwrap();
        assert_eq!((c.limits.idle_timeout_ms, c.limits.head_timeout_ms), (1, 1));
        let c = parse("[limits]\nidle_timeout_ms = 2147483647\n").unwrap();
        assert_eq!(c.limits.idle_timeout_ms, 2_147_483_647);
    }

    /// The shipped example names every key with its default: it parses, and to the defaults.
    #[test]
    fn the_shipped_example_is_valid() {
        let c = parse(include_str!("../../../dist/config.example.toml")).unwrap();
        assert_eq!(c.proxy, ProxyConfig::default());
        let e = parse("[proxy]\nhttps_rewrites_codec_memory_bytes = -1\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
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
        assert_eq!(
            s.hsts,
            SiteHsts::On(hyper::header::HeaderValue::from_static("max-age=31536000"))
        );
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
            SiteHsts::On(hyper::header::HeaderValue::from_static(
                "max-age=10; includeSubDomains; preload"
            ))
        );
    }

    #[test]
    fn preload_warnings() {
        // The default never preloads: no warning.
        assert!(
            parse("[[site]]\nname = \"a\"\ndomains = [\"a.example\"]\n")
                .unwrap()
                .warnings
                .is_empty()
        );
        let c = parse(
            "[hsts]\npreload = true\n\
             [[site]]\nname = \"a\"\ndomains = [\"a.example\"]\n\
             [[site]]\nname = \"b\"\ndomains = [\"b.example\"]\nhsts = { include_subdomains = true }\n\
             [[site]]\nname = \"c\"\ndomains = [\"c.example\"]\nhsts = { include_subdomains = true, max_age = 600 }\n\
             [[site]]\nname = \"d\"\ndomains = [\"d.example\"]\nhsts = false\n\
             [[site]]\nname = \"e\"\ndomains = [\"e.example\"]\nhsts = { preload = false }\n",
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(
            c.warnings[0].starts_with("site \"a\": hsts preload = true without include_subdomains"),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings[1]
                .starts_with("site \"c\": hsts preload = true with max_age = 600 < 31536000"),
            "{:?}",
            c.warnings
        );
        let ok = parse(
            "[hsts]\npreload = true\ninclude_subdomains = true\n[[site]]\nname = \"a\"\ndomains = [\"a.example\"]\n",
        )
        .unwrap();
        assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
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
    fn admin_section_and_metrics_alias() {
        assert!(parse("").unwrap().admin.is_none());
        let a = parse("[admin]\nlisten = \"127.0.0.1:9180\"\n")
            .unwrap()
            .admin
            .unwrap();
        assert_eq!(a.listen, "127.0.0.1:9180".parse().unwrap());
        assert_eq!(a.token_file, None);
        // The old section is an alias of the same listener.
        let m = parse("[metrics]\nlisten = \"[::1]:9100\"\n")
            .unwrap()
            .admin
            .unwrap();
        assert_eq!(m.listen, "[::1]:9100".parse().unwrap());
        assert!(
            parse("[metrics]\nlisten = \"127.0.0.1:1\"\n[admin]\nlisten = \"127.0.0.1:1\"\n")
                .is_ok()
        );
        let e = parse("[metrics]\nlisten = \"127.0.0.1:1\"\n[admin]\nlisten = \"127.0.0.1:2\"\n")
            .unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(
            e.message.contains("remove the [metrics] section")
                && e.message.contains("listen = \"127.0.0.1:2\""),
            "{e}"
        );
        // Not loopback: only with a token file.
        let e = parse("[admin]\nlisten = \"0.0.0.0:9180\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("token_file"), "{e}");
        let a = parse("[admin]\nlisten = \"0.0.0.0:9180\"\ntoken_file = \"/etc/t\"\n")
            .unwrap()
            .admin
            .unwrap();
        assert_eq!(a.token_file, Some(PathBuf::from("/etc/t")));
        assert_eq!(
            parse("[admin]\nlisten = \"127.0.0.1:1\"\ntoken_file = \"rel\"\n")
                .unwrap_err()
                .line,
            Some(3)
        );
        assert_eq!(
            parse("[admin]\ntoken_file = \"/etc/t\"\n")
                .unwrap_err()
                .line,
            Some(2)
        );
        assert_eq!(
            parse("[admin]\nlisten = \"localhost:1\"\n")
                .unwrap_err()
                .line,
            Some(2)
        );
    }

    #[test]
    fn log_section() {
        let c = parse("").unwrap();
        assert_eq!(c.log, LogConfig::default());
        assert_eq!(c.log.access, AccessFormat::Off);
        let c =
            parse("[log]\naccess = \"json\"\npath = \"/var/log/fh.log\"\nbuffer = 16\n").unwrap();
        assert_eq!(
            c.log,
            LogConfig {
                access: AccessFormat::Json,
                path: Some("/var/log/fh.log".into()),
                buffer: Some(16),
            }
        );
        let e = parse("[log]\naccess = \"xml\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(10)), "{e}");
        assert_eq!(parse("[log]\nbogus = 1\n").unwrap_err().line, Some(2));
        assert!(parse("[log]\nbuffer = 0\n").unwrap_err().line.is_some());
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
                answer_syn: true,
                xdp_tx: None,
            }
        );
        let x = parse("[xdp]\ninterface = \"eth0\"\nxdp_tx = true\n")
            .unwrap()
            .xdp
            .unwrap();
        assert_eq!(x.xdp_tx, Some(true));
        let x = parse("[xdp]\ninterface = \"eth0\"\nanswer_syn = false\n")
            .unwrap()
            .xdp
            .unwrap();
        assert!(!x.answer_syn);
        assert_eq!(
            parse("[xdp]\ninterface = \"eth0\"\nanswer_syn = \"yes\"\n")
                .unwrap_err()
                .line,
            Some(3)
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

    #[test]
    fn fleet_section() {
        assert_eq!(parse("").unwrap().fleet, None);
        let c = parse(
            "[fleet]\netcd_endpoints = [\"http://127.0.0.1:2379\", \"https://etcd.example:2379/\"]\n\
             tls = { ca = \"/etc/fh/ca.pem\" }\nusername = \"edge\"\npassword_file = \"/etc/fh/etcd.pw\"\n",
        );
        if cfg!(not(feature = "fleet")) {
            let e = c.unwrap_err();
            assert!(e.message.contains("feature `fleet`"), "{e}");
            assert_eq!(e.line, Some(1), "{e}");
            return;
        }
        let f = c.unwrap().fleet.unwrap();
        assert_eq!(
            f.etcd_endpoints,
            ["http://127.0.0.1:2379", "https://etcd.example:2379"]
        );
        assert_eq!(f.prefix, DEFAULT_FLEET_PREFIX);
        assert_eq!(f.username.as_deref(), Some("edge"));
        for (text, line, needle) in [
            ("[fleet]\netcd_endpoints = []\n", 2, "empty"),
            (
                "[fleet]\netcd_endpoints = [\"127.0.0.1:2379\"]\n",
                2,
                "http://HOST:PORT",
            ),
            ("[fleet]\netcd_endpoints = [\"http://a\"]\n", 2, "HOST:PORT"),
            (
                "[fleet]\netcd_endpoints = [\"http://a:1/x\"]\n",
                2,
                "no path",
            ),
            (
                "[fleet]\netcd_endpoints = [\"http://a:1\"]\nprefix = \"fh\"\n",
                3,
                "prefix",
            ),
            (
                "[fleet]\netcd_endpoints = [\"http://a:1\"]\ntls = { ca = \"/ca\" }\n",
                3,
                "http://",
            ),
            (
                "[fleet]\netcd_endpoints = [\"https://a:1\"]\ntls = { cert = \"/c\" }\n",
                3,
                "together",
            ),
            (
                "[fleet]\netcd_endpoints = [\"https://a:1\"]\ntls = { ca = \"ca.pem\" }\n",
                3,
                "absolute",
            ),
            (
                "[fleet]\netcd_endpoints = [\"http://a:1\"]\nusername = \"u\"\n",
                3,
                "password_file",
            ),
            (
                "[fleet]\netcd_endpoints = [\"http://a:1\"]\npassword_file = \"/p\"\n",
                3,
                "without username",
            ),
            (
                "[fleet]\netcd_endpoints = [\"http://a:1\"]\nbogus = 1\n",
                3,
                "bogus",
            ),
            ("[fleet]\nprefix = \"/x/\"\n", 1, "etcd_endpoints"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }
}
