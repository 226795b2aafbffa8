//! The one host-policy table that feeds all three request paths (the XDP fast path, the
//! port-80 socket path and the TLS path), and the one decision they all take from it.
//!
//! - [`table`]: the immutable snapshot ([`PolicyTable`], [`HostEntry`]);
//! - [`decide`]: redirect, proxy or local answer for a request, and where it is counted;
//! - [`journal`]: crash-safe persistence of runtime overrides;
//! - this module: [`Policy`], the live table. Readers take the current snapshot without locks
//!   on every request ([`ArcSwap`]); `enable`/`disable` persist the change, derive the next
//!   snapshot and swap it in, so a change is in effect as soon as the call returns.
//!
//! Precedence, highest first: a runtime (node-local) override (`enable`/`disable`, `--local`
//! with `[fleet]`), then the fleet's value (`[fleet]`, etcd: [`Policy::set_fleet`],
//! [`Policy::replace_fleet`]), then the config. The fleet's values are persisted apart
//! (`fleet.json` and `fleet.journal` in `state.dir`, the format of the state files) so a node
//! restarted while etcd is unreachable keeps the last known fleet table.
//!
//! Consumers that keep a projection of the table (the XDP host map) subscribe with
//! [`Policy::subscribe_changes`] and get the patterns each change touched.

pub mod decide;
pub mod journal;
pub mod table;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;
use force_https_proto::host::{DomainPattern, parse_domain_pattern};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

pub use decide::{Decision, LocalAnswer, RequestFacts, Scheme, Via, decide};
use journal::{Delta, StateStore};
pub use table::{Change, HostEntry, Notice, PolicyTable, Source};

use crate::config::{Config, Site};

