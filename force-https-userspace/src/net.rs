//! Listener plumbing shared by every accept loop (port 80, TLS, control socket, admin HTTP):
//! binding with the options an edge needs, accepting with back-off when the process is out
//! of descriptors, and driving a hyper connection until it ends, the daemon drains, or its
//! client goes quiet.
//!
//! A leaf module: it knows sockets, not requests.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use anyhow::Context;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::watch,
};

/// Turns `true` once when the daemon stops accepting and starts draining.
pub type Shutdown = watch::Receiver<bool>;

/// First pause after a failed `accept` (EMFILE, ENFILE, ENOBUFS...); doubled on every
/// consecutive failure up to [`ACCEPT_BACKOFF_MAX`], reset by a successful accept.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between two `accept` attempts while they keep failing.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Binds a TCP listener with the options every edge listener needs: `SO_REUSEADDR`,
/// `IPV6_V6ONLY` for IPv6 addresses (so `[::]:80` and `0.0.0.0:80` bind side by side), and a
/// backlog of 4096.
///
/// # Errors
/// The address cannot be bound (in use, not local, no permission for a port below 1024).
pub fn bind_tcp(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let what = || format!("cannot listen on {addr}");
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .with_context(what)?;
    sock.set_reuse_address(true).with_context(what)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true).with_context(what)?;
    }
    sock.set_nonblocking(true).with_context(what)?;
    sock.bind(&addr.into()).with_context(what)?;
    sock.listen(4096).with_context(what)?;
    TcpListener::from_std(sock.into()).with_context(what)
}

/// Sets `TCP_USER_TIMEOUT` on a client-facing listener; the connections it accepts inherit
/// it, so this costs no system call per connection. A connection whose client takes no data
/// for `timeout` (its receive window stays zero while a response waits, or what was sent stays
/// unacknowledged) is then aborted by the kernel, and the write waiting on it fails, which
/// ends the exchange and lets its backend connection go. nginx's `send_timeout` and HAProxy's
/// `timeout client` bound a client that stopped reading the same way; without it, one held
/// its connection, a `max_connections` slot and a backend connection for good.
///
/// # Errors
/// The kernel refused the option (not expected on Linux since 2.6.37).
pub fn set_user_timeout(listener: &TcpListener, timeout: Duration) -> anyhow::Result<()> {
    socket2::SockRef::from(listener)
        .set_tcp_user_timeout(Some(timeout))
        .context("cannot set TCP_USER_TIMEOUT")
}

/// A listening socket [`accept_loop`] can drive.
pub trait Listener: Send + 'static {
    /// The accepted stream.
    type Stream: Send + 'static;
    /// The peer's address.
    type Addr: Send + 'static;
    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    type Addr = SocketAddr;
    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// A TCP listener whose accepted sockets are not registered with the runtime: each comes as a
/// non-blocking `std` socket, which the port-80 path answers without a task when the request
/// is already there, and registers (`tokio::net::TcpStream::from_std`) only when it must wait.
/// Registration costs an `epoll_ctl` to add the socket and another to remove it.
pub struct Unregistered(tokio::io::unix::AsyncFd<std::net::TcpListener>);

impl Unregistered {
    /// The listener, taken from the runtime's registration into its own.
    ///
    /// # Errors
    /// The listener cannot be registered again (out of memory or descriptors).
    pub fn new(listener: TcpListener) -> io::Result<Unregistered> {
        use tokio::io::{Interest, unix::AsyncFd};
        // SAFETY: the std listener owns its descriptor, and the AsyncFd owns the listener
        // until it is dropped: the descriptor stays open and the same all that time.
        let fd =
            unsafe { AsyncFd::register_with_interest(listener.into_std()?, Interest::READABLE) };
        fd.map(Unregistered).map_err(io::Error::from)
    }
}

/// `accept4` on `listener`: the new socket non-blocking and close-on-exec, and its peer.
fn accept_nonblocking(
    listener: &std::net::TcpListener,
) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: accept4 writes at most `len` bytes of address into `storage` (a
    // sockaddr_storage, large enough for any address) and sets `len`.
    let (fd, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                listener.as_raw_fd(),
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })?
    };
    // SAFETY: `fd` is a connected socket just accepted, owned by nobody else.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let peer = addr
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "accept: not an IP address"))?;
    Ok((stream, peer))
}

