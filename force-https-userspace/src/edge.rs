//! What every request path reads per request: the live policy table, the counters, the
//! settings of the redirect and of the client-facing limits, the access log, and the
//! connection cap.
//!
//! An [`Edge`] is built once by the daemon and shared (`Arc<Edge>`) with the XDP fast path,
//! the port-80 socket path, the TLS path, the proxy and the admin side. It holds no listener,
//! no certificate and no backend client: those belong to their own paths.
//!
//! The settings and the access log are live: a configuration reload swaps them
//! ([`Edge::set_settings`], [`Edge::set_access_log`]). A request path reads them once per
//! request or connection ([`Edge::settings`]) and keeps that snapshot to the end, so what is
//! in flight finishes on the configuration it started with.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    access_log::AccessLog,
    config::{Config, Limits},
    metrics::{Counter, Metrics},
    policy::Policy,
};

/// Settings every path applies the same way.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[redirect] https_port`: the port written into `Location` (omitted when 443).
    pub https_port: u16,
    /// `[redirect] default_host`: the host of HTTP/1.0 requests without `Host`.
    pub default_host: Option<String>,
    /// `[limits]`.
    pub limits: Limits,
    /// The `Strict-Transport-Security` value for enforced hosts without a site of their own
    /// (runtime-only hosts), from `[hsts]`.
    pub default_hsts: hyper::header::HeaderValue,
}

impl Settings {
    /// The settings of a configuration.
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            https_port: config.https_port,
            default_host: config.default_host.clone(),
            limits: config.limits.clone(),
            default_hsts: config.hsts.header_value(),
        }
    }
}

/// The state shared by every request path.
pub struct Edge {
    /// The live host-policy table.
    pub policy: Policy,
    /// Global counters (shared with response bodies still streaming).
    pub metrics: Arc<Metrics>,
    /// Redirect and limit settings (swapped by a reload).
    settings: ArcSwap<Settings>,
    /// The access log, when `[log] access` is on (swapped by a reload).
    access_log: ArcSwapOption<AccessLog>,
    /// `limits.max_connections` at start (a change needs a restart).
    max_connections: usize,
    /// One permit per open client connection (`limits.max_connections`), over all listeners.
    connections: Arc<Semaphore>,
    /// The most connections open at once since [`Edge::take_peak`] last read it.
    peak: AtomicUsize,
}

impl Edge {
    /// Builds the edge of a configuration: loads the policy table (config plus persisted
    /// runtime overrides).
    ///
    /// # Errors
    /// The state files in `state.dir` cannot be read or are corrupt.
    pub fn new(config: &Config) -> anyhow::Result<Edge> {
        Ok(Edge::with_policy(config, Policy::load(config)?))
    }

    /// An edge around an already loaded policy.
    fn with_policy(config: &Config, policy: Policy) -> Edge {
        Edge {
            policy,
            metrics: Arc::default(),
            settings: ArcSwap::from_pointee(Settings::from_config(config)),
            access_log: ArcSwapOption::empty(),
            max_connections: config.limits.max_connections,
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            peak: AtomicUsize::new(0),
        }
    }

    /// The current settings: read once per request (or connection) and keep the snapshot.
    pub fn settings(&self) -> arc_swap::Guard<Arc<Settings>> {
        self.settings.load()
    }

    /// The current settings as an owned snapshot, for a connection to keep across awaits.
    pub fn settings_full(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Publishes new settings (configuration reload); requests already started keep theirs.
    pub fn set_settings(&self, s: Settings) {
        self.settings.store(Arc::new(s));
    }

    /// The access log, when on. Check it before building an [`Entry`].
    pub fn access_log(&self) -> Option<Arc<AccessLog>> {
        self.access_log.load_full()
    }

    /// Replaces the access log (`None`: off). The previous writer finishes what it has queued.
    pub fn set_access_log(&self, log: Option<Arc<AccessLog>>) {
        self.access_log.store(log);
    }

    /// Admits one more client connection, or `None` when `limits.max_connections` are open.
    /// The connection counts until the permit is dropped.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.connections.clone().try_acquire_owned().ok()?;
        self.peak.fetch_max(self.active_connections(), Relaxed);
        Some(permit)
    }

    /// The most client connections open at once since the last call, and starts a new period
    /// from the number open now.
    pub fn take_peak(&self) -> usize {
        self.peak.swap(self.active_connections(), Relaxed)
    }

    /// Client connections open now.
    pub fn active_connections(&self) -> usize {
        self.max_connections
            .saturating_sub(self.connections.available_permits())
    }

    /// Waits until every client connection has closed, for at most `timeout`. Returns whether
    /// they all did.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        tokio::time::timeout(timeout, self.connections.acquire_many(all))
            .await
            .is_ok()
    }

    /// The global counters, then the gauges of the edge: open connections and table size.
    pub fn counters(&self) -> Vec<Counter> {
        let mut v = self.metrics.snapshot();
        v.push((
            "active_connections",
            "Client connections open now.",
            self.active_connections() as u64,
        ));
        v.push((
            "hosts",
            "Entries in the host-policy table.",
            self.policy.table().len() as u64,
        ));
        v
    }
}
