//! Harness for the black-box tests of `force-https`.
//!
//! Every test builds its own pair of network namespaces ([`Netns`]): an "edge" namespace where the
//! daemon ([`Daemon`]) and the test backends ([`Backend`]) run, and a "client" namespace linked to
//! it by a veth pair. Only 198.51.100.0/24, 2001:db8::/32 and loopback are used:
//!
//! | namespace | IPv4 | IPv6 |
//! |---|---|---|
//! | edge | 198.51.100.1/24 | 2001:db8:1::1/64 |
//! | client | 198.51.100.2/24 | 2001:db8:1::2/64 |
//!
//! Requests are sent from the client namespace: raw bytes ([`raw_request`], [`raw_exchange`],
//! [`http_request`]), curl ([`curl`]) or any Rust client inside [`Netns::run_in_client`].
//!
//! Binaries: `$FORCE_HTTPS_BIN`, else `force-https` next to the test binary's profile directory
//! (normally `target/debug/force-https`; build it with `cargo build -p force-https-userspace`).
//! `$FH_BACKEND_BIN`, else `fh-backend` from the same directory (cargo builds it for the tests).
//! The daemon logs with `RUST_LOG=$FHT_RUST_LOG` (default `info`; for example
//! `FHT_RUST_LOG=info,force_https=debug` to see refused handshakes and retried requests).
//!
//! Tests that need root call [`require_root`] first: without root (or without a usable
//! `ip netns`) they print `skipping: needs root` and return, except under `CI=true`, where they
//! fail.

pub mod pki;
/// The XDP pass program for a veth's client end (shared with `cargo xtask bench`).
#[path = "../../xtask/src/xdp_pass.rs"]
pub mod xdp_pass;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use serde_json;

pub mod admin;
pub mod browser;

/// The edge namespace's IPv4 address (the daemon listens here).
pub const EDGE_V4: &str = "198.51.100.1";
/// The client namespace's IPv4 address.
pub const CLIENT_V4: &str = "198.51.100.2";
/// The edge namespace's IPv6 address.
pub const EDGE_V6: &str = "2001:db8:1::1";
/// The client namespace's IPv6 address.
pub const CLIENT_V6: &str = "2001:db8:1::2";

/// Port 80 on the edge, IPv4.
pub fn edge80() -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 1], 80))
}

/// Port 80 on the edge, IPv6.
pub fn edge80_v6() -> SocketAddr {
    format!("[{EDGE_V6}]:80").parse().expect("v6 addr")
}

/// Bound for one outside command (ip, curl, the CLI).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Root / CI policy
// ---------------------------------------------------------------------------------------------

/// Whether this is a CI run (`CI=true`): tests that cannot run fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn root_check() -> &'static Result<(), String> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    CHECK.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        let probe = format!("fht-{}-probe", std::process::id());
        let add = Command::new("ip").args(["netns", "add", &probe]).output();
        match add {
            Ok(o) if o.status.success() => {
                let _ = Command::new("ip").args(["netns", "del", &probe]).output();
                Ok(())
            }
            Ok(o) => Err(format!(
                "`ip netns add` failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run `ip`: {e}")),
        }
    })
}

