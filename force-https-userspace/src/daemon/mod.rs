//! The daemon: wiring only. It builds every part from the config, owns their lifetimes
//! (listeners, the fast path, the admin service) and the signals: SIGTERM/SIGINT stop
//! accepting and drain, SIGHUP reloads the configuration (`crate::reload`).
//!
//! Order at start: the policy table (state files), certificates, every listener bound, then
//! the XDP fast path (which reads the table), then accepting. At exit: stop accepting, drain
//! connections up to `limits.drain_timeout_ms`, then stop the fast path (detaching the
//! program and restoring `tcp_syncookies`).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{
    access_log::AccessLog,
    admin::{self, Admin},
    config::Config,
    edge::Edge,
    fleet::Fleet,
    metrics::CounterSource,
    net::{bind_tcp, set_user_timeout},
    paths::{
        http80,
        tls::{self, CertStore, TlsPath},
        xdp::FastPath,
    },
    proxy::Proxy,
    reload::Reloader,
};

/// Tells systemd (`$NOTIFY_SOCKET`, Type=notify) about the daemon's state; nothing without it.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Pings the systemd watchdog (`WatchdogSec=`) every `every` while the runtime is alive.
async fn watchdog(every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        notify(&[sd_notify::NotifyState::Watchdog]);
    }
}

/// Connections open at the peak of a burst before its memory is worth giving back.
#[cfg(target_env = "gnu")]
const TRIM_MIN_PEAK: usize = 256;

/// Gives the memory of a burst of connections back to the kernel once most of them are gone:
/// glibc keeps freed heap mapped (in every thread's arena), so a few thousand slow clients
/// would otherwise leave the daemon's RSS at their peak for good. Every 2 s, when the open
/// connections fell to a quarter of the period's peak (of at least [`TRIM_MIN_PEAK`]), calls
/// `malloc_trim(0)`; the peak is tracked on every accept (`Edge::admit`), so short bursts count.
#[cfg(target_env = "gnu")]
async fn trim_after_bursts(edge: Arc<Edge>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peak = 0;
    loop {
        tick.tick().await;
        peak = peak.max(edge.take_peak());
        let now = edge.active_connections();
        if peak >= TRIM_MIN_PEAK && now <= peak / 4 {
            // It walks (and locks) every arena: not on a worker that serves connections.
            let _ = tokio::task::spawn_blocking(|| {
                // SAFETY: plain glibc call, no arguments to uphold.
                unsafe { libc::malloc_trim(0) }
            })
            .await;
            tracing::debug!(peak, now, "returned freed memory to the kernel");
            peak = now;
        }
    }
}

/// Malloc's threshold for serving an allocation with an mmap of its own, bytes: glibc's
/// initial value, kept fixed.
const MMAP_THRESHOLD: usize = 128 * 1024;