impl Listener for Unregistered {
    type Stream = std::net::TcpStream;
    type Addr = SocketAddr;
    async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        // Each accept counts against the task's budget: a loop that answers its connections
        // itself, while more keep coming, still yields to the other tasks and to the I/O
        // driver every so often.
        tokio::task::consume_budget().await;
        loop {
            let mut ready = self.0.readable().await?;
            if let Ok(accepted) = ready.try_io(|l| accept_nonblocking(l.get_ref())) {
                return accepted;
            }
        }
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;
    fn accept(
        &self,
    ) -> impl Future<Output = io::Result<(UnixStream, tokio::net::unix::SocketAddr)>> + Send {
        UnixListener::accept(self)
    }
}

/// Whether an `accept` error means the process or system is out of a resource (descriptors,
/// buffers, memory): only then is it worth waiting before the next attempt. Errors of one
/// connection (ECONNABORTED, EPROTO, EPERM from a firewall...) are retried at once.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accepts connections and hands each to `on_accept` until `shutdown` turns true (or its
/// sender is gone). When `accept` fails for lack of descriptors or memory, the failure is
/// logged once per series and retried after a pause that doubles from
/// [`ACCEPT_BACKOFF_MIN`] to [`ACCEPT_BACKOFF_MAX`], so an exhausted process sleeps instead of
/// spinning (a shutdown ends the pause); the first success resets it. Other errors concern one
/// connection and are retried at once.
pub async fn accept_loop<L: Listener>(
    listener: L,
    what: &'static str,
    mut shutdown: Shutdown,
    mut on_accept: impl FnMut(L::Stream, L::Addr),
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut failures: u64 = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            c = shutdown.changed() => {
                if c.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
        };
        match accepted {
            Ok((stream, addr)) => {
                if failures > 0 {
                    tracing::info!(failures, "accepting on the {what} again");
                }
                failures = 0;
                backoff = ACCEPT_BACKOFF_MIN;
                on_accept(stream, addr);
            }
            Err(e) if is_exhaustion(&e) => {
                if failures == 0 {
                    tracing::warn!("accept on the {what} failed: {e}; backing off");
                }
                failures += 1;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
            Err(e) => tracing::debug!("accept on the {what}: {e}"),
        }
    }
}

/// Drives a hyper server connection to its end; when `shutdown` turns true (or already is),
/// asks it to finish gracefully with `graceful` (hyper's connection types each have an
/// inherent `graceful_shutdown`): in-flight requests complete, no new ones are read.
///
/// The caller pins the connection (`std::pin::pin!`) where it builds it, so that its state
/// (2.8 KB for a TLS connection) is stored once: taken by value and pinned here, it was held
/// twice in the connection's task, the argument and its pinned copy (run P).
///
/// # Errors
/// The connection's own error (I/O, protocol).
pub async fn serve_connection<C, E>(
    mut conn: Pin<&mut C>,
    mut shutdown: Shutdown,
    graceful: fn(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut draining = *shutdown.borrow();
    if draining {
        graceful(conn.as_mut());
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            c = shutdown.changed(), if !draining => {
                if c.is_err() || *shutdown.borrow() {
                    draining = true;
                    graceful(conn.as_mut());
                }
            }
        }
    }
}

/// A connection's byte stream that notes every read that brought bytes from the client, for
/// [`serve_until_idle`]. Writes pass through untouched; the note is one relaxed store.
pub struct ReadActivity<T> {
    inner: T,
    seen: Arc<AtomicBool>,
}

