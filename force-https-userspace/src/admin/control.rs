//! The control socket: a Unix socket (mode 0600) that changes and inspects a running daemon,
//! one transport of the admin service.

use std::{io, os::unix::fs::PermissionsExt, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use super::{
    Admin,
    protocol::{ErrorCode, Request, Response},
};
use crate::{
    metrics::Metrics,
    net::{Shutdown, accept_loop},
};

/// Largest request line: a bulk change of 100000 hosts (the CLI's batch) fits easily.
const MAX_REQUEST: usize = 32 << 20;

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
    // SAFETY: umask only swaps the process's file mode mask; no memory is involved.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener =
        bound.with_context(|| format!("cannot bind control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod control socket {}", path.display()))?;
    Ok(listener)
}

/// Serves control requests until shutdown.
pub async fn serve(listener: UnixListener, admin: Arc<Admin>, shutdown: Shutdown) {
    accept_loop(listener, "control socket", shutdown, move |stream, _| {
        let admin = admin.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &admin).await {
                tracing::debug!("control connection: {e}");
            }
        });
    })
    .await;
}

async fn handle(stream: UnixStream, admin: &Arc<Admin>) -> io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(r.take(MAX_REQUEST as u64));
    let n = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request timeout"))??;
    Metrics::inc(&admin.edge.metrics.control_requests);
    let resp = if n == 0 {
        Response::error(ErrorCode::BadRequest, "empty request")
    } else {
        match serde_json::from_str::<Request>(&line) {
            // Changes fsync, and with [fleet] wait for etcd: off the async workers.
            Ok(req) => {
                let admin = admin.clone();
                tokio::task::spawn_blocking(move || admin.execute(req))
                    .await
                    .unwrap_or_else(|e| {
                        Response::error(ErrorCode::Internal, format!("the request failed: {e}"))
                    })
            }
            Err(e) => Response::error(ErrorCode::BadRequest, format!("invalid request: {e}")),
        }
    };
    let mut out = serde_json::to_vec(&resp).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}
