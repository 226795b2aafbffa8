//! The host-policy table: which hosts exist, which site they belong to, and whether they are
//! enforced. One table feeds every path (port 80, TLS, the XDP host map).
//!
//! The table is an immutable snapshot behind an [`ArcSwap`]: readers take it without locks on
//! every request, and `enable`/`disable` derive a new one and swap it in, so a change is in
//! effect as soon as the control call returns. The snapshot's maps are persistent (`imbl`):
//! a new version shares everything but the changed entries with the old one, so a change costs
//! O(k · log n) for k hosts in a table of n, a million hosts included. Runtime overrides are
//! persisted by [`crate::state`] before the swap, and they win over the config.
//!
//! Consumers that keep a projection of the table (the XDP host map) subscribe with
//! [`Policy::subscribe_changes`] and get the patterns each change touched.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use arc_swap::ArcSwap;
use force_https_proto::{
    head::path_has_prefix,
    host::{DomainPattern, parse_domain_pattern, wildcard_parent},
    response::{RedirectCode, RedirectStatus, for_method},
};
use serde::Serialize;

use crate::{
    config::{ACME_PREFIX, Config, Site},
    metrics::HostStats,
    state::{Delta, Overrides, StateStore},
};

/// Where a host entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A domain of a `[[site]]` in the config.
    Config,
    /// Added with `force-https enable`.
    Runtime,
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
    /// Whether a runtime override decides `enforced` (instead of the config).
    pub overridden: bool,
    /// Counters, kept while the host stays in the table (also across enable/disable of a
    /// site's host).
    pub stats: Arc<HostStats>,
}

/// What to do with a port-80 request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer with a redirect to HTTPS.
    Redirect(RedirectStatus),
    /// Reverse-proxy to the site's backend.
    Proxy,
    /// No site serves this host over HTTP: 404.
    NotFound,
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

    /// Whether a backend can serve this host.
    pub fn has_backend(&self) -> bool {
        self.site.as_ref().is_some_and(|s| s.backend.is_some())
    }

    /// The decision for a port-80 request.
    pub fn action(&self, method: &str, path_and_query: &[u8], asterisk: bool) -> Action {
        if self.enforced && !asterisk && !self.is_exempt(path_and_query) {
            return Action::Redirect(for_method(method.as_bytes(), self.redirect_code()));
        }
        if self.has_backend() {
            Action::Proxy
        } else {
            Action::NotFound
        }
    }
}

/// The decision for a port-80 request to `host` (normalized), with the entry when one matched.
pub fn decide<'t>(
    table: &'t PolicyTable,
    host: &str,
    method: &str,
    path_and_query: &[u8],
    asterisk: bool,
) -> (Option<&'t Arc<HostEntry>>, Action) {
    match table.lookup(host) {
        Some(e) => (Some(e), e.action(method, path_and_query, asterisk)),
        None => (None, Action::NotFound),
    }
}

/// An immutable snapshot of every host. Cloning it is O(1) (the maps are shared).
#[derive(Debug, Default, Clone)]
pub struct PolicyTable {
    exact: imbl::HashMap<Arc<str>, Arc<HostEntry>>,
    wildcard: imbl::HashMap<Arc<str>, Arc<HostEntry>>,
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
    /// Builds the table from the sites and the runtime overrides.
    pub fn build(sites: &[Arc<Site>], overrides: &Overrides) -> PolicyTable {
        let mut table = PolicyTable::default();
        for site in sites {
            for d in &site.domains {
                let key = d.to_string();
                let ov = overrides.get(&key).copied();
                let entry = Arc::new(HostEntry {
                    pattern: key.into(),
                    site: Some(site.clone()),
                    source: Source::Config,
                    enforced: ov.unwrap_or(site.force_https),
                    overridden: ov.is_some(),
                    stats: Arc::default(),
                });
                table.insert(d, entry);
            }
        }
        for (key, enforced) in overrides {
            let Ok(pattern) = parse_domain_pattern(key) else {
                continue;
            };
            if table.get_pattern(&pattern).is_some() {
                continue;
            }
            let entry = table.runtime_entry(&pattern, key, *enforced, Arc::default());
            table.insert(&pattern, entry);
        }
        table
    }

