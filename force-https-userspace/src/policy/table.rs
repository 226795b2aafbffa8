//! The host-policy table: an immutable snapshot of every host (exact name or one-label
//! wildcard), the site it belongs to, and whether it is enforced.
//!
//! The snapshot's maps are persistent (`imbl`): a new version shares everything but the
//! changed entries with the old one, so a change costs O(k · log n) for k hosts in a table of
//! n, a million hosts included. [`super::Policy`] publishes new snapshots; every request path
//! reads one per request.

use std::sync::Arc;

use force_https_proto::{
    head::{path_has_prefix, path_may_have_prefix},
    host::{DomainPattern, parse_domain_pattern, wildcard_parent},
    response::RedirectCode,
};
use serde::Serialize;

use super::journal::Overrides;
use crate::{
    config::{ACME_PREFIX, Site},
    metrics::HostStats,
};

/// Where a host entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A domain of a `[[site]]` in the config.
    Config,
    /// Added with `force-https enable` on this node alone (`--local` with `[fleet]`).
    Runtime,
    /// Added by a fleet key in etcd (`[fleet]`), and in no site's domains.
    Fleet,
}

/// One host (exact name or wildcard) of the table.
#[derive(Debug)]
pub struct HostEntry {
    /// The pattern, `name` or `*.suffix` (shared with the table's key for exact names).
    pub pattern: Arc<str>,
    /// The site it belongs to; `None` for a standalone runtime host (redirect only).
    pub site: Option<Arc<Site>>,
    /// Config or runtime.
    pub source: Source,
    /// Whether port-80 requests are redirected and HSTS injected.
    pub enforced: bool,
    /// Whether a runtime override (node-local) decides `enforced` (instead of the fleet or the
    /// config).
    pub overridden: bool,
    /// The fleet's value for this pattern (`<prefix>hosts/<pattern>` in etcd), when it has
    /// one. Precedence: a local override, then the fleet, then the config.
    pub fleet: Option<bool>,
    /// Counters, kept while the host stays in the table (also across enable/disable of a
    /// site's host).
    pub stats: Arc<HostStats>,
}

impl HostEntry {
    /// The redirect code setting that applies.
    pub fn redirect_code(&self) -> RedirectCode {
        self.site
            .as_ref()
            .map(|s| s.redirect_code)
            .unwrap_or(RedirectCode::Auto)
    }

    /// Whether `path_and_query` is exempt from redirects for this host.
    pub fn is_exempt(&self, path_and_query: &[u8]) -> bool {
        match &self.site {
            Some(site) => site
                .exempt_paths
                .iter()
                .any(|p| path_has_prefix(path_and_query, p.as_bytes())),
            None => path_has_prefix(path_and_query, ACME_PREFIX.as_bytes()),
        }
    }

    /// Whether this host is enforced only under some path prefixes (`force_paths`).
    pub fn has_path_rules(&self) -> bool {
        self.site
            .as_ref()
            .is_some_and(|s| !s.force_paths.is_empty())
    }

    /// Whether a request for `path_and_query` falls under the forced part of the site: all of
    /// it without `force_paths`, else a path under one of them by any reading a backend may
    /// give it (`force_https_proto::head::path_may_have_prefix`).
    pub fn is_forced(&self, path_and_query: &[u8]) -> bool {
        match &self.site {
            Some(site) if !site.force_paths.is_empty() => site
                .force_paths
                .iter()
                .any(|p| path_may_have_prefix(path_and_query, p.as_bytes())),
            _ => true,
        }
    }

    /// Whether a backend can serve this host.
    pub fn has_backend(&self) -> bool {
        self.site.as_ref().is_some_and(|s| s.backend.is_some())
    }
}

/// An immutable snapshot of every host. Cloning it is O(1) (the maps are shared).
#[derive(Debug, Default, Clone)]
pub struct PolicyTable {
    exact: HostMap,
    wildcard: HostMap,
}

/// A persistent map by host name, hashed with foldhash rather than SipHash: the keys come
/// from the configuration, the admin side or etcd, never from a client (a request's `Host`
/// only looks up), and every request of every path looks its host up here.
type HostMap = imbl::GenericHashMap<
    Arc<str>,
    Arc<HostEntry>,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// A change as a subscriber receives it: what it touched, and when it was published (the
/// XDP host map reports how far behind the table it runs from it).
#[derive(Debug, Clone)]
pub struct Notice {
    /// What the change touched.
    pub change: Change,
    /// When the table holding it was published.
    pub at: std::time::Instant,
}

/// What a policy change touched, as sent to [`Policy::subscribe_changes`] subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These patterns may have changed (added, removed, enforced or not); nothing else did.
    Patterns(Arc<[String]>),
    /// Anything may have changed: re-read the whole table.
    Full,
}

impl PolicyTable {
    /// Builds the table from the sites, the fleet's values and the runtime overrides.
    pub fn build(sites: &[Arc<Site>], fleet: &Overrides, overrides: &Overrides) -> PolicyTable {
        PolicyTable::rebuild(sites, fleet, overrides, None)
    }

