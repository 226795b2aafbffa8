//! The control protocol: one JSON request line, one JSON response line, then the connection
//! closes (see docs/design.md, "Control protocol"). The message types and the client used by
//! the CLI live together, so both sides always agree on the wire format.

use std::{io, path::Path, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// A control request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Enforce hosts.
    Enable {
        /// Host names or `*.` wildcards.
        hosts: Vec<String>,
        /// With `[fleet]`: change this node only (a local override that wins over the
        /// fleet) instead of writing to etcd. Without `[fleet]` every change is local.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        local: bool,
    },
    /// Stop enforcing hosts.
    Disable {
        /// Host names or `*.` wildcards.
        hosts: Vec<String>,
        /// With `[fleet]`: change this node only (a local override that wins over the
        /// fleet) instead of writing to etcd. Without `[fleet]` every change is local.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        local: bool,
    },
    /// Enforce every host of a site at once (one persisted step).
    #[serde(rename = "enable_site")]
    EnableSite {
        /// The site's name.
        site: String,
        /// With `[fleet]`: change this node only (a local override that wins over the
        /// fleet) instead of writing to etcd. Without `[fleet]` every change is local.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        local: bool,
    },
    /// Stop enforcing every host of a site at once (one persisted step).
    #[serde(rename = "disable_site")]
    DisableSite {
        /// The site's name.
        site: String,
        /// With `[fleet]`: change this node only (a local override that wins over the
        /// fleet) instead of writing to etcd. Without `[fleet]` every change is local.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        local: bool,
    },
    /// List every host.
    List,
    /// List every site with its state.
    Sites,
    /// Global counters.
    Stats,
    /// Reload certificates.
    Reload,
}

/// Where a node's changes go with `[fleet]` (`GET /api/v1/info`'s `fleet`, docs/openapi.json).
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct FleetInfo {
    /// The key prefix, e.g. `/force-https/`.
    pub prefix: String,
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
}

/// One host as `list` reports it.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Pattern.
    pub host: String,
    /// Site name, if any.
    pub site: Option<String>,
    /// What decides the state: `config`; `fleet` (a key in etcd, with `[fleet]`); `local`
    /// (a node-only override, with `[fleet]`); `runtime` (an override, without `[fleet]`;
    /// a config host with an override keeps `config`, marked by `overridden`).
    pub source: String,
    /// Enforced now.
    pub enforced: bool,
    /// A runtime override decides the state.
    pub overridden: bool,
    /// The fleet's value (etcd), when it has one; a local override may win over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<bool>,
    /// Redirects sent.
    pub redirects: u64,
    /// Requests proxied.
    pub proxied: u64,
    /// The site's `force_paths`: when not empty, only these path prefixes are redirected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub force_paths: Vec<String>,
}

/// One site as `list --sites` and `GET /api/v1/sites` report it.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct SiteInfo {
    /// The site's name.
    pub name: String,
    /// `enforced` (every host of the site is), `not_enforced` (none is) or `mixed` (host-level
    /// overrides differ).
    pub state: String,
    /// `true` or `false` when every host of the site agrees, `null` when mixed.
    pub force_https: Option<bool>,
    /// The site's `force_https` in the config (before runtime overrides).
    pub config_force_https: bool,
    /// The site's hosts (config domains and wildcards, and runtime names under its wildcards)
    /// that are enforced, sorted.
    pub enforced: Vec<String>,
    /// The site's hosts that are not enforced, sorted.
    pub not_enforced: Vec<String>,
}

impl SiteInfo {
    /// The exceptions of a mixed site: the hosts in the smaller group (the enforced ones on a
    /// tie) and whether they are the enforced ones; `None` when the site is uniform.
    pub fn exceptions(&self) -> Option<(bool, &[String])> {
        if self.enforced.is_empty() || self.not_enforced.is_empty() {
            None
        } else if self.enforced.len() <= self.not_enforced.len() {
            Some((true, &self.enforced))
        } else {
            Some((false, &self.not_enforced))
        }
    }
}

/// A control response.
#[derive(Debug, Serialize, Deserialize, Default)]
pub struct Response {
    /// Success.
    pub ok: bool,
    /// Error class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// Error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Hosts whose state changed (enable/disable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<String>>,
    /// Host list (list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<HostInfo>>,
    /// Site list (sites).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sites: Option<Vec<SiteInfo>>,
    /// Counters (stats), in a stable order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Vec<(String, u64)>>,
    /// Free-form detail (reload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The class of a failed control request, on the wire in snake case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A host name is invalid; nothing was changed (CLI exit 4).
    InvalidHost,
    /// No site of that name; nothing was changed (CLI exit 4).
    UnknownSite,
    /// The request itself is malformed (CLI exit 2).
    BadRequest,
    /// The daemon failed (CLI exit 1).
    Internal,
    /// With `[fleet]`: etcd cannot be reached, nothing was changed (CLI exit 6).
    FleetUnavailable,
    /// A code this client does not know (a newer daemon).
    #[serde(other)]
    Unknown,
}

impl Response {
    /// A failure with `code` and a human-readable message.
    pub fn error(code: ErrorCode, msg: impl Into<String>) -> Self {
        Response {
            ok: false,
            code: Some(code),
            error: Some(msg.into()),
            ..Default::default()
        }
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
