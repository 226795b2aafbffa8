//! The compared servers ("peers") and their configs, all with the same semantics:
//!
//! - port 80: `301` to `https://$host$request_uri` for bench.example;
//! - port 443: TLS 1.2/1.3 with the same ECDSA P-256 certificate, ALPN `h2,http/1.1`, proxied
//!   over HTTP/1.1 keep-alive to the fixed-response `fh-backend` on 127.0.0.1:8080, with
//!   `Strict-Transport-Security: max-age=31536000` added and X-Forwarded-For/-Proto/-Host and
//!   Forwarded set (force-https sets those four itself);
//! - port 80 for plain.bench.example (issue 15's `http-proxied-keepalive`): a host that is
//!   NOT enforced, proxied over plain HTTP/1.1 keep-alive to the same backend (same pool), with
//!   the same forwarding headers (`proto=http`), no redirect and no HSTS;
//! - the backend answers every path with its small fixed body, but `/big` with 1 MiB
//!   (`fh-backend --big-path /big --big-bytes 1048576`: the `https-*-1mib` phases);
//!   nginx gets `proxy_max_temp_file_size 0` so that, like the others, it streams a large
//!   body through memory instead of spooling it to a temp file;
//! - one worker, pinned with `taskset -c 0` (the edge CPU); no access logs.
//!
//! Backend connection pools, made equal. force-https (proxy.rs) uses one hyper-util legacy
//! `Client`: HTTP/1.1 keep-alive, no cap on open connections, up to `pool_max_idle_per_host`
//! (64) idle connections kept per backend for `pool_idle_timeout_ms` (90 s), no limit on
//! requests per connection. The equivalents chosen:
//! - nginx: `upstream { keepalive 64; keepalive_requests 1000000; keepalive_timeout 90s; }`
//!   with `proxy_http_version 1.1` and `proxy_set_header Connection ""` (without the last two
//!   nginx closes every backend connection; its default of 1000 requests per connection would
//!   churn them), and `keepalive_requests 1000000` on the client side too (hyper, HAProxy and
//!   Go do not close client connections after N requests);
//! - HAProxy: `http-reuse always` and `server ... pool-max-conn 64 pool-purge-delay 90s`;
//! - Caddy: `transport http { keepalive 90s; keepalive_idle_conns 64;
//!   keepalive_idle_conns_per_host 64 }`.
//!
//! The load keeps 64 requests in flight by default (`load::IN_FLIGHT`), so no peer needs more
//! than 64 backend connections and none has to open or close backend connections in steady
//! state; with `--in-flight N` above 64, every peer's pool is N ([`backend_pool`]).
//!
//! Single worker: nginx `worker_processes 1`; HAProxy `nbthread 1`; Caddy `GOMAXPROCS=1`;
//! force-https has no worker setting (config.rs has none): its tokio runtime sizes itself from
//! the CPU affinity (`available_parallelism`), so `taskset -c 0` gives it one scheduler thread
//! (plus the AF_XDP responder thread with `[xdp]`). The report lists every peer's threads.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::EDGE_CPU;
use super::load::{BIG_BODY_BYTES, BIG_PATH, HOST, PLAIN_HOST};
use crate::{cmd, netns};

/// The backend every peer proxies to (in the edge namespace).
pub const BACKEND: &str = "127.0.0.1:8080";
/// Idle keep-alive connections every peer keeps to the backend, at least (`--in-flight`
/// above it raises every peer's pool to the requests in flight: [`backend_pool`]).
pub const BACKEND_POOL: usize = 64;

/// Every peer's backend pool for `in_flight` requests: no peer needs more backend
/// connections than it keeps.
pub fn backend_pool(in_flight: u32) -> usize {
    BACKEND_POOL.max(in_flight as usize)
}
/// The size of the backend's fixed response body.
pub const FIXED_BODY_BYTES: usize = 128;
/// HSTS value every peer adds on 443.
pub const HSTS: &str = "max-age=31536000";

/// The client connection limit of every peer: force-https's default `max_connections`
/// (16384), lowered when the open-file limit cannot hold two descriptors per connection
/// (HAProxy refuses to start then).
pub fn max_connections(nofile: u64) -> u64 {
    16_384u64.min(nofile.saturating_sub(256) / 2)
}

