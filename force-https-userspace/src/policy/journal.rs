//! Crash-safe persistence of runtime host overrides (`force-https enable|disable`).
//!
//! Two files in `STATE_DIR`:
//! - `state.json`, the snapshot: `{"version":1,"hosts":{"a.example":true,...}}`. It is written
//!   to a temporary file in the same directory, fsynced, renamed over the old one, and the
//!   directory is fsynced, so a crash at any point leaves either the old or the new complete
//!   file.
//! - `state.journal`, the changes since the snapshot, one JSON line per `enable`/`disable`:
//!   `{"hosts":{"a.example":true,"b.example":null}}` (`null`: the override is removed). A line
//!   is appended and fdatasynced before the CLI gets its answer, so a change costs one small
//!   write whatever the number of hosts.
//!
//! Loading reads the snapshot and replays the journal, then compacts: the merged overrides
//! become the new snapshot and the journal is removed. The daemon also compacts when the
//! journal grows larger than the snapshot (and at least [`COMPACT_MIN`]), which keeps the
//! amortized cost of a change constant. Replaying a journal over a snapshot that already holds
//! its changes gives the same result, so a crash between the snapshot rename and the journal
//! removal loses nothing.
//!
//! A journal line cut short by a crash (no final newline) was never acknowledged and is
//! ignored. Anything else that does not parse is an error: the daemon refuses to start rather
//! than silently drop hosts.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// File name of the snapshot inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// File name of the journal inside the state directory.
pub const JOURNAL_FILE: &str = "state.journal";
/// File name of the last known fleet table (`[fleet]`): the same format as [`STATE_FILE`].
pub const FLEET_FILE: &str = "fleet.json";
/// File name of the fleet table's journal: the same format as [`JOURNAL_FILE`].
pub const FLEET_JOURNAL_FILE: &str = "fleet.journal";
const VERSION: u32 = 1;
/// The journal is compacted into the snapshot once it is larger than this and than the
/// snapshot.
pub const COMPACT_MIN: u64 = 1 << 20;

/// Runtime overrides: host pattern → enforced.
pub type Overrides = BTreeMap<String, bool>;

/// One change of the overrides: host pattern → `Some(enforced)`, or `None` to remove it.
pub type Delta = Vec<(String, Option<bool>)>;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    hosts: Overrides,
}

/// [`StateFile`] as written: the overrides borrowed, not copied (1M hosts at fleet scale).
#[derive(Serialize)]
struct StateFileRef<'a> {
    version: u32,
    hosts: &'a Overrides,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalLine {
    hosts: BTreeMap<String, Option<bool>>,
}

/// The state files of one daemon.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    /// The snapshot's file name ([`STATE_FILE`] or [`FLEET_FILE`]).
    snapshot_name: &'static str,
    /// The journal's file name ([`JOURNAL_FILE`] or [`FLEET_JOURNAL_FILE`]).
    journal_name: &'static str,
    /// The open journal and its length, once a change has been appended.
    journal: Option<(File, u64)>,
    /// Size of the last snapshot written or read.
    snapshot_len: u64,
    /// The journal size from which it is compacted (at least; see [`COMPACT_MIN`]).
    compact_min: u64,
}

impl StateStore {
    /// A store in `dir` (created on first save).
    pub fn new(dir: &Path) -> Self {
        Self::named(dir, STATE_FILE, JOURNAL_FILE)
    }

    /// A store in `dir` whose files have other names (the fleet table's: [`FLEET_FILE`],
    /// [`FLEET_JOURNAL_FILE`]).
    pub fn named(dir: &Path, snapshot_name: &'static str, journal_name: &'static str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            snapshot_name,
            journal_name,
            journal: None,
            snapshot_len: 0,
            compact_min: COMPACT_MIN,
        }
    }

    /// Path of the snapshot.
    pub fn path(&self) -> PathBuf {
        self.dir.join(self.snapshot_name)
    }

    /// Path of the journal.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(self.journal_name)
    }

    /// Loads the overrides (snapshot plus journal) without writing anything; a missing file is
    /// an empty set, a corrupt one an error.
    pub fn read(&self) -> anyhow::Result<Overrides> {
        let path = self.path();
        let mut hosts = match fs::read_to_string(&path) {
            Ok(text) => parse_snapshot(&path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Overrides::new(),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read state file {}", path.display()));
            }
        };
        let jpath = self.journal_path();
        match fs::read_to_string(&jpath) {
            Ok(text) => replay(&jpath, &text, &mut hosts)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read state journal {}", jpath.display()));
            }
        }
        Ok(hosts)
    }

    /// Loads the overrides and compacts the journal into the snapshot, so that the daemon
    /// starts with an empty journal.
    pub fn load(&mut self) -> anyhow::Result<Overrides> {
        let hosts = self.read()?;
        if self.journal_path().exists() {
            self.save(&hosts)?;
        } else if let Ok(m) = fs::metadata(self.path()) {
            self.snapshot_len = m.len();
        }
        Ok(hosts)
    }

    /// Records `delta` durably: one journal line, or, when the journal has grown large, a new
    /// snapshot of `after()` (the overrides with `delta` applied).
    pub fn apply(
        &mut self,
        delta: &Delta,
        after: impl FnOnce() -> Overrides,
    ) -> anyhow::Result<()> {
        if delta.is_empty() {
            return Ok(());
        }
        let journal_len = self.journal.as_ref().map_or(0, |(_, n)| *n);
        if journal_len > self.compact_min.max(self.snapshot_len) {
            return self.save(&after());
        }
        let mut line = serde_json::to_vec(&JournalLine {
            hosts: delta.iter().cloned().collect(),
        })
        .context("cannot encode a state journal line")?;
        line.push(b'\n');
        self.append(&line).with_context(|| {
            format!(
                "cannot write state journal {}",
                self.journal_path().display()
            )
        })
    }

    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        let (f, len) = match &mut self.journal {
            Some(open) => open,
            journal @ None => {
                fs::create_dir_all(&self.dir)?;
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join(self.journal_name))?;
                let len = f.metadata()?.len();
                // The new directory entry must be durable too.
                File::open(&self.dir)?.sync_all()?;
                journal.insert((f, len))
            }
        };
        let res = f.write_all(line).and_then(|()| f.sync_data());
        match res {
            Ok(()) => {
                *len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Take a partial line back, so that the next append starts on a line of
                // its own (best effort; a torn last line is ignored on load anyway).
                let _ = f.set_len(*len);
                Err(e)
            }
        }
    }

    /// Writes the whole overrides as the snapshot, atomically and durably, then removes the
    /// journal.
    pub fn save(&mut self, hosts: &Overrides) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create state directory {}", self.dir.display()))?;
        let body = serde_json::to_vec_pretty(&StateFileRef {
            version: VERSION,
            hosts,
        })
        .context("cannot encode the state snapshot")?;
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            self.snapshot_name,
            std::process::id()
        ));
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
        })?;
        self.snapshot_len = body.len() as u64 + 1;
        // The snapshot holds everything the journal did: drop it.
        self.journal = None;
        match fs::remove_file(self.journal_path()) {
            Ok(()) => File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot sync state directory {}", self.dir.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot remove state journal {}",
                    self.journal_path().display()
                )
            }),
        }
    }
}

