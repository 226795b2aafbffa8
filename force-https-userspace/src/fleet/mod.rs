//! The fleet (`[fleet]`): etcd as the source of truth for which hosts are enforced on every
//! edge node (docs/design.md, "Fleet (etcd)").
//!
//! - [`keys`]: the key layout, `<prefix>hosts/<host>` → `{"force_https": true|false}`, as pure
//!   parsing;
//! - this module: [`Fleet`], the node's follower of that prefix and its writer.
//!
//! **Following.** A task reads the whole prefix at one revision R (paged, every page pinned to
//! R: one consistent snapshot), applies it to the policy table ([`Policy::replace_fleet`]:
//! only the difference), then watches from R + 1, so no change between the read and the watch
//! is lost. Each watch response is applied as one change ([`Policy::set_fleet`]), which the
//! XDP host map follows through the policy's subscribers like any other change. A bad key or
//! value is logged (at most [`BAD_LOG_PER_MINUTE`] lines a minute), counted
//! (`fleet_bad_entries`) and skipped; a delete returns the host to its config.
//!
//! **Outages.** When etcd cannot be reached the node keeps its table (also across a restart:
//! the policy persists the fleet's values in `state.dir/fleet.json`), reports
//! `fleet_connected 0`, and reconnects with exponential backoff (100 ms to 5 s), resuming the
//! watch after the last revision it applied. When that revision has been compacted away, it
//! reads the whole prefix again and applies the difference (`fleet_resyncs`), without
//! dropping hosts in between.
//!
//! **Writing.** With `[fleet]`, `enable`/`disable` (CLI, admin API) put the keys in one etcd
//! transaction per [`TXN_OPS`] hosts ([`Fleet::put`]) and wait until the watch has applied
//! that revision here (at most [`APPLY_WAIT`]), so the change reaches this node the way it
//! reaches every other one. While etcd is unreachable a write fails with
//! [`FleetError::Unavailable`] (CLI exit 6): nothing is queued.

// Without the `fleet` feature only the stub below is built; the rest is unused.
#![cfg_attr(not(feature = "fleet"), allow(dead_code))]

pub mod keys;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use force_https_proto::host::parse_domain_pattern;

#[cfg(not(feature = "fleet"))]
use crate::{config::FleetConfig, edge::Edge};
use crate::{
    metrics::{Counter, CounterSource},
    policy::Policy,
};
#[cfg(not(feature = "fleet"))]
use std::sync::Arc;

/// Puts per etcd transaction (etcd's default `--max-txn-ops`).
pub const TXN_OPS: usize = 128;
/// Keys per page of the full read. Large because etcd 3.4 walks the whole rest of the range
/// for every limited request: 100 pages of 10,000 cost ~12 s for 1M keys, 10 of 100,000 about a
/// tenth of that (BENCHMARKS.md, "Fleet").
pub const PAGE: i64 = 100_000;
/// The largest response of the full read we accept, bytes: a page of [`PAGE`] keys is about
/// 7 MB with short host names and at most ~30 MB with the longest, more than the gRPC client's
/// 4 MB default.
pub const PAGE_MAX_BYTES: usize = 64 << 20;
/// How long a write waits for the watch to bring its revision back to this node.
pub const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Log lines about bad keys or values per minute, at most (all are counted).
pub const BAD_LOG_PER_MINUTE: u64 = 10;
/// How long a write or one page of the full read may take.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Why a fleet write failed. Nothing was written in either case.
#[derive(Debug)]
pub enum FleetError {
    /// A host name is invalid.
    InvalidHost {
        /// The host as given.
        host: String,
        /// Why.
        reason: String,
    },
    /// etcd cannot be reached (or refused the write); the text says which endpoint and why.
    Unavailable(String),
}

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FleetError::InvalidHost { host, reason } => {
                write!(f, "invalid host name {host:?}: {reason}")
            }
            FleetError::Unavailable(why) => write!(
                f,
                "the fleet store (etcd) is unavailable, nothing was changed: {why}. Retry when \
                 etcd is back, or change this node alone with --local"
            ),
        }
    }
}

/// The fleet's counters and gauges (`force-https stats`, `/metrics`).
#[derive(Debug, Default)]
pub struct FleetStats {
    /// 1 while the watch is established, else 0.
    pub connected: AtomicU64,
    /// Connection attempts after a failure or a lost watch.
    pub reconnects: AtomicU64,
    /// Watch responses with changes applied.
    pub updates: AtomicU64,
    /// Full reads of the prefix after the first (a compacted revision).
    pub resyncs: AtomicU64,
    /// Keys or values skipped as invalid.
    pub bad_entries: AtomicU64,
    /// The etcd revision last applied (0 before the first read).
    pub revision: AtomicI64,
    /// Failures to persist the fleet table in `state.dir` (the change was applied anyway).
    pub persist_failures: AtomicU64,
}