/// The compared servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerKind {
    /// force-https with `[xdp]` on the edge veth (native mode).
    ForceHttpsXdp,
    /// force-https on sockets only.
    ForceHttps,
    Nginx,
    Haproxy,
    Caddy,
    /// Another force-https build (`--baseline-bin`), on sockets with force-https's config: with
    /// `--paired`, the ratios force-https ÷ baseline compare two builds slice by slice (a code
    /// change, `cargo xtask pgo`'s build against the plain one). Never in the default peers.
    Baseline,
}

impl PeerKind {
    pub const ALL: [PeerKind; 5] = [
        PeerKind::ForceHttpsXdp,
        PeerKind::ForceHttps,
        PeerKind::Nginx,
        PeerKind::Haproxy,
        PeerKind::Caddy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PeerKind::ForceHttpsXdp => "force-https-xdp",
            PeerKind::ForceHttps => "force-https",
            PeerKind::Nginx => "nginx",
            PeerKind::Haproxy => "haproxy",
            PeerKind::Caddy => "caddy",
            PeerKind::Baseline => "baseline",
        }
    }

    /// The Debian package providing the peer (none for force-https, which is built here).
    pub fn package(self) -> Option<&'static str> {
        match self {
            PeerKind::ForceHttpsXdp | PeerKind::ForceHttps | PeerKind::Baseline => None,
            PeerKind::Nginx => Some("nginx"),
            PeerKind::Haproxy => Some("haproxy"),
            PeerKind::Caddy => Some("caddy"),
        }
    }

    /// Whether the peer is a force-https daemon (the baseline build too): its config, its
    /// check, its counters (`force-https stats`).
    pub fn is_force_https(self) -> bool {
        matches!(
            self,
            PeerKind::ForceHttpsXdp | PeerKind::ForceHttps | PeerKind::Baseline
        )
    }

    /// `(command, args)` whose first output line names the version.
    fn version_command(self, force_https: &Path) -> (PathBuf, Vec<&'static str>) {
        match self {
            PeerKind::ForceHttpsXdp | PeerKind::ForceHttps | PeerKind::Baseline => {
                (force_https.to_path_buf(), vec!["--version"])
            }
            PeerKind::Nginx => ("nginx".into(), vec!["-v"]),
            PeerKind::Haproxy => ("haproxy".into(), vec!["-v"]),
            PeerKind::Caddy => ("caddy".into(), vec!["version"]),
        }
    }

    pub fn version(self, force_https: &Path) -> String {
        let (p, a) = self.version_command(force_https);
        first_line(Command::new(p).args(a))
    }
}

/// The first non-empty line a command prints (stdout, else stderr), whatever its exit status.
pub fn first_line(c: &mut Command) -> String {
    match c.output() {
        Ok(o) => {
            let out = String::from_utf8_lossy(&o.stdout);
            let err = String::from_utf8_lossy(&o.stderr);
            out.lines()
                .chain(err.lines())
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("(no output)")
                .to_string()
        }
        Err(e) => format!("(cannot run {}: {e})", cmd::show(c)),
    }
}

/// Files shared by all peers (in the bench's temp dir).
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate then key in one PEM (HAProxy's `crt`).
    pub combined: PathBuf,
}

/// What a peer's config and command need.
pub struct PeerCtx<'a> {
    pub files: &'a Files,
    pub force_https: &'a Path,
    /// The peer's own scratch directory (config, state, logs).
    pub dir: &'a Path,
    pub edge_ns: &'a str,
    pub edge_if: &'a str,
    /// `native` or `generic`, for the XDP peer.
    pub xdp_mode: &'a str,
    /// Client connection limit ([`max_connections`]) and the open-file limit.
    pub max_connections: u64,
    pub nofile: u64,
    /// force-https: `[log] access = "json"` to `access.log` in `dir` (`--access-log`).
    pub access_log: bool,
    /// force-https: `https_rewrites = true` on the site (`--https-rewrites`).
    pub https_rewrites: bool,
    /// Idle keep-alive connections kept to the backend ([`backend_pool`]).
    pub backend_pool: usize,
    /// force-https with XDP: `[xdp] answer_syn` (`--synack`).
    pub answer_syn: bool,
    /// Run the peer under callgrind, its dumps in `dir` (`--instructions`).
    pub callgrind: bool,
}

