//! The bench's tools from Debian: wrk, h2load (`nghttp2-client`), ethtool, and the compared
//! servers (nginx, haproxy, caddy), installed with `apt-get install -y` when missing.
//!
//! Their Debian services must not start: during the install a `policy-rc.d` that exits 101 is
//! put in place when there is none (invoke-rc.d and deb-systemd-invoke then refuse every start),
//! and removed afterwards. When systemd runs, the services of the packages just installed are
//! also disabled, so they do not start at the next boot either. Services that were already
//! there are left alone (they are not ours); the quiet-machine check notices any load they add.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;

/// Packages every run needs.
pub const TOOLS: &[&str] = &[
    "wrk",
    "nghttp2-client",
    "ethtool",
    "curl",
    "openssl",
    "util-linux",
];

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Whether dpkg says `pkg` is installed.
fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).trim() == "install ok installed"
        })
        .unwrap_or(false)
}

/// Removes the temporary policy-rc.d on drop.
struct PolicyGuard {
    created: bool,
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        if self.created {
            if let Err(e) = std::fs::remove_file(POLICY_RC_D) {
                eprintln!("xtask: bench: cannot remove {POLICY_RC_D}: {e}");
            } else {
                println!("xtask: bench: removed the temporary {POLICY_RC_D}");
            }
        }
    }
}

fn deny_service_starts() -> Result<PolicyGuard> {
    if Path::new(POLICY_RC_D).exists() {
        let text = std::fs::read_to_string(POLICY_RC_D).unwrap_or_default();
        if !text.lines().any(|l| l.trim() == "exit 101") {
            println!("xtask: bench: warning: {POLICY_RC_D} exists and may allow services to start");
        }
        return Ok(PolicyGuard { created: false });
    }
    std::fs::write(
        POLICY_RC_D,
        "#!/bin/sh\n# cargo xtask bench: no service starts during apt-get install\nexit 101\n",
    )
    .with_context(|| format!("cannot write {POLICY_RC_D}"))?;
    std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))?;
    println!("xtask: bench: wrote a temporary {POLICY_RC_D} (exit 101) so no service starts");
    Ok(PolicyGuard { created: true })
}

/// Installs whatever of `packages` is missing. Needs root (the bench runs as root anyway).
pub fn ensure(packages: &[&str]) -> Result<()> {
    if cmd::which("dpkg-query").is_none() {
        for tool in ["wrk", "h2load", "ethtool", "taskset", "curl", "openssl"] {
            if cmd::which(tool).is_none() {
                bail!("{tool} is missing and this is not a Debian system: install it yourself");
            }
        }
        return Ok(());
    }
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("xtask: bench: packages present: {}", packages.join(" "));
        return Ok(());
    }
    println!("xtask: bench: installing {}", missing.join(" "));
    let _guard = deny_service_starts()?;
    cmd::run(Command::new("apt-get").arg("update")).context("apt-get update failed")?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )
    .context("apt-get install failed")?;
    if Path::new("/run/systemd/system").exists() {
        for svc in missing
            .iter()
            .filter(|p| matches!(**p, "nginx" | "haproxy" | "caddy"))
        {
            let _ = cmd::run(Command::new("systemctl").args(["disable", "--now", svc]));
        }
    }
    let still: Vec<&str> = missing.into_iter().filter(|p| !installed(p)).collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    Ok(())
}
