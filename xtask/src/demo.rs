//! `cargo xtask demo` (root): the daemon between two network namespaces, shown with curl.
//!
//! - `fhd-<pid>-edge` runs two `fh-backend`s (shop on 127.0.0.1:8080, blog on 127.0.0.1:8081)
//!   and `force-https run` with a generated config (port 80 and 443 on IPv4 and IPv6, a
//!   throw-away openssl certificate, state and control socket in a temp dir);
//! - `fhd-<pid>-cli` runs curl against 198.51.100.1 / 2001:db8:100::1 over a veth pair;
//! - the XDP fast path is on (`[xdp]` on the edge end of the veth, generic mode: the SYN-ACKs
//!   and FIN ACKs the program sends with `XDP_TX` then reach the peer, which has no XDP program
//!   of its own). The demo shows, from the daemon's counters and the kernel's `nstat`, that
//!   shop's redirect was answered without the kernel (no SYN-ACK of its own, no socket), and
//!   that blog's request was served by the kernel's socket path. Where XDP cannot attach, it says so in one line and goes on with sockets;
//! - every shown command is printed before its output, and every response is checked: shop is
//!   redirected, blog is served until `force-https enable blog.example.com`, and again after
//!   `disable`; blog is served over HTTPS without HSTS, and `curl -L http://shop…` ends on
//!   `https://` with the Strict-Transport-Security header printed.
//!
//! Cleanup always runs: on success, on any failure (after showing the daemon's and backends'
//! output), on Ctrl-C/SIGTERM (the handler only sets a flag that every step checks), and on a
//! panic (`Drop`). It stops only the processes the demo started, deletes both namespaces and
//! removes the temp dir.
//!
//! `cargo xtask demo --fleet` runs `fleet::steps` instead (one etcd, two nodes with `[fleet]`)
//! with the same process, namespace and cleanup machinery.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::cmd::{self, Bins};
use crate::{netns, setup};

const EDGE_V4: &str = "198.51.100.1";
const EDGE_V6: &str = "2001:db8:100::1";
const EDGE_ADDRS: &[&str] = &["198.51.100.1/24", "2001:db8:100::1/64"];
const CLIENT_ADDRS: &[&str] = &["198.51.100.2/24", "2001:db8:100::2/64"];
const SHOP_BACKEND: &str = "127.0.0.1:8080";
const BLOG_BACKEND: &str = "127.0.0.1:8081";
/// How long the daemon and the backends get to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

use crate::interrupt::{check as check_interrupted, install as install_signal_handlers};

mod fleet;

/// `cargo xtask demo`, or with `fleet` the fleet demo (`demo/fleet.rs`).
pub fn run(fleet: bool) -> Result<()> {
    if !cmd::is_root() {
        bail!(
            "`cargo xtask demo` must run as root: it creates network namespaces and binds port 80 \
             inside them"
        );
    }
    install_signal_handlers();
    setup::run()?;
    check_interrupted()?;
    cmd::run(cmd::cargo_cmd().args(["build", "--workspace", "--bins"]))
        .context("building the workspace failed")?;
    check_interrupted()?;
    let bins = Bins::locate()?;

    let mut demo = Demo::new()?;
    let result = if fleet {
        fleet::steps(&mut demo, &bins)
    } else {
        demo.steps(&bins)
    };
    if let Err(e) = &result {
        eprintln!("xtask: demo failed: {e:#}");
        demo.dump_logs();
    }
    demo.cleanup();
    result?;

    println!();
    println!("xtask: demo summary");
    for c in &demo.checks {
        println!("xtask:   ok  {c}");
    }
    println!(
        "xtask: demo passed: {} checks; processes, namespaces and temp dir removed",
        demo.checks.len()
    );
    Ok(())
}

/// A process the demo started, with its combined stdout/stderr in `log`.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// Everything the demo created; `cleanup` (also run on drop) removes it.
struct Demo {
    edge: String,
    client: String,
    /// Namespaces actually created.
    namespaces: Vec<String>,
    procs: Vec<Proc>,
    tmp: Option<PathBuf>,
    config: PathBuf,
    /// Whether the daemon runs with the XDP fast path.
    xdp: bool,
    /// One line per verified expectation, for the summary.
    checks: Vec<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.cleanup();
    }
}

