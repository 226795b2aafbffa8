//! The admin side: one service ([`Admin`]) that owns what operators do to a running daemon
//! (enable, disable a host or a whole site, list hosts and sites, stats, reload), served over
//! two transports: the control socket ([`control`], the CLI's) and the admin HTTP listener
//! ([`http_api`]: the JSON API, the dashboard and Prometheus `/metrics`). A transport only
//! parses, authorizes and formats; every operation is implemented once, here.

pub mod control;
pub mod http_api;
pub mod protocol;

use std::sync::{Arc, atomic::Ordering::Relaxed};

use crate::{
    edge::Edge,
    metrics::{Counter, CounterSource, Metrics},
    paths::tls::CertStore,
    policy::{HostEntry, PolicyError, Source},
    reload::Reloader,
};
use force_https_proto::host::parse_domain_pattern;
use protocol::{ErrorCode, HostInfo, Request, Response, SiteInfo};

/// The admin service.
pub struct Admin {
    edge: Arc<Edge>,
    certs: Option<Arc<CertStore>>,
    sources: Vec<Arc<dyn CounterSource>>,
    reloader: Option<Reloader>,
}

impl Admin {
    /// The admin service of `edge`; `certs` are what `reload` re-reads, `sources` report their
    /// counters after the edge's own (the XDP fast path's).
    pub fn new(
        edge: Arc<Edge>,
        certs: Option<Arc<CertStore>>,
        sources: Vec<Arc<dyn CounterSource>>,
    ) -> Admin {
        Admin {
            edge,
            certs,
            sources,
            reloader: None,
        }
    }

    /// The same service, whose `reload` re-reads the whole configuration file with `r`
    /// (the daemon's); without one, `reload` re-reads the certificates only.
    pub fn with_reloader(mut self, r: Reloader) -> Admin {
        self.reloader = Some(r);
        self
    }

    /// Every counter the daemon reports: global, edge gauges, then each source's.
    pub fn stats(&self) -> Vec<Counter> {
        let mut v = self.edge.counters();
        for s in &self.sources {
            s.counters(&mut v);
        }
        v
    }

    /// Re-reads the whole configuration file and applies it (control `reload`, SIGHUP, the
    /// HTTP API): sites, domains, backends, paths, HSTS, redirect codes, live limits, the
    /// access log and the certificates (see [`crate::reload`]). What needs a restart is named
    /// in the message and keeps its running value. Without a reloader (no daemon), only the
    /// certificates are re-read.
    ///
    /// # Errors
    /// The file is invalid (`FILE: line N, column M: ...`) or a certificate failed to load;
    /// nothing was changed.
    pub fn reload(&self) -> anyhow::Result<String> {
        if let Some(r) = &self.reloader {
            return r.reload();
        }
        let Some(store) = &self.certs else {
            return Ok("no certificates configured; nothing to reload".into());
        };
        let m = &self.edge.metrics;
        match store.reload() {
            Ok(msg) => {
                Metrics::inc(&m.cert_reloads);
                tracing::info!("{msg}");
                Ok(msg)
            }
            Err(e) => {
                Metrics::inc(&m.cert_reload_failures);
                tracing::error!("{e:#}");
                Err(e)
            }
        }
    }

    /// Enforces (`enforce`) or releases hosts, persisted before it returns.
    ///
    /// # Errors
    /// An invalid host (nothing changed), or the change could not be persisted.
    pub fn set(&self, hosts: &[String], enforce: bool) -> Result<Vec<String>, PolicyError> {
        let changed = self.edge.policy.set(hosts, enforce)?;
        Metrics::inc(&self.edge.metrics.policy_updates);
        tracing::info!(hosts = ?hosts, enforce, changed = ?changed, "host policy changed");
        Ok(changed)
    }

    /// Enforces (`enforce`) or releases every host of site `name` in one persisted step
    /// (see [`crate::policy::Policy::set_site`]).
    ///
    /// # Errors
    /// An unknown site (nothing changed), or the change could not be persisted.
    pub fn set_site(&self, name: &str, enforce: bool) -> Result<Vec<String>, PolicyError> {
        let changed = self.edge.policy.set_site(name, enforce)?;
        Metrics::inc(&self.edge.metrics.policy_updates);
        tracing::info!(site = name, enforce, changed = ?changed, "site policy changed");
        Ok(changed)
    }

    /// Every host of the table, sorted by pattern.
    pub fn list(&self) -> Vec<HostInfo> {
        let table = self.edge.policy.table();
        table.entries().into_iter().map(|e| host_info(e)).collect()
    }