/// True when the test may go on (root and a working `ip netns`). Otherwise prints
/// `skipping: needs root` and returns false — or panics when `CI=true`, since CI must never
/// skip silently.
pub fn require_root() -> bool {
    match root_check() {
        Ok(()) => true,
        Err(why) => {
            if in_ci() {
                panic!(
                    "this test needs root and a usable `ip netns` ({why}); CI=true, so failing instead of skipping"
                );
            }
            eprintln!("skipping: needs root ({why})");
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// Runs `cmd` to completion with captured stdout/stderr, killing it and panicking after `timeout`.
pub fn output_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("command timed out after {timeout:?}: {desc}");
            }
            Err(e) => panic!("wait {desc}: {e}"),
        }
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// Runs a command that must succeed (setup steps).
fn run_ok(cmd: &mut Command) {
    let desc = format!("{cmd:?}");
    let o = output_timeout(cmd, CMD_TIMEOUT);
    assert!(
        o.status.success(),
        "{desc} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Convenience view of an [`Output`].
pub trait OutputExt {
    /// The exit code (-1 when killed by a signal).
    fn code(&self) -> i32;
    /// stdout, lossy UTF-8.
    fn out(&self) -> String;
    /// stderr, lossy UTF-8.
    fn err(&self) -> String;
    /// A one-line-per-stream summary for assertion messages.
    fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code(),
            self.out(),
            self.err()
        )
    }
}

impl OutputExt for Output {
    fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Directory holding the built binaries (`target/<profile>`), derived from the running test
/// executable (`target/<profile>/deps/NAME-HASH`), else `<workspace>/target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(deps) = exe.parent()
        && deps.file_name() == Some(OsStr::new("deps"))
        && let Some(profile) = deps.parent()
    {
        return profile.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("debug")
}

/// Path of the daemon binary (`$FORCE_HTTPS_BIN`, else next to the tests). Panics when missing.
pub fn force_https_bin() -> PathBuf {
    let p = match std::env::var_os("FORCE_HTTPS_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let near = bin_dir().join("force-https");
            if near.exists() {
                near
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/force-https")
            }
        }
    };
    assert!(
        p.exists(),
        "force-https binary not found at {} (build it with `cargo build -p force-https-userspace` or set FORCE_HTTPS_BIN)",
        p.display()
    );
    p
}

/// Path of the `fh-backend` binary (`$FH_BACKEND_BIN`, else next to the tests). Panics when missing.
pub fn backend_bin() -> PathBuf {
    let p = match std::env::var_os("FH_BACKEND_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let near = bin_dir().join("fh-backend");
            if near.exists() {
                near
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/fh-backend")
            }
        }
    };
    assert!(
        p.exists(),
        "fh-backend not found at {} (cargo build -p force-https-tests, or set FH_BACKEND_BIN)",
        p.display()
    );
    p
}

/// Runs `force-https ARGS` on the host (no namespace), bounded by [`CMD_TIMEOUT`].
pub fn cli(args: &[&str]) -> Output {
    output_timeout(Command::new(force_https_bin()).args(args), CMD_TIMEOUT)
}

/// A `force-https ARGS` command on the host, for callers that need to adjust it.
pub fn cli_command(args: &[&str]) -> Command {
    let mut c = Command::new(force_https_bin());
    c.args(args);
    c
}

// ---------------------------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------------------------

static NS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// An edge + client namespace pair joined by a veth pair. Dropping it deletes both namespaces
/// (and with them the veth pair).
pub struct Netns {
    /// Name of the edge namespace (`fht-<pid>-<n>-edge`).
    pub edge: String,
    /// Name of the client namespace (`fht-<pid>-<n>-cli`).
    pub client: String,
    /// The edge end of the veth pair.
    pub veth_edge: String,
    /// The client end of the veth pair.
    pub veth_client: String,
}

fn netns_add(name: &str) {
    let o = output_timeout(Command::new("ip").args(["netns", "add", name]), CMD_TIMEOUT);
    if !o.status.success() {
        // A leftover from an earlier run with the same pid: remove it and try once more.
        let _ = output_timeout(Command::new("ip").args(["netns", "del", name]), CMD_TIMEOUT);
        run_ok(Command::new("ip").args(["netns", "add", name]));
    }
}

