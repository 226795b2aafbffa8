//! Loading and attaching the XDP program, and the few maps written once.
//!
//! The object file is built by `build.rs` (aya-build) and embedded in the binary. The program
//! is attached through a BPF link owned by this process: if the daemon dies, the kernel
//! detaches it with the last file descriptor.

use anyhow::{Context, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use force_https_common::{
    FlowKey, HostValue, MAP_FLOWS, MAP_HOSTS, MAP_PORTS, MAP_SETTINGS, MAP_STATS, MAP_XSKS,
    PROG_NAME, SYNACK_KERNEL, SYNACK_TX, SYNACK_XSK, Settings,
};
use force_https_proto::response::{RedirectPrefix, RedirectStatus};

use super::syncookies::{self, RestoreSyncookies};
use crate::config::{XdpConfig, XdpMode as ConfigMode};

/// The embedded XDP object.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/force-https-ebpf"));

/// A loaded and attached program with the maps userspace keeps.
pub(super) struct Attached {
    /// The program and its remaining maps (`FH_SETTINGS`, `FH_XSKS`); detached when dropped.
    pub(super) ebpf: Ebpf,
    /// `FH_STATS`.
    pub(super) stats: PerCpuArray<MapData, u64>,
    /// `FH_HOSTS`.
    pub(super) hosts: HashMap<MapData, u64, HostValue>,
    /// `FH_FLOWS`.
    pub(super) flows: HashMap<MapData, FlowKey, u32>,
    /// RX queues of the interface (one AF_XDP socket each).
    pub(super) queues: u32,
    /// `"native"` or `"generic"`.
    pub(super) mode: &'static str,
    /// Puts `tcp_syncookies` back when dropped.
    pub(super) syncookies: RestoreSyncookies,
}

/// Number of RX queues of an interface (one AF_XDP socket is bound per queue).
fn rx_queues(interface: &str) -> u32 {
    let dir = format!("/sys/class/net/{interface}/queues");
    let n = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1);
    n.max(1) as u32
}

/// The bytes of a redirect besides host and path, for the longer of the two status lines.
pub fn fixed_response_len(https_port: u16) -> u32 {
    [RedirectStatus::Moved301, RedirectStatus::Permanent308]
        .iter()
        .map(|s| RedirectPrefix::new(*s, "", https_port).response_len(b"/") - 1)
        .max()
        .unwrap_or(0) as u32
}

/// Loads the object with its map sizes, fills the port map, writes the initial settings
/// (nothing answered until userspace says so) and loads the program into the kernel (the
/// verifier runs here). Nothing is attached.
///
/// # Errors
/// No CAP_BPF, a verifier rejection, a map missing from the object.
pub(super) fn load(
    max_hosts: u32,
    max_flows: u32,
    queues: u32,
    ports: &[u16],
    https_port: u16,
) -> anyhow::Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_HOSTS, max_hosts)
        .map_max_entries(MAP_FLOWS, max_flows)
        .map_max_entries(MAP_XSKS, queues)
        .load(OBJECT)
        .context("cannot load the XDP object (is this root with CAP_BPF?)")?;
    {
        let mut map: HashMap<_, u16, u8> = HashMap::try_from(
            ebpf.map_mut(MAP_PORTS)
                .ok_or_else(|| anyhow!("map {MAP_PORTS} missing from the XDP object"))?,
        )
        .context(MAP_PORTS)?;
        for p in ports {
            map.insert(p, 1, 0)
                .with_context(|| format!("cannot add port {p} to {MAP_PORTS}"))?;
        }
    }
    // `ready` stays 0 until the host map is filled: until then every data segment is passed
    // to the kernel, and so is every SYN until the responders run.
    write_settings(
        &mut ebpf,
        Settings {
            fixed_len: fixed_response_len(https_port),
            ..Settings::default()
        },
    )?;
    let prog: &mut Xdp = ebpf
        .program_mut(PROG_NAME)
        .ok_or_else(|| anyhow!("program {PROG_NAME} missing from the XDP object"))?
        .try_into()
        .context(PROG_NAME)?;
    prog.load().context("the kernel rejected the XDP program")?;
    if let Some(n) = prog
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count())
    {
        tracing::debug!(verified_instructions = n, "XDP program verified");
    }
    Ok(ebpf)
}

