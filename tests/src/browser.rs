//! Headless Chromium (Debian's `chromium` package, installed by `cargo xtask setup`) for the
//! browser tests: a page loaded in the client namespace, its console messages and its DOM
//! after load, with the test CA's leaf trusted by its public key.

use std::{path::PathBuf, process::Output, time::Duration};

use crate::{Netns, in_ci, output_timeout, pki::Pki};

/// The Chromium binary, or `None` (printing why) when it is missing outside CI. Under
/// `CI=true` a missing browser fails the test: CI never skips.
pub fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        for dir in ["/usr/bin", "/usr/local/bin", "/snap/bin"] {
            let p = PathBuf::from(dir).join(name);
            if p.exists() {
                return Some(p);
            }
        }
    }
    let why = "headless Chromium is not installed (run `cargo xtask setup`, which installs Debian's `chromium`)";
    if in_ci() {
        panic!("{why}; CI=true, so failing instead of skipping");
    }
    eprintln!("skipping: {why}");
    None
}

/// What a page load gave.
pub struct PageLoad {
    /// The DOM after the load event (`--dump-dom`).
    pub dom: String,
    /// Chromium's log: console messages are the lines with `CONSOLE`.
    pub log: String,
}

impl PageLoad {
    /// The console messages.
    pub fn console(&self) -> Vec<&str> {
        self.log.lines().filter(|l| l.contains("CONSOLE")).collect()
    }
}

/// The base64 SHA-256 of a certificate's public key (`--ignore-certificate-errors-spki-list`).
pub fn spki_hash(pki: &Pki, cert_name: &str) -> String {
    let cert = pki.path(&format!("{cert_name}.pem"));
    let cmd = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        cert.display()
    );
    let out = output_timeout(
        std::process::Command::new("sh").args(["-c", &cmd]),
        Duration::from_secs(15),
    );
    assert!(out.status.success(), "spki hash of {}", cert.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Loads `url` in headless Chromium in the client namespace, every host name mapped to
/// `edge_ip`, trusting the keys `spki` (base64 SHA-256), with a 10 s virtual-time budget.
pub fn load(ns: &Netns, bin: &PathBuf, url: &str, edge_ip: &str, spki: &[String]) -> PageLoad {
    let profile = tempfile::Builder::new()
        .prefix("fht-chromium-")
        .tempdir()
        .expect("profile dir");
    let rules = format!("--host-resolver-rules=MAP * {edge_ip}");
    let trust = format!("--ignore-certificate-errors-spki-list={}", spki.join(","));
    let data = format!("--user-data-dir={}", profile.path().display());
    let out: Output = output_timeout(
        ns.cli_cmd(&[
            bin.to_str().expect("utf-8 path"),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            &rules,
            &trust,
            &data,
            "--dump-dom",
            url,
        ])
        .env("HOME", profile.path()),
        Duration::from_secs(60),
    );
    PageLoad {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
