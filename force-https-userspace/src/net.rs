//! Listener plumbing shared by every accept loop (port 80, TLS, control socket, admin HTTP):
//! binding with the options an edge needs, accepting with back-off when the process is out
//! of descriptors, and driving a hyper connection until it ends or the daemon drains.
//!
//! A leaf module: it knows sockets, not requests.

use std::{future::Future, io, net::SocketAddr, pin::Pin, time::Duration};

use anyhow::Context;
use tokio::{
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
