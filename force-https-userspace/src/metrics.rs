//! Counters: global ones for the whole daemon and per-host ones for `force-https list`.
//!
//! A leaf module: every request path, the policy table and the admin side count here, and it
//! imports none of them. Everything is a relaxed atomic: counters are read for reporting
//! only, never for control flow. [`Metrics::snapshot`] gives the named values the control
//! socket, `force-https stats` and the Prometheus endpoint show; other owners of counters (the
//! XDP fast path) report theirs through [`CounterSource`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One reported counter: name (without the `force_https_` prefix and `_total` suffix), help
/// text, value.
pub type Counter = (&'static str, &'static str, u64);

/// Something that owns counters of its own and reports them next to [`Metrics`].
pub trait CounterSource: Send + Sync {
    /// Appends this source's counters to `out`, in a stable order.
    fn counters(&self, out: &mut Vec<Counter>);
}

/// Declares the global counters once: field, name and help text stay together.
macro_rules! counters {
    ($( $field:ident => $help:literal ),* $(,)?) => {
        /// Global counters of the daemon.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $( #[doc = $help] pub $field: AtomicU64, )*
        }

        impl Metrics {
            /// Every counter with its name and help text, in declaration order.
            pub fn snapshot(&self) -> Vec<Counter> {
                vec![ $( (stringify!($field), $help, self.$field.load(Relaxed)), )* ]
            }
        }
    };
}

counters! {
    http_connections => "Connections accepted on the port-80 listeners.",
    https_connections => "Connections accepted on the TLS listeners.",
    connections_rejected => "Connections refused with 503 because limits.max_connections was reached.",
    redirects_301 => "301 redirects sent by the socket path.",
    redirects_308 => "308 redirects sent by the socket path.",
    afxdp_redirects_301 => "Fast-path 301 redirects sent by the AF_XDP responders.",
    afxdp_redirects_308 => "Fast-path 308 redirects sent by the AF_XDP responders.",
    proxied_http => "Requests proxied to a backend from port 80.",
    proxied_https => "Requests proxied to a backend from the TLS listeners.",
    backend_connections => "TCP connections opened to backends; about one per proxied request means idle connections are not reused ([proxy] pool_max_idle_per_host too small, or backends closing them early).",
    backend_retries => "Requests sent to a backend once more because the connection closed before any response (idempotent requests without a body).",
    responses_400 => "400 Bad Request responses.",
    responses_404 => "404 Not Found responses (no site for the host).",
    responses_408 => "408 responses: the request head did not arrive in time.",
    responses_414 => "414 responses: the request-target was too long.",
    responses_421 => "421 responses: the request's host is not covered by the TLS connection's certificate.",
    responses_431 => "431 responses: the request head was too large.",
    responses_options => "OPTIONS * requests answered by force-https itself (200 with Allow).",
    responses_502 => "502 responses: a backend could not be reached.",
    responses_504 => "504 responses: a backend did not answer in time.",
    responses_508 => "508 responses: a request that already went through this edge (CDN-Loop), or a backend redirecting to the URL just requested over http://.",
    redirect_loops_rewritten => "Backend redirects to http:// on the same host rewritten to https:// (loop_guard).",
    redirect_loops_stopped => "Backend redirects to the URL just requested over http:// answered 508 instead (loop_guard).",
    csp_upgrade_added => "HTTPS responses that got upgrade-insecure-requests in their Content-Security-Policy (csp_upgrade_insecure_requests).",
    https_rewrites_responses => "HTML responses whose body went through Automatic HTTPS Rewrites (https_rewrites).",
    https_rewrites_cache_hits => "Rewritten documents served from the cache of rewritten documents (the same page again, the same policy table).",
    https_rewrites_links => "http:// URLs upgraded to https:// by Automatic HTTPS Rewrites.",
    https_rewrites_passed_memory => "HTML documents that needed more than the rewriter's memory bound: the rest passed through unmodified.",
    https_rewrites_passed_charset => "HTML responses passed through unmodified: a charset the rewriter cannot read (UTF-16, unknown label).",
    https_rewrites_passed_encoding => "HTML responses passed through unmodified: a Content-Encoding the rewriter cannot decode.",
    https_rewrites_passed_no_transform => "HTML responses passed through unmodified: Cache-Control: no-transform.",
    https_rewrites_passed_partial => "HTML responses passed through unmodified: partial content (206).",
    https_rewrites_passed_codec_memory => "Compressed HTML responses passed through unmodified: their decoder and encoder did not fit in what was left of [proxy] https_rewrites_codec_memory_bytes.",
    https_rewrites_codec_memory_bytes => "Bytes of [proxy] https_rewrites_codec_memory_bytes reserved now by the decoders and encoders of compressed responses being rewritten (an upper bound of what they hold).",
    https_rewrites_decode_errors => "Rewritten responses whose backend body was not valid in its Content-Encoding (the response ended there).",
    hsts_injected => "HTTPS responses that got a Strict-Transport-Security header from force-https.",
    hsts_from_backend => "HTTPS responses to enforced hosts whose backend set its own Strict-Transport-Security.",
    tls_handshake_failures => "TLS handshakes that failed or timed out.",
    tls_unknown_sni => "TLS handshakes whose SNI matched no certificate.",
    tls_idle_shutdowns => "HTTP/2 connections on the TLS listeners (or ones still reading its preface) the edge began to end because the client sent nothing for limits.idle_timeout_ms: GOAWAY, then closed if the client stays quiet as long again.",
    h2_stalled_streams => "HTTP/2 streams the edge reset (RST_STREAM CANCEL) because their response waited limits.idle_timeout_ms for the client to open its flow-control window; their backend connections are closed, the client's connection goes on.",
    cert_reloads => "Successful certificate reloads.",
    cert_reload_failures => "Certificate reloads that failed (the previous certificates stayed in service).",
    config_reloads => "Configuration reloads applied (force-https reload, SIGHUP, the admin API).",
    config_reload_failures => "Configuration reloads refused (an invalid file or certificate; the previous configuration stayed in service).",
    access_log_lines => "Access log lines queued for writing.",
    access_log_dropped => "Access log lines dropped because the writer was behind ([log] buffer full); requests never wait for the log.",
    control_requests => "Requests served on the control socket.",
    admin_requests => "Requests served on the admin HTTP listener.",
    admin_auth_failures => "Admin HTTP changes refused for a missing or wrong bearer token.",
    policy_updates => "Host-policy changes applied (enable/disable).",
}

