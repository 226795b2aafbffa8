//! The AF_XDP responder: answers, without any kernel socket, the requests the XDP program
//! found eligible, by rewriting each received frame into its answer in place.
//!
//! One AF_XDP socket (xdpilone, copy mode) and one thread per RX queue of the interface; each
//! socket is put into `FH_XSKS` at its queue index. A frame in the RX ring cannot go back to
//! the kernel, so the responder must answer, and it re-derives everything the socket path
//! would: [`Responder::handle`] parses the frame ([`force_https_proto::frame`]), the head
//! (`parse_head`, `redirect_inputs`, `normalize_into`), decides with the live policy table
//! ([`crate::policy::decide`]) and writes the redirect with
//! [`force_https_proto::response::RedirectPrefix`] straight into the frame. When its decision
//! is not a redirect (the policy changed since XDP looked, or a head XDP accepted but the
//! parser does not), the frame is dropped and its flow added to `FH_FLOWS`: the client's
//! retransmission is then passed by XDP and the socket path answers, with the same bytes it
//! always sends. A bare FIN (the client closing after the answer) is answered with an ACK.
//!
//! Nothing is allocated per packet: the payload is copied into a scratch buffer owned by the
//! thread, the host is normalized into a stack buffer, and the answer is written into the
//! frame (see the allocation-counting test below).

use std::{
    ffi::CString,
    num::NonZeroU32,
    ptr::NonNull,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    thread::JoinHandle,
};

use anyhow::{Context, anyhow};
use aya::{Ebpf, maps::XskMap};
use force_https_common::{FlowKey, MAP_XSKS, MAX_HEAD};
use force_https_proto::{
    frame::{self, TcpFrame},
    head::{HeadStatus, parse_head, redirect_inputs},
    host::{MAX_HOST_LEN, normalize_into},
    response::{RedirectPrefix, RedirectStatus},
};
use xdpilone::{IfInfo, Socket, SocketConfig, Umem, UmemConfig, xdp::XdpDesc};

use crate::{
    daemon::Shared,
    metrics::{HostStats, Metrics},
    policy::{Action, PolicyTable, decide},
    xdp::FlowMap,
};

/// UMEM frames per socket (4 KiB each).
const FRAMES: u32 = 1024;
const FRAME_SIZE: u32 = 4096;
/// Descriptors handled per loop turn.
const BATCH: u32 = 64;
/// How often a thread idle in `poll` checks whether it should stop.
const POLL_MS: i32 = 100;

/// What the responder did with one frame.
#[derive(Debug)]
pub enum Outcome<'t> {
    /// The frame now holds a redirect of `len` bytes: transmit it.
    Redirect {
        /// Frame length.
        len: usize,
        /// 301 or 308.
        status: RedirectStatus,
        /// The counters of the host entry.
        stats: Option<&'t Arc<HostStats>>,
    },
    /// The frame now holds the ACK of a bare FIN: transmit it.
    FinAck {
        /// Frame length.
        len: usize,
    },
    /// Not answered here: drop the frame, pass the flow's retransmissions to the kernel.
    Fallback(FlowKey),
    /// Not a frame the responder handles: drop it.
    Drop,
}

/// The per-thread responder core: everything needed to answer a frame, preallocated.
pub struct Responder {
    /// Per status, the prefix of a redirect to the empty host on port 443: the status line and
    /// `Location: https://`. The host and `:port` are inserted after it (see
    /// [`Responder::write_redirect`]).
    prefix_301: RedirectPrefix,
    prefix_308: RedirectPrefix,
    /// `:PORT` when `redirect.https_port` is not 443, else empty.
    port_suffix: Vec<u8>,
    default_host: Option<Vec<u8>>,
    max_head: usize,
    /// The request payload, copied out of the frame before the answer overwrites it.
    scratch: Box<[u8; MAX_HEAD as usize]>,
}

