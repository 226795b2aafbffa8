//! The AF_XDP sockets and the responder threads: one socket (xdpilone, copy mode) and one
//! thread per RX queue, each registered in `FH_XSKS` at its queue index. A thread sleeps in
//! `poll` until frames arrive, answers them with its [`Responder`], transmits the answers,
//! recycles frames, and hands the flows it did not answer to the kernel through `FH_FLOWS`.

use std::{
    ffi::CString,
    num::NonZeroU32,
    ptr::NonNull,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    thread::JoinHandle,
};

use anyhow::{Context, anyhow};
use aya::{
    Ebpf,
    maps::{HashMap, MapData, XskMap},
};
use force_https_common::{FlowKey, MAP_XSKS};
use xdpilone::{IfInfo, Socket, SocketConfig, Umem, UmemConfig, xdp::XdpDesc};

use super::responder::{Outcome, Responder};
use crate::{
    edge::Edge,
    metrics::{Counter, CounterSource, Metrics},
    policy::Via,
};

/// The flow LRU, shared with the responders (which add flows they hand back to the kernel).
pub(super) type FlowMap = Arc<Mutex<HashMap<MapData, FlowKey, u32>>>;

/// UMEM frames per socket (4 KiB each).
const FRAMES: u32 = 1024;
const FRAME_SIZE: u32 = 4096;
/// Descriptors handled per loop turn.
const BATCH: u32 = 64;
/// How often a thread idle in `poll` checks whether it should stop.
const POLL_MS: i32 = 100;

#[derive(Debug, Default)]
pub struct ResponderStats {
    fin_acks: AtomicU64,
    synacks: AtomicU64,
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

impl CounterSource for ResponderStats {
    fn counters(&self, v: &mut Vec<Counter>) {
        let s = self;
        v.extend([
            (
                "afxdp_fin_acks",
                "Client FINs after a fast-path answer, ACKed by the responders.",
                s.fin_acks.load(Relaxed),
            ),
            (
                "afxdp_synacks",
                "SYN-ACKs built by XDP and transmitted by the responders (where XDP_TX frames \
                 would not reach the peer).",
                s.synacks.load(Relaxed),
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
        ]);
        if crate::allocs::INSTALLED {
            v.push((
                "afxdp_allocations",
                "Heap allocations made by the responder threads (count-allocs build only).",
                crate::allocs::allocations(),
            ));
        }
    }
}

impl Responders {
    /// Their counters.
    pub fn stats(&self) -> Arc<ResponderStats> {
        self.stats.clone()
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
pub(super) struct Area {
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
pub(super) struct Queue {
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
        let name = CString::new(interface)
            .with_context(|| format!("invalid interface name {interface:?}"))?;
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
///
/// # Errors
/// A socket cannot be created, bound or registered, or a thread cannot be started.
pub(super) fn start(
    ebpf: &mut Ebpf,
    interface: &str,
    queues: u32,
    flows: FlowMap,
    edge: &Arc<Edge>,
) -> anyhow::Result<Responders> {
    let mut xsks: XskMap<_> = XskMap::try_from(
        ebpf.map_mut(MAP_XSKS)
            .ok_or_else(|| anyhow!("map {MAP_XSKS} missing from the XDP object"))?,
    )
    .context(MAP_XSKS)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ResponderStats::default());
    let mut responders = Responders {
        stop: stop.clone(),
        threads: Vec::new(),
        stats: stats.clone(),
    };
    for q in 0..queues {
        let cfg = edge.settings();
        let responder = Responder::new(
            cfg.https_port,
            cfg.default_host.as_deref(),
            cfg.limits.max_head_bytes,
        );
        let (edge, flows, stop, stats) = (edge.clone(), flows.clone(), stop.clone(), stats.clone());
        // The UMEM is not `Send`: each thread opens its own queue and reports the socket.
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let iface = interface.to_string();
        let t = std::thread::Builder::new()
            .name(format!("fh-afxdp-{q}"))
            .spawn(move || match Queue::open(&iface, q) {
                Ok(queue) => {
                    crate::allocs::count_this_thread(true);
                    let _ = opened_tx.send(Ok(queue.fd()));
                    run(queue, responder, &edge, &flows, &stop, &stats);
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
    edge: &Edge,
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
            let table = edge.policy.table();
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
                    Outcome::Redirect { len, decision } => {
                        decision.count(Via::Xdp, &edge.metrics);
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
                    Outcome::SynAck { len } => {
                        Metrics::inc(&stats.synacks);
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