impl<T> ReadActivity<T> {
    /// Wraps `inner`; the flag turns `true` at each read of one byte or more.
    pub fn new(inner: T) -> (ReadActivity<T>, Arc<AtomicBool>) {
        let seen = Arc::new(AtomicBool::new(false));
        (
            ReadActivity {
                inner,
                seen: seen.clone(),
            },
            seen,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadActivity<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.seen.store(true, Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadActivity<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How often, per `idle` period, [`serve_until_idle`] looks at its connection's read flag: a
/// quiet client is noticed between `idle` and `idle × (1 + 1/IDLE_CHECKS)` after its last byte.
const IDLE_CHECKS: u32 = 4;

/// Drives a hyper server connection like [`serve_connection`], and also ends it when its
/// client goes quiet: once `idle` has passed with no byte read (`seen`, from
/// [`ReadActivity`]), `on_idle` is called and the connection is asked to finish gracefully
/// (HTTP/2: `GOAWAY`, the open streams finish; a connection still waiting for the first bytes
/// that choose its protocol ends at once). If its client then sends nothing for as long
/// again, the connection is dropped: a client that never sends HTTP/2's preface, or ignores
/// `GOAWAY`, holds it for at most twice `idle`. Any byte from the client restarts the count,
/// so a live client with requests open (which answers the HTTP/2 `PING`s the caller sends
/// more often than `idle`) is never cut.
///
/// # Errors
/// The connection's own error (I/O, protocol).
pub async fn serve_until_idle<C, E>(
    mut conn: Pin<&mut C>,
    mut shutdown: Shutdown,
    graceful: fn(Pin<&mut C>),
    seen: &AtomicBool,
    idle: Duration,
    on_idle: impl FnOnce(),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut draining = *shutdown.borrow();
    if draining {
        graceful(conn.as_mut());
    }
    let tick = (idle / IDLE_CHECKS).max(Duration::from_millis(1));
    let mut checks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Checks in a row that found no byte read since the one before.
    let mut quiet = 0;
    let mut on_idle = Some(on_idle);
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            c = shutdown.changed(), if !draining => {
                if c.is_err() || *shutdown.borrow() {
                    draining = true;
                    graceful(conn.as_mut());
                }
            }
            _ = checks.tick() => {
                if seen.swap(false, Relaxed) {
                    quiet = 0;
                    continue;
                }
                quiet += 1;
                if quiet < IDLE_CHECKS {
                    continue;
                }
                quiet = 0;
                match on_idle.take() {
                    Some(f) => {
                        f();
                        graceful(conn.as_mut());
                    }
                    // Quiet for a second period after the graceful end began: drop it.
                    None => return Ok(()),
                }
            }
        }
    }
}

/// The instant `d` from now, for a timeout taken from the configuration: a duration past
/// what the clock can hold is about 30 years, as `tokio::time::timeout` treats it, instead of
/// the panic of `Instant + Duration`.
pub fn deadline_after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// One timer reused for a series of deadlines (a connection's request heads, a backend
/// connection's responses), each no earlier than the one before as a rule. It is made at the
/// first wait and moved only when it fires before the deadline waited for (or is set later
/// than it): a timer per wait, as `tokio::time::timeout` makes, enters tokio's timer wheel and
/// leaves it again every time (about 350 instructions a request, BENCHMARKS.md run Y).
#[derive(Default)]
pub struct Deadline(Option<Pin<Box<tokio::time::Sleep>>>);

impl Deadline {
    /// No timer yet.
    pub fn new() -> Deadline {
        Deadline(None)
    }

    /// Completes at `deadline` (at once when it has passed). Cancel-safe: dropped before
    /// then, the timer stays for the next wait.
    pub async fn until(&mut self, deadline: tokio::time::Instant) {
        let timer = self
            .0
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        loop {
            timer.as_mut().await;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            // Set for an earlier deadline: moved to this one.
            timer.as_mut().reset(deadline);
        }
    }
}

/// A runtime on tokio's paused clock, for unit tests: it jumps to the next timer whenever
/// every task waits, so the durations tests measure are exact.
#[cfg(test)]
pub(crate) fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that never ends by itself; after `graceful`, it ends if `ends_on_graceful`.
    struct Conn {
        graceful: u32,
        ends_on_graceful: bool,
    }

    impl Future for Conn {
        type Output = Result<(), ()>;
        fn poll(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Result<(), ()>> {
            if self.graceful > 0 && self.ends_on_graceful {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
    }

    fn graceful(c: Pin<&mut Conn>) {
        c.get_mut().graceful += 1;
    }

    use crate::net::paused_runtime as rt;

    #[test]
    fn a_deadline_too_far_to_add_is_decades_away() {
        rt().block_on(async {
            let now = tokio::time::Instant::now();
            let far = deadline_after(Duration::MAX);
            assert!(far - now >= Duration::from_secs(86_400 * 365 * 30));
            assert_eq!(
                deadline_after(Duration::from_secs(5)) - now,
                Duration::from_secs(5)
            );
            // A timer for it waits, as for any other.
            let waited =
                tokio::time::timeout(Duration::from_secs(1), Deadline::new().until(far)).await;
            assert!(waited.is_err());
        });
    }

    #[test]
    fn a_deadline_timer_serves_later_and_earlier_deadlines() {
        rt().block_on(async {
            use tokio::time::{Instant, sleep};
            let start = Instant::now();
            let mut d = Deadline::new();
            // The first deadline: reached on time.
            d.until(start + Duration::from_secs(1)).await;
            assert_eq!(start.elapsed(), Duration::from_secs(1));
            // A later one, after the timer fired: moved, not ended early.
            d.until(start + Duration::from_secs(3)).await;
            assert_eq!(start.elapsed(), Duration::from_secs(3));
            // A wait given up before its deadline (a response came) keeps the timer for the
            // next, later deadline, which is not cut short by the old one.
            let given_up = tokio::time::timeout(
                Duration::from_millis(500),
                d.until(start + Duration::from_secs(4)),
            )
            .await;
            assert!(given_up.is_err());
            sleep(Duration::from_millis(900)).await; // now 4.4 s: the old 4 s has passed
            d.until(start + Duration::from_millis(5400)).await;
            assert_eq!(start.elapsed(), Duration::from_millis(5400));
            // An earlier deadline than the timer's (a shorter timeout after a reload).
            let mut d = Deadline::new();
            let given_up = tokio::time::timeout(
                Duration::from_millis(100),
                d.until(Instant::now() + Duration::from_secs(60)),
            )
            .await;
            assert!(given_up.is_err());
            let t = Instant::now();
            d.until(t + Duration::from_secs(2)).await;
            assert_eq!(t.elapsed(), Duration::from_secs(2));
            // A deadline already passed: at once.
            let t = Instant::now();
            d.until(t - Duration::from_secs(1)).await;
            assert_eq!(t.elapsed(), Duration::ZERO);
        });
    }

    const IDLE: Duration = Duration::from_millis(80);

    /// Runs a [`Conn`] under [`serve_until_idle`] while a task sets the read flag every
    /// `every` for `feeding`; returns how long it ran, how many times it was idle, and its
    /// `graceful` calls.
    fn run(ends_on_graceful: bool, every: Duration, feeding: Duration) -> (Duration, u32, u32) {
        let mut conn = Conn {
            graceful: 0,
            ends_on_graceful,
        };
        rt().block_on(async {
            let (_tx, rx) = watch::channel(false);
            let seen = Arc::new(AtomicBool::new(false));
            let feeder = {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let start = tokio::time::Instant::now();
                    while start.elapsed() < feeding {
                        seen.store(true, Relaxed);
                        tokio::time::sleep(every).await;
                    }
                })
            };
            let mut idles = 0;
            let start = tokio::time::Instant::now();
            let r = serve_until_idle(Pin::new(&mut conn), rx, graceful, &seen, IDLE, || {
                idles += 1
            })
            .await;
            feeder.abort();
            assert_eq!(r, Ok(()));
            (start.elapsed(), idles, conn.graceful)
        })
    }

    #[test]
    fn a_quiet_connection_is_asked_to_end_then_dropped() {
        let (took, idles, graceful) = run(false, IDLE, Duration::ZERO);
        assert_eq!((idles, graceful), (1, 1));
        // Two idle periods, each noticed at a check.
        assert_eq!(took, IDLE * 2);
    }

    #[test]
    fn a_connection_that_ends_gracefully_is_not_held_longer() {
        let (took, idles, graceful) = run(true, IDLE, Duration::ZERO);
        assert_eq!((idles, graceful), (1, 1));
        assert_eq!(took, IDLE);
    }

    #[test]
    fn bytes_from_the_client_restart_the_count() {
        // A byte every quarter period for five periods: the connection stays; it ends one
        // idle period after the bytes stop.
        let feeding = IDLE * 5;
        let (took, idles, _) = run(true, IDLE / 4, feeding);
        assert_eq!(idles, 1);
        // Noticed between one period and a check more after the last byte.
        assert!(took >= feeding + IDLE - IDLE / 4, "{took:?}");
        assert!(took <= feeding + IDLE + IDLE / 4, "{took:?}");
    }
}
