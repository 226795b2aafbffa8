//! The raw (serde) layer of the configuration: the file as written, unknown keys rejected,
//! with the spans of every value that [`super::validate`] checks, so its errors can name the
//! line and column.

use serde::Deserialize;
use toml::Spanned;

use std::path::PathBuf;

use super::{HstsConfig, Limits, LogConfig, ProxyConfig, TlsFiles, XdpMode};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) listen: RawListen,
    #[serde(default)]
    pub(super) state: RawState,
    #[serde(default)]
    pub(super) redirect: RawRedirect,
    #[serde(default)]
    pub(super) limits: Limits,
    #[serde(default)]
    pub(super) proxy: ProxyConfig,
    #[serde(default)]
    pub(super) hsts: HstsConfig,
    #[serde(default)]
    pub(super) tls: RawTls,
    #[serde(default)]
    pub(super) xdp: Option<RawXdp>,
    #[serde(default)]
    pub(super) metrics: Option<RawMetrics>,
    #[serde(default)]
    pub(super) admin: Option<RawAdmin>,
    pub(super) log: Option<Spanned<LogConfig>>,
    #[serde(default)]
    pub(super) fleet: Option<Spanned<RawFleet>>,
    #[serde(default)]
    pub(super) site: Vec<RawSite>,
}

/// `[fleet]`: etcd as the source of truth for which hosts are enforced.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    pub(super) etcd_endpoints: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) tls: Option<Spanned<RawFleetTls>>,
    #[serde(default)]
    pub(super) username: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) password_file: Option<Spanned<PathBuf>>,
}

/// `[fleet] tls = { ca, cert, key }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleetTls {
    pub(super) ca: Option<PathBuf>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    #[serde(default = "default_http")]
    pub(super) http: Vec<Spanned<String>>,
    #[serde(default = "default_https")]
    pub(super) https: Vec<Spanned<String>>,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            http: default_http(),
            https: default_https(),
        }
    }
}

pub(super) fn unspanned(v: &[&str]) -> Vec<Spanned<String>> {
    v.iter()
        .map(|s| Spanned::new(0..0, (*s).to_string()))
        .collect()
}
pub(super) fn default_http() -> Vec<Spanned<String>> {
    unspanned(&["0.0.0.0:80", "[::]:80"])
}
pub(super) fn default_https() -> Vec<Spanned<String>> {
    unspanned(&["0.0.0.0:443", "[::]:443"])
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) dir: Option<PathBuf>,
    pub(super) control_socket: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedirect {
    #[serde(default = "default_https_port")]
    pub(super) https_port: Spanned<i64>,
    pub(super) default_host: Option<Spanned<String>>,
}

impl Default for RawRedirect {
    fn default() -> Self {
        Self {
            https_port: default_https_port(),
            default_host: None,
        }
    }
}

pub(super) fn default_https_port() -> Spanned<i64> {
    Spanned::new(0..0, 443)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) default_cert: Option<Spanned<TlsFiles>>,
    #[serde(default)]
    pub(super) session_cache_size: Option<usize>,
    #[serde(default)]
    pub(super) max_concurrent_streams: Option<u32>,
    #[serde(default)]
    pub(super) max_header_bytes: Option<usize>,
    #[serde(default)]
    pub(super) handshake_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawXdp {
    pub(super) interface: Spanned<String>,
    #[serde(default)]
    pub(super) mode: XdpMode,
    #[serde(default)]
    pub(super) max_hosts: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) max_flows: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) answer_syn: Option<bool>,
    #[serde(default)]
    pub(super) xdp_tx: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) token_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    pub(super) name: Spanned<String>,
    pub(super) domains: Spanned<Vec<Spanned<String>>>,
    pub(super) backend: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) force_https: bool,
    #[serde(default)]
    pub(super) redirect_code: Option<Spanned<RawCode>>,
    #[serde(default)]
    pub(super) exempt_paths: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    pub(super) acme_exempt: bool,
    #[serde(default)]
    pub(super) hsts: Option<Spanned<RawSiteHsts>>,
    #[serde(default)]
    pub(super) tls: Option<Spanned<TlsFiles>>,
    #[serde(default)]
    pub(super) force_paths: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    pub(super) loop_guard: bool,
    #[serde(default)]
    pub(super) csp_upgrade_insecure_requests: bool,
    #[serde(default)]
    pub(super) https_rewrites: bool,
    #[serde(default)]
    pub(super) https_rewrite_hosts: Vec<Spanned<String>>,
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawCode {
    Text(String),
    Number(i64),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSiteHsts {
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
