//! `cargo xtask setup`: checks every prerequisite and installs what is missing, idempotently.
//!
//! - the rustup `nightly` toolchain with `rust-src` (the eBPF crate is built with
//!   `-Z build-std=core`), and rustfmt + clippy on the toolchain that builds the workspace;
//! - N = the LLVM major of `rustc +nightly -vV`;
//! - Debian packages `llvm-N-dev libpolly-N-dev libzstd-dev` (to build bpf-linker) and the tools
//!   the tests and the demo run: `iproute2 curl procps openssl`, etcd (`etcd-server`,
//!   `etcd-client`), protoc (`protobuf-compiler`, `libprotobuf-dev`, for the `etcd-client` crate)
//!   and `hping3` (the SYN flood of tests/tests/syn_flood.rs and `cargo xtask bench --syn-flood`);
//! - bpf-linker 0.13.0 built against LLVM N (`~/.cargo/bin/bpf-linker`);
//! - cargo-fuzz (`cargo install cargo-fuzz --locked`), for `cargo xtask fuzz`.
//!
//! Debian packages are installed only as root. When something is still missing at the end, the
//! exact manual steps are printed and the command fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;

/// The bpf-linker release the eBPF build uses.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// Tools the tests and the demo run: `ip` and `nstat` (iproute2), `curl`, `sysctl` (procps),
/// `openssl` for test certificates, and Debian's headless Chromium for the browser tests
/// (mixed content, the admin dashboard); `adduser` for the package test's maintainer scripts;
/// `etcd-server` and `etcd-client` (etcd and etcdctl) for the fleet tests and the demo
/// (`[fleet]`, issue 14); `protobuf-compiler` and `libprotobuf-dev` (protoc and the well-known
/// `.proto` includes), which the `etcd-client` crate's build script needs (cargo feature
/// `fleet`, on by default); `hping3` for the bounded SYN floods of the SYN-flood test and bench
/// (issue 11).
const RUNTIME_PACKAGES: &[&str] = &[
    "iproute2",
    "curl",
    "procps",
    "openssl",
    "chromium",
    "adduser",
    "etcd-server",
    "etcd-client",
    "protobuf-compiler",
    "libprotobuf-dev",
    "hping3",
];

fn status(what: &str, state: &str) {
    println!("xtask: {what} ... {state}");
}

/// Runs every check; installs what is missing where it can; fails with manual steps otherwise.
pub fn run() -> Result<()> {
    let root = cmd::is_root();
    let mut problems: Vec<String> = Vec::new();

    if cmd::which("rustup").is_none() {
        status("rustup", "missing");
        print_manual_steps(None);
        bail!("rustup is not installed (see https://rustup.rs), so setup cannot continue");
    }
    status("rustup", "ok");

    if let Err(e) = ensure_nightly() {
        problems.push(format!("{e:#}"));
    }
    if let Err(e) = ensure_stable_components() {
        problems.push(format!("{e:#}"));
    }

    let llvm = match nightly_llvm_major() {
        Ok(n) => {
            status("LLVM major of nightly rustc", &format!("{n}"));
            Some(n)
        }
        Err(e) => {
            status("LLVM major of nightly rustc", "unknown");
            problems.push(format!("{e:#}"));
            None
        }
    };

    let mut packages: Vec<String> = Vec::new();
    if let Some(n) = llvm {
        packages.push(format!("llvm-{n}-dev"));
        packages.push(format!("libpolly-{n}-dev"));
    }
    packages.push("libzstd-dev".into());
    packages.extend(RUNTIME_PACKAGES.iter().map(|p| p.to_string()));
    if let Err(e) = ensure_packages(&packages, root) {
        problems.push(format!("{e:#}"));
    }

    match llvm {
        Some(n) => {
            if let Err(e) = ensure_bpf_linker(n) {
                problems.push(format!("{e:#}"));
            }
        }
        None => {
            problems.push("bpf-linker not checked: the LLVM major of nightly is unknown".into())
        }
    }

    if let Err(e) = crate::fuzz::ensure_cargo_fuzz() {
        problems.push(format!("{e:#}"));
    }

    if !problems.is_empty() {
        print_manual_steps(llvm);
        let mut msg = format!("setup incomplete ({} problem(s)):", problems.len());
        for p in &problems {
            msg.push_str("\n  - ");
            msg.push_str(p);
        }
        if !root {
            msg.push_str("\n  (not running as root: Debian packages were not installed)");
        }
        bail!(msg);
    }
    println!("xtask: setup ... all prerequisites present");
    Ok(())
}