/// Keeps glibc's mmap threshold at [`MMAP_THRESHOLD`]. glibc raises it (up to 32 MiB) each
/// time such a block is freed, after which large blocks come from the heap and fragment it.
/// The codecs of Automatic HTTPS Rewrites are such blocks, allocated and freed per response
/// (a br decoder's window, a 343 KiB deflate encoder): with 200 concurrent gzip rewrites, the
/// daemon's peak RSS was 60.5–72.6 MiB with the moving threshold and 56.6–57.4 MiB with it
/// fixed (BENCHMARKS.md). An operator's `GLIBC_TUNABLES` naming `mmap_threshold` wins.
/// Call before any thread starts.
pub fn fix_mmap_threshold() {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold")) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; no thread allocates concurrently yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// Runs the daemon until SIGTERM/SIGINT, then drains.
///
/// # Errors
/// Anything that stops it from starting: state files, certificates, a listener that cannot be
/// bound, the fast path failing to attach, signal handlers.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let edge = Arc::new(Edge::new(&config)?);
    let certs = if config.https.is_empty() {
        None
    } else if !config.has_certificates() {
        tracing::warn!(
            "no certificates configured ([tls] default_cert or a site's tls): the TLS listeners are not started"
        );
        None
    } else {
        Some(Arc::new(
            CertStore::load(&config).context("cannot load certificates")?,
        ))
    };

    // A client that takes no response data for the idle timeout is let go (`set_user_timeout`).
    let stalled = Duration::from_millis(config.limits.idle_timeout_ms);
    let bind_client = |a: &SocketAddr| {
        let listener = bind_tcp(*a)?;
        set_user_timeout(&listener, stalled).with_context(|| format!("listener {a}"))?;
        anyhow::Ok((listener, *a))
    };
    let mut http_listeners = Vec::new();
    for a in &config.http {
        http_listeners.push(bind_client(a)?);
    }
    let mut https_listeners = Vec::new();
    if certs.is_some() {
        for a in &config.https {
            https_listeners.push(bind_client(a)?);
        }
    }
    let control_listener = admin::control::bind(&config.control_socket).await?;
    let admin_listener = match &config.admin {
        Some(a) => Some(admin::http_api::bind(a)?),
        None => None,
    };

    let fast_path = match &config.xdp {
        None => None,
        Some(x) => {
            let mut ports: Vec<u16> = config.http.iter().map(|a| a.port()).collect();
            ports.sort_unstable();
            ports.dedup();
            Some(FastPath::start(x, &ports, &edge)?)
        }
    };
    // Loading a large state file and filling the host map left big temporary buffers freed
    // but mapped: give them back.
    #[cfg(target_env = "gnu")]
    // SAFETY: plain glibc call, no arguments to uphold.
    unsafe {
        libc::malloc_trim(0);
    }

    // After the fast path: the host map follows the fleet's changes like any other.
    let fleet = match &config.fleet {
        Some(f) => Some(Fleet::start(f, edge.clone())?),
        None => None,
    };
    let mut sources: Vec<Arc<dyn CounterSource>> =
        fast_path.iter().map(FastPath::counters).collect();
    sources.extend(fleet.iter().map(|f| f.counters()));
    let reloader = Reloader::new(&config, edge.clone(), certs.clone());
    let admin = Arc::new(
        Admin::new(edge.clone(), certs.clone(), sources)
            .with_reloader(reloader)
            .with_fleet(fleet),
    );
    edge.set_access_log(AccessLog::start(&config.log)?);
    let proxy = Arc::new(Proxy::new(edge.clone(), &config.proxy));
    let (shutdown_tx, shutdown) = watch::channel(false);

    for (l, a) in http_listeners {
        tracing::info!("serving HTTP on {a}");
        tokio::spawn(http80::serve(
            l,
            edge.clone(),
            proxy.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(certs) = &certs {
        let path = Arc::new(TlsPath {
            edge: edge.clone(),
            proxy: proxy.clone(),
            certs: certs.clone(),
            settings: config.tls.clone(),
        });
        for (l, a) in https_listeners {
            tracing::info!("serving HTTPS on {a}");
            tokio::spawn(tls::serve(l, path.clone(), shutdown.clone()));
        }
    }
    tokio::spawn(admin::control::serve(
        control_listener,
        admin.clone(),
        shutdown.clone(),
    ));
    if let Some(l) = admin_listener {
        tracing::info!(
            "serving the admin API, dashboard and metrics on http://{}/",
            l.addr
        );
        tokio::spawn(admin::http_api::serve(l, admin.clone(), shutdown.clone()));
    }
    #[cfg(target_env = "gnu")]
    tokio::spawn(trim_after_bursts(edge.clone()));
    tracing::info!(
        hosts = edge.policy.table().len(),
        control = %config.control_socket.display(),
        "force-https ready"
    );
    // systemd (Type=notify): every listener is bound and the fast path attached.
    notify(&[sd_notify::NotifyState::Ready]);
    if let Some(every) = sd_notify::watchdog_enabled() {
        tokio::spawn(watchdog(every / 2));
    }

    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                notify(&[
                    sd_notify::NotifyState::Reloading,
                    sd_notify::NotifyState::monotonic_usec_now()
                        .unwrap_or(sd_notify::NotifyState::Ready),
                ]);
                let _ = admin.reload();
                notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }

    tracing::info!("shutting down: no new connections, draining in-flight ones");
    notify(&[sd_notify::NotifyState::Stopping]);
    let _ = shutdown_tx.send(true);
    let _ = std::fs::remove_file(&config.control_socket);
    let drain = Duration::from_millis(edge.settings().limits.drain_timeout_ms);
    if edge.drained(drain).await {
        tracing::info!("drained; exiting");
    } else {
        tracing::warn!(
            "drain timeout ({} ms) reached with connections still open; exiting",
            drain.as_millis()
        );
    }
    if let Some(f) = fast_path {
        tracing::info!(interface = %f.interface, "detaching XDP program");
        drop(f);
    }
    Ok(())
}
