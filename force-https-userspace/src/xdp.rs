//! Loading and attaching the XDP program, and reading its counters.
//!
//! The object file is built by `build.rs` (aya-build) and embedded in the binary. The maps
//! named in `force-https-common` are the contract: userspace writes the listen ports into
//! `FH_PORTS` and sums the per-CPU counters of `FH_STATS`. Dropping [`XdpHandle`] detaches
//! the program; if the daemon dies, the kernel detaches it with the last file descriptor.

use anyhow::{Context, anyhow};
use aya::{
    Ebpf,
    maps::{HashMap, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use force_https_common::{MAP_PORTS, MAP_STATS, PROG_NAME, STAT_COUNT, STAT_NAMES};

use crate::config::{XdpConfig, XdpMode as ConfigMode};

/// The embedded XDP object.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/force-https-ebpf"));

/// An attached XDP program; detached on drop.
pub struct XdpHandle {
    _ebpf: Ebpf,
    stats: PerCpuArray<MapData, u64>,
    /// The interface it is attached to.
    pub interface: String,
    /// The mode it was attached in.
    pub mode: &'static str,
}

impl std::fmt::Debug for XdpHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XdpHandle({} {})", self.interface, self.mode)
    }
}

/// Loads the program, fills the port map and attaches it to the configured interface.
pub fn attach(cfg: &XdpConfig, ports: &[u16]) -> anyhow::Result<XdpHandle> {
    raise_memlock();
    let mut ebpf =
        Ebpf::load(OBJECT).context("cannot load the XDP object (is this root with CAP_BPF?)")?;
    {
        let mut map: HashMap<_, u16, u8> = HashMap::try_from(
            ebpf.map_mut(MAP_PORTS)
                .ok_or_else(|| anyhow!("map {MAP_PORTS} missing from the XDP object"))?,
        )?;
        for p in ports {
            map.insert(p, 1, 0)
                .with_context(|| format!("cannot add port {p} to {MAP_PORTS}"))?;
        }
    }
    let stats = PerCpuArray::try_from(
        ebpf.take_map(MAP_STATS)
            .ok_or_else(|| anyhow!("map {MAP_STATS} missing from the XDP object"))?,
    )?;
    let prog: &mut Xdp = ebpf
        .program_mut(PROG_NAME)
        .ok_or_else(|| anyhow!("program {PROG_NAME} missing from the XDP object"))?
        .try_into()?;
    prog.load().context("the kernel rejected the XDP program")?;
    let attempts: &[(XdpMode, &'static str)] = match cfg.mode {
        ConfigMode::Native => &[(XdpMode::Driver, "native")],
        ConfigMode::Generic => &[(XdpMode::Skb, "generic")],
        ConfigMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
    };
    let mut last = None;
    for (mode, name) in attempts {
        match prog.attach(&cfg.interface, *mode) {
            Ok(_) => {
                return Ok(XdpHandle {
                    _ebpf: ebpf,
                    stats,
                    interface: cfg.interface.clone(),
                    mode: name,
                });
            }
            Err(e) => last = Some(anyhow::Error::new(e).context(format!("{name} mode"))),
        }
    }
    Err(last
        .unwrap_or_else(|| anyhow!("no attach mode"))
        .context(format!(
            "cannot attach XDP to interface {:?}",
            cfg.interface
        )))
}

impl XdpHandle {
    /// The counters summed over CPUs, with their names.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        (0..STAT_COUNT)
            .map(|i| {
                let v = self
                    .stats
                    .get(&i, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (STAT_NAMES[i as usize], v)
            })
            .collect()
    }
}

/// Older kernels charge BPF maps to RLIMIT_MEMLOCK; lift it (best effort).
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}