/// The rustup `nightly` toolchain with the `rust-src` component.
fn ensure_nightly() -> Result<()> {
    let toolchains = cmd::stdout_of(Command::new("rustup").args(["toolchain", "list"]))?;
    let has_nightly = toolchains.lines().any(|l| l.starts_with("nightly"));
    if !has_nightly {
        status("nightly toolchain", "missing");
        println!("xtask: installing the nightly toolchain with rust-src");
        cmd::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))
        .context("installing the nightly toolchain failed")?;
    } else {
        status("nightly toolchain", "ok");
    }

    let has_rust_src = || -> Result<bool> {
        let installed = cmd::stdout_of(Command::new("rustup").args([
            "component",
            "list",
            "--toolchain",
            "nightly",
            "--installed",
        ]))?;
        Ok(installed
            .lines()
            .any(|l| l.trim() == "rust-src" || l.starts_with("rust-src-")))
    };
    if has_rust_src()? {
        status("rust-src for nightly", "ok");
        return Ok(());
    }
    status("rust-src for nightly", "missing");
    println!("xtask: installing rust-src for nightly");
    cmd::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
    .context("installing rust-src for nightly failed")?;
    if !has_rust_src()? {
        bail!("rust-src is still not installed for nightly");
    }
    Ok(())
}

/// rustfmt and clippy for the toolchain that builds the workspace (`cargo xtask test` runs them).
fn ensure_stable_components() -> Result<()> {
    let works = |sub: &str| {
        cmd::cargo_cmd()
            .args([sub, "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let missing: Vec<&str> = [("fmt", "rustfmt"), ("clippy", "clippy")]
        .into_iter()
        .filter(|(sub, _)| !works(sub))
        .map(|(_, component)| component)
        .collect();
    if missing.is_empty() {
        status("rustfmt and clippy", "ok");
        return Ok(());
    }
    status(
        "rustfmt and clippy",
        &format!("missing {}", missing.join(", ")),
    );
    println!("xtask: installing {}", missing.join(" "));
    let mut c = Command::new("rustup");
    c.current_dir(cmd::workspace_root())
        .args(["component", "add"])
        .args(&missing);
    cmd::run(&mut c).context("installing rustfmt/clippy failed")?;
    Ok(())
}

/// N from `LLVM version: N.x.y` in `rustc +nightly -vV`.
fn nightly_llvm_major() -> Result<u32> {
    let vv = cmd::stdout_of(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))
        .context("cannot run nightly rustc")?;
    parse_llvm_major(&vv).with_context(|| format!("no `LLVM version:` line in:\n{vv}"))
}

fn parse_llvm_major(vv: &str) -> Option<u32> {
    let v = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))?
        .trim();
    v.split('.').next()?.parse().ok()
}

/// `Some(true)` when dpkg says the package is installed, `None` when dpkg-query is absent.
fn dpkg_installed(pkg: &str) -> Option<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .ok()?;
    Some(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).trim() == "install ok installed",
    )
}

/// Debian packages, installed with apt-get when we are root.
fn ensure_packages(packages: &[String], root: bool) -> Result<()> {
    if cmd::which("dpkg-query").is_none() {
        status(
            "Debian packages",
            &format!(
                "not checked (no dpkg-query: install the equivalents of {} yourself)",
                packages.join(" ")
            ),
        );
        return Ok(());
    }
    let missing = |pkgs: &[String]| -> Vec<String> {
        pkgs.iter()
            .filter(|p| dpkg_installed(p) != Some(true))
            .cloned()
            .collect()
    };
    let before = missing(packages);
    for p in packages {
        status(
            &format!("package {p}"),
            if before.contains(p) { "missing" } else { "ok" },
        );
    }
    if before.is_empty() {
        return Ok(());
    }
    if !root {
        bail!(
            "missing Debian packages: {} (installing them needs root)",
            before.join(" ")
        );
    }
    println!("xtask: installing {}", before.join(" "));
    cmd::run(Command::new("apt-get").arg("update")).context("apt-get update failed")?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y"])
        .args(&before);
    cmd::run(&mut install).context("apt-get install failed")?;
    let after = missing(packages);
    if !after.is_empty() {
        bail!("still missing after apt-get install: {}", after.join(" "));
    }
    Ok(())
}

/// The bpf-linker binary: PATH first, then `~/.cargo/bin`.
fn find_bpf_linker() -> Option<PathBuf> {
    cmd::which("bpf-linker").or_else(|| {
        let p = cmd::cargo_bin_dir()?.join("bpf-linker");
        p.is_file().then_some(p)
    })
}

/// The LLVM major a dynamically linked binary uses (`libLLVM.so.22.1` or `libLLVM-22.so`), from
/// ldd; `None` when it is static or ldd is unavailable.
fn linked_llvm_major(bin: &Path) -> Option<u32> {
    let out = Command::new("ldd").arg(bin).output().ok()?;
    parse_ldd_llvm_major(&String::from_utf8_lossy(&out.stdout))
}

fn parse_ldd_llvm_major(ldd: &str) -> Option<u32> {
    ldd.lines().find_map(|l| {
        let name = l.split_whitespace().next()?;
        let rest = name
            .strip_prefix("libLLVM.so.")
            .or_else(|| name.strip_prefix("libLLVM-"))?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    })
}

