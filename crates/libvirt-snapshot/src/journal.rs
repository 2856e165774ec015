//! The crash journal: before any step that changes a domain or creates files,
//! what would have to be undone is written to disk (write to a temp file,
//! fsync, rename, fsync the directory). One JSON file per snapshot in flight;
//! it is removed when the snapshot's leftovers are gone. `recover()` reads
//! what a crashed process left (see `recovery.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::SnapshotError;

/// Something done to a domain or the host that a crash would leave behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// A private temp directory (and everything in it) to remove.
    TempDir {
        /// The directory.
        path: PathBuf,
    },
    /// A filesystem freeze was (about to be) requested: thaw.
    Quiesce,
    /// We paused the guest's vCPUs: resume.
    Paused,
    /// A push-mode backup job writing `target`: abort it if still running.
    BackupJob {
        /// The backup's target file (ours: under the temp directory).
        target: PathBuf,
    },
    /// A block copy into `dest` on disk `disk`: abort it (never pivot).
    MirrorJob {
        /// The disk's target name (`vda`).
        disk: String,
        /// The copy's destination file (ours: under the temp directory).
        dest: PathBuf,
    },
    /// The persistent definition as it was (inactive, secure XML): define it
    /// again if the domain is found transient.
    PersistentDefinition {
        /// `virDomainGetXMLDesc(INACTIVE | SECURE)`.
        xml: String,
    },
}

/// The on-disk record of one snapshot in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// The record's id (its file is `<id>.json`).
    pub id: String,
    /// The process that wrote it, and that process's start time (clock
    /// ticks since boot), so a live owner is told apart from a reused pid.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` when the record was written.
    pub process_start: Option<u64>,
    /// The instance (= domain) UUID.
    pub domain_uuid: String,
    /// The strategy's name (`backup`, `mirror`, `cold`), for the logs.
    pub strategy: String,
    /// What is still to be undone, in the order it was done.
    pub steps: Vec<Step>,
}

/// A record file and its parsed content (or why it cannot be read).
pub type PendingRecord = (PathBuf, Result<JournalRecord, SnapshotError>);

/// The journal directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

/// The journal record of the snapshot this process is making.
#[derive(Debug)]
pub struct JournalEntry {
    path: PathBuf,
    record: JournalRecord,
    dir: PathBuf,
}

fn journal_err(path: &Path, source: std::io::Error) -> SnapshotError {
    SnapshotError::Journal { path: path.to_owned(), source }
}

fn record_err(path: &Path, source: serde_json::Error) -> SnapshotError {
    SnapshotError::JournalRecord { path: path.to_owned(), source }
}

/// Field 22 of `/proc/<pid>/stat`: the process start time.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn fsync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| journal_err(dir, e))
}

impl Journal {
    /// Opens (creating, mode 0700) the journal directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SnapshotError> {
        let dir = dir.into();
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| journal_err(&dir, e))?;
        Ok(Journal { dir })
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the record of a new snapshot (written at once).
    pub(crate) fn begin(&self, domain_uuid: &str, strategy: &str) -> Result<JournalEntry, SnapshotError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let pid = std::process::id();
        let record = JournalRecord {
            id: id.clone(),
            pid,
            process_start: process_start(pid),
            domain_uuid: domain_uuid.to_owned(),
            strategy: strategy.to_owned(),
            steps: Vec::new(),
        };
        let entry = JournalEntry { path: self.dir.join(format!("{id}.json")), record, dir: self.dir.clone() };
        entry.write()?;
        Ok(entry)
    }

    /// Every record in the directory (unreadable ones are reported by path).
    pub fn pending(&self) -> Result<Vec<PendingRecord>, SnapshotError> {
        let mut out = Vec::new();
        for item in fs::read_dir(&self.dir).map_err(|e| journal_err(&self.dir, e))? {
            let path = item.map_err(|e| journal_err(&self.dir, e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                // A `.tmp` from a crash during a write: the rename never
                // happened, so the previous version (if any) is authoritative.
                if path.extension().and_then(|e| e.to_str()) == Some("tmp") {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            let parsed = fs::read(&path)
                .map_err(|e| journal_err(&path, e))
                .and_then(|b| serde_json::from_slice::<JournalRecord>(&b).map_err(|e| record_err(&path, e)));
            out.push((path, parsed));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Removes a record whose leftovers are gone.
    pub(crate) fn remove(&self, path: &Path) -> Result<(), SnapshotError> {
        match fs::remove_file(path) {
            Ok(()) => fsync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(journal_err(path, e)),
        }
    }
}

impl JournalEntry {
    /// The record as last written.
    pub fn record(&self) -> &JournalRecord {
        &self.record
    }

    /// Records `step` durably before the caller performs it.
    pub(crate) fn push(&mut self, step: Step) -> Result<(), SnapshotError> {
        self.record.steps.push(step);
        self.write()
    }

    /// Forgets steps that have been undone (durably).
    pub(crate) fn forget(&mut self, undone: impl Fn(&Step) -> bool) -> Result<(), SnapshotError> {
        let before = self.record.steps.len();
        self.record.steps.retain(|s| !undone(s));
        if self.record.steps.len() != before {
            self.write()?;
        }
        Ok(())
    }

    /// Everything was undone: the record goes.
    pub(crate) fn finish(self) -> Result<(), SnapshotError> {
        match fs::remove_file(&self.path) {
            Ok(()) => fsync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(journal_err(&self.path, e)),
        }
    }

    fn write(&self) -> Result<(), SnapshotError> {
        let tmp = self.path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(&self.record).map_err(|e| record_err(&self.path, e))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| journal_err(&tmp, e))?;
        f.write_all(&body).and_then(|_| f.sync_all()).map_err(|e| journal_err(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(|e| journal_err(&self.path, e))?;
        fsync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_durable_and_finish_removes_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path().join("j")).unwrap();
        let mut entry = journal.begin("uuid-1", "backup").unwrap();
        entry.push(Step::TempDir { path: "/tmp/x".into() }).unwrap();
        entry.push(Step::Quiesce).unwrap();
        let pending = journal.pending().unwrap();
        assert_eq!(pending.len(), 1);
        let rec = pending[0].1.as_ref().unwrap();
        assert_eq!(rec.steps, vec![Step::TempDir { path: "/tmp/x".into() }, Step::Quiesce]);
        assert_eq!(rec.pid, std::process::id());
        assert_eq!(rec.process_start, process_start(std::process::id()));
        entry.forget(|s| *s == Step::Quiesce).unwrap();
        assert_eq!(journal.pending().unwrap()[0].1.as_ref().unwrap().steps.len(), 1);
        entry.finish().unwrap();
        assert!(journal.pending().unwrap().is_empty());
    }

    #[test]
    fn torn_writes_and_garbage_are_handled() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        fs::write(dir.path().join("a.tmp"), b"{partial").unwrap();
        fs::write(dir.path().join("b.json"), b"not json").unwrap();
        let pending = journal.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert!(matches!(pending[0].1, Err(SnapshotError::JournalRecord { .. })));
        assert!(!dir.path().join("a.tmp").exists());
    }

    #[test]
    fn step_json_is_tagged() {
        let s = serde_json::to_string(&Step::MirrorJob { disk: "vda".into(), dest: "/d".into() }).unwrap();
        assert_eq!(s, r#"{"step":"mirror_job","disk":"vda","dest":"/d"}"#);
    }
}
