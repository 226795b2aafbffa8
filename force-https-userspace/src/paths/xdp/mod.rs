//! The XDP fast path: the program on the edge interface, the host map that mirrors the policy
//! table, and the AF_XDP responders that answer what the program hands them.
//!
//! - [`loader`]: loads and attaches the program, writes the ports and settings;
//! - [`syncookies`]: `tcp_syncookies = 2` while it runs;
//! - [`hostmap`]: the projection of the policy table into `FH_HOSTS`, kept in step;
//! - [`responder`]: the pure, allocation-free answer to one frame;
//! - [`rings`]: the AF_XDP sockets and responder threads.
//!
//! The maps named in `force-https-common` are the whole contract with the program. A
//! [`FastPath`] is one running value: [`FastPath::start`] attaches, fills the map, starts the
//! sync thread and the responders, or fails having undone all of it. Dropping it stops the
//! responders and the sync and detaches the program; if the daemon dies instead, the kernel
//! detaches it with the last file descriptor. Either way port 80 goes back to the kernel's
//! sockets.

mod hostmap;
mod loader;
pub mod responder;
mod rings;
mod syncookies;
#[cfg(test)]
mod test_run;

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::Context;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
};
use force_https_common::{
    STAT_COUNT, STAT_HELP, STAT_NAMES, SYNACK_KERNEL, SYNACK_TX, SYNACK_XSK, Settings,
};

use crate::{
    config::XdpConfig,
    edge::Edge,
    metrics::{Counter, CounterSource},
};
use hostmap::{HostMap, HostMapSync};
use rings::{ResponderStats, Responders};
use syncookies::RestoreSyncookies;

/// The running fast path. On drop, SYNs go back to the kernel first (so no SYN-ACK frame waits
/// for a responder that is stopping); then fields drop in order: the host-map sync and the
/// responders stop, then the program is detached, then `tcp_syncookies` is restored.
pub struct FastPath {
    /// What the program was last told (SYNs go back to the kernel first when stopping).
    settings: Settings,
    _sync: HostMapSync,
    _responders: Responders,
    counters: Arc<XdpCounters>,
    ebpf: Ebpf,
    _syncookies: RestoreSyncookies,
    /// The interface it is attached to.
    pub interface: String,
    /// `"native"` or `"generic"`.
    pub mode: &'static str,
}

impl Drop for FastPath {
    fn drop(&mut self) {
        if self.settings.synack != SYNACK_KERNEL {
            let settings = Settings {
                synack: SYNACK_KERNEL,
                ..self.settings
            };
            if let Err(e) = loader::write_settings(&mut self.ebpf, settings) {
                tracing::warn!("cannot give SYNs back to the kernel before stopping: {e:#}");
            }
        }
    }
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FastPath({} {})", self.interface, self.mode)
    }
}

impl FastPath {
    /// Attaches the program to `cfg.interface` for the port-80 listen `ports`, fills the host
    /// map from `edge`'s policy table, keeps it in step with every later change, and starts
    /// one AF_XDP responder per RX queue. Must run inside the tokio runtime.
    ///
    /// # Errors
    /// Anything that stops the fast path from working (see [`loader`] and [`rings`]); what was
    /// set up is undone (program detached, `tcp_syncookies` restored).
    pub fn start(cfg: &XdpConfig, ports: &[u16], edge: &Arc<Edge>) -> anyhow::Result<FastPath> {
        let https_port = edge.settings().https_port;
        let mut a = loader::attach(cfg, ports, https_port)?;
        tracing::info!(interface = %cfg.interface, mode = a.mode, ?ports, "XDP program attached");
        // Subscribe first: a change racing with the fill is then applied (again) afterwards.
        let changes = edge.policy.subscribe_changes();
        let mut hosts = HostMap::new(a.hosts);
        let t0 = Instant::now();
        let n = hosts.sync(&edge.policy.table())?;
        tracing::info!(
            entries = n,
            ms = t0.elapsed().as_millis() as u64,
            "XDP host map filled"
        );
        let fin_tx = cfg
            .xdp_tx
            .unwrap_or_else(|| loader::fin_tx_works(&cfg.interface, a.mode));
        let (mss_v4, mss_v6) = loader::advertised_mss(&cfg.interface);
        let mut settings = Settings {
            fixed_len: loader::fixed_response_len(https_port),
            ready: 1,
            fin_tx: u32::from(fin_tx),
            synack: SYNACK_KERNEL,
            mss_v4,
            mss_v6,
        };
        loader::write_settings(&mut a.ebpf, settings)?;
        tracing::debug!(
            fin_tx,
            "client FINs answered by XDP_TX (else by the AF_XDP responder); [xdp] xdp_tx overrides"
        );
        let rt = tokio::runtime::Handle::try_current()
            .context("the XDP fast path must start inside the runtime")?;
        let sync = HostMapSync::start(hosts, changes, edge.clone(), rt)?;
        let flows = Arc::new(Mutex::new(a.flows));
        let responders = rings::start(&mut a.ebpf, &cfg.interface, a.queues, flows, edge)?;
        // SYNs are answered only once the responders run: in the AF_XDP mode a SYN-ACK frame
        // without a socket to take it would be dropped.
        settings.synack = loader::synack_mode(cfg.answer_syn, fin_tx);
        loader::write_settings(&mut a.ebpf, settings)?;
        tracing::info!(
            synack = loader::synack_name(settings.synack),
            mss_v4,
            mss_v6,
            "port-80 SYNs answered by {}",
            match settings.synack {
                SYNACK_TX => "XDP (syncookie SYN-ACK, XDP_TX)",
                SYNACK_XSK => "XDP (syncookie SYN-ACK sent by the AF_XDP responder)",
                _ => "the kernel (answer_syn = false)",
            }
        );
        Ok(FastPath {
            counters: Arc::new(XdpCounters {
                stats: a.stats,
                responders: responders.stats(),
                host_map: sync.stats(),
            }),
            settings,
            _sync: sync,
            _responders: responders,
            ebpf: a.ebpf,
            _syncookies: a.syncookies,
            interface: cfg.interface.clone(),
            mode: a.mode,
        })
    }

    /// The fast path's counters, readable after it stops (they then stay as they were).
    pub fn counters(&self) -> Arc<dyn CounterSource> {
        self.counters.clone()
    }
}

/// The XDP program's counters (`FH_STATS`, per CPU), the responders' and the host map's.
struct XdpCounters {
    stats: PerCpuArray<MapData, u64>,
    responders: Arc<ResponderStats>,
    host_map: Arc<hostmap::HostMapStats>,
}

impl CounterSource for XdpCounters {
    /// The XDP counters summed over CPUs, then the responders' counters.
    fn counters(&self, out: &mut Vec<Counter>) {
        for i in 0..STAT_COUNT {
            let v = self
                .stats
                .get(&i, 0)
                .map(|per_cpu| per_cpu.iter().sum())
                .unwrap_or(0);
            if let (Some(name), Some(help)) =
                (STAT_NAMES.get(i as usize), STAT_HELP.get(i as usize))
            {
                out.push((name, help, v));
            }
        }
        self.responders.counters(out);
        self.host_map.counters(out);
    }
}
