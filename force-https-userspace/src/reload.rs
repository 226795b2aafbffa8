//! The live configuration reload (`force-https reload`, SIGHUP, the admin API's reload): the
//! whole configuration file is read again and applied without dropping a connection.
//!
//! 1. The file is read and validated ([`Config::load`]); an error changes nothing and is
//!    answered as `force-https check` prints it (`FILE: line N, column M: ...`).
//! 2. What cannot change in a running daemon ([`pin_restart_only`]: listen addresses, the
//!    state directory and control socket, `[xdp]`, `[admin]`, `[proxy]`, `[tls]` settings,
//!    two limits, and with the fast path the values compiled into its responders) keeps its
//!    running value; the answer lists it as needing a restart.
//! 3. Every certificate of the new file is loaded, and the access log is opened; a failure
//!    changes nothing.
//! 4. Then, in this order: certificates, the policy table (sites, domains, backends,
//!    exempt/force paths, HSTS, redirect codes; runtime overrides kept and still winning; the
//!    changed patterns go to the XDP host map as for `enable`/`disable`), the edge's settings,
//!    the access log.
//!
//! A request in flight holds the table and settings it started with (one snapshot per
//! request, per connection for the port-80 head phase) and finishes on them.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::anyhow;

use crate::{
    access_log::AccessLog,
    config::Config,
    edge::{Edge, Settings},
    metrics::Metrics,
    paths::tls::CertStore,
};

/// Re-reads and applies a daemon's configuration file.
pub struct Reloader {
    path: PathBuf,
    /// The configuration in effect (with the running values of what needs a restart).
    applied: Mutex<Config>,
    edge: Arc<Edge>,
    certs: Option<Arc<CertStore>>,
}

impl Reloader {
    /// The reloader of a daemon started with `config` (read from `config.path`); `certs` are
    /// the TLS listeners' certificates (`None` when they were not started).
    pub fn new(config: &Config, edge: Arc<Edge>, certs: Option<Arc<CertStore>>) -> Reloader {
        Reloader {
            path: config.path.clone(),
            applied: Mutex::new(config.clone()),
            edge,
            certs,
        }
    }

    /// Reloads the configuration file. Reloads are serialized.
    ///
    /// # Errors
    /// The file is invalid (`FILE: line N, column M: ...`), a certificate fails to load, or
    /// the access log cannot be opened. Nothing was changed.
    pub fn reload(&self) -> anyhow::Result<String> {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let m = &self.edge.metrics;
        match self.apply(&mut applied) {
            Ok(msg) => {
                Metrics::inc(&m.config_reloads);
                tracing::info!("{msg}");
                Ok(msg)
            }
            Err(e) => {
                Metrics::inc(&m.config_reload_failures);
                let e = e.context("configuration not reloaded; the running one stays in service");
                tracing::error!("{e:#}");
                Err(e)
            }
        }
    }

    fn apply(&self, applied: &mut Config) -> anyhow::Result<String> {
        let mut next = Config::load(&self.path).map_err(|e| anyhow!("{e}"))?;
        for w in &next.warnings {
            tracing::warn!("{}: {w}", self.path.display());
        }
        let mut restart = pin_restart_only(applied, &mut next);
        if self.certs.is_none() && next.has_certificates() && !next.https.is_empty() {
            restart.push("the TLS listeners (certificates were added)");
        }
        let certs = match &self.certs {
            Some(store) => match store.prepare(&next) {
                Ok(p) => Some((store, p)),
                Err(e) => {
                    Metrics::inc(&self.edge.metrics.cert_reload_failures);
                    return Err(e);
                }
            },
            None => None,
        };
        let access = AccessLog::start(&next.log)?;

        // From here on nothing fails.
        let n_certs = certs.map(|(store, p)| {
            Metrics::inc(&self.edge.metrics.cert_reloads);
            store.commit(p)
        });
        let changed = self.edge.policy.reload(&next.sites);
        self.edge.set_settings(Settings::from_config(&next));
        self.edge.set_access_log(access);
        let mut msg = format!(
            "reloaded {}: {} site(s), {} host pattern(s) changed",
            self.path.display(),
            next.sites.len(),
            changed.len()
        );
        if let Some(n) = n_certs {
            msg.push_str(&format!(", {n} certificate(s)"));
        }
        if !restart.is_empty() {
            msg.push_str(&format!(
                "; needs a restart to take effect (the running values stay): {}",
                restart.join(", ")
            ));
        }
        *applied = next;
        Ok(msg)
    }
}

