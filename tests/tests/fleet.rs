//! Black-box tests of `[fleet]` (issue 14): real daemons following one real etcd.
//!
//! Topology: one private "hub" namespace runs etcd (Debian's `etcd-server`) on
//! 198.51.100.100:2379 (on its loopback, peers on 127.0.0.1:2380); every node is a [`Netns`]
//! pair whose edge namespace gets a veth link to the hub (198.51.100.(201+i)/32, with a /32
//! route to etcd). Only namespaces these tests create, documentation addresses and loopback.
//! etcd runs with a temp data dir and is stopped by PID ([`Etcd`]'s drop). Without etcd the
//! tests skip, or fail under `CI=true`.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use fh_tests::{pki::Pki, *};

const ETCD_IP: &str = "198.51.100.100";
const PREFIX: &str = "/force-https/";
static HUB_COUNTER: AtomicU32 = AtomicU32::new(0);

fn have_etcd() -> bool {
    let ok = |c: &str, arg: &str| {
        Command::new(c)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok("etcd", "--version") && ok("etcdctl", "version") {
        return true;
    }
    assert!(
        !in_ci(),
        "etcd and etcdctl are needed (Debian etcd-server, etcd-client: `cargo xtask setup`); CI=true, so failing instead of skipping"
    );
    eprintln!("skipping: etcd/etcdctl not installed");
    false
}

/// The hub namespace, deleted on drop.
struct Hub {
    name: String,
    links: u32,
}

impl Hub {
    fn new() -> Hub {
        let name = format!(
            "fht-{}-{}-hub",
            std::process::id(),
            HUB_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        sh(&[
            "ip",
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ETCD_IP}/32"),
            "dev",
            "lo",
        ]);
        Hub { name, links: 0 }
    }

    /// Links a node's edge namespace to the hub.
    fn attach(&mut self, ns: &Netns) {
        let i = self.links;
        self.links += 1;
        let a = format!("fhh{}x{i}a", std::process::id() % 100000);
        let b = format!("fhh{}x{i}b", std::process::id() % 100000);
        let node_ip = format!("198.51.100.{}", 201 + i);
        sh(&[
            "ip", "-n", &self.name, "link", "add", &a, "type", "veth", "peer", "name", &b, "netns",
            &ns.edge,
        ]);
        sh(&["ip", "-n", &self.name, "link", "set", &a, "up"]);
        sh(&[
            "ip",
            "-n",
            &self.name,
            "route",
            "add",
            &format!("{node_ip}/32"),
            "dev",
            &a,
        ]);
        sh(&[
            "ip",
            "-n",
            &ns.edge,
            "addr",
            "add",
            &format!("{node_ip}/32"),
            "dev",
            &b,
        ]);
        sh(&["ip", "-n", &ns.edge, "link", "set", &b, "up"]);
        sh(&[
            "ip",
            "-n",
            &ns.edge,
            "route",
            "add",
            &format!("{ETCD_IP}/32"),
            "dev",
            &b,
            "src",
            &node_ip,
        ]);
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A count from the environment variable `name`, else `default`.
fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sh(args: &[&str]) {
    let o = output_timeout(Command::new(args[0]).args(&args[1..]), CMD_TIMEOUT);
    assert!(o.status.success(), "{args:?}: {}", o.describe());
}

/// An etcd process in the hub, stopped by PID on drop (its data dir lives on).
struct Etcd {
    hub: String,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    /// A secured etcd: TLS with client certificates required.
    tls: Option<EtcdTls>,
    /// `etcdctl --user` once authentication is enabled.
    user: Option<String>,
}

/// The files of a secured etcd: its certificate and key, the CA of both sides, and the
/// client certificate `etcdctl` presents.
struct EtcdTls {
    ca: String,
    cert: String,
    key: String,
    ctl_cert: String,
    ctl_key: String,
}

impl Etcd {
    fn start(hub: &Hub) -> Etcd {
        Etcd::start_with(hub, None)
    }

    /// An etcd that serves TLS only and requires a client certificate signed by `tls.ca`.
    fn start_tls(hub: &Hub, tls: EtcdTls) -> Etcd {
        Etcd::start_with(hub, Some(tls))
    }

    fn start_with(hub: &Hub, tls: Option<EtcdTls>) -> Etcd {
        let tmp = tempfile::Builder::new()
            .prefix("fht-etcd-")
            .tempdir()
            .unwrap();
        let mut e = Etcd {
            hub: hub.name.clone(),
            dir: tmp.path().join("data"),
            port: 2379,
            child: None,
            _tmp: Some(tmp),
            tls,
            user: None,
        };
        e.launch(2379);
        e
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{ETCD_IP}:{}", self.port)
    }

    /// Starts etcd on client port `port` (same data dir) and waits until it answers.
    fn launch(&mut self, port: u16) {
        assert!(self.child.is_none());
        self.port = port;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .unwrap();
        let url = self.url();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.hub, "etcd", "--name", "fht"])
            .arg("--data-dir")
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "fht=http://127.0.0.1:2380"])
            .args(self.tls.iter().flat_map(|t| {
                [
                    "--cert-file",
                    &t.cert,
                    "--key-file",
                    &t.key,
                    "--trusted-ca-file",
                    &t.ca,
                    "--client-cert-auth",
                ]
            }))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            self.ctl_output(&["endpoint", "health"]).status.success()
        });
        assert!(ok, "etcd did not become healthy; log:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// Stops etcd (SIGKILL by PID: an outage, not a clean shutdown).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ctl_output(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.hub,
            "etcdctl",
            "--endpoints",
            &self.url(),
        ])
        .args(["--command-timeout", "3s"])
        .args(self.tls.iter().flat_map(|t| {
            [
                "--cacert",
                &t.ca,
                "--cert",
                &t.ctl_cert,
                "--key",
                &t.ctl_key,
            ]
        }))
        .args(self.user.iter().flat_map(|u| ["--user", u.as_str()]))
        .args(args)
        .env("ETCDCTL_API", "3");
        output_timeout(&mut c, CMD_TIMEOUT)
    }

    fn ctl(&self, args: &[&str]) -> String {
        let o = self.ctl_output(args);
        assert!(o.status.success(), "etcdctl {args:?}: {}", o.describe());
        o.out()
    }

    fn put_host(&self, host: &str, enforce: bool) {
        self.ctl(&[
            "put",
            &format!("{PREFIX}hosts/{host}"),
            &format!("{{\"force_https\": {enforce}}}"),
        ]);
    }

    fn del_host(&self, host: &str) {
        self.ctl(&["del", &format!("{PREFIX}hosts/{host}")]);
    }

    fn revision(&self) -> u64 {
        let v = json(&self.ctl(&["get", "x", "-w", "json"]));
        v["header"]["revision"].as_u64().unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("---- etcd log tail ----");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        self.stop();
    }
}