/// Loads the program, fills the port map and the settings, and attaches it to the configured
/// interface. The host map is filled and the responders started by [`super::FastPath::start`].
///
/// # Errors
/// The program cannot be loaded (no CAP_BPF, a verifier rejection) or attached in any of the
/// allowed modes, a map is missing, or `tcp_syncookies` cannot be set.
pub(super) fn attach(cfg: &XdpConfig, ports: &[u16], https_port: u16) -> anyhow::Result<Attached> {
    if OBJECT.is_empty() {
        bail!("built without the XDP program (fuzzing build)");
    }
    raise_memlock();
    // Put back if anything below fails.
    let syncookies = syncookies::enable()?;
    let queues = rx_queues(&cfg.interface);
    let mut ebpf = load(cfg.max_hosts, cfg.max_flows, queues, ports, https_port)?;
    let stats = PerCpuArray::try_from(
        ebpf.take_map(MAP_STATS)
            .ok_or_else(|| anyhow!("map {MAP_STATS} missing from the XDP object"))?,
    )
    .context(MAP_STATS)?;
    let hosts: HashMap<MapData, u64, HostValue> = HashMap::try_from(
        ebpf.take_map(MAP_HOSTS)
            .ok_or_else(|| anyhow!("map {MAP_HOSTS} missing from the XDP object"))?,
    )
    .context(MAP_HOSTS)?;
    let flows: HashMap<MapData, FlowKey, u32> = HashMap::try_from(
        ebpf.take_map(MAP_FLOWS)
            .ok_or_else(|| anyhow!("map {MAP_FLOWS} missing from the XDP object"))?,
    )
    .context(MAP_FLOWS)?;
    let prog: &mut Xdp = ebpf
        .program_mut(PROG_NAME)
        .ok_or_else(|| anyhow!("program {PROG_NAME} missing from the XDP object"))?
        .try_into()
        .context(PROG_NAME)?;
    let attempts: &[(XdpMode, &'static str)] = match cfg.mode {
        ConfigMode::Native => &[(XdpMode::Driver, "native")],
        ConfigMode::Generic => &[(XdpMode::Skb, "generic")],
        ConfigMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
    };
    let mut last = None;
    for (mode, name) in attempts {
        match prog.attach(&cfg.interface, *mode) {
            Ok(_) => {
                return Ok(Attached {
                    ebpf,
                    stats,
                    hosts,
                    flows,
                    queues,
                    mode: name,
                    syncookies,
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

/// Whether `XDP_TX` frames reach the wire: always in generic mode; in driver mode on a real
/// device, but not on a veth (or another virtual device), whose peer would need an XDP
/// program of its own to receive them (the kernel's veth XDP path; see BENCHMARKS.md).
pub(super) fn fin_tx_works(interface: &str, mode: &str) -> bool {
    mode == "generic"
        || std::path::Path::new(&format!("/sys/class/net/{interface}/device")).exists()
}

/// How SYNs are answered: by the kernel when `answer_syn` is off; else by XDP, with `XDP_TX`
/// where its frames reach the wire ([`fin_tx_works`]), else through the AF_XDP responder.
pub(super) fn synack_mode(answer_syn: bool, tx_works: bool) -> u32 {
    match (answer_syn, tx_works) {
        (false, _) => SYNACK_KERNEL,
        (true, true) => SYNACK_TX,
        (true, false) => SYNACK_XSK,
    }
}

/// The name of a [`Settings::synack`] value, for logs.
pub(super) fn synack_name(mode: u32) -> &'static str {
    match mode {
        SYNACK_TX => "xdp_tx",
        SYNACK_XSK => "afxdp",
        _ => "kernel",
    }
}

/// The MSS a SYN-ACK made by XDP advertises on IPv4 and IPv6: the interface's MTU less the IP
/// and TCP headers (RFC 9293 3.7.1), as the kernel's own SYN-ACK would; 1500 when the MTU
/// cannot be read. Kept between the protocol minimums (536, 1220) and 65535.
pub(super) fn advertised_mss(interface: &str) -> (u32, u32) {
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{interface}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(1500);
    mss_for_mtu(mtu)
}

fn mss_for_mtu(mtu: u32) -> (u32, u32) {
    (
        mtu.saturating_sub(40).clamp(536, 65535),
        mtu.saturating_sub(60).clamp(1220, 65535),
    )
}

/// Writes the settings the program reads (`FH_SETTINGS[0]`).
pub(super) fn write_settings(ebpf: &mut Ebpf, settings: Settings) -> anyhow::Result<()> {
    let mut map: Array<_, Settings> = Array::try_from(
        ebpf.map_mut(MAP_SETTINGS)
            .ok_or_else(|| anyhow!("map {MAP_SETTINGS} missing from the XDP object"))?,
    )
    .context(MAP_SETTINGS)?;
    map.set(0, settings, 0)
        .context("cannot write the XDP settings")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mss_follows_the_mtu() {
        assert_eq!(mss_for_mtu(1500), (1460, 1440));
        assert_eq!(mss_for_mtu(9000), (8960, 8940));
        // Below the protocol minimums, the minimums; absurd MTUs stay in 16 bits.
        assert_eq!(mss_for_mtu(576), (536, 1220));
        assert_eq!(mss_for_mtu(0), (536, 1220));
        assert_eq!(mss_for_mtu(u32::MAX), (65535, 65535));
    }

    #[test]
    fn synack_modes() {
        assert_eq!(synack_mode(false, true), SYNACK_KERNEL);
        assert_eq!(synack_mode(true, true), SYNACK_TX);
        assert_eq!(synack_mode(true, false), SYNACK_XSK);
        assert_eq!(synack_name(SYNACK_XSK), "afxdp");
    }
}