impl PeerCtx<'_> {
    fn p(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// The config file name and text of a peer.
pub fn config(kind: PeerKind, ctx: &PeerCtx) -> (String, String) {
    let cert = ctx.files.cert.display();
    let key = ctx.files.key.display();
    let pool = ctx.backend_pool;
    match kind {
        PeerKind::ForceHttpsXdp | PeerKind::ForceHttps | PeerKind::Baseline => {
            let xdp = if kind == PeerKind::ForceHttpsXdp {
                // The client end of the veth runs a pass program (`Topology::create`), so frames
                // sent with XDP_TX in driver mode reach it: `xdp_tx = true`.
                format!(
                    "\n[xdp]\ninterface = \"{}\"\nmode = \"{}\"\nanswer_syn = {}\nxdp_tx = true\n",
                    ctx.edge_if, ctx.xdp_mode, ctx.answer_syn
                )
            } else {
                String::new()
            };
            let log = if ctx.access_log {
                format!(
                    "\n[log]\naccess = \"json\"\npath = \"{}\"\n",
                    ctx.p("access.log")
                )
            } else {
                String::new()
            };
            let text = format!(
                r#"# force-https, bench config ({name}). No worker setting exists: tokio sizes itself
# from the CPU affinity (taskset -c {EDGE_CPU}).
[listen]
http = ["0.0.0.0:80"]
https = ["0.0.0.0:443"]

[state]
dir = "{state}"
control_socket = "{sock}"

[limits]
max_connections = {maxconn}
drain_timeout_ms = 1000

[proxy]
pool_max_idle_per_host = {pool}
pool_idle_timeout_ms = 90000

[hsts]
max_age = 31536000
{xdp}{log}
[[site]]
name = "bench"
domains = ["{HOST}"]
backend = "http://{BACKEND}"
force_https = true
redirect_code = 301
tls = {{ cert = "{cert}", key = "{key}" }}
{rewrites}
# Not enforced: port 80 proxies it to the backend (the http-proxied-keepalive phase).
[[site]]
name = "plain"
domains = ["{PLAIN_HOST}"]
backend = "http://{BACKEND}"
force_https = false
"#,
                name = kind.name(),
                state = ctx.p("state"),
                sock = ctx.p("control.sock"),
                maxconn = ctx.max_connections,
                rewrites = if ctx.https_rewrites {
                    "https_rewrites = true\nhttps_rewrite_hosts = [\"www.w3.org\"]\n"
                } else {
                    ""
                },
            );
            ("config.toml".into(), text)
        }
        PeerKind::Nginx => {
            let text = format!(
                r#"# nginx, bench config: one worker, no access log.
worker_processes 1;
daemon off;{master}
pid {pid};
error_log {errlog} warn;
worker_rlimit_nofile {nofile};

events {{
    # Client connections plus the backend pool.
    worker_connections {worker_connections};
}}

http {{
    access_log off;
    server_tokens off;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # hyper, HAProxy and Go never close a client connection after N requests.
    keepalive_requests 1000000;
    # The other peers stream a large response through memory with backpressure; by default
    # nginx spools what exceeds its proxy buffers to a temp file (the 1 MiB phases). No effect
    # on small responses.
    proxy_max_temp_file_size 0;
    keepalive_timeout 60s;

    upstream bench_backend {{
        server {BACKEND};
        keepalive {pool};
        keepalive_requests 1000000;
        keepalive_timeout 90s;
    }}

    server {{
        listen 80 default_server;
        server_name {HOST};
        return 301 https://$host$request_uri;
    }}

    server {{
        # Not enforced: proxied over plain HTTP (the http-proxied-keepalive phase).
        listen 80;
        server_name {PLAIN_HOST};

        location / {{
            proxy_pass http://bench_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=$host";
        }}
    }}

    server {{
        # nginx 1.22 (Debian 12) predates `http2 on;` (1.25.1).
        listen 443 ssl http2 default_server;
        server_name {HOST};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
        http2_max_concurrent_streams 128;
        add_header Strict-Transport-Security "{HSTS}" always;

        location / {{
            proxy_pass http://bench_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=$host";
        }}
    }}
}}
"#,
                // Under callgrind (`--instructions`), the worker is the process itself: a forked
                // worker would not be reachable by `callgrind_control`.
                master = if ctx.callgrind {
                    "\nmaster_process off;"
                } else {
                    ""
                },
                pid = ctx.p("nginx.pid"),
                errlog = ctx.p("nginx-error.log"),
                tmp = ctx.p("nginx-tmp"),
                nofile = ctx.nofile,
                worker_connections = ctx.max_connections + pool as u64,
            );
            ("nginx.conf".into(), text)
        }
        PeerKind::Haproxy => {
            let text = format!(
                r#"# HAProxy, bench config: one thread, no logging.
global
    nbthread 1
    maxconn {maxconn}
    tune.ssl.cachesize 16384
    tune.h2.max-concurrent-streams 128
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode http
    option http-keep-alive
    timeout connect 3s
    timeout client 60s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 60s

frontend http80
    bind 0.0.0.0:80
    # {PLAIN_HOST} is not enforced: proxied over plain HTTP (http-proxied-keepalive).
    acl plain_host hdr(host) -i {PLAIN_HOST} {PLAIN_HOST}:80
    http-request redirect scheme https code 301 unless plain_host
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header Forwarded "for=%[src];proto=http;host=%[req.hdr(host)]"
    use_backend bench_backend if plain_host

frontend https443
    bind 0.0.0.0:443 ssl crt {combined} alpn h2,http/1.1
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header Forwarded "for=%[src];proto=https;host=%[req.hdr(host)]"
    http-response set-header Strict-Transport-Security "{HSTS}"
    default_backend bench_backend

backend bench_backend
    http-reuse always
    server app {BACKEND} pool-max-conn {pool} pool-purge-delay 90s
"#,
                combined = ctx.files.combined.display(),
                maxconn = ctx.max_connections,
            );
            ("haproxy.cfg".into(), text)
        }
        PeerKind::Caddy => {
            let text = format!(
                r#"# Caddy, bench config: GOMAXPROCS=1 in the environment, no admin endpoint (so no config
# persistence either), no automatic HTTPS, HTTP/1.1 and HTTP/2 only (no HTTP/3 listener), no access log.
{{
    admin off
    auto_https off
    servers {{
        protocols h1 h2
    }}
}}

http://{HOST} {{
    redir https://{{host}}{{uri}} 301
}}

https://{HOST} {{
    tls {cert} {key}
    header Strict-Transport-Security "{HSTS}"
    reverse_proxy {BACKEND} {{
        header_up Forwarded "for={{remote_host}};proto=https;host={{host}}"
        transport http {{
            keepalive 90s
            keepalive_idle_conns {pool}
            keepalive_idle_conns_per_host {pool}
        }}
    }}
}}

# Not enforced: proxied over plain HTTP (the http-proxied-keepalive phase).
http://{PLAIN_HOST} {{
    reverse_proxy {BACKEND} {{
        header_up Forwarded "for={{remote_host}};proto=http;host={{host}}"
        transport http {{
            keepalive 90s
            keepalive_idle_conns {pool}
            keepalive_idle_conns_per_host {pool}
        }}
    }}
}}
"#
            );
            ("Caddyfile".into(), text)
        }
    }
}

