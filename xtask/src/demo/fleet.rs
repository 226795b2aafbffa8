//! `cargo xtask demo --fleet` (root): one etcd and two edge nodes following it (`[fleet]`).
//!
//! - `fhf-<pid>-hub` runs etcd (Debian's `etcd-server`, data dir in the demo's temp dir) on
//!   198.51.100.100:2379 (its loopback; peer URL on 127.0.0.1:2380), and is also the client:
//!   curl and etcdctl run there;
//! - `fhf-<pid>-n1` and `fhf-<pid>-n2` each run two `fh-backend`s (shop on 127.0.0.1:8080,
//!   blog on 127.0.0.1:8081) and `force-https run` on port 80 (sockets only, no XDP: this demo is
//!   about the fleet) with `[fleet] etcd_endpoints = ["http://198.51.100.100:2379"]`; node i is
//!   198.51.100.i/32 on a veth to the hub, with /32 routes both ways;
//! - blog (not enforced by the config) is served on both nodes; `etcdctl put` of its key flips it
//!   to a 301 on both, `list` on each node shows `fleet` as its source, `etcdctl del` flips it
//!   back; then `force-https enable` through node 1 and `disable` through node 2 (which write to
//!   etcd) do the same. Each flip is timed from the command's return until that node's answer
//!   changes (a curl per node in parallel, again and again, at most `FLIP_TIMEOUT`).
//!
//! Cleanup is the plain demo's (`Demo::cleanup`): the processes it started, by PID (the nodes
//! before etcd), its three namespaces, its temp dir (etcd's data included).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{BLOG_BACKEND, Demo, SHOP_BACKEND, print_output};
use crate::cmd::{self, Bins};
use crate::interrupt::check as check_interrupted;
use crate::netns;

const ETCD_IP: &str = "198.51.100.100";
const PREFIX: &str = "/force-https/";
const BLOG: &str = "blog.example.com";
/// How long a flip may take on a node before the demo fails (the issue's bound is 100 ms).
const FLIP_TIMEOUT: Duration = Duration::from_secs(5);

/// One edge node: its namespace, address and config.
struct Node {
    ns: String,
    ip: String,
    config: PathBuf,
}

fn etcd_url() -> String {
    format!("http://{ETCD_IP}:2379")
}