impl Demo {
    fn new() -> Result<Demo> {
        let pid = std::process::id();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = std::env::temp_dir().join(format!("fhd-{pid}-{nanos:x}"));
        std::fs::create_dir(&tmp)
            .with_context(|| format!("cannot create temp dir {}", tmp.display()))?;
        let demo = Demo {
            edge: format!("fhd-{pid}-edge"),
            client: format!("fhd-{pid}-cli"),
            namespaces: Vec::new(),
            procs: Vec::new(),
            config: tmp.join("config.toml"),
            xdp: true,
            tmp: Some(tmp.clone()),
            checks: Vec::new(),
        };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", tmp.display()))?;
        Ok(demo)
    }

    fn tmp(&self) -> &Path {
        self.tmp.as_deref().expect("temp dir exists until cleanup")
    }

    fn steps(&mut self, bins: &Bins) -> Result<()> {
        for ns in [self.edge.clone(), self.client.clone()] {
            netns::add(&ns)?;
            self.namespaces.push(ns);
        }
        netns::link_pair(&self.edge, &self.client, EDGE_ADDRS, CLIENT_ADDRS)?;
        println!(
            "xtask: namespaces {} ({}) and {} ({}) joined by a veth pair",
            self.edge,
            EDGE_ADDRS.join(", "),
            self.client,
            CLIENT_ADDRS.join(", ")
        );
        check_interrupted()?;

        for (name, addr) in [("shop", SHOP_BACKEND), ("blog", BLOG_BACKEND)] {
            let mut c = netns::exec(&self.edge, &bins.fh_backend);
            c.args(["--listen", addr, "--name", name]);
            self.spawn(&format!("fh-backend {name}"), c)?;
        }
        for addr in [SHOP_BACKEND, BLOG_BACKEND] {
            let url = format!("http://{addr}/");
            let edge = self.edge.clone();
            self.wait_until(&format!("backend {addr} answers"), || {
                netns::exec(&edge, "curl")
                    .args(["-s", "-o", "/dev/null", "--max-time", "1", &url])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            })?;
        }

        self.make_certificate()?;
        std::fs::create_dir(self.tmp().join("state")).context("cannot create the state dir")?;
        self.start_daemon(bins)?;
        println!("xtask: force-https is up; the demo starts");

        let resolve_shop = format!("shop.example.com:80:{EDGE_V4}");
        let resolve_blog = format!("blog.example.com:80:{EDGE_V4}");
        let shop_url = "http://shop.example.com/cart?x=1";
        let blog_url = "http://blog.example.com/";

        let before = self.kernel_and_fast_path(bins)?;
        let r = self.curl(&["--resolve", &resolve_shop, shop_url])?;
        self.expect_redirect(
            &r,
            "https://shop.example.com/cart?x=1",
            "shop over IPv4 (enforced by config)",
        )?;
        let after_shop = self.kernel_and_fast_path(bins)?;
        let r = self.curl(&["--resolve", &resolve_blog, blog_url])?;
        self.expect_served(&r, "blog over IPv4 (not enforced)")?;
        let after_blog = self.kernel_and_fast_path(bins)?;
        self.explain_paths(&before, &after_shop, &after_blog)?;

        self.cli(bins, &["list"])?;
        self.cli(bins, &["enable", "blog.example.com"])?;
        let r = self.curl(&["--resolve", &resolve_blog, blog_url])?;
        self.expect_redirect(&r, "https://blog.example.com/", "blog after `enable`")?;
        self.cli(bins, &["disable", "blog.example.com"])?;
        let r = self.curl(&["--resolve", &resolve_blog, blog_url])?;
        self.expect_served(&r, "blog after `disable`")?;

        let v6_url = format!("http://[{EDGE_V6}]/");
        let r = self.curl(&["-g", &v6_url, "-H", "Host: shop.example.com"])?;
        self.expect_redirect(&r, "https://shop.example.com/", "shop over IPv6")?;
        let r = self.curl(&["-g", &v6_url, "-H", "Host: blog.example.com"])?;
        self.expect_served(&r, "blog over IPv6")?;

        // TLS: blog is served over HTTPS without HSTS (not enforced); shop, followed from
        // http:// with `curl -L`, lands on https:// and carries HSTS.
        let cacert = self.tmp().join("demo-cert.pem").display().to_string();
        let resolve_blog443 = format!("blog.example.com:443:{EDGE_V4}");
        let r = self.curl_https(&[
            "--cacert",
            &cacert,
            "--resolve",
            &resolve_blog443,
            "https://blog.example.com/",
        ])?;
        if r.status != 200 || r.hsts.is_some() {
            bail!(
                "blog over HTTPS: expected 200 without HSTS, got {} with HSTS {:?}",
                r.status,
                r.hsts
            );
        }
        self.checks
            .push("blog over HTTPS (not enforced): 200, no HSTS".to_string());
        let resolve_shop443 = format!("shop.example.com:443:{EDGE_V4}");
        let r = self.curl_https(&[
            "-L",
            "--cacert",
            &cacert,
            "--resolve",
            &resolve_shop,
            "--resolve",
            &resolve_shop443,
            shop_url,
        ])?;
        match (&r.hsts, r.status, r.hops) {
            (Some(h), 200, 2) => {
                println!("xtask: Strict-Transport-Security: {h}");
                self.checks.push(format!(
                    "curl -L {shop_url}: 301, then 200 over HTTPS with Strict-Transport-Security: {h}"
                ));
            }
            _ => bail!(
                "curl -L {shop_url}: expected a 301 then a 200 with HSTS, got {} response(s), last {} with HSTS {:?}",
                r.hops,
                r.status,
                r.hsts
            ),
        }

        self.cli(bins, &["stats"])?;
        Ok(())
    }

