//! `cargo xtask dist`: the Debian package, with cargo-deb, and its install test.
//!
//! `cargo xtask dist` builds the release binary (`cargo build --release`: fat LTO, about 9
//! minutes from scratch on two cores), generates into `target/dist/` what the package ships besides it (the manual
//! pages from `force-https man`, gzipped; the bash, zsh and fish completions from `force-https
//! completions`; the systemd unit with `/usr/bin` paths), then runs `cargo deb --no-build`
//! with the `[package.metadata.deb]` of force-https-userspace. The `.deb` is written to
//! `target/dist/`. cargo-deb is installed first when missing (`cargo install cargo-deb
//! --locked`, idempotent).
//!
//! `cargo xtask dist --dev` packages the debug binary instead (stripped; no release build):
//! what the package test of `cargo xtask test` uses, to keep CI short.
//!
//! The package test ([`test_package`], root): `dpkg -i` the package (no service is started:
//! the unit is enabled but not started, and the maintainer scripts only talk to systemd under
//! `[ -d /run/systemd/system ]`), `force-https check` on the installed configuration (as root
//! and as the `force-https` user), the file list (`dpkg -L`) and conffile, the user and
//! state directory; `dpkg -r` keeps the configuration and the user; `dpkg --purge` removes
//! them, the state directory and the unit's enablement links.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};

use crate::cmd;

/// Options of `cargo xtask dist`.
#[derive(Debug, Default, clap::Args)]
pub struct DistArgs {
    /// Package the debug binary (`target/debug`, stripped) instead of building a release.
    #[arg(long, conflicts_with = "pgo")]
    pub dev: bool,
    /// Package the release daemon built with profile-guided optimization (`cargo xtask pgo`,
    /// root, about 15 minutes): the build `cargo xtask bench --pgo` measures.
    #[arg(long)]
    pub pgo: bool,
}

/// Installs cargo-deb when `cargo deb --version` fails (idempotent).
pub fn ensure_cargo_deb() -> Result<()> {
    let works = || {
        Command::new(cmd::cargo())
            .args(["deb", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if works() {
        println!("xtask: cargo-deb ... ok");
        return Ok(());
    }
    println!("xtask: cargo-deb ... missing: installing it (about a minute)");
    cmd::run(Command::new(cmd::cargo()).args(["install", "cargo-deb", "--locked"]))
        .context("installing cargo-deb failed")?;
    ensure!(
        works(),
        "`cargo deb --version` still fails after installing cargo-deb"
    );
    Ok(())
}

/// Builds the package; returns the path of the `.deb`.
pub fn run(args: &DistArgs) -> Result<PathBuf> {
    ensure_cargo_deb()?;
    let target = cmd::target_dir()?;
    let profile_dir = if args.dev { "debug" } else { "release" };
    // `cargo xtask pgo` builds for the host target into a target directory of its own: cargo
    // deb then finds the binary there (`CARGO_TARGET_DIR`, `--target`).
    let pgo = if args.pgo {
        let bin = crate::pgo::run()?;
        let host = bin
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .and_then(|h| h.to_str())
            .map(str::to_string)
            .with_context(|| format!("no target triple in {}", bin.display()))?;
        Some((bin, host))
    } else {
        None
    };
    if let Some((bin, _)) = &pgo {
        println!("xtask: packaging the PGO build {}", bin.display());
    } else if args.dev {
        println!("xtask: packaging the debug binary (cargo xtask dist without --dev: release)");
        // The same build as `cargo xtask test`'s (a no-op after it): building the one package
        // alone could unify features differently and rebuild the binary.
        cmd::run(cmd::cargo_cmd().args(["build", "--workspace", "--bins"]))?;
    } else {
        cmd::run(cmd::cargo_cmd().args([
            "build",
            "--release",
            "-p",
            "force-https-userspace",
            "--bin",
            "force-https",
        ]))?;
    }
    let bin = match &pgo {
        Some((bin, _)) => bin.clone(),
        None => target.join(profile_dir).join("force-https"),
    };
    let dist = target.join("dist");
    generate(&bin, &dist)?;
    let mut c = cmd::cargo_cmd();
    c.args([
        "deb",
        "-p",
        "force-https-userspace",
        "--no-build",
        "--output",
    ])
    .arg(&dist);
    if let Some((_, host)) = &pgo {
        c.env("CARGO_TARGET_DIR", crate::pgo::Layout::new(&target).use_dir)
            .args(["--target", host]);
    }
    if args.dev {
        // A stripped debug binary and fast compression: a small, quick package for the test.
        c.args(["--profile", "dev", "--strip", "--fast"]);
    }
    let out = cmd::stdout_of(&mut c).context("cargo deb failed")?;
    let deb = out
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo deb printed no .deb path: {out}"))?;
    println!("xtask: package: {}", deb.display());
    Ok(deb)
}

/// Writes the man pages, completions and unit of the package under `dist`.
fn generate(bin: &Path, dist: &Path) -> Result<()> {
    let man = dist.join("man");
    let completions = dist.join("completions");
    let systemd = dist.join("systemd");
    for d in [&man, &completions, &systemd] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("cannot clean {}", d.display()))?;
        }
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    cmd::stdout_of(Command::new(bin).arg("man").arg("--out-dir").arg(&man))?;
    for entry in std::fs::read_dir(&man)? {
        let p = entry?.path();
        cmd::run(Command::new("gzip").arg("-9nf").arg(&p))?;
    }
    for (shell, name) in [
        ("bash", "force-https"),
        ("zsh", "_force-https"),
        ("fish", "force-https.fish"),
    ] {
        let text = cmd::stdout_of(Command::new(bin).args(["completions", shell]))?;
        std::fs::write(completions.join(name), text)?;
    }
    let unit = std::fs::read_to_string(cmd::workspace_root().join("dist/force-https.service"))
        .context("cannot read dist/force-https.service")?;
    std::fs::write(
        systemd.join("force-https.service"),
        unit.replace("/usr/local/bin/force-https", "/usr/bin/force-https"),
    )?;
    Ok(())
}

/// What `dpkg -L force-https` must list (directories aside).
const FILES: &[&str] = &[
    "/usr/bin/force-https",
    "/etc/force-https/config.toml",
    "/usr/lib/systemd/system/force-https.service",
    "/usr/share/man/man8/force-https.8.gz",
    "/usr/share/man/man8/force-https-run.8.gz",
    "/usr/share/man/man8/force-https-reload.8.gz",
    "/usr/share/bash-completion/completions/force-https",
    "/usr/share/zsh/vendor-completions/_force-https",
    "/usr/share/fish/vendor_completions.d/force-https.fish",
    "/usr/share/doc/force-https/README.md",
    "/usr/share/doc/force-https/copyright",
    "/usr/share/doc/force-https/EUPL-1.2.txt",
];

fn dpkg(args: &[&str]) -> Result<String> {
    cmd::stdout_of(Command::new("dpkg").args(args))
}

fn exists(p: &str) -> bool {
    Path::new(p).exists()
}

fn user_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["passwd", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn group_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["group", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Purges the package if a test left it installed (also on failure).
struct PurgeGuard;

impl Drop for PurgeGuard {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "force-https"])
            .output();
    }
}

