//! Network-namespace helpers over iproute2: create and delete namespaces, run `ip` inside one,
//! and build commands that run a program inside one (`ip netns exec NS PROGRAM ...`).
//!
//! Test environments use only 198.51.100.0/24 and 2001:db8::/32 (documentation ranges) plus
//! loopback.

use std::ffi::OsStr;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;

/// `ip netns add NAME`.
pub fn add(name: &str) -> Result<()> {
    let out = cmd::output(Command::new("ip").args(["netns", "add", name]))?;
    if !out.status.success() {
        bail!(
            "cannot create network namespace {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `ip netns del NAME`.
pub fn del(name: &str) -> Result<()> {
    let out = cmd::output(Command::new("ip").args(["netns", "del", name]))?;
    if !out.status.success() {
        bail!(
            "cannot delete network namespace {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// PIDs of processes still in the namespace (`ip netns pids NAME`).
pub fn pids(name: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `ip -n NS ARGS...`, failing with its stderr.
pub fn ip(ns: &str, args: &[&str]) -> Result<()> {
    let mut c = Command::new("ip");
    c.args(["-n", ns]).args(args);
    let out = cmd::output(&mut c)?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            cmd::show(&c),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A command running `program` inside `ns`. `ip netns exec` execs the program, so the child's
/// pid is the program's.
pub fn exec(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

/// Two namespaces joined by a veth pair (`fh-edge` in `edge`, `fh-cli` in `client`), loopback up
/// in both. IPv6 addresses are added with `nodad` so they are usable at once.
pub fn link_pair(
    edge: &str,
    client: &str,
    edge_addrs: &[&str],
    client_addrs: &[&str],
) -> Result<()> {
    ip(
        edge,
        &[
            "link", "add", "fh-edge", "type", "veth", "peer", "name", "fh-cli", "netns", client,
        ],
    )
    .context("cannot create the veth pair")?;
    for (ns, dev, addrs) in [
        (edge, "fh-edge", edge_addrs),
        (client, "fh-cli", client_addrs),
    ] {
        for a in addrs {
            let mut args = vec!["addr", "add", a, "dev", dev];
            if a.contains(':') {
                args.push("nodad");
            }
            ip(ns, &args)?;
        }
        ip(ns, &["link", "set", "lo", "up"])?;
        ip(ns, &["link", "set", dev, "up"])?;
    }
    Ok(())
}