impl Metrics {
    /// Adds one to a counter.
    #[inline]
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Counts a response status generated by force-https itself.
    pub fn count_status(&self, status: u16) {
        let c = match status {
            400 => &self.responses_400,
            404 => &self.responses_404,
            408 => &self.responses_408,
            414 => &self.responses_414,
            421 => &self.responses_421,
            431 => &self.responses_431,
            502 => &self.responses_502,
            504 => &self.responses_504,
            508 => &self.responses_508,
            _ => return,
        };
        Self::inc(c);
    }
}

/// Counters of one host entry of the policy table; they survive policy rebuilds.
#[derive(Debug, Default)]
pub struct HostStats {
    /// Redirects sent for this host.
    pub redirects: AtomicU64,
    /// Requests proxied to the backend for this host (port 80 and 443).
    pub proxied: AtomicU64,
}

/// The values that go up and down (Prometheus gauges, exported without `_total`); every
/// other value is a counter.
pub const GAUGES: &[&str] = &[
    "active_connections",
    "hosts",
    "fleet_connected",
    "fleet_revision",
    "xdp_host_map_entries",
    "xdp_host_map_lag_max_us",
    "https_rewrites_codec_memory_bytes",
];

/// Renders counters and gauges ([`GAUGES`]) in the Prometheus text exposition format:
/// `force_https_NAME_total` for a counter, `force_https_NAME` for a gauge.
pub fn prometheus_text(values: &[Counter]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (name, help, value) in values {
        let (metric, kind) = if GAUGES.contains(name) {
            (format!("force_https_{name}"), "gauge")
        } else {
            (format!("force_https_{name}_total"), "counter")
        };
        let _ = write!(
            out,
            "# HELP {metric} {help}\n# TYPE {metric} {kind}\n{metric} {value}\n"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_and_values() {
        let m = Metrics::default();
        Metrics::inc(&m.redirects_301);
        m.count_status(404);
        let s = m.snapshot();
        assert!(s.contains(&("redirects_301", "301 redirects sent by the socket path.", 1)));
        assert!(s.iter().any(|(n, _, v)| *n == "responses_404" && *v == 1));
        let text = prometheus_text(&s);
        assert!(text.contains("force_https_redirects_301_total 1\n"));
        let g = prometheus_text(&[("hosts", "Entries.", 3)]);
        assert_eq!(
            g,
            "# HELP force_https_hosts Entries.\n# TYPE force_https_hosts gauge\nforce_https_hosts 3\n"
        );
    }
}