/// A node: its namespaces and daemon.
struct Node {
    ns: Netns,
    d: Daemon,
}

fn node_config() -> Config {
    Config::new()
        .site(Site::new("shop", &["shop.example.com"]).enforced())
        .site(Site::new("blog", &["blog.example.com"]))
        .extra(&format!(
            "[fleet]\netcd_endpoints = [\"http://{ETCD_IP}:2379\"]\n"
        ))
}

fn node(hub: &mut Hub) -> Node {
    let ns = Netns::new();
    hub.attach(&ns);
    let d = Daemon::start(&ns, &node_config());
    Node { ns, d }
}

impl Node {
    fn redirects(&self, host: &str) -> bool {
        get(&self.ns, host, "/").status == 301
    }

    fn wait_redirect(&self, host: &str, want: bool, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(5), || {
            self.redirects(host) == want
        })
    }

    fn wait_connected(&self) {
        let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            self.d.counter("fleet_connected") == 1
        });
        assert!(ok, "node not connected to etcd:\n{}", self.d.log());
    }

    fn source(&self, host: &str) -> String {
        let o = self.d.cli(&["list", "--json"]);
        assert!(o.status.success(), "{}", o.describe());
        let v = json(&o.out());
        v.as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == host)
            .map(|h| h["source"].as_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

#[test]
fn fleet_follows_etcd() {
    if !require_root() || !have_etcd() {
        return;
    }
    let mut hub = Hub::new();
    let etcd = Etcd::start(&hub);
    let a = node(&mut hub);
    let b = node(&mut hub);
    a.wait_connected();
    b.wait_connected();
    assert!(!a.redirects("blog.example.com") && !b.redirects("blog.example.com"));

    // A put flips the redirect on every node, well within the bound.
    etcd.put_host("blog.example.com", true);
    let t0 = Instant::now();
    for n in [&a, &b] {
        assert!(n.wait_redirect("blog.example.com", true, Duration::from_secs(2)));
    }
    eprintln!("put to effect on 2 nodes: {:?}", t0.elapsed());
    assert_eq!(a.source("blog.example.com"), "fleet");
    // A host of the fleet alone.
    etcd.put_host("solo.example.org", true);
    assert!(b.wait_redirect("solo.example.org", true, Duration::from_secs(2)));

    // A delete returns to the config.
    etcd.del_host("blog.example.com");
    for n in [&a, &b] {
        assert!(n.wait_redirect("blog.example.com", false, Duration::from_secs(2)));
    }
    assert_eq!(a.source("blog.example.com"), "config");
    // A fleet `false` releases a host the config enforces.
    etcd.put_host("shop.example.com", false);
    assert!(b.wait_redirect("shop.example.com", false, Duration::from_secs(2)));

    // The CLI writes through etcd: the other node follows, and etcd holds the key.
    let o = a.d.cli(&["enable", "blog.example.com"]);
    assert!(o.status.success(), "{}", o.describe());
    assert!(
        a.redirects("blog.example.com"),
        "the CLI returns once applied here"
    );
    assert!(b.wait_redirect("blog.example.com", true, Duration::from_secs(2)));
    let v = etcd.ctl(&[
        "get",
        "--print-value-only",
        &format!("{PREFIX}hosts/blog.example.com"),
    ]);
    assert_eq!(v.trim(), "{\"force_https\":true}");
    // And the admin service's site change too.
    let o = b.d.cli(&["enable", "--site", "shop"]);
    assert!(o.status.success(), "{}", o.describe());
    assert!(a.wait_redirect("shop.example.com", true, Duration::from_secs(2)));

    // --local: this node only, shown as local, winning over the fleet.
    let o = a.d.cli(&["disable", "--local", "blog.example.com"]);
    assert!(o.status.success(), "{}", o.describe());
    assert!(!a.redirects("blog.example.com"));
    assert!(b.redirects("blog.example.com"));
    assert_eq!(a.source("blog.example.com"), "local");
    assert_eq!(b.source("blog.example.com"), "fleet");

    // Bad keys and values are skipped and counted; the good ones still apply.
    let before = a.d.counter("fleet_bad_entries");
    etcd.ctl(&[
        "put",
        &format!("{PREFIX}hosts/Bad.Example.com"),
        "{\"force_https\": true}",
    ]);
    etcd.ctl(&[
        "put",
        &format!("{PREFIX}hosts/bad host"),
        "{\"force_https\": true}",
    ]);
    etcd.ctl(&["put", &format!("{PREFIX}hosts/junk.example.com"), "yes"]);
    etcd.put_host("late.example.com", true);
    assert!(a.wait_redirect("late.example.com", true, Duration::from_secs(2)));
    assert_eq!(a.d.counter("fleet_bad_entries"), before + 3);
    assert!(!a.redirects("junk.example.com"));

    // A node started after the changes sees them (and counts the bad entries of its read).
    let c = node(&mut hub);
    c.wait_connected();
    assert!(c.redirects("blog.example.com"));
    assert!(c.redirects("solo.example.org"));
    assert!(c.redirects("late.example.com"));
    assert_eq!(c.d.counter("fleet_bad_entries"), 3);
    let stats = c.d.cli(&["stats"]).out();
    assert!(stats.contains("fleet_connected"), "{stats}");
}

#[test]
fn fleet_outage_restart_and_compaction() {
    if !require_root() || !have_etcd() {
        return;
    }
    let mut hub = Hub::new();
    let mut etcd = Etcd::start(&hub);
    let a = node(&mut hub);
    let mut b = node(&mut hub);
    a.wait_connected();
    b.wait_connected();
    etcd.put_host("blog.example.com", true);
    etcd.put_host("gone.example.org", true);
    for n in [&a, &b] {
        assert!(n.wait_redirect("gone.example.org", true, Duration::from_secs(2)));
    }

    // Outage: nodes keep redirecting and report it; writes fail with exit 6.
    etcd.stop();
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || { a.d.counter("fleet_connected") == 0 }
    ));
    assert!(a.redirects("blog.example.com"));
    let o = a.d.cli(&["enable", "new.example.org"]);
    assert_eq!(o.code(), 6, "{}", o.describe());
    assert!(
        o.err().contains("etcd") && o.err().contains("unavailable"),
        "{}",
        o.err()
    );
    assert!(!a.redirects("new.example.org"), "nothing was queued");
    // A node restarted during the outage keeps its table.
    b.d.restart();
    assert!(b.redirects("blog.example.com"));
    assert!(b.redirects("gone.example.org"));
    assert_eq!(b.d.counter("fleet_connected"), 0);

    // Changes the nodes cannot see: etcd on another port, then compacted past their revision.
    etcd.launch(2479);
    etcd.put_host("new.example.org", true);
    etcd.del_host("gone.example.org");
    let rev = etcd.revision();
    etcd.ctl(&["compact", &rev.to_string()]);
    etcd.stop();

    // etcd back: the changes arrive; node a's watch revision is compacted, so it re-reads.
    etcd.launch(2379);
    for n in [&a, &b] {
        assert!(
            n.wait_redirect("new.example.org", true, Duration::from_secs(15)),
            "{}",
            n.d.log()
        );
        assert!(n.wait_redirect("gone.example.org", false, Duration::from_secs(2)));
        assert!(
            n.redirects("blog.example.com"),
            "no host dropped in between"
        );
    }
    a.wait_connected();
    assert!(a.d.counter("fleet_resyncs") >= 1, "{}", a.d.log());
    assert!(a.d.counter("fleet_reconnects") >= 1);
    // And a change after the resync.
    etcd.put_host("after.example.org", true);
    assert!(a.wait_redirect("after.example.org", true, Duration::from_secs(2)));
}