/// The command that runs the peer in the edge namespace, pinned to the edge CPU, in the
/// foreground.
pub fn command(kind: PeerKind, ctx: &PeerCtx, config: &Path) -> Command {
    let mut c = netns::exec(ctx.edge_ns, "taskset");
    c.args(["-c", &EDGE_CPU.to_string()]);
    if ctx.callgrind {
        c.args(super::instructions::valgrind_prefix(ctx.dir));
    }
    match kind {
        PeerKind::ForceHttpsXdp | PeerKind::ForceHttps | PeerKind::Baseline => {
            c.env("RUST_LOG", "info")
                .arg(ctx.force_https)
                .arg("run")
                .arg("--config")
                .arg(config);
        }
        PeerKind::Nginx => {
            c.args(["nginx", "-e"])
                .arg(ctx.dir.join("nginx-error.log"))
                .arg("-p")
                .arg(ctx.dir)
                .arg("-c")
                .arg(config);
        }
        PeerKind::Haproxy => {
            c.args(["haproxy", "-db", "-f"]).arg(config);
        }
        PeerKind::Caddy => {
            c.env("GOMAXPROCS", "1")
                .env("HOME", ctx.dir)
                .env("XDG_DATA_HOME", ctx.dir.join("caddy-data"))
                .env("XDG_CONFIG_HOME", ctx.dir.join("caddy-config"))
                .args(["caddy", "run", "--adapter", "caddyfile", "--config"])
                .arg(config);
        }
    }
    c
}

