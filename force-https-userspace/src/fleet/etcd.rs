//! The etcd side of the fleet (cargo feature `fleet`): the client, the follower task (full
//! read at one revision, then the watch, reconnection with backoff, resync after a
//! compaction) and the writer. See the parent module for the behaviour.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::Ordering::{Relaxed, SeqCst},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use etcd_client::{
    Certificate, Client, ConnectOptions, EventType, GetOptions, Identity, TlsOptions, Txn, TxnOp,
    WatchOptions,
};
use force_https_proto::host::DomainPattern;
use tokio::sync::watch;

use super::{
    APPLY_WAIT, FleetError, FleetStats, PAGE, PAGE_MAX_BYTES, REQUEST_TIMEOUT, TXN_OPS, apply,
    bad_entry, keys, patterns,
};
use crate::{config::FleetConfig, edge::Edge, metrics::CounterSource};

/// First and largest pause between two connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A node's view of the fleet: the follower task's state and the writer.
pub struct Fleet {
    prefix: String,
    endpoints: Vec<String>,
    options: ConnectOptions,
    edge: Arc<Edge>,
    stats: Arc<FleetStats>,
    /// The client of the current session (writes use it); `None` while disconnected.
    client: Mutex<Option<Client>>,
    /// The revision applied to the policy table (writes wait for theirs).
    applied: watch::Sender<i64>,
    /// The runtime the follower runs on (writes from blocking threads use it).
    runtime: tokio::runtime::Handle,
    /// Bad-entry log window: (minute, lines logged in it).
    bad_log: Mutex<(u64, u64)>,
}

/// A task that is aborted when its handle is dropped (a page read that is no longer wanted).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a watch session ended.
enum End {
    /// The watched revision was compacted: read everything again.
    Compacted,
}