/// Put-to-effect latency with 3 nodes: p50/p99 over 100 changes (BENCHMARKS.md).
/// `cargo test -p force-https-tests --test fleet -- --ignored --nocapture fleet_latency`
#[test]
#[ignore]
fn fleet_latency() {
    if !require_root() || !have_etcd() {
        return;
    }
    let mut hub = Hub::new();
    let etcd = Etcd::start(&hub);
    let nodes: Vec<Node> = (0..3).map(|_| node(&mut hub)).collect();
    for n in &nodes {
        n.wait_connected();
    }
    let mut lat = Vec::new();
    for i in 0..100 {
        let enforce = i % 2 == 0;
        etcd.put_host("blog.example.com", enforce);
        let t0 = Instant::now();
        // Every node, polled in parallel from its client namespace.
        let per: Vec<Duration> = std::thread::scope(|s| {
            let hs: Vec<_> = nodes
                .iter()
                .map(|n| {
                    s.spawn(move || {
                        n.ns.run_in_client(|| {
                            let deadline = t0 + Duration::from_secs(5);
                            loop {
                                let st = http_request_here(
                                    edge80(),
                                    b"GET / HTTP/1.1\r\nHost: blog.example.com\r\n\r\n",
                                )
                                .status;
                                if (st == 301) == enforce || Instant::now() > deadline {
                                    return t0.elapsed();
                                }
                                std::thread::sleep(Duration::from_micros(500));
                            }
                        })
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        lat.extend(per);
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    println!(
        "fleet put-to-effect, 3 nodes, {} samples (after etcdctl returned): p50 {:?} p99 {:?} max {:?}",
        lat.len(),
        p(0.5),
        p(0.99),
        lat[lat.len() - 1]
    );
}

/// Scale: N host keys (default 100000, `FH_FLEET_KEYS`) written through the CLI (etcd
/// transactions of 128), followed by a second node, then read by a node started afterwards.
/// `FH_FLEET_KEYS=100000 cargo test -p force-https-tests --test fleet -- --ignored --nocapture fleet_scale`
#[test]
#[ignore]
fn fleet_scale() {
    if !require_root() || !have_etcd() {
        return;
    }
    let n = env_count("FH_FLEET_KEYS", 100_000);
    let mut hub = Hub::new();
    let etcd = Etcd::start(&hub);
    let a = node(&mut hub);
    let b = node(&mut hub);
    a.wait_connected();
    b.wait_connected();
    let base = b.d.counter("hosts");
    let list: String = (0..n)
        .map(|i| format!("h{i}.scale.example.net\n"))
        .collect();
    let file = a.d.dir().join("hosts.txt");
    std::fs::write(&file, list).unwrap();
    let t0 = Instant::now();
    let o = output_timeout(
        &mut cli_command(&[
            "enable",
            "--from-file",
            file.to_str().unwrap(),
            "--config",
            a.d.config_path.to_str().unwrap(),
        ]),
        Duration::from_secs(600),
    );
    assert!(o.status.success(), "{}", o.describe());
    let written = t0.elapsed();
    assert!(wait_until(
        Duration::from_secs(60),
        Duration::from_millis(20),
        || { b.d.counter("hosts") >= base + n as u64 }
    ));
    let followed = t0.elapsed();
    // A node started now reads all of them at start.
    let ns = Netns::new();
    hub.attach(&ns);
    let t1 = Instant::now();
    let d = Daemon::start(&ns, &node_config());
    assert!(wait_until(
        Duration::from_secs(120),
        Duration::from_millis(20),
        || { d.counter("hosts") >= base + n as u64 }
    ));
    let loaded = t1.elapsed();
    let read_line = d
        .log()
        .lines()
        .find(|l| l.contains("read the whole prefix"))
        .unwrap_or_default()
        .to_string();
    println!(
        "fleet scale, {n} keys: CLI write through etcd {written:?}; second node had them all after {followed:?}; \
         a new node from start to all loaded {loaded:?}; its log: {read_line}"
    );
    drop(etcd);
}

/// A secured etcd (issue 14's `tls = { ca, cert, key }` and `username`/`password_file`): TLS
/// with a private CA, client certificates required (`--client-cert-auth`), and
/// authentication with a user whose role covers only the prefix. A node with the right files
/// follows it and writes through it; a wrong password, a missing client certificate and a
/// password file others can read are each refused with a clear reason.
#[test]
fn fleet_secured_etcd_tls_and_user() {
    if !require_root() || !have_etcd() {
        return;
    }
    let mut hub = Hub::new();
    let pki = Pki::new();
    let (cert, key) = pki.issue_for("etcd", "etcd", &format!("IP:{ETCD_IP}"), "serverAuth");
    let (ctl_cert, ctl_key) = pki.issue_for("etcdctl", "root", "", "clientAuth");
    let (node_cert, node_key) = pki.issue_for("node", "edge-node", "", "clientAuth");
    let mut etcd = Etcd::start_tls(
        &hub,
        EtcdTls {
            ca: pki.ca(),
            cert,
            key,
            ctl_cert,
            ctl_key,
        },
    );
    // root for etcdctl; `edge` may read and write the prefix only.
    etcd.ctl(&["user", "add", "root:root-pw"]);
    let _ = etcd.ctl_output(&["user", "grant-role", "root", "root"]);
    etcd.ctl(&["role", "add", "edge"]);
    etcd.ctl(&[
        "role",
        "grant-permission",
        "edge",
        "--prefix=true",
        "readwrite",
        PREFIX,
    ]);
    etcd.ctl(&["user", "add", "edge:edge-pw"]);
    etcd.ctl(&["user", "grant-role", "edge", "edge"]);
    etcd.ctl(&["auth", "enable"]);
    etcd.user = Some("root:root-pw".into());
    assert!(
        !Command::new("ip")
            .args([
                "netns",
                "exec",
                &etcd.hub,
                "etcdctl",
                "--endpoints",
                &etcd.url()
            ])
            .args(["--cacert", &pki.ca(), "get", "x"])
            .output()
            .unwrap()
            .status
            .success(),
        "etcd must refuse a client without a certificate"
    );
    let password = |name: &str, pw: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let p = pki.path(name);
        std::fs::write(&p, format!("{pw}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    };
    let config = |client: Option<(&str, &str)>, pw_file: &str| {
        let client = client
            .map(|(c, k)| format!(", cert = \"{c}\", key = \"{k}\""))
            .unwrap_or_default();
        Config::new()
            .site(Site::new("shop", &["shop.example.com"]).enforced())
            .extra(&format!(
                "[fleet]\netcd_endpoints = [\"https://{ETCD_IP}:2379\"]\n\
                 tls = {{ ca = \"{}\"{client} }}\nusername = \"edge\"\npassword_file = \"{pw_file}\"\n",
                pki.ca()
            ))
    };
    let good_pw = password("edge.pw", "edge-pw", 0o600);
    let client = Some((node_cert.as_str(), node_key.as_str()));

    // The node follows the secured etcd...
    let ns = Netns::new();
    hub.attach(&ns);
    let a = Node {
        d: Daemon::start(&ns, &config(client, &good_pw)),
        ns,
    };
    a.wait_connected();
    etcd.put_host("f.example.org", true);
    assert!(a.wait_redirect("f.example.org", true, Duration::from_secs(5)));
    assert_eq!(a.source("f.example.org"), "fleet");
    // ...and the CLI writes through it, as `edge`.
    let o = a.d.cli(&["enable", "w.example.org"]);
    assert!(o.status.success(), "{}", o.describe());
    assert!(a.redirects("w.example.org"));
    assert!(
        etcd.ctl(&[
            "get",
            &format!("{PREFIX}hosts/w.example.org"),
            "--print-value-only"
        ])
        .contains("true")
    );

    // A wrong password: the node serves its config, reports the outage and says why.
    let bad_pw = password("bad.pw", "not-the-password", 0o600);
    let ns = Netns::new();
    hub.attach(&ns);
    let b = Node {
        d: Daemon::start(&ns, &config(client, &bad_pw)),
        ns,
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            b.d.log().to_lowercase().contains("authentication failed")
        }),
        "no authentication error in the log:\n{}",
        b.d.log()
    );
    assert_eq!(b.d.counter("fleet_connected"), 0);
    assert!(b.redirects("shop.example.com"));
    assert!(!b.redirects("f.example.org"));
    let o = b.d.cli(&["enable", "x.example.org"]);
    assert_eq!(o.code(), 6, "{}", o.describe());

    // No client certificate: etcd's TLS refuses the node.
    let ns = Netns::new();
    hub.attach(&ns);
    let c = Node {
        d: Daemon::start(&ns, &config(None, &good_pw)),
        ns,
    };
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.d.counter("fleet_connected"), 0, "{}", c.d.log());
    assert!(c.d.counter("fleet_reconnects") >= 1, "{}", c.d.log());
    drop(c);

    // A password file that others can read: the daemon refuses to start, and says how to fix it.
    let open_pw = password("open.pw", "edge-pw", 0o644);
    let ns = Netns::new();
    let mut d = Daemon::spawn(&ns, &config(client, &open_pw));
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            !d.running()
        }),
        "a daemon with a password file of mode 0644 must not start"
    );
    let log = d.log();
    assert!(
        log.contains("password_file") && log.contains("mode 0644") && log.contains("chmod 600"),
        "{log}"
    );
    drop((a, b, etcd));
}

/// The dashboard with `[fleet]` (headless Chromium): the header says etcd is connected, hosts
/// the fleet decides are marked "all nodes" and a local override "this node only"; a click
/// writes the host's key to etcd; with etcd stopped the header says so and every switch is
/// disabled (writes would be refused). Screenshot: target/dashboard-fleet.png.
#[test]
fn fleet_dashboard_marks_the_fleet() {
    use fh_tests::admin::{ADMIN_LISTEN, TokenFile, admin_section};
    use fh_tests::browser::{Browser, require_chromium};
    if !require_root() || !have_etcd() {
        return;
    }
    let Some(chromium) = require_chromium() else {
        return;
    };
    let mut hub = Hub::new();
    let mut etcd = Etcd::start(&hub);
    let token = TokenFile::new(0o600);
    let ns = Netns::new();
    hub.attach(&ns);
    let a = Node {
        d: Daemon::start(&ns, &node_config().extra(&admin_section(Some(&token)))),
        ns,
    };
    a.wait_connected();
    etcd.put_host("f.example.org", true);
    assert!(a.wait_redirect("f.example.org", true, Duration::from_secs(5)));
    let o = a.d.cli(&["enable", "--local", "l.example.org"]);
    assert!(o.status.success(), "{}", o.describe());

    let mut b = Browser::launch(
        &a.ns.edge,
        &chromium,
        &format!("http://{ADMIN_LISTEN}/"),
        1280,
        1000,
    );
    let row =
        |h: &str| format!("document.querySelector('button[data-host=\"{h}\"]').closest('tr')");
    let f = row("f.example.org");
    assert!(
        b.wait_for(
            &format!(
                "document.body.dataset.ready === 'true' && !!{f} && \
                 document.querySelector('#fleet').textContent === 'fleet: etcd connected'"
            ),
            Duration::from_secs(15)
        ),
        "no fleet state on the dashboard; chromium stderr:\n{}",
        b.stderr.lock().unwrap()
    );
    assert_eq!(
        b.eval(&format!("{f}.children[2].textContent")),
        "fleetall nodes"
    );
    assert_eq!(
        b.eval(&format!("{}.children[2].textContent", row("l.example.org"))),
        "localthis node only"
    );
    let note = b.eval("document.querySelector('#fleet-note').textContent");
    assert!(
        note.as_str()
            .unwrap_or_default()
            .contains("apply to every node"),
        "{note}"
    );
    b.screenshot(&bin_dir().parent().unwrap().join("dashboard-fleet.png"));

    // A click writes the key to etcd (for every node), and comes back through the watch.
    b.eval(&format!(
        "(() => {{ sessionStorage.setItem('force-https-admin-token', '{}'); \
         document.querySelector('button[data-host=\"f.example.org\"]').click(); }})()",
        token.token
    ));
    let key = format!("{PREFIX}hosts/f.example.org");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            etcd.ctl(&["get", &key, "--print-value-only"])
                .contains("false")
        }),
        "the click did not reach etcd; status: {}",
        b.eval("document.querySelector('#status').textContent")
    );
    assert!(a.wait_redirect("f.example.org", false, Duration::from_secs(5)));

    // etcd down: the header says so and the switches are disabled.
    etcd.stop();
    assert!(
        b.wait_for(
            "document.querySelector('#fleet').textContent === 'fleet: etcd unreachable' && \
             Array.from(document.querySelectorAll('#hosts button.switch')).every(s => s.disabled)",
            Duration::from_secs(15)
        ),
        "the dashboard does not show the outage: {}",
        b.eval("document.querySelector('#fleet').textContent")
    );
    let note = b.eval("document.querySelector('#fleet-note').textContent");
    assert!(
        note.as_str()
            .unwrap_or_default()
            .contains("changes are refused"),
        "{note}"
    );
    b.screenshot(
        &bin_dir()
            .parent()
            .unwrap()
            .join("dashboard-fleet-outage.png"),
    );
}

