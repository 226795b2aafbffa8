//! The control socket: a Unix socket (mode 0600) that changes and inspects a running daemon.
//!
//! Protocol: one JSON request line, one JSON response line, then the connection closes.
//! See `docs/design.md` for the messages. The server side lives here with the client used by
//! the CLI, so both always agree on the wire format.

use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::{
    daemon::Shared,
    metrics::Metrics,
    policy::{PolicyError, Source},
};

/// Largest request line: a bulk change of 100000 hosts (the CLI's batch) fits easily.
const MAX_REQUEST: usize = 32 << 20;

/// A control request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Enforce hosts.
    Enable {
        /// Host names or `*.` wildcards.
        hosts: Vec<String>,
    },
    /// Stop enforcing hosts.
    Disable {
        /// Host names or `*.` wildcards.
        hosts: Vec<String>,
    },
    /// List every host.
    List,
    /// Global counters.
    Stats,
    /// Reload certificates.
    Reload,
}

/// One host as `list` reports it.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Pattern.
    pub host: String,
    /// Site name, if any.
    pub site: Option<String>,
    /// `config` or `runtime`.
    pub source: String,
    /// Enforced now.
    pub enforced: bool,
    /// A runtime override decides the state.
    pub overridden: bool,
    /// Redirects sent.
    pub redirects: u64,
    /// Requests proxied.
    pub proxied: u64,
}

/// A control response.
#[derive(Debug, Serialize, Deserialize, Default)]
pub struct Response {
    /// Success.
    pub ok: bool,
    /// Error class: `invalid_host`, `bad_request`, `internal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Hosts whose state changed (enable/disable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<String>>,
    /// Host list (list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<HostInfo>>,
    /// Counters (stats), in a stable order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Vec<(String, u64)>>,
    /// Free-form detail (reload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Response {
    fn error(code: &str, msg: impl Into<String>) -> Self {
        Response {
            ok: false,
            code: Some(code.into()),
            error: Some(msg.into()),
            ..Default::default()
        }
    }
}

/// Binds the control socket with mode 0600, refusing to replace a live one.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create control socket directory {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "another force-https daemon is already running on control socket {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale control socket {}", path.display()))?;
    }
    // Bind with a restrictive umask so the socket is never reachable by others, even briefly.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener =
        bound.with_context(|| format!("cannot bind control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod control socket {}", path.display()))?;
    Ok(listener)
}

/// Serves control requests until the listener is dropped.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &shared).await {
                tracing::debug!("control connection: {e}");
            }
        });
    }
}

async fn handle(stream: UnixStream, shared: &Shared) -> io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(r.take(MAX_REQUEST as u64));
    let n = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request timeout"))??;
    Metrics::inc(&shared.metrics.control_requests);
    let resp = if n == 0 {
        Response::error("bad_request", "empty request")
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(req) => execute(req, shared).await,
            Err(e) => Response::error("bad_request", format!("invalid request: {e}")),
        }
    };
    let mut out = serde_json::to_vec(&resp).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

async fn execute(req: Request, shared: &Shared) -> Response {
    match req {
        Request::Enable { hosts } | Request::Disable { hosts } if hosts.is_empty() => {
            Response::error("bad_request", "no host given")
        }
        Request::Enable { hosts } => set(shared, &hosts, true),
        Request::Disable { hosts } => set(shared, &hosts, false),
        Request::List => {
            let table = shared.policy.table();
            let hosts = table
                .entries()
                .into_iter()
                .map(|e| HostInfo {
                    host: e.pattern.to_string(),
                    site: e.site.as_ref().map(|s| s.name.clone()),
                    source: match e.source {
                        Source::Config => "config".into(),
                        Source::Runtime => "runtime".into(),
                    },
                    enforced: e.enforced,
                    overridden: e.overridden,
                    redirects: e.stats.redirects.load(std::sync::atomic::Ordering::Relaxed),
                    proxied: e.stats.proxied.load(std::sync::atomic::Ordering::Relaxed),
                })
                .collect();
            Response {
                ok: true,
                hosts: Some(hosts),
                ..Default::default()
            }
        }
        Request::Stats => Response {
            ok: true,
            stats: Some(
                shared
                    .stats()
                    .into_iter()
                    .map(|(n, _, v)| (n.to_string(), v))
                    .collect(),
            ),
            ..Default::default()
        },
        Request::Reload => match shared.reload_certificates() {
            Ok(msg) => Response {
                ok: true,
                message: Some(msg),
                ..Default::default()
            },
            Err(e) => Response::error("internal", format!("{e:#}")),
        },
    }
}

fn set(shared: &Shared, hosts: &[String], enforce: bool) -> Response {
    match shared.policy.set(hosts, enforce) {
        Ok(changed) => {
            Metrics::inc(&shared.metrics.policy_updates);
            tracing::info!(
                hosts = ?hosts,
                enforce,
                changed = ?changed,
                "host policy changed"
            );
            Response {
                ok: true,
                changed: Some(changed),
                ..Default::default()
            }
        }
        Err(e @ PolicyError::InvalidHost { .. }) => Response::error("invalid_host", e.to_string()),
        Err(e) => Response::error("internal", e.to_string()),
    }
}

/// Why the client could not get an answer.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon listens on the socket.
    NotRunning(PathBuf, io::Error),
    /// The socket exists but we may not connect.
    PermissionDenied(PathBuf),
    /// Anything else.
    Other(anyhow::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotRunning(p, e) => write!(
                f,
                "the force-https daemon is not running (control socket {}: {e}); start it with \
                 `systemctl start force-https` or `force-https run`",
                p.display()
            ),
            ClientError::PermissionDenied(p) => write!(
                f,
                "permission denied on control socket {}: it is mode 0600, run this as the \
                 daemon's user (usually root)",
                p.display()
            ),
            ClientError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

/// Sends one request and returns the daemon's response.
pub fn call(path: &Path, req: &Request) -> Result<Response, ClientError> {
    use std::io::{BufRead, Write};
    let stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => ClientError::PermissionDenied(path.to_path_buf()),
        _ => ClientError::NotRunning(path.to_path_buf(), e),
    })?;
    let timeout = Some(Duration::from_secs(30));
    let other = |e: io::Error| ClientError::Other(anyhow::Error::new(e).context("control socket"));
    stream.set_read_timeout(timeout).map_err(other)?;
    stream.set_write_timeout(timeout).map_err(other)?;
    let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Other(e.into()))?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(other)?;
    let mut resp = String::new();
    std::io::BufReader::new(&stream)
        .read_line(&mut resp)
        .map_err(other)?;
    serde_json::from_str(&resp).map_err(|e| {
        ClientError::Other(anyhow::anyhow!(
            "invalid response from the daemon: {e}: {resp:?}"
        ))
    })
}