fn ip_batch(ns: &str, script: &str) {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ip -batch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write ip batch");
    let o = child.wait_with_output().expect("ip -batch");
    assert!(
        o.status.success(),
        "ip -n {ns} -batch failed:\n{script}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Netns {
    /// Creates the pair of namespaces, the veth pair and the addresses; `lo` is up in both.
    pub fn new() -> Netns {
        let pid = std::process::id();
        let n = NS_COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = Netns {
            edge: format!("fht-{pid}-{n}-edge"),
            client: format!("fht-{pid}-{n}-cli"),
            veth_edge: format!("fh{pid}x{n}a"),
            veth_client: format!("fh{pid}x{n}b"),
        };
        assert!(
            ns.veth_edge.len() <= 15,
            "veth name too long: {}",
            ns.veth_edge
        );
        netns_add(&ns.edge);
        netns_add(&ns.client);
        run_ok(Command::new("ip").args([
            "-n",
            &ns.edge,
            "link",
            "add",
            &ns.veth_edge,
            "type",
            "veth",
            "peer",
            "name",
            &ns.veth_client,
            "netns",
            &ns.client,
        ]));
        ip_batch(
            &ns.edge,
            &format!(
                "link set lo up\nlink set {v} up\naddr add {EDGE_V4}/24 dev {v}\naddr add {EDGE_V6}/64 dev {v} nodad\n",
                v = ns.veth_edge
            ),
        );
        ip_batch(
            &ns.client,
            &format!(
                "link set lo up\nlink set {v} up\naddr add {CLIENT_V4}/24 dev {v}\naddr add {CLIENT_V6}/64 dev {v} nodad\n",
                v = ns.veth_client
            ),
        );
        ns
    }

    /// Absolute values of the edge namespace's SNMP counters (`nstat -asz NAMES`, history
    /// untouched), in the order of `names`; 0 for a counter nstat does not print.
    pub fn edge_nstat(&self, names: &[&str]) -> Vec<u64> {
        let mut args = vec!["nstat", "-asz"];
        args.extend_from_slice(names);
        let out = output_timeout(&mut self.edge_cmd(&args), CMD_TIMEOUT).out();
        names
            .iter()
            .map(|n| {
                out.lines()
                    .find_map(|l| {
                        let mut f = l.split_whitespace();
                        (f.next() == Some(n)).then(|| f.next().and_then(|v| v.parse().ok()))?
                    })
                    .unwrap_or(0)
            })
            .collect()
    }

    /// `ip netns exec EDGE ARGS...`
    pub fn edge_cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.edge]).args(args);
        c
    }

    /// `ip netns exec CLIENT ARGS...`
    pub fn cli_cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.client]).args(args);
        c
    }

    /// Runs `f` on a thread that has entered the client namespace; sockets it opens (std or a
    /// tokio runtime created inside `f`) live there. Panics inside `f` propagate.
    pub fn run_in_client<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> R {
        run_in_netns(&self.client, f)
    }

    /// Like [`Netns::run_in_client`], in the edge namespace.
    pub fn run_in_edge<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> R {
        run_in_netns(&self.edge, f)
    }

    /// True when something listens on TCP `port` in the edge namespace (IPv4 or IPv6 as asked).
    pub fn edge_listening(&self, port: u16, v6: bool) -> bool {
        self.run_in_edge(|| {
            let file = if v6 {
                "/proc/thread-self/net/tcp6"
            } else {
                "/proc/thread-self/net/tcp"
            };
            let text = fs::read_to_string(file).unwrap_or_default();
            let want = format!(":{port:04X}");
            text.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
            })
        })
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in [&self.client, &self.edge] {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Moves the calling thread into the named network namespace.
pub fn enter_netns(name: &str) {
    let path = format!("/run/netns/{name}");
    let f = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: a valid namespace fd; setns only changes this thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
}

/// Runs `f` on a scoped thread inside namespace `name`.
pub fn run_in_netns<R: Send, F: FnOnce() -> R + Send>(name: &str, f: F) -> R {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            enter_netns(name);
            f()
        });
        match h.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// A TOML basic string literal for `s`.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_str_array(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", items.join(", "))
}

/// One `[[site]]` table.
#[derive(Clone, Debug, Default)]
pub struct Site {
    pub name: String,
    pub domains: Vec<String>,
    pub backend: Option<String>,
    pub force_https: bool,
    /// Raw TOML value: `"auto"`, `301`, `308`.
    pub redirect_code: Option<String>,
    pub exempt_paths: Vec<String>,
    pub acme_exempt: Option<bool>,
    /// Raw TOML lines added inside the table.
    pub extra: String,
}

impl Site {
    /// A site with a name and domains, no backend, not enforced.
    pub fn new(name: &str, domains: &[&str]) -> Site {
        Site {
            name: name.into(),
            domains: domains.iter().map(|s| s.to_string()).collect(),
            ..Site::default()
        }
    }
    /// Sets the backend URL.
    pub fn backend(mut self, url: &str) -> Site {
        self.backend = Some(url.into());
        self
    }
    /// `force_https = true`.
    pub fn enforced(mut self) -> Site {
        self.force_https = true;
        self
    }
    /// `redirect_code = 301 | 308` (numbers) or `"auto"`.
    pub fn redirect_code(mut self, raw_toml_value: &str) -> Site {
        self.redirect_code = Some(raw_toml_value.into());
        self
    }
    /// Adds an `exempt_paths` entry.
    pub fn exempt(mut self, prefix: &str) -> Site {
        self.exempt_paths.push(prefix.into());
        self
    }
    /// `acme_exempt = ..`.
    pub fn acme_exempt(mut self, v: bool) -> Site {
        self.acme_exempt = Some(v);
        self
    }
    /// Adds a raw TOML line inside the table.
    pub fn raw(mut self, line: &str) -> Site {
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }

    fn render(&self, out: &mut String) {
        out.push_str("\n[[site]]\n");
        let _ = writeln!(out, "name = {}", toml_str(&self.name));
        let _ = writeln!(out, "domains = {}", toml_str_array(&self.domains));
        if let Some(b) = &self.backend {
            let _ = writeln!(out, "backend = {}", toml_str(b));
        }
        let _ = writeln!(out, "force_https = {}", self.force_https);
        if let Some(c) = &self.redirect_code {
            let _ = writeln!(out, "redirect_code = {c}");
        }
        if !self.exempt_paths.is_empty() {
            let _ = writeln!(out, "exempt_paths = {}", toml_str_array(&self.exempt_paths));
        }
        if let Some(a) = self.acme_exempt {
            let _ = writeln!(out, "acme_exempt = {a}");
        }
        out.push_str(&self.extra);
    }
}

/// A daemon config. `render` produces TOML with the listeners on port 80 (v4 + v6), TLS off, and
/// state dir / control socket inside the daemon's temp dir.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub sites: Vec<Site>,
    pub https_port: Option<u16>,
    pub default_host: Option<String>,
    pub max_connections: Option<u64>,
    pub max_head_bytes: Option<u64>,
    pub head_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub response_timeout_ms: Option<u64>,
    /// Serve TLS on 443 (needs a certificate in `extra` or a site).
    pub https: bool,
    /// Raw TOML appended at the end; must start with a table header.
    pub extra: String,
    /// Replaces the whole text; `{STATE_DIR}` and `{CONTROL_SOCKET}` are substituted.
    pub raw: Option<String>,
}

