//! The daemon: binds the listeners, wires the shared state into every path, and handles
//! signals (SIGTERM/SIGINT drain then exit; SIGHUP reloads certificates).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::{Semaphore, watch},
};

use crate::{
    config::Config,
    control, http80,
    metrics::{Metrics, prometheus_text},
    policy::Policy,
    proxy::Proxy,
    tls::{self, CertStore},
    xdp::{self, XdpHandle},
};

/// Everything the request paths and the control socket share.
pub struct Shared {
    /// The configuration the daemon started with.
    pub config: Config,
    /// The live host policy.
    pub policy: Policy,
    /// Global counters.
    pub metrics: Metrics,
    /// The backend client.
    pub proxy: Proxy,
    /// Certificates, when TLS is served.
    pub tls: Option<CertStore>,
    /// One permit per client connection (`limits.max_connections`).
    pub conn_limit: Arc<Semaphore>,
    /// The attached XDP program, if any.
    pub xdp: Mutex<Option<XdpHandle>>,
}

impl Shared {
    /// Every counter the daemon reports: global, XDP and table size.
    pub fn stats(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut v = self.metrics.snapshot();
        let max = self.config.limits.max_connections;
        let active = max.saturating_sub(self.conn_limit.available_permits());
        v.push((
            "active_connections",
            "Client connections open now.",
            active as u64,
        ));
        v.push((
            "hosts",
            "Entries in the host-policy table.",
            self.policy.table().len() as u64,
        ));
        if let Some(x) = self.xdp.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            v.extend(x.counters());
        }
        v
    }

    /// Reloads certificates (control `reload` and SIGHUP).
    pub fn reload_certificates(&self) -> anyhow::Result<String> {
        let Some(store) = &self.tls else {
            return Ok("no certificates configured; nothing to reload".into());
        };
        match store.reload() {
            Ok(msg) => {
                Metrics::inc(&self.metrics.cert_reloads);
                tracing::info!("{msg}");
                Ok(msg)
            }
            Err(e) => {
                Metrics::inc(&self.metrics.cert_reload_failures);
                tracing::error!("{e:#}");
                Err(e)
            }
        }
    }
}

/// Binds a TCP listener with the options every edge listener needs.
fn bind_tcp(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // So "[::]:80" and "0.0.0.0:80" can be bound side by side.
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())
        .with_context(|| format!("cannot listen on {addr}"))?;
    sock.listen(4096)
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(TcpListener::from_std(sock.into())?)
}

/// Runs the daemon until SIGTERM/SIGINT, then drains.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let policy = Policy::load(&config)?;
    let tls = if config.https.is_empty() {
        None
    } else if !config.has_certificates() {
        tracing::warn!(
            "no certificates configured ([tls] default_cert or a site's tls): the TLS listeners are not started"
        );
        None
    } else {
        Some(CertStore::load(&config).context("cannot load certificates")?)
    };

    let mut http_listeners = Vec::new();
    for a in &config.http {
        http_listeners.push(bind_tcp(*a)?);
    }
    let mut https_listeners = Vec::new();
    if tls.is_some() {
        for a in &config.https {
            https_listeners.push(bind_tcp(*a)?);
        }
    }
    let control_listener = control::bind(&config.control_socket).await?;

    let xdp = match &config.xdp {
        None => None,
        Some(x) => {
            let mut ports: Vec<u16> = config.http.iter().map(|a| a.port()).collect();
            ports.sort_unstable();
            ports.dedup();
            let h = xdp::attach(x, &ports, config.https_port)?;
            tracing::info!(interface = %h.interface, mode = h.mode, ?ports, "XDP program attached");
            Some(h)
        }
    };

    let shared = Arc::new(Shared {
        proxy: Proxy::new(&config.proxy),
        conn_limit: Arc::new(Semaphore::new(config.limits.max_connections)),
        metrics: Metrics::default(),
        policy,
        tls,
        xdp: Mutex::new(xdp),
        config,
    });
    // Host map, its sync with the policy, and the AF_XDP responders.
    xdp::start(&shared)?;
    // Loading a large state file and filling the host map left big temporary buffers freed
    // but mapped: give them back.
    #[cfg(target_env = "gnu")]
    // SAFETY: plain glibc call, no arguments to uphold.
    unsafe {
        libc::malloc_trim(0);
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    for (l, a) in http_listeners.into_iter().zip(&shared.config.http) {
        tracing::info!("serving HTTP on {a}");
        tokio::spawn(http80::serve(l, shared.clone(), shutdown_rx.clone()));
    }
    for (l, a) in https_listeners.into_iter().zip(&shared.config.https) {
        tracing::info!("serving HTTPS on {a}");
        tokio::spawn(tls::serve(l, shared.clone(), shutdown_rx.clone()));
    }
    let control_task = tokio::spawn(control::serve(control_listener, shared.clone()));
    if let Some(addr) = shared.config.metrics_listen {
        let l = bind_tcp(addr)?;
        tracing::info!("serving Prometheus metrics on http://{addr}/metrics");
        tokio::spawn(serve_metrics(l, shared.clone()));
    }
    tracing::info!(
        hosts = shared.policy.table().len(),
        control = %shared.config.control_socket.display(),
        "force-https ready"
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading certificates");
                let _ = shared.reload_certificates();
            }
        }
    }

    tracing::info!("shutting down: no new connections, draining in-flight ones");
    let _ = shutdown_tx.send(true);
    control_task.abort();
    let _ = std::fs::remove_file(&shared.config.control_socket);
    let max = shared.config.limits.max_connections as u32;
    let drain = Duration::from_millis(shared.config.limits.drain_timeout_ms);
    match tokio::time::timeout(drain, shared.conn_limit.acquire_many(max)).await {
        Ok(_) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!(
            "drain timeout ({} ms) reached with connections still open; exiting",
            drain.as_millis()
        ),
    }
    if let Some(x) = shared.xdp.lock().unwrap_or_else(|p| p.into_inner()).take() {
        tracing::info!(interface = %x.interface, "detaching XDP program");
        drop(x);
    }
    Ok(())
}

/// A minimal Prometheus endpoint: `GET /metrics`.
async fn serve_metrics(listener: TcpListener, shared: Arc<Shared>) {
    use http_body_util::Full;
    use hyper::{Response, body::Bytes, service::service_fn};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move {
                    let (status, body) = if req.uri().path() == "/metrics" {
                        (200, prometheus_text(&shared.stats()))
                    } else {
                        (404, "not found\n".to_string())
                    };
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() =
                        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::NOT_FOUND);
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}