    /// Builds the table from the sites, the fleet's values and the runtime overrides (which
    /// win, in that order of increasing precedence); a pattern that `previous` has too keeps
    /// its counters (a configuration reload).
    pub fn rebuild(
        sites: &[Arc<Site>],
        fleet: &Overrides,
        overrides: &Overrides,
        previous: Option<&PolicyTable>,
    ) -> PolicyTable {
        let stats = |p: &DomainPattern| -> Arc<HostStats> {
            previous
                .and_then(|t| t.get_pattern(p))
                .map(|e| e.stats.clone())
                .unwrap_or_default()
        };
        let mut table = PolicyTable::default();
        for site in sites {
            for d in &site.domains {
                let key = d.to_string();
                let ov = overrides.get(&key).copied();
                let fl = fleet.get(&key).copied();
                let entry = Arc::new(HostEntry {
                    pattern: key.into(),
                    site: Some(site.clone()),
                    source: Source::Config,
                    enforced: ov.or(fl).unwrap_or(site.force_https),
                    overridden: ov.is_some(),
                    fleet: fl,
                    stats: stats(d),
                });
                table.insert(d, entry);
            }
        }
        for key in overrides.keys().chain(fleet.keys()) {
            let Ok(pattern) = parse_domain_pattern(key) else {
                continue;
            };
            if table.get_pattern(&pattern).is_some() {
                continue;
            }
            let ov = overrides.get(key).copied();
            let fl = fleet.get(key).copied();
            let Some(enforced) = ov.or(fl) else { continue };
            let entry =
                table.runtime_entry(&pattern, key, enforced, ov.is_some(), fl, stats(&pattern));
            table.insert(&pattern, entry);
        }
        table
    }

    /// The patterns whose entry differs between `self` and `next` (added, removed, or with
    /// another state, source or site settings), sorted.
    pub fn changed_patterns(&self, next: &PolicyTable) -> Vec<String> {
        let same = |a: &HostEntry, b: &HostEntry| {
            a.enforced == b.enforced
                && a.overridden == b.overridden
                && a.fleet == b.fleet
                && a.source == b.source
                && match (&a.site, &b.site) {
                    (None, None) => true,
                    (Some(x), Some(y)) => Arc::ptr_eq(x, y) || **x == **y,
                    _ => false,
                }
        };
        let mut out: Vec<String> = next
            .iter()
            .filter(|e| self.get(&e.pattern).is_none_or(|old| !same(old, e)))
            .map(|e| e.pattern.to_string())
            .chain(
                self.iter()
                    .filter(|e| next.get(&e.pattern).is_none())
                    .map(|e| e.pattern.to_string()),
            )
            .collect();
        out.sort_unstable();
        out
    }

    /// The runtime overrides the table holds (pattern → enforced), as persisted.
    pub fn overrides(&self) -> Overrides {
        self.iter()
            .filter(|e| e.overridden)
            .map(|e| (e.pattern.to_string(), e.enforced))
            .collect()
    }

    /// The fleet's values the table holds (pattern → enforced), as the fleet last said.
    pub fn fleet(&self) -> Overrides {
        self.iter()
            .filter_map(|e| e.fleet.map(|f| (e.pattern.to_string(), f)))
            .collect()
    }

    /// An entry that is in no site's domains: added by `enable` (`overridden`) or by the
    /// fleet (`fleet`). A runtime name under a site's wildcard belongs to that site (only
    /// config wildcards carry a site, and the config does not change at runtime, so this
    /// never depends on other runtime entries).
    pub(super) fn runtime_entry(
        &self,
        pattern: &DomainPattern,
        key: &str,
        enforced: bool,
        overridden: bool,
        fleet: Option<bool>,
        stats: Arc<HostStats>,
    ) -> Arc<HostEntry> {
        let site = match pattern {
            DomainPattern::Exact(name) => wildcard_parent(name)
                .and_then(|p| self.wildcard.get(p))
                .and_then(|e| e.site.clone()),
            DomainPattern::Wildcard(_) => None,
        };
        Arc::new(HostEntry {
            pattern: key.into(),
            site,
            source: if overridden || fleet.is_none() {
                Source::Runtime
            } else {
                Source::Fleet
            },
            enforced,
            overridden,
            fleet,
            stats,
        })
    }

    pub(super) fn remove(&mut self, p: &DomainPattern) {
        match p {
            DomainPattern::Exact(n) => self.exact.remove(n.as_str()),
            DomainPattern::Wildcard(s) => self.wildcard.remove(s.as_str()),
        };
    }

    pub(super) fn insert(&mut self, p: &DomainPattern, e: Arc<HostEntry>) {
        match p {
            // The exact name is the pattern: one string for key and entry.
            DomainPattern::Exact(_) => self.exact.insert(e.pattern.clone(), e),
            DomainPattern::Wildcard(s) => self.wildcard.insert(s.as_str().into(), e),
        };
    }

    pub(super) fn get_pattern(&self, p: &DomainPattern) -> Option<&Arc<HostEntry>> {
        match p {
            DomainPattern::Exact(n) => self.exact.get(n.as_str()),
            DomainPattern::Wildcard(s) => self.wildcard.get(s.as_str()),
        }
    }

    /// Finds the entry for a normalized host name: exact first, then a one-label wildcard.
    pub fn lookup(&self, host: &str) -> Option<&Arc<HostEntry>> {
        if let Some(e) = self.exact.get(host) {
            return Some(e);
        }
        wildcard_parent(host).and_then(|p| self.wildcard.get(p))
    }

    /// Every entry, sorted by pattern.
    pub fn entries(&self) -> Vec<&Arc<HostEntry>> {
        let mut v: Vec<_> = self.iter().collect();
        v.sort_by(|a, b| a.pattern.cmp(&b.pattern));
        v
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<HostEntry>> {
        self.exact.values().chain(self.wildcard.values())
    }

    /// The entry of a pattern (`name` or `*.suffix`, normalized), if the table has it.
    pub fn get(&self, pattern: &str) -> Option<&Arc<HostEntry>> {
        match pattern.strip_prefix("*.") {
            Some(suffix) => self.wildcard.get(suffix),
            None => self.exact.get(pattern),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}