/// bpf-linker `BPF_LINKER_VERSION`, linked against LLVM `llvm`.
fn ensure_bpf_linker(llvm: u32) -> Result<()> {
    let what = format!("bpf-linker {BPF_LINKER_VERSION} (LLVM {llvm})");
    let mut force = false;
    match find_bpf_linker() {
        Some(bin) => {
            let version = cmd::stdout_of(Command::new(&bin).arg("--version")).unwrap_or_default();
            let version = version
                .split_whitespace()
                .nth(1)
                .unwrap_or("unknown")
                .to_string();
            if version != BPF_LINKER_VERSION {
                status(
                    &what,
                    &format!("found {version} at {}: reinstalling", bin.display()),
                );
                force = true;
            } else {
                match linked_llvm_major(&bin) {
                    Some(m) if m != llvm => {
                        status(&what, &format!("linked against LLVM {m}: reinstalling"));
                        force = true;
                    }
                    Some(_) => {
                        status(&what, "ok");
                        return Ok(());
                    }
                    None => {
                        status(&what, "ok (LLVM linkage not visible: static build)");
                        return Ok(());
                    }
                }
            }
        }
        None => status(&what, "missing"),
    }

    let prefix = format!("/usr/lib/llvm-{llvm}");
    if !Path::new(&prefix).join("bin/llvm-config").is_file() {
        bail!(
            "cannot build bpf-linker: {prefix}/bin/llvm-config is missing (package llvm-{llvm}-dev)"
        );
    }
    println!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm} (about a minute)"
    );
    let install = |locked: bool| {
        let mut c = Command::new(cmd::cargo());
        c.env("LLVM_PREFIX", &prefix)
            .arg("install")
            .arg("bpf-linker");
        if locked {
            c.arg("--locked");
        }
        c.args([
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            &format!("llvm-{llvm}"),
        ]);
        if force {
            c.arg("--force");
        }
        cmd::run(&mut c)
    };
    if let Err(e) = install(true) {
        println!("xtask: {e:#}; retrying without --locked");
        install(false).context("building bpf-linker failed")?;
    }
    let bin = find_bpf_linker().context("bpf-linker is still not found after cargo install")?;
    let version = cmd::stdout_of(Command::new(&bin).arg("--version"))?;
    if !version.contains(BPF_LINKER_VERSION) {
        bail!("installed bpf-linker reports `{}`", version.trim());
    }
    status(&what, "installed");
    Ok(())
}

/// Everything setup does, as commands a person can run.
fn print_manual_steps(llvm: Option<u32>) {
    let n = llvm.map_or_else(|| "N".to_string(), |n| n.to_string());
    let packages = format!(
        "llvm-{n}-dev libpolly-{n}-dev libzstd-dev {}",
        RUNTIME_PACKAGES.join(" ")
    );
    eprintln!("xtask: to install the prerequisites by hand:");
    eprintln!("  # rustup itself: https://rustup.rs");
    eprintln!("  rustup toolchain install nightly --profile minimal --component rust-src");
    eprintln!("  #   or, when nightly is already installed:");
    eprintln!("  rustup component add rust-src --toolchain nightly");
    eprintln!("  rustup component add rustfmt clippy");
    if llvm.is_none() {
        eprintln!(
            "  # N below is the LLVM major printed by: rustc +nightly -vV | grep 'LLVM version'"
        );
    }
    eprintln!("  # as root:");
    eprintln!("  apt-get update");
    eprintln!("  DEBIAN_FRONTEND=noninteractive apt-get install -y {packages}");
    eprintln!(
        "  LLVM_PREFIX=/usr/lib/llvm-{n} cargo install bpf-linker --locked --version {BPF_LINKER_VERSION} --no-default-features --features llvm-{n}"
    );
    eprintln!(
        "  #   if that fails, the same without --locked; add --force to replace another build"
    );
    eprintln!("  cargo install cargo-fuzz --locked");
    eprintln!("  export PATH=\"$HOME/.cargo/bin:$PATH\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major() {
        let vv =
            "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(parse_llvm_major(vv), Some(22));
        assert_eq!(parse_llvm_major("rustc 1.0"), None);
    }

    #[test]
    fn ldd_llvm() {
        let ldd = "\tlinux-vdso.so.1 (0x1)\n\tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x2)\n";
        assert_eq!(parse_ldd_llvm_major(ldd), Some(22));
        assert_eq!(
            parse_ldd_llvm_major("\tlibLLVM-21.so => /x (0x1)\n"),
            Some(21)
        );
        assert_eq!(parse_ldd_llvm_major("\tlibc.so.6 => /x (0x1)\n"), None);
    }

    #[test]
    fn missing_package_without_root_is_reported_not_installed() {
        let r = ensure_packages(&["fh-no-such-package".to_string()], false);
        if cmd::which("dpkg-query").is_some() {
            let e = format!("{:#}", r.unwrap_err());
            assert!(
                e.contains("fh-no-such-package") && e.contains("needs root"),
                "{e}"
            );
        } else {
            assert!(r.is_ok());
        }
    }
}