impl CounterSource for FleetStats {
    fn counters(&self, out: &mut Vec<Counter>) {
        out.push((
            "fleet_connected",
            "1 while the fleet's etcd watch is established, 0 during an outage (the last known table keeps serving).",
            self.connected.load(Relaxed),
        ));
        out.push((
            "fleet_reconnects",
            "Reconnections to etcd after a failure or a lost watch.",
            self.reconnects.load(Relaxed),
        ));
        out.push((
            "fleet_updates",
            "Fleet watch responses applied to the policy table.",
            self.updates.load(Relaxed),
        ));
        out.push((
            "fleet_resyncs",
            "Full re-reads of the fleet prefix after the watched revision was compacted.",
            self.resyncs.load(Relaxed),
        ));
        out.push((
            "fleet_bad_entries",
            "Fleet keys or values skipped as invalid (logged at most 10 a minute).",
            self.bad_entries.load(Relaxed),
        ));
        out.push((
            "fleet_revision",
            "The etcd revision last applied from the fleet prefix.",
            self.revision.load(Relaxed).max(0) as u64,
        ));
        out.push((
            "fleet_persist_failures",
            "Fleet changes that could not be written to state.dir/fleet.json (applied anyway).",
            self.persist_failures.load(Relaxed),
        ));
    }
}

/// Counts and logs (rate-limited) a bad fleet entry.
fn bad_entry(stats: &FleetStats, window: &std::sync::Mutex<(u64, u64)>, key: &[u8], why: &str) {
    stats.bad_entries.fetch_add(1, Relaxed);
    let minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60);
    let mut w = window.lock().unwrap_or_else(|p| p.into_inner());
    if w.0 != minute {
        *w = (minute, 0);
    }
    w.1 += 1;
    if w.1 <= BAD_LOG_PER_MINUTE {
        tracing::warn!(
            key = %String::from_utf8_lossy(key),
            "fleet: skipping a bad entry: {why}"
        );
    }
}

/// Applies one fleet change to the policy, counting a failure to persist it.
fn apply(
    policy: &Policy,
    stats: &FleetStats,
    updates: &[(force_https_proto::host::DomainPattern, String, Option<bool>)],
) -> usize {
    let (changed, err) = policy.set_fleet(updates);
    if let Some(e) = err {
        stats.persist_failures.fetch_add(1, Relaxed);
        tracing::error!("fleet: cannot persist the fleet table (applied anyway): {e:#}");
    }
    changed.len()
}

/// Validates names for a write, in order.
fn patterns(hosts: &[String]) -> Result<Vec<String>, FleetError> {
    hosts
        .iter()
        .map(|h| {
            parse_domain_pattern(h)
                .map(|p| p.to_string())
                .map_err(|e| FleetError::InvalidHost {
                    host: h.clone(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

#[cfg(feature = "fleet")]
mod etcd;
#[cfg(feature = "fleet")]
pub use etcd::Fleet;

/// Without the `fleet` cargo feature: never built (the config refuses `[fleet]`).
#[cfg(not(feature = "fleet"))]
pub struct Fleet {
    stats: Arc<FleetStats>,
}

#[cfg(not(feature = "fleet"))]
impl Fleet {
    /// Refuses: this binary was built without the `fleet` feature.
    ///
    /// # Errors
    /// Always.
    pub fn start(_config: &FleetConfig, _edge: Arc<Edge>) -> anyhow::Result<Arc<Fleet>> {
        anyhow::bail!("[fleet] needs a force-https built with the cargo feature `fleet`")
    }

    /// The fleet's counters.
    pub fn counters(&self) -> Arc<dyn CounterSource> {
        self.stats.clone()
    }

    /// Refuses (never built).
    ///
    /// # Errors
    /// Always.
    pub fn put_blocking(&self, hosts: &[String], _enforce: bool) -> Result<i64, FleetError> {
        let _ = patterns(hosts)?;
        Err(FleetError::Unavailable(
            "built without fleet support".into(),
        ))
    }

    /// The key prefix (none: never started).
    pub fn prefix(&self) -> &str {
        ""
    }

    /// etcd's client URLs (none: never started).
    pub fn endpoints(&self) -> &[String] {
        &[]
    }
}