/// Keeps in `next` the running value of everything that cannot change without a restart,
/// and names each that `next` wanted to change.
///
/// - listen addresses, `[state]`, `[metrics]`: sockets bound and files opened at start;
/// - `[xdp]`: the program is attached and its maps sized at start;
/// - `[fleet]`: the etcd client and its watch are set up at start;
/// - `[proxy]` and `limits.idle_timeout_ms`: the backend client (pool, timeouts, request-body
///   idle timeout) is built once;
/// - `[tls]` settings (not the certificates): the rustls configuration (session cache) and
///   the listeners' settings are built once;
/// - `limits.max_connections`: the connection cap is one semaphore;
/// - with `[xdp]`: `redirect.https_port`, `redirect.default_host` and
///   `limits.max_head_bytes`, which the XDP program and its responders were started with:
///   changing them for the socket path alone would make the two paths answer differently.
pub fn pin_restart_only(applied: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    fn pin<T: PartialEq + Clone>(
        name: &'static str,
        old: &T,
        new: &mut T,
        out: &mut Vec<&'static str>,
    ) {
        if old != new {
            out.push(name);
            *new = old.clone();
        }
    }
    pin("[listen] http", &applied.http, &mut next.http, &mut out);
    pin("[listen] https", &applied.https, &mut next.https, &mut out);
    pin(
        "[state] dir",
        &applied.state_dir,
        &mut next.state_dir,
        &mut out,
    );
    pin(
        "[state] control_socket",
        &applied.control_socket,
        &mut next.control_socket,
        &mut out,
    );
    pin("[xdp]", &applied.xdp, &mut next.xdp, &mut out);
    pin("[fleet]", &applied.fleet, &mut next.fleet, &mut out);
    pin("[admin]", &applied.admin, &mut next.admin, &mut out);
    pin("[proxy]", &applied.proxy, &mut next.proxy, &mut out);
    let tls = |c: &Config| {
        (
            c.tls.session_cache_size,
            c.tls.max_concurrent_streams,
            c.tls.max_header_bytes,
            c.tls.handshake_timeout_ms,
        )
    };
    if tls(applied) != tls(next) {
        out.push("[tls] settings other than certificates");
        let default_cert = next.tls.default_cert.take();
        next.tls = applied.tls.clone();
        next.tls.default_cert = default_cert;
    }
    pin(
        "limits.max_connections",
        &applied.limits.max_connections,
        &mut next.limits.max_connections,
        &mut out,
    );
    pin(
        "limits.idle_timeout_ms",
        &applied.limits.idle_timeout_ms,
        &mut next.limits.idle_timeout_ms,
        &mut out,
    );
    if applied.xdp.is_some() {
        pin(
            "redirect.https_port (with [xdp])",
            &applied.https_port,
            &mut next.https_port,
            &mut out,
        );
        pin(
            "redirect.default_host (with [xdp])",
            &applied.default_host,
            &mut next.default_host,
            &mut out,
        );
        pin(
            "limits.max_head_bytes (with [xdp])",
            &applied.limits.max_head_bytes,
            &mut next.limits.max_head_bytes,
            &mut out,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Change;
    use std::path::Path;

    fn write(path: &Path, sites: &str, extra: &str) {
        let text = format!(
            "[listen]\nhttp = [\"127.0.0.1:8080\"]\nhttps = []\n[state]\ndir = \"{}\"\n{extra}\n{sites}",
            path.parent().unwrap().join("state").display()
        );
        std::fs::write(path, text).unwrap();
    }

    const SITES: &str = "[[site]]\nname = \"shop\"\ndomains = [\"shop.example\"]\nbackend = \"http://127.0.0.1:9001\"\nforce_https = true\n[[site]]\nname = \"blog\"\ndomains = [\"blog.example\"]\nbackend = \"http://127.0.0.1:9002\"\n";

    fn setup() -> (tempfile::TempDir, PathBuf, Arc<Edge>, Reloader) {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("config.toml");
        write(&path, SITES, "");
        let config = Config::load(&path).unwrap();
        let edge = Arc::new(Edge::new(&config).unwrap());
        let r = Reloader::new(&config, edge.clone(), None);
        (d, path, edge, r)
    }

    #[test]
    fn applies_sites_keeps_overrides_and_emits_the_changed_patterns() {
        let (_d, path, edge, r) = setup();
        // A runtime override, and a subscriber such as the XDP host map.
        edge.policy.set(&["blog.example".into()], true).unwrap();
        let mut changes = edge.policy.subscribe_changes();
        let blog = edge
            .policy
            .table()
            .get("blog.example")
            .unwrap()
            .stats
            .clone();
        let sites = SITES.replace("9001", "9009").replace(
            "domains = [\"blog.example\"]",
            "domains = [\"blog.example\", \"new.example\"]\nforce_https = false",
        ) + "hsts = false\n";
        write(&path, &sites, "[hsts]\nmax_age = 600\n");
        let msg = r.reload().unwrap();
        assert!(msg.contains("2 site(s)"), "{msg}");
        assert!(!msg.contains("restart"), "{msg}");
        let t = edge.policy.table();
        let shop = t.get("shop.example").unwrap();
        assert_eq!(
            shop.site
                .as_ref()
                .unwrap()
                .backend
                .as_ref()
                .unwrap()
                .authority,
            "127.0.0.1:9009"
        );
        // The override still wins; the counters stayed with the pattern.
        let b = t.get("blog.example").unwrap();
        assert!(b.enforced && b.overridden);
        assert!(Arc::ptr_eq(&b.stats, &blog));
        assert!(!t.get("new.example").unwrap().enforced);
        assert_eq!(edge.settings().default_hsts, "max-age=600");
        // Every pattern whose entry changed went to the subscriber.
        let Ok(Change::Patterns(p)) = changes.try_recv().map(|n| n.change) else {
            panic!("no change sent");
        };
        assert_eq!(&*p, ["blog.example", "new.example", "shop.example"]);
        assert_eq!(
            edge.metrics
                .config_reloads
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // The same file again: nothing changed, nothing sent.
        r.reload().unwrap();
        assert!(changes.try_recv().is_err());
    }

    #[test]
    fn an_invalid_file_changes_nothing() {
        let (_d, path, edge, r) = setup();
        let before = edge.policy.table().len();
        std::fs::write(&path, "[[site]]\nname = \"x\"\ndomains = [\"bad host\"]\n").unwrap();
        let e = format!("{:#}", r.reload().unwrap_err());
        assert!(e.contains("line 3, column 12"), "{e}");
        assert_eq!(edge.policy.table().len(), before);
        assert!(edge.policy.table().get("shop.example").is_some());
        assert_eq!(
            edge.metrics
                .config_reload_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn restart_only_values_keep_running_and_are_named() {
        let (_d, path, edge, r) = setup();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("127.0.0.1:8080", "127.0.0.1:8081")
            .replace("force_https = true", "force_https = false");
        std::fs::write(
            &path,
            text + "[limits]\nmax_connections = 7\nhead_timeout_ms = 5\n",
        )
        .unwrap();
        let msg = r.reload().unwrap();
        assert!(msg.contains("needs a restart"), "{msg}");
        assert!(
            msg.contains("[listen] http") && msg.contains("limits.max_connections"),
            "{msg}"
        );
        // The rest is applied.
        assert!(!edge.policy.table().get("shop.example").unwrap().enforced);
        assert_eq!(edge.settings().limits.head_timeout_ms, 5);
        assert_eq!(edge.settings().limits.max_connections, 16384);
    }

    #[test]
    fn pinned_with_xdp() {
        let base = Config::from_toml(Path::new("a"), "[xdp]\ninterface = \"eth0\"\n").unwrap();
        let mut next =
            Config::from_toml(Path::new("a"), "[redirect]\nhttps_port = 8443\n").unwrap();
        let r = pin_restart_only(&base, &mut next);
        assert_eq!(r, ["[xdp]", "redirect.https_port (with [xdp])"]);
        assert_eq!(next.https_port, 443);
        assert!(next.xdp.is_some());
    }
}