impl Config {
    /// An empty config (no sites).
    pub fn new() -> Config {
        Config::default()
    }
    /// A config given as raw TOML text (`{STATE_DIR}`, `{CONTROL_SOCKET}` substituted).
    pub fn raw(text: &str) -> Config {
        Config {
            raw: Some(text.into()),
            ..Config::default()
        }
    }
    /// Adds a site.
    pub fn site(mut self, s: Site) -> Config {
        self.sites.push(s);
        self
    }
    /// `redirect.https_port`.
    pub fn https_port(mut self, p: u16) -> Config {
        self.https_port = Some(p);
        self
    }
    /// `redirect.default_host`.
    pub fn default_host(mut self, h: &str) -> Config {
        self.default_host = Some(h.into());
        self
    }
    /// `limits.head_timeout_ms`.
    pub fn head_timeout_ms(mut self, ms: u64) -> Config {
        self.head_timeout_ms = Some(ms);
        self
    }
    /// `proxy.response_timeout_ms`.
    pub fn response_timeout_ms(mut self, ms: u64) -> Config {
        self.response_timeout_ms = Some(ms);
        self
    }
    /// Serves TLS on 443 as well.
    pub fn https(mut self) -> Config {
        self.https = true;
        self
    }
    /// Appends raw TOML (starting with a table header).
    pub fn extra(mut self, toml: &str) -> Config {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// The config text.
    pub fn render(&self, state_dir: &Path, socket: &Path) -> String {
        let sd = state_dir.to_str().expect("utf-8 path");
        let cs = socket.to_str().expect("utf-8 path");
        if let Some(raw) = &self.raw {
            return raw
                .replace("{STATE_DIR}", sd)
                .replace("{CONTROL_SOCKET}", cs);
        }
        let mut out = String::new();
        out.push_str("[listen]\nhttp = [\"0.0.0.0:80\", \"[::]:80\"]\n");
        out.push_str(if self.https {
            "https = [\"0.0.0.0:443\", \"[::]:443\"]\n\n"
        } else {
            "https = []\n\n"
        });
        let _ = writeln!(
            out,
            "[state]\ndir = {}\ncontrol_socket = {}",
            toml_str(sd),
            toml_str(cs)
        );
        if self.https_port.is_some() || self.default_host.is_some() {
            out.push_str("\n[redirect]\n");
            if let Some(p) = self.https_port {
                let _ = writeln!(out, "https_port = {p}");
            }
            if let Some(h) = &self.default_host {
                let _ = writeln!(out, "default_host = {}", toml_str(h));
            }
        }
        let limits = [
            ("max_connections", self.max_connections),
            ("max_head_bytes", self.max_head_bytes),
            ("head_timeout_ms", self.head_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ];
        if limits.iter().any(|(_, v)| v.is_some()) {
            out.push_str("\n[limits]\n");
            for (k, v) in limits {
                if let Some(v) = v {
                    let _ = writeln!(out, "{k} = {v}");
                }
            }
        }
        let proxy = [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("response_timeout_ms", self.response_timeout_ms),
        ];
        if proxy.iter().any(|(_, v)| v.is_some()) {
            out.push_str("\n[proxy]\n");
            for (k, v) in proxy {
                if let Some(v) = v {
                    let _ = writeln!(out, "{k} = {v}");
                }
            }
        }
        for s in &self.sites {
            s.render(&mut out);
        }
        if !self.extra.is_empty() {
            out.push('\n');
            out.push_str(&self.extra);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Daemon
// ---------------------------------------------------------------------------------------------

/// How long [`Daemon::wait_ready`] waits.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `force-https run` process in the edge namespace, with its config, state dir and control
/// socket in a temp dir. Drop kills it (only it) and prints the log tail when the test panics.
pub struct Daemon {
    edge_ns: String,
    dir: tempfile::TempDir,
    /// The config file.
    pub config_path: PathBuf,
    /// `state.dir`.
    pub state_dir: PathBuf,
    /// `state.control_socket`.
    pub socket: PathBuf,
    /// stdout + stderr of every run, appended.
    pub log_path: PathBuf,
    default_listeners: bool,
    child: Option<Child>,
}

impl Daemon {
    /// Writes the config and starts nothing yet (e.g. to seed a state file first).
    pub fn prepare(ns: &Netns, cfg: &Config) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("fht-")
            .tempdir()
            .expect("tempdir");
        let state_dir = dir.path().join("state");
        let socket = dir.path().join("control.sock");
        let config_path = dir.path().join("config.toml");
        let log_path = dir.path().join("daemon.log");
        fs::write(&config_path, cfg.render(&state_dir, &socket)).expect("write config");
        Daemon {
            edge_ns: ns.edge.clone(),
            dir,
            config_path,
            state_dir,
            socket,
            log_path,
            default_listeners: cfg.raw.is_none(),
            child: None,
        }
    }

    /// Writes the config, starts the daemon and waits until it is ready.
    pub fn start(ns: &Netns, cfg: &Config) -> Daemon {
        let mut d = Daemon::prepare(ns, cfg);
        d.launch();
        d.wait_ready();
        d
    }

    /// Writes the config and starts the daemon without waiting.
    pub fn spawn(ns: &Netns, cfg: &Config) -> Daemon {
        let mut d = Daemon::prepare(ns, cfg);
        d.launch();
        d
    }

    /// The temp dir holding config, state, socket and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `state.dir/state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    /// Starts `ip netns exec EDGE force-https run --config F` (`RUST_LOG` from `FHT_RUST_LOG`,
    /// `info` by default; output appended to the log file).
    pub fn launch(&mut self) {
        assert!(
            self.child.is_none() || self.try_status().is_some(),
            "daemon already running"
        );
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open log");
        let log2 = log.try_clone().expect("clone log fd");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.edge_ns])
            .arg(force_https_bin())
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .env(
                "RUST_LOG",
                std::env::var("FHT_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawn force-https run");
        self.child = Some(child);
    }

    /// The daemon's pid (`ip netns exec` execs in place).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon not started").id()
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child.is_some() && self.try_status().is_none()
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let v: Vec<&str> = log.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// Polls `force-https stats --config F` (and the port-80 listeners) until ready; panics with
    /// the log after [`READY_TIMEOUT`] or if the daemon exits.
    pub fn wait_ready(&mut self) {
        let start = Instant::now();
        let mut last = String::new();
        for _ in 0..400 {
            if let Some(st) = self.try_status() {
                panic!(
                    "force-https exited during startup ({st}); log:\n{}",
                    self.log()
                );
            }
            let o = self.cli(&["stats"]);
            if o.status.success() {
                if !self.default_listeners
                    || run_in_netns(&self.edge_ns, || listening_80(false) && listening_80(true))
                {
                    return;
                }
                last = "control socket answers but port 80 is not listening yet".into();
            } else {
                last = o.describe();
            }
            if start.elapsed() > READY_TIMEOUT {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "force-https not ready after {READY_TIMEOUT:?}; last probe: {last}\nlog:\n{}",
            self.log()
        );
    }

    /// `force-https stats --json`, parsed (panics when the command fails).
    pub fn stats_json(&self) -> serde_json::Value {
        let out = self.cli(&["stats", "--json"]);
        assert!(out.status.success(), "stats: {}", out.err());
        serde_json::from_slice(&out.stdout).expect("stats JSON")
    }

    /// One counter of `force-https stats --json` (0 when it is not reported).
    pub fn counter(&self, name: &str) -> u64 {
        let out = self.cli(&["stats", "--json"]);
        assert!(out.status.success(), "stats: {}", out.err());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
        v[name].as_u64().unwrap_or(0)
    }

    /// `force-https ARGS --config F` on the host.
    pub fn cli(&self, args: &[&str]) -> Output {
        let cfg = self.config_path.to_str().expect("utf-8");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", cfg]);
        cli(&all)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("daemon not started");
        let _ = child.kill();
        child.wait().expect("wait after kill")
    }

    /// Sends SIGTERM (does not wait).
    pub fn sigterm(&self) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the daemon if running (SIGTERM, then SIGKILL after 10 s), starts it again with the
    /// same config and waits until ready.
    pub fn restart(&mut self) {
        if self.running() {
            self.sigterm();
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                self.kill9();
            }
        }
        self.launch();
        self.wait_ready();
    }
}

fn listening_80(v6: bool) -> bool {
    let file = if v6 {
        "/proc/thread-self/net/tcp6"
    } else {
        "/proc/thread-self/net/tcp"
    };
    let text = fs::read_to_string(file).unwrap_or_default();
    text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(":0050") && f[3] == "0A"
    })
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- force-https log ({}) tail ----\n{}\n---- end ----",
                self.log_path.display(),
                self.log_tail(80)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backend
// ---------------------------------------------------------------------------------------------

/// An `fh-backend` in the edge namespace on 127.0.0.1:PORT.
pub struct Backend {
    child: Child,
    dir: tempfile::TempDir,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its `--name`.
    pub name: String,
}

impl Backend {
    /// Starts `fh-backend --listen 127.0.0.1:PORT --name NAME` in the edge namespace.
    pub fn start(ns: &Netns, name: &str, port: u16) -> Backend {
        Backend::start_with(ns, name, port, &[])
    }

    /// Same, with extra arguments (`--delay-ms N`, `--hsts V`).
    pub fn start_with(ns: &Netns, name: &str, port: u16, extra: &[&str]) -> Backend {
        let dir = tempfile::Builder::new()
            .prefix("fhb-")
            .tempdir()
            .expect("tempdir");
        let out_path = dir.path().join("stdout");
        let err_path = dir.path().join("stderr");
        let out = File::create(&out_path).expect("stdout file");
        let err = File::create(&err_path).expect("stderr file");
        let listen = format!("127.0.0.1:{port}");
        let mut child = ns
            .edge_cmd(&[
                backend_bin().as_os_str(),
                OsStr::new("--listen"),
                OsStr::new(&listen),
                OsStr::new("--name"),
                OsStr::new(name),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn fh-backend");
        let start = Instant::now();
        for _ in 0..500 {
            let text = fs::read_to_string(&out_path).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.starts_with("listening on ")) {
                let addr = line["listening on ".len()..]
                    .trim()
                    .parse()
                    .expect("backend address");
                return Backend {
                    child,
                    dir,
                    addr,
                    name: name.into(),
                };
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "fh-backend exited ({st}): {}",
                    fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            if start.elapsed() > Duration::from_secs(5) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "fh-backend did not start: {}",
            fs::read_to_string(&err_path).unwrap_or_default()
        );
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the backend wrote to stderr.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP from the client namespace
// ---------------------------------------------------------------------------------------------

/// What came back on a raw connection.
#[derive(Debug, Clone)]
pub struct RawOutcome {
    /// Every byte read.
    pub bytes: Vec<u8>,
    /// True when the peer closed (EOF or reset); false when the timeout hit first.
    pub closed: bool,
    /// From connect to close (or timeout).
    pub elapsed: Duration,
}

impl RawOutcome {
    /// The bytes as lossy UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// In the calling thread's namespace: connects, writes `bytes` (write errors are ignored: the
/// server may answer and close early), then reads until EOF/reset or `timeout`.
pub fn raw_exchange_here(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> RawOutcome {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.set_nodelay(true);
    let _ = s.write_all(bytes);
    read_to_close(&mut s, start, timeout)
}

/// Reads from an already open connection until EOF/reset or `timeout`.
pub fn raw_exchange_on(s: &mut TcpStream, timeout: Duration) -> RawOutcome {
    read_to_close(s, Instant::now(), timeout)
}

fn read_to_close(s: &mut TcpStream, start: Instant, timeout: Duration) -> RawOutcome {
    let deadline = start + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return RawOutcome {
                bytes: out,
                closed: false,
                elapsed: start.elapsed(),
            };
        }
        s.set_read_timeout(Some(deadline - now))
            .expect("set_read_timeout");
        match s.read(&mut buf) {
            Ok(0) => {
                return RawOutcome {
                    bytes: out,
                    closed: true,
                    elapsed: start.elapsed(),
                };
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return RawOutcome {
                    bytes: out,
                    closed: false,
                    elapsed: start.elapsed(),
                };
            }
            Err(_) => {
                return RawOutcome {
                    bytes: out,
                    closed: true,
                    elapsed: start.elapsed(),
                };
            }
        }
    }
}

/// From the client namespace: sends `bytes` to `addr` and reads until close (`timeout`).
pub fn raw_exchange(ns: &Netns, addr: SocketAddr, bytes: &[u8], timeout: Duration) -> RawOutcome {
    ns.run_in_client(|| raw_exchange_here(addr, bytes, timeout))
}

/// From the client namespace: sends exactly `bytes`, returns everything read until EOF (5 s).
pub fn raw_request(ns: &Netns, addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    raw_exchange(ns, addr, bytes, Duration::from_secs(5)).bytes
}

/// A parsed HTTP/1.x response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// The status line and header lines, as received.
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body as lossy UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body lines of an fh-backend answer.
    pub fn body_lines(&self) -> Vec<String> {
        self.body_text().lines().map(str::to_owned).collect()
    }
}

fn find_crlf2(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Reads one response from `s` (Content-Length, chunked, or until close), within `deadline`.
pub fn read_response(s: &mut TcpStream, deadline: Instant) -> std::io::Result<HttpResponse> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    let mut fill = |s: &mut TcpStream, buf: &mut Vec<u8>| -> std::io::Result<usize> {
        let now = Instant::now();
        if now >= deadline {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "response deadline",
            ));
        }
        s.set_read_timeout(Some(deadline - now))?;
        let n = s.read(&mut tmp)?;
        buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    };
    let head_end = loop {
        if let Some(p) = find_crlf2(&buf) {
            break p;
        }
        if fill(s, &mut buf)? == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                format!(
                    "closed before a full head; got {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        Vec::new()
    } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        let mut body = Vec::new();
        loop {
            // chunk-size line
            let line_end = loop {
                if let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                let mut b = std::mem::take(&mut rest);
                if fill(s, &mut b)? == 0 {
                    return Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "eof in chunk size",
                    ));
                }
                rest = b;
            };
            let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| {
                    std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!("bad chunk size {size_text:?}"),
                    )
                })?;
            rest.drain(..line_end + 2);
            if size == 0 {
                // trailers until an empty line
                loop {
                    if let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
                        let empty = p == 0;
                        rest.drain(..p + 2);
                        if empty {
                            break;
                        }
                        continue;
                    }
                    let mut b = std::mem::take(&mut rest);
                    if fill(s, &mut b)? == 0 {
                        break;
                    }
                    rest = b;
                }
                break body;
            }
            while rest.len() < size + 2 {
                let mut b = std::mem::take(&mut rest);
                if fill(s, &mut b)? == 0 {
                    return Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "eof in chunk",
                    ));
                }
                rest = b;
            }
            body.extend_from_slice(&rest[..size]);
            rest.drain(..size + 2);
        }
    } else if let Some(cl) = get("content-length") {
        let n: usize = cl
            .parse()
            .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "bad content-length"))?;
        while rest.len() < n {
            let mut b = std::mem::take(&mut rest);
            if fill(s, &mut b)? == 0 {
                return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "eof in body"));
            }
            rest = b;
        }
        rest.truncate(n);
        rest
    } else {
        loop {
            let mut b = std::mem::take(&mut rest);
            match fill(s, &mut b) {
                Ok(0) => break b,
                Ok(_) => rest = b,
                Err(e) => return Err(e),
            }
        }
    };
    Ok(HttpResponse {
        status,
        head,
        headers,
        body,
    })
}