impl Responder {
    /// A responder for `redirect.https_port`, `redirect.default_host` and
    /// `limits.max_head_bytes`.
    pub fn new(https_port: u16, default_host: Option<&str>, max_head: usize) -> Responder {
        // The prefixes of RedirectPrefix::new(status, host, port) are those of the empty host
        // on 443 followed by `host` and `:port`; that is checked by the tests below against
        // `response::redirect` for exact hosts, wildcard matches, IPv6 literals and ports.
        let port_suffix = if https_port == 443 {
            Vec::new()
        } else {
            format!(":{https_port}").into_bytes()
        };
        Responder {
            prefix_301: RedirectPrefix::new(RedirectStatus::Moved301, "", 443),
            prefix_308: RedirectPrefix::new(RedirectStatus::Permanent308, "", 443),
            port_suffix,
            default_host: default_host.map(|h| h.as_bytes().to_vec()),
            max_head,
            scratch: Box::new([0; MAX_HEAD as usize]),
        }
    }

    /// Writes the redirect for `host` (normalized) and `path_and_query` into `out`: exactly
    /// `RedirectPrefix::new(status, host, https_port).write(path_and_query, out)`, without
    /// building a prefix per host. `None` when it does not fit or the path is refused.
    pub fn write_redirect(
        &self,
        status: RedirectStatus,
        host: &[u8],
        path_and_query: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        let prefix = match status {
            RedirectStatus::Moved301 => &self.prefix_301,
            RedirectStatus::Permanent308 => &self.prefix_308,
        };
        let p = prefix.as_bytes().len();
        let insert = host.len() + self.port_suffix.len();
        // prefix | path | suffix, then make room for host and port after the prefix.
        let n = prefix.write(path_and_query, out)?;
        let total = n.checked_add(insert)?;
        if total > out.len() {
            return None;
        }
        out.copy_within(p..n, p + insert);
        out.get_mut(p..p + host.len())?.copy_from_slice(host);
        out.get_mut(p + host.len()..p + insert)?
            .copy_from_slice(&self.port_suffix);
        Some(total)
    }

    /// Handles one received frame (`buf[..len]`, `buf` being the whole room of its UMEM
    /// chunk), deciding with `table`. No allocation.
    pub fn handle<'t>(
        &mut self,
        table: &'t PolicyTable,
        buf: &mut [u8],
        len: usize,
    ) -> Outcome<'t> {
        let Some(frame_bytes) = buf.get(..len) else {
            return Outcome::Drop;
        };
        let Ok(req) = frame::parse(frame_bytes) else {
            return Outcome::Drop;
        };
        let flow = flow_key(frame_bytes, &req);
        if req.data_len == 0 {
            if !req.fin() {
                return Outcome::Drop;
            }
            return match frame::answer_in_place(buf, &req, |_| Some(0)) {
                Ok(len) => Outcome::FinAck { len },
                Err(_) => Outcome::Drop,
            };
        }
        let payload = req.payload(frame_bytes);
        let n = payload.len();
        let Some(dst) = self.scratch.get_mut(..n) else {
            return Outcome::Fallback(flow);
        };
        dst.copy_from_slice(payload);
        let Some(head_bytes) = self.scratch.get(..n) else {
            return Outcome::Fallback(flow);
        };
        let head = match parse_head(head_bytes, self.max_head) {
            HeadStatus::Complete(h) if h.head_len == n && !h.has_body => h,
            _ => return Outcome::Fallback(flow),
        };
        let Ok(t) = redirect_inputs(&head, self.default_host.as_deref()) else {
            return Outcome::Fallback(flow);
        };
        let mut host_buf = [0u8; MAX_HOST_LEN];
        let Ok(hl) = normalize_into(&t.authority, &mut host_buf) else {
            return Outcome::Fallback(flow);
        };
        let Some(Ok(host)) = host_buf.get(..hl).map(std::str::from_utf8) else {
            return Outcome::Fallback(flow);
        };
        let (entry, action) = decide(table, host, head.method, t.path_and_query, t.is_asterisk);
        let Action::Redirect(status) = action else {
            return Outcome::Fallback(flow);
        };
        let path = t.path_and_query;
        match frame::answer_in_place(buf, &req, |out| {
            self.write_redirect(status, host.as_bytes(), path, out)
        }) {
            Ok(len) => Outcome::Redirect {
                len,
                status,
                stats: entry.map(|e| &e.stats),
            },
            Err(_) => Outcome::Fallback(flow),
        }
    }
}