    /// The entry of one pattern (a name or `*.` wildcard, normalized first), `None` when the
    /// table has no entry of exactly that pattern.
    ///
    /// # Errors
    /// [`PolicyError::InvalidHost`]: not a valid name or wildcard.
    pub fn host(&self, pattern: &str) -> Result<Option<HostInfo>, PolicyError> {
        let p = parse_domain_pattern(pattern).map_err(|e| PolicyError::InvalidHost {
            host: pattern.to_string(),
            reason: e.to_string(),
        })?;
        let table = self.edge.policy.table();
        Ok(table.get(&p.to_string()).map(|e| host_info(e)))
    }

    /// Every site with its state, sorted by name. A site's hosts are its config domains and
    /// the runtime names attached to it.
    pub fn sites(&self) -> Vec<SiteInfo> {
        let table = self.edge.policy.table();
        let mut by_name: std::collections::BTreeMap<&str, SiteInfo> = Default::default();
        for e in table.entries() {
            let Some(site) = &e.site else { continue };
            let info = by_name.entry(&site.name).or_insert_with(|| SiteInfo {
                name: site.name.clone(),
                state: String::new(),
                force_https: None,
                config_force_https: site.force_https,
                enforced: Vec::new(),
                not_enforced: Vec::new(),
            });
            if e.enforced {
                info.enforced.push(e.pattern.to_string());
            } else {
                info.not_enforced.push(e.pattern.to_string());
            }
        }
        by_name
            .into_values()
            .map(|mut s| {
                (s.state, s.force_https) = match (s.enforced.is_empty(), s.not_enforced.is_empty())
                {
                    (false, true) => ("enforced".into(), Some(true)),
                    (true, _) => ("not_enforced".into(), Some(false)),
                    (false, false) => ("mixed".into(), None),
                };
                s
            })
            .collect()
    }

    /// Executes one control request.
    pub fn execute(&self, req: Request) -> Response {
        match req {
            Request::Enable { hosts } | Request::Disable { hosts } if hosts.is_empty() => {
                Response::error(ErrorCode::BadRequest, "no host given")
            }
            Request::Enable { hosts } => self.set_response(self.set(&hosts, true)),
            Request::Disable { hosts } => self.set_response(self.set(&hosts, false)),
            Request::EnableSite { site } => self.set_response(self.set_site(&site, true)),
            Request::DisableSite { site } => self.set_response(self.set_site(&site, false)),
            Request::Sites => Response {
                ok: true,
                sites: Some(self.sites()),
                ..Default::default()
            },
            Request::List => Response {
                ok: true,
                hosts: Some(self.list()),
                ..Default::default()
            },
            Request::Stats => Response {
                ok: true,
                stats: Some(
                    self.stats()
                        .into_iter()
                        .map(|(n, _, v)| (n.to_string(), v))
                        .collect(),
                ),
                ..Default::default()
            },
            Request::Reload => match self.reload() {
                Ok(msg) => Response {
                    ok: true,
                    message: Some(msg),
                    ..Default::default()
                },
                Err(e) => Response::error(ErrorCode::Internal, format!("{e:#}")),
            },
        }
    }

    fn set_response(&self, result: Result<Vec<String>, PolicyError>) -> Response {
        match result {
            Ok(changed) => Response {
                ok: true,
                changed: Some(changed),
                ..Default::default()
            },
            Err(e @ PolicyError::InvalidHost { .. }) => {
                Response::error(ErrorCode::InvalidHost, e.to_string())
            }
            Err(e @ PolicyError::UnknownSite { .. }) => {
                Response::error(ErrorCode::UnknownSite, e.to_string())
            }
            Err(e) => Response::error(ErrorCode::Internal, e.to_string()),
        }
    }
}

/// One table entry as `list` reports it.
fn host_info(e: &HostEntry) -> HostInfo {
    HostInfo {
        host: e.pattern.to_string(),
        site: e.site.as_ref().map(|s| s.name.clone()),
        source: match e.source {
            Source::Config => "config".into(),
            Source::Runtime => "runtime".into(),
        },
        enforced: e.enforced,
        overridden: e.overridden,
        redirects: e.stats.redirects.load(Relaxed),
        proxied: e.stats.proxied.load(Relaxed),
        force_paths: e
            .site
            .as_ref()
            .map(|s| s.force_paths.clone())
            .unwrap_or_default(),
    }
}