/// Fleet changes of more than this many patterns are persisted as a new `fleet.json` rather
/// than as a journal line.
const FLEET_SNAPSHOT_MIN: usize = 10_000;

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
    /// No site of that name.
    UnknownSite {
        /// The name as given.
        name: String,
    },
    /// The change could not be persisted.
    Persist(anyhow::Error),
    /// With `[fleet]`: the fleet store (etcd) cannot be reached; the text says why.
    FleetUnavailable(String),
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::InvalidHost { host, reason } => {
                write!(f, "invalid host name {host:?}: {reason}")
            }
            PolicyError::UnknownSite { name } => {
                write!(
                    f,
                    "unknown site {name:?} (`force-https list --sites` shows the sites)"
                )
            }
            PolicyError::Persist(e) => write!(f, "{e:#}"),
            PolicyError::FleetUnavailable(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// The live policy: the current table plus the state behind it.
pub struct Policy {
    table: ArcSwap<PolicyTable>,
    inner: Mutex<Inner>,
}

/// A projection of the table that must stop offering a host before the table does: the XDP
/// host map, so that a request XDP hands to the responder on the strength of the map is still
/// a redirect in the responder's table (a host being disabled is first withdrawn from the map,
/// then from the table).
pub trait BeforeSwap: Send + Sync {
    /// Called with the next table and the patterns the change touches, before that table is
    /// published (under the policy's change lock).
    fn before_swap(&self, next: &PolicyTable, patterns: &[String]);
}

/// What changes serialize on. The overrides themselves are not kept twice: they are the
/// entries of the table marked `overridden`.
struct Inner {
    store: StateStore,
    /// The last known fleet table, with `[fleet]`.
    fleet_store: Option<StateStore>,
    subscribers: Vec<UnboundedSender<Notice>>,
    before_swap: Option<Arc<dyn BeforeSwap>>,
}

impl Policy {
    /// Builds the policy from the config and the persisted overrides (a corrupt state file is
    /// an error).
    pub fn load(config: &Config) -> anyhow::Result<Policy> {
        let mut store = StateStore::new(&config.state_dir);
        let overrides = store.load()?;
        // Without [fleet] a fleet table left from earlier is not read: nothing changes.
        let (fleet_store, fleet) = match &config.fleet {
            Some(_) => {
                let mut s = journal::StateStore::named(
                    &config.state_dir,
                    journal::FLEET_FILE,
                    journal::FLEET_JOURNAL_FILE,
                );
                let f = s.load()?;
                (Some(s), f)
            }
            None => (None, journal::Overrides::new()),
        };
        let sites: Vec<Arc<Site>> = config.sites.iter().cloned().map(Arc::new).collect();
        let table = PolicyTable::build(&sites, &fleet, &overrides);
        drop(overrides);
        drop(fleet);
        Ok(Policy {
            table: ArcSwap::from_pointee(table),
            inner: Mutex::new(Inner {
                store,
                fleet_store,
                subscribers: Vec::new(),
                before_swap: None,
            }),
        })
    }

    /// The current table (cheap; take it once per request).
    pub fn table(&self) -> arc_swap::Guard<Arc<PolicyTable>> {
        self.table.load()
    }

    /// A receiver of every change from now on, with the patterns it touched. Read the table
    /// after subscribing: every change published after that read is in the channel.
    pub fn subscribe_changes(&self) -> UnboundedReceiver<Notice> {
        let (tx, rx) = unbounded_channel();
        self.lock().subscribers.push(tx);
        rx
    }

    /// Sets the one projection that sees every change before it is published (see
    /// [`BeforeSwap`]).
    pub fn set_before_swap(&self, hook: Arc<dyn BeforeSwap>) {
        self.lock().before_swap = Some(hook);
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
        self.apply(&mut inner, &patterns, enforce)
    }

    /// Enforces (`enforce = true`) or stops enforcing every host of the site `name` at once:
    /// its config domains and wildcards, and the runtime names attached to it (under one of its
    /// wildcards). The whole change is one journal line, persisted before it is applied, so it
    /// happens entirely or not at all. Afterwards every host of the site is in the same state;
    /// a host-level `set` can then make exceptions again. Returns the patterns whose state
    /// changed.
    ///
    /// # Errors
    /// [`PolicyError::UnknownSite`], or the change could not be persisted (nothing changed).
    pub fn set_site(&self, name: &str, enforce: bool) -> Result<Vec<String>, PolicyError> {
        let mut inner = self.lock();
        // Read under the change lock: no host can join or leave the site meanwhile.
        let current = self.table.load_full();
        let mut patterns = Vec::new();
        for e in current.entries() {
            if e.site.as_ref().is_some_and(|s| s.name == name)
                && let Ok(p) = parse_domain_pattern(&e.pattern)
            {
                patterns.push((p, e.pattern.to_string()));
            }
        }
        if patterns.is_empty() {
            return Err(PolicyError::UnknownSite { name: name.into() });
        }
        self.apply(&mut inner, &patterns, enforce)
    }

    /// The body of [`Policy::set`], under the change lock.
    fn apply(
        &self,
        inner: &mut Inner,
        patterns: &[(DomainPattern, String)],
        enforce: bool,
    ) -> Result<Vec<String>, PolicyError> {
        let current = self.table.load_full();
        // The override of each host after the change, and the hosts whose enforcement flips.
        let mut delta: BTreeMap<String, Option<bool>> = BTreeMap::new();
        let mut changed = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (pattern, key) in patterns {
            let entry = current.get_pattern(pattern);
            // What the host would be without a local override: the fleet's value, else the
            // config's.
            let config_default = entry
                .filter(|e| e.source == Source::Config)
                .and_then(|e| e.site.as_ref())
                .map(|s| s.force_https);
            let base = entry.and_then(|e| e.fleet).or(config_default);
            let before = entry.is_some_and(|e| e.enforced);
            let next = match base {
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
        for (pattern, key) in patterns {
            let Some(next) = delta
                .binary_search_by(|(k, _)| k.as_str().cmp(key))
                .ok()
                .map(|i| delta[i].1)
            else {
                continue;
            };
            let old = table.get_pattern(pattern).cloned();
            let fleet = old.as_ref().and_then(|e| e.fleet);
            match (old, next.or(fleet)) {
                (Some(e), _) if e.source == Source::Config => {
                    let enforced = next
                        .or(fleet)
                        .unwrap_or_else(|| e.site.as_ref().is_some_and(|s| s.force_https));
                    table.insert(
                        pattern,
                        Arc::new(HostEntry {
                            pattern: e.pattern.clone(),
                            site: e.site.clone(),
                            source: Source::Config,
                            enforced,
                            overridden: next.is_some(),
                            fleet,
                            stats: e.stats.clone(),
                        }),
                    );
                }
                (old, Some(enforced)) => {
                    let stats = old.map(|e| e.stats.clone()).unwrap_or_default();
                    let entry =
                        table.runtime_entry(pattern, key, enforced, next.is_some(), fleet, stats);
                    table.insert(pattern, entry);
                }
                (_, None) => table.remove(pattern),
            }
        }
        let patterns: Vec<String> = delta.into_iter().map(|(k, _)| k).collect();
        Self::publish(&self.table, inner, table, patterns);
        Ok(changed)
    }

    /// Publishes `table`: the [`BeforeSwap`] hook first, then the swap, then the subscribers.
    fn publish(
        live: &ArcSwap<PolicyTable>,
        inner: &mut Inner,
        table: PolicyTable,
        patterns: Vec<String>,
    ) {
        if patterns.is_empty() {
            live.store(Arc::new(table));
            return;
        }
        if let Some(hook) = &inner.before_swap {
            hook.before_swap(&table, &patterns);
        }
        live.store(Arc::new(table));
        let notice = Notice {
            change: Change::Patterns(patterns.into()),
            at: std::time::Instant::now(),
        };
        inner
            .subscribers
            .retain(|tx| tx.send(notice.clone()).is_ok());
    }

    /// Applies changes of the fleet table (etcd's watch): each pattern gets the fleet's value
    /// `Some(enforced)`, or `None` when its key was deleted (the host returns to its config,
    /// or leaves the table when it has none). A local override keeps winning. The fleet table
    /// is persisted (a `fleet.journal` line before the change is published, or, for a change
    /// of more than 10,000 patterns, a new `fleet.json` right after); a failure to persist is
    /// returned, but the change is applied anyway (etcd is the source of truth; the file only
    /// serves restarts during an outage).
    /// Returns the patterns whose entry changed.
    ///
    /// The cost is O(k · log n) for k patterns in a table of n.
    pub fn set_fleet(
        &self,
        updates: &[(DomainPattern, String, Option<bool>)],
    ) -> (Vec<String>, Option<anyhow::Error>) {
        let mut inner = self.lock();
        self.apply_fleet(&mut inner, updates, false)
    }

    /// Replaces the whole fleet table by `all` (pattern → value), as after a full read of the
    /// prefix (start, reconnection after a compaction): only the difference is applied, as
    /// one change, so no host is dropped in between. Returns the patterns whose entry changed
    /// and a failure to persist, as [`Policy::set_fleet`].
    ///
    /// The cost is O(n + k · log n).
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub fn replace_fleet(
        &self,
        all: std::collections::HashMap<String, (DomainPattern, bool)>,
    ) -> (Vec<String>, Option<anyhow::Error>) {
        let mut inner = self.lock();
        let current = self.table.load_full();
        let mut updates = Vec::with_capacity(all.len());
        for e in current.iter() {
            if e.fleet.is_some()
                && !all.contains_key(&*e.pattern)
                && let Ok(p) = parse_domain_pattern(&e.pattern)
            {
                updates.push((p, e.pattern.to_string(), None));
            }
        }
        for (key, (p, v)) in all {
            if current.get(&key).and_then(|e| e.fleet) != Some(v) {
                updates.push((p, key, Some(v)));
            }
        }
        // A full read names each pattern once.
        self.apply_fleet(&mut inner, &updates, true)
    }

    /// The body of [`Policy::set_fleet`], under the change lock.
    ///
    /// O(k) hash operations for k updates (no sort of the updates: a full read of a
    /// 1M-key prefix is one call). The fleet table is persisted from the next table, before
    /// that table is published.
    fn apply_fleet(
        &self,
        inner: &mut Inner,
        updates: &[(DomainPattern, String, Option<bool>)],
        unique: bool,
    ) -> (Vec<String>, Option<anyhow::Error>) {
        let current = self.table.load_full();
        // The last update of a pattern wins: keep only that one (`unique`: each pattern is
        // named once already).
        let last: Option<std::collections::HashMap<&str, usize>> = (!unique).then(|| {
            updates
                .iter()
                .enumerate()
                .map(|(i, (_, key, _))| (key.as_str(), i))
                .collect()
        });
        let todo: Vec<&(DomainPattern, String, Option<bool>)> = updates
            .iter()
            .enumerate()
            .filter(|(i, (pattern, key, value))| {
                last.as_ref().is_none_or(|l| l.get(key.as_str()) == Some(i))
                    && current.get_pattern(pattern).and_then(|e| e.fleet) != *value
            })
            .map(|(_, u)| u)
            .collect();
        drop(last);
        if todo.is_empty() {
            return (Vec::new(), None);
        }
        let mut table = (*current).clone();
        let mut patterns = Vec::with_capacity(todo.len());
        for (pattern, key, fleet) in todo.iter().copied() {
            let fleet = *fleet;
            let old = table.get_pattern(pattern).cloned();
            patterns.push(key.clone());
            match old {
                Some(e) if e.source == Source::Config => {
                    let enforced = if e.overridden {
                        e.enforced
                    } else {
                        fleet.unwrap_or_else(|| e.site.as_ref().is_some_and(|s| s.force_https))
                    };
                    table.insert(
                        pattern,
                        Arc::new(HostEntry {
                            pattern: e.pattern.clone(),
                            site: e.site.clone(),
                            source: Source::Config,
                            enforced,
                            overridden: e.overridden,
                            fleet,
                            stats: e.stats.clone(),
                        }),
                    );
                }
                Some(e) if e.overridden => {
                    let entry =
                        table.runtime_entry(pattern, key, e.enforced, true, fleet, e.stats.clone());
                    table.insert(pattern, entry);
                }
                old => match fleet {
                    Some(enforced) => {
                        let stats = old.map(|e| e.stats.clone()).unwrap_or_default();
                        let entry = table.runtime_entry(
                            pattern,
                            key,
                            enforced,
                            false,
                            Some(enforced),
                            stats,
                        );
                        table.insert(pattern, entry);
                    }
                    None => table.remove(pattern),
                },
            }
        }
        // A large change (a full read) is cheaper as a new snapshot than as a line, and is
        // written once published (a 1M-host snapshot takes a second): etcd is the source of
        // truth, and a crash in between leaves the previous snapshot, as a crash before the
        // change would have.
        let large = todo.len() > FLEET_SNAPSHOT_MIN;
        let mut persisted = match &mut inner.fleet_store {
            Some(store) if !large => {
                let delta: Delta = todo
                    .iter()
                    .map(|(_, key, value)| (key.clone(), *value))
                    .collect();
                store.apply(&delta, || table.fleet()).err()
            }
            _ => None,
        };
        let snapshot = (large && inner.fleet_store.is_some()).then(|| table.clone());
        let changed = patterns.clone();
        Self::publish(&self.table, inner, table, patterns);
        if let (Some(next), Some(store)) = (snapshot, &mut inner.fleet_store) {
            persisted = store.save(&next.fleet()).err();
        }
        (changed, persisted)
    }

    /// Replaces the config part of the table with `sites` (a configuration reload): the
    /// runtime overrides stay and keep winning, the counters of every pattern that stays are
    /// kept, and the patterns whose entry changed are sent to the subscribers (and to the
    /// [`BeforeSwap`] hook first), as `enable`/`disable` does. Nothing is persisted: the
    /// overrides are the same. Returns the changed patterns.
    ///
    /// The cost is O(n) for a table of n entries (the table is rebuilt and compared).
    pub fn reload(&self, sites: &[Site]) -> Vec<String> {
        let sites: Vec<Arc<Site>> = sites.iter().cloned().map(Arc::new).collect();
        let mut inner = self.lock();
        let current = self.table.load_full();
        let next = PolicyTable::rebuild(
            &sites,
            &current.fleet(),
            &current.overrides(),
            Some(&current),
        );
        let patterns = current.changed_patterns(&next);
        if let (Some(hook), false) = (&inner.before_swap, patterns.is_empty()) {
            hook.before_swap(&next, &patterns);
        }
        self.table.store(Arc::new(next));
        if !patterns.is_empty() {
            let notice = Notice {
                change: Change::Patterns(patterns.clone().into()),
                at: std::time::Instant::now(),
            };
            inner
                .subscribers
                .retain(|tx| tx.send(notice.clone()).is_ok());
        }
        patterns
    }

    /// The persisted overrides.
    #[cfg(test)]
    pub fn overrides(&self) -> BTreeMap<String, bool> {
        self.table().overrides()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    /// The policy tests' config (shop enforced with a wildcard and an exempt path, blog not
    /// enforced, static 308 without backend), state in `dir`.
    pub(crate) fn config(dir: &Path) -> Config {
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
    fn site_changes_together_in_one_line() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path());
        let p = Policy::load(&cfg).unwrap();
        // A runtime name under the site's wildcard belongs to the site.
        p.set(&["new.shop.example.com".into()], true).unwrap();
        let journal = || std::fs::read_to_string(d.path().join(journal::JOURNAL_FILE)).unwrap();
        let lines = journal().lines().count();
        let changed = p.set_site("shop", false).unwrap();
        assert_eq!(
            changed,
            [
                "*.shop.example.com",
                "new.shop.example.com",
                "shop.example.com"
            ]
        );
        assert_eq!(journal().lines().count(), lines + 1, "{}", journal());
        let t = p.table();
        assert!(!t.lookup("shop.example.com").unwrap().enforced);
        assert!(!t.lookup("a.shop.example.com").unwrap().enforced);
        // The runtime name is gone: its lookups fall to the (now released) wildcard.
        assert_eq!(
            &*t.lookup("new.shop.example.com").unwrap().pattern,
            "*.shop.example.com"
        );
        // The other sites are untouched ("static" holds x.shop.example.com).
        assert!(t.lookup("x.shop.example.com").unwrap().enforced);
        // A host-level exception inside the site, then the site again resets it.
        p.set(&["shop.example.com".into()], true).unwrap();
        assert!(p.table().lookup("shop.example.com").unwrap().enforced);
        p.set_site("shop", true).unwrap();
        assert!(p.overrides().is_empty(), "{:?}", p.overrides());
        // Persisted: a restart sees the same state.
        p.set_site("blog", true).unwrap();
        let p2 = Policy::load(&cfg).unwrap();
        assert!(p2.table().lookup("blog.example.com").unwrap().enforced);
    }

    #[test]
    fn site_errors_change_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = Policy::load(&config(d.path())).unwrap();
        assert!(matches!(
            p.set_site("nope", true),
            Err(PolicyError::UnknownSite { .. })
        ));
        // A journal that cannot be written: the site keeps its state, entirely.
        std::fs::create_dir_all(d.path().join(journal::JOURNAL_FILE)).unwrap();
        let e = p.set_site("shop", false).unwrap_err();
        assert!(matches!(e, PolicyError::Persist(_)), "{e}");
        let t = p.table();
        assert!(t.lookup("shop.example.com").unwrap().enforced);
        assert!(t.lookup("a.shop.example.com").unwrap().enforced);
        assert!(p.overrides().is_empty());
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

    /// The test config with `[fleet]` (so the fleet table is persisted).
    fn fleet_config(dir: &Path) -> Config {
        let mut c = config(dir);
        c.fleet = Some(crate::config::FleetConfig {
            etcd_endpoints: vec!["http://127.0.0.1:1".into()],
            prefix: "/fh/".into(),
            tls: None,
            username: None,
            password_file: None,
        });
        c
    }

    fn fleet_set(p: &Policy, items: &[(&str, Option<bool>)]) -> Vec<String> {
        let u: Vec<_> = items
            .iter()
            .map(|(h, v)| (parse_domain_pattern(h).unwrap(), h.to_string(), *v))
            .collect();
        let (changed, err) = p.set_fleet(&u);
        assert!(err.is_none(), "{err:?}");
        changed
    }

    #[test]
    fn fleet_precedence_local_then_fleet_then_config() {
        let d = tempfile::tempdir().unwrap();
        let cfg = fleet_config(d.path());
        let p = Policy::load(&cfg).unwrap();
        // The fleet enforces blog (config: not enforced) and adds a host of its own.
        let mut changed = fleet_set(
            &p,
            &[
                ("blog.example.com", Some(true)),
                ("f.example.org", Some(true)),
                // Only the last update of a pattern counts.
                ("g.example.org", Some(true)),
                ("g.example.org", None),
            ],
        );
        changed.sort();
        assert_eq!(changed, ["blog.example.com", "f.example.org"]);
        assert!(p.table().lookup("g.example.org").is_none());
        let t = p.table();
        let blog = t.lookup("blog.example.com").unwrap();
        assert!(blog.enforced && blog.fleet == Some(true) && !blog.overridden);
        assert_eq!(blog.source, Source::Config);
        assert_eq!(t.lookup("f.example.org").unwrap().source, Source::Fleet);
        // A local override wins over the fleet...
        p.set(&["blog.example.com".into()], false).unwrap();
        assert!(!p.table().lookup("blog.example.com").unwrap().enforced);
        // ...also when the fleet changes again.
        fleet_set(&p, &[("blog.example.com", Some(true))]);
        fleet_set(&p, &[("blog.example.com", None)]);
        fleet_set(&p, &[("blog.example.com", Some(true))]);
        assert!(!p.table().lookup("blog.example.com").unwrap().enforced);
        // Back to the fleet's value: the override is dropped, the fleet decides again.
        p.set(&["blog.example.com".into()], true).unwrap();
        let t = p.table();
        let blog = t.lookup("blog.example.com").unwrap();
        assert!(blog.enforced && !blog.overridden && blog.fleet == Some(true));
        // A delete returns to the config; a fleet-only host leaves the table.
        fleet_set(&p, &[("blog.example.com", None), ("f.example.org", None)]);
        let t = p.table();
        assert!(!t.lookup("blog.example.com").unwrap().enforced);
        assert!(t.lookup("f.example.org").is_none());
        // A fleet `false` for an enforced config host.
        fleet_set(&p, &[("shop.example.com", Some(false))]);
        assert!(!p.table().lookup("shop.example.com").unwrap().enforced);
        assert!(p.table().lookup("a.shop.example.com").unwrap().enforced);
    }

    #[test]
    fn fleet_table_survives_restart_and_resync_applies_the_difference() {
        let d = tempfile::tempdir().unwrap();
        let cfg = fleet_config(d.path());
        let p = Policy::load(&cfg).unwrap();
        fleet_set(
            &p,
            &[
                ("blog.example.com", Some(true)),
                ("a.example.org", Some(true)),
                ("b.example.org", Some(true)),
            ],
        );
        drop(p);
        // Restart (etcd unreachable): the last known fleet table is back.
        let p = Policy::load(&cfg).unwrap();
        assert!(p.table().lookup("a.example.org").unwrap().enforced);
        assert!(p.table().lookup("blog.example.com").unwrap().enforced);
        // A full read: b gone, c new, a unchanged (not in the change), blog unchanged.
        let mut rx = p.subscribe_changes();
        let all: std::collections::HashMap<String, (DomainPattern, bool)> = [
            ("blog.example.com", true),
            ("a.example.org", true),
            ("c.example.org", false),
        ]
        .into_iter()
        .map(|(h, v)| (h.to_string(), (parse_domain_pattern(h).unwrap(), v)))
        .collect();
        let (mut changed, err) = p.replace_fleet(all);
        assert!(err.is_none());
        changed.sort();
        assert_eq!(changed, ["b.example.org", "c.example.org"]);
        let Change::Patterns(sent) = rx.try_recv().unwrap().change else {
            panic!("not a pattern change");
        };
        let mut sent = sent.to_vec();
        sent.sort();
        assert_eq!(sent, ["b.example.org", "c.example.org"]);
        let t = p.table();
        assert!(t.lookup("b.example.org").is_none());
        assert!(!t.lookup("c.example.org").unwrap().enforced);
        // Without [fleet] the fleet table is not read.
        let p = Policy::load(&config(d.path())).unwrap();
        assert!(p.table().lookup("a.example.org").is_none());
        assert!(!p.table().lookup("blog.example.com").unwrap().enforced);
        // A reload keeps the fleet's values.
        let p = Policy::load(&cfg).unwrap();
        p.reload(&cfg.sites);
        assert!(p.table().lookup("blog.example.com").unwrap().enforced);
        assert!(p.table().lookup("a.example.org").unwrap().enforced);
    }
}