/// The flow key of a request frame, as XDP builds it.
fn flow_key(frame: &[u8], req: &TcpFrame) -> FlowKey {
    let mut key = FlowKey {
        family: if req.ipv6 { 6 } else { 4 },
        sport: req.sport.to_be_bytes(),
        dport: req.dport.to_be_bytes(),
        ..FlowKey::default()
    };
    let (s, d, n) = if req.ipv6 {
        (req.l3 + 8, req.l3 + 24, 16)
    } else {
        (req.l3 + 12, req.l3 + 16, 4)
    };
    if let (Some(src), Some(dst)) = (frame.get(s..s + n), frame.get(d..d + n)) {
        key.saddr[..n].copy_from_slice(src);
        key.daddr[..n].copy_from_slice(dst);
    }
    key
}

/// Counters of the responders (all queues).
#[derive(Debug, Default)]
pub struct ResponderStats {
    redirects_301: AtomicU64,
    redirects_308: AtomicU64,
    fin_acks: AtomicU64,
    fallbacks: AtomicU64,
    dropped: AtomicU64,
    tx_full: AtomicU64,
}

/// The running responders; stopped (threads joined, sockets closed) on drop.
pub struct Responders {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<ResponderStats>,
}

impl Responders {
    /// Their counters.
    /// Their counters: name, help, value.
    pub fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let s = &self.stats;
        let mut v = vec![
            (
                "afxdp_redirects_301",
                "Fast-path 301 redirects sent by the AF_XDP responders.",
                s.redirects_301.load(Relaxed),
            ),
            (
                "afxdp_redirects_308",
                "Fast-path 308 redirects sent by the AF_XDP responders.",
                s.redirects_308.load(Relaxed),
            ),
            (
                "afxdp_fin_acks",
                "Client FINs after a fast-path answer, ACKed by the responders.",
                s.fin_acks.load(Relaxed),
            ),
            (
                "afxdp_fallbacks",
                "Requests XDP handed over that the responder did not answer (policy changed \
                 meanwhile): dropped and their flow left to the kernel, which gets the \
                 client's retransmission.",
                s.fallbacks.load(Relaxed),
            ),
            (
                "afxdp_dropped",
                "Frames the responder could not parse, dropped.",
                s.dropped.load(Relaxed),
            ),
            (
                "afxdp_tx_ring_full",
                "Batches whose answers had to wait because the TX ring was full (the interface \
                 or its peer is not draining it); they are sent later, not dropped.",
                s.tx_full.load(Relaxed),
            ),
        ];
        if crate::allocs::INSTALLED {
            v.push((
                "afxdp_allocations",
                "Heap allocations made by the responder threads (count-allocs build only).",
                crate::allocs::allocations(),
            ));
        }
        v
    }
}

impl Drop for Responders {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Page-aligned anonymous memory for a UMEM; unmapped on drop.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: plain memory owned by one queue; frames are only touched by that queue's thread.
unsafe impl Send for Area {}

impl Area {
    fn new(len: usize) -> anyhow::Result<Area> {
        // SAFETY: anonymous private mapping, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("cannot map the UMEM");
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| anyhow!("mmap returned NULL"))?;
        Ok(Area { ptr, len })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; every socket using it is closed by now (fields
        // drop in declaration order and `Queue::area` is last).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One RX queue's socket and rings.
struct Queue {
    queue: u32,
    rx: xdpilone::RingRx,
    tx: xdpilone::RingTx,
    device: xdpilone::DeviceQueue,
    _user: xdpilone::User,
    _umem: Umem,
    area: Area,
}

fn errno(e: xdpilone::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.get_raw().abs())
}

impl Queue {
    fn open(interface: &str, queue: u32) -> anyhow::Result<Queue> {
        let area = Area::new((FRAMES * FRAME_SIZE) as usize)?;
        let slice = NonNull::slice_from_raw_parts(area.ptr, area.len);
        let config = UmemConfig {
            fill_size: FRAMES,
            complete_size: FRAMES,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: page-aligned mapping of FRAMES * FRAME_SIZE bytes that outlives the UMEM
        // (see `Area`).
        let umem = unsafe { Umem::new(config, slice) }
            .map_err(errno)
            .context("cannot register the UMEM (AF_XDP)")?;
        let name = CString::new(interface)?;
        let mut info = IfInfo::invalid();
        info.from_name(&name)
            .map_err(errno)
            .with_context(|| format!("no interface {interface:?}"))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem)
            .map_err(errno)
            .context("cannot create the AF_XDP socket")?;
        let mut device = umem
            .fq_cq(&sock)
            .map_err(errno)
            .context("cannot map the fill/completion rings")?;
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(FRAMES),
                    tx_size: NonZeroU32::new(FRAMES),
                    bind_flags: SocketConfig::XDP_BIND_COPY | SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(errno)
            .context("cannot create the rx/tx rings")?;
        let rx = user
            .map_rx()
            .map_err(errno)
            .context("cannot map the rx ring")?;
        let tx = user
            .map_tx()
            .map_err(errno)
            .context("cannot map the tx ring")?;
        umem.bind(&user).map_err(errno).with_context(|| {
            format!("cannot bind the AF_XDP socket to {interface} queue {queue}")
        })?;
        // Every frame starts in the fill ring.
        {
            let mut fill = device.fill(FRAMES);
            let n = fill.insert((0..FRAMES).map(|i| u64::from(i * FRAME_SIZE)));
            fill.commit();
            if n != FRAMES {
                return Err(anyhow!("fill ring took only {n} of {FRAMES} frames"));
            }
        }
        Ok(Queue {
            queue,
            rx,
            tx,
            device,
            _user: user,
            _umem: umem,
            area,
        })
    }

