//! Crash-safe persistence of runtime host overrides (`force-https enable|disable`).
//!
//! The file is `STATE_DIR/state.json`: `{"version":1,"hosts":{"a.example":true,...}}`.
//! A write goes to a temporary file in the same directory, is fsynced, renamed over the old
//! file and the directory is fsynced, so a crash at any point leaves either the old or the new
//! complete file. A file that does not parse is an error: the daemon refuses to start rather
//! than silently drop hosts.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// File name inside the state directory.
pub const STATE_FILE: &str = "state.json";
const VERSION: u32 = 1;

/// Runtime overrides: host pattern → enforced.
pub type Overrides = BTreeMap<String, bool>;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    hosts: Overrides,
}

/// The state file of one daemon.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// A store in `dir` (created on first save).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Path of the state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Loads the overrides; a missing file is an empty set, a corrupt one an error.
    pub fn load(&self) -> anyhow::Result<Overrides> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Overrides::new()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read state file {}", path.display()));
            }
        };
        let file: StateFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "state file {} is corrupt; refusing to start rather than drop runtime hosts. \
                 Fix or remove it (runtime enable/disable changes in it would be lost)",
                path.display()
            )
        })?;
        if file.version != VERSION {
            bail!(
                "state file {} has version {}, this force-https understands version {VERSION}",
                path.display(),
                file.version
            );
        }
        Ok(file.hosts)
    }

    /// Writes the overrides atomically and durably.
    pub fn save(&self, hosts: &Overrides) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create state directory {}", self.dir.display()))?;
        let body = serde_json::to_vec_pretty(&StateFile {
            version: VERSION,
            hosts: hosts.clone(),
        })?;
        let tmp = self
            .dir
            .join(format!(".{STATE_FILE}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, self.path())?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            anyhow::Error::new(e)
                .context(format!("cannot write state file {}", self.path().display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_missing() {
        let d = tempfile::tempdir().unwrap();
        let s = StateStore::new(&d.path().join("sub"));
        assert!(s.load().unwrap().is_empty());
        let mut h = Overrides::new();
        h.insert("a.example".into(), true);
        h.insert("b.example".into(), false);
        s.save(&h).unwrap();
        assert_eq!(s.load().unwrap(), h);
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(d.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn corrupt_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(STATE_FILE), "{garbage").unwrap();
        let e = StateStore::new(d.path()).load().unwrap_err();
        assert!(format!("{e:#}").contains("corrupt"), "{e:#}");
    }
}