/// The package test (root): builds the package from the debug binary and checks install,
/// removal and purge on this machine. Fails when the package is already installed (it would
/// be removed by the test).
pub fn test_package() -> Result<()> {
    if !cmd::is_root() {
        bail!("the package test installs a .deb with dpkg: run it as root");
    }
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "force-https"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
        .unwrap_or(false);
    ensure!(
        !installed,
        "a force-https package is already installed on this machine; the package test would \
         replace it (dpkg --purge force-https first)"
    );
    let deb = run(&DistArgs {
        dev: true,
        ..DistArgs::default()
    })?;
    let _guard = PurgeGuard;
    let deb = deb.to_str().context("non-UTF-8 package path")?;
    let out = dpkg(&["-i", deb]).context("dpkg -i failed")?;
    println!("{out}");

    // Installed: the configuration checks, as root and as the daemon's user.
    let check = cmd::stdout_of(Command::new("/usr/bin/force-https").args([
        "check",
        "--config",
        "/etc/force-https/config.toml",
    ]))?;
    ensure!(check.contains("ok"), "force-https check: {check}");
    cmd::stdout_of(Command::new("runuser").args([
        "-u",
        "force-https",
        "--",
        "/usr/bin/force-https",
        "check",
        "--config",
        "/etc/force-https/config.toml",
    ]))
    .context("the force-https user cannot read its configuration")?;
    let list = dpkg(&["-L", "force-https"])?;
    for f in FILES {
        ensure!(
            list.lines().any(|l| l == *f),
            "{f} missing from `dpkg -L force-https`:\n{list}"
        );
    }
    let conffiles =
        cmd::stdout_of(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "force-https"]))?;
    ensure!(
        conffiles.contains("/etc/force-https/config.toml"),
        "the configuration is not a conffile: {conffiles:?}"
    );
    ensure!(
        user_exists("force-https"),
        "no force-https user after install"
    );
    let owner =
        cmd::stdout_of(Command::new("stat").args(["-c", "%U:%G %a", "/var/lib/force-https"]))?;
    ensure!(
        owner.trim() == "force-https:force-https 750",
        "state directory: {owner}"
    );
    // Not started: no systemd here, and the package never starts it on first install.
    let man = cmd::stdout_of(Command::new("zcat").arg("/usr/share/man/man8/force-https.8.gz"))?;
    ensure!(man.contains(".TH force-https 8"), "man page: {man:.200}");

    // Removed: the configuration and the user stay.
    dpkg(&["-r", "force-https"]).context("dpkg -r failed")?;
    ensure!(!exists("/usr/bin/force-https"), "binary left after dpkg -r");
    ensure!(
        exists("/etc/force-https/config.toml"),
        "dpkg -r removed the configuration (a conffile)"
    );
    ensure!(user_exists("force-https"), "dpkg -r removed the user");

    // Purged: everything goes.
    dpkg(&["--purge", "force-https"]).context("dpkg --purge failed")?;
    ensure!(!user_exists("force-https"), "user left after purge");
    ensure!(!group_exists("force-https"), "group left after purge");
    for p in [
        "/var/lib/force-https",
        "/etc/force-https",
        "/etc/systemd/system/multi-user.target.wants/force-https.service",
    ] {
        ensure!(!exists(p), "{p} left after purge");
    }
    println!("xtask: package test ok ({deb}: install, check, file list, remove, purge)");
    Ok(())
}