/// Runs the peer's own config check, when it has one (before starting it).
pub fn check_config(kind: PeerKind, ctx: &PeerCtx, config: &Path) -> Result<()> {
    let mut c = match kind {
        PeerKind::ForceHttpsXdp | PeerKind::ForceHttps | PeerKind::Baseline => {
            let mut c = Command::new(ctx.force_https);
            c.arg("check").arg("--config").arg(config);
            c
        }
        PeerKind::Nginx => {
            let mut c = Command::new("nginx");
            c.arg("-t")
                .arg("-e")
                .arg(ctx.dir.join("nginx-error.log"))
                .arg("-p")
                .arg(ctx.dir)
                .arg("-c")
                .arg(config);
            c
        }
        PeerKind::Haproxy => {
            let mut c = Command::new("haproxy");
            c.args(["-c", "-f"]).arg(config);
            c
        }
        PeerKind::Caddy => {
            let mut c = Command::new("caddy");
            c.env("HOME", ctx.dir)
                .env("XDG_DATA_HOME", ctx.dir.join("caddy-data"))
                .env("XDG_CONFIG_HOME", ctx.dir.join("caddy-config"))
                .args(["validate", "--adapter", "caddyfile", "--config"])
                .arg(config);
            c
        }
    };
    let out = cmd::output(&mut c)?;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!(
            "config check failed ({}): {last}\n`{}` printed:\n{text}",
            out.status,
            cmd::show(&c)
        );
    }
    Ok(())
}

/// The scratch directories a peer's config refers to.
pub fn prepare_dirs(kind: PeerKind, dir: &Path) -> Result<()> {
    let subdirs: &[&str] = match kind {
        PeerKind::ForceHttpsXdp | PeerKind::ForceHttps | PeerKind::Baseline => &["state"],
        PeerKind::Nginx => &["nginx-tmp", "logs"],
        PeerKind::Haproxy => &[],
        PeerKind::Caddy => &["caddy-data", "caddy-config"],
    };
    for s in subdirs {
        std::fs::create_dir_all(dir.join(s))
            .with_context(|| format!("cannot create {}", dir.join(s).display()))?;
    }
    Ok(())
}

/// A response as curl saw it (`-i`: head and body).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses `curl -si` output (one response).
    pub fn parse(text: &str) -> Result<Seen> {
        let (head, body) = text
            .split_once("\r\n\r\n")
            .or_else(|| text.split_once("\n\n"))
            .unwrap_or((text, ""));
        let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
        let status_line = lines.next().context("empty response")?;
        let mut f = status_line.split_whitespace();
        let version = f.next().unwrap_or_default().to_string();
        let status = f
            .next()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not a status line: {status_line:?}"))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Ok(Seen {
            version,
            status,
            headers,
            body: body.to_string(),
        })
    }
}

/// `curl -si --max-time 3 ARGS` in the client namespace.
pub fn curl(client_ns: &str, args: &[&str]) -> Result<Seen> {
    let mut c = netns::exec(client_ns, "curl");
    c.args(["-sS", "-i", "--max-time", "3"]).args(args);
    let out = cmd::stdout_of(&mut c)?;
    Seen::parse(&out)
}

/// What was checked on a peer before it was measured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub redirect: String,
    pub https_h1: String,
    pub https_h2: String,
    /// The not-enforced host on port 80: 200 from the backend, no redirect, no HSTS.
    pub plain_http: String,
    /// The 1 MiB body over HTTP/1.1 and HTTP/2.
    pub big_h1: String,
    pub big_h2: String,
    pub tls: TlsFacts,
}

/// Whether a body is the backend's answer to `/`: its fixed body, or a `--page` (which
/// Automatic HTTPS Rewrites may lengthen).
fn body_ok(body: &str, body_len: usize) -> bool {
    if body_len == FIXED_BODY_BYTES {
        body.len() == FIXED_BODY_BYTES && body.starts_with("ok")
    } else {
        body.len() >= body_len && body.len() <= body_len + body_len / 10
    }
}

/// Checks the not-enforced host on port 80 (`http-proxied-keepalive`): 200 with the backend's
/// body (`X-Backend: bench`), no `Location`, no `Strict-Transport-Security` (RFC 6797 §7.2: not
/// over plain HTTP).
pub fn check_plain(r: &Seen, url: &str, body_len: usize) -> Result<String> {
    if r.status != 200
        || r.header("location").is_some()
        || r.header("strict-transport-security").is_some()
        || r.header("x-backend") != Some("bench")
        || !body_ok(&r.body, body_len)
    {
        bail!(
            "port 80, not-enforced host: expected 200 from the backend (X-Backend: bench, {body_len}-byte body) without Location or HSTS, got {} with Location {:?}, HSTS {:?}, X-Backend {:?} and a {}-byte body",
            r.status,
            r.header("location"),
            r.header("strict-transport-security"),
            r.header("x-backend"),
            r.body.len()
        );
    }
    Ok(format!(
        "GET {url} ({}) → 200 from the backend, {}-byte body, no Location, no Strict-Transport-Security",
        r.version,
        r.body.len()
    ))
}

