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
    fleet::{Fleet, FleetError},
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
    /// With `[fleet]`: changes go to etcd unless they are `local`.
    fleet: Option<Arc<Fleet>>,
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
            fleet: None,
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

    /// The same service, whose changes go to the fleet (etcd) unless they are local.
    pub fn with_fleet(mut self, fleet: Option<Arc<Fleet>>) -> Admin {
        self.fleet = fleet;
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

    /// Enforces (`enforce`) or releases hosts, persisted before it returns: with `[fleet]`
    /// written to etcd (see [`Admin::set_with`]).
    ///
    /// # Errors
    /// As [`Admin::set_with`].
    pub fn set(&self, hosts: &[String], enforce: bool) -> Result<Vec<String>, PolicyError> {
        self.set_with(hosts, enforce, false)
    }

    /// Enforces (`enforce`) or releases hosts. With `[fleet]` and not `local`, the keys are
    /// written to etcd and the call returns once this node's watch has applied them (every
    /// node gets them the same way); otherwise the change is a node-local override, persisted
    /// in `state.dir` before it returns. Must not run on a runtime worker (a fleet write
    /// waits): the transports call it on the blocking pool. Returns the patterns whose state
    /// changed here.
    ///
    /// # Errors
    /// An invalid host (nothing changed), the change could not be persisted, or etcd cannot
    /// be reached ([`PolicyError::FleetUnavailable`], nothing changed).
    pub fn set_with(
        &self,
        hosts: &[String],
        enforce: bool,
        local: bool,
    ) -> Result<Vec<String>, PolicyError> {
        let changed = match (&self.fleet, local) {
            (Some(fleet), false) => self.fleet_set(fleet, hosts, enforce)?,
            _ => self.edge.policy.set(hosts, enforce)?,
        };
        Metrics::inc(&self.edge.metrics.policy_updates);
        tracing::info!(hosts = ?hosts, enforce, local, changed = ?changed, "host policy changed");
        Ok(changed)
    }

    /// Enforces (`enforce`) or releases every host of site `name` in one step (see
    /// [`Admin::set_site_with`]).
    ///
    /// # Errors
    /// As [`Admin::set_site_with`].
    pub fn set_site(&self, name: &str, enforce: bool) -> Result<Vec<String>, PolicyError> {
        self.set_site_with(name, enforce, false)
    }

    /// Enforces (`enforce`) or releases every host of site `name`: locally in one persisted
    /// step (see [`crate::policy::Policy::set_site`]), or with `[fleet]` and not `local`, the
    /// keys of every host of the site as this node knows it, written to etcd.
    ///
    /// # Errors
    /// An unknown site (nothing changed), the change could not be persisted, or etcd cannot
    /// be reached.
    pub fn set_site_with(
        &self,
        name: &str,
        enforce: bool,
        local: bool,
    ) -> Result<Vec<String>, PolicyError> {
        let changed = match (&self.fleet, local) {
            (Some(fleet), false) => {
                let hosts: Vec<String> = self
                    .edge
                    .policy
                    .table()
                    .entries()
                    .into_iter()
                    .filter(|e| e.site.as_ref().is_some_and(|s| s.name == name))
                    .map(|e| e.pattern.to_string())
                    .collect();
                if hosts.is_empty() {
                    return Err(PolicyError::UnknownSite { name: name.into() });
                }
                self.fleet_set(fleet, &hosts, enforce)?
            }
            _ => self.edge.policy.set_site(name, enforce)?,
        };
        Metrics::inc(&self.edge.metrics.policy_updates);
        tracing::info!(site = name, enforce, local, changed = ?changed, "site policy changed");
        Ok(changed)
    }

    /// Writes the hosts to etcd and reports which of them changed state here once the watch
    /// brought the change back.
    fn fleet_set(
        &self,
        fleet: &Fleet,
        hosts: &[String],
        enforce: bool,
    ) -> Result<Vec<String>, PolicyError> {
        let state = |keys: &[String]| -> Vec<bool> {
            let t = self.edge.policy.table();
            keys.iter()
                .map(|k| t.get(k).is_some_and(|e| e.enforced))
                .collect()
        };
        let mut keys = Vec::with_capacity(hosts.len());
        for h in hosts {
            let p = parse_domain_pattern(h).map_err(|e| PolicyError::InvalidHost {
                host: h.clone(),
                reason: e.to_string(),
            })?;
            keys.push(p.to_string());
        }
        let before = state(&keys);
        fleet.put_blocking(&keys, enforce).map_err(|e| match e {
            FleetError::InvalidHost { host, reason } => PolicyError::InvalidHost { host, reason },
            e @ FleetError::Unavailable(_) => PolicyError::FleetUnavailable(e.to_string()),
        })?;
        let after = state(&keys);
        let mut seen = std::collections::HashSet::new();
        Ok(keys
            .iter()
            .zip(before.iter().zip(&after))
            .filter(|(k, (b, a))| b != a && seen.insert(k.as_str()))
            .map(|(k, _)| k.clone())
            .collect())
    }

    /// With `[fleet]`: where changes go (`GET /api/v1/info`'s `fleet`); `None` without.
    pub fn fleet_info(&self) -> Option<protocol::FleetInfo> {
        self.fleet.as_ref().map(|f| protocol::FleetInfo {
            prefix: f.prefix().to_string(),
            endpoints: f.endpoints().to_vec(),
        })
    }

    /// Every host of the table, sorted by pattern.
    pub fn list(&self) -> Vec<HostInfo> {
        let table = self.edge.policy.table();
        let fleet = self.fleet.is_some();
        table
            .entries()
            .into_iter()
            .map(|e| host_info(e, fleet))
            .collect()
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
        Ok(table
            .get(&p.to_string())
            .map(|e| host_info(e, self.fleet.is_some())))
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
            Request::Enable { hosts, .. } | Request::Disable { hosts, .. } if hosts.is_empty() => {
                Response::error(ErrorCode::BadRequest, "no host given")
            }
            Request::Enable { hosts, local } => {
                self.set_response(self.set_with(&hosts, true, local))
            }
            Request::Disable { hosts, local } => {
                self.set_response(self.set_with(&hosts, false, local))
            }
            Request::EnableSite { site, local } => {
                self.set_response(self.set_site_with(&site, true, local))
            }
            Request::DisableSite { site, local } => {
                self.set_response(self.set_site_with(&site, false, local))
            }
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
            Err(e @ PolicyError::FleetUnavailable(_)) => {
                Response::error(ErrorCode::FleetUnavailable, e.to_string())
            }
            Err(e) => Response::error(ErrorCode::Internal, e.to_string()),
        }
    }
}

/// One table entry as `list` reports it; `fleet`: the daemon has `[fleet]`, so an override
/// is a node-local one (`local`).
fn host_info(e: &HostEntry, fleet: bool) -> HostInfo {
    let source = match (e.overridden, fleet, e.source) {
        (true, true, _) => "local",
        (false, _, Source::Config) if e.fleet.is_some() => "fleet",
        (_, _, Source::Config) => "config",
        (_, _, Source::Runtime) => "runtime",
        (_, _, Source::Fleet) => "fleet",
    };
    HostInfo {
        host: e.pattern.to_string(),
        site: e.site.as_ref().map(|s| s.name.clone()),
        source: source.into(),
        enforced: e.enforced,
        overridden: e.overridden,
        fleet: e.fleet,
        redirects: e.stats.redirects.load(Relaxed),
        proxied: e.stats.proxied.load(Relaxed),
        force_paths: e
            .site
            .as_ref()
            .map(|s| s.force_paths.clone())
            .unwrap_or_default(),
    }
}