    /// Writes the config and starts the daemon, with the fast path first; when XDP cannot
    /// attach here (no BPF, an old kernel), says so in one line and starts it on sockets.
    fn start_daemon(&mut self, bins: &Bins) -> Result<()> {
        loop {
            std::fs::write(&self.config, self.config_text())
                .with_context(|| format!("cannot write {}", self.config.display()))?;
            println!("xtask: config {}:", self.config.display());
            for line in self.config_text().lines() {
                println!("    {line}");
            }
            let mut daemon = netns::exec(&self.edge, &bins.force_https);
            daemon.arg("run").arg("--config").arg(&self.config);
            if std::env::var_os("RUST_LOG").is_none() {
                daemon.env("RUST_LOG", "info");
            }
            self.spawn("force-https", daemon)?;
            let (edge, fh, config) = (
                self.edge.clone(),
                bins.force_https.clone(),
                self.config.clone(),
            );
            let up = self.wait_until("`force-https stats` succeeds", || {
                netns::exec(&edge, &fh)
                    .arg("stats")
                    .arg("--config")
                    .arg(&config)
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            });
            match up {
                Ok(()) => return Ok(()),
                Err(e) if self.xdp && self.daemon_log().contains("XDP") => {
                    let why = self
                        .daemon_log()
                        .lines()
                        .rev()
                        .find(|l| l.contains("XDP"))
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    println!(
                        "xtask: the XDP fast path cannot attach here ({e:#}: {why}); going on with sockets only"
                    );
                    self.procs.retain(|p| p.name != "force-https");
                    self.xdp = false;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn daemon_log(&self) -> String {
        self.procs
            .iter()
            .find(|p| p.name == "force-https")
            .and_then(|p| std::fs::read_to_string(&p.log).ok())
            .unwrap_or_default()
    }

    /// The edge namespace's passive opens and syncookie counters (`nstat`), and the daemon's
    /// fast-path redirects.
    fn kernel_and_fast_path(&mut self, bins: &Bins) -> Result<[u64; 4]> {
        let out = cmd::output(netns::exec(&self.edge, "nstat").args([
            "-asz",
            "TcpPassiveOpens",
            "TcpExtSyncookiesSent",
            "TcpExtSyncookiesRecv",
        ]))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let counter = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| {
                    let mut f = l.split_whitespace();
                    (f.next() == Some(name)).then(|| f.next().and_then(|v| v.parse().ok()))?
                })
                .unwrap_or(0)
        };
        let stats = cmd::output(
            netns::exec(&self.edge, &bins.force_https)
                .args(["stats", "--json", "--config"])
                .arg(&self.config),
        )?;
        let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
        let fast = stats
            .split("\"afxdp_redirects_301\":")
            .nth(1)
            .and_then(|r| {
                r.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|d| d.parse().ok())
            })
            .unwrap_or(0);
        Ok([
            counter("TcpPassiveOpens"),
            counter("TcpExtSyncookiesSent"),
            counter("TcpExtSyncookiesRecv"),
            fast,
        ])
    }

    /// Shows which path answered shop's redirect and blog's request, and checks it.
    fn explain_paths(&mut self, before: &[u64; 4], shop: &[u64; 4], blog: &[u64; 4]) -> Result<()> {
        let delta = |a: &[u64; 4], b: &[u64; 4]| -> [u64; 4] {
            [0, 1, 2, 3].map(|i| b[i].saturating_sub(a[i]))
        };
        let (s, b) = (delta(before, shop), delta(shop, blog));
        println!();
        println!(
            "xtask: what answered (edge namespace counters, `nstat -asz` and `force-https stats`):"
        );
        println!(
            "xtask:   request  TcpPassiveOpens  TcpExtSyncookiesSent  TcpExtSyncookiesRecv  afxdp_redirects_301"
        );
        for (name, d) in [("shop", s), ("blog", b)] {
            println!(
                "xtask:   {name:<7}  {:>+15}  {:>+20}  {:>+20}  {:>+19}",
                d[0] as i64, d[1] as i64, d[2] as i64, d[3] as i64
            );
        }
        if !self.xdp {
            println!("xtask:   (sockets only: the kernel opened a socket for both)");
            return Ok(());
        }
        if s[0] != 0 || s[1] != 0 || s[2] != 0 || s[3] != 1 {
            bail!(
                "shop's redirect was not answered by the fast path alone: {s:?} (passive opens, cookies sent, cookies received, fast-path redirects)"
            );
        }
        if b[0] == 0 || b[3] != 0 {
            bail!("blog was not served by the kernel's socket path: {b:?}");
        }
        println!(
            "xtask:   shop: XDP answered the SYN itself with a syncookie SYN-ACK (XDP_TX; TcpExtSyncookiesSent +0), checked the cookie on the request, and the AF_XDP responder sent the 301: the kernel never saw the connection (TcpPassiveOpens +0)"
        );
        println!(
            "xtask:   blog: XDP answered its SYN too, then passed the request (not enforced); the kernel accepted XDP's cookie, made a socket for it and force-https proxied it (TcpPassiveOpens +{}, TcpExtSyncookiesRecv +{}: the client's connection, and force-https's own to the backend, which runs in the same namespace and got the kernel's own cookie, TcpExtSyncookiesSent +{})",
            b[0], b[2], b[1]
        );
        self.checks.push(
            "shop's redirect answered by the XDP fast path, SYN-ACK included: TcpPassiveOpens +0, TcpExtSyncookiesSent +0, TcpExtSyncookiesRecv +0, afxdp_redirects_301 +1"
                .to_string(),
        );
        self.checks.push(format!(
            "blog served by the kernel's socket path: TcpPassiveOpens +{}",
            b[0]
        ));
        Ok(())
    }

    /// The daemon's config: port 80 and 443, state and control socket in the temp dir, and
    /// the fast path on the edge end of the veth (generic mode) unless it cannot attach.
    fn config_text(&self) -> String {
        let tmp = self.tmp().display();
        let xdp = if self.xdp {
            "\n[xdp]\ninterface = \"fh-edge\"\nmode = \"generic\"\n"
        } else {
            ""
        };
        format!(
            r#"[listen]
http = ["0.0.0.0:80", "[::]:80"]
https = ["0.0.0.0:443", "[::]:443"]

[state]
dir = "{tmp}/state"
control_socket = "{tmp}/control.sock"

[[site]]
name = "shop"
domains = ["shop.example.com"]
backend = "http://{SHOP_BACKEND}"
force_https = true
tls = {{ cert = "{tmp}/demo-cert.pem", key = "{tmp}/demo-key.pem" }}

[[site]]
name = "blog"
domains = ["blog.example.com"]
backend = "http://{BLOG_BACKEND}"
force_https = false
tls = {{ cert = "{tmp}/demo-cert.pem", key = "{tmp}/demo-key.pem" }}
{xdp}"#
        )
    }

    /// A throw-away self-signed ECDSA certificate for both demo hosts (openssl, in the temp dir).
    fn make_certificate(&mut self) -> Result<()> {
        let cert = self.tmp().join("demo-cert.pem");
        let key = self.tmp().join("demo-key.pem");
        let mut c = cmd::self_signed_cert(&cert, &key, &["shop.example.com", "blog.example.com"]);
        println!("xtask: making a demo certificate: {}", cmd::show(&c));
        let out = cmd::output(&mut c)?;
        if !out.status.success() {
            bail!(
                "openssl failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Shows and runs `curl -sS -D - -o /dev/null ARGS` in the client namespace: every
    /// response head (one per redirect hop) is printed.
    fn curl_https(&mut self, args: &[&str]) -> Result<HttpsResult> {
        check_interrupted()?;
        let mut shown = Command::new("curl");
        shown
            .args(["-sS", "--max-time", "5", "-D", "-", "-o", "/dev/null"])
            .args(args);
        println!();
        println!("[{}] $ {}", self.client, cmd::show(&shown));
        let mut c = netns::exec(&self.client, "curl");
        c.args(["-sS", "--max-time", "5", "-D", "-", "-o", "/dev/null"])
            .args(args);
        let out = cmd::output(&mut c)?;
        check_interrupted()?;
        print_output(&out);
        if !out.status.success() {
            bail!(
                "curl failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let heads: Vec<&str> = text
            .split("\r\n\r\n")
            .filter(|h| h.trim_start().starts_with("HTTP/"))
            .collect();
        let last = heads.last().context("no response")?;
        let r = Response::parse(last)?;
        let hsts = last
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("strict-transport-security"))
            .map(|(_, v)| v.trim().to_string());
        Ok(HttpsResult {
            status: r.status,
            hsts,
            hops: heads.len(),
        })
    }

    /// Starts a tracked process with stdin closed and its output in `TMP/<name>.log`.
    fn spawn(&mut self, name: &str, mut c: Command) -> Result<()> {
        let log = self.tmp().join(format!("{}.log", name.replace(' ', "-")));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone().context("cannot duplicate the log file")?;
        println!("xtask: starting {name}: {}", cmd::show(&c));
        let child = c
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.procs.push(Proc {
            name: name.into(),
            child,
            log,
        });
        Ok(())
    }

    /// Polls `ready` every 100 ms for up to `START_TIMEOUT`; fails early when a tracked process
    /// exits or on Ctrl-C.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            check_interrupted()?;
            for p in &mut self.procs {
                if let Some(status) = p.child.try_wait().context("cannot poll a child")? {
                    bail!("{} exited ({status}) while waiting until {what}", p.name);
                }
            }
            if ready() {
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                bail!(
                    "timed out after {} s waiting until {what}",
                    START_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Shows and runs `force-https ARGS --config F` in the edge namespace; fails on non-zero.
    fn cli(&mut self, bins: &Bins, args: &[&str]) -> Result<()> {
        check_interrupted()?;
        println!();
        println!(
            "[{}] $ force-https {} --config {}",
            self.edge,
            args.join(" "),
            self.config.display()
        );
        let mut c = netns::exec(&self.edge, &bins.force_https);
        c.args(args).arg("--config").arg(&self.config);
        let out = cmd::output(&mut c)?;
        check_interrupted()?;
        print_output(&out);
        if !out.status.success() {
            bail!("`force-https {}` failed ({})", args.join(" "), out.status);
        }
        Ok(())
    }

    /// Shows and runs `curl -si --max-time 5 ARGS` in the client namespace.
    fn curl(&mut self, args: &[&str]) -> Result<Response> {
        check_interrupted()?;
        let mut c = Command::new("curl");
        c.args(["-si", "--max-time", "5"]).args(args);
        println!();
        println!("[{}] $ {}", self.client, cmd::show(&c));
        let mut c = netns::exec(&self.client, "curl");
        c.args(["-si", "--max-time", "5"]).args(args);
        let out = cmd::output(&mut c)?;
        check_interrupted()?;
        print_output(&out);
        if !out.status.success() {
            bail!(
                "curl failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Response::parse(&String::from_utf8_lossy(&out.stdout))
    }

    fn expect_redirect(&mut self, r: &Response, location: &str, what: &str) -> Result<()> {
        if r.status != 301 || r.location.as_deref() != Some(location) {
            bail!(
                "{what}: expected a 301 to {location}, got {} with Location {:?}",
                r.status,
                r.location
            );
        }
        self.checks
            .push(format!("{what}: {} -> {location}", r.status));
        Ok(())
    }

    fn expect_served(&mut self, r: &Response, what: &str) -> Result<()> {
        if r.status != 200 || r.location.is_some() {
            bail!(
                "{what}: expected 200 from the backend, got {} (Location {:?})",
                r.status,
                r.location
            );
        }
        self.checks.push(format!("{what}: 200 from the backend"));
        Ok(())
    }

    /// The end of every tracked process's output, for a failure report.
    fn dump_logs(&self) {
        for p in &self.procs {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(60);
            eprintln!(
                "xtask: ---- output of {} (last {} lines) ----",
                p.name,
                lines.len() - from
            );
            for l in &lines[from..] {
                eprintln!("{l}");
            }
        }
        if !self.procs.is_empty() {
            eprintln!("xtask: ---- end of output ----");
        }
    }

    /// Stops the processes the demo started, deletes its namespaces, removes its temp dir.
    /// Idempotent.
    fn cleanup(&mut self) {
        for mut p in self.procs.drain(..).rev() {
            stop(&mut p);
        }
        for ns in self.namespaces.drain(..).rev() {
            let left = netns::pids(&ns);
            if !left.is_empty() {
                eprintln!(
                    "xtask: cleanup: warning: processes not started by the demo remain in {ns}: {left:?}"
                );
            }
            match netns::del(&ns) {
                Ok(()) => println!("xtask: cleanup: deleted namespace {ns}"),
                Err(e) => eprintln!("xtask: cleanup: {e:#}"),
            }
        }
        if let Some(tmp) = self.tmp.take() {
            match std::fs::remove_dir_all(&tmp) {
                Ok(()) => println!("xtask: cleanup: removed {}", tmp.display()),
                Err(e) => eprintln!("xtask: cleanup: cannot remove {}: {e}", tmp.display()),
            }
        }
    }
}

/// SIGTERM, up to `STOP_GRACE` to exit, then SIGKILL; always reaped.
fn stop(p: &mut Proc) {
    let pid = p.child.id();
    if let Ok(Some(status)) = p.child.try_wait() {
        println!(
            "xtask: cleanup: {} (pid {pid}) had already exited ({status})",
            p.name
        );
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child, so it
    // cannot have been reused.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let start = Instant::now();
    while start.elapsed() < STOP_GRACE {
        if let Ok(Some(_)) = p.child.try_wait() {
            println!("xtask: cleanup: stopped {} (pid {pid})", p.name);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = p.child.kill();
    let _ = p.child.wait();
    println!(
        "xtask: cleanup: killed {} (pid {pid}) after {} s",
        p.name,
        STOP_GRACE.as_secs()
    );
}

fn print_output(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stdout.trim().is_empty() {
        println!("{}", stdout.trim_end());
    }
    if !stderr.trim().is_empty() {
        println!("{}", stderr.trim_end());
    }
}

/// The last response of a (possibly redirected) HTTPS fetch.
struct HttpsResult {
    status: u16,
    hsts: Option<String>,
    hops: usize,
}

/// The status and Location of a `curl -si` response.
#[derive(Debug, PartialEq)]
struct Response {
    status: u16,
    location: Option<String>,
}

impl Response {
    fn parse(text: &str) -> Result<Response> {
        let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
        let status_line = lines.next().context("empty response")?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP status line: {status_line:?}"))?;
        let location = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.trim().to_string());
        Ok(Response { status, location })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_redirect() {
        let r = Response::parse(
            "HTTP/1.1 301 Moved Permanently\r\nlocation: https://a.example.com/x?y\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 301);
        assert_eq!(r.location.as_deref(), Some("https://a.example.com/x?y"));
    }

    #[test]
    fn parse_served_ignores_body() {
        let r = Response::parse(
            "HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\nLocation: not a header\n",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.location, None);
        assert!(Response::parse("garbage").is_err());
    }
}