pub(super) fn steps(demo: &mut Demo, bins: &Bins) -> Result<()> {
    let pid = std::process::id();
    let hub = format!("fhf-{pid}-hub");
    // The plain demo's curl runs in `client`: here the hub.
    demo.client = hub.clone();
    netns::add(&hub)?;
    demo.namespaces.push(hub.clone());
    netns::ip(&hub, &["link", "set", "lo", "up"])?;
    netns::ip(
        &hub,
        &["addr", "add", &format!("{ETCD_IP}/32"), "dev", "lo"],
    )?;

    let mut nodes = Vec::new();
    for i in 1..=2u8 {
        let ns = format!("fhf-{pid}-n{i}");
        netns::add(&ns)?;
        demo.namespaces.push(ns.clone());
        let ip = format!("198.51.100.{i}");
        let hub_dev = format!("fh-n{i}");
        netns::ip(
            &hub,
            &[
                "link", "add", &hub_dev, "type", "veth", "peer", "name", "fh-hub", "netns", &ns,
            ],
        )
        .context("cannot create a veth pair")?;
        netns::ip(&hub, &["link", "set", &hub_dev, "up"])?;
        netns::ip(
            &hub,
            &["route", "add", &format!("{ip}/32"), "dev", &hub_dev],
        )?;
        netns::ip(&ns, &["link", "set", "lo", "up"])?;
        netns::ip(&ns, &["addr", "add", &format!("{ip}/32"), "dev", "fh-hub"])?;
        netns::ip(&ns, &["link", "set", "fh-hub", "up"])?;
        netns::ip(
            &ns,
            &[
                "route",
                "add",
                &format!("{ETCD_IP}/32"),
                "dev",
                "fh-hub",
                "src",
                &ip,
            ],
        )?;
        let dir = demo.tmp().join(format!("n{i}"));
        std::fs::create_dir_all(dir.join("state"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        nodes.push(Node {
            ns,
            ip,
            config: dir.join("config.toml"),
        });
    }
    println!(
        "xtask: namespaces {hub} (etcd on {ETCD_IP}:2379, and the client), {} ({}) and {} ({}), each node joined to the hub by a veth pair",
        nodes[0].ns, nodes[0].ip, nodes[1].ns, nodes[1].ip
    );
    check_interrupted()?;

    start_etcd(demo, &hub)?;
    for (i, node) in nodes.iter().enumerate() {
        start_node(demo, bins, node, i + 1)?;
    }
    println!("xtask: etcd and both nodes are up, and both nodes follow etcd; the demo starts");

    // Not enforced by the config: served on both nodes.
    for node in &nodes {
        let r = curl_node(demo, node)?;
        demo.expect_served(&r, &format!("blog on {} (config: not enforced)", node.ns))?;
    }

    let key = format!("{PREFIX}hosts/{BLOG}");
    let started = etcdctl(demo, &hub, &["put", &key, r#"{"force_https": true}"#])?;
    flip(demo, &nodes, true, started, "`etcdctl put`")?;
    for node in &nodes {
        cli(demo, bins, node, &["list"], Some("fleet"))?;
    }
    let started = etcdctl(demo, &hub, &["del", &key])?;
    flip(demo, &nodes, false, started, "`etcdctl del`")?;
    for node in &nodes {
        cli(demo, bins, node, &["list"], Some("config"))?;
    }

    // The CLI writes through etcd: enable on node 1 reaches node 2, disable on node 2 node 1.
    let started = cli(demo, bins, &nodes[0], &["enable", BLOG], None)?;
    flip(
        demo,
        &nodes,
        true,
        started,
        &format!("`force-https enable` on {}", nodes[0].ns),
    )?;
    let started = cli(demo, bins, &nodes[1], &["disable", BLOG], None)?;
    flip(
        demo,
        &nodes,
        false,
        started,
        &format!("`force-https disable` on {}", nodes[1].ns),
    )?;
    cli(demo, bins, &nodes[0], &["list"], Some("fleet"))?;
    etcdctl(demo, &hub, &["get", "--prefix", PREFIX])?;
    Ok(())
}

/// Starts etcd in the hub and waits until `etcdctl endpoint health` succeeds.
fn start_etcd(demo: &mut Demo, hub: &str) -> Result<()> {
    let data = demo.tmp().join("etcd-data");
    let url = etcd_url();
    let mut c = netns::exec(hub, "etcd");
    c.args(["--name", "fhf"])
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
        .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
        .args(["--initial-cluster", "fhf=http://127.0.0.1:2380"]);
    demo.spawn("etcd", c)?;
    let hub = hub.to_string();
    demo.wait_until("etcd is healthy", || {
        etcdctl_cmd(&hub, &["endpoint", "health"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// The node's config: port 80 only (sockets), shop enforced and blog not, `[fleet]`.
fn config_text(dir: &Path) -> String {
    let d = dir.display();
    let url = etcd_url();
    format!(
        r#"[listen]
http = ["0.0.0.0:80"]

[state]
dir = "{d}/state"
control_socket = "{d}/control.sock"

[[site]]
name = "shop"
domains = ["shop.example.com"]
backend = "http://{SHOP_BACKEND}"
force_https = true

[[site]]
name = "blog"
domains = ["{BLOG}"]
backend = "http://{BLOG_BACKEND}"
force_https = false

[fleet]
etcd_endpoints = ["{url}"]
prefix = "{PREFIX}"
"#
    )
}

/// Starts a node's backends and daemon; waits until `stats` shows `fleet_connected` 1.
fn start_node(demo: &mut Demo, bins: &Bins, node: &Node, i: usize) -> Result<()> {
    for (name, addr) in [("shop", SHOP_BACKEND), ("blog", BLOG_BACKEND)] {
        let mut c = netns::exec(&node.ns, &bins.fh_backend);
        c.args(["--listen", addr, "--name", &format!("{name}@n{i}")]);
        demo.spawn(&format!("fh-backend {name} n{i}"), c)?;
    }
    let dir = node.config.parent().context("config has a parent")?;
    let text = config_text(dir);
    std::fs::write(&node.config, &text)
        .with_context(|| format!("cannot write {}", node.config.display()))?;
    println!("xtask: config {}:", node.config.display());
    for line in text.lines() {
        println!("    {line}");
    }
    let mut daemon = netns::exec(&node.ns, &bins.force_https);
    daemon.arg("run").arg("--config").arg(&node.config);
    if std::env::var_os("RUST_LOG").is_none() {
        daemon.env("RUST_LOG", "info");
    }
    demo.spawn(&format!("force-https n{i}"), daemon)?;
    let (ns, fh, config) = (
        node.ns.clone(),
        bins.force_https.clone(),
        node.config.clone(),
    );
    demo.wait_until(&format!("node {i} is connected to etcd"), || {
        netns::exec(&ns, &fh)
            .args(["stats", "--json", "--config"])
            .arg(&config)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| json_u64(&String::from_utf8_lossy(&o.stdout), "fleet_connected"))
            == Some(1)
    })
}

/// The first `"key": NUMBER` of a JSON text.
fn json_u64(json: &str, key: &str) -> Option<u64> {
    json.split(&format!("\"{key}\":"))
        .nth(1)?
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn etcdctl_cmd(hub: &str, args: &[&str]) -> Command {
    let mut c = netns::exec(hub, "etcdctl");
    c.args(["--endpoints", &etcd_url(), "--command-timeout", "3s"])
        .args(args)
        .env("ETCDCTL_API", "3");
    c
}

/// Shows and runs `etcdctl ARGS` in the hub; returns when it returned.
fn etcdctl(demo: &mut Demo, hub: &str, args: &[&str]) -> Result<Instant> {
    check_interrupted()?;
    println!();
    println!(
        "[{hub}] $ etcdctl --endpoints {} {}",
        etcd_url(),
        args.iter()
            .map(|a| if a.contains(' ') || a.contains('"') {
                format!("'{a}'")
            } else {
                a.to_string()
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd::output(&mut etcdctl_cmd(hub, args))?;
    let done = Instant::now();
    print_output(&out);
    if !out.status.success() {
        bail!("etcdctl {} failed ({})", args.join(" "), out.status);
    }
    demo.checks.push(format!("etcdctl {}: ok", args[0]));
    Ok(done)
}

/// Shows and runs `force-https ARGS --config F` on a node; fails on non-zero. With `source`,
/// checks that `list`'s row for blog names that source. Returns when the command returned.
fn cli(
    demo: &mut Demo,
    bins: &Bins,
    node: &Node,
    args: &[&str],
    source: Option<&str>,
) -> Result<Instant> {
    check_interrupted()?;
    println!();
    println!(
        "[{}] $ force-https {} --config {}",
        node.ns,
        args.join(" "),
        node.config.display()
    );
    let mut c = netns::exec(&node.ns, &bins.force_https);
    c.args(args).arg("--config").arg(&node.config);
    let out = cmd::output(&mut c)?;
    let done = Instant::now();
    print_output(&out);
    if !out.status.success() {
        bail!(
            "`force-https {}` on {} failed ({})",
            args.join(" "),
            node.ns,
            out.status
        );
    }
    if let Some(want) = source {
        let text = String::from_utf8_lossy(&out.stdout);
        let row = text
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == BLOG))
            .with_context(|| format!("`list` on {} has no row for {BLOG}", node.ns))?;
        if !row.split_whitespace().any(|w| w == want) {
            bail!(
                "`list` on {}: expected source {want} for {BLOG}, got {row:?}",
                node.ns
            );
        }
        demo.checks
            .push(format!("`list` on {}: {BLOG} source {want}", node.ns));
    }
    Ok(done)
}

/// Shows and runs curl for blog against a node's port 80 (from the hub).
fn curl_node(demo: &mut Demo, node: &Node) -> Result<super::Response> {
    let resolve = format!("{BLOG}:80:{}", node.ip);
    demo.curl(&["--resolve", &resolve, &format!("http://{BLOG}/")])
}

/// Starts an unshown curl for blog against a node (1 s at most) that prints the status code.
fn poll_node(hub: &str, node: &Node) -> Result<std::process::Child> {
    let resolve = format!("{BLOG}:80:{}", node.ip);
    netns::exec(hub, "curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "1",
        ])
        .args(["--resolve", &resolve, &format!("http://{BLOG}/")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start curl")
}

/// Polls both nodes until each answers blog as `enforced` says, from `started` (the change's
/// command returned); prints each node's time, then shows one curl per node.
fn flip(
    demo: &mut Demo,
    nodes: &[Node],
    enforced: bool,
    started: Instant,
    what: &str,
) -> Result<()> {
    let hub = demo.client.clone();
    let mut took: Vec<Option<Duration>> = vec![None; nodes.len()];
    while took.iter().any(Option::is_none) {
        check_interrupted()?;
        if started.elapsed() > FLIP_TIMEOUT {
            bail!(
                "after {what}: not every node answered blog with {} within {} s",
                if enforced { "a 301" } else { "a 200" },
                FLIP_TIMEOUT.as_secs()
            );
        }
        // One curl per pending node at a time, all nodes in parallel.
        let mut polls = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if took[i].is_none() {
                polls.push((i, poll_node(&hub, node)?));
            }
        }
        for (i, child) in polls {
            let out = child.wait_with_output().context("cannot wait for curl")?;
            if (String::from_utf8_lossy(&out.stdout).trim() == "301") == enforced {
                took[i] = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let times: Vec<String> = nodes
        .iter()
        .zip(&took)
        .map(|(n, t)| {
            format!(
                "{} {:.1} ms",
                n.ns,
                t.unwrap_or_default().as_secs_f64() * 1e3
            )
        })
        .collect();
    println!();
    println!(
        "xtask: after {what}, blog {} on both nodes: {} (from the command's return to the first curl seeing the new answer; each poll is a curl in a namespace, ~10 ms here, so these are upper bounds: BENCHMARKS.md has the precise latency)",
        if enforced {
            "redirects"
        } else {
            "is served again"
        },
        times.join(", ")
    );
    for node in nodes {
        let r = curl_node(demo, node)?;
        let label = format!("blog on {} after {what}", node.ns);
        if enforced {
            demo.expect_redirect(&r, &format!("https://{BLOG}/"), &label)?;
        } else {
            demo.expect_served(&r, &label)?;
        }
    }
    demo.checks
        .push(format!("after {what}: {}", times.join(", ")));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_u64_finds_the_first_number() {
        let s = r#"{"fleet_connected": 1,"fleet_revision":42,"x":"fleet_connected"}"#;
        assert_eq!(json_u64(s, "fleet_connected"), Some(1));
        assert_eq!(json_u64(s, "fleet_revision"), Some(42));
        assert_eq!(json_u64(s, "missing"), None);
        assert_eq!(json_u64(r#"{"a":"x"}"#, "a"), None);
    }

    #[test]
    fn node_config_has_fleet() {
        let t = config_text(Path::new("/tmp/x"));
        assert!(t.contains("[fleet]\netcd_endpoints = [\"http://198.51.100.100:2379\"]"));
        assert!(t.contains("dir = \"/tmp/x/state\""));
    }
}