/// Checks the 1 MiB answer on 443: `want_version` 200 with HSTS and exactly
/// [`BIG_BODY_BYTES`] bytes.
pub fn check_big(r: &Seen, url: &str, want_version: &str) -> Result<String> {
    if r.version != want_version
        || r.status != 200
        || r.header("strict-transport-security") != Some(HSTS)
        || r.body.len() != BIG_BODY_BYTES
    {
        bail!(
            "HTTPS {url}: expected {want_version} 200 with HSTS {HSTS:?} and a {BIG_BODY_BYTES}-byte body, got {} {} with HSTS {:?} and a {}-byte body",
            r.version,
            r.status,
            r.header("strict-transport-security"),
            r.body.len()
        );
    }
    Ok(format!(
        "GET {url} ({want_version}) → 200, Strict-Transport-Security: {HSTS}, {}-byte body from the backend",
        r.body.len()
    ))
}

/// Verifies the semantics from the client namespace: the redirect on 80, 200 + HSTS + the
/// backend's body on 443 over HTTP/1.1 and HTTP/2 (the small body and the 1 MiB one), and the
/// not-enforced host proxied on 80.
pub fn verify(client_ns: &str, cert: &Path, body_len: usize) -> Result<Checked> {
    let url80 = format!("http://{HOST}/check/path?q=1");
    let want = format!("https://{HOST}/check/path?q=1");
    let r = curl(client_ns, &[&url80])?;
    if r.status != 301 || r.header("location") != Some(want.as_str()) {
        bail!(
            "port 80: expected 301 to {want}, got {} with Location {:?}",
            r.status,
            r.header("location")
        );
    }
    let redirect = format!(
        "GET {url80} → 301, Location: {want}, Connection: {}",
        r.header("connection").unwrap_or("(none)")
    );
    let cacert = cert.display().to_string();
    let url443 = format!("https://{HOST}/");
    let mut https = Vec::new();
    for (flag, want_version) in [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2")] {
        let r = curl(client_ns, &[flag, "--cacert", &cacert, &url443])?;
        if r.version != want_version
            || r.status != 200
            || r.header("strict-transport-security") != Some(HSTS)
            || !body_ok(&r.body, body_len)
        {
            bail!(
                "HTTPS {flag}: expected {want_version} 200 with HSTS {HSTS:?} and the backend's {body_len}-byte body, got {} {} with HSTS {:?} and a {}-byte body",
                r.version,
                r.status,
                r.header("strict-transport-security"),
                r.body.len()
            );
        }
        https.push(format!(
            "GET {url443} ({want_version}) → 200, Strict-Transport-Security: {HSTS}, {}-byte body from the backend",
            r.body.len()
        ));
    }
    let url_big = format!("https://{HOST}{BIG_PATH}");
    let mut big = Vec::new();
    for (flag, want_version) in [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2")] {
        let r = curl(client_ns, &[flag, "--cacert", &cacert, &url_big])?;
        big.push(check_big(&r, &url_big, want_version)?);
    }
    let url_plain = format!("http://{PLAIN_HOST}/check/path?q=1");
    let plain_http = check_plain(&curl(client_ns, &[&url_plain])?, &url_plain, body_len)?;
    let tls = tls_facts(client_ns)?;
    Ok(Checked {
        redirect,
        https_h2: https.pop().unwrap_or_default(),
        https_h1: https.pop().unwrap_or_default(),
        plain_http,
        big_h2: big.pop().unwrap_or_default(),
        big_h1: big.pop().unwrap_or_default(),
        tls,
    })
}

/// What an OpenSSL client (the library wrk and h2load use) negotiates with the peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TlsFacts {
    pub protocol: String,
    pub cipher: String,
    pub key_exchange: String,
    pub alpn: String,
}

