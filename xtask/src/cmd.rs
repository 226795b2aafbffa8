//! Small helpers shared by the tasks: running and echoing commands, locating the workspace,
//! the target directory and tools, and the root check.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// The cargo that runs us (`CARGO`, set by `cargo run`), else `cargo` from PATH.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// A `Command` for cargo, run in the workspace root.
pub fn cargo_cmd() -> Command {
    let mut c = Command::new(cargo());
    c.current_dir(workspace_root());
    c
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
}

/// `$CARGO_HOME/bin`, defaulting to `~/.cargo/bin`.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(home).join("bin"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo").join("bin"))
}

/// Puts `~/.cargo/bin` on PATH for every command we start (bpf-linker is looked up there by the
/// eBPF build). Called first thing in `main`, before any thread exists.
pub fn ensure_cargo_bin_on_path() {
    let Some(bin) = cargo_bin_dir() else { return };
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == bin) {
        return;
    }
    let mut parts = vec![bin];
    parts.extend(std::env::split_paths(&path));
    if let Ok(joined) = std::env::join_paths(parts) {
        // SAFETY: called at the start of `main`, while the process has a single thread.
        unsafe { std::env::set_var("PATH", joined) };
    }
}

/// The first executable called `name` in PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Whether we run with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%[]".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command as a shell line: env assignments, program, arguments.
pub fn show(c: &Command) -> String {
    let mut parts: Vec<String> = c
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), quote(v))))
        .collect();
    parts.push(quote(c.get_program()));
    parts.extend(c.get_args().map(quote));
    parts.join(" ")
}

/// Prints `xtask: $ CMD`, runs it with inherited stdio, fails on a non-zero exit.
pub fn run(c: &mut Command) -> Result<()> {
    println!("xtask: $ {}", show(c));
    let status = c
        .status()
        .with_context(|| format!("cannot start `{}`", show(c)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(c));
    }
    Ok(())
}

/// Runs the command with captured output, whatever its exit status.
pub fn output(c: &mut Command) -> Result<Output> {
    c.output()
        .with_context(|| format!("cannot start `{}`", show(c)))
}

/// Runs the command with captured output; its stdout when it succeeds, else an error with stderr.
pub fn stdout_of(c: &mut Command) -> Result<String> {
    let out = output(c)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            show(c),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `openssl req` making a throw-away self-signed ECDSA P-256 certificate (2 days) for the
/// DNS names `sans` (the first is the CN), written to `cert` and `key`.
pub fn self_signed_cert(cert: &Path, key: &Path, sans: &[&str]) -> Command {
    let san = sans
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut c = Command::new("openssl");
    c.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={}", sans.first().copied().unwrap_or("localhost")),
        "-addext",
        &format!("subjectAltName={san}"),
        "-keyout",
    ])
    .arg(key)
    .arg("-out")
    .arg(cert);
    c
}

/// The workspace's target directory, from `cargo metadata`.
pub fn target_dir() -> Result<PathBuf> {
    let json = stdout_of(cargo_cmd().args(["metadata", "--format-version", "1", "--no-deps"]))
        .context("cannot read the workspace metadata")?;
    json_string_field(&json, "target_directory")
        .map(PathBuf::from)
        .context("`cargo metadata` output has no target_directory")
}

/// The built binaries the tests and the demo run.
pub struct Bins {
    pub force_https: PathBuf,
    pub fh_backend: PathBuf,
}

impl Bins {
    /// `TARGET/debug/{force-https,fh-backend}`; fails when either is missing.
    pub fn locate() -> Result<Bins> {
        let debug = target_dir()?.join("debug");
        let bins = Bins {
            force_https: debug.join("force-https"),
            fh_backend: debug.join("fh-backend"),
        };
        for (p, who) in [
            (&bins.force_https, "force-https-userspace"),
            (&bins.fh_backend, "tests"),
        ] {
            if !p.is_file() {
                bail!(
                    "{} was not built (expected from the `{who}` crate by `cargo build --workspace --bins`)",
                    p.display()
                );
            }
        }
        Ok(bins)
    }
}

/// The value of the first `"key": "string"` in a JSON text (enough for `cargo metadata`'s
/// top-level `target_directory`, without a JSON dependency).
pub fn json_string_field(json: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\"");
    let after = &json[json.find(&needle)? + needle.len()..];
    let after = after.trim_start().strip_prefix(':')?.trim_start();
    let mut chars = after.strip_prefix('"')?.chars();
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_field() {
        let j = r#"{"packages":[],"target_directory" : "/a/b \"c\"\\d","version":1}"#;
        assert_eq!(
            json_string_field(j, "target_directory").as_deref(),
            Some(r#"/a/b "c"\d"#)
        );
        assert_eq!(json_string_field(j, "nope"), None);
    }

    #[test]
    fn show_quotes() {
        let mut c = Command::new("curl");
        c.args(["-H", "Host: shop.example.com", "http://[2001:db8::1]/"]);
        assert_eq!(
            show(&c),
            "curl -H 'Host: shop.example.com' http://[2001:db8::1]/"
        );
    }
}