impl Fleet {
    /// Builds the client options and starts following the prefix in the background; the
    /// node serves its last known table meanwhile. Must be called on the daemon's runtime.
    ///
    /// # Errors
    /// The TLS files cannot be read, or the password file cannot be read or is readable by
    /// others than its owner (mode 0600 or 0400 required).
    pub fn start(config: &FleetConfig, edge: Arc<Edge>) -> anyhow::Result<Arc<Fleet>> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        if let Some(tls) = &config.tls {
            let mut t = TlsOptions::new();
            if let Some(ca) = &tls.ca {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("[fleet] tls.ca: cannot read {}", ca.display()))?;
                t = t.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                let c = std::fs::read(cert)
                    .with_context(|| format!("[fleet] tls.cert: cannot read {}", cert.display()))?;
                let k = std::fs::read(key)
                    .with_context(|| format!("[fleet] tls.key: cannot read {}", key.display()))?;
                t = t.identity(Identity::from_pem(c, k));
            }
            options = options.with_tls(t);
        }
        if let (Some(user), Some(file)) = (&config.username, &config.password_file) {
            let pw = crate::secret::read_secret_file(file, "[fleet] password_file")?;
            let pw = String::from_utf8(pw).map_err(|_| {
                anyhow::anyhow!("[fleet] password_file {} is not UTF-8", file.display())
            })?;
            options = options
                .with_user(user.clone(), pw)
                .with_auto_token_refresh(true);
        }
        let fleet = Arc::new(Fleet {
            prefix: config.prefix.clone(),
            endpoints: config.etcd_endpoints.clone(),
            options,
            edge,
            stats: Arc::default(),
            client: Mutex::new(None),
            applied: watch::Sender::new(0),
            runtime: tokio::runtime::Handle::current(),
            bad_log: Mutex::new((0, 0)),
        });
        tokio::spawn(fleet.clone().follow());
        Ok(fleet)
    }

    /// The key prefix, as configured (`/force-https/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// etcd's client URLs, as configured.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The fleet's counters and gauges.
    pub fn counters(&self) -> Arc<dyn CounterSource> {
        self.stats.clone()
    }

    fn set_client(&self, c: Option<Client>) {
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = c;
    }

    fn current_client(&self) -> Option<Client> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Follows the prefix forever: sessions, and backoff between them.
    async fn follow(self: Arc<Self>) {
        let mut backoff = BACKOFF_MIN;
        let mut last: Option<i64> = None;
        let mut failures = 0u64;
        loop {
            let e = self.session(&mut last, &mut backoff).await;
            self.stats.connected.store(0, SeqCst);
            self.set_client(None);
            failures += 1;
            // Every failure while the outage lasts would be one line each 5 s: log the first
            // ones and then one a minute.
            if failures <= 3 || failures.is_multiple_of(12) {
                tracing::warn!(
                    endpoints = ?self.endpoints,
                    retry_in_ms = backoff.as_millis() as u64,
                    "fleet: etcd unreachable or watch lost, serving the last known table: {e:#}"
                );
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            self.stats.reconnects.fetch_add(1, Relaxed);
        }
    }

    /// One connection: the full read when needed, then the watch until it fails.
    async fn session(&self, last: &mut Option<i64>, backoff: &mut Duration) -> anyhow::Error {
        let mut client = match Client::connect(&self.endpoints, Some(self.options.clone())).await {
            Ok(c) => c,
            Err(e) => return anyhow::Error::new(e).context("cannot connect"),
        };
        self.set_client(Some(client.clone()));
        loop {
            let start = match *last {
                Some(r) => r + 1,
                None => match self.read_all(&mut client).await {
                    Ok(r) => {
                        *last = Some(r);
                        r + 1
                    }
                    Err(e) => return e,
                },
            };
            match self.watch(&mut client, start, last, backoff).await {
                Ok(End::Compacted) => {
                    tracing::warn!(
                        revision = start - 1,
                        "fleet: the watched revision was compacted; reading the whole prefix again"
                    );
                    self.stats.resyncs.fetch_add(1, Relaxed);
                    *last = None;
                }
                Err(e) => return e,
            }
        }
    }

    /// Reads every host key at one revision and applies the difference; returns the revision.
    ///
    /// Pages of [`PAGE`] keys; the next page is requested as soon as a page arrives, so
    /// etcd serves it while this node parses the last one. The difference is applied on a
    /// blocking thread (a 1M-key read is seconds of CPU), as one change.
    async fn read_all(&self, client: &mut Client) -> anyhow::Result<i64> {
        let t0 = std::time::Instant::now();
        let (start, end) = keys::hosts_range(&self.prefix);
        let mut all: HashMap<String, (DomainPattern, bool)> = HashMap::new();
        let mut revision = 0;
        let kv = client.kv_client().max_decoding_message_size(PAGE_MAX_BYTES);
        let fetch = |from: Vec<u8>, revision: i64| {
            let mut kv = kv.clone();
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE)
                .with_revision(revision);
            AbortOnDrop(tokio::spawn(async move {
                tokio::time::timeout(REQUEST_TIMEOUT * 4, kv.get(from, Some(opts)))
                    .await
                    .context("reading the fleet prefix timed out")?
                    .context("cannot read the fleet prefix")
            }))
        };
        let mut next = Some(fetch(start, 0));
        while let Some(mut page) = next.take() {
            let resp = (&mut page.0)
                .await
                .context("reading the fleet prefix failed")??;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            if let Some(kv) = resp.kvs().last()
                && resp.more()
            {
                let mut from = kv.key().to_vec();
                from.push(0);
                next = Some(fetch(from, revision));
            }
            all.reserve(resp.kvs().len());
            for kv in resp.kvs() {
                match keys::parse_key(&self.prefix, kv.key())
                    .and_then(|(p, k)| keys::parse_value(kv.value()).map(|v| (p, k, v)))
                {
                    Ok((p, k, v)) => {
                        all.insert(k, (p, v));
                    }
                    Err(why) => bad_entry(&self.stats, &self.bad_log, kv.key(), &why),
                }
            }
        }
        let read_ms = t0.elapsed().as_millis() as u64;
        let n = all.len();
        let edge = self.edge.clone();
        let (changed, err) = tokio::task::spawn_blocking(move || edge.policy.replace_fleet(all))
            .await
            .context("applying the fleet table failed")?;
        if let Some(e) = err {
            self.stats.persist_failures.fetch_add(1, Relaxed);
            tracing::error!("fleet: cannot persist the fleet table (applied anyway): {e:#}");
        }
        self.stats.revision.store(revision, SeqCst);
        self.applied.send_replace(revision);
        tracing::info!(
            revision,
            hosts = n,
            changed = changed.len(),
            read_ms,
            ms = t0.elapsed().as_millis() as u64,
            "fleet: read the whole prefix"
        );
        Ok(revision)
    }

    /// Watches from `start` and applies every response; returns when the revision was
    /// compacted, or the error that ended the watch.
    async fn watch(
        &self,
        client: &mut Client,
        start: i64,
        last: &mut Option<i64>,
        backoff: &mut Duration,
    ) -> anyhow::Result<End> {
        let (key, end) = keys::hosts_range(&self.prefix);
        let opts = WatchOptions::new()
            .with_range(end)
            .with_start_revision(start)
            .with_progress_notify();
        let mut stream = tokio::time::timeout(REQUEST_TIMEOUT, client.watch(key, Some(opts)))
            .await
            .context("starting the watch timed out")?
            .context("cannot start the watch")?;
        loop {
            let Some(resp) = stream.message().await.context("the watch failed")? else {
                bail!("etcd closed the watch");
            };
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    return Ok(End::Compacted);
                }
                bail!("etcd canceled the watch: {}", resp.cancel_reason());
            }
            if resp.created() && self.stats.connected.swap(1, SeqCst) == 0 {
                *backoff = BACKOFF_MIN;
                tracing::info!(revision = start - 1, "fleet: watching etcd");
            }
            let mut updates = Vec::with_capacity(resp.events().len());
            let mut rev = None;
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                rev = rev.max(Some(kv.mod_revision()));
                let parsed = keys::parse_key(&self.prefix, kv.key()).and_then(|(p, k)| {
                    match ev.event_type() {
                        EventType::Delete => Ok((p, k, None)),
                        EventType::Put => keys::parse_value(kv.value()).map(|v| (p, k, Some(v))),
                    }
                });
                match parsed {
                    Ok(u) => updates.push(u),
                    // A bad value replacing a good one: the key's last good value stays.
                    Err(why) => bad_entry(&self.stats, &self.bad_log, kv.key(), &why),
                }
            }
            if !updates.is_empty() {
                apply(&self.edge.policy, &self.stats, &updates);
                self.stats.updates.fetch_add(1, Relaxed);
            }
            // A response without events (created, progress) covers up to its header.
            let rev = rev.or_else(|| resp.header().map(|h| h.revision()));
            if let Some(r) = rev
                && Some(r) > *last
            {
                *last = Some(r);
                self.stats.revision.store(r, SeqCst);
                self.applied.send_replace(r);
            }
        }
    }

    /// Writes `enforce` for every host into etcd (one transaction per [`TXN_OPS`] hosts) and
    /// waits until this node has applied the last revision written (at most [`APPLY_WAIT`]).
    /// Returns that revision.
    ///
    /// # Errors
    /// An invalid host (nothing written), or etcd unreachable: nothing written, or (when a
    /// transaction of a large list failed after others) the earlier ones only.
    pub async fn put(&self, hosts: &[String], enforce: bool) -> Result<i64, FleetError> {
        let patterns = patterns(hosts)?;
        let mut client = match self.current_client() {
            Some(c) if self.stats.connected.load(SeqCst) == 1 => c,
            _ => {
                return Err(FleetError::Unavailable(format!(
                    "not connected to {}",
                    self.endpoints.join(", ")
                )));
            }
        };
        let value = keys::host_value(enforce);
        let mut revision = 0;
        for chunk in patterns.chunks(TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|p| TxnOp::put(keys::host_key(&self.prefix, p), value.clone(), None))
                .collect();
            let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.txn(Txn::new().and_then(ops)))
                .await
                .map_err(|_| FleetError::Unavailable("etcd did not answer in time".into()))?
                .map_err(|e| FleetError::Unavailable(e.to_string()))?;
            revision = resp.header().map_or(revision, |h| h.revision());
        }
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|r| *r >= revision)).await;
        if reached.is_err() {
            tracing::warn!(
                revision,
                "fleet: written to etcd, but the watch has not brought it back yet"
            );
        }
        Ok(revision)
    }

    /// [`Fleet::put`] from a thread that is not a runtime worker: the admin service runs
    /// changes on the blocking pool (`spawn_blocking`), never on a worker, where waiting would
    /// panic.
    ///
    /// # Errors
    /// As [`Fleet::put`].
    pub fn put_blocking(&self, hosts: &[String], enforce: bool) -> Result<i64, FleetError> {
        self.runtime.block_on(self.put(hosts, enforce))
    }
}