fn parse_snapshot(path: &Path, text: &str) -> anyhow::Result<Overrides> {
    let file: StateFile = serde_json::from_str(text).with_context(|| {
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

fn replay(path: &Path, text: &str, hosts: &mut Overrides) -> anyhow::Result<()> {
    let mut lines = text.split_inclusive('\n').enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        if !line.ends_with('\n') && lines.peek().is_none() {
            // Cut short by a crash before it was acknowledged.
            tracing::warn!(
                "state journal {}: ignoring an incomplete last line (a change interrupted \
                 before it was confirmed)",
                path.display()
            );
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let j: JournalLine = serde_json::from_str(line).with_context(|| {
            format!(
                "state journal {} is corrupt at line {}; refusing to start rather than drop \
                 runtime hosts. Fix or remove that line",
                path.display(),
                i + 1
            )
        })?;
        for (host, v) in j.hosts {
            match v {
                Some(v) => hosts.insert(host, v),
                None => hosts.remove(&host),
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn roundtrip_and_missing() {
        let d = tempfile::tempdir().unwrap();
        let mut s = StateStore::new(&d.path().join("sub"));
        assert!(s.load().unwrap().is_empty());
        let mut h = Overrides::new();
        h.insert("a.example".into(), true);
        h.insert("b.example".into(), false);
        s.save(&h).unwrap();
        assert_eq!(s.load().unwrap(), h);
        // No temp files left behind.
        assert_eq!(names(&d.path().join("sub")), [STATE_FILE]);
    }

    #[test]
    fn journal_replays_and_compacts_on_load() {
        let d = tempfile::tempdir().unwrap();
        let mut s = StateStore::new(d.path());
        let mut h = Overrides::new();
        h.insert("a.example".into(), true);
        s.save(&h).unwrap();
        h.insert("b.example".into(), true);
        s.apply(&vec![("b.example".into(), Some(true))], || h.clone())
            .unwrap();
        h.remove("a.example");
        s.apply(&vec![("a.example".into(), None)], || h.clone())
            .unwrap();
        assert_eq!(names(d.path()), [JOURNAL_FILE, STATE_FILE]);
        // A fresh reader (as after kill -9) sees both changes.
        assert_eq!(StateStore::new(d.path()).read().unwrap(), h);
        let mut s2 = StateStore::new(d.path());
        assert_eq!(s2.load().unwrap(), h);
        assert_eq!(names(d.path()), [STATE_FILE]);
        assert_eq!(StateStore::new(d.path()).read().unwrap(), h);
    }

    #[test]
    fn torn_last_line_is_ignored_but_corrupt_line_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join(JOURNAL_FILE),
            "{\"hosts\":{\"a.example\":true}}\n{\"hosts\":{\"b.ex",
        )
        .unwrap();
        let got = StateStore::new(d.path()).read().unwrap();
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            [("a.example".into(), true)]
        );
        fs::write(
            d.path().join(JOURNAL_FILE),
            "{\"hosts\":{\"a.example\":true}}\ngarbage\n{\"hosts\":{}}\n",
        )
        .unwrap();
        let e = StateStore::new(d.path()).read().unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
    }

    #[test]
    fn large_journal_becomes_a_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let mut s = StateStore::new(d.path());
        s.compact_min = 1024;
        let mut h = Overrides::new();
        let mut compactions = 0;
        for i in 0..100 {
            let host = format!("host-{i:04}.example");
            h.insert(host.clone(), true);
            s.apply(&vec![(host, Some(true))], || h.clone()).unwrap();
            if !s.journal_path().exists() {
                compactions += 1;
            }
        }
        assert!((1..10).contains(&compactions), "{compactions} compactions");
        assert_eq!(StateStore::new(d.path()).read().unwrap(), h);
    }

    #[test]
    fn corrupt_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(STATE_FILE), "{garbage").unwrap();
        let e = StateStore::new(d.path()).load().unwrap_err();
        assert!(format!("{e:#}").contains("corrupt"), "{e:#}");
    }
}