    fn fd(&self) -> i32 {
        self.rx.as_raw_fd()
    }

    /// The bytes from `addr` to the end of its chunk.
    ///
    /// # Safety
    /// `addr` must come from this queue's RX ring (so the kernel is done with the chunk and no
    /// other reference to it exists).
    unsafe fn chunk(&mut self, addr: u64) -> Option<&mut [u8]> {
        let addr = usize::try_from(addr).ok()?;
        let end = (addr / FRAME_SIZE as usize + 1) * FRAME_SIZE as usize;
        if end > self.area.len {
            return None;
        }
        // SAFETY: in bounds of the mapping (checked), exclusively ours per the contract.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.area.ptr.as_ptr().add(addr), end - addr)
        })
    }
}

/// Hands the TX ring to the kernel. In copy mode every `sendto()` transmits at most 32
/// descriptors (the kernel's TX batch), so wake it until the ring is drained (bounded): an
/// answer left in the ring would wait for the next request, and the frames it holds would
/// starve the fill ring.
fn flush_tx(q: &mut Queue) {
    for _ in 0..(FRAMES / 32 + 1) {
        if q.tx.pending() == 0 {
            break;
        }
        q.tx.wake();
    }
}

/// Opens one AF_XDP socket per RX queue, registers them in `FH_XSKS` and starts a responder
/// thread for each.
pub fn start(
    ebpf: &mut Ebpf,
    interface: &str,
    queues: u32,
    flows: FlowMap,
    shared: &Arc<Shared>,
) -> anyhow::Result<Responders> {
    let mut xsks: XskMap<_> = XskMap::try_from(
        ebpf.map_mut(MAP_XSKS)
            .ok_or_else(|| anyhow!("map {MAP_XSKS} missing from the XDP object"))?,
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ResponderStats::default());
    let mut responders = Responders {
        stop: stop.clone(),
        threads: Vec::new(),
        stats: stats.clone(),
    };
    for q in 0..queues {
        let cfg = &shared.config;
        let responder = Responder::new(
            cfg.https_port,
            cfg.default_host.as_deref(),
            cfg.limits.max_head_bytes,
        );
        let (shared, flows, stop, stats) =
            (shared.clone(), flows.clone(), stop.clone(), stats.clone());
        // The UMEM is not `Send`: each thread opens its own queue and reports the socket.
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let iface = interface.to_string();
        let t = std::thread::Builder::new()
            .name(format!("fh-afxdp-{q}"))
            .spawn(move || match Queue::open(&iface, q) {
                Ok(queue) => {
                    crate::allocs::count_this_thread(true);
                    let _ = opened_tx.send(Ok(queue.fd()));
                    run(queue, responder, &shared, &flows, &stop, &stats);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .context("cannot start a responder thread")?;
        responders.threads.push(t);
        let fd = opened_rx
            .recv()
            .map_err(|_| anyhow!("the responder thread of queue {q} died"))??;
        xsks.set(q, fd, 0).with_context(|| {
            format!("cannot put the AF_XDP socket of queue {q} into {MAP_XSKS}")
        })?;
    }
    tracing::info!(interface, queues, "AF_XDP responders running (copy mode)");
    Ok(responders)
}

/// One queue's loop: answer what arrives, recycle frames, until `stop`.
fn run(
    mut q: Queue,
    mut responder: Responder,
    shared: &Shared,
    flows: &FlowMap,
    stop: &AtomicBool,
    stats: &ResponderStats,
) {
    let mut recycle: Vec<u64> = Vec::with_capacity(FRAMES as usize);
    // Answers not yet in the TX ring: kept (with their frames) until it has room, so a full
    // ring delays an answer instead of losing it.
    let mut to_send: Vec<XdpDesc> = Vec::with_capacity(FRAMES as usize);
    let mut fallbacks: Vec<FlowKey> = Vec::with_capacity(BATCH as usize);
    while !stop.load(Relaxed) {
        let mut pfd = libc::pollfd {
            fd: q.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Sleep until a request arrives; only briefly while answers wait to be sent (poll
        // itself kicks copy-mode transmission).
        let timeout = if q.tx.pending() > 0 || !to_send.is_empty() {
            1
        } else {
            POLL_MS
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout) };
        if q.tx.pending() > 0 {
            flush_tx(&mut q);
        }

        // Transmitted frames come back for reuse.
        {
            let mut done = q.device.complete(FRAMES);
            while let Some(addr) = done.read() {
                recycle.push(addr);
            }
            done.release();
        }

        // Requests.
        {
            let table = shared.policy.table();
            let mut descs = [XdpDesc {
                addr: 0,
                len: 0,
                options: 0,
            }; BATCH as usize];
            let mut count = 0;
            // While answers wait for the TX ring, take no new requests (they stay in the RX
            // ring, and beyond it the kernel drops: back-pressure, not lost answers).
            let room = if to_send.len() >= (FRAMES / 2) as usize {
                0
            } else {
                BATCH
            };
            {
                let mut rx = q.rx.receive(room);
                while let Some(d) = rx.read() {
                    if let Some(slot) = descs.get_mut(count) {
                        *slot = d;
                        count += 1;
                    }
                }
                rx.release();
            }
            for d in descs.iter().take(count) {
                // SAFETY: the descriptor comes from our RX ring.
                let Some(buf) = (unsafe { q.chunk(d.addr) }) else {
                    continue;
                };
                match responder.handle(&table, buf, d.len as usize) {
                    Outcome::Redirect {
                        len,
                        status,
                        stats: host,
                    } => {
                        if let Some(h) = host {
                            Metrics::inc(&h.redirects);
                        }
                        Metrics::inc(match status {
                            RedirectStatus::Moved301 => &stats.redirects_301,
                            RedirectStatus::Permanent308 => &stats.redirects_308,
                        });
                        to_send.push(XdpDesc {
                            addr: d.addr,
                            len: len as u32,
                            options: 0,
                        });
                    }
                    Outcome::FinAck { len } => {
                        Metrics::inc(&stats.fin_acks);
                        to_send.push(XdpDesc {
                            addr: d.addr,
                            len: len as u32,
                            options: 0,
                        });
                    }
                    Outcome::Fallback(key) => {
                        Metrics::inc(&stats.fallbacks);
                        fallbacks.push(key);
                        recycle.push(d.addr);
                    }
                    Outcome::Drop => {
                        Metrics::inc(&stats.dropped);
                        recycle.push(d.addr);
                    }
                }
            }
        }
        // Answers.
        if !to_send.is_empty() {
            let mut tx = q.tx.transmit(to_send.len() as u32);
            let sent = tx.insert(to_send.iter().copied()) as usize;
            tx.commit();
            drop(tx);
            if sent < to_send.len() {
                Metrics::inc(&stats.tx_full);
            }
            to_send.drain(..sent);
            flush_tx(&mut q);
        }

        // Hand the flows we did not answer back to the kernel (rare: a policy change racing
        // the map update, or a head the parser refuses).
        if !fallbacks.is_empty() {
            let mut map = flows.lock().unwrap_or_else(|p| p.into_inner());
            for k in fallbacks.drain(..) {
                let _ = map.insert(k, 1, 0);
            }
        }

        if !recycle.is_empty() {
            let mut fill = q.device.fill(recycle.len() as u32);
            let n = fill.insert(recycle.iter().copied()) as usize;
            fill.commit();
            drop(fill);
            recycle.drain(..n);
        }
        if q.device.needs_wakeup() {
            q.device.wake();
        }
    }
    tracing::debug!(queue = q.queue, "AF_XDP responder stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use force_https_proto::response::redirect;
    use std::path::Path;

    #[global_allocator]
    static GLOBAL: crate::allocs::Counting = crate::allocs::Counting;

    fn table(dir: &Path) -> PolicyTable {
        let text = format!(
            r#"
[state]
dir = "{}"
[[site]]
name = "shop"
domains = ["shop.example.com", "*.shop.example.com", "[2001:db8::1]"]
force_https = true
[[site]]
name = "static"
domains = ["x.shop.example.com"]
redirect_code = 308
force_https = true
[[site]]
name = "blog"
domains = ["blog.example.com"]
backend = "http://127.0.0.1:1"
"#,
            dir.display()
        );
        let cfg = Config::from_toml(Path::new("t.toml"), &text).unwrap();
        let sites: Vec<_> = cfg.sites.iter().cloned().map(Arc::new).collect();
        PolicyTable::build(&sites, &Default::default())
    }

    /// An Ethernet + IP + TCP (timestamps) frame carrying `payload`, in a 4 KiB buffer.
    fn frame(v6: bool, payload: &[u8], flags: u8) -> (Vec<u8>, usize) {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        let tcp_len = 32 + payload.len();
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 198, 51, 100, 2, 198, 51, 100, 1]);
        }
        f.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 0, 0, 10, 0, 0, 0, 20, 0x80, flags]);
        f.extend_from_slice(&[1, 0, 0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        f.extend_from_slice(payload);
        let len = f.len();
        f.resize(4096, 0);
        (f, len)
    }

    fn payload_of(buf: &[u8], len: usize) -> Vec<u8> {
        let f = frame::parse(&buf[..len]).unwrap();
        f.payload(&buf[..len]).to_vec()
    }

    #[test]
    fn redirect_bytes_match_the_builder() {
        let r = Responder::new(443, None, 16384);
        let r8 = Responder::new(8443, None, 16384);
        for host in [
            "shop.example.com",
            "a.shop.example.com",
            "[2001:db8::1]",
            "h",
        ] {
            for path in [&b"/"[..], b"/a%20b?x=1&y", b"?q", b""] {
                for status in [RedirectStatus::Moved301, RedirectStatus::Permanent308] {
                    for (resp, port) in [(&r, 443), (&r8, 8443)] {
                        let mut out = [0u8; 600];
                        let n = resp
                            .write_redirect(status, host.as_bytes(), path, &mut out)
                            .unwrap();
                        assert_eq!(&out[..n], &redirect(status, host, port, path).unwrap()[..]);
                        let exact = RedirectPrefix::new(status, host, port).response_len(path);
                        assert_eq!(n, exact);
                        // One byte short is refused.
                        let mut short = vec![0u8; exact - 1];
                        assert_eq!(
                            resp.write_redirect(status, host.as_bytes(), path, &mut short),
                            None
                        );
                    }
                }
            }
        }
        let mut out = [0u8; 600];
        assert_eq!(
            r.write_redirect(RedirectStatus::Moved301, b"h", b"/a b", &mut out),
            None
        );
    }

    #[test]
    fn answers_like_the_socket_path() {
        let d = tempfile::tempdir().unwrap();
        let t = table(d.path());
        let mut r = Responder::new(443, None, 16384);
        use RedirectStatus::{Moved301, Permanent308};
        type Want = Option<(RedirectStatus, &'static str, &'static [u8])>;
        let cases: &[(&[u8], Want)] = &[
            (
                b"GET /a?b HTTP/1.1\r\nHost: Shop.Example.com.\r\n\r\n",
                Some((Moved301, "shop.example.com", b"/a?b")),
            ),
            (
                b"HEAD / HTTP/1.1\r\nHost: a.shop.example.com:80\r\n\r\n",
                Some((Moved301, "a.shop.example.com", b"/")),
            ),
            (
                b"POST /p HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 0\r\n\r\n",
                Some((Permanent308, "shop.example.com", b"/p")),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x.shop.example.com\r\n\r\n",
                Some((Permanent308, "x.shop.example.com", b"/")),
            ),
            (
                b"GET / HTTP/1.0\r\nHost: [2001:DB8::1]\r\n\r\n",
                Some((Moved301, "[2001:db8::1]", b"/")),
            ),
            (b"GET / HTTP/1.1\r\nHost: blog.example.com\r\n\r\n", None),
            (b"GET / HTTP/1.1\r\nHost: nope.example.com\r\n\r\n", None),
            (
                b"GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: shop.example.com\r\n\r\n",
                None,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: shop.example.com\r\nHost: shop.example.com\r\n\r\n",
                None,
            ),
            (b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n", None),
            (b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\nGET", None),
        ];
        for v6 in [false, true] {
            for (req, want) in cases {
                let (mut buf, len) = frame(v6, req, 0x18);
                match (r.handle(&t, &mut buf, len), want) {
                    (Outcome::Redirect { len, status, .. }, Some((s, host, path))) => {
                        assert_eq!(status, *s);
                        assert!(frame::checksums_ok(&buf[..len]));
                        let p = payload_of(&buf, len);
                        assert_eq!(p, redirect(*s, host, 443, path).unwrap());
                    }
                    (Outcome::Fallback(k), None) => {
                        assert_eq!(k.family, if v6 { 6 } else { 4 });
                        assert_eq!(k.sport, 40000u16.to_be_bytes());
                        assert_eq!(k.dport, 80u16.to_be_bytes());
                    }
                    (o, w) => panic!(
                        "{:?}: got {o:?}, wanted {w:?}",
                        String::from_utf8_lossy(req)
                    ),
                }
            }
        }
        // A bare FIN gets an ACK, a bare ACK is dropped.
        let (mut buf, len) = frame(false, b"", 0x11);
        assert!(matches!(
            r.handle(&t, &mut buf, len),
            Outcome::FinAck { .. }
        ));
        let (mut buf, len) = frame(false, b"", 0x10);
        assert!(matches!(r.handle(&t, &mut buf, len), Outcome::Drop));
        // Garbage is dropped.
        let mut junk = vec![0u8; 100];
        assert!(matches!(r.handle(&t, &mut junk, 100), Outcome::Drop));
    }

    #[test]
    fn no_allocation_per_frame() {
        let d = tempfile::tempdir().unwrap();
        let t = table(d.path());
        let mut r = Responder::new(8443, None, 16384);
        let reqs: [&[u8]; 4] = [
            b"GET /a/b?c=d HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
            b"POST /p HTTP/1.1\r\nHost: Z9.Shop.Example.COM.\r\nContent-Length: 0\r\n\r\n",
            b"HEAD /%7Euser HTTP/1.0\r\nHost: [2001:db8::1]:80\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: nope.example.com\r\n\r\n",
        ];
        let mut frames: Vec<(Vec<u8>, usize)> = Vec::new();
        for i in 0..256 {
            frames.push(frame(i % 2 == 0, reqs[i % reqs.len()], 0x18));
        }
        frames.push(frame(false, b"", 0x11));
        let mut work: Vec<Vec<u8>> = frames.iter().map(|(f, _)| f.clone()).collect();
        // Warm up once (thread-locals of the allocator-free paths).
        let _ = r.handle(&t, &mut work[0].clone(), frames[0].1);
        use crate::allocs::{allocations, count_this_thread};
        let start = allocations();
        count_this_thread(true);
        let mut answered = 0;
        for _round in 0..4 {
            for (i, (orig, len)) in frames.iter().enumerate() {
                let buf = &mut work[i];
                buf.copy_from_slice(orig);
                match r.handle(&t, buf, *len) {
                    Outcome::Redirect { .. } | Outcome::FinAck { .. } => answered += 1,
                    Outcome::Fallback(_) | Outcome::Drop => {}
                }
            }
        }
        count_this_thread(false);
        assert_eq!(allocations() - start, 0, "allocations during the burst");
        // The counter does count.
        count_this_thread(true);
        let v = std::hint::black_box(vec![0u8; 64]);
        count_this_thread(false);
        drop(v);
        assert_eq!(allocations() - start, 1);
        assert_eq!(answered, 4 * (192 + 1));
    }
}