/// `openssl s_client` output → the negotiated protocol, cipher, key exchange and ALPN.
pub fn parse_s_client(out: &str) -> TlsFacts {
    let mut f = TlsFacts::default();
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("New, ") {
            if let Some((proto, cipher)) = rest.split_once(", Cipher is ") {
                f.protocol = proto.trim().to_string();
                f.cipher = cipher.trim().to_string();
            }
        } else if let Some(rest) = line.strip_prefix("Server Temp Key:") {
            f.key_exchange = rest.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("Negotiated TLS1.3 group:") {
            f.key_exchange = rest.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("ALPN protocol:") {
            f.alpn = rest.trim().to_string();
        }
    }
    f
}

fn tls_facts(client_ns: &str) -> Result<TlsFacts> {
    let mut c = netns::exec(client_ns, "openssl");
    c.args([
        "s_client",
        "-connect",
        &format!("{HOST}:443"),
        "-servername",
        HOST,
        "-alpn",
        "h2,http/1.1",
    ])
    .stdin(std::process::Stdio::null());
    let out = cmd::output(&mut c)?;
    let f = parse_s_client(&String::from_utf8_lossy(&out.stdout));
    if f.protocol.is_empty() {
        bail!(
            "openssl s_client could not complete a handshake: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_files() -> Files {
        Files {
            cert: "/t/cert.pem".into(),
            key: "/t/key.pem".into(),
            combined: "/t/combined.pem".into(),
        }
    }

    #[test]
    fn configs_carry_the_same_semantics() {
        let files = ctx_files();
        let ctx = PeerCtx {
            files: &files,
            force_https: Path::new("/t/force-https"),
            dir: Path::new("/t/peer"),
            edge_ns: "fhb-1-edge",
            edge_if: "fb1e",
            xdp_mode: "native",
            max_connections: 9000,
            nofile: 20000,
            access_log: false,
            https_rewrites: false,
            backend_pool: BACKEND_POOL,
            answer_syn: true,
            callgrind: false,
        };
        for kind in PeerKind::ALL {
            let (_, text) = config(kind, &ctx);
            if kind != PeerKind::Haproxy {
                // HAProxy's redirect and frontends do not name the host.
                assert!(text.contains("bench.example"), "{kind:?}");
            }
            assert!(text.contains("127.0.0.1:8080"), "{kind:?}");
            assert!(text.contains("64"), "{kind:?}: pool size");
            if !kind.is_force_https() {
                assert!(text.contains("max-age=31536000"), "{kind:?}");
                assert!(text.contains("301"), "{kind:?}");
            }
            // Every peer serves the not-enforced host (http-proxied-keepalive).
            assert!(text.contains("plain.bench.example"), "{kind:?}");
        }
        assert_eq!(max_connections(20000), 9872);
        assert_eq!(max_connections(65536), 16384);
        let (_, xdp) = config(PeerKind::ForceHttpsXdp, &ctx);
        assert!(xdp.contains("max_connections = 9000"));
        assert!(xdp.contains("[xdp]\ninterface = \"fb1e\"\nmode = \"native\""));
        let (_, plain) = config(PeerKind::ForceHttps, &ctx);
        assert!(!plain.contains("[xdp]"));
        // The baseline build runs force-https's own config: only the binary differs.
        let (_, baseline) = config(PeerKind::Baseline, &ctx);
        assert_eq!(
            baseline.split_once('\n').unwrap().1,
            plain.split_once('\n').unwrap().1,
            "all but the comment that names the peer"
        );
        assert!(PeerKind::Baseline.is_force_https());
        assert_eq!(PeerKind::Baseline.package(), None);
        assert!(!PeerKind::ALL.contains(&PeerKind::Baseline));
        for s in [
            "force_https = true",
            "name = \"plain\"\ndomains = [\"plain.bench.example\"]\nbackend = \"http://127.0.0.1:8080\"\nforce_https = false\n",
        ] {
            assert!(plain.contains(s), "force-https lacks {s}");
        }
        // The plain site has no certificate, and the bench site's options stay on it.
        let (_, rewrites) = config(
            PeerKind::ForceHttps,
            &PeerCtx {
                https_rewrites: true,
                ..ctx
            },
        );
        let at = rewrites.find("https_rewrites = true").unwrap();
        assert!(at < rewrites.find("name = \"plain\"").unwrap());
        assert_eq!(rewrites.matches("tls = {").count(), 1);
        let (_, nginx) = config(PeerKind::Nginx, &ctx);
        for s in [
            "return 301 https://$host$request_uri;",
            "keepalive 64;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "always;",
            "worker_processes 1;",
            "worker_connections 9064;",
            "listen 80;\n        server_name plain.bench.example;\n",
            "proxy_max_temp_file_size 0;",
        ] {
            assert!(nginx.contains(s), "nginx lacks {s}");
        }
        // Both port-80 servers proxy with the same pool and headers as the 443 one.
        assert_eq!(nginx.matches("proxy_pass http://bench_backend;").count(), 2);
        assert_eq!(
            nginx.matches("proxy_set_header Connection \"\";").count(),
            2
        );
        assert_eq!(
            nginx
                .matches("add_header Strict-Transport-Security")
                .count(),
            1
        );
        let (_, ha) = config(PeerKind::Haproxy, &ctx);
        for s in [
            "http-request redirect scheme https code 301",
            "alpn h2,http/1.1",
            "nbthread 1",
            "http-reuse always",
            "maxconn 9000",
            "acl plain_host hdr(host) -i plain.bench.example plain.bench.example:80",
            "http-request redirect scheme https code 301 unless plain_host",
            "use_backend bench_backend if plain_host",
            "Forwarded \"for=%[src];proto=http;host=%[req.hdr(host)]\"",
        ] {
            assert!(ha.contains(s), "haproxy lacks {s}");
        }
        // HSTS only in the 443 frontend.
        let https = ha.find("frontend https443").unwrap();
        assert!(ha.find("Strict-Transport-Security").unwrap() > https);
        assert!(ha.find("use_backend bench_backend if plain_host").unwrap() < https);
        let (_, caddy) = config(PeerKind::Caddy, &ctx);
        for s in [
            "redir https://{host}{uri} 301",
            "tls /t/cert.pem /t/key.pem",
            "auto_https off",
            "admin off",
            "http://plain.bench.example {\n    reverse_proxy 127.0.0.1:8080 {",
            "proto=http;host={host}",
        ] {
            assert!(caddy.contains(s), "caddy lacks {s}");
        }
        assert_eq!(caddy.matches("keepalive_idle_conns 64").count(), 2);
        let plain_block = &caddy[caddy.find("http://plain.bench.example").unwrap()..];
        assert!(!plain_block.contains("Strict-Transport-Security"));
    }

    #[test]
    fn curl_output() {
        let s = Seen::parse(
            "HTTP/2 200 \r\nstrict-transport-security: max-age=31536000\r\ncontent-length: 4\r\n\r\nok.\n",
        )
        .unwrap();
        assert_eq!((s.version.as_str(), s.status), ("HTTP/2", 200));
        assert_eq!(s.header("Strict-Transport-Security"), Some(HSTS));
        assert_eq!(s.body, "ok.\n");
        assert!(Seen::parse("").is_err());
    }

    #[test]
    fn plain_and_big_checks() {
        let ok128 = format!("ok{}\n", ".".repeat(125));
        let seen = |head: &str, body: &str| Seen::parse(&format!("{head}\r\n\r\n{body}")).unwrap();
        let url = "http://plain.bench.example/check/path?q=1";
        let good = seen("HTTP/1.1 200 OK\r\nX-Backend: bench", &ok128);
        assert!(
            check_plain(&good, url, FIXED_BODY_BYTES)
                .unwrap()
                .contains("→ 200 from the backend, 128-byte body")
        );
        for bad in [
            seen(
                "HTTP/1.1 301 Moved\r\nLocation: https://plain.bench.example/",
                "",
            ),
            seen(
                "HTTP/1.1 200 OK\r\nX-Backend: bench\r\nStrict-Transport-Security: max-age=1",
                &ok128,
            ),
            seen("HTTP/1.1 200 OK", &ok128),
            seen("HTTP/1.1 200 OK\r\nX-Backend: bench", "ok\n"),
        ] {
            assert!(check_plain(&bad, url, FIXED_BODY_BYTES).is_err(), "{bad:?}");
        }
        let big = "x".repeat(BIG_BODY_BYTES);
        let url = "https://bench.example/big";
        let h2 = seen(
            "HTTP/2 200\r\nstrict-transport-security: max-age=31536000",
            &big,
        );
        assert!(
            check_big(&h2, url, "HTTP/2")
                .unwrap()
                .contains("1048576-byte body")
        );
        assert!(check_big(&h2, url, "HTTP/1.1").is_err());
        let short = seen(
            "HTTP/2 200\r\nstrict-transport-security: max-age=31536000",
            &ok128,
        );
        assert!(check_big(&short, url, "HTTP/2").is_err());
        let no_hsts = seen("HTTP/2 200", &big);
        assert!(check_big(&no_hsts, url, "HTTP/2").is_err());
    }

    #[test]
    fn s_client_output() {
        let out = "CONNECTED(00000003)\n---\nNew, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384\n\
                   Server public key is 256 bit\nServer Temp Key: X25519, 253 bits\n\
                   ALPN protocol: h2\nEarly data was not sent\n";
        let f = parse_s_client(out);
        assert_eq!(f.protocol, "TLSv1.3");
        assert_eq!(f.cipher, "TLS_AES_256_GCM_SHA384");
        assert_eq!(f.key_exchange, "X25519, 253 bits");
        assert_eq!(f.alpn, "h2");
    }
}
