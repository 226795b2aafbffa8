//! Secrets read from files (the admin token, etcd's password): the file must be a regular
//! file readable by its owner only, so a secret is never taken from a file others can read.

use std::{os::unix::fs::PermissionsExt, path::Path};

use anyhow::Context;

/// Reads the secret in `path`, surrounding whitespace (a final newline) removed. `what` names
/// it in errors ("the admin token file", "[fleet] password_file").
///
/// # Errors
/// The file cannot be read, is not a regular file, or its mode is not 0600 or 0400 (the
/// message says how to fix it), or it is empty.
pub fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {what} {shown}"))?;
    if !meta.is_file() {
        anyhow::bail!("{what} {shown} is not a regular file");
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o600 && mode != 0o400 {
        anyhow::bail!(
            "{what} {shown} has mode {mode:04o}: it must be readable by its owner only \
             (0600 or 0400); run `chmod 600 {shown}`"
        );
    }
    let text = std::fs::read(path).with_context(|| format!("cannot read {what} {shown}"))?;
    let secret = text.trim_ascii();
    if secret.is_empty() {
        anyhow::bail!("{what} {shown} is empty");
    }
    Ok(secret.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_and_content_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        std::fs::write(&p, "  hunter2\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret_file(&p, "the test secret")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&p, "x").unwrap(), b"hunter2");
        std::fs::write(&p, "\n").unwrap();
        assert!(
            read_secret_file(&p, "x")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let e = read_secret_file(d.path(), "x").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