/// A burst of 10,000 changes through etcd reaches a node's XDP host map, and the fast path
/// answers for the last host written. Prints the figures BENCHMARKS.md records ("Fleet"):
/// the write time, how long after the last write the map held every host, and the map's
/// largest lag behind the policy table (`xdp_host_map_lag_max_us`). `FH_FLEET_BURST` changes
/// the count.
#[test]
fn fleet_burst_reaches_the_xdp_map() {
    if !require_root() || !have_etcd() {
        return;
    }
    let n = env_count("FH_FLEET_BURST", 10_000);
    let mut hub = Hub::new();
    let etcd = Etcd::start(&hub);
    let ns = Netns::new();
    hub.attach(&ns);
    let xdp = format!(
        "[xdp]\ninterface = {}\nmode = \"generic\"\n",
        toml_str(&ns.veth_edge)
    );
    let a = Node {
        d: Daemon::start(&ns, &node_config().extra(&xdp)),
        ns,
    };
    a.wait_connected();
    let base = a.d.counter("xdp_host_map_entries");
    assert!(base >= 1, "no XDP host map gauge:\n{}", a.d.log());
    // Written by a second client (etcdctl, transactions of 128 puts), as another node's CLI
    // or an operator's script would.
    let t0 = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(128) {
        let mut txn = String::from("\n");
        for i in chunk {
            txn.push_str(&format!(
                "put {PREFIX}hosts/b{i}.burst.example.net \"{{\\\"force_https\\\": true}}\"\n"
            ));
        }
        txn.push_str("\n\n");
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &etcd.hub,
            "etcdctl",
            "--endpoints",
            &etcd.url(),
        ])
        .args(["--command-timeout", "10s", "txn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(txn.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "etcdctl txn: {}", o.describe());
    }
    let written = t0.elapsed();
    let t1 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(5), || {
            a.d.counter("xdp_host_map_entries") >= base + n as u64
        }),
        "the XDP map has {} of {} entries",
        a.d.counter("xdp_host_map_entries"),
        base + n as u64
    );
    let behind = t1.elapsed();
    let lag_us = a.d.counter("xdp_host_map_lag_max_us");
    // The fast path answers for the last host written.
    let fast = a.d.counter("afxdp_redirects_301");
    assert!(a.redirects(&format!("b{}.burst.example.net", n - 1)));
    assert_eq!(
        a.d.counter("afxdp_redirects_301"),
        fast + 1,
        "not answered by the fast path"
    );
    println!(
        "fleet burst, {n} changes: written in {written:?} ({} transactions); the XDP map held \
         them all {behind:?} after the last write returned; largest map lag behind the table \
         {:.1} ms",
        n.div_ceil(128),
        lag_us as f64 / 1000.0
    );
    drop(etcd);
}