/// In the calling thread's namespace: sends `bytes` and parses one response (5 s).
pub fn http_request_here(addr: SocketAddr, bytes: &[u8]) -> HttpResponse {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.set_nodelay(true);
    let _ = s.write_all(bytes);
    let r = read_response(&mut s, deadline).unwrap_or_else(|e| {
        panic!(
            "reading response to {:?}: {e}",
            String::from_utf8_lossy(bytes)
        )
    });
    let _ = s.shutdown(Shutdown::Both);
    r
}

/// From the client namespace: sends `bytes` (one request; not HEAD) and parses one response.
pub fn http_request(ns: &Netns, addr: SocketAddr, bytes: &[u8]) -> HttpResponse {
    ns.run_in_client(|| http_request_here(addr, bytes))
}

/// `GET PATH` with `Host: HOST` over IPv4 port 80, parsed.
pub fn get(ns: &Netns, host: &str, path: &str) -> HttpResponse {
    http_request(
        ns,
        edge80(),
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
}

/// `curl --max-time 5 -s -i ARGS` in the client namespace; returns stdout.
pub fn curl(ns: &Netns, args: &[&str]) -> String {
    let o = output_timeout(
        ns.cli_cmd(&["curl", "--max-time", "5", "-s", "-i"])
            .args(args),
        CMD_TIMEOUT,
    );
    o.out()
}

/// The exact redirect response the design doc specifies.
pub fn redirect_bytes(code: u16, location: &str) -> String {
    let reason = match code {
        301 => "Moved Permanently",
        308 => "Permanent Redirect",
        other => panic!("no redirect code {other}"),
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nLocation: {location}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The status code of a raw response (first line), 0 when unparsable.
/// Counter `name` of a `force-https stats --json` object ([`Daemon::stats_json`]); panics when
/// it is missing (a renamed counter must fail the test, not read as 0).
pub fn stat(s: &serde_json::Value, name: &str) -> u64 {
    s.get(name)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("no counter {name} in {s}"))
}

pub fn status_of(bytes: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(bytes);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Bounded poll: calls `f` every `step` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, step: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let max_iter = (timeout.as_millis() / step.as_millis().max(1)) as usize + 2;
    for _ in 0..max_iter {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(step);
    }
    f()
}

/// Parses JSON, panicking with the text on failure.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

// ---------------------------------------------------------------------------------------------
// Processes and certificates
// ---------------------------------------------------------------------------------------------

/// Open descriptors of a process (`/proc/PID/fd`).
pub fn fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of a process, KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A self-signed ECDSA P-256 certificate for `names` (the first is the CN), written as
/// `edge.pem` and `edge.key` in `dir`; returns their paths. It is also the trust anchor a
/// client is given.
pub fn self_signed(dir: &Path, names: &[&str]) -> (String, String) {
    let cert = dir.join("edge.pem").display().to_string();
    let key = dir.join("edge.key").display().to_string();
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let out = output_timeout(
        Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            &format!("/CN={}", names.first().copied().unwrap_or("localhost")),
            "-addext",
            &format!("subjectAltName={san}"),
        ]),
        CMD_TIMEOUT,
    );
    assert!(out.status.success(), "openssl: {}", out.describe());
    (cert, key)
}