    /// The runtime overrides the table holds (pattern → enforced), as persisted.
    pub fn overrides(&self) -> Overrides {
        self.iter()
            .filter(|e| e.overridden)
            .map(|e| (e.pattern.to_string(), e.enforced))
            .collect()
    }

    /// An entry added by `enable` alone. A runtime name under a site's wildcard belongs to
    /// that site (only config wildcards carry a site, and the config does not change at
    /// runtime, so this never depends on other runtime entries).
    fn runtime_entry(
        &self,
        pattern: &DomainPattern,
        key: &str,
        enforced: bool,
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
            source: Source::Runtime,
            enforced,
            overridden: true,
            stats,
        })
    }

    fn remove(&mut self, p: &DomainPattern) {
        match p {
            DomainPattern::Exact(n) => self.exact.remove(n.as_str()),
            DomainPattern::Wildcard(s) => self.wildcard.remove(s.as_str()),
        };
    }

    fn insert(&mut self, p: &DomainPattern, e: Arc<HostEntry>) {
        match p {
            // The exact name is the pattern: one string for key and entry.
            DomainPattern::Exact(_) => self.exact.insert(e.pattern.clone(), e),
            DomainPattern::Wildcard(s) => self.wildcard.insert(s.as_str().into(), e),
        };
    }

    fn get_pattern(&self, p: &DomainPattern) -> Option<&Arc<HostEntry>> {
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

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a policy change was refused. Nothing changed in either case.
#[derive(Debug)]
pub enum PolicyError {
    /// A host name is invalid.
    InvalidHost {
        /// The host as given.
        host: String,
        /// Why.
        reason: String,
    },
    /// The change could not be persisted.
    Persist(anyhow::Error),
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::InvalidHost { host, reason } => {
                write!(f, "invalid host name {host:?}: {reason}")
            }
            PolicyError::Persist(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// The live policy: the current table plus the state behind it.
pub struct Policy {
    table: ArcSwap<PolicyTable>,
    inner: Mutex<Inner>,
    version: tokio::sync::watch::Sender<u64>,
}

/// What changes serialize on. The overrides themselves are not kept twice: they are the
/// entries of the table marked `overridden`.
struct Inner {
    store: StateStore,
    subscribers: Vec<UnboundedSender<Change>>,
}

impl Policy {
    /// Builds the policy from the config and the persisted overrides (a corrupt state file is
    /// an error).
    pub fn load(config: &Config) -> anyhow::Result<Policy> {
        let mut store = StateStore::new(&config.state_dir);
        let overrides = store.load()?;
        let sites: Vec<Arc<Site>> = config.sites.iter().cloned().map(Arc::new).collect();
        let table = PolicyTable::build(&sites, &overrides);
        drop(overrides);
        Ok(Policy {
            table: ArcSwap::from_pointee(table),
            inner: Mutex::new(Inner {
                store,
                subscribers: Vec::new(),
            }),
            version: tokio::sync::watch::channel(0).0,
        })
    }

    /// The current table (cheap; take it once per request).
    pub fn table(&self) -> arc_swap::Guard<Arc<PolicyTable>> {
        self.table.load()
    }

    /// A receiver that sees a new version number after every change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// A receiver of every change from now on, with the patterns it touched. Read the table
    /// after subscribing: every change published after that read is in the channel.
    pub fn subscribe_changes(&self) -> UnboundedReceiver<Change> {
        let (tx, rx) = unbounded_channel();
        self.lock().subscribers.push(tx);
        rx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enforces (`enforce = true`) or stops enforcing the given hosts. All names are
    /// validated first; the change is persisted, then applied. Returns the normalized
    /// patterns whose state changed.
    ///
    /// The cost is O(k · log n) for k hosts in a table of n: the config default of a host is
    /// read from its table entry, the new table shares everything else with the old one, and
    /// the state store appends one journal line.
    pub fn set(&self, hosts: &[String], enforce: bool) -> Result<Vec<String>, PolicyError> {
        let mut patterns: Vec<(DomainPattern, String)> = Vec::with_capacity(hosts.len());
        for h in hosts {
            let p = parse_domain_pattern(h).map_err(|e| PolicyError::InvalidHost {
                host: h.clone(),
                reason: e.to_string(),
            })?;
            let key = p.to_string();
            patterns.push((p, key));
        }
        let mut inner = self.lock();
        let current = self.table.load_full();
        // The override of each host after the change, and the hosts whose enforcement flips.
        let mut delta: BTreeMap<String, Option<bool>> = BTreeMap::new();
        let mut changed = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (pattern, key) in &patterns {
            let entry = current.get_pattern(pattern);
            let config_default = entry
                .filter(|e| e.source == Source::Config)
                .and_then(|e| e.site.as_ref())
                .map(|s| s.force_https);
            let before = entry.is_some_and(|e| e.enforced);
            let next = match config_default {
                Some(d) if d == enforce => None,
                Some(_) => Some(enforce),
                None if enforce => Some(true),
                None => None,
            };
            let current_override = entry.filter(|e| e.overridden).map(|e| e.enforced);
            if current_override != next {
                delta.insert(key.clone(), next);
            }
            if before != enforce && seen.insert(key.as_str()) {
                changed.push(key.clone());
            }
        }
        if delta.is_empty() {
            return Ok(changed);
        }
        let delta: Delta = delta.into_iter().collect();
        // The overrides after the change, only needed when the store compacts.
        let after = || {
            let mut o = current.overrides();
            for (k, v) in &delta {
                match v {
                    Some(v) => o.insert(k.clone(), *v),
                    None => o.remove(k),
                };
            }
            o
        };
        inner
            .store
            .apply(&delta, after)
            .map_err(PolicyError::Persist)?;

        let mut table = (*current).clone();
        for (pattern, key) in &patterns {
            let Some(next) = delta
                .binary_search_by(|(k, _)| k.as_str().cmp(key))
                .ok()
                .map(|i| delta[i].1)
            else {
                continue;
            };
            let old = table.get_pattern(pattern).cloned();
            match (old, next) {
                (Some(e), _) if e.source == Source::Config => {
                    let enforced =
                        next.unwrap_or_else(|| e.site.as_ref().is_some_and(|s| s.force_https));
                    table.insert(
                        pattern,
                        Arc::new(HostEntry {
                            pattern: e.pattern.clone(),
                            site: e.site.clone(),
                            source: Source::Config,
                            enforced,
                            overridden: next.is_some(),
                            stats: e.stats.clone(),
                        }),
                    );
                }
                (old, Some(enforced)) => {
                    let stats = old.map(|e| e.stats.clone()).unwrap_or_default();
                    let entry = table.runtime_entry(pattern, key, enforced, stats);
                    table.insert(pattern, entry);
                }
                (_, None) => table.remove(pattern),
            }
        }
        self.table.store(Arc::new(table));
        self.version.send_modify(|v| *v += 1);
        let change = Change::Patterns(delta.into_iter().map(|(k, _)| k).collect());
        inner
            .subscribers
            .retain(|tx| tx.send(change.clone()).is_ok());
        Ok(changed)
    }

    /// The persisted overrides (for tests and diagnostics).
    pub fn overrides(&self) -> BTreeMap<String, bool> {
        self.table().overrides()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(dir: &Path) -> Config {
        let text = format!(
            r#"
[state]
dir = "{}"
[[site]]
name = "shop"
domains = ["shop.example.com", "*.shop.example.com"]
backend = "http://127.0.0.1:8080"
force_https = true
exempt_paths = ["/healthz"]
[[site]]
name = "blog"
domains = ["blog.example.com"]
backend = "http://127.0.0.1:8081"
[[site]]
name = "static"
domains = ["x.shop.example.com"]
redirect_code = 308
force_https = true
"#,
            dir.display()
        );
        Config::from_toml(Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn matching_rules() {
        let d = tempfile::tempdir().unwrap();
        let p = Policy::load(&config(d.path())).unwrap();
        let t = p.table();
        assert_eq!(
            &*t.lookup("shop.example.com").unwrap().pattern,
            "shop.example.com"
        );
        assert_eq!(
            &*t.lookup("a.shop.example.com").unwrap().pattern,
            "*.shop.example.com"
        );
        // Exact wins over the wildcard.
        assert_eq!(
            &*t.lookup("x.shop.example.com").unwrap().pattern,
            "x.shop.example.com"
        );
        // One label only.
        assert!(t.lookup("a.b.shop.example.com").is_none());
        assert!(t.lookup("example.com").is_none());
    }

    #[test]
    fn actions() {
        let d = tempfile::tempdir().unwrap();
        let p = Policy::load(&config(d.path())).unwrap();
        let t = p.table();
        let a = |h: &str, m: &str, path: &str| decide(&t, h, m, path.as_bytes(), false).1;
        assert_eq!(
            a("shop.example.com", "GET", "/"),
            Action::Redirect(RedirectStatus::Moved301)
        );
        assert_eq!(
            a("shop.example.com", "HEAD", "/"),
            Action::Redirect(RedirectStatus::Moved301)
        );
        assert_eq!(
            a("shop.example.com", "POST", "/"),
            Action::Redirect(RedirectStatus::Permanent308)
        );
        assert_eq!(
            a("x.shop.example.com", "GET", "/"),
            Action::Redirect(RedirectStatus::Permanent308)
        );
        assert_eq!(
            a("shop.example.com", "GET", "/.well-known/acme-challenge/t"),
            Action::Proxy
        );
        assert_eq!(a("shop.example.com", "GET", "/healthz?x"), Action::Proxy);
        assert_eq!(a("blog.example.com", "GET", "/"), Action::Proxy);
        assert_eq!(a("nope.example.com", "GET", "/"), Action::NotFound);
        // Exempt on a site without backend: nothing to proxy to.
        assert_eq!(
            a("x.shop.example.com", "GET", "/.well-known/acme-challenge/t"),
            Action::NotFound
        );
    }

    #[test]
    fn enable_disable_persist() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path());
        let p = Policy::load(&cfg).unwrap();
        let changed = p
            .set(
                &["Blog.Example.com.".into(), "solo.example.org".into()],
                true,
            )
            .unwrap();
        assert_eq!(changed, vec!["blog.example.com", "solo.example.org"]);
        let t = p.table();
        assert!(t.lookup("blog.example.com").unwrap().enforced);
        let solo = t.lookup("solo.example.org").unwrap();
        assert!(solo.enforced && solo.site.is_none() && solo.source == Source::Runtime);
        // A runtime name under a site wildcard belongs to the site.
        p.set(&["new.shop.example.com".into()], true).unwrap();
        assert_eq!(
            p.table()
                .lookup("new.shop.example.com")
                .unwrap()
                .site
                .as_ref()
                .unwrap()
                .name,
            "shop"
        );
        // Restart: same state.
        let p2 = Policy::load(&cfg).unwrap();
        assert!(p2.table().lookup("solo.example.org").unwrap().enforced);
        // Disable a config host enforced by config.
        p2.set(&["shop.example.com".into()], false).unwrap();
        assert!(!p2.table().lookup("shop.example.com").unwrap().enforced);
        // Disable a standalone host removes it.
        p2.set(&["solo.example.org".into()], false).unwrap();
        assert!(p2.table().lookup("solo.example.org").is_none());
        // Back to the config default removes the override.
        p2.set(
            &["shop.example.com".into(), "blog.example.com".into()],
            true,
        )
        .unwrap();
        p2.set(&["blog.example.com".into()], false).unwrap();
        assert_eq!(p2.overrides().get("shop.example.com"), None);
    }

    #[test]
    fn invalid_host_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = Policy::load(&config(d.path())).unwrap();
        let e = p
            .set(&["ok.example".into(), "bad host".into()], true)
            .unwrap_err();
        assert!(matches!(e, PolicyError::InvalidHost { .. }));
        assert!(p.table().lookup("ok.example").is_none());
        assert!(p.overrides().is_empty());
    }

    #[test]
    fn counters_survive_rebuild() {
        let d = tempfile::tempdir().unwrap();
        let p = Policy::load(&config(d.path())).unwrap();
        crate::metrics::Metrics::inc(&p.table().lookup("blog.example.com").unwrap().stats.proxied);
        p.set(&["blog.example.com".into()], true).unwrap();
        let t = p.table();
        let n = t
            .lookup("blog.example.com")
            .unwrap()
            .stats
            .proxied
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(n, 1);
    }
}
